//! Notifications (`[[notify]]`) from the running daemon, against the real `oidc-provider`
//! behind the fault stub and a real HTTP receiver on loopback (`common::receiver`).
//!
//! What this proves:
//! - A provider outage gives exactly one `failing` event (after `after` failures in a row)
//!   and one `recovered` event, to a webhook in refreshd's versioned JSON and to a `command`
//!   sink, which gets the same event on stdin and `REFRESHD_EVENT` in its environment.
//! - A receiver that is down delays no rotation: rotations go on while its deliveries fail,
//!   and it gets the events, in order, once it listens (here in the Slack format).
//! - A fleet store (a real PostgreSQL) that stops answering gives one `store_unreachable`
//!   event naming no credential, and one `recovered` once it is back.
//! - No issued token, refresh token or client secret is in any payload, and the webhook's
//!   URL (a secret read from a file) is in no line refreshd printed.

use std::time::Duration;

use crate::common::pg::Cluster;
use crate::common::receiver::{Received, Receiver};
use crate::common::stub::{Mode, Stub};
use crate::common::{Daemon, Grant, Oidc, Refreshd};

/// Access tokens live 10 minutes, refreshed every 4 s: every attempt is due, so failures
/// during an outage follow each other (a held token that is not due is never re-asked for).
const TTL: u32 = 600;
const WAIT: Duration = Duration::from_secs(30);
/// A rotation's log line (only it has this field).
const ROTATED: &str = "refresh_token_rotated=";
/// The secret part of the webhook's URL, which must appear nowhere refreshd prints.
const HOOK_PATH: &str = "/hooks/T0000-s3cr3t-hook-path";

struct Setup {
    oidc: Oidc,
    stub: Stub,
    refreshd: Refreshd,
    grant: Grant,
}

/// One `oauth-refresh` credential `api` whose `token_url` is the stub, refreshed every 4 s,
/// and `sinks` (`[[notify]]` tables; `{DIR}` is the test's directory). The webhook URL is
/// in `{DIR}/hook.url`.
fn setup(hook_url: &str, sinks: &str) -> Setup {
    setup_with(hook_url, "", sinks)
}

/// [`setup`] with more `[daemon]` keys (`{DIR}` is the test's directory).
fn setup_with(hook_url: &str, daemon: &str, sinks: &str) -> Setup {
    let refreshd = Refreshd::new();
    let oidc = Oidc::start(refreshd.dir.path(), TTL);
    let stub = Stub::start(&oidc.token_endpoint, Mode::Forward);
    let grant = oidc.grant("rt-basic");
    let dir = refreshd.dir.path().display().to_string();
    std::fs::write(refreshd.path("bootstrap.refresh"), &grant.refresh_token).unwrap();
    std::fs::write(refreshd.path("client.secret"), "rt-basic-secret").unwrap();
    std::fs::write(refreshd.path("hook.url"), format!("{hook_url}\n")).unwrap();
    let config = format!(
        r#"[daemon]
state_dir = "{dir}/state"
control_socket = "{dir}/control.sock"
{daemon}
[credentials.api]
refresh_at = "4s"
min_remaining = "1m"
jitter = "0s"
retry = {{ initial = "1s", max = "2s" }}
timeout = "2s"
source = {{ type = "oauth-refresh", token_url = "{url}", client_id = "rt-basic", auth = "basic", client_secret = {{ file = "{dir}/client.secret" }}, refresh_token = {{ file = "{dir}/bootstrap.refresh" }}, scopes = ["openid", "offline_access", "api"] }}
targets = [{{ type = "file", path = "{dir}/token" }}]

{sinks}"#,
        url = stub.url,
        sinks = sinks.replace("{DIR}", &dir),
        daemon = daemon.replace("{DIR}", &dir),
    );
    std::fs::write(&refreshd.config, config).unwrap();
    Setup {
        oidc,
        stub,
        refreshd,
        grant,
    }
}

impl Setup {
    /// Stops the daemon (it must exit 0), then the leak check over everything it printed
    /// and every payload: no issued token, refresh token or client secret; and the
    /// webhook's URL in no line refreshd printed.
    fn finish(mut self, mut daemon: Daemon, payloads: &[String]) {
        daemon.signal(nix::sys::signal::Signal::SIGTERM);
        let status = daemon.wait_exit(WAIT);
        let output = daemon.output();
        assert!(status.success(), "{status}:\n{output}");
        assert!(
            !output.contains(HOOK_PATH) && !output.contains("s3cr3t"),
            "the webhook's URL leaked into the log:\n{output}"
        );
        self.refreshd.record_daemon(&daemon);
        for payload in payloads {
            for secret in [self.grant.refresh_token.as_str(), "rt-basic-secret"] {
                assert!(
                    !payload.contains(secret),
                    "a secret in a payload: {payload}"
                );
            }
        }
        let path = self.refreshd.path("payloads.recorded");
        std::fs::write(&path, payloads.join("\n")).unwrap();
        self.refreshd.record_file(&path);
        self.refreshd
            .assert_no_secrets(&[self.grant.refresh_token.as_str(), "rt-basic-secret"]);
        self.refreshd.assert_no_issued_tokens(&self.oidc);
    }
}

fn kinds(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["kind"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The events a `command` sink wrote: one line per run, `EVENT {json}`.
fn command_events(path: &std::path::Path, n: usize) -> Vec<(String, serde_json::Value)> {
    crate::common::eventually(&format!("{n} runs of the command sink"), WAIT, || {
        let text = std::fs::read_to_string(path).ok()?;
        let events: Vec<(String, serde_json::Value)> = text
            .lines()
            .map(|line| {
                let (word, json) = line.split_once(' ').expect("EVENT {json}");
                (word.to_owned(), serde_json::from_str(json).unwrap())
            })
            .collect();
        (events.len() >= n).then_some(events)
    })
}

#[test]
fn an_outage_gives_one_failing_and_one_recovered_event() {
    let receiver = Receiver::start();
    let sinks = r#"[[notify]]
name = "ops-hook"
type = "webhook"
url = { file = "{DIR}/hook.url" }
after = 2

[[notify]]
name = "pager"
type = "command"
argv = ["sh", "-c", "line=$(cat); echo \"$REFRESHD_EVENT $line\" >> '{DIR}/events.log'"]
after = 2
events = ["failing", "recovered"]
"#;
    let s = setup(&receiver.url(HOOK_PATH), sinks);
    let mut daemon = s.refreshd.spawn(&["run"]);
    daemon.wait_for(ROTATED, WAIT);

    s.stub.set_mode(Mode::Unavailable {
        retry_after_secs: 1,
    });
    let failing = receiver.wait_for(1, WAIT);
    let event = failing[0].json();
    assert_eq!(failing[0].path, HOOK_PATH);
    assert_eq!(failing[0].content_type, "application/json");
    assert_eq!(event["version"], 1, "{event}");
    assert_eq!(event["kind"], "failing", "{event}");
    assert_eq!(event["credential"], "api", "{event}");
    assert_eq!(event["error_class"], "provider_unavailable", "{event}");
    assert!(event["error"].as_str().unwrap().contains("503"), "{event}");
    assert!(
        event["consecutive_failures"].as_u64().unwrap() >= 2,
        "{event}"
    );
    assert!(
        event["expires_at"].is_string() && event["at"].is_string(),
        "{event}"
    );
    assert!(!event["node"].as_str().unwrap().is_empty(), "{event}");
    assert_eq!(event["reminder"], false, "{event}");

    s.stub.set_mode(Mode::Forward);
    let both = receiver.wait_for(2, WAIT);
    let recovered = both[1].json();
    assert_eq!(recovered["kind"], "recovered", "{recovered}");
    assert_eq!(recovered["credential"], "api", "{recovered}");
    assert!(recovered["error"].is_null(), "{recovered}");
    // Two more scheduled rotations after the recovery: nothing more to tell.
    let rotations = daemon.count(ROTATED);
    daemon.wait_for_n(ROTATED, rotations + 2, WAIT);
    let all = receiver.received();
    assert_eq!(kinds(&all), ["failing", "recovered"], "{all:#?}");

    let commands = command_events(&s.refreshd.path("events.log"), 2);
    let words: Vec<&str> = commands.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(words, ["failing", "recovered"]);
    for ((_, from_stdin), received) in commands.iter().zip(&all) {
        let webhook = received.json();
        for key in ["version", "kind", "credential", "node", "error_class"] {
            assert_eq!(from_stdin[key], webhook[key], "{key}");
        }
    }
    let mut payloads: Vec<String> = all.iter().map(|r| r.body.clone()).collect();
    payloads.extend(commands.iter().map(|(_, json)| json.to_string()));
    s.finish(daemon, &payloads);
}

#[test]
fn a_receiver_that_is_down_delays_no_rotation_and_gets_the_events_when_back() {
    let mut receiver = Receiver::down();
    let sinks = r#"[[notify]]
name = "slack"
type = "webhook"
url = { file = "{DIR}/hook.url" }
format = "slack"
after = 1
events = ["failing", "recovered"]
"#;
    let s = setup(&receiver.url(HOOK_PATH), sinks);
    let mut daemon = s.refreshd.spawn(&["run"]);
    daemon.wait_for(ROTATED, WAIT);

    s.stub.set_mode(Mode::Unavailable {
        retry_after_secs: 1,
    });
    daemon.wait_for("notification not delivered", WAIT);
    s.stub.set_mode(Mode::Forward);
    // Rotations go on at their pace while the receiver refuses every delivery.
    let rotations = daemon.count(ROTATED);
    daemon.wait_for_n(ROTATED, rotations + 2, WAIT);
    assert!(receiver.received().is_empty());
    assert_eq!(daemon.count("notification sent"), 0, "{}", daemon.output());

    receiver.listen();
    let received = receiver.wait_for(2, WAIT);
    let texts: Vec<String> = received
        .iter()
        .map(|r| {
            let json = r.json();
            assert_eq!(json.as_object().unwrap().len(), 1, "{json}");
            json["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(
        texts[0].contains("credential `api` is failing") && texts[0].contains("503"),
        "{texts:?}"
    );
    assert!(
        texts[1].contains("credential `api` has recovered"),
        "{texts:?}"
    );
    daemon.wait_for_n("notification sent", 2, WAIT);
    let payloads: Vec<String> = received.iter().map(|r| r.body.clone()).collect();
    s.finish(daemon, &payloads);
}

#[test]
fn a_store_that_stops_answering_is_told_once_and_its_return_too() {
    let mut cluster = Cluster::start();
    cluster.set_password("notify-store-pw");
    cluster.admin_sql("CREATE DATABASE fleet OWNER app");
    let receiver = Receiver::start();
    let sinks = r#"[[notify]]
name = "ops-hook"
type = "webhook"
url = { file = "{DIR}/hook.url" }
events = ["store_unreachable", "recovered"]
"#;
    let daemon_keys = r#"node = "notify-node"
store = { type = "postgres", url = { file = "{DIR}/store.url" }, key = { file = "{DIR}/store.key" }, lease = "3s" }
"#;
    let s = setup_with(&receiver.url(HOOK_PATH), daemon_keys, sinks);
    std::fs::write(
        s.refreshd.path("store.url"),
        format!(
            "postgres://app:notify-store-pw@127.0.0.1:{}/fleet?sslmode=disable",
            cluster.port
        ),
    )
    .unwrap();
    let key = crate::common::refreshd_output(&["store", "init-key"]);
    std::fs::write(s.refreshd.path("store.key"), key).unwrap();
    // This host's own: only the store's reachability is under test.
    let config = std::fs::read_to_string(&s.refreshd.config).unwrap();
    let config = config.replace("[credentials.api]", "[credentials.api]\nshared = false");
    std::fs::write(&s.refreshd.config, config).unwrap();
    let mut daemon = s.refreshd.spawn(&["run"]);
    daemon.wait_for(ROTATED, WAIT);
    assert!(receiver.received().is_empty(), "{:#?}", receiver.received());

    cluster.stop();
    let down = receiver.wait_for(1, WAIT);
    let event = down[0].json();
    assert_eq!(event["kind"], "store_unreachable", "{event}");
    assert!(event["credential"].is_null(), "{event}");
    assert_eq!(event["node"], "notify-node", "{event}");
    assert_eq!(event["error_class"], "store", "{event}");
    assert!(
        !event["error"].as_str().unwrap().contains("notify-store-pw"),
        "{event}"
    );

    cluster.start_again();
    let both = receiver.wait_for(2, WAIT);
    let back = both[1].json();
    assert_eq!(back["kind"], "recovered", "{back}");
    assert!(back["credential"].is_null(), "{back}");
    // The credential's own rotations went on meanwhile and told nothing.
    let rotations = daemon.count(ROTATED);
    daemon.wait_for_n(ROTATED, rotations + 1, WAIT);
    assert_eq!(
        kinds(&receiver.received()),
        ["store_unreachable", "recovered"]
    );
    let payloads: Vec<String> = both.iter().map(|r| r.body.clone()).collect();
    s.finish(daemon, &payloads);
}
