//! The command line: parses arguments, loads the config, runs one command and maps its
//! result to the exit statuses of DESIGN §2. The only place `anyhow` is used.
//!
//! Only `refreshd token` ever prints a token; every other output shows fingerprints.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use crate::config::{Config, LogFormat, SourceConfig};
use crate::rotation::{Engine, RotationResult, Trigger};
use crate::state::StateDir;
use crate::token;

/// sysexits.h `EX_CONFIG`: a supervisor can tell "fix your config" from "crashed".
const EX_CONFIG: u8 = crate::daemon::EX_CONFIG;

#[derive(Parser)]
#[command(
    name = "refreshd",
    version,
    about = "Keeps short-lived credentials fresh in .env, .pgpass and token files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]
    #[arg(
        short = 'c',
        long = "config",
        env = "REFRESHD_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(crate::config::default_config_path)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (systemd and launchd supervise it)
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show each credential's health, expiry, last rotation, last error and next refresh
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to refresh now, and wait for the result
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
        /// Every credential
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Credentials to refresh
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
    },
    /// Refresh every (named) credential that is due, write its targets, and exit
    Once {
        #[command(flatten)]
        config: ConfigArg,
        /// Refresh even credentials whose token is still good
        #[arg(long)]
        force: bool,
        /// Credentials to refresh [default: all]
        names: Vec<String>,
    },
    /// Validate the config, secret references, target paths and permissions
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Also fetch each token once (persisted in the state directory, targets untouched)
        #[arg(long)]
        online: bool,
    },
    /// Print a credential's current access token (for `$(refreshd token NAME)`)
    Token {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
    },
    /// Get an oauth-refresh credential its first refresh token: a browser login (authorization code + PKCE, loopback redirect) or the device flow
    Login {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
        /// The device flow (RFC 8628): a code to enter on another device, no redirect
        #[arg(long)]
        device: bool,
        /// Print the URL only; do not try to open a browser
        #[arg(long)]
        no_browser: bool,
        /// Listen for the redirect on this loopback port (e.g. one forwarded with `ssh -L`)
        #[arg(long)]
        port: Option<u16>,
        /// Give up after this long without a finished login
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Try refreshd: a built-in token issuer on loopback and a daemon rotating 30-second JWTs into ./refreshd-demo/, until Ctrl-C
    Demo,
    /// Decode a JWT without verifying it: header, claims, expiry and time left
    Inspect {
        /// The token, or `-` (the default) to read it from stdin
        token: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("refreshd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Once {
            config,
            force,
            names,
        } => once(&config.path(), force, &names),
        Command::Check { config, online } => check(&config.path(), online),
        Command::Run { config } => Ok(crate::daemon::main(&config.path())),
        Command::Demo => Ok(crate::demo::main()),
        Command::Status { config, json } => status(&config.path(), json),
        Command::Rotate { config, all, names } => rotate(&config.path(), all, names),
        Command::Token { config, name } => print_token(&config.path(), &name),
        Command::Login {
            config,
            name,
            device,
            no_browser,
            port,
            timeout,
        } => login(
            &config.path(),
            &name,
            &crate::login::Options {
                device,
                open_browser: !no_browser,
                port,
                timeout,
                request_timeout: std::time::Duration::ZERO,
            },
        ),
        Command::Inspect { token } => inspect(token),
    }
}

fn load_or_exit(path: &std::path::Path, code: u8) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("refreshd: {e}");
        ExitCode::from(code)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn once(path: &std::path::Path, force: bool, names: &[String]) -> anyhow::Result<ExitCode> {
    let config = match load_or_exit(path, EX_CONFIG) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    crate::log::init(&config.log.level, config.log.format);
    for name in names {
        if config.credential(name).is_none() {
            eprintln!(
                "refreshd: no credential named {name:?} in {}",
                path.display()
            );
            return Ok(ExitCode::from(2));
        }
    }
    let started = OffsetDateTime::now_utc();
    let trigger = if force {
        Trigger::Force { since: started }
    } else {
        Trigger::IfDue
    };
    let mut all_ok = true;
    runtime()?.block_on(async {
        let engine = Engine {
            http: crate::source::http_client(),
            state: StateDir::new(&config.daemon.state_dir),
            write_targets: true,
            // One process, run in sequence: nothing to merge.
            reloader: Some(crate::reload::Reloader::start(std::time::Duration::ZERO)),
        };
        // Bearers first: an `http` source sends its bearer's fresh token.
        for credential in config.dependency_order() {
            if !names.is_empty() && !names.contains(&credential.name) {
                continue;
            }
            let result = engine.rotate(credential, trigger.clone()).await;
            all_ok &= result.is_ok();
        }
    });
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn login(
    path: &std::path::Path,
    name: &str,
    options: &crate::login::Options,
) -> anyhow::Result<ExitCode> {
    let config = match load_or_exit(path, EX_CONFIG) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    crate::log::init(&config.log.level, config.log.format);
    let Some(credential) = config.credential(name) else {
        eprintln!(
            "refreshd: no credential named {name:?} in {}",
            path.display()
        );
        return Ok(ExitCode::from(2));
    };
    let options = crate::login::Options {
        request_timeout: credential.timing.timeout,
        ..*options
    };
    let state = StateDir::new(&config.daemon.state_dir);
    let http = crate::source::http_client();
    let logged_in =
        match runtime()?.block_on(crate::login::login(credential, &state, &http, &options)) {
            Ok(logged_in) => logged_in,
            Err(e) => {
                eprintln!("refreshd: login {name}: {e}");
                return Ok(ExitCode::FAILURE);
            }
        };
    println!(
        "logged in: credential={name} fingerprint={} expires_at={}",
        logged_in.fingerprint,
        token::rfc3339(logged_in.expires_at)
    );
    // A running daemon takes the stored token over at once (it may be waiting in
    // needs-login); without one, write the targets here.
    let request = crate::control::Request::Rotate {
        names: vec![name.to_owned()],
        if_due: true,
    };
    let result = match ask_daemon(
        &config,
        &request,
        CONTROL_TIMEOUT + credential.timing.timeout,
    ) {
        Ok(Some(response)) if response.ok => {
            let message = response
                .results
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.message)
                .collect::<Vec<_>>()
                .join("; ");
            println!("the running daemon picked it up: {message}");
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Some(response)) => Err(response.error.unwrap_or_default()),
        Ok(None) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        eprintln!(
            "refreshd: the running daemon did not take the login over ({e}); it will at its next attempt"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let result = runtime()?.block_on(async {
        let engine = Engine {
            http,
            state,
            write_targets: true,
            reloader: Some(crate::reload::Reloader::start(std::time::Duration::ZERO)),
        };
        engine.rotate(credential, Trigger::IfDue).await
    });
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check(path: &std::path::Path, online: bool) -> anyhow::Result<ExitCode> {
    let config = match load_or_exit(path, 2) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    crate::log::init("warn", LogFormat::Text);
    let mut problems: Vec<String> = Vec::new();
    let state_dir = StateDir::new(&config.daemon.state_dir);
    if let Some(problem) = check_state_dir(&config.daemon.state_dir) {
        problems.push(problem);
    }
    for credential in &config.credentials {
        let name = &credential.name;
        let stored = state_dir.load(name);
        if let Err(e) = &stored {
            problems.push(format!("{name}: {e}"));
        }
        let has_stored_refresh = stored.as_ref().is_ok_and(|s| s.refresh_token.is_some());
        check_source(name, &credential.source, has_stored_refresh, &mut problems);
        for target in &credential.targets {
            if let Err(e) = crate::target::check(target) {
                problems.push(format!("{name}: {e}"));
            }
        }
    }
    if online && problems.is_empty() {
        let engine = Engine {
            http: crate::source::http_client(),
            state: state_dir,
            write_targets: false,
            reloader: None,
        };
        let since = OffsetDateTime::now_utc();
        runtime()?.block_on(async {
            for credential in config.dependency_order() {
                match engine.rotate(credential, Trigger::Force { since }).await {
                    RotationResult::Failed { error, .. } => {
                        problems.push(format!("{}: {error}", credential.name))
                    }
                    RotationResult::Rotated(report) | RotationResult::Current(report) => {
                        println!(
                            "{}: fetched a token, fingerprint {}, expires {}",
                            credential.name,
                            report.fingerprint,
                            token::rfc3339(report.expires_at)
                        );
                    }
                }
            }
        });
    }
    if problems.is_empty() {
        println!(
            "{}: ok ({} credentials)",
            path.display(),
            config.credentials.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            eprintln!("refreshd: {problem}");
        }
        Ok(ExitCode::from(2))
    }
}

fn check_state_dir(dir: &std::path::Path) -> Option<String> {
    use nix::unistd::{AccessFlags, access};
    // The directory or its nearest existing ancestor must be writable.
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

fn check_source(
    name: &str,
    source: &SourceConfig,
    has_stored_refresh: bool,
    problems: &mut Vec<String>,
) {
    match source {
        SourceConfig::Chain(chain) => {
            for inner in &chain.sources {
                check_source(name, inner, has_stored_refresh, problems);
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

/// How long `status` and `token` wait for the daemon; `rotate` waits for the refreshes.
const CONTROL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn ask_daemon(
    config: &Config,
    request: &crate::control::Request,
    timeout: std::time::Duration,
) -> anyhow::Result<Option<crate::control::Response>> {
    let path = &config.daemon.control_socket;
    let response = runtime()?.block_on(crate::control::request(path, request, timeout))?;
    Ok(response)
}

fn status(path: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = match load_or_exit(path, EX_CONFIG) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let now = OffsetDateTime::now_utc();
    let snapshot = match ask_daemon(&config, &crate::control::Request::Status, CONTROL_TIMEOUT)? {
        Some(response) => match (response.ok, response.status) {
            (true, Some(snapshot)) => snapshot,
            _ => anyhow::bail!("the daemon refused: {}", response.error.unwrap_or_default()),
        },
        None => snapshot_from_state(&config, now),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&snapshot)?);
    } else if snapshot.credentials.is_empty() {
        println!("no credentials configured in {}", path.display());
    } else {
        print!("{}", snapshot.render(now));
    }
    Ok(ExitCode::from(snapshot.exit_code()))
}

/// What the state directory says when no daemon runs; `next_refresh` is the schedule's
/// plan without jitter.
fn snapshot_from_state(config: &Config, now: OffsetDateTime) -> crate::status::Snapshot {
    let state_dir = StateDir::new(&config.daemon.state_dir);
    let mut snapshot = crate::status::Snapshot {
        from: "state".to_owned(),
        ..Default::default()
    };
    for credential in &config.credentials {
        let state = match state_dir.load(&credential.name) {
            Ok(state) => state,
            Err(e) => {
                eprintln!("refreshd: {e}");
                Default::default()
            }
        };
        let next = state.token.as_ref().map(|t| {
            crate::schedule::next_refresh(
                t.issued_at,
                t.expires_at,
                &credential.timing,
                time::Duration::ZERO,
                now,
            )
        });
        snapshot.credentials.insert(
            credential.name.clone(),
            crate::status::CredentialStatus::from_state(credential, &state, next, now),
        );
    }
    snapshot
}

fn rotate(path: &std::path::Path, all: bool, names: Vec<String>) -> anyhow::Result<ExitCode> {
    let config = match load_or_exit(path, EX_CONFIG) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    for name in &names {
        if config.credential(name).is_none() {
            eprintln!(
                "refreshd: no credential named {name:?} in {}",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    let names = if all { Vec::new() } else { names };
    // A rotation may wait for its lock, its request timeout and its reloads.
    let longest = config
        .credentials
        .iter()
        .map(|c| c.timing.timeout)
        .max()
        .unwrap_or_default();
    let timeout = longest * 4 + std::time::Duration::from_secs(60);
    let request = crate::control::Request::Rotate {
        names,
        if_due: false,
    };
    let Some(response) = ask_daemon(&config, &request, timeout)? else {
        eprintln!(
            "refreshd: no daemon is listening on {}; start `refreshd run`, or use `refreshd once --force`",
            config.daemon.control_socket.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    if !response.ok {
        eprintln!("refreshd: {}", response.error.unwrap_or_default());
        return Ok(ExitCode::FAILURE);
    }
    let mut all_ok = true;
    for outcome in response.results.unwrap_or_default() {
        all_ok &= outcome.ok;
        let detail = match (&outcome.fingerprint, outcome.expires_at) {
            (Some(fp), Some(at)) => format!(" (fingerprint {fp}, expires {})", token::rfc3339(at)),
            _ => String::new(),
        };
        println!("{}: {}{detail}", outcome.name, outcome.message);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_token(path: &std::path::Path, name: &str) -> anyhow::Result<ExitCode> {
    let config = match load_or_exit(path, EX_CONFIG) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    if config.credential(name).is_none() {
        eprintln!(
            "refreshd: no credential named {name:?} in {}",
            path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let request = crate::control::Request::Token {
        name: name.to_owned(),
    };
    // The daemon answers from the same state files, but knows of a token it holds in
    // memory; without one, the state directory answers.
    if let Ok(Some(response)) = ask_daemon(&config, &request, CONTROL_TIMEOUT) {
        match (response.ok, response.token) {
            (true, Some(token)) => {
                println!("{token}");
                return Ok(ExitCode::SUCCESS);
            }
            _ => {
                eprintln!("refreshd: {}", response.error.unwrap_or_default());
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let state = StateDir::new(&config.daemon.state_dir).load(name)?;
    let now = OffsetDateTime::now_utc();
    match state.token {
        Some(token) if token.is_valid_at(now) => {
            println!("{}", token.access_token.expose_secret());
            Ok(ExitCode::SUCCESS)
        }
        Some(token) => {
            eprintln!(
                "refreshd: the token of {name} expired at {}",
                token::rfc3339(token.expires_at)
            );
            Ok(ExitCode::FAILURE)
        }
        None => {
            eprintln!("refreshd: no token stored for {name} yet: run `refreshd once {name}`");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn inspect(arg: Option<String>) -> anyhow::Result<ExitCode> {
    let text = match arg.as_deref() {
        None | Some("-") => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the token from stdin")?;
            input
        }
        Some(token) => token.to_owned(),
    };
    let Some(decoded) = token::decode_unverified(text.trim()) else {
        eprintln!(
            "refreshd: not a JWT (three base64url parts with a JSON header and claims); opaque tokens such as Google's ya29.… cannot be decoded"
        );
        return Ok(ExitCode::from(2));
    };
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    println!("header: {}", pretty(&decoded.header));
    println!("claims: {}", pretty(&decoded.claims));
    let now = OffsetDateTime::now_utc();
    let claims = token::Claims::from_json(&decoded.claims);
    if let Some(iat) = claims.iat {
        println!(
            "issued:  {} ({} ago)",
            token::rfc3339(iat),
            token::remaining(now, iat)
        );
    }
    match claims.exp {
        Some(exp) if exp > now => println!(
            "expires: {} (in {})",
            token::rfc3339(exp),
            token::remaining(exp, now)
        ),
        Some(exp) => println!(
            "expires: {} (expired {} ago)",
            token::rfc3339(exp),
            token::remaining(now, exp)
        ),
        None => println!("expires: no exp claim"),
    }
    println!("signature: not verified");
    Ok(ExitCode::SUCCESS)
}
