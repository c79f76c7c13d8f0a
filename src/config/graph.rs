//! The bearer graph: which credential's token another one's source uses (an `http`
//! source's bearer, a token exchange's subject), and which credentials a template `uses`
//! (they must exist; re-rendering never cascades, so those may form cycles). Every bearer
//! must exist and no chain of bearers may come back to where it started (each would wait for
//! the other's token forever); `once` and `check --online` visit bearers before the
//! credentials that use them.
//!
//! Must never: cost more than a pass over the credentials for a config that loads; a
//! fleet's holds ten thousand.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::locate::Doc;
use super::{ConfigError, Credential};

/// Refuses unknown bearers and bearer cycles.
pub(super) fn check(doc: &Doc<'_>, credentials: &[Arc<Credential>]) -> Result<(), ConfigError> {
    let error = |credential: &Credential, key: &str, message: String| ConfigError::Invalid {
        path: doc.path.to_path_buf(),
        line: credential.line,
        key: format!("credentials.{}.source.{key}", credential.name),
        message,
    };
    let by_name = index(credentials);
    for credential in credentials {
        if let Some(unknown) = credential
            .uses()
            .into_iter()
            .find(|used| !by_name.contains_key(used))
        {
            return Err(ConfigError::Invalid {
                path: doc.path.to_path_buf(),
                line: credential.line,
                key: format!("credentials.{}.targets", credential.name),
                message: format!(
                    "a template uses credential `{unknown}`, which this config does not define"
                ),
            });
        }
        for (key, bearer) in credential.source.bearer_keys() {
            let Some(named) = by_name.get(bearer) else {
                return Err(error(
                    credential,
                    key,
                    format!("names credential `{bearer}`, which this config does not define"),
                ));
            };
            // AWS keys sign only if the credential named for them yields the key pair.
            let yields = named.source.fields();
            if key == "aws"
                && let Some(missing) = super::AWS_FIELDS
                    .iter()
                    .find(|f| !yields.iter().any(|y| y == *f))
            {
                return Err(error(
                    credential,
                    key,
                    format!(
                        "credential `{bearer}` yields no field `{missing}`: name one whose source gives AWS keys (aws-web-identity, or fields `access_key_id` and `secret_access_key`)"
                    ),
                ));
            }
        }
    }
    // The search below starts from every credential and walks all it reaches: cubic in a
    // deep chain of bearers. A config without a cycle (any config that loads) skips it.
    if !has_cycle(&by_name, credentials) {
        return Ok(());
    }
    for credential in credentials {
        // Depth-first from each credential that sends a bearer; the path so far is the
        // would-be cycle. The first credential on a cycle is the one reported.
        if credential.source.bearers().is_empty() {
            continue;
        }
        let mut path = vec![credential.name.as_str()];
        if let Some(cycle) = find_cycle(&by_name, &mut path) {
            let key = credential.source.bearer_keys()[0].0;
            return Err(error(
                credential,
                key,
                format!("bearer references form a cycle: {}", cycle.join(" → ")),
            ));
        }
    }
    Ok(())
}

/// Credentials by name: every look-up in a config of ten thousand costs the same.
fn index(credentials: &[Arc<Credential>]) -> HashMap<&str, &Credential> {
    credentials
        .iter()
        .map(|c| (c.name.as_str(), c.as_ref()))
        .collect()
}

/// Whether some chain of bearers comes back to where it started, in one pass (Kahn's
/// algorithm): peel off each credential whose token no remaining credential sends; what
/// cannot be peeled lies on a cycle or is the bearer of a credential that does.
fn has_cycle<'a>(
    by_name: &HashMap<&'a str, &'a Credential>,
    credentials: &'a [Arc<Credential>],
) -> bool {
    let mut users: HashMap<&str, usize> =
        credentials.iter().map(|c| (c.name.as_str(), 0)).collect();
    for credential in credentials {
        for bearer in credential.source.bearers() {
            if let Some(n) = users.get_mut(bearer) {
                *n += 1;
            }
        }
    }
    let mut unused: Vec<&str> = users
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| *name)
        .collect();
    let mut peeled = 0;
    while let Some(name) = unused.pop() {
        peeled += 1;
        let Some(credential) = by_name.get(name) else {
            continue;
        };
        for bearer in credential.source.bearers() {
            if let Some(n) = users.get_mut(bearer) {
                *n -= 1;
                if *n == 0 {
                    unused.push(bearer);
                }
            }
        }
    }
    peeled < credentials.len()
}

/// A bearer cycle through the last credential of `path`, as the list of names that closes it.
fn find_cycle<'a>(
    by_name: &HashMap<&'a str, &'a Credential>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<String>> {
    let last = *path.last()?;
    let credential = by_name.get(last)?;
    for bearer in credential.source.bearers() {
        if bearer == path[0] {
            let mut cycle: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            cycle.push(bearer.to_owned());
            return Some(cycle);
        }
        // A cycle elsewhere is reported from its own members.
        if path.contains(&bearer) || path.len() > by_name.len() {
            continue;
        }
        let bearer = by_name.get(bearer)?.name.as_str();
        path.push(bearer);
        if let Some(cycle) = find_cycle(by_name, path) {
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
        by_name: &HashMap<&'a str, &'a Credential>,
        credential: &'a Credential,
        done: &mut Vec<&'a Credential>,
        seen: &mut HashSet<&'a str>,
        depth: usize,
    ) {
        if seen.contains(credential.name.as_str()) || depth > by_name.len() {
            return;
        }
        for bearer in credential.source.bearers() {
            if let Some(b) = by_name.get(bearer) {
                visit(by_name, b, done, seen, depth + 1);
            }
        }
        if seen.insert(credential.name.as_str()) {
            done.push(credential);
        }
    }
    let by_name = index(credentials);
    let mut done: Vec<&Credential> = Vec::with_capacity(credentials.len());
    let mut seen = HashSet::with_capacity(credentials.len());
    for credential in credentials {
        visit(&by_name, credential, &mut done, &mut seen, 0);
    }
    done
}
