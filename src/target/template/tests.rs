//! The render context, the sandbox's refusals, and errors that name the template's line and
//! text but never a value.

use proptest::prelude::*;
use serde_json::json;
use time::macros::datetime;

use super::*;

const LIMIT: usize = 4 << 20;

fn inline(source: &str) -> Template {
    Template::new(Origin::Inline, source.to_owned()).unwrap()
}

fn vars(token: &str) -> Vars<'_> {
    Vars::of("db", token, datetime!(2027-01-15 08:00:00 UTC))
}

#[test]
fn the_context_holds_every_variable() {
    let jwt = crate::token::tests::jwt(json!({"sub": "svc-app", "aud": ["a", "b"], "n": 7}));
    let out = inline(
        "{{ credential }} {{ token_type }} {{ expires_at }} {{ expires_at_unix }} {{ claims.sub }} {{ claims.aud[1] }} {{ claims.n + 1 }}\n",
    )
    .render(&vars(&jwt), LIMIT)
    .unwrap();
    assert_eq!(
        out,
        "db Bearer 2027-01-15T08:00:00Z 1800000000 svc-app b 8\n"
    );
    let out = inline("{{ token }}").render(&vars(&jwt), LIMIT).unwrap();
    assert_eq!(out, jwt);
    // Not a JWT: no claims, and `default` and `is defined` still work under strict rules.
    let out = inline(
        "{{ claims | length }} {{ claims.sub | default('none') }} {{ claims.sub is defined }}",
    )
    .render(&vars("opaque"), LIMIT)
    .unwrap();
    assert_eq!(out, "0 none False");
}

#[test]
fn the_trailing_newline_is_kept_and_nothing_is_escaped() {
    let out = inline("a=<{{ token }}>&\n")
        .render(&vars("x'\"<&"), LIMIT)
        .unwrap();
    assert_eq!(out, "a=<x'\"<&>&\n");
}

#[test]
fn an_undefined_variable_is_an_error_naming_it_and_its_line() {
    let secret = "s3cr3t-TOKEN-value";
    let template =
        inline("url=jdbc:x\npassword={{ token }}\nuser={{ claims.preferred_username }}\n");
    let err = template.render(&vars(secret), LIMIT).unwrap_err();
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("undefined value"), "{err}");
    assert!(err.contains("claims.preferred_username"), "{err}");
    assert!(!err.contains(secret), "{err}");
    // A filter that would turn an undefined value into "" fails instead.
    for source in [
        "u={{ claims.db_user | urlencode }}",
        "u={{ claims.db_user | tojson }}",
        "u={{ claims.db_user | string }}",
    ] {
        let err = inline(source).render(&vars(secret), LIMIT).unwrap_err();
        assert!(
            err.ends_with("line 1: undefined value in `claims.db_user`"),
            "{source}: {err}"
        );
        assert!(!err.contains(secret), "{err}");
    }
}

#[test]
fn a_variable_the_context_lacks_is_refused_at_load_with_its_line() {
    let err = Template::new(
        Origin::Inline,
        "a={{ token }}\n{% set ok = 1 %}{{ ok }}\nb={{ tokne | urlencode }}\n".to_owned(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "inline template, line 3: unknown variable `tokne` (a template may use token, token_type, expires_at, expires_at_unix, credential, claims, fields, credentials)"
    );
    // Globals and loop variables are not unknown.
    inline("{% for i in range(2) %}{{ i }}{{ loop.index }}{% endfor %}{{ dict(a=1).a }}");
}

#[test]
fn no_error_quotes_the_token_or_a_claim() {
    let secret = "s3cr3t-TOKEN-value";
    let jwt = crate::token::tests::jwt(json!({"sub": secret}));
    let failing = [
        "{{ token + 1 }}",
        "{{ token | int + [] }}",
        "{{ token() }}",
        "{{ token.nope.deeper }}",
        "{{ claims[token] }}",
        "{{ claims.sub + 1 }}",
        "{{ claims.sub | nope }}",
        "{% for x in token %}{{ x.y }}{% endfor %}",
        "{{ token | join(1, 2, 3) }}",
        "{{ range(token) }}",
        "{{ claims.sub.missing }}",
        "{{ token[99999] }}",
        "{% set x = token ~ claims.sub %}{{ x | slice(0) }}",
    ];
    for (source, value) in failing
        .iter()
        .flat_map(|s| [(s, secret), (s, jwt.as_str())])
    {
        let Ok(template) = Template::new(Origin::Inline, (*source).to_owned()) else {
            continue;
        };
        let Err(err) = template.render(&vars(value), LIMIT) else {
            continue;
        };
        assert!(!err.contains(secret), "{source}: {err}");
        assert!(!err.contains(value), "{source}: {err}");
    }
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let origin = Origin::File("/etc/refreshd/app.j2".into());
    let err = Template::new(origin, "a\nb\n{{ token + }}\nc".to_owned()).unwrap_err();
    assert!(
        err.starts_with("template /etc/refreshd/app.j2, line 3: syntax error"),
        "{err}"
    );
}

#[test]
fn no_file_can_be_named_and_no_environment_read() {
    for source in [
        "{% include '/etc/passwd' %}",
        "{% import 'x' as y %}",
        "{% extends 'base' %}",
        "{% from 'x' import y %}",
    ] {
        let refused = match Template::new(Origin::Inline, source.to_owned()) {
            Err(err) => err,
            Ok(t) => t.render(&vars("t"), LIMIT).unwrap_err(),
        };
        assert!(!refused.is_empty(), "{source}");
    }
    for source in [
        "{{ env('HOME') }}",
        "{{ debug() }}",
        "{{ self }}",
        "{{ environ }}",
    ] {
        let refused = match Template::new(Origin::Inline, source.to_owned()) {
            Err(err) => err,
            Ok(t) => t.render(&vars("t"), LIMIT).unwrap_err(),
        };
        assert!(
            refused.contains("unknown variable") || refused.contains("undefined value"),
            "{source}: {refused}"
        );
    }
}

#[test]
fn a_runaway_loop_and_an_oversized_output_are_refused() {
    let err =
        inline("{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}")
            .render(&vars("t"), LIMIT)
            .unwrap_err();
    assert!(err.contains("too much work"), "{err}");
    let err = inline("{{ 'x' * 100000000 }}")
        .render(&vars("t"), LIMIT)
        .unwrap_err();
    assert!(err.contains("too much work"), "{err}");
    let err = inline("{{ token }}{{ token }}")
        .render(&vars("0123456789"), 15)
        .unwrap_err();
    assert!(err.contains("20 bytes, more than the 15"), "{err}");
    assert!(!err.contains("0123456789"), "{err}");
}

#[test]
fn any_claim_passes_a_check_without_a_token() {
    let template = inline("{{ claims.preferred_username }} {{ token.nope }}");
    let sample = Vars {
        claims: Claims::Any,
        ..vars("sample")
    };
    let err = template.render(&sample, LIMIT).unwrap_err();
    assert!(err.contains("`token.nope`"), "{err}");
    let template = inline("{{ claims.preferred_username | urlencode }}");
    assert_eq!(template.render(&sample, LIMIT).unwrap(), "sample-claim");
}

#[test]
fn tojson_quotes_a_token_for_json() {
    let out = inline("{\"password\": {{ token | tojson }}}")
        .render(&vars("a\"b\\c"), LIMIT)
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["password"], "a\"b\\c");
}

/// What `urllib.parse` does to a query value, in Rust: `+` is a space, `%XX` a byte.
fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            let spaced = value.replace('+', " ");
            percent_encoding::percent_decode_str(&spaced)
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
    })
}

proptest! {
    /// Any token of the token alphabet (RFC 6750's b64token, RFC 6749's VSCHAR and then
    /// some) survives `urlencode` in a JDBC URL's query.
    #[test]
    fn a_urlencoded_token_decodes_back_from_a_jdbc_url(token in "[A-Za-z0-9\\-._~+/=!#$%&'()*,:;<>?@\\[\\]^`{|} ]{1,200}") {
        let template = inline(
            "url=jdbc:postgresql://db:5432/app?user=app&password={{ token | urlencode }}&ssl=true\n",
        );
        let out = template.render(&vars(&token), LIMIT).unwrap();
        let url = out.strip_prefix("url=").unwrap().trim_end();
        prop_assert_eq!(query_value(url, "password"), Some(token.clone()));
        prop_assert_eq!(query_value(url, "ssl"), Some("true".to_owned()));
    }
}
