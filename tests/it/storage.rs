//! A full disk under the state directory (design §7): a rotated refresh token the disk
//! refuses is kept in memory and is what the next refresh spends, never the older one on
//! file; the credential shows `unsaved`; its lock stays held so that a `once` from a timer
//! cannot spend the older token meanwhile; once the disk has room the state is stored.
//! Needs root: it mounts a small tmpfs over the state directory, and removes it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    Oidc, Refreshd, assert_success, fingerprint, require_root, rt_basic_source, stderr, stdout,
};

const WAIT: Duration = Duration::from_secs(30);

/// A tmpfs of `size` mounted at a directory for the test's lifetime.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("mount(8) runs");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// Fills the file system until it refuses another byte.
    fn fill(&self) {
        let mut filler = std::fs::File::create(self.path.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while filler.write_all(&block).is_ok() {}
        let _ = filler.write_all(&[0]);
        let _ = filler.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn status_json(r: &mut Refreshd) -> (Option<i32>, Value) {
    let output = r.run(&["status", "--json"]);
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}: {}", stderr(&output)));
    (output.status.code(), json)
}

#[test]
fn a_full_state_directory_loses_no_grant() {
    require_root("it mounts a small tmpfs as the state directory");
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 600);
    let dir = r.dir.path().display().to_string();
    std::fs::create_dir(r.path("app")).unwrap();
    let (grant, source) = rt_basic_source(&r, &oidc);
    let tmpfs = Tmpfs::mount(&r.state_dir(), "256k");
    r.write_config(&format!(
        r#"control_socket = "{dir}/run/control.sock"

[credentials.api]
refresh_at = "9m"
min_remaining = "1m"
jitter = "0s"
retry = {{ initial = "1s", max = "2s" }}
{source}
targets = [ {{ type = "file", path = "{dir}/app/token" }} ]
"#,
    ));
    let mut daemon = r.spawn(&["run"]);
    daemon.wait_for("rotated credential=api", WAIT);

    tmpfs.fill();
    // The provider rotates the refresh token; the disk refuses the new state.
    let rotate = r.run(&["rotate", "api"]);
    assert_eq!(rotate.status.code(), Some(1), "{}", stderr(&rotate));
    let said = String::from_utf8_lossy(&rotate.stdout).into_owned();
    assert!(
        said.contains("could not be stored (kept in memory)"),
        "{said}"
    );
    let (code, json) = status_json(&mut r);
    assert_eq!(code, Some(1));
    assert_eq!(json["credentials"]["api"]["health"], "unsaved", "{json:#}");
    // Why, as a cause a program can branch on: the disk is full, not a permission problem.
    assert_eq!(
        json["credentials"]["api"]["unsaved"], "no_space",
        "{json:#}"
    );
    assert_eq!(
        json["credentials"]["api"]["last_error"]["cause"], "state",
        "{json:#}"
    );
    let text = stdout(&r.run(&["status"]));
    assert!(text.contains("api: unsaved: no space ("), "{text}");
    let kept = daemon.wait_for("kept in memory", WAIT);
    assert!(kept.contains("newest refresh token is lost"), "{kept}");
    // The new token reached the target all the same.
    let written = std::fs::read_to_string(r.path("app/token")).unwrap();
    assert_eq!(
        json["credentials"]["api"]["fingerprint"],
        fingerprint(written.trim())
    );

    // The next refresh spends the refresh token held in memory: the provider revokes the
    // whole grant when a rotated one is reused, so invalid_grant would show here.
    let again = r.run(&["rotate", "api"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("api: rotated"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(
        oidc.count("by_error", "invalid_grant"),
        0,
        "{}",
        oidc.stats()
    );

    // A `once` from a timer waits for the daemon's lock instead of spending the older
    // refresh token on file.
    let mut once = r.command(&["once", "--force", "api"]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        once.try_wait().unwrap().is_none(),
        "once did not wait for the unsaved credential's lock"
    );
    tmpfs.free();
    daemon.wait_for("stored now", WAIT);
    let status = wait_exit(&mut once);
    assert!(status.success(), "once after the disk recovered: {status}");
    assert_eq!(
        oidc.count("by_error", "invalid_grant"),
        0,
        "{}",
        oidc.stats()
    );
    assert_eq!(
        oidc.count("by_grant", "refresh_token"),
        4,
        "{}",
        oidc.stats()
    );
    let (code, json) = status_json(&mut r);
    assert_eq!(code, Some(0), "{json:#}");

    daemon.terminate(WAIT);
    r.record_daemon(&daemon);
    // After all that, the state on disk holds the newest refresh token: one more pass.
    let last = r.run(&["once", "--force", "api"]);
    assert_success(&last);
    assert_eq!(
        oidc.count("by_error", "invalid_grant"),
        0,
        "{}",
        oidc.stats()
    );
    r.assert_no_secrets(&[grant.refresh_token.as_str(), "rt-basic-secret"]);
    r.assert_no_issued_tokens(&oidc);
    drop(tmpfs);
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "once did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `write = "in-place"` on a full disk: the space for the new content is reserved before a
/// byte changes, so the file keeps its old content whole instead of ending truncated.
#[test]
fn an_in_place_write_on_a_full_disk_leaves_the_old_file_whole() {
    require_root("it mounts a small tmpfs for the target");
    let mut r = Refreshd::new();
    let disk = Tmpfs::mount(&r.path("mnt"), "64k");
    let target = r.path("mnt/app.env");
    let old = format!("# settings\nLONG={}\nTOKEN=old\n", "x".repeat(6000));
    std::fs::write(&target, &old).unwrap();
    // A token far longer than what is left once the disk is full.
    let token = "t".repeat(40_000);
    let script = r.path("token.sh");
    std::fs::write(&script, format!("#!/bin/sh\nprintf '%s' '{token}'\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    r.write_config(&format!(
        "[credentials.api]\nsource = {{ type = \"command\", argv = [\"{}\"], format = \"plain\" }}\ntargets = [ {{ type = \"dotenv\", path = \"{}\", key = \"TOKEN\", write = \"in-place\" }} ]\n",
        script.display(),
        target.display()
    ));
    disk.fill();
    let once = r.run(&["once"]);
    assert_eq!(once.status.code(), Some(1), "{}", stderr(&once));
    assert!(
        stderr(&once).contains("rewrite in place"),
        "{}",
        stderr(&once)
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        old,
        "the file was damaged"
    );
    disk.free();
    let once = r.run(&["once", "--force"]);
    assert_success(&once);
    assert!(
        std::fs::read_to_string(&target)
            .unwrap()
            .ends_with(&format!("TOKEN={token}\n"))
    );
    drop(disk);
}

/// `once` on a full state disk after the provider rotated: it keeps trying to store the
/// state for a minute, then exits 4 and says what is lost, and the targets have the token.
#[test]
fn once_on_a_full_state_disk_retries_then_exits_4() {
    require_root("it mounts a small tmpfs as the state directory");
    let mut r = Refreshd::new();
    let oidc = Oidc::start(r.dir.path(), 600);
    let dir = r.dir.path().display().to_string();
    let (grant, source) = rt_basic_source(&r, &oidc);
    let tmpfs = Tmpfs::mount(&r.state_dir(), "64k");
    r.write_config(&format!(
        "[credentials.api]\n{source}\ntargets = [ {{ type = \"file\", path = \"{dir}/token\" }} ]\n"
    ));
    // The lock file exists before the disk fills (locks need no space afterwards).
    std::fs::create_dir_all(r.state_dir()).unwrap();
    std::fs::write(r.state_dir().join("api.lock"), "").unwrap();
    tmpfs.fill();
    let once = r.run(&["once"]);
    assert_eq!(once.status.code(), Some(4), "{}", stderr(&once));
    assert!(
        stderr(&once).contains("could not be stored"),
        "{}",
        stderr(&once)
    );
    assert!(r.path("token").exists(), "the target did not get the token");
    r.assert_no_secrets(&[grant.refresh_token.as_str(), "rt-basic-secret"]);
    drop(tmpfs);
}
