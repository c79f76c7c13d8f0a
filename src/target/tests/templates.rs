//! The `template` target through `write`: what every target guarantees holds for it too
//! (a new file 0600, nothing written when current, in place keeps the inode), `is_current`
//! renders again to compare, no token is ever adopted from it, and a failing render leaves
//! the file as it was and quotes no value.

use super::*;
use crate::target::template::{Origin, Template};

fn jdbc(path: PathBuf) -> TargetConfig {
    let source = "# written by refreshd\nurl=jdbc:postgresql://db:5432/app?user=app&password={{ token | urlencode }}\nexpires={{ expires_at }}\n";
    TargetConfig::new(
        path,
        TargetKind::Template {
            credential: "db".into(),
            uses: Vec::new(),
            template: Template::new(Origin::Inline, source.into()).unwrap(),
        },
    )
}

#[test]
fn a_template_is_rendered_0600_and_not_rewritten_when_current() {
    let dir = tempfile::tempdir().unwrap();
    let t = jdbc(dir.path().join("jdbc.properties"));
    let token = SecretString::from("a+b/c=");
    assert!(!is_current(&t, &token, now()));
    assert_eq!(write(&t, &token, now(), locks()).unwrap(), Outcome::Written);
    assert_eq!(
        std::fs::read_to_string(&t.path).unwrap(),
        "# written by refreshd\nurl=jdbc:postgresql://db:5432/app?user=app&password=a%2Bb/c%3D\nexpires=2027-01-15T08:00:00Z\n"
    );
    assert_eq!(std::fs::metadata(&t.path).unwrap().mode() & 0o777, 0o600);
    assert!(is_current(&t, &token, now()));
    assert_eq!(
        write(&t, &token, now(), locks()).unwrap(),
        Outcome::Unchanged
    );
    // Another token, or the same token with another expiry, renders another file.
    assert!(!is_current(&t, &SecretString::from("other"), now()));
    assert!(!is_current(&t, &token, now() + time::Duration::hours(1)));
    // A hand edit is undone by the next write: the whole file is the template's.
    std::fs::write(&t.path, "edited\n").unwrap();
    assert!(!is_current(&t, &token, now()));
    assert_eq!(write(&t, &token, now(), locks()).unwrap(), Outcome::Written);
    assert!(is_current(&t, &token, now()));
}

#[test]
fn no_token_is_adopted_from_a_rendered_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = TargetConfig::new(
        dir.path().join("token.txt"),
        TargetKind::Template {
            credential: "db".into(),
            uses: Vec::new(),
            template: Template::new(Origin::Inline, "{{ token }}".into()).unwrap(),
        },
    );
    write(&t, &SecretString::from("plain-token"), now(), locks()).unwrap();
    assert_eq!(std::fs::read_to_string(&t.path).unwrap(), "plain-token");
    assert!(read_current(&t).is_none());
}

#[test]
fn in_place_keeps_the_inode() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = jdbc(dir.path().join("jdbc.properties"));
    t.write = WriteMode::InPlace;
    std::fs::write(&t.path, "old\n").unwrap();
    let inode = std::fs::metadata(&t.path).unwrap().ino();
    write(&t, &SecretString::from("tok"), now(), locks()).unwrap();
    assert_eq!(std::fs::metadata(&t.path).unwrap().ino(), inode);
    assert!(
        std::fs::read_to_string(&t.path)
            .unwrap()
            .contains("password=tok\n")
    );
}

#[test]
fn a_failing_render_writes_nothing_and_quotes_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let t = TargetConfig::new(
        dir.path().join("app.conf"),
        TargetKind::Template {
            credential: "db".into(),
            uses: Vec::new(),
            template: Template::new(Origin::Inline, "a={{ token }}\nb={{ claims.sub }}\n".into())
                .unwrap(),
        },
    );
    std::fs::write(&t.path, "before\n").unwrap();
    let secret = "opaque-secret-value";
    let err = write(&t, &SecretString::from(secret), now(), locks())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 2") && err.contains("claims.sub"),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
    assert_eq!(std::fs::read_to_string(&t.path).unwrap(), "before\n");
    // `check` finds it with a stored token, and passes it without one (any claim exists).
    let stored = SecretString::from(secret);
    let with_stored = |_: &str| {
        Some(Sample {
            stored: Some(crate::token::Token::sample(&stored, now())),
            fields: Vec::new(),
        })
    };
    let err = check_render(&t, &with_stored, now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("claims.sub") && !err.contains(secret), "{err}");
    let without = |_: &str| {
        Some(Sample {
            stored: None,
            fields: Vec::new(),
        })
    };
    check_render(&t, &without, now()).unwrap();
}
