//! `refreshd kubectl-credential NAME`: kubectl's exec credential plugin. kubectl says
//! which `client.authentication.k8s.io` version it wants in `KUBERNETES_EXEC_INFO`; the
//! answer is an `ExecCredential` of that version with the credential's current token and
//! its expiry, so kubectl runs the plugin again only once the token is gone.
//!
//! Must never: print anything but the `ExecCredential` on stdout (kubectl parses it), or
//! the token anywhere else.

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::reach::Reach;
use crate::cli::Exit;
use crate::control::protocol::TokenAnswer;
use crate::token::rfc3339;

const V1: &str = "client.authentication.k8s.io/v1";
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

pub async fn run(reach: Reach, name: String) -> anyhow::Result<Exit> {
    let exec_info = std::env::var("KUBERNETES_EXEC_INFO").ok();
    let api_version = match requested_version(exec_info.as_deref()) {
        Ok(version) => version,
        Err(message) => {
            eprintln!("refreshd kubectl-credential: {message}");
            return Ok(Exit::Failed);
        }
    };
    match reach.token(&name).await {
        Ok(answer) => {
            println!("{}", exec_credential(&api_version, &answer));
            Ok(Exit::Ok)
        }
        Err(message) => {
            eprintln!(
                "refreshd kubectl-credential: {}",
                crate::observe::shown(&message)
            );
            Ok(Exit::Failed)
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecInfo {
    api_version: Option<String>,
}

/// The `apiVersion` kubectl asked for in `KUBERNETES_EXEC_INFO` (v1 when it says none).
fn requested_version(exec_info: Option<&str>) -> Result<String, String> {
    let Some(text) = exec_info.filter(|t| !t.trim().is_empty()) else {
        return Ok(V1.to_owned());
    };
    let info: ExecInfo = serde_json::from_str(text)
        .map_err(|e| format!("KUBERNETES_EXEC_INFO is not an ExecCredential: {e}"))?;
    match info.api_version.as_deref() {
        None => Ok(V1.to_owned()),
        Some(version @ (V1 | V1BETA1)) => Ok(version.to_owned()),
        Some(other) => Err(format!(
            "kubectl asks for {:?}; refreshd answers {V1} and {V1BETA1} (set `apiVersion: {V1}` in the kubeconfig's exec block)",
            crate::observe::shown(other)
        )),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredential<'a> {
    api_version: &'a str,
    kind: &'static str,
    status: Status<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    token: &'a str,
    /// RFC 3339 in whole seconds, as `metav1.Time` writes it.
    expiration_timestamp: String,
}

fn exec_credential(api_version: &str, answer: &TokenAnswer) -> String {
    let credential = ExecCredential {
        api_version,
        kind: "ExecCredential",
        status: Status {
            token: answer.token.expose_secret(),
            expiration_timestamp: rfc3339(answer.expires_at),
        },
    };
    serde_json::to_string(&credential).expect("an ExecCredential serialises")
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn answers_the_version_kubectl_asks_for() {
        assert_eq!(requested_version(None).unwrap(), V1);
        let info = |v: &str| {
            format!(
                r#"{{"kind":"ExecCredential","apiVersion":"{v}","spec":{{"interactive":false}}}}"#
            )
        };
        assert_eq!(requested_version(Some(&info(V1))).unwrap(), V1);
        assert_eq!(requested_version(Some(&info(V1BETA1))).unwrap(), V1BETA1);
        let err = requested_version(Some(&info("client.authentication.k8s.io/v1alpha1")));
        assert!(err.unwrap_err().contains("v1alpha1"));
        assert!(requested_version(Some("{")).is_err());
    }

    #[test]
    fn the_exec_credential_has_the_token_and_its_expiry() {
        let answer = TokenAnswer {
            token: SecretString::from("tok".to_owned()),
            token_type: "Bearer".into(),
            expires_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            fields: None,
        };
        let json: serde_json::Value =
            serde_json::from_str(&exec_credential(V1BETA1, &answer)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": V1BETA1,
                "kind": "ExecCredential",
                "status": {"token": "tok", "expirationTimestamp": "2027-01-15T08:00:00Z"}
            })
        );
    }
}
