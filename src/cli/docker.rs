//! `docker-credential-refreshd` (a link to refreshd; `"credHelpers": {"HOST": "refreshd"}`
//! in `~/.docker/config.json`): docker's credential-helper protocol. `get` reads a server
//! URL on stdin and answers `{"ServerURL", "Username", "Secret"}` for the credential, among
//! those this user may read, whose `docker.server` names that registry; `list` gives
//! `{"SERVER": "USERNAME"}`. As docker-credential-helpers does, errors go to stdout with
//! exit status 1, and an unknown server is exactly "credentials not found in native
//! keychain", which docker reads as "no credentials here".
//!
//! Must never: store or erase anything (refreshd owns the token), or print the token
//! anywhere but `get`'s answer. The config and socket come from `REFRESHD_CONFIG` and
//! `REFRESHD_SOCKET`: docker passes no arguments but the operation.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use secrecy::ExposeSecret;
use serde::Serialize;

use super::reach::Reach;
use crate::cli::Exit;
use crate::control::protocol::HelperEntry;

/// The name docker runs this binary by.
pub const NAME: &str = "docker-credential-refreshd";

/// docker-credential-helpers' message for "no credentials for this server"; docker
/// compares the helper's output with it.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// docker sends one URL; anything near this is not docker.
const MAX_INPUT: u64 = 64 * 1024;

/// Whether this process was started as `docker-credential-refreshd`.
pub fn called_as_helper() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|path| path.file_name().map(|name| name == NAME))
        .unwrap_or(false)
}

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match super::block_on(run(args)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            println!("{e:#}");
            Exit::Failed.into()
        }
    }
}

async fn run(args: Vec<String>) -> anyhow::Result<Exit> {
    let [operation] = args.as_slice() else {
        println!("Usage: {NAME} <store|get|erase|list|version>");
        return Ok(Exit::Failed);
    };
    match operation.as_str() {
        "get" | "list" => {}
        "version" => {
            println!("{NAME} (refreshd) {}", env!("CARGO_PKG_VERSION"));
            return Ok(Exit::Ok);
        }
        "store" | "erase" => {
            let _ = input();
            println!(
                "refreshd manages these credentials (`docker` in its config): docker cannot {operation} them; remove the registry from credHelpers to use docker login"
            );
            return Ok(Exit::Failed);
        }
        other => {
            println!(
                "Unknown credential action `{}`",
                crate::observe::shown(other)
            );
            return Ok(Exit::Failed);
        }
    }
    let config = std::env::var_os("REFRESHD_CONFIG")
        .filter(|path| !path.is_empty())
        .map_or_else(crate::config::default_config_path, PathBuf::from);
    let socket = std::env::var_os("REFRESHD_SOCKET")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from);
    let reach = match Reach::new(&config, socket) {
        Ok(reach) => reach,
        Err(e) => {
            println!("{e}");
            return Ok(Exit::Config);
        }
    };
    if operation == "list" {
        return list(&reach).await;
    }
    get(&reach, input()?.trim()).await
}

/// stdin, up to [`MAX_INPUT`].
fn input() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_INPUT)
        .read_to_string(&mut text)?;
    Ok(text)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Credentials<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    username: &'a str,
    secret: &'a str,
}

async fn get(reach: &Reach, server: &str) -> anyhow::Result<Exit> {
    if server.is_empty() {
        println!("no credentials server URL");
        return Ok(Exit::Failed);
    }
    let helpers = match reach.helpers().await {
        Ok(helpers) => helpers,
        Err(message) => return Ok(failed(&message)),
    };
    let Some((name, username)) = find(&helpers, server) else {
        println!("{NOT_FOUND}");
        return Ok(Exit::Failed);
    };
    let answer = match reach.token(name).await {
        Ok(answer) => answer,
        Err(message) => return Ok(failed(&message)),
    };
    let credentials = Credentials {
        server_url: server,
        username,
        secret: answer.token.expose_secret(),
    };
    println!("{}", serde_json::to_string(&credentials)?);
    Ok(Exit::Ok)
}

async fn list(reach: &Reach) -> anyhow::Result<Exit> {
    let helpers = match reach.helpers().await {
        Ok(helpers) => helpers,
        Err(message) => return Ok(failed(&message)),
    };
    let listed: BTreeMap<&str, &str> = helpers
        .iter()
        .filter_map(|entry| entry.docker.as_ref())
        .map(|docker| (docker.server.as_str(), docker.username.as_str()))
        .collect();
    println!("{}", serde_json::to_string(&listed)?);
    Ok(Exit::Ok)
}

fn failed(message: &str) -> Exit {
    println!("refreshd: {}", crate::observe::shown(message));
    Exit::Failed
}

/// The credential (name, username) whose `docker.server` is the registry `server` names.
fn find<'a>(helpers: &'a [HelperEntry], server: &str) -> Option<(&'a str, &'a str)> {
    let wanted = registry(server);
    helpers.iter().find_map(|entry| {
        let docker = entry.docker.as_ref()?;
        (registry(&docker.server) == wanted)
            .then_some((entry.name.as_str(), docker.username.as_str()))
    })
}

/// The registry a server URL names, as the docker CLI compares them (its
/// `ConvertToHostname`): without `http://` or `https://` and without a path, lower-cased;
/// Docker Hub's names all become `index.docker.io`.
fn registry(server: &str) -> String {
    let server = server.trim();
    let server = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = server
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "index.docker.io".to_owned(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::DockerEntry;

    #[test]
    fn server_urls_name_registries_as_docker_compares_them() {
        assert_eq!(
            registry("https://registry.example.com"),
            "registry.example.com"
        );
        assert_eq!(registry("registry.example.com"), "registry.example.com");
        assert_eq!(
            registry("http://Registry.example.com:5000/v2/"),
            "registry.example.com:5000"
        );
        assert_eq!(registry("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(registry("docker.io"), "index.docker.io");
        assert_ne!(
            registry("registry.example.com:5000"),
            registry("registry.example.com")
        );
    }

    #[test]
    fn finds_the_credential_that_declares_the_registry() {
        let helpers = [
            HelperEntry {
                name: "git-only".into(),
                git: None,
                docker: None,
            },
            HelperEntry {
                name: "reg".into(),
                git: None,
                docker: Some(DockerEntry {
                    server: "registry.example.com".into(),
                    username: "oauth2accesstoken".into(),
                }),
            },
        ];
        assert_eq!(
            find(&helpers, "https://registry.example.com"),
            Some(("reg", "oauth2accesstoken"))
        );
        assert_eq!(find(&helpers, "registry.example.org"), None);
    }
}
