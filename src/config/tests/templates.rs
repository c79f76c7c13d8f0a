//! The `template` target's keys: the template read and its syntax checked at load, and
//! every mistake named with its line and key (and the template's own line).

use super::formats::{error, target};
use super::*;
use crate::target::template::Origin;

#[test]
fn an_inline_template_and_a_template_file_parse() {
    let TargetKind::Template {
        credential,
        template,
        ..
    } = target(
        r#"{ type = "template", path = "/srv/app/jdbc.properties", inline = "password={{ token }}\n" }"#,
    )
    else {
        panic!("not a template target");
    };
    assert_eq!(credential, "db");
    assert_eq!(template.origin(), &Origin::Inline);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jdbc.properties.j2");
    std::fs::write(
        &file,
        "url=jdbc:postgresql://db/app?password={{ token | urlencode }}\n",
    )
    .unwrap();
    let TargetKind::Template { template, .. } = target(&format!(
        r#"{{ type = "template", path = "/srv/app/jdbc.properties", template = "{}" }}"#,
        file.display()
    )) else {
        panic!("not a template target");
    };
    assert_eq!(template.origin(), &Origin::File(file));
}

#[test]
fn template_mistakes_name_the_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.j2");
    std::fs::write(&broken, "a=1\nb={{ token | }}\n").unwrap();
    let broken = broken.display().to_string();
    let missing = dir.path().join("none.j2").display().to_string();
    let cases = [
        (
            r#"{ type = "template", path = "/srv/a", inline = "{{ token", template = "/x.j2" }"#
                .to_owned(),
            "inline",
            "not both",
        ),
        (
            r#"{ type = "template", path = "/srv/a" }"#.to_owned(),
            "template",
            "needs `template`",
        ),
        (
            r#"{ type = "template", path = "/srv/a", inline = "x", key = "k" }"#.to_owned(),
            "key",
            "not a field of a template target",
        ),
        (
            r#"{ type = "template", path = "/srv/a", inline = "a\n{% if %}" }"#.to_owned(),
            "inline",
            "inline template, line 2: syntax error",
        ),
        (
            format!(r#"{{ type = "template", path = "/srv/a", template = "{broken}" }}"#),
            "template",
            &format!("template {broken}, line 2: syntax error"),
        ),
        (
            format!(r#"{{ type = "template", path = "/srv/a", template = "{missing}" }}"#),
            "template",
            &format!("cannot read template {missing}"),
        ),
        (
            r#"{ type = "template", path = "/srv/a", template = "rel.j2" }"#.to_owned(),
            "template",
            "must be an absolute path",
        ),
        (
            r#"{ type = "dotenv", path = "/srv/a", key = "K", inline = "x" }"#.to_owned(),
            "inline",
            "not a field of a dotenv target",
        ),
    ];
    for (target, key, says) in &cases {
        let err = error(target);
        assert!(
            err.starts_with("/etc/refreshd/config.toml:7: ")
                && err.contains(&format!("credentials.db.targets[0].{key}:"))
                && err.contains(says),
            "{target}: {err}"
        );
    }
}
