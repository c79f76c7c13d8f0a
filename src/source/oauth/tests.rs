use super::*;

#[test]
fn token_responses_with_string_expiry_and_rotation() {
    let f = parse_token_response(&serde_json::json!({
        "access_token": "at", "token_type": "Bearer", "expires_in": "3599", "refresh_token": "rt2", "scope": "a b"
    }))
    .unwrap();
    assert_eq!(f.expires_in, Some(Duration::from_secs(3599)));
    assert_eq!(f.refresh_token.unwrap().expose_secret(), "rt2");
    assert_eq!(f.scopes.unwrap(), vec!["a", "b"]);
    let f =
        parse_token_response(&serde_json::json!({"access_token": "at", "expires_on": 1800000000}))
            .unwrap();
    assert_eq!(f.expires_at.unwrap().unix_timestamp(), 1_800_000_000);
    assert!(f.refresh_token.is_none());
    assert!(parse_token_response(&serde_json::json!({"token_type": "Bearer"})).is_err());
    // An unusable lifetime is an error that names the field, not a silent default (and
    // never a panic): -5, 0, "NaN", 1e300; likewise an absolute expiry before 1970.
    for odd in [
        serde_json::json!(-5),
        serde_json::json!(0),
        serde_json::json!("NaN"),
        serde_json::json!(1e300),
        serde_json::json!("soon"),
    ] {
        let err =
            parse_token_response(&serde_json::json!({"access_token": "x", "expires_in": odd}))
                .err()
                .unwrap_or_else(|| panic!("accepted expires_in {odd}"));
        assert!(err.contains("`expires_in`"), "{err}");
    }
    let err = parse_token_response(&serde_json::json!({"access_token": "x", "expires_on": -1}))
        .err()
        .unwrap();
    assert!(err.contains("`expires_on`"), "{err}");
    let null = parse_token_response(&serde_json::json!({"access_token": "x", "expires_in": null}))
        .unwrap();
    assert_eq!(null.expires_in, None, "null is as good as absent");
}

#[test]
fn retry_after_seconds_and_all_three_http_date_forms() {
    // 2015-10-21T07:28:00Z, ten minutes before the date in the header.
    let now = OffsetDateTime::from_unix_timestamp(1_445_412_480 - 600).unwrap();
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    for form in [
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Wednesday, 21-Oct-15 07:28:00 GMT",
        "Wed Oct 21 07:28:00 2015",
    ] {
        assert_eq!(
            parse_retry_after(form, now),
            Some(Duration::from_secs(600)),
            "{form}"
        );
    }
    let later = now + Duration::from_secs(3600);
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", later),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 CET", now),
        None
    );
}

#[test]
fn assertions_carry_kid_and_x5t_when_configured() {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .expect("openssl makes the test key");
    let pem = SecretString::from(String::from_utf8(out.stdout).unwrap());
    let jwt = client_assertion(
        "app",
        "https://idp/token",
        Some("k1"),
        Some("hOBcHZi846VCHSJbFAs26Go9VTQ"),
        &pem,
    )
    .unwrap();
    let header = jsonwebtoken::decode_header(jwt.expose_secret()).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some("k1"));
    assert_eq!(header.x5t.as_deref(), Some("hOBcHZi846VCHSJbFAs26Go9VTQ"));
    let jwt = client_assertion("app", "https://idp/token", None, None, &pem).unwrap();
    let header = jsonwebtoken::decode_header(jwt.expose_secret()).unwrap();
    assert!(header.kid.is_none() && header.x5t.is_none());
}

#[test]
fn echoed_secrets_are_redacted() {
    let secret = SecretString::from("rt-very-secret");
    assert_eq!(
        redact("bad token rt-very-secret", &[Some(&secret)]),
        "bad token [redacted]"
    );
}
