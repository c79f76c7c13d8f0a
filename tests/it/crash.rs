//! Crash safety (design §6, §7): `refreshd run` against oidc-provider with rotating refresh
//! tokens, SIGKILLed at random moments 200 times and started again each time. The targets
//! are always whole (the old token or the new one, never a torn file), no temp file stays
//! behind, and a grant is lost only when a kill came while the provider's answer was on
//! its way (the provider had rotated the refresh token, refreshd had not yet stored it):
//! those moments are counted and the losses must not exceed them. The same again with
//! sealed state (`[daemon] state_key`, 100 kills): the same guarantees, every start opens
//! what the killed daemon sealed, and no issued token is readable in the state directory.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::{Lcg, Oidc, Refreshd, eventually, jwt_claims, rt_basic_source};

const KILLS: usize = 200;
/// Fewer with sealed state: a kill costs about 0.8 s of wall time (166 s for 200, measured),
/// and sealing changes nothing of when a state is written (the bytes are sealed before the
/// temp file is; the rename is the same), only what start-up and every write read and
/// write, which 100 kills cover many times over.
const KILLS_SEALED: usize = 100;
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn sigkill_at_random_moments_never_tears_a_target_or_loses_a_grant_it_stored() {
    crash(false, KILLS);
}

#[test]
fn sigkill_at_random_moments_with_sealed_state() {
    crash(true, KILLS_SEALED);
}

/// What a sealed state file starts with.
const MAGIC: &[u8] = b"refreshd sealed state v1\n";

fn crash(sealed: bool, kills: usize) {
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 60);
    let dir = r.dir.path().display().to_string();
    std::fs::create_dir(r.path("app")).unwrap();
    std::fs::write(r.path("app/.env"), "# app\n").unwrap();
    let (_, source) = rt_basic_source(&r, &oidc);
    let state_key = if sealed {
        std::fs::write(
            r.path("state.key"),
            crate::common::refreshd_output(&["store", "init-key"]),
        )
        .unwrap();
        format!("state_key = {{ file = \"{dir}/state.key\" }}\n")
    } else {
        String::new()
    };
    // Refresh about every two seconds, so that most runs are killed near a refresh.
    r.write_config(&format!(
        r#"{state_key}control_socket = "{dir}/run/control.sock"

[credentials.api]
refresh_at = "2s"
min_remaining = "1s"
jitter = "0s"
retry = {{ initial = "1s", max = "1s" }}
{source}
targets = [
  {{ type = "dotenv", path = "{dir}/app/.env", key = "API_TOKEN" }},
  {{ type = "file", path = "{dir}/app/token" }},
]
"#,
    ));
    let seed = std::process::id() as u64;
    let mut moments = Lcg(seed);
    let (mut in_flight, mut lost, mut rotations) = (0usize, 0usize, 0usize);
    for kill in 0..kills {
        let grants_before = oidc.count("by_grant", "refresh_token");
        let mut daemon = r.spawn(&["run"]);
        std::thread::sleep(Duration::from_millis(moments.below(1500)));
        daemon.signal(Signal::SIGKILL);
        let _ = daemon.wait_exit(WAIT);
        let output = daemon.output();
        let rotated = output.matches("INFO rotated credential=api").count();
        let failed = output.matches("refresh failed").count();
        let spent = (oidc.count("by_grant", "refresh_token") - grants_before) as usize;
        rotations += rotated;
        // A request the provider answered that the daemon neither stored (and logged) nor
        // saw fail: the kill came while that answer was on its way.
        if spent > rotated + failed {
            in_flight += 1;
        }
        if output.contains("needs_login=true") {
            // The refresh token on file was spent by an answer that never arrived: the
            // grant is gone. Count it, and carry on with a new one (it takes over).
            lost += 1;
            rt_basic_source(&r, &oidc);
        }
        r.record_daemon(&daemon);
        assert_whole(&r, kill);
    }
    // Started once more, it cleans up after the last kill and rotates. The last kill may
    // itself have come mid-answer: then this start finds the grant gone, like any other.
    let mut daemon = r.spawn(&["run"]);
    let first = eventually("a rotation or a dead grant", WAIT, || {
        let output = daemon.output();
        (output.contains("rotated credential=api") || output.contains("needs_login=true"))
            .then_some(output)
    });
    if !first.contains("rotated credential=api") {
        lost += 1;
        daemon.terminate(WAIT);
        r.record_daemon(&daemon);
        rt_basic_source(&r, &oidc);
        daemon = r.spawn(&["run"]);
        daemon.wait_for("rotated credential=api", WAIT);
    }
    daemon.terminate(WAIT);
    r.record_daemon(&daemon);
    assert_whole(&r, kills);
    let litter: Vec<String> = std::fs::read_dir(r.path("app"))
        .unwrap()
        .chain(std::fs::read_dir(r.state_dir()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".refreshd-tmp"))
        .collect();
    if sealed {
        assert_sealed(&r, &oidc);
    }
    println!(
        "crash test{}: {kills} SIGKILLs (seed {seed}), {rotations} rotations logged, {in_flight} kills while an answer was on its way, {lost} grants lost, 0 torn targets, {} temp files left",
        if sealed { " (sealed state)" } else { "" },
        litter.len()
    );
    assert!(litter.is_empty(), "temp files left behind: {litter:?}");
    assert!(
        lost <= in_flight,
        "{lost} grants lost but only {in_flight} kills came while an answer was on its way"
    );
    assert!(
        rotations > kills / 4,
        "too few rotations ({rotations}) to prove anything"
    );
    r.assert_no_issued_tokens(&oidc);
}

/// Every state file is sealed, and no token the provider issued is readable in any file
/// of the state directory.
fn assert_sealed(r: &Refreshd, oidc: &Oidc) {
    let state = std::fs::read(r.state_dir().join("api.json")).unwrap();
    assert!(state.starts_with(MAGIC), "api.json is not sealed");
    let issued = oidc.issued();
    for entry in std::fs::read_dir(r.state_dir()).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        for token in &issued {
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "an issued token is readable in {}",
                entry.path().display()
            );
        }
    }
}

/// The targets hold a whole token, or nothing yet: never a torn or mixed file.
fn assert_whole(r: &Refreshd, kill: usize) {
    let env = std::fs::read_to_string(r.path("app/.env")).unwrap();
    if env != "# app\n" {
        let token = env
            .strip_prefix("# app\nAPI_TOKEN=")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("after kill {kill}, a torn .env: {env:?}"));
        assert_eq!(
            jwt_claims(token)["client_id"],
            "rt-basic",
            "after kill {kill}"
        );
    }
    if let Ok(file) = std::fs::read_to_string(r.path("app/token")) {
        let token = file
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("after kill {kill}, a torn token file: {file:?}"));
        assert_eq!(
            jwt_claims(token)["client_id"],
            "rt-basic",
            "after kill {kill}"
        );
    }
}
