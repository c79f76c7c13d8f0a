//! The bearer graph: which credential's token another one's `http` source sends. Every
//! bearer must exist and no chain of bearers may come back to where it started (each
//! would wait for the other's token forever); `once` and `check --online` visit bearers
//! before the credentials that use them.

use std::sync::Arc;

use super::{ConfigError, Credential, Doc};

/// Refuses unknown bearers and bearer cycles.
pub(super) fn check(doc: &Doc<'_>, credentials: &[Arc<Credential>]) -> Result<(), ConfigError> {
    let error = |credential: &Credential, message: String| ConfigError::Invalid {
        path: doc.path.to_path_buf(),
        line: credential.line,
        key: format!("credentials.{}.source.bearer", credential.name),
        message,
    };
    for credential in credentials {
        for bearer in credential.source.bearers() {
            if !credentials.iter().any(|c| c.name == bearer) {
                return Err(error(
                    credential,
                    format!("names credential `{bearer}`, which this config does not define"),
                ));
            }
        }
    }
    for credential in credentials {
        // Depth-first from each credential; the path so far is the would-be cycle.
        let mut path = vec![credential.name.as_str()];
        if let Some(cycle) = find_cycle(credentials, &mut path) {
            return Err(error(
                credential,
                format!("bearer references form a cycle: {}", cycle.join(" → ")),
            ));
        }
    }
    Ok(())
}

/// A bearer cycle through the last credential of `path`, as the list of names that closes it.
fn find_cycle<'a>(
    credentials: &'a [Arc<Credential>],
    path: &mut Vec<&'a str>,
) -> Option<Vec<String>> {
    let last = *path.last()?;
    let credential = credentials.iter().find(|c| c.name == last)?;
    for bearer in credential.source.bearers() {
        if bearer == path[0] {
            let mut cycle: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            cycle.push(bearer.to_owned());
            return Some(cycle);
        }
        // A cycle elsewhere is reported from its own members.
        if path.contains(&bearer) || path.len() > credentials.len() {
            continue;
        }
        let bearer = credentials.iter().find(|c| c.name == bearer)?.name.as_str();
        path.push(bearer);
        if let Some(cycle) = find_cycle(credentials, path) {
            return Some(cycle);
        }
        path.pop();
    }
    None
}

/// The credentials in an order where every bearer comes before the credentials that use
/// its token (the config was checked for cycles), otherwise as configured.
pub(super) fn dependency_order(credentials: &[Arc<Credential>]) -> Vec<&Credential> {
    fn visit<'a>(
        all: &'a [Arc<Credential>],
        credential: &'a Credential,
        done: &mut Vec<&'a Credential>,
        depth: usize,
    ) {
        if done.iter().any(|c| c.name == credential.name) || depth > all.len() {
            return;
        }
        for bearer in credential.source.bearers() {
            if let Some(b) = all.iter().find(|c| c.name == bearer) {
                visit(all, b, done, depth + 1);
            }
        }
        if !done.iter().any(|c| c.name == credential.name) {
            done.push(credential);
        }
    }
    let mut done: Vec<&Credential> = Vec::with_capacity(credentials.len());
    for credential in credentials {
        visit(credentials, credential, &mut done, 0);
    }
    done
}
