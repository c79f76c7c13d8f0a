//! `refreshd git-credential get|store|erase`: a git credential helper (gitcredentials(7)).
//! git writes `key=value` lines (`protocol`, `host` with its port, `path` only with
//! `credential.useHttpPath`, `username`) up to a blank line; `get` answers `username`,
//! `password` (the token) and `password_expiry_utc` for the credential, among those this
//! user may read, whose `git.url` matches: same protocol, same host and port, and, when
//! both the URL and the request have a path, the URL's path is a prefix of the request's.
//! No match: nothing, so git asks its next helper.
//!
//! Must never: answer for a URL that does not match, store or erase anything (refreshd
//! owns the token), or print the token anywhere but stdout.

use std::io::Read as _;

use secrecy::ExposeSecret;

use super::reach::Reach;
use crate::cli::Exit;
use crate::control::protocol::HelperEntry;

/// git sends a few short lines; anything near this is not git.
const MAX_INPUT: u64 = 64 * 1024;

pub async fn run(reach: Reach, operation: String) -> anyhow::Result<Exit> {
    // git writes the request to every operation; read it all, so git never writes into
    // a closed pipe.
    let asked = Asked::read(std::io::stdin().lock().take(MAX_INPUT));
    // `store`, `erase` and operations git may add later are ignored, as git wants.
    if operation != "get" {
        return Ok(Exit::Ok);
    }
    let Some(asked) = asked else {
        return Ok(Exit::Ok);
    };
    let helpers = match reach.helpers().await {
        Ok(helpers) => helpers,
        Err(message) => return Ok(failed(&message)),
    };
    let Some((entry, username)) = pick(&asked, &helpers) else {
        return Ok(Exit::Ok);
    };
    let answer = match reach.token(&entry.name).await {
        Ok(answer) => answer,
        Err(message) => return Ok(failed(&message)),
    };
    let token = answer.token.expose_secret();
    if token.contains(['\n', '\0']) {
        return Ok(failed(&format!(
            "{}: the token holds a line break, which git's protocol cannot carry",
            entry.name
        )));
    }
    println!(
        "username={username}\npassword={token}\npassword_expiry_utc={}",
        answer.expires_at.unix_timestamp()
    );
    Ok(Exit::Ok)
}

fn failed(message: &str) -> Exit {
    eprintln!(
        "refreshd git-credential: {}",
        crate::observe::shown(message)
    );
    Exit::Failed
}

/// What git asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Asked {
    protocol: String,
    /// As git sends it: `host` or `host:port`.
    host: String,
    path: Option<String>,
    username: Option<String>,
}

impl Asked {
    /// The request's attributes up to a blank line or the end; `None` without a protocol
    /// and host (then there is nothing to match).
    fn read(input: impl std::io::BufRead) -> Option<Asked> {
        let mut asked = Asked::default();
        let mut url = None;
        for line in input.lines() {
            let Ok(line) = line else { break };
            if line.is_empty() {
                break;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.to_owned();
            match key {
                "protocol" => asked.protocol = value,
                "host" => asked.host = value,
                "path" => asked.path = Some(value),
                "username" => asked.username = Some(value),
                "url" => url = Some(value),
                _ => {}
            }
        }
        // `url` is the other way to say protocol, host and path (git splits it itself
        // before it asks a helper, but a script may send it).
        if let Some(url) = url.and_then(|u| url::Url::parse(&u).ok())
            && asked.protocol.is_empty()
            && asked.host.is_empty()
        {
            asked.protocol = url.scheme().to_owned();
            asked.host = url.host_str().unwrap_or_default().to_owned();
            if let Some(port) = url.port() {
                asked.host = format!("{}:{port}", asked.host);
            }
            let path = url.path().trim_start_matches('/');
            if !path.is_empty() {
                asked.path = Some(path.to_owned());
            }
            if !url.username().is_empty() {
                asked.username = Some(url.username().to_owned());
            }
        }
        (!asked.protocol.is_empty() && !asked.host.is_empty()).then_some(asked)
    }
}

/// The entry that answers `asked`, with its username. With a path in the request, the
/// entry with the longest matching path; without one, the one with the shortest (a URL
/// for the whole host before one for a repository), the first by name among equals.
fn pick<'a>(asked: &Asked, entries: &'a [HelperEntry]) -> Option<(&'a HelperEntry, &'a str)> {
    let mut best: Option<(&HelperEntry, &str, i64)> = None;
    for entry in entries {
        let Some(git) = &entry.git else { continue };
        if asked.username.as_ref().is_some_and(|u| *u != git.username) {
            continue;
        }
        let Some(rank) = rank(&git.url, asked) else {
            continue;
        };
        if best.is_none_or(|(_, _, r)| rank > r) {
            best = Some((entry, &git.username, rank));
        }
    }
    best.map(|(entry, username, _)| (entry, username))
}

/// How well the credential's `url` matches `asked` (higher is better); `None`: not at all.
fn rank(url: &str, asked: &Asked) -> Option<i64> {
    let url = url::Url::parse(url).ok()?;
    if !url.scheme().eq_ignore_ascii_case(&asked.protocol) {
        return None;
    }
    let default_port = match url.scheme() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let host = url.host_str()?.to_ascii_lowercase();
    let (asked_host, asked_port) = split_port(&asked.host);
    if host != asked_host.to_ascii_lowercase()
        || url.port_or_known_default() != asked_port.or(default_port)
    {
        return None;
    }
    let declared = segments(url.path());
    let depth = i64::try_from(declared.len()).unwrap_or(i64::MAX);
    match &asked.path {
        None => Some(-depth),
        Some(path) => {
            let requested = segments(path);
            requested.starts_with(&declared).then_some(depth)
        }
    }
}

/// `host:port` as (host, port); a bracketed IPv6 address keeps its brackets.
fn split_port(host: &str) -> (&str, Option<u16>) {
    if let Some((name, port)) = host.rsplit_once(':')
        && (!name.contains(':') || name.ends_with(']'))
        && let Ok(port) = port.parse::<u16>()
    {
        return (name, Some(port));
    }
    (host, None)
}

/// A path's segments, without empty ones and without a last `.git` (git's paths name the
/// repository with it, a configured URL often without).
fn segments(path: &str) -> Vec<&str> {
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(last) = segments.last_mut() {
        *last = last.strip_suffix(".git").unwrap_or(last);
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::GitEntry;

    fn entry(name: &str, url: &str) -> HelperEntry {
        HelperEntry {
            name: name.into(),
            git: Some(GitEntry {
                url: url.into(),
                username: "x-token".into(),
            }),
            docker: None,
        }
    }

    fn asked(text: &str) -> Asked {
        Asked::read(text.as_bytes()).expect("a protocol and host")
    }

    fn picked(request: &str, entries: &[HelperEntry]) -> Option<String> {
        pick(&asked(request), entries).map(|(e, _)| e.name.clone())
    }

    #[test]
    fn reads_attributes_up_to_the_blank_line() {
        let a = asked(
            "protocol=https\nhost=git.example.com:8443\npath=org/repo.git\nwwwauth[]=Basic\n\nhost=other\n",
        );
        assert_eq!(
            a,
            Asked {
                protocol: "https".into(),
                host: "git.example.com:8443".into(),
                path: Some("org/repo.git".into()),
                username: None,
            }
        );
        let a = asked("url=https://bob@git.example.com/org/repo.git\n");
        assert_eq!(a.host, "git.example.com");
        assert_eq!(a.path.as_deref(), Some("org/repo.git"));
        assert_eq!(a.username.as_deref(), Some("bob"));
        assert!(Asked::read("protocol=https\n".as_bytes()).is_none());
    }

    #[test]
    fn matches_protocol_host_port_and_path_prefix() {
        let entries = [
            entry("host", "https://git.example.com"),
            entry("org", "https://git.example.com/org"),
            entry("repo", "https://git.example.com/org/repo"),
            entry("port", "https://git.example.com:8443/"),
        ];
        let get = |r: &str| picked(r, &entries);
        // No path (git without credential.useHttpPath): the whole host's URL.
        assert_eq!(
            get("protocol=https\nhost=git.example.com\n").as_deref(),
            Some("host")
        );
        assert_eq!(
            get("protocol=https\nhost=GIT.example.com:443\n").as_deref(),
            Some("host")
        );
        // The longest declared path that is a prefix of the request's.
        assert_eq!(
            get("protocol=https\nhost=git.example.com\npath=org/repo.git\n").as_deref(),
            Some("repo")
        );
        assert_eq!(
            get("protocol=https\nhost=git.example.com\npath=org/other.git\n").as_deref(),
            Some("org")
        );
        assert_eq!(
            get("protocol=https\nhost=git.example.com\npath=organisation/x\n").as_deref(),
            Some("host"),
            "a prefix by segments, not by characters"
        );
        assert_eq!(
            get("protocol=https\nhost=git.example.com:8443\n").as_deref(),
            Some("port")
        );
        assert_eq!(get("protocol=http\nhost=git.example.com\n"), None);
        assert_eq!(get("protocol=https\nhost=example.com\n"), None);
        assert_eq!(get("protocol=https\nhost=git.example.com:444\n"), None);
        assert_eq!(
            get("protocol=https\nhost=git.example.com\nusername=bob\n"),
            None,
            "another user's request"
        );

        let only_org = [entry("org", "https://git.example.com/org")];
        assert_eq!(
            picked(
                "protocol=https\nhost=git.example.com\npath=elsewhere/r.git\n",
                &only_org
            ),
            None
        );
        assert_eq!(
            picked("protocol=https\nhost=git.example.com\n", &only_org).as_deref(),
            Some("org")
        );
    }

    #[test]
    fn splits_ports_off_names_and_bracketed_addresses() {
        assert_eq!(split_port("h:8080"), ("h", Some(8080)));
        assert_eq!(split_port("h"), ("h", None));
        assert_eq!(split_port("[::1]:8080"), ("[::1]", Some(8080)));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
    }
}
