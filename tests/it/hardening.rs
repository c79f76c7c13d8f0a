//! What a user who owns a target's directory, a provider or a program could do to a root
//! refreshd (design §7), each tried against the real binary: planted symlinks, FIFOs, pid
//! files aimed at other users' processes, planted tokens, an impostor on the control
//! socket, floods of output and connections, the litter of a crash. Needs root: it plants
//! files as uid 65534 (nobody) and runs processes as that user.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Refreshd, chown, eventually, require_root, stderr};

const WAIT: Duration = Duration::from_secs(30);
const NOBODY: u32 = 65534;

/// A directory of the test's that uid 65534 owns (the app user's), reachable by it.
fn app_dir(r: &Refreshd) -> PathBuf {
    std::fs::set_permissions(r.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = r.path("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    chown(&app, NOBODY);
    app
}

/// A `command` credential `NAME` printing `token`, with `targets` (TOML array items).
fn command_credential(r: &Refreshd, name: &str, token: &str, targets: &str) -> String {
    let script = r.path(&format!("{name}.sh"));
    std::fs::write(&script, format!("#!/bin/sh\nprintf '%s' '{token}'\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "[credentials.{name}]\nsource = {{ type = \"command\", argv = [\"{}\"], format = \"plain\" }}\ntargets = [ {targets} ]\n",
        script.display()
    )
}

fn out(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    )
}

#[test]
fn symlinks_an_app_user_planted_are_refused_and_nothing_outside_is_touched() {
    require_root("it plants files as uid 65534");
    let mut r = Refreshd::new();
    let app = app_dir(&r);
    let root_file = r.path("root-owned.conf");
    std::fs::write(&root_file, "root's own\n").unwrap();
    let root_dir = r.path("root-only");
    std::fs::create_dir(&root_dir).unwrap();
    std::fs::set_permissions(&root_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The app user points its .env at a root file, and its token file into a root-only
    // directory (dangling), and sets an owner and mode refreshd would apply.
    std::os::unix::fs::symlink(&root_file, app.join(".env")).unwrap();
    chown(&app.join(".env"), NOBODY);
    std::os::unix::fs::symlink(root_dir.join("token"), app.join("token")).unwrap();
    chown(&app.join("token"), NOBODY);
    r.write_config(&command_credential(
        &r,
        "api",
        "planted-link-test-token-value",
        &format!(
            "{{ type = \"dotenv\", path = \"{}/.env\", key = \"TOKEN\", owner = \"nobody\", mode = \"0644\" }}, {{ type = \"file\", path = \"{}/token\" }}",
            app.display(),
            app.display()
        ),
    ));
    let once = r.run(&["once"]);
    let said = out(&once);
    assert_eq!(once.status.code(), Some(1), "{said}");
    assert!(
        said.contains("refused: a symlink owned by uid 65534"),
        "{said}"
    );
    assert!(said.contains(&format!("{}/.env", app.display())), "{said}");
    assert_eq!(std::fs::read_to_string(&root_file).unwrap(), "root's own\n");
    let meta = std::fs::metadata(&root_file).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o644));
    assert!(
        !root_dir.join("token").exists(),
        "a file was created in a root-only directory"
    );
    // `check` says the same before anything runs.
    let check = r.run(&["check"]);
    assert_eq!(check.status.code(), Some(2));
    assert!(out(&check).contains("refused"), "{}", out(&check));
}

#[test]
fn fifo_targets_never_block_the_daemon() {
    let mut r = Refreshd::new();
    std::fs::create_dir(r.path("app")).unwrap();
    for name in ["a.env", "b.token"] {
        nix::unistd::mkfifo(
            &r.path(&format!("app/{name}")),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
    }
    let blocked = command_credential(
        &r,
        "blocked",
        "fifo-test-token-value-1",
        &format!(
            "{{ type = \"dotenv\", path = \"{}\", key = \"T\" }}, {{ type = \"file\", path = \"{}\" }}",
            r.path("app/a.env").display(),
            r.path("app/b.token").display()
        ),
    );
    let fine = command_credential(
        &r,
        "fine",
        "fifo-test-token-value-2",
        &format!(
            "{{ type = \"file\", path = \"{}\" }}",
            r.path("app/fine").display()
        ),
    );
    r.write_config(&format!(
        "control_socket = \"{}\"\n\n{blocked}\n{fine}",
        r.path("run/control.sock").display()
    ));
    let mut daemon = r.spawn(&["run"]);
    daemon.wait_for("rotated credential=fine", WAIT);
    daemon.wait_for("is not a regular file", WAIT);
    let status = r.run(&["status"]);
    assert!(out(&status).contains("fine: ok"), "{}", out(&status));
    daemon.terminate(WAIT);
    r.record_daemon(&daemon);
}

#[test]
fn a_pid_file_others_can_write_cannot_aim_at_another_users_process() {
    require_root("it plants files as uid 65534");
    let mut r = Refreshd::new();
    let app = app_dir(&r);
    // A root process the app user would like to see killed.
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let pid_file = app.join("app.pid");
    std::fs::write(&pid_file, format!("{}\n", victim.id())).unwrap();
    chown(&pid_file, NOBODY);
    let mut credential = command_credential(
        &r,
        "api",
        "pid-file-test-token-value",
        &format!(
            "{{ type = \"file\", path = \"{}\" }}",
            r.path("token").display()
        ),
    );
    credential.push_str(&format!(
        "reload = [ {{ signal = \"SIGTERM\", pid_file = \"{}\" }} ]\n",
        pid_file.display()
    ));
    r.write_config(&credential);
    let once = r.run(&["once"]);
    let said = out(&once);
    assert!(said.contains("not signalled"), "{said}");
    assert!(said.contains("can be written by uid 65534"), "{said}");
    assert!(
        !said.contains(&victim.id().to_string()) || said.contains("pid"),
        "{said}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        victim.try_wait().unwrap().is_none(),
        "root's process was signalled"
    );
    victim.kill().unwrap();
    let _ = victim.wait();
}

#[test]
fn a_token_planted_in_a_target_others_can_write_is_not_adopted() {
    require_root("it plants files as uid 65534");
    let mut r = Refreshd::new();
    let app = app_dir(&r);
    // An unsigned JWT for `mallory`, valid for half an hour, planted by the app user.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let planted = crate::common::jwt_unsigned(
        serde_json::json!({"sub": "mallory", "iat": now, "exp": now + 1800}),
    );
    let env = app.join(".env");
    std::fs::write(&env, format!("TOKEN={planted}\n")).unwrap();
    chown(&env, NOBODY);
    r.write_config(&command_credential(
        &r,
        "api",
        "the-real-token-from-the-source",
        &format!(
            "{{ type = \"dotenv\", path = \"{}\", key = \"TOKEN\" }}",
            env.display()
        ),
    ));
    let once = r.run(&["once"]);
    assert!(once.status.success(), "{}", out(&once));
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "TOKEN=the-real-token-from-the-source\n",
        "the planted token was adopted instead of refreshed"
    );
    let status = r.run(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(json["credentials"]["api"]["subject"].is_null(), "{json}");
}

#[test]
fn the_control_socket_needs_a_directory_of_its_own_and_clients_check_who_answers() {
    require_root("it plants files as uid 65534");
    let mut r = Refreshd::new();
    std::fs::set_permissions(r.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let shared = r.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let credential = command_credential(
        &r,
        "api",
        "socket-test-token-value",
        &format!(
            "{{ type = \"file\", path = \"{}\" }}",
            r.path("token").display()
        ),
    );
    r.write_config(&format!(
        "control_socket = \"{}/control.sock\"\n\n{credential}",
        shared.display()
    ));
    let run = r.run(&["run"]);
    assert_eq!(run.status.code(), Some(1), "{}", out(&run));
    assert!(
        out(&run).contains("must be refreshd's own"),
        "{}",
        out(&run)
    );

    // Another user serves a socket where refreshd's would be: `token` never asks it.
    let theirs = r.path("theirs");
    std::fs::create_dir(&theirs).unwrap();
    chown(&theirs, NOBODY);
    let socket = theirs.join("control.sock");
    let mut impostor = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket,sys,os\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\nos.chmod(sys.argv[1],0o777)\ns.listen(4)\nprint('listening',flush=True)\nwhile True:\n  c,_=s.accept()\n  try:\n    c.sendall(b'{\"ok\":true,\"token\":\"impostor-token-value\"}\\n')\n  except OSError:\n    pass\n  c.close()\n",
        ])
        .arg(&socket)
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = [0u8; 9];
    impostor
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    r.write_config(&format!(
        "control_socket = \"{}\"\n\n{credential}",
        socket.display()
    ));
    let token = r.command(&["token", "api"]).output().unwrap();
    let status = r.run(&["status"]);
    impostor.kill().unwrap();
    let _ = impostor.wait();
    assert!(
        !String::from_utf8_lossy(&token.stdout).contains("impostor"),
        "the impostor's answer was printed"
    );
    assert!(
        out(&status).contains("neither root, this user nor the owner of a directory"),
        "{}",
        out(&status)
    );
}

#[test]
fn floods_of_output_and_connections_are_bounded() {
    let mut r = Refreshd::new();
    // A program that prints 2 MiB where a token belongs, and 1,000 lines on stderr.
    let script = r.path("flood.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nhead -c 2097152 /dev/zero | tr '\\0' a\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    r.write_config(&(format!(
        "control_socket = \"{}\"\nmetrics_listen = \"127.0.0.1:{port}\"\n\n[credentials.flood]\nsource = {{ type = \"command\", argv = [\"{}\"], format = \"plain\" }}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n\n{}",
        r.path("run/control.sock").display(),
        script.display(),
        r.path("flood.token").display(),
        command_credential(&r, "fine", "flood-test-token-value", &format!("{{ type = \"file\", path = \"{}\" }}", r.path("fine.token").display())),
    ) + &chatty(&r)));
    let mut daemon = r.spawn(&["run"]);
    daemon.wait_for("printed more than 1048576 bytes on stdout", WAIT);
    daemon.wait_for("more lines not shown", WAIT);
    assert!(
        daemon.count("noise line") <= 20,
        "{} stderr lines logged",
        daemon.count("noise line")
    );
    assert!(!r.path("flood.token").exists());
    // 300 idle connections to the metrics port: the daemon keeps answering its owner.
    let idle: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert!(idle.len() >= 64, "only {} connections", idle.len());
    let status = r.run(&["status"]);
    assert!(out(&status).contains("fine: ok"), "{}", out(&status));
    let rotate = r.run(&["rotate", "fine"]);
    assert!(rotate.status.success(), "{}", out(&rotate));
    drop(idle);
    let metrics = eventually("/metrics answering again", WAIT, || {
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
            .ok()
            .and_then(|r| r.text().ok())
    });
    assert!(metrics.contains("refreshd_credential_healthy"), "{metrics}");
    daemon.terminate(WAIT);
    r.record_daemon(&daemon);
}

/// A credential whose program prints 1,000 lines on stderr, then a good token.
fn chatty(r: &Refreshd) -> String {
    let script = r.path("chatty.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ni=0; while [ $i -lt 1000 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done\nprintf '%s' chatty-test-token-value\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "\n[credentials.chatty]\nsource = {{ type = \"command\", argv = [\"{}\"], format = \"plain\" }}\ntargets = [ {{ type = \"file\", path = \"{}\" }} ]\n",
        script.display(),
        r.path("chatty.token").display()
    )
}

#[test]
fn the_litter_of_a_crash_is_removed_at_start() {
    let mut r = Refreshd::new();
    std::fs::create_dir(r.path("app")).unwrap();
    let litter = r.path("app/.token.0a1b2c3d4e5f.refreshd-tmp");
    std::fs::write(&litter, "a token a crash left").unwrap();
    let theirs = r.path("app/.token.notours.tmp");
    std::fs::write(&theirs, "a file of the app's").unwrap();
    r.write_config(&command_credential(
        &r,
        "api",
        "litter-test-token-value",
        &format!(
            "{{ type = \"file\", path = \"{}\" }}",
            r.path("app/token").display()
        ),
    ));
    let once = r.run(&["once"]);
    assert!(once.status.success(), "{}", out(&once));
    assert!(!litter.exists(), "the crash's temp file is still there");
    assert!(
        theirs.exists(),
        "a file not of refreshd's pattern was removed"
    );
}

/// `sudo refreshd once` with the packaged config: root must not write into the service
/// user's state directory (its 0600 root files would be unreadable to the service, the newest
/// refresh token among them). Reading (`status`) stays allowed.
#[test]
fn root_refuses_to_write_into_another_users_state_directory() {
    require_root("it gives the state directory to uid 65534");
    let mut r = Refreshd::new();
    let state = r.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown(&state, NOBODY);
    // A symlinked target: at start, refreshd looks beside it for a crash's temp files,
    // under a lock of its own in the state directory. Not in this one.
    let target = r.path("token");
    std::fs::write(&target, "old\n").unwrap();
    let link = r.path("token-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    r.write_config(&command_credential(
        &r,
        "db",
        "tok-1234567890",
        &format!("{{ type = \"file\", path = \"{}\" }}", link.display()),
    ));

    let once = r.run(&["once"]);
    assert_eq!(once.status.code(), Some(1), "{}", stderr(&once));
    let owner = nix::unistd::User::from_uid(NOBODY.into())
        .unwrap()
        .map_or_else(|| format!("uid {NOBODY}"), |u| u.name);
    assert!(
        stderr(&once).contains(&format!("belongs to {owner}: run this as that user")),
        "{}",
        stderr(&once)
    );
    let made: Vec<_> = std::fs::read_dir(&state).unwrap().collect();
    assert!(made.is_empty(), "root wrote into it: {made:?}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "old\n",
        "no token fetched, no target written"
    );
    // `login` refuses before any flow starts: a login it could not store would be lost.
    let login = r.run(&["login", "db"]);
    assert_eq!(login.status.code(), Some(1), "{}", stderr(&login));
    assert!(stderr(&login).contains("belongs to"), "{}", stderr(&login));

    let check = r.run(&["check"]);
    assert_eq!(check.status.code(), Some(2), "{}", stderr(&check));
    assert!(stderr(&check).contains("belongs to"), "{}", stderr(&check));
    let run = r.run(&["run"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("belongs to"), "{}", stderr(&run));
    // Reading is fine: no daemon, so status comes from the (empty) state directory.
    let status = r.run(&["status"]);
    assert_eq!(status.status.code(), Some(3), "{}", stderr(&status));
}

/// A root-only file in the app user's directory, moved over its `owner = nobody` `.env`, and
/// a hard link there to a root-only file elsewhere: root would read them, keep their other
/// lines and hand the file to the app user. Both are refused, nothing is read or changed; a
/// target refreshd makes there itself is written, and written again.
#[test]
fn a_root_file_moved_or_linked_into_a_target_path_is_refused() {
    require_root("it gives a directory to uid 65534");
    let mut r = Refreshd::new();
    let app = app_dir(&r);
    let moved = app.join(".env");
    std::fs::write(&moved, "ROOT_ONLY=root-only-moved-value\n").unwrap();
    std::fs::set_permissions(&moved, std::fs::Permissions::from_mode(0o600)).unwrap();
    let elsewhere = r.path("root-secret.env");
    std::fs::write(&elsewhere, "ROOT_ONLY=root-only-linked-value\n").unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::hard_link(&elsewhere, app.join("linked.env")).unwrap();
    let targets = format!(
        "{{ type = \"dotenv\", path = \"{app}/.env\", key = \"TOKEN\", owner = \"nobody\" }}, {{ type = \"dotenv\", path = \"{app}/linked.env\", key = \"TOKEN\", owner = \"nobody\" }}",
        app = app.display()
    );
    r.write_config(&command_credential(
        &r,
        "api",
        "moved-file-test-token-value",
        &targets,
    ));
    let once = r.run(&["once"]);
    let said = out(&once);
    assert_eq!(once.status.code(), Some(1), "{said}");
    assert!(said.contains("so it was moved there"), "{said}");
    assert!(said.contains("hard links"), "{said}");
    use std::os::unix::fs::MetadataExt;
    for (path, content) in [
        (&moved, "ROOT_ONLY=root-only-moved-value\n"),
        (&elsewhere, "ROOT_ONLY=root-only-linked-value\n"),
    ] {
        assert_eq!(std::fs::read_to_string(path).unwrap(), content);
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600), "{path:?}");
    }
    // Refreshd's own targets in that directory are written, and written again.
    std::fs::remove_file(&moved).unwrap();
    std::fs::remove_file(app.join("linked.env")).unwrap();
    for args in [&["once"][..], &["once", "--force"][..]] {
        let output = r.run(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", out(&output));
    }
    assert_eq!(std::fs::metadata(&moved).unwrap().uid(), NOBODY);
    assert!(
        std::fs::read_to_string(&moved)
            .unwrap()
            .contains("TOKEN=moved-file-test-token-value")
    );
}
