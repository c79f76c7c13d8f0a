//! A fleet: several `refreshd run` processes, each with its own config, state directory and
//! `.env`, sharing one rotating-refresh-token grant of a real oidc-provider through a real
//! PostgreSQL (a throwaway initdb cluster). The provider revokes the whole grant when a
//! refresh token is spent twice, so a second refresher shows up as `invalid_grant`.
//!
//! The figures the closing note quotes are printed by these tests (`--nocapture`):
//! `cargo test --test it fleet:: -- --nocapture --test-threads 1`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::common::pg::Cluster;
use crate::common::{Daemon, Lcg, Oidc, Refreshd, assert_success, eventually, stdout};

const CLIENT: &str = "rt-basic";

/// Everything the nodes share: the database, the provider, the store URL and key, the grant.
pub(crate) struct Fleet {
    shared: TempDir,
    cluster: Cluster,
    oidc: Oidc,
    db: Db,
}

/// A node: its own directory (config, state, `.env`, control socket) and its daemon.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) r: Refreshd,
    daemon: Option<Daemon>,
}

/// A direct connection for the test's polls (tokio-postgres, as refreshd uses it).
struct Db {
    runtime: tokio::runtime::Runtime,
    url: String,
    client: Option<tokio_postgres::Client>,
}

/// A credential's row as the test reads it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    generation: i64,
    holder: Option<String>,
    lease_left: f64,
    updated_by: Option<String>,
    updated_at: f64,
}

impl Db {
    fn client(&mut self) -> Option<&tokio_postgres::Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let connected = self
                .runtime
                .block_on(tokio_postgres::connect(&self.url, tokio_postgres::NoTls));
            let (client, connection) = connected.ok()?;
            self.runtime.spawn(connection);
            self.client = Some(client);
        }
        self.client.as_ref()
    }

    fn row(&mut self, name: &str) -> Option<Row> {
        let sql = "SELECT generation, holder,
                          coalesce(extract(epoch FROM lease_until - clock_timestamp()), 0)::float8,
                          updated_by, extract(epoch FROM updated_at)::float8
                     FROM refreshd_credentials WHERE name = $1";
        self.client()?;
        let client = self.client.as_ref()?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&name];
        let row = self
            .runtime
            .block_on(client.query_opt(sql, &params))
            .ok()??;
        Some(Row {
            generation: row.get(0),
            holder: row.get(1),
            lease_left: row.get(2),
            updated_by: row.get(3),
            updated_at: row.get(4),
        })
    }
}

impl Fleet {
    /// A cluster with database `fleet` owned by `app`, a provider whose access tokens live
    /// `ttl` seconds, a store key, and a new grant as every node's bootstrap refresh token.
    pub(crate) fn start(ttl: u32) -> Fleet {
        let shared = tempfile::tempdir().unwrap();
        let cluster = Cluster::start();
        cluster.set_password("fleet-store-pw");
        cluster.admin_sql("CREATE DATABASE fleet OWNER app");
        let url = format!(
            "postgres://app:fleet-store-pw@127.0.0.1:{}/fleet?sslmode=disable",
            cluster.port
        );
        std::fs::write(shared.path().join("store.url"), &url).unwrap();
        let key = crate::common::refreshd_output(&["store", "init-key"]);
        std::fs::write(shared.path().join("store.key"), key).unwrap();
        let oidc = Oidc::start(shared.path(), ttl);
        let grant = oidc.grant(CLIENT);
        std::fs::write(
            shared.path().join("bootstrap.refresh"),
            &grant.refresh_token,
        )
        .unwrap();
        std::fs::write(shared.path().join("client.secret"), "rt-basic-secret").unwrap();
        Fleet {
            db: Db {
                runtime: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap(),
                url: url.replace("?sslmode=disable", ""),
                client: None,
            },
            shared,
            cluster,
            oidc,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.shared.path().join(name)
    }

    /// A node whose config shares `credentials` (TOML, `@DIR@` for its own directory).
    pub(crate) fn node(&self, name: &str, lease: &str, credentials: &str) -> Node {
        self.node_with(name, lease, credentials, "", "store.url", "store.key")
    }

    /// [`Fleet::node`] with more `[daemon]` keys and its own URL and key files.
    fn node_with(
        &self,
        name: &str,
        lease: &str,
        credentials: &str,
        daemon: &str,
        url: &str,
        key: &str,
    ) -> Node {
        let r = Refreshd::new();
        let dir = r.dir.path().display().to_string();
        std::fs::create_dir(r.path("app")).unwrap();
        let text = format!(
            r#"[daemon]
state_dir = "{dir}/state"
control_socket = "{dir}/control.sock"
node = "{name}"
store = {{ type = "postgres", url = {{ file = "{shared}/{url}" }}, key = {{ file = "{shared}/{key}" }}, lease = "{lease}" }}
{daemon}

{credentials}"#,
            shared = self.shared.path().display(),
            credentials = credentials.replace("@DIR@", &dir)
        );
        std::fs::write(&r.config, text).unwrap();
        Node {
            name: name.to_owned(),
            r,
            daemon: None,
        }
    }

    /// The rotating grant, refreshed every `refresh_at`, written to each node's `.env`.
    pub(crate) fn rotating(&self, refresh_at: &str) -> String {
        self.rotating_with(refresh_at, r#"{ initial = "500ms", max = "1s" }"#)
    }

    /// [`Fleet::rotating`] with its own `retry` table.
    fn rotating_with(&self, refresh_at: &str, retry: &str) -> String {
        format!(
            r#"[credentials.shared]
source = {{ type = "oauth-refresh", token_url = "{url}", client_id = "{CLIENT}", auth = "basic", client_secret = {{ file = "{shared}/client.secret" }}, refresh_token = {{ file = "{shared}/bootstrap.refresh" }}, scopes = ["openid", "offline_access", "api"] }}
refresh_at = "{refresh_at}"
min_remaining = "2s"
jitter = "0s"
timeout = "3s"
retry = {retry}
targets = [ {{ type = "dotenv", path = "@DIR@/app/.env", key = "TOKEN" }} ]
"#,
            url = self.oidc.token_endpoint,
            shared = self.shared.path().display()
        )
    }

    /// `n` nodes sharing `credentials` with `lease`, started.
    fn started(&self, n: usize, lease: &str, credentials: &str) -> Vec<Node> {
        (1..=n)
            .map(|i| {
                let mut node = self.node(&format!("node-{i}"), lease, credentials);
                node.start();
                node
            })
            .collect()
    }

    /// Stops every node cleanly, then checks that none printed a token the provider issued.
    pub(crate) fn finish(&self, nodes: &mut [Node]) {
        for node in nodes.iter_mut() {
            node.stop();
        }
        for node in nodes.iter() {
            node.r.assert_no_issued_tokens(&self.oidc);
        }
    }

    pub(crate) fn invalid_grants(&self) -> u64 {
        self.oidc.count("by_error", "invalid_grant")
    }

    pub(crate) fn refreshes(&self) -> u64 {
        self.oidc.count("by_client", CLIENT)
    }

    /// Waits until the row shows a generation above `above`; the row.
    fn generation_above(&mut self, above: i64, timeout: Duration) -> Row {
        let db = &mut self.db;
        eventually(&format!("a generation above {above}"), timeout, || {
            db.row("shared").filter(|row| row.generation > above)
        })
    }
}

impl Node {
    pub(crate) fn start(&mut self) {
        self.daemon = Some(self.r.spawn(&["run"]));
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("started")
    }

    /// The token in this node's `.env`, if any.
    fn token(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.r.path("app/.env")).ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix("TOKEN="))
            .map(str::to_owned)
    }

    /// Kills the daemon without a chance to clean up, keeping its output for the leak check.
    fn kill(&mut self) {
        let mut daemon = self.daemon.take().expect("started");
        daemon.signal(Signal::SIGKILL);
        daemon.wait_exit(Duration::from_secs(10));
        self.r.record_daemon(&daemon);
    }

    fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.terminate(Duration::from_secs(20));
            self.r.record_daemon(&daemon);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Three nodes share one rotating grant: exactly one token request per refresh, every
/// node's `.env` follows each commit within a second, a follower's `rotate` goes through the
/// holder, the database holds no token in the clear, and a killed or stalled holder is
/// replaced within a lease (plus a second) without the grant ever being spent twice.
#[test]
fn three_nodes_share_one_grant() {
    let mut fleet = Fleet::start(12);
    let lease = Duration::from_secs(2);
    let credentials = fleet.rotating("5s");
    let ports: Vec<u16> = (0..3).map(|_| crate::common::pg::free_port()).collect();
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| {
            let metrics = format!("metrics_listen = \"127.0.0.1:{}\"", ports[i - 1]);
            fleet.node_with(
                &format!("node-{i}"),
                "2s",
                &credentials,
                &metrics,
                "store.url",
                "store.key",
            )
        })
        .collect();
    for node in &mut nodes {
        node.start();
    }

    // Four refresh periods: every commit, who made it, and when each node's file follows.
    let mut commits: BTreeMap<i64, Row> = BTreeMap::new();
    let mut last_token: Vec<Option<String>> = vec![None; nodes.len()];
    let mut delays: Vec<f64> = Vec::new();
    let mut pending: Vec<(i64, f64, Vec<bool>)> = Vec::new();
    let until = Instant::now() + Duration::from_secs(24);
    while Instant::now() < until {
        if let Some(row) = fleet.db.row("shared")
            && row.generation > 0
            && !commits.contains_key(&row.generation)
        {
            pending.push((row.generation, row.updated_at, vec![false; nodes.len()]));
            commits.insert(row.generation, row);
        }
        let now = unix_now();
        for (i, node) in nodes.iter().enumerate() {
            let token = node.token();
            if token.is_some() && token != last_token[i] {
                last_token[i] = token;
                // The file changed: it follows the newest commit it has not yet followed.
                if let Some((_, at, seen)) = pending.iter_mut().rev().find(|(_, _, s)| !s[i]) {
                    seen[i] = true;
                    delays.push(now - *at);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let generations = commits.len() as u64;
    let refreshes = fleet.refreshes();
    eprintln!(
        "fleet: {generations} commits, {refreshes} token requests at the provider in 24 s (refresh_at 5s), by {:?}",
        commits
            .values()
            .map(|r| r.updated_by.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    );
    assert!(generations >= 4, "too few refreshes: {commits:?}");
    assert_eq!(
        refreshes, generations,
        "exactly one token request per commit across the three nodes"
    );
    assert_eq!(
        fleet.invalid_grants(),
        0,
        "no refresh token was spent twice"
    );
    delays.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    eprintln!(
        "fleet: commit → .env on each node: {} samples, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        delays.len(),
        p50 * 1000.0,
        p99 * 1000.0,
        delays.last().unwrap() * 1000.0
    );
    assert!(delays.len() as u64 >= generations * 3 - 3, "{delays:?}");
    assert!(
        p99 < 1.0,
        "a node followed a commit later than 1 s: {delays:?}"
    );

    // Status: one leader, two followers, the same holder and generation everywhere.
    let holder = fleet.db.row("shared").unwrap().holder.unwrap();
    let (leader, follower) = {
        let l = nodes.iter().position(|n| n.name == holder).unwrap();
        (l, (l + 1) % nodes.len())
    };
    let status = nodes[follower].r.run(&["status"]);
    let text = stdout(&status);
    assert!(
        text.contains(&format!(
            "store:         follower (holder {holder}, lease until"
        )),
        "{text}"
    );
    assert!(text.contains("store: up; this node is"), "{text}");
    let status = nodes[leader].r.run(&["status"]);
    assert!(
        stdout(&status).contains("store:         leader"),
        "{}",
        stdout(&status)
    );
    // Metrics: the store answers everyone; only the leader holds the lease.
    let http = reqwest::blocking::Client::new();
    for (i, port) in ports.iter().enumerate() {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        crate::common::promtool(&["check", "metrics"], &text);
        assert!(text.contains("\nrefreshd_store_up 1\n"), "{text}");
        let held = u8::from(i == leader);
        assert!(
            text.contains(&format!(
                "\nrefreshd_lease_held{{credential=\"shared\"}} {held}\n"
            )),
            "{text}"
        );
    }
    let listed = nodes[follower].r.run(&["status", "--nodes"]);
    assert_success(&listed);
    let listed = stdout(&listed);
    for node in &nodes {
        assert!(listed.contains(&node.name), "{listed}");
    }
    assert!(listed.contains(&format!("{holder}: refreshd ")), "{listed}");
    assert!(listed.contains("1 lease held"), "{listed}");

    // `rotate` on a follower: the holder refreshes, the follower answers with the result.
    let before = fleet.db.row("shared").unwrap().generation;
    let requests = fleet.refreshes();
    let rotated = nodes[follower].r.run(&["rotate", "shared"]);
    assert_success(&rotated);
    let after = fleet.db.row("shared").unwrap();
    assert!(after.generation > before, "{after:?}");
    assert_eq!(after.updated_by.as_deref(), Some(holder.as_str()));
    assert!(fleet.refreshes() > requests);
    assert_eq!(nodes[follower].token(), nodes[leader].token());
    // The request reached the holder twice (its notification and its next round); it is
    // answered once. Two rounds later nothing more was refreshed (the next scheduled
    // refresh is 5 s after this one).
    let requests = fleet.refreshes();
    std::thread::sleep(lease);
    assert_eq!(fleet.db.row("shared").unwrap().generation, after.generation);
    assert_eq!(
        fleet.refreshes(),
        requests,
        "one rotate request, two refreshes"
    );

    // The database and its dumps never hold a usable token.
    let dump = fleet.cluster.dump("fleet");
    assert!(
        dump.contains("refreshd_credentials"),
        "the dump is of the store"
    );
    let issued = fleet.oidc.issued();
    assert!(issued.len() as u64 > generations);
    for token in &issued {
        assert!(
            !dump.contains(token.as_str()),
            "a token in the clear in pg_dump"
        );
    }

    // SIGKILL of the holder: another node holds the lease within a lease plus a second,
    // and refreshes with the store's refresh token.
    let killed_at = Instant::now();
    nodes[leader].kill();
    let db = &mut fleet.db;
    let taken = eventually("another holder", Duration::from_secs(10), || {
        db.row("shared")
            .filter(|row| row.holder.as_deref() != Some(holder.as_str()) && row.lease_left > 0.0)
    });
    let failover = killed_at.elapsed();
    eprintln!(
        "fleet: SIGKILL of the holder → {} holds the lease after {} ms (lease {} ms)",
        taken.holder.as_deref().unwrap_or("?"),
        failover.as_millis(),
        lease.as_millis()
    );
    assert!(failover <= lease + Duration::from_secs(1), "{failover:?}");
    let next = fleet.generation_above(taken.generation, Duration::from_secs(15));
    assert_eq!(next.updated_by, taken.holder);
    assert_eq!(fleet.invalid_grants(), 0);

    // SIGSTOP of the new holder past its lease (a stalled host), then SIGCONT: it neither
    // commits nor publishes a stale token, and no refresh token is spent twice.
    let stalled = nodes
        .iter()
        .position(|n| Some(&n.name) == taken.holder.as_ref())
        .unwrap();
    let stalled_name = nodes[stalled].name.clone();
    nodes[stalled].daemon().signal(Signal::SIGSTOP);
    let db = &mut fleet.db;
    let replaced = eventually(
        "a holder other than the stalled one",
        Duration::from_secs(10),
        || {
            db.row("shared").filter(|row| {
                row.holder.as_deref() != Some(stalled_name.as_str()) && row.lease_left > 0.0
            })
        },
    );
    let after_stall = fleet.generation_above(replaced.generation, Duration::from_secs(15));
    assert_eq!(after_stall.updated_by, replaced.holder);
    nodes[stalled].daemon().signal(Signal::SIGCONT);
    let newest = fleet.generation_above(after_stall.generation, Duration::from_secs(15));
    assert_eq!(
        newest.updated_by, replaced.holder,
        "the stalled node committed"
    );
    std::thread::sleep(Duration::from_secs(1));
    let live: Vec<usize> = (0..nodes.len()).filter(|i| *i != leader).collect();
    let tokens: Vec<Option<String>> = live.iter().map(|i| nodes[*i].token()).collect();
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "{tokens:?}");
    assert_eq!(fleet.invalid_grants(), 0, "a refresh token was spent twice");

    fleet.finish(&mut nodes);
}

/// A row's sealed state, as hex, to prove that nothing was written.
fn sealed(cluster: &Cluster, db: &str) -> String {
    cluster.query(
        db,
        "SELECT generation || ':' || encode(sealed, 'hex') FROM refreshd_credentials WHERE name = 'shared'",
    )
}

/// The store's own checks: a host with another key is refused before it reads or writes
/// anything; a schema newer than the binary is refused; a store at the previous schema
/// version is migrated with its rows kept.
#[test]
fn wrong_key_newer_schema_and_migration() {
    let fleet = Fleet::start(60);
    let credentials = fleet.rotating("30s");
    let mut good = fleet.node("good", "5s", &credentials);
    let once = good.r.run(&["once"]);
    assert_success(&once);
    let before = sealed(&fleet.cluster, "fleet");
    assert!(before.starts_with("1:"), "{before}");
    // `check --online` reads the store and never spends the shared refresh token.
    let requests = fleet.refreshes();
    let check = good.r.run(&["check", "--online"]);
    assert_success(&check);
    let text = stdout(&check);
    assert!(text.contains("schema version 5"), "{text}");
    assert!(
        text.contains("shared: in the store at generation 1, token "),
        "{text}"
    );
    assert_eq!(
        fleet.refreshes(),
        requests,
        "check --online spent the shared grant"
    );

    // Another key: refused with a clear error, the row untouched, the provider not asked.
    let other = crate::common::refreshd_output(&["store", "init-key"]);
    std::fs::write(fleet.path("other.key"), other).unwrap();
    let mut wrong = fleet.node_with("wrong", "5s", &credentials, "", "store.url", "other.key");
    let requests = fleet.refreshes();
    for args in [&["once", "--force"][..], &["run"][..]] {
        let output = wrong.r.run(args);
        assert!(
            !output.status.success(),
            "{args:?} with another key must fail"
        );
        let text = crate::common::stderr(&output);
        assert!(
            text.contains("store.key is not the key this store was written with"),
            "{args:?}: {text}"
        );
    }
    assert_eq!(
        sealed(&fleet.cluster, "fleet"),
        before,
        "a wrong key overwrote the row"
    );
    assert_eq!(fleet.refreshes(), requests);
    assert!(!wrong.r.path("app/.env").exists());

    // A schema from a newer refreshd: refused, nothing written.
    fleet.cluster.query(
        "fleet",
        "INSERT INTO refreshd_schema (version, applied_by) VALUES (99, 'refreshd 9.9.9')",
    );
    let output = good.r.run(&["run"]);
    assert!(!output.status.success());
    let text = crate::common::stderr(&output);
    assert!(
        text.contains("the store's schema is version 99, newer than this refreshd knows (5)"),
        "{text}"
    );
    assert_eq!(sealed(&fleet.cluster, "fleet"), before);
    fleet
        .cluster
        .query("fleet", "DELETE FROM refreshd_schema WHERE version = 99");

    // A store at schema version 1 (a row in it) is migrated to 5, the row kept.
    fleet
        .cluster
        .admin_sql("CREATE DATABASE fleet_v1 OWNER app");
    let v1 =
        std::fs::read_to_string(crate::common::repo().join("src/store/migrations/001_init.sql"))
            .unwrap();
    fleet.cluster.query(
        "fleet_v1",
        &format!(
            "SET ROLE app; {v1}; CREATE TABLE refreshd_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL); INSERT INTO refreshd_schema (version, applied_by) VALUES (1, 'refreshd 0.0.9'); INSERT INTO refreshd_credentials (name, holder) VALUES ('older', 'gone')"
        ),
    );
    let url = std::fs::read_to_string(fleet.path("store.url")).unwrap();
    std::fs::write(fleet.path("v1.url"), url.replace("/fleet?", "/fleet_v1?")).unwrap();
    // Another store, another grant (the first one's refresh token lives in `fleet`).
    let grant = fleet.oidc.grant(CLIENT);
    std::fs::write(fleet.path("v1.refresh"), &grant.refresh_token).unwrap();
    let v1_credentials = credentials.replace("bootstrap.refresh", "v1.refresh");
    let mut migrated =
        fleet.node_with("migrated", "5s", &v1_credentials, "", "v1.url", "store.key");
    assert_success(&migrated.r.run(&["once"]));
    assert_eq!(
        fleet.cluster.query(
            "fleet_v1",
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM refreshd_schema"
        ),
        "1,2,3,4,5"
    );
    assert_eq!(
        fleet.cluster.query("fleet_v1", "SELECT holder FROM refreshd_credentials WHERE name = 'older' AND rotate_asked_at IS NULL"),
        "gone"
    );
    assert!(sealed(&fleet.cluster, "fleet_v1").starts_with("1:"));
    good.stop();
    for node in [&good, &wrong, &migrated] {
        node.r.assert_no_issued_tokens(&fleet.oidc);
    }
}

/// A one-shot command against a store that has never seen its credentials takes their leases
/// and refreshes them at once, every time: its round makes the rows before it claims them.
#[test]
fn a_one_shot_command_claims_credentials_new_to_the_store() {
    let fleet = Fleet::start(60);
    for round in 0..12 {
        let credentials: String = (0..4)
            .map(|i| {
                format!(
                    r#"[credentials.c{round}_{i}]
source = {{ type = "command", argv = ["printf", "%s", "token-{round}-{i}-abcdefgh"], format = "plain" }}
default_lifetime = "1h"
targets = [ {{ type = "dotenv", path = "@DIR@/app/.env", key = "T{i}" }} ]
"#
                )
            })
            .collect();
        let name = format!("once-{round}");
        let mut node = fleet.node(&name, "30s", &credentials);
        let once = node.r.run(&["once"]);
        assert!(
            once.status.success(),
            "round {round}: once failed ({}):\n{}{}",
            once.status,
            stdout(&once),
            crate::common::stderr(&once)
        );
        let env = std::fs::read_to_string(node.r.path("app/.env")).unwrap();
        assert!(
            env.contains(&format!("T3=token-{round}-3-abcdefgh")),
            "{env}"
        );
        let holders = fleet.cluster.query(
            "fleet",
            &format!(
                "SELECT DISTINCT holder FROM refreshd_credentials WHERE name LIKE 'c{round}\\_%'"
            ),
        );
        assert_eq!(holders.trim(), name, "round {round}");
    }
    // A credential whose lease another node holds and that has no token yet: `once` fails and
    // says why, instead of exiting 1 in silence.
    fleet.cluster.query(
        "fleet",
        "INSERT INTO refreshd_credentials (name, holder, lease_until)
         VALUES ('held', 'elsewhere', now() + interval '1 hour')",
    );
    let credential = r#"[credentials.held]
source = { type = "command", argv = ["printf", "%s", "token-held-abcdefgh"], format = "plain" }
default_lifetime = "1h"
targets = [ { type = "dotenv", path = "@DIR@/app/.env", key = "HELD" } ]
"#;
    let mut node = fleet.node("late", "30s", credential);
    let once = node.r.run(&["once"]);
    assert_eq!(
        once.status.code(),
        Some(1),
        "{}",
        crate::common::stderr(&once)
    );
    let text = crate::common::stderr(&once);
    assert!(
        text.contains("no node has stored a token of held in the store yet"),
        "{text}"
    );
    assert!(!node.r.path("app/.env").exists());
}

/// Fifty SIGKILLs of the holder at random moments, each node restarted at once: the grant
/// survives, except where a kill came while the provider's answer was on its way (the new
/// refresh token then existed only in the killed process); those are counted, and each lost
/// grant must be one of them.
#[test]
fn fifty_random_kills_lose_no_grant() {
    let mut fleet = Fleet::start(6);
    let credentials = fleet.rotating("1s");
    let mut nodes = fleet.started(3, "1s", &credentials);
    fleet.generation_above(0, Duration::from_secs(15));
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("fleet kill series: seed {seed}");
    let mut random = Lcg(seed);
    let started = Instant::now();
    let (mut kills, mut lost) = (0, 0);
    let mut invalid = fleet.invalid_grants();
    while kills < 50 {
        std::thread::sleep(Duration::from_millis(random.below(1200)));
        let Some(holder) = fleet.db.row("shared").and_then(|row| row.holder) else {
            continue;
        };
        let Some(node) = nodes
            .iter_mut()
            .find(|n| n.name == holder && n.daemon.is_some())
        else {
            continue;
        };
        node.kill();
        node.start();
        kills += 1;
        let now = fleet.invalid_grants();
        if now > invalid {
            // The grant is gone: a new login (a new bootstrap refresh token) for the next round.
            lost += 1;
            invalid = now;
            let grant = fleet.oidc.grant(CLIENT);
            std::fs::write(fleet.path("bootstrap.refresh"), &grant.refresh_token).unwrap();
        }
    }
    let last = fleet.db.row("shared").unwrap().generation;
    fleet.generation_above(last, Duration::from_secs(20));
    lost += usize::from(fleet.invalid_grants() > invalid);
    // Commits that came from a token request: every generation but the hand-overs of the
    // new bootstrap refresh tokens above (each logged by the node that made it).
    let generations = fleet.db.row("shared").unwrap().generation as u64;
    let handovers = nodes
        .iter()
        .flat_map(|node| {
            let running = node.daemon.as_ref().map(|d| d.output());
            node.r.recorded().iter().cloned().chain(running)
        })
        .map(|output| output.matches("handed to the store").count() as u64)
        .sum::<u64>();
    let answered = fleet.refreshes() - fleet.invalid_grants();
    let in_flight = answered.saturating_sub(generations - handovers);
    // The provider tells the two kinds of reuse apart: after an answer nobody ever presented
    // (lost on its way), or after the fleet had used it (always a bug).
    let stats = fleet.oidc.stats();
    let reuse = |key: &str| {
        stats[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {stats}"))
    };
    let after_used = reuse("reuse_after_answer_used");
    eprintln!(
        "fleet kill series: {kills} kills in {:.0} s, {generations} commits ({handovers} hand-overs), {answered} refreshes answered, {in_flight} answers lost in flight, {lost} grants lost; refresh tokens spent again: {} after an unused answer, {after_used} after a used one",
        started.elapsed().as_secs_f64(),
        reuse("reuse_after_answer_lost"),
    );
    assert_eq!(
        after_used, 0,
        "a refresh token was spent again after the fleet had used its answer"
    );
    assert!(
        lost as u64 <= in_flight,
        "a grant was lost without a kill during a request: {lost} lost, {in_flight} answers in flight"
    );
    fleet.finish(&mut nodes);
}

/// PostgreSQL stopped for two minutes: every node keeps the token its targets hold and says
/// why it cannot refresh; a client-credentials credential (which spends no refresh token)
/// keeps refreshing on each host; when PostgreSQL is back the fleet converges, grant intact.
#[test]
fn two_minutes_without_the_database() {
    let mut fleet = Fleet::start(150);
    std::fs::write(fleet.path("cc.secret"), "cc-secret-secret").unwrap();
    let credentials = format!(
        r#"{}
[credentials.machine]
source = {{ type = "oauth-client-credentials", token_url = "{url}", client_id = "cc-secret", client_secret = {{ file = "{shared}/cc.secret" }}, scopes = ["api"] }}
refresh_at = "10s"
min_remaining = "5s"
jitter = "0s"
timeout = "3s"
retry = {{ initial = "1s", max = "2s" }}
targets = [ {{ type = "dotenv", path = "@DIR@/app/machine.env", key = "TOKEN" }} ]
"#,
        fleet.rotating_with("100s", r#"{ initial = "1s", max = "2s" }"#),
        url = fleet.oidc.token_endpoint,
        shared = fleet.shared.path().display()
    );
    let mut nodes = fleet.started(2, "2s", &credentials);
    let first = fleet.generation_above(0, Duration::from_secs(15));
    eventually(
        "both nodes hold the first token",
        Duration::from_secs(10),
        || (nodes[0].token().is_some() && nodes[0].token() == nodes[1].token()).then_some(()),
    );
    let before = nodes[0].token().unwrap();
    let machine = |node: &Node| std::fs::read_to_string(node.r.path("app/machine.env")).ok();
    let machine_before = machine(&nodes[1]);

    fleet.cluster.stop();
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let status = nodes[1].r.run(&["status"]);
    let text = stdout(&status);
    assert!(text.contains("store: unreachable since"), "{text}");
    assert!(text.contains("machine: ok"), "{text}");
    // The rotating credential falls due at 100 s: it is not refreshed without the store.
    while down_at.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(5));
        for node in &nodes {
            assert_eq!(
                node.token().as_deref(),
                Some(before.as_str()),
                "a target lost its token"
            );
        }
    }
    let status = nodes[0].r.run(&["status"]);
    let text = stdout(&status);
    assert!(
        text.contains("store unreachable"),
        "the due credential says why: {text}"
    );
    assert_ne!(
        machine(&nodes[1]),
        machine_before,
        "the client-credentials token was not refreshed locally"
    );
    assert_eq!(
        fleet.refreshes(),
        1,
        "a rotating grant was refreshed without the store"
    );

    fleet.cluster.start_again();
    let back = fleet.generation_above(first.generation, Duration::from_secs(20));
    let newest = eventually("both nodes follow", Duration::from_secs(10), || {
        let token = nodes[0].token()?;
        (token != before && nodes[1].token().as_deref() == Some(token.as_str())).then_some(token)
    });
    assert!(!newest.is_empty());
    eprintln!(
        "fleet outage: 120 s down; converged at generation {} by {:?}",
        back.generation, back.updated_by
    );
    assert_eq!(fleet.invalid_grants(), 0);
    fleet.finish(&mut nodes);
}

/// A new bootstrap refresh token put in one follower's configuration (a re-seed after a lost
/// grant) reaches the holder through the store and is spent once; the older one still in the
/// holder's configuration is never spent again, and neither node hands it back.
#[test]
fn a_new_bootstrap_token_on_any_node_reaches_the_holder() {
    let mut fleet = Fleet::start(60);
    let own_bootstrap = fleet.rotating("30s").replace(
        &format!("{}/bootstrap.refresh", fleet.shared.path().display()),
        "@DIR@/bootstrap.refresh",
    );
    let mut nodes: Vec<Node> = (1..=2)
        .map(|i| fleet.node(&format!("node-{i}"), "2s", &own_bootstrap))
        .collect();
    let first = std::fs::read_to_string(fleet.path("bootstrap.refresh")).unwrap();
    for node in &mut nodes {
        std::fs::write(node.r.path("bootstrap.refresh"), &first).unwrap();
        node.start();
    }
    let seeded = fleet.generation_above(0, Duration::from_secs(15));
    let holder = seeded.holder.clone().unwrap();
    let follower = nodes.iter().position(|n| n.name != holder).unwrap();
    let leader = 1 - follower;
    eventually(
        "the follower holds the token",
        Duration::from_secs(10),
        || {
            (nodes[follower].token().is_some() && nodes[follower].token() == nodes[leader].token())
                .then_some(())
        },
    );

    let second = fleet.oidc.grant(CLIENT);
    std::fs::write(
        nodes[follower].r.path("bootstrap.refresh"),
        &second.refresh_token,
    )
    .unwrap();
    let requests = fleet.refreshes();
    assert_success(&nodes[follower].r.run(&["rotate", "shared"]));
    // Handed over (one generation), then spent by the holder (another).
    let spent = fleet.generation_above(seeded.generation + 1, Duration::from_secs(15));
    assert_eq!(spent.updated_by.as_deref(), Some(holder.as_str()));
    assert_eq!(fleet.refreshes(), requests + 1);
    eventually(
        "the holder stored the new grant",
        Duration::from_secs(10),
        || {
            let state = nodes[leader].r.state("shared");
            let fingerprint = state["bootstrap_fingerprint"].as_str()?.to_owned();
            (fingerprint == crate::common::fingerprint(&second.refresh_token)).then_some(())
        },
    );
    // Both configurations stay as they are: the holder's older token is never spent again,
    // and the follower does not hand its own over twice.
    let mut generation = spent.generation;
    for node in [leader, follower] {
        assert_success(&nodes[node].r.run(&["rotate", "shared"]));
        let next = fleet.generation_above(generation, Duration::from_secs(15));
        assert_eq!(next.generation, generation + 1, "one refresh, no hand-over");
        generation = next.generation;
    }
    assert_eq!(
        fleet.invalid_grants(),
        0,
        "an old bootstrap token was spent again"
    );
    fleet.finish(&mut nodes);
}

/// Runs openssl with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): apt-get install openssl"));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`NAME.ca.pem`) and, with `server`, a certificate for localhost and 127.0.0.1 signed
/// by it (`server.crt`, `server.key`).
fn make_ca(dir: &std::path::Path, name: &str, server: bool) {
    let ca = format!("{name}.ca");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ],
    );
    if server {
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server.crt",
            ],
        );
    }
}

/// The store over TLS as libpq means `sslmode`: with a server that accepts TLS connections
/// only, `verify-full` against the right CA connects, against another CA or for a name the
/// certificate does not hold it is refused, `require` connects without checking, and
/// `disable` is turned away by the server.
#[test]
fn the_store_over_tls_honours_sslmode() {
    let fleet = Fleet::start(60);
    let dir = fleet.path("tls");
    std::fs::create_dir(&dir).unwrap();
    make_ca(&dir, "right", true);
    make_ca(&dir, "other", false);
    // The server's certificate and key in its data directory, as its user; TLS only.
    let data = &fleet.cluster.data;
    for file in ["server.crt", "server.key"] {
        std::fs::copy(dir.join(file), data.join(file)).unwrap();
        if let Some((uid, gid)) = fleet.cluster.run_as {
            nix::unistd::chown(&data.join(file), Some(uid), Some(gid)).unwrap();
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let hba = std::fs::read_to_string(data.join("pg_hba.conf")).unwrap();
    let tls_only: String = hba
        .lines()
        .map(|line| match line.strip_prefix("host ") {
            Some(rest) => format!("hostssl {rest}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    std::fs::write(data.join("pg_hba.conf"), tls_only).unwrap();
    fleet.cluster.admin_sql("ALTER SYSTEM SET ssl = on");
    fleet.cluster.admin_sql("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));

    let port = fleet.cluster.port;
    let base = |host: &str| format!("postgres://app:fleet-store-pw@{host}:{port}/fleet");
    let right = dir.join("right.ca.pem").display().to_string();
    let other = dir.join("other.ca.pem").display().to_string();
    let cases = [
        (
            format!(
                "{}?sslmode=verify-full&sslrootcert={right}",
                base("localhost")
            ),
            None,
        ),
        (
            format!(
                "{}?sslmode=verify-full&sslrootcert={right}",
                base("127.0.0.1")
            ),
            None,
        ),
        (format!("{}?sslmode=require", base("127.0.0.1")), None),
        (
            format!(
                "{}?sslmode=verify-full&sslrootcert={other}",
                base("localhost")
            ),
            Some("certificate"),
        ),
        (
            format!(
                "{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={right}",
                base("db.invalid")
            ),
            Some("certificate"),
        ),
        (
            format!("{}?sslmode=disable", base("127.0.0.1")),
            Some("no pg_hba.conf entry"),
        ),
    ];
    let credentials = fleet.rotating("30s");
    for (i, (url, refused)) in cases.iter().enumerate() {
        let file = format!("tls-{i}.url");
        std::fs::write(fleet.path(&file), url).unwrap();
        let mut node = fleet.node_with(
            &format!("tls-{i}"),
            "5s",
            &credentials,
            "",
            &file,
            "store.key",
        );
        let check = node.r.run(&["check", "--online"]);
        let text = crate::common::stderr(&check);
        match refused {
            None => {
                assert_success(&check);
                let out = stdout(&check);
                assert!(
                    out.contains(&format!(":{port}/fleet: empty")),
                    "{url}: {out}"
                );
            }
            Some(why) => {
                assert!(!check.status.success(), "{url}: connected");
                assert!(
                    text.contains(why) && text.contains("store unreachable"),
                    "{url}: {text}"
                );
                assert!(
                    !text.contains("fleet-store-pw"),
                    "the password in an error: {text}"
                );
            }
        }
    }
}

/// A follower whose holder is stopped (SIGSTOP, its lease not yet lapsed) answers
/// `rotate --all` for its shared credentials with a clear error after a bounded wait, and
/// meanwhile holds neither their locks nor its refresh permits: its local credentials,
/// refreshed every 2 s, keep their schedule although the shared ones outnumber the permits.
#[test]
fn a_follower_waiting_for_a_stopped_holder_stalls_nothing_else() {
    let mut fleet = Fleet::start(150);
    std::fs::write(fleet.path("cc.secret"), "cc-secret-secret").unwrap();
    let client_credentials = |name: &str, extra: &str| {
        format!(
            r#"[credentials.{name}]
source = {{ type = "oauth-client-credentials", token_url = "{url}", client_id = "cc-secret", client_secret = {{ file = "{shared}/cc.secret" }}, scopes = ["api"] }}
{extra}
jitter = "0s"
timeout = "1s"
retry = {{ initial = "1s", max = "2s" }}
targets = [ {{ type = "dotenv", path = "@DIR@/app/{name}.env", key = "TOKEN" }} ]
"#,
            url = fleet.oidc.token_endpoint,
            shared = fleet.shared.path().display()
        )
    };
    let mut credentials = String::new();
    for i in 1..=4 {
        credentials += &client_credentials(&format!("shared{i}"), "");
    }
    credentials += &client_credentials(
        "local",
        "shared = false\nrefresh_at = \"2s\"\nmin_remaining = \"1s\"",
    );
    let permits = "max_concurrent_refreshes = 2";
    let lease = "30s";
    let shared_rows = ["shared1", "shared2", "shared3", "shared4"];
    let mut holder = fleet.node_with(
        "holder",
        lease,
        &credentials,
        permits,
        "store.url",
        "store.key",
    );
    holder.start();
    let db = &mut fleet.db;
    eventually(
        "the holder holds every shared lease",
        Duration::from_secs(20),
        || {
            shared_rows
                .iter()
                .all(|name| {
                    db.row(name).is_some_and(|row| {
                        row.holder.as_deref() == Some("holder") && row.generation > 0
                    })
                })
                .then_some(())
        },
    );
    let mut follower = fleet.node_with(
        "follower",
        lease,
        &credentials,
        permits,
        "store.url",
        "store.key",
    );
    follower.start();
    let local_token = |node: &Node| {
        std::fs::read_to_string(node.r.path("app/local.env"))
            .ok()
            .filter(|text| text.starts_with("TOKEN="))
    };
    eventually("the follower's targets", Duration::from_secs(20), || {
        let followed = shared_rows
            .iter()
            .all(|name| follower.r.path(&format!("app/{name}.env")).exists());
        (followed && local_token(&follower).is_some()).then_some(())
    });

    holder.daemon().signal(Signal::SIGSTOP);
    let asked = Instant::now();
    let mut command = follower.r.command(&["rotate", "--all"]);
    let rotate = std::thread::spawn(move || command.output().unwrap());
    let mut seen = std::collections::BTreeSet::new();
    while !rotate.is_finished() {
        if let Some(token) = local_token(&follower) {
            seen.insert(token);
        }
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "rotate --all did not answer within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let waited = asked.elapsed();
    let output = rotate.join().unwrap();
    follower.r.record(&output);
    let status = output.status;
    let printed = stdout(&output);
    holder.daemon().signal(Signal::SIGCONT);
    eprintln!(
        "fleet: rotate --all on a follower of a stopped holder answered after {} ms; the local credential rotated {} times meanwhile",
        waited.as_millis(),
        seen.len()
    );
    assert_eq!(status.code(), Some(1), "{printed}");
    for name in shared_rows {
        let line = printed
            .lines()
            .find(|line| line.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{printed}"));
        assert!(
            line.contains("did not rotate it within"),
            "{name} does not say the holder did not answer: {line}"
        );
    }
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("local:") && !l.contains("failed")),
        "{printed}"
    );
    // The wait is 2 × timeout + half a lease (17 s): every 2 s meanwhile, a local refresh.
    assert!(
        seen.len() >= 5,
        "the local credential kept {} tokens in {waited:?}: its refreshes waited for permits",
        seen.len()
    );
    let mut nodes = [holder, follower];
    fleet.finish(&mut nodes);
}

impl Db {
    /// Sends `statements` as a role of its own, e.g. one that may only log in.
    fn as_role(&self, role: &str, password: &str, statements: &str) {
        let url = self
            .url
            .replacen("app:fleet-store-pw", &format!("{role}:{password}"), 1);
        let connected = self
            .runtime
            .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls));
        let (client, connection) = connected.unwrap();
        self.runtime.spawn(connection);
        self.runtime
            .block_on(client.batch_execute(statements))
            .unwrap();
    }
}

/// Two nodes with a 30 s lease (a round every 10 s): `holder` first, holding the lease of
/// `shared` at its first commit, then `follower`, holding the same token.
fn holder_and_follower(fleet: &mut Fleet, credentials: &str, daemon: [&str; 2]) -> [Node; 2] {
    let mut holder = fleet.node_with(
        "holder",
        "30s",
        credentials,
        daemon[0],
        "store.url",
        "store.key",
    );
    holder.start();
    fleet.generation_above(0, Duration::from_secs(20));
    let mut follower = fleet.node_with(
        "follower",
        "30s",
        credentials,
        daemon[1],
        "store.url",
        "store.key",
    );
    follower.start();
    eventually(
        "the follower holds the token",
        Duration::from_secs(20),
        || (follower.token().is_some() && follower.token() == holder.token()).then_some(()),
    );
    [holder, follower]
}

/// Any database role may send `NOTIFY refreshd, …` with any payload. A role that may only
/// log in floods forged rotate requests and generations (huge, negative, garbage): no token
/// request comes of it, the follower still follows a real commit within a second (not at its
/// next round, 10 s later), and `rotate` on the follower still reaches the holder.
#[test]
fn forged_notifications_are_hints_never_orders() {
    let mut fleet = Fleet::start(150);
    fleet
        .cluster
        .admin_sql("CREATE ROLE intruder LOGIN PASSWORD 'intruder-pw'");
    let credentials = fleet.rotating("100s");
    let [mut holder, mut follower] = holder_and_follower(&mut fleet, &credentials, ["", ""]);
    let generation = fleet.db.row("shared").unwrap().generation;
    let requests = fleet.refreshes();
    let mut flood = String::new();
    for i in 0..200 {
        for payload in [
            format!("a {} shared", 9_223_372_036_854_775_807i64 - i),
            format!("g {} shared", 9_223_372_036_854_775_807i64 - i),
            format!("a -{i} shared"),
            format!("g -{i} shared"),
            format!("a x{i}x shared"),
            format!("g 1e99{i} shared"),
            format!("a {i}"),
            format!("z {i} shared"),
        ] {
            flood += &format!("NOTIFY refreshd, '{payload}';\n");
        }
    }
    fleet.db.as_role("intruder", "intruder-pw", &flood);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        fleet.refreshes(),
        requests,
        "forged notifications made token requests"
    );
    assert_eq!(fleet.db.row("shared").unwrap().generation, generation);

    // A real commit (a rotate on the holder) reaches the follower at once.
    assert_success(&holder.r.run(&["rotate", "shared"]));
    let committed = Instant::now();
    let followed = eventually("the follower follows", Duration::from_secs(15), || {
        (follower.token() == holder.token()).then(|| committed.elapsed())
    });
    eprintln!(
        "fleet: after 1,600 forged notifications, a commit reached the follower in {} ms",
        followed.as_millis()
    );
    assert!(followed < Duration::from_secs(1), "{followed:?}");

    // A rotate on the follower still reaches the holder.
    let before = fleet.db.row("shared").unwrap().generation;
    let rotated = follower.r.run(&["rotate", "shared"]);
    assert_success(&rotated);
    let after = fleet.db.row("shared").unwrap();
    assert!(after.generation > before, "{after:?}");
    assert_eq!(after.updated_by.as_deref(), Some("holder"));
    assert_eq!(fleet.invalid_grants(), 0);
    let mut nodes = [holder, follower];
    fleet.finish(&mut nodes);
}

/// A provider that takes 2.5 s to answer, with a 3 s lease: the round never waits on the row
/// a refresh holds, so the store never looks down and no lease is dropped.
#[test]
fn a_slow_provider_never_makes_the_store_look_down() {
    let mut fleet = Fleet::start(150);
    let stub = crate::common::stub::Stub::start(
        &fleet.oidc.token_endpoint,
        crate::common::stub::Mode::Slow(Duration::from_millis(2500)),
    );
    let credentials = fleet
        .rotating("4s")
        .replace(&fleet.oidc.token_endpoint, &stub.url);
    let port = crate::common::pg::free_port();
    let metrics = format!("metrics_listen = \"127.0.0.1:{port}\"");
    let mut holder = fleet.node_with(
        "holder",
        "3s",
        &credentials,
        &metrics,
        "store.url",
        "store.key",
    );
    holder.start();
    let first = fleet.generation_above(0, Duration::from_secs(20));
    let http = reqwest::blocking::Client::new();
    let until = Instant::now() + Duration::from_secs(20);
    let mut samples = 0;
    while Instant::now() < until {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(
            text.contains("\nrefreshd_store_up 1\n"),
            "the store looked down:\n{text}"
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let last = fleet.db.row("shared").unwrap();
    let output = holder.daemon().output();
    assert!(
        !output.contains("no answer within") && !output.contains("store query failed"),
        "{output}"
    );
    assert!(
        last.generation >= first.generation + 3,
        "refreshes stalled: {first:?} → {last:?}"
    );
    assert_eq!(
        last.holder.as_deref(),
        Some("holder"),
        "the lease was dropped"
    );
    eprintln!(
        "fleet: a 2.5 s provider with a 3 s lease: {} commits in 20 s, store up in {samples} of {samples} samples",
        last.generation - first.generation
    );
    assert_eq!(fleet.invalid_grants(), 0);
    let mut nodes = [holder];
    fleet.finish(&mut nodes);
}

/// The database goes down (an immediate stop) while the holder's token request is on its way
/// and stays down longer than a lease plus the request timeout, then comes back: 20 times,
/// with 3 nodes. The holder keeps the answer it could not commit and commits it when the
/// database is back; no other node takes the lease and spends the refresh token meanwhile
/// (its intent, committed before the request, says it may hold an answer), so the provider
/// never sees a refresh token spent twice.
#[test]
fn a_database_restart_during_a_refresh_loses_no_grant() {
    use crate::common::stub::{Mode, Stub};
    let mut fleet = Fleet::start(150);
    let stub = Stub::start(
        &fleet.oidc.token_endpoint,
        Mode::Slow(Duration::from_millis(1500)),
    );
    let credentials = fleet
        .rotating("3s")
        .replace(&fleet.oidc.token_endpoint, &stub.url);
    let mut nodes = fleet.started(3, "2s", &credentials);
    let mut seen = fleet
        .generation_above(0, Duration::from_secs(20))
        .generation;
    for restart in 1..=20 {
        let before = stub.received();
        eventually(
            &format!("a token request on its way before restart {restart}"),
            Duration::from_secs(30),
            || (stub.received() > before).then_some(()),
        );
        fleet.cluster.stop();
        // Longer than the lease (2 s) plus the request timeout (3 s).
        std::thread::sleep(Duration::from_secs(6));
        fleet.cluster.start_again();
        seen = fleet
            .generation_above(seen, Duration::from_secs(30))
            .generation;
        assert_eq!(
            fleet.invalid_grants(),
            0,
            "restart {restart}: a refresh token was spent twice"
        );
    }
    let newest = fleet.generation_above(seen, Duration::from_secs(30));
    eventually(
        "every node holds the newest token",
        Duration::from_secs(20),
        || {
            let tokens: Vec<Option<String>> = nodes.iter().map(Node::token).collect();
            (tokens[0].is_some() && tokens.windows(2).all(|w| w[0] == w[1])).then_some(())
        },
    );
    eprintln!(
        "fleet: 20 database restarts during a refresh, generation {} by {:?}, invalid_grant {}",
        newest.generation,
        newest.updated_by,
        fleet.invalid_grants()
    );
    assert_eq!(fleet.invalid_grants(), 0);
    fleet.finish(&mut nodes);
}

/// A credential whose refresh token came from the fleet store, then set to `shared = false`
/// on that host: the host refuses to spend the fleet's refresh token (a clear error, the
/// provider not asked), where it used to spend the fleet's grant a second time.
#[test]
fn shared_false_never_spends_the_fleets_refresh_token() {
    let fleet = Fleet::start(150);
    let credentials = fleet.rotating("100s");
    let mut node = fleet.node("solo", "3s", &credentials);
    assert_success(&node.r.run(&["once"]));
    assert!(
        node.r.state("shared")["store_generation"]
            .as_u64()
            .is_some()
    );
    let config = std::fs::read_to_string(&node.r.config).unwrap();
    let local = config.replace(
        "[credentials.shared]\n",
        "[credentials.shared]\nshared = false\n",
    );
    assert_ne!(config, local);
    std::fs::write(&node.r.config, local).unwrap();
    let requests = fleet.refreshes();
    let output = node.r.run(&["once", "--force"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let said = crate::common::stderr(&output);
    assert!(said.contains("came from the fleet store"), "{said}");
    assert_eq!(
        fleet.refreshes(),
        requests,
        "the fleet's refresh token was spent"
    );
    assert_eq!(fleet.invalid_grants(), 0);
    node.r.assert_no_issued_tokens(&fleet.oidc);
}

/// `status --nodes` only reads the store: on a database no node has joined it creates no
/// table and says so; beside a running node it lists that node and adds no row of its own.
#[test]
fn listing_the_nodes_writes_nothing() {
    let fleet = Fleet::start(60);
    let credentials = fleet.rotating("30s");
    let mut looker = fleet.node("looker", "5s", &credentials);
    let listed = looker.r.run(&["status", "--nodes"]);
    let text = crate::common::stderr(&listed);
    assert_eq!(listed.status.code(), Some(3), "{text}");
    assert!(
        text.contains("the store has no refreshd schema yet"),
        "{text}"
    );
    let tables = "SELECT count(*) FROM pg_class WHERE relname LIKE 'refreshd%'";
    assert_eq!(fleet.cluster.query("fleet", tables), "0");

    let mut running = fleet.node("running", "5s", &credentials);
    running.start();
    running
        .daemon()
        .wait_for("INFO ready", Duration::from_secs(20));
    let listed = looker.r.run(&["status", "--nodes"]);
    assert_success(&listed);
    let text = stdout(&listed);
    assert!(text.contains("running: refreshd "), "{text}");
    assert!(!text.contains("looker"), "{text}");
    assert_eq!(
        fleet
            .cluster
            .query("fleet", "SELECT string_agg(name, ',') FROM refreshd_nodes"),
        "running"
    );
    let mut nodes = [running];
    fleet.finish(&mut nodes);
}

/// One daemon per node name: a second `run` claiming a live node's name refuses to start,
/// naming the first's host and pid, and takes nothing; a one-shot command still acts as the
/// node beside its daemon; once the first is gone (killed: its pid no longer runs on this
/// host) the name is free, and the first, started again, is refused in its turn.
#[test]
fn a_second_daemon_with_a_live_nodes_name_refuses_to_start() {
    let fleet = Fleet::start(60);
    let credentials = fleet.rotating("30s");
    let mut first = fleet.node("twin", "5s", &credentials);
    first.start();
    first
        .daemon()
        .wait_for("INFO ready", Duration::from_secs(20));
    let first_pid = first.daemon().pid();
    let mut second = fleet.node("twin", "5s", &credentials);
    let refused = second.r.run(&["run"]);
    assert!(!refused.status.success(), "a second daemon started");
    let said = crate::common::stderr(&refused);
    assert!(
        said.contains("node name twin is in use by another live refreshd (host ")
            && said.contains(&format!(", pid {first_pid})")),
        "{said}"
    );
    assert!(
        !second.r.path("app/.env").exists(),
        "the refused daemon wrote a target"
    );
    assert_success(&second.r.run(&["once"]));

    first.kill();
    second.start();
    second
        .daemon()
        .wait_for("INFO ready", Duration::from_secs(20));
    let again = first.r.run(&["run"]);
    assert!(
        !again.status.success(),
        "the first daemon started beside the second"
    );
    let said = crate::common::stderr(&again);
    assert!(
        said.contains(&format!(", pid {})", second.daemon().pid())),
        "{said}"
    );
    // A clean stop frees the name at once.
    second.stop();
    first.start();
    first
        .daemon()
        .wait_for("INFO ready", Duration::from_secs(20));
    assert_eq!(fleet.invalid_grants(), 0);
    fleet.finish(&mut [first, second]);
}
