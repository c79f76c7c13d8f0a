//! `refreshd check`: what would stop refreshd from working, found before it runs: the
//! state directory, stored state, secret references, source files and programs, target
//! directories, the fleet store's URL and key; with `--online`, one fetch per credential
//! (persisted, targets untouched), and the store read (never a shared credential fetched).

use std::path::{Path, PathBuf};

use crate::cli::Exit;
use crate::config::LogFormat;
use crate::config::{Config, SourceConfig};
use crate::credential::{Engine, RotationOutcome, Trigger};
use crate::state::StateDir;
use crate::token;

pub async fn run(config: Config, online: bool) -> anyhow::Result<Exit> {
    crate::log::init("warn", LogFormat::Text);
    let mut problems: Vec<String> = Vec::new();
    let state_dir = StateDir::of(&config.daemon);
    if let Err(e) = state_dir.refuse_if_foreign() {
        problems.push(e.to_string());
    }
    problems.extend(state_dir_problem(&config.daemon.state_dir));
    if let Err(e) = state_dir.key() {
        problems.push(e.to_string());
    }
    offline_problems(&config, &state_dir, &mut problems);
    let fleet = match &config.daemon.store {
        Some(store) => match crate::store::Fleet::new(store, crate::clock::system()) {
            Ok(fleet) => Some(fleet),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
        None => None,
    };
    let shared =
        |credential: &crate::config::Credential| fleet.is_some() && credential.sharing.is_shared();
    if online && problems.is_empty() {
        // A shared credential is never fetched here: that would spend the fleet's refresh
        // token outside the holder's fence. The store is read instead.
        if let Some(fleet) = &fleet {
            match fleet.probe(&config.shared_names()).await {
                Ok(lines) => lines.iter().for_each(|line| println!("{line}")),
                Err(e) => problems.push(e.to_string()),
            }
        }
        let engine = Engine::check(state_dir);
        let since = crate::clock::system_now();
        for credential in config.dependency_order() {
            if shared(credential) {
                continue;
            }
            let result = engine.rotate(credential, Trigger::Force { since }).await;
            match &result.outcome {
                RotationOutcome::Failed { error, .. } => {
                    problems.push(format!("{}: {error}", credential.name))
                }
                RotationOutcome::Rotated(report) | RotationOutcome::Current(report) => {
                    println!(
                        "{}: fetched a token, fingerprint {}, expires {}",
                        credential.name,
                        report.fingerprint,
                        token::rfc3339(report.expires_at)
                    );
                }
            }
        }
    }
    if problems.is_empty() {
        println!(
            "{}: ok ({} credentials)",
            config.path.display(),
            config.credentials.len()
        );
        Ok(Exit::Ok)
    } else {
        for problem in &problems {
            eprintln!("refreshd: {problem}");
        }
        Ok(Exit::Invalid)
    }
}

/// What each credential's stored state, source and targets say without going online.
fn offline_problems(config: &Config, state_dir: &StateDir, problems: &mut Vec<String>) {
    for credential in &config.credentials {
        let name = &credential.name;
        let stored = state_dir.load(name);
        if let Err(e) = &stored {
            problems.push(format!("{name}: {e}"));
        }
        let has_stored_refresh = stored.as_ref().is_ok_and(|s| s.refresh_token.is_some());
        source_problems(name, &credential.source, has_stored_refresh, problems);
        let sample = |name: &str| {
            let credential = config.credentials.iter().find(|c| c.name == name)?;
            Some(crate::target::Sample {
                stored: state_dir.load(name).ok().and_then(|s| s.token),
                fields: credential.source.fields(),
            })
        };
        target_problems(credential, &sample, problems);
    }
}

/// Each target's file, and its template rendered (against the stored token when there is
/// one), so an undefined variable is found now rather than at the next rotation.
fn target_problems(
    credential: &crate::config::Credential,
    sample: &dyn Fn(&str) -> Option<crate::target::Sample>,
    problems: &mut Vec<String>,
) {
    let name = &credential.name;
    let now = crate::clock::system_now();
    for target in &credential.targets {
        if let Err(e) = crate::target::check(target) {
            problems.push(format!("{name}: {e}"));
        }
        if let Err(e) = crate::target::check_render(target, sample, now) {
            problems.push(format!("{name}: {e}"));
        }
    }
}

/// The directory or its nearest existing ancestor must be writable.
fn state_dir_problem(dir: &Path) -> Option<String> {
    use nix::unistd::{AccessFlags, access};
    let existing = dir.ancestors().find(|p| p.exists())?;
    access(existing, AccessFlags::W_OK | AccessFlags::X_OK)
        .err()
        .map(|e| {
            format!(
                "state directory {}: {} is not writable by refreshd's user ({e})",
                dir.display(),
                existing.display()
            )
        })
}

fn source_problems(
    name: &str,
    source: &SourceConfig,
    has_stored_refresh: bool,
    problems: &mut Vec<String>,
) {
    match source {
        SourceConfig::Chain(chain) => {
            for inner in &chain.sources {
                source_problems(name, inner, has_stored_refresh, problems);
            }
            return;
        }
        SourceConfig::Command(command) => {
            let program = &command.argv[0];
            if !program.contains('/') && which(program).is_none() {
                problems.push(format!("{name}: command {program:?} is not on PATH"));
            }
        }
        SourceConfig::OauthRefresh(s) if s.refresh_token.is_none() && !has_stored_refresh => {
            // Not an error: the credential is waiting for its first login.
            println!("{name}: no refresh token yet: run `refreshd login {name}`");
        }
        _ => {}
    }
    for e in crate::source::check_files(source) {
        problems.push(format!("{name}: source: {e}"));
    }
    for (key, secret) in source.secrets() {
        if let Err(e) = secret.resolve() {
            // A bootstrap refresh token may be removed once refreshd stored a rotated one.
            if key == "refresh_token" && has_stored_refresh {
                continue;
            }
            problems.push(format!("{name}: source.{key}: {e}"));
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}
