//! Files a root refreshd reads on a user's behalf (design §7): `{ file = … }` secrets and
//! Google credentials files are read like targets, so an app user's symlink is not
//! followed, and a FIFO or `/dev/zero` is a quick, clear error instead of a hang or an
//! exhausted memory. Needs root: it plants links as uid 65534 (nobody).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{Refreshd, chown, require_root, stderr};

const NOBODY: u32 = 65534;
const WAIT: Duration = Duration::from_secs(30);

fn out(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    )
}

/// A directory uid 65534 owns, holding `name`: its symlink to `target`.
fn planted_link(r: &Refreshd, name: &str, target: &Path) -> PathBuf {
    std::fs::set_permissions(r.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = r.path("app");
    if !app.exists() {
        std::fs::create_dir(&app).unwrap();
        chown(&app, NOBODY);
    }
    let link = app.join(name);
    std::os::unix::fs::symlink(target, &link).unwrap();
    chown(&link, NOBODY);
    link
}

/// A root-only file holding `content`.
fn root_file(r: &Refreshd, name: &str, content: &str) -> PathBuf {
    let path = r.path(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// An `oauth-refresh` credential `api` whose refresh token is `{ file = secret }`, at a
/// token endpoint that refuses connections.
fn oauth_credential(r: &Refreshd, secret: &Path) -> String {
    format!(
        "[credentials.api]\nsource = {{ type = \"oauth-refresh\", token_url = \"http://127.0.0.1:9/token\", client_id = \"c\", refresh_token = {{ file = \"{}\" }} }}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n",
        secret.display(),
        r.path("api.token").display()
    )
}

/// Runs refreshd with `args`, stopped after 20 s and with its heap limited to 512 MiB,
/// so that a hang or an endless read fails the test instead of the machine.
fn run_bounded(r: &mut Refreshd, args: &[&str]) -> (Output, Duration) {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -d 524288; exec timeout -s KILL 20 \"$@\"")
        .arg("sh")
        .arg(crate::common::refreshd_bin())
        .args(args)
        .env("REFRESHD_CONFIG", &r.config)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    let start = Instant::now();
    let output = command.output().unwrap();
    r.record(&output);
    (output, start.elapsed())
}

#[test]
fn a_refresh_token_behind_an_app_users_symlink_is_not_read() {
    require_root("it plants a link as uid 65534");
    let mut r = Refreshd::new();
    let secret = root_file(&r, "root.refresh", "roots-own-refresh-token-value\n");
    let link = planted_link(&r, "refresh", &secret);
    r.write_config(&oauth_credential(&r, &link));
    for (args, code) in [(["check"], 2), (["once"], 1)] {
        let output = r.run(&args);
        let said = out(&output);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {said}");
        assert!(
            said.contains("refused: a symlink owned by uid 65534"),
            "{args:?}: {said}"
        );
        assert!(said.contains(&link.display().to_string()), "{said}");
    }
}

#[test]
fn google_credentials_behind_an_app_users_symlink_are_not_read() {
    require_root("it plants links as uid 65534");
    let mut r = Refreshd::new();
    let adc = root_file(
        &r,
        "root-adc.json",
        r#"{"type": "authorized_user", "client_id": "c", "client_secret": "roots-client-secret", "refresh_token": "roots-refresh-token", "token_uri": "http://127.0.0.1:9/token"}"#,
    );
    let adc_link = planted_link(&r, "adc.json", &adc);
    let key_link = planted_link(&r, "key.json", &r.path("root-key.json"));
    root_file(&r, "root-key.json", r#"{"type": "service_account"}"#);
    r.write_config(&format!(
        "[credentials.user]\nsource = {{ type = \"google-authorized-user\", file = \"{}\" }}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n\n[credentials.sa]\nsource = {{ type = \"google-service-account\", key_file = \"{}\", scopes = [\"s\"] }}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n",
        adc_link.display(),
        r.path("user.token").display(),
        key_link.display(),
        r.path("sa.token").display()
    ));
    for (args, code) in [(["check"], 2), (["once"], 1)] {
        let output = r.run(&args);
        let said = out(&output);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {said}");
        for link in [&adc_link, &key_link] {
            assert!(
                said.contains(&format!(
                    "{}: refused: a symlink owned by uid 65534",
                    link.display()
                )),
                "{args:?}: {said}"
            );
        }
    }
}

#[test]
fn a_fifo_or_dev_zero_as_a_secret_is_a_quick_clear_error() {
    let mut r = Refreshd::new();
    let fifo = r.path("fifo.secret");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let zero = r.path("zero.secret");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for (secret, expect) in [
        (&fifo, "is a FIFO"),
        (&zero, "/dev/zero is a character device"),
    ] {
        r.write_config(&oauth_credential(&r, secret));
        for command in ["once", "check"] {
            let (output, took) = run_bounded(&mut r, &[command]);
            let said = out(&output);
            assert!(
                took < Duration::from_secs(15),
                "{command} took {took:?}: {said}"
            );
            assert!(said.contains(expect), "{command}: {said}");
            assert!(said.contains("refreshd reads only regular files"), "{said}");
            assert!(output.status.code().is_some_and(|c| c != 0), "{said}");
        }
    }
}

/// Sends one request line to the control socket and returns the answer.
fn ask(socket: &Path, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn a_secret_that_becomes_a_fifo_does_not_hang_the_daemon() {
    let mut r = Refreshd::new();
    let secret = r.path("later.secret");
    let script = r.path("fine.sh");
    std::fs::write(&script, "#!/bin/sh\nprintf '%s' fine-user-files-token\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    r.write_config(&format!(
        "control_socket = \"{}\"\n\n{}\n[credentials.fine]\nsource = {{ type = \"command\", argv = [\"{}\"], format = \"plain\" }}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n",
        r.path("run/control.sock").display(),
        oauth_credential(&r, &secret),
        script.display(),
        r.path("fine.token").display()
    ));
    let mut daemon = r.spawn(&["run"]);
    daemon.wait_for("rotated credential=fine", WAIT);
    nix::unistd::mkfifo(&secret, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Straight to the socket: `refreshd rotate` would refuse the config itself now.
    let answer = ask(
        &r.path("run/control.sock"),
        r#"{"op":"rotate","names":["api"]}"#,
    );
    assert!(answer.contains("is a FIFO"), "{answer}");
    daemon.wait_for("is a FIFO", WAIT);
    // The CLI below reads the config too, and would refuse it with the FIFO in place.
    std::fs::remove_file(&secret).unwrap();
    for _ in 0..3 {
        let status = r.run(&["status"]);
        assert!(out(&status).contains("fine: ok"), "{}", out(&status));
        let rotate = r.run(&["rotate", "fine"]);
        assert!(rotate.status.success(), "{}", out(&rotate));
    }
    daemon.terminate(WAIT);
    r.record_daemon(&daemon);
}
