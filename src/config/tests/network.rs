//! `proxy`, `ca_file` and the TLS client certificate: what parses, and every refusal naming
//! its line and key (and never a proxy's password).

use super::*;

fn credential(extra: &str, source: &str) -> Result<Config, ConfigError> {
    parse(&format!(
        "[daemon]\nstate_dir = \"/tmp/refreshd-state\"\n\n[credentials.api]\n{extra}\nsource = {{ {source} }}\n"
    ))
}

const CC: &str = r#"type = "oauth-client-credentials", token_url = "https://idp.example.com/token", client_id = "svc""#;
const RT: &str =
    r#"type = "oauth-refresh", token_url = "https://idp.example.com/token", client_id = "cli""#;
const CERT: &str = r#"client_cert = { file = "/etc/refreshd/client.pem" }, client_key = { file = "/etc/refreshd/client.key" }"#;

fn refusal(extra: &str, source: &str) -> String {
    credential(extra, source).unwrap_err().to_string()
}

#[test]
fn proxy_settings_parse_and_hide_their_password() {
    let config = credential(
        r#"proxy = "http://user:pw-secret@proxy.corp:3128""#,
        &format!("{CC}, client_secret = {{ env = \"S\" }}"),
    )
    .unwrap();
    let network = &config.credential("api").unwrap().network;
    let ProxySetting::Through(url) = &network.proxy else {
        panic!("{network:?}")
    };
    assert_eq!(url.url().password(), Some("pw-secret"));
    assert_eq!(url.redacted(), "http://***@proxy.corp:3128/");
    assert!(!format!("{config:?}").contains("pw-secret"));
    let config = credential(
        r#"proxy = "none""#,
        &format!("{CC}, client_secret = {{ env = \"S\" }}"),
    )
    .unwrap();
    assert_eq!(
        config.credential("api").unwrap().network.proxy,
        ProxySetting::Direct
    );
    let config = credential("", &format!("{CC}, client_secret = {{ env = \"S\" }}")).unwrap();
    assert!(config.credential("api").unwrap().network.is_default());
}

#[test]
fn a_bad_proxy_is_refused_on_its_line_without_its_password() {
    let secret = format!("{CC}, client_secret = {{ env = \"S\" }}");
    let err = refusal(r#"proxy = "socks5://u:pw-secret@proxy.corp:1080""#, &secret);
    assert!(
        err.starts_with("/etc/refreshd/config.toml:5: credentials.api.proxy: scheme `socks5`"),
        "{err}"
    );
    assert!(!err.contains("pw-secret"), "{err}");
    let err = refusal(r#"proxy = "u:pw-secret@proxy.corp""#, &secret);
    assert!(err.contains("credentials.api.proxy: "), "{err}");
    assert!(!err.contains("pw-secret"), "{err}");
    let err = refusal(r#"proxy = "http://proxy.corp:3128/path""#, &secret);
    assert!(err.contains("no path"), "{err}");
}

#[test]
fn ca_file_must_be_absolute_and_readable_when_loaded() {
    let secret = format!("{CC}, client_secret = {{ env = \"S\" }}");
    let err = refusal(r#"ca_file = "ca.pem""#, &secret);
    assert!(
        err.contains(":5: credentials.api.ca_file: ca.pem must be an absolute path"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let config = dir.path().join("config.toml");
    let text = format!(
        "[daemon]\nstate_dir = \"/tmp/refreshd-state\"\n\n[credentials.api]\nsource = {{ {secret} }}\nca_file = \"{}\"\n",
        ca.display()
    );
    std::fs::write(&config, &text).unwrap();
    let err = Config::load(&config).unwrap_err().to_string();
    assert!(
        err.contains(":6: credentials.api.ca_file: ") && err.contains("cannot read the CA file"),
        "{err}"
    );
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Config::load(&config).unwrap_err().to_string();
    assert!(err.contains(":6: credentials.api.ca_file: "), "{err}");
    crate::source::net::tests::make_ca(dir.path(), "ca");
    let loaded = Config::load(&config).unwrap();
    assert_eq!(
        loaded
            .credential("api")
            .unwrap()
            .network
            .ca_file
            .as_ref()
            .unwrap()
            .path,
        ca
    );
}

#[test]
fn tls_client_auth_needs_a_certificate_and_key_and_no_secret() {
    for method in ["tls_client_auth", "self_signed_tls_client_auth"] {
        let config = credential("", &format!("{CC}, auth = \"{method}\", {CERT}")).unwrap();
        let source = &config.credential("api").unwrap().source;
        assert!(
            matches!(source, SourceConfig::OauthClientCredentials(s) if matches!(s.client, ClientAuth::Tls(_)))
        );
        let keys: Vec<&str> = source.secrets().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["client_cert", "client_key"]);
        let config = credential("", &format!("{RT}, auth = \"{method}\", {CERT}")).unwrap();
        let SourceConfig::OauthRefresh(s) = &config.credential("api").unwrap().source else {
            panic!()
        };
        assert!(s.tls_client.is_some() && s.client_secret.is_none());
    }
    let err = refusal(
        "",
        &format!("{CC}, auth = \"tls_client_auth\", client_cert = {{ file = \"/c.pem\" }}"),
    );
    assert!(err.contains("credentials.api.source.client_key: "), "{err}");
    let err = refusal(
        "",
        &format!("{CC}, client_secret = {{ env = \"S\" }}, {CERT}"),
    );
    assert!(
        err.contains("credentials.api.source.client_cert: `client_cert` goes only with"),
        "{err}"
    );
    let err = refusal(
        "",
        &format!("{CC}, auth = \"tls_client_auth\", {CERT}, client_secret = {{ env = \"S\" }}"),
    );
    assert!(err.contains("credentials.api.source.auth: "), "{err}");
    let err = refusal(
        "",
        &format!(
            "{RT}, auth = \"self_signed_tls_client_auth\", {CERT}, client_secret = {{ env = \"S\" }}"
        ),
    );
    assert!(
        err.contains("credentials.api.source.client_secret: "),
        "{err}"
    );
    let err = refusal("", &format!("{CC}, auth = \"mtls\", {CERT}"));
    assert!(err.contains("auth"), "{err}");
}
