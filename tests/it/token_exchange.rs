//! The `oauth-token-exchange` source (RFC 8693) against the real oidc-provider with a
//! token-exchange grant registered through its `registerGrantType` extension
//! (tests/fixtures/oidc/token-exchange.mjs). The test is the workload's platform: it owns
//! an issuer key (as a cluster owns its service-account issuer key), gives the provider
//! only the public JWK, and signs the subject tokens the provider verifies (signature,
//! audience, expiry). Also the Entra-style federated `client_assertion` on the
//! client-credentials source, verified by the provider as a private-key-JWT client's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::{Oidc, Refreshd, assert_success, eventually, jwt_claims, stderr};

/// The audience subject tokens are minted for (the fixture's `TOKEN_EXCHANGE_AUDIENCE`).
const STS_AUDIENCE: &str = "sts.test";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A workload platform's token issuer: an ES256 key the test holds.
struct Issuer {
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
}

impl Issuer {
    fn new() -> Issuer {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Issuer {
            key: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "cluster-1", "use": "sig",
                "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
            }),
        }
    }

    /// A projected service-account token `jti` that expires `life` seconds from now
    /// (negative: expired that long ago).
    fn token(&self, jti: &str, life: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("cluster-1".into());
        let claims = json!({
            "iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:app:api",
            "aud": STS_AUDIENCE, "iat": now.min(now + life - 60), "exp": now + life, "jti": jti,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

fn start(r: &Refreshd, issuer: &Issuer) -> Oidc {
    // An hour: no exchange is due by expiry during a test (min_remaining is 10 minutes).
    let oidc = Oidc::start_with(
        r.dir.path(),
        3600,
        &[
            ("TOKEN_EXCHANGE_JWK", issuer.jwk.to_string()),
            ("TOKEN_EXCHANGE_AUDIENCE", STS_AUDIENCE.to_owned()),
        ],
        None,
    );
    assert_eq!(oidc.exchanges().len(), 0);
    oidc
}

/// The kubelet's layout of a projected token: `tokens/sa` → `..data/sa`, `..data` → a
/// timestamped directory; a new token goes into a new directory and `..data` is swapped
/// by a rename, so `sa` itself never sees an event.
struct Projected {
    dir: PathBuf,
    generation: usize,
}

impl Projected {
    fn new(dir: &Path, token: &str) -> Projected {
        std::fs::create_dir(dir).unwrap();
        std::os::unix::fs::symlink("..data/sa", dir.join("sa")).unwrap();
        let mut projected = Projected {
            dir: dir.to_owned(),
            generation: 0,
        };
        projected.rotate(token);
        projected
    }

    fn path(&self) -> PathBuf {
        self.dir.join("sa")
    }

    fn rotate(&mut self, token: &str) {
        self.generation += 1;
        let data = format!("..2026_12_07_{}", self.generation);
        std::fs::create_dir(self.dir.join(&data)).unwrap();
        std::fs::write(self.dir.join(&data).join("sa"), token).unwrap();
        std::os::unix::fs::symlink(&data, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
    }
}

/// The access token in `path` and the subject it was exchanged for (`exchanged_jti`).
fn exchanged_jti(path: &Path) -> Option<String> {
    let token = std::fs::read_to_string(path).ok()?;
    let claims = jwt_claims(token.trim());
    claims["exchanged_jti"].as_str().map(str::to_owned)
}

#[test]
fn a_rotated_projected_token_is_exchanged_again_under_the_running_daemon() {
    let mut r = Refreshd::new();
    let issuer = Issuer::new();
    let oidc = start(&r, &issuer);
    let first = issuer.token("subject-1", 3600);
    let mut projected = Projected::new(&r.path("tokens"), &first);
    let token_file = r.path("access-token");
    r.write_config(&format!(
        r#"[credentials.k8s]
source = {{ type = "oauth-token-exchange", token_url = "{url}", client_id = "tx-public", subject_token = {{ file = "{subject}" }}, requested_token_type = "{ACCESS_TOKEN_TYPE}", audience = "api.example.com", resource = "urn:refreshd:test", scopes = ["api"] }}
targets = [ {{ type = "file", path = "{target}" }} ]
"#,
        url = oidc.token_endpoint,
        subject = projected.path().display(),
        target = token_file.display(),
    ));
    let mut daemon = r.spawn(&["run"]);
    let jti = eventually("the first exchange", Duration::from_secs(20), || {
        exchanged_jti(&token_file)
    });
    assert_eq!(jti, "subject-1");
    let seen = oidc.exchanges();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let exchange = &seen[0];
    assert_eq!(exchange["ok"], true, "{exchange}");
    assert_eq!(exchange["client_id"], "tx-public");
    assert_eq!(exchange["sub"], "system:serviceaccount:app:api");
    assert_eq!(
        exchange["subject_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(exchange["requested_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(exchange["audience"], "api.example.com");
    assert_eq!(exchange["resource"], "urn:refreshd:test");
    assert_eq!(exchange["scope"], "api");
    let state = r.state("k8s");
    assert_eq!(state["token"]["expiry_source"], "jwt_exp", "{state}");

    // The kubelet projects a new token long before the exchanged one is due: the daemon
    // exchanges the new one at once.
    let second = issuer.token("subject-2", 3600);
    projected.rotate(&second);
    let jti = eventually(
        "an exchange of the rotated subject token",
        Duration::from_secs(20),
        || exchanged_jti(&token_file).filter(|jti| jti == "subject-2"),
    );
    assert_eq!(jti, "subject-2");
    daemon.wait_for(
        "the subject token file holds a new token",
        Duration::from_secs(5),
    );
    let seen = oidc.exchanges();
    assert_eq!(seen.len(), 2, "one exchange per subject token: {seen:?}");
    assert_eq!(seen[1]["jti"], "subject-2");

    // A rewrite with the same token is no news: nothing is exchanged.
    projected.rotate(&second);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(oidc.exchanges().len(), 2, "{}", daemon.output());

    daemon.terminate(Duration::from_secs(10));
    r.record_daemon(&daemon);
    r.assert_no_issued_tokens(&oidc);
    r.assert_no_secrets(&[first, second]);
}

#[test]
fn an_expired_subject_token_is_refused_before_any_request() {
    let mut r = Refreshd::new();
    let issuer = Issuer::new();
    let oidc = start(&r, &issuer);
    let stale = issuer.token("stale", -120);
    let subject = r.path("sa.jwt");
    std::fs::write(&subject, &stale).unwrap();
    r.write_config(&format!(
        r#"[credentials.k8s]
source = {{ type = "oauth-token-exchange", token_url = "{url}", client_id = "tx-public", subject_token = {{ file = "{subject}" }}, resource = "urn:refreshd:test" }}
targets = [ {{ type = "file", path = "{target}" }} ]
"#,
        url = oidc.token_endpoint,
        subject = subject.display(),
        target = r.path("access-token").display(),
    ));
    let output = r.run(&["once"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    let exp = jwt_claims(&stale)["exp"].as_i64().unwrap();
    let expired_at = time::OffsetDateTime::from_unix_timestamp(exp)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(
        text.contains(&format!("subject_token file {}", subject.display()))
            && text.contains(&format!("expired at {expired_at}")),
        "the error names the file and its expiry:\n{text}"
    );
    assert!(oidc.exchanges().is_empty(), "no request carried it");
    assert!(!r.path("access-token").exists());

    // The platform writes a fresh one: the next attempt exchanges it.
    let fresh = issuer.token("fresh", 3600);
    std::fs::write(&subject, &fresh).unwrap();
    assert_success(&r.run(&["once"]));
    assert_eq!(
        exchanged_jti(&r.path("access-token")).as_deref(),
        Some("fresh")
    );
    r.assert_no_issued_tokens(&oidc);
    r.assert_no_secrets(&[stale, fresh]);
}

#[test]
fn subjects_from_another_credential_and_from_a_command_with_a_client_secret() {
    let mut r = Refreshd::new();
    let issuer = Issuer::new();
    let oidc = start(&r, &issuer);
    let ci_token = issuer.token("ci-oidc", 3600);
    std::fs::write(r.path("ci.jwt"), &ci_token).unwrap();
    std::fs::write(r.path("client.secret"), "tx-secret-secret").unwrap();
    let dir = r.dir.path().display().to_string();
    let url = &oidc.token_endpoint;
    r.write_config(&format!(
        r#"[credentials.cloud]
source = {{ type = "oauth-token-exchange", token_url = "{url}", subject_token = {{ credential = "ci" }}, client_id = "tx-secret", client_secret = {{ file = "{dir}/client.secret" }}, auth = "basic", resource = "urn:refreshd:test" }}
targets = [ {{ type = "file", path = "{dir}/cloud-token" }} ]

[credentials.ci]
source = {{ type = "command", argv = ["cat", "{dir}/ci.jwt"] }}
targets = [ {{ type = "file", path = "{dir}/ci-token" }} ]

[credentials.scripted]
source = {{ type = "oauth-token-exchange", token_url = "{url}", subject_token = {{ command = ["cat", "{dir}/ci.jwt"] }}, client_id = "tx-public", resource = "urn:refreshd:test" }}
targets = [ {{ type = "file", path = "{dir}/scripted-token" }} ]
"#
    ));
    let output = r.run(&["once"]);
    assert_success(&output);
    // `ci` was refreshed first (the bearer graph), then exchanged by `cloud`.
    assert_eq!(
        exchanged_jti(&r.path("cloud-token")).as_deref(),
        Some("ci-oidc")
    );
    assert_eq!(
        exchanged_jti(&r.path("scripted-token")).as_deref(),
        Some("ci-oidc")
    );
    let clients: Vec<&str> = oidc
        .exchanges()
        .iter()
        .map(|e| {
            assert_eq!(e["ok"], true, "{e}");
            e["client_id"].as_str().unwrap()
        })
        .map(|c| {
            if c == "tx-secret" {
                "tx-secret"
            } else {
                "tx-public"
            }
        })
        .collect();
    let mut sorted = clients.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["tx-public", "tx-secret"], "{clients:?}");
    assert_eq!(oidc.count("by_auth", "client_secret_basic"), 1);
    r.assert_no_issued_tokens(&oidc);
    r.assert_no_secrets(&[ci_token.as_str(), "tx-secret-secret"]);
}

#[test]
fn a_federated_client_assertion_stands_in_for_the_client_secret() {
    let mut r = Refreshd::new();
    let issuer = Issuer::new();
    let oidc = start(&r, &issuer);
    // The platform (here the test, with the key the provider registered for client cc-jwt)
    // signs the federated token; refreshd only passes it on.
    let pem = std::fs::read(&oidc.cc_jwt_key).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let assertion = |jti: &str, life: i64| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(oidc.cc_jwt_kid.clone());
        let claims = json!({
            "iss": "cc-jwt", "sub": "cc-jwt", "aud": oidc.token_endpoint,
            "iat": now.min(now + life - 60), "exp": now + life, "jti": jti,
        });
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let file = r.path("azure-identity-token");
    let stale = assertion("stale", -30);
    std::fs::write(&file, &stale).unwrap();
    r.write_config(&format!(
        r#"[credentials.entra]
source = {{ type = "oauth-client-credentials", token_url = "{url}", client_id = "cc-jwt", client_assertion = {{ file = "{file}" }}, scopes = ["api"], params = {{ resource = "urn:refreshd:test" }} }}
targets = [ {{ type = "file", path = "{target}" }} ]
"#,
        url = oidc.token_endpoint,
        file = file.display(),
        target = r.path("token").display(),
    ));
    let output = r.run(&["once"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("client_assertion file {}", file.display())),
        "{}",
        stderr(&output)
    );
    assert_eq!(oidc.stats()["token_requests"], 0, "nothing was sent");

    let fresh = assertion("fresh", 300);
    std::fs::write(&file, &fresh).unwrap();
    assert_success(&r.run(&["once"]));
    let claims = jwt_claims(std::fs::read_to_string(r.path("token")).unwrap().trim());
    assert_eq!(claims["client_id"], "cc-jwt");
    assert_eq!(oidc.count("by_auth", "private_key_jwt"), 1);
    r.assert_no_issued_tokens(&oidc);
    r.assert_no_secrets(&[stale, fresh]);
}
