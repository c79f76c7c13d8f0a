//! The config file as root sees it (design §7), like sshd's `StrictModes`: a config that
//! anyone but root could have changed is refused by `check` (2) and `run` (78), since its
//! commands would run as root; secret files in `/proc` or of the wrong kind are config
//! errors, and one that others can read is a warning, once. Needs root: it gives files to
//! uid 65534 (nobody).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use crate::common::{Refreshd, chown, require_root, stderr};

const NOBODY: u32 = 65534;

fn out(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    )
}

fn mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `check` and `run` both refuse the config at `r.config`, saying `why`.
fn refused(r: &mut Refreshd, why: &str) {
    for (command, code) in [("check", 2), ("run", 78), ("once", 78)] {
        let output = r.run(&[command]);
        let said = out(&output);
        assert_eq!(output.status.code(), Some(code), "{command}: {said}");
        assert!(said.contains(why), "{command}: {said}");
        assert!(said.contains("refreshd runs as root"), "{command}: {said}");
    }
}

fn accepted(r: &mut Refreshd) {
    let output = r.run(&["check"]);
    assert_eq!(output.status.code(), Some(0), "{}", out(&output));
}

#[test]
fn as_root_a_config_others_could_change_is_refused() {
    require_root("it gives the config to uid 65534");
    let mut r = Refreshd::new();
    mode(r.dir.path(), 0o755);
    r.write_config("");
    accepted(&mut r);
    let config = r.config.display().to_string();

    mode(&r.config, 0o664);
    refused(
        &mut r,
        &format!("{config} can be written by its group or others (mode 0664"),
    );
    mode(&r.config, 0o646);
    refused(&mut r, "can be written by its group or others (mode 0646");
    mode(&r.config, 0o644);

    chown(&r.config, NOBODY);
    refused(&mut r, &format!("{config} is owned by uid 65534, not root"));
    chown(&r.config, 0);

    // The directory above it, writable by a group; a sticky one (/tmp) is fine.
    mode(r.dir.path(), 0o775);
    refused(&mut r, "can be written by its group or others (mode 0775)");
    mode(r.dir.path(), 0o1777);
    accepted(&mut r);
    mode(r.dir.path(), 0o755);
    chown(r.dir.path(), NOBODY);
    refused(&mut r, "is owned by uid 65534, not root");
    chown(r.dir.path(), 0);
    accepted(&mut r);
}

#[test]
fn as_root_a_config_behind_another_users_symlink_is_refused() {
    require_root("it plants a link as uid 65534");
    let mut r = Refreshd::new();
    mode(r.dir.path(), 0o755);
    r.write_config("");
    let real = r.path("real.toml");
    std::fs::rename(&r.config, &real).unwrap();
    std::os::unix::fs::symlink(&real, &r.config).unwrap();
    accepted(&mut r);
    chown(&r.config, NOBODY);
    for (command, code) in [("check", 2), ("run", 78)] {
        let output = r.run(&[command]);
        let said = out(&output);
        assert_eq!(output.status.code(), Some(code), "{command}: {said}");
        assert!(
            said.contains("refused: a symlink owned by uid 65534"),
            "{command}: {said}"
        );
    }
}

/// A `command` credential whose program never runs here, with `client_secret` (an
/// `oauth-refresh` source) at `secret`, twice: the warning comes once.
fn secret_config(r: &Refreshd, secret: &str) -> String {
    let source = format!(
        "{{ type = \"oauth-refresh\", token_url = \"http://127.0.0.1:9/token\", client_id = \"c\", client_secret = {{ file = \"{secret}\" }}, refresh_token = \"x\" }}"
    );
    ["a", "b"]
        .iter()
        .map(|name| {
            format!(
                "[credentials.{name}]\nsource = {source}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n",
                r.path(&format!("{name}.token")).display()
            )
        })
        .collect()
}

#[test]
fn secret_files_in_proc_or_of_the_wrong_kind_are_refused_and_readable_ones_warned_about() {
    require_root("it gives a secret's group to uid 65534");
    let mut r = Refreshd::new();
    for (secret, why) in [
        ("/proc/self/environ", "is in /proc or /sys"),
        ("/dev/null", "/dev/null is a character device"),
    ] {
        r.write_config(&secret_config(&r, secret));
        mode(&r.config, 0o600);
        for (command, code) in [("check", 2), ("run", 78)] {
            let output = r.run(&[command]);
            let said = out(&output);
            assert_eq!(output.status.code(), Some(code), "{command}: {said}");
            assert!(said.contains(why), "{command}: {said}");
            assert!(
                said.contains("credentials.a.source.client_secret"),
                "{said}"
            );
        }
    }
    let secret = r.path("client.secret");
    std::fs::write(&secret, "client-secret-value\n").unwrap();
    r.write_config(&secret_config(&r, &secret.display().to_string()));
    mode(&r.config, 0o600);
    for (file_mode, group, warned) in [
        (0o644, 0, Some("can be read by everyone (mode 0644)")),
        (0o640, NOBODY, Some("can be read by its group (mode 0640)")),
        (0o640, 0, None),
        (0o600, NOBODY, None),
    ] {
        mode(&secret, file_mode);
        nix::unistd::chown(&secret, None, Some(nix::unistd::Gid::from_raw(group))).unwrap();
        let output = r.run(&["check"]);
        let said = stderr(&output);
        // A warning in the log's own format (JSON lines stay JSON), once.
        let warning = format!("secret file {} can be read", secret.display());
        match warned {
            Some(why) => {
                assert_eq!(said.matches(&warning).count(), 1, "{said}");
                assert!(said.contains("WARN"), "{said}");
                assert!(said.contains(why), "{said}");
                assert!(
                    said.contains(&format!("chmod 600 {}", secret.display())),
                    "{said}"
                );
            }
            None => assert!(!said.contains(&warning), "{said}"),
        }
    }
}
