//! `oauth-token-exchange` and the federated `client_assertion`: what is accepted, what is
//! refused with the key that is wrong.

use super::*;

fn with_source(sources: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut text = String::from("[daemon]\nstate_dir = \"/tmp/refreshd-state\"\n");
    for (name, source) in sources {
        text.push_str(&format!(
            "\n[credentials.{name}]\nsource = {source}\ntargets = [ {{ type = \"file\", path = \"/run/app/{name}\" }} ]\n"
        ));
    }
    parse(&text)
}

/// `source` (an inline table) with `extra` keys added at its end.
fn extend(source: &str, extra: &str) -> String {
    let open = source.strip_suffix(" }").unwrap();
    format!("{open}, {extra} }}")
}

fn error(sources: &[(&str, &str)]) -> String {
    with_source(sources).unwrap_err().to_string()
}

const K8S: &str = r#"{ type = "oauth-token-exchange", token_url = "https://idp.example.com/token", subject_token = { file = "/var/run/secrets/tokens/sa" }, audience = "api" }"#;

#[test]
fn a_file_subject_is_watched_and_read_as_a_secret_with_the_jwt_type_by_default() {
    let config = with_source(&[("k8s", K8S)]).unwrap();
    let source = &config.credentials[0].source;
    let SourceConfig::OauthTokenExchange(exchange) = source else {
        panic!("{source:?}")
    };
    assert_eq!(exchange.subject_token_type, DEFAULT_SUBJECT_TOKEN_TYPE);
    assert_eq!(exchange.audience.as_deref(), Some("api"));
    assert!(exchange.client.is_none() && exchange.client_id.is_none());
    assert_eq!(source.kind(), "oauth-token-exchange");
    assert_eq!(
        source.watched_files(),
        vec![Path::new("/var/run/secrets/tokens/sa")]
    );
    // `check` reads it like any secret file, under its own key.
    assert_eq!(source.secrets()[0].0, "subject_token");
    assert!(source.bearers().is_empty());
}

#[test]
fn a_credential_subject_joins_the_bearer_graph() {
    let exchange = r#"{ type = "oauth-token-exchange", token_url = "https://idp.example.com/token", subject_token = { credential = "ci" } }"#;
    let ci = r#"{ type = "command", argv = ["ci-oidc-token"] }"#;
    let config = with_source(&[("ci", ci), ("cloud", exchange)]).unwrap();
    let cloud = config.credential("cloud").unwrap();
    assert_eq!(cloud.source.bearers(), vec!["ci"]);
    assert!(cloud.source.watched_files().is_empty());
    let order: Vec<&str> = config
        .dependency_order()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(order, ["ci", "cloud"]);
    let err = error(&[("cloud", exchange)]);
    assert!(
        err.contains("credentials.cloud.source.subject_token") && err.contains("`ci`"),
        "{err}"
    );
    let itself = exchange.replace("\"ci\"", "\"cloud\"");
    let err = error(&[("cloud", &itself)]);
    assert!(err.contains("cycle"), "{err}");
}

#[test]
fn the_subject_comes_from_exactly_one_place() {
    for subject in [
        "{}",
        r#"{ file = "/a", env = "B" }"#,
        r#"{ command = [] }"#,
        r#"{ file = "relative/sa" }"#,
    ] {
        let source = K8S.replace(r#"{ file = "/var/run/secrets/tokens/sa" }"#, subject);
        let err = error(&[("k8s", &source)]);
        assert!(
            err.contains("credentials.k8s.source.subject_token"),
            "{subject}: {err}"
        );
    }
    let source = K8S.replace("file =", "path =");
    assert!(error(&[("k8s", &source)]).contains("path"));
    let command = K8S.replace(
        r#"{ file = "/var/run/secrets/tokens/sa" }"#,
        r#"{ command = ["gh-oidc-token", "--audience", "api"] }"#,
    );
    let config = with_source(&[("k8s", &command)]).unwrap();
    let SourceConfig::OauthTokenExchange(exchange) = &config.credentials[0].source else {
        panic!()
    };
    assert!(matches!(&exchange.subject, SubjectToken::Command(c) if c.argv[0] == "gh-oidc-token"));
}

#[test]
fn client_authentication_is_optional_but_one_way_and_named() {
    let with = |extra: &str| extend(K8S, extra);
    // A public client names itself; a secret needs the client's id.
    with_source(&[("k8s", &with(r#"client_id = "app""#))]).unwrap();
    let config = with_source(&[(
        "k8s",
        &with(r#"client_id = "app", client_secret = { env = "S" }, auth = "post""#),
    )])
    .unwrap();
    let SourceConfig::OauthTokenExchange(exchange) = &config.credentials[0].source else {
        panic!()
    };
    assert!(matches!(
        exchange.client,
        Some(ClientAuth::Secret {
            auth: SecretAuth::Post,
            ..
        })
    ));
    let err = error(&[("k8s", &with(r#"client_secret = { env = "S" }"#))]);
    assert!(err.contains("source.client_id"), "{err}");
    let err = error(&[(
        "k8s",
        &with(r#"client_id = "app", client_secret = { env = "S" }, private_key = { env = "K" }"#),
    )]);
    assert!(err.contains("only one of"), "{err}");
    let err = error(&[("k8s", &with(r#"client_id = "app", auth = "post""#))]);
    assert!(err.contains("source.auth"), "{err}");
}

#[test]
fn client_credentials_take_a_federated_assertion_instead_of_a_secret() {
    let entra = r#"{ type = "oauth-client-credentials", token_url = "https://login.microsoftonline.com/t/oauth2/v2.0/token", client_id = "app", client_assertion = { file = "/var/run/secrets/azure/tokens/azure-identity-token" }, scopes = ["https://graph.microsoft.com/.default"] }"#;
    let config = with_source(&[("entra", entra)]).unwrap();
    let source = &config.credentials[0].source;
    let SourceConfig::OauthClientCredentials(cc) = source else {
        panic!()
    };
    assert!(matches!(cc.client, ClientAuth::Assertion { .. }));
    assert_eq!(source.secrets()[0].0, "client_assertion");
    let both = extend(entra, r#"client_secret = { env = "S" }"#);
    assert!(error(&[("entra", &both)]).contains("only one of"));
    let neither = entra.replace(
        r#"client_assertion = { file = "/var/run/secrets/azure/tokens/azure-identity-token" }, "#,
        "",
    );
    let err = error(&[("entra", &neither)]);
    assert!(err.contains("client_assertion"), "{err}");
}
