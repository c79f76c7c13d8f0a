//! The INI, TOML and JSON targets through `write`: what every target guarantees holds for
//! them too (a new file 0600, nothing written when current, in place keeps the inode, the
//! token read back), and a refusal leaves the file as it was and quotes none of it.

use super::*;

fn ini(path: PathBuf) -> TargetConfig {
    TargetConfig::new(
        path,
        TargetKind::Ini {
            section: Some("DEFAULT".into()),
            keys: vec![
                ("token".into(), ValueOf::Token),
                ("token_expires_at".into(), ValueOf::ExpiresAt),
            ],
        },
    )
}

fn toml(path: PathBuf) -> TargetConfig {
    TargetConfig::new(
        path,
        TargetKind::Toml {
            keys: vec![
                (
                    toml::KeyPath::parse("database.password").unwrap(),
                    ValueOf::Token,
                ),
                (
                    toml::KeyPath::parse("database.expires_at").unwrap(),
                    ValueOf::ExpiresAt,
                ),
            ],
        },
    )
}

fn json(path: PathBuf) -> TargetConfig {
    TargetConfig::new(
        path,
        TargetKind::Json {
            pointers: vec![
                (
                    json::Pointer::parse("/db/password").unwrap(),
                    ValueOf::Token,
                ),
                (
                    json::Pointer::parse("/db/expires_at").unwrap(),
                    ValueOf::ExpiresAt,
                ),
            ],
        },
    )
}

#[test]
fn each_format_is_created_0600_read_back_and_not_rewritten_when_current() {
    let dir = tempfile::tempdir().unwrap();
    let token = SecretString::from("eyJhbGciOi.e30.sig-_x");
    let cases = [
        (
            ini(dir.path().join("databrickscfg")),
            "[DEFAULT]\ntoken = eyJhbGciOi.e30.sig-_x\ntoken_expires_at = 2027-01-15T08:00:00Z\n",
        ),
        (
            toml(dir.path().join("app.toml")),
            "[database]\npassword = \"eyJhbGciOi.e30.sig-_x\"\nexpires_at = \"2027-01-15T08:00:00Z\"\n",
        ),
        (
            json(dir.path().join("app.json")),
            "{\n  \"db\": {\n    \"password\": \"eyJhbGciOi.e30.sig-_x\",\n    \"expires_at\": \"2027-01-15T08:00:00Z\"\n  }\n}\n",
        ),
    ];
    for (target, content) in &cases {
        assert!(read_current(target).is_none());
        assert_eq!(
            write(target, &token, now(), locks()).unwrap(),
            Outcome::Written
        );
        assert_eq!(std::fs::read_to_string(&target.path).unwrap(), *content);
        assert_eq!(
            std::fs::metadata(&target.path).unwrap().mode() & 0o777,
            0o600
        );
        assert!(is_current(target, &token, now()));
        assert_eq!(
            write(target, &token, now(), locks()).unwrap(),
            Outcome::Unchanged
        );
        assert_eq!(
            read_current(target).unwrap().expose_secret(),
            token.expose_secret()
        );
    }
}

#[test]
fn in_place_keeps_the_inode_and_every_other_byte() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            ini(dir.path().join("credentials")),
            "; profiles\r\n[DEFAULT]\r\ntoken = old\r\n[other]\r\ntoken = theirs\r\n",
            "; profiles\r\n[DEFAULT]\r\ntoken = new\r\ntoken_expires_at = 2027-01-15T08:00:00Z\r\n[other]\r\ntoken = theirs\r\n",
        ),
        (
            toml(dir.path().join("app.toml")),
            "# app\r\n[database]\r\npassword = 'old' # rotated\r\n",
            "# app\r\n[database]\r\npassword = \"new\" # rotated\r\nexpires_at = \"2027-01-15T08:00:00Z\"\r\n",
        ),
        (
            json(dir.path().join("app.json")),
            "{\"db\": {\"password\": \"old\"}, \"n\": 1.0}",
            "{\"db\": {\"password\": \"new\", \"expires_at\": \"2027-01-15T08:00:00Z\"}, \"n\": 1.0}",
        ),
    ];
    for (target, before, after) in cases {
        std::fs::write(&target.path, before).unwrap();
        let inode = std::fs::metadata(&target.path).unwrap().ino();
        let target = TargetConfig {
            write: WriteMode::InPlace,
            ..target
        };
        write(&target, &SecretString::from("new"), now(), locks()).unwrap();
        assert_eq!(std::fs::read_to_string(&target.path).unwrap(), after);
        assert_eq!(std::fs::metadata(&target.path).unwrap().ino(), inode);
    }
}

#[test]
fn refusals_leave_the_file_and_quote_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hunter2-other-secret";
    let cases = [
        // A value configparser cannot read back, and a file with the section twice.
        (
            ini(dir.path().join("a.ini")),
            format!("[DEFAULT]\npw = {secret}\n"),
            "50%off",
        ),
        (
            ini(dir.path().join("b.ini")),
            format!("[DEFAULT]\npw = {secret}\n[DEFAULT]\n"),
            "tok",
        ),
        // Not a string where the token goes; not TOML / JSON at all.
        (
            toml(dir.path().join("a.toml")),
            format!("[database]\npassword = 1\npw = \"{secret}\"\n"),
            "tok",
        ),
        (
            toml(dir.path().join("b.toml")),
            format!("pw = {secret}\n"),
            "tok",
        ),
        (
            json(dir.path().join("a.json")),
            format!("{{\"db\": [\"{secret}\"]}}"),
            "tok",
        ),
        (
            json(dir.path().join("b.json")),
            format!("{{\"pw\": {secret}}}"),
            "tok",
        ),
    ];
    for (target, before, token) in cases {
        std::fs::write(&target.path, &before).unwrap();
        let err = write(&target, &SecretString::from(token), now(), locks())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("target {}: ", target.path.display())),
            "{err}"
        );
        assert!(!err.contains(secret) && !err.contains(token), "{err}");
        assert_eq!(std::fs::read_to_string(&target.path).unwrap(), before);
        assert!(read_current(&target).is_none());
    }
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = json(dir.path().join("big.json"));
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_TARGET as usize));
    std::fs::write(&target.path, &big).unwrap();
    let err = write(&target, &SecretString::from("tok"), now(), locks())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read it"), "{err}");
    assert_eq!(std::fs::read(&target.path).unwrap().len(), big.len());
}
