//! The client cache and the CA and client-certificate files, with keys and certificates made
//! by the real `openssl` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::config::{CaFile, MtlsMethod, ProxySetting};
use crate::secret::SecretRef;

/// Runs `openssl` in `dir`; panics with the install command when it is missing or fails.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): run `scripts/install-test-peers` (Debian package openssl)")
        });
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA certificate and key in `dir` (`NAME.pem`, `NAME.key`).
pub(crate) fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    dir.join(format!("{name}.pem"))
}

fn network(ca: Option<&Path>) -> Network {
    Network {
        proxy: ProxySetting::Environment,
        ca_file: ca.map(|path| CaFile {
            path: path.to_owned(),
            line: 1,
        }),
    }
}

#[test]
fn a_ca_file_must_hold_usable_pem_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "ca");
    assert_eq!(ca_certificates(&ca).unwrap().len(), 1);
    let err = ca_certificates(&dir.path().join("missing.pem")).unwrap_err();
    assert!(err.to_string().contains("cannot read the CA file"), "{err}");
    let text = dir.path().join("text.pem");
    std::fs::write(&text, "not a certificate\n").unwrap();
    let err = ca_certificates(&text).unwrap_err().to_string();
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = ca_certificates(&broken).unwrap_err().to_string();
    assert!(err.contains("certificate 1"), "{err}");
}

#[test]
fn one_client_per_distinct_set_and_none_for_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path(), "ca");
    let other = make_ca(dir.path(), "other");
    let clients = HttpClients::new();
    clients.client(&Network::default(), None).unwrap();
    assert_eq!(clients.own_clients(), 0);
    clients.client(&network(Some(&ca)), None).unwrap();
    clients.client(&network(Some(&ca)), None).unwrap();
    assert_eq!(clients.own_clients(), 1);
    clients.client(&network(Some(&other)), None).unwrap();
    let direct = Network {
        proxy: ProxySetting::Direct,
        ca_file: None,
    };
    clients.client(&direct, None).unwrap();
    assert_eq!(clients.own_clients(), 3);
    // The same bundle at another path is the same set; a renewed one at the same path is not.
    std::fs::copy(&other, &ca).unwrap();
    clients.client(&network(Some(&ca)), None).unwrap();
    assert_eq!(clients.own_clients(), 3);
    make_ca(dir.path(), "ca");
    clients.client(&network(Some(&ca)), None).unwrap();
    assert_eq!(clients.own_clients(), 4);
}

#[test]
fn a_client_certificate_and_key_make_one_identity() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "client");
    // `openssl ecparam -genkey` writes EC PARAMETERS before the key.
    openssl(
        dir.path(),
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "sec1.key",
        ],
    );
    let tls = |cert: &str, key: &str| TlsClientAuth {
        method: MtlsMethod::TlsClientAuth,
        cert: SecretRef::File(dir.path().join(cert)),
        key: SecretRef::File(dir.path().join(key)),
    };
    let clients = HttpClients::new();
    clients
        .client(&Network::default(), Some(&tls("client.pem", "client.key")))
        .unwrap();
    assert_eq!(clients.own_clients(), 1);
    // A key that is not the certificate's is refused when the client is built.
    let err = clients
        .client(&Network::default(), Some(&tls("client.pem", "sec1.key")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("client_cert and client_key"), "{err}");
    let err = clients
        .client(&Network::default(), Some(&tls("client.key", "client.key")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("client_cert holds no PEM certificate"),
        "{err}"
    );
    let err = clients
        .client(&Network::default(), Some(&tls("client.pem", "client.pem")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("client_key holds no PEM private key"), "{err}");
    let err = clients
        .client(&Network::default(), Some(&tls("client.pem", "absent.key")))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("client_key: "), "{err}");
}
