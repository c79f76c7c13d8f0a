//! The command line's shape, as clap parses it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::exec::{Binding, OnChange};

#[derive(Parser)]
#[command(
    name = "refreshd",
    version,
    about = "Keeps short-lived credentials fresh in .env, .pgpass and token files"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args)]
pub struct ConfigArg {
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
    pub fn path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(crate::config::default_config_path)
    }
}

/// Where a reader's command finds the daemon when it cannot read the config.
#[derive(clap::Args)]
pub struct SocketArg {
    /// The daemon's control socket [default: the config's daemon.control_socket; without a readable config, this user's default socket, then /run/refreshd/control.sock]
    #[arg(long = "socket", env = "REFRESHD_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// How `refreshd token` prints the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenFormat {
    /// The token and a newline
    Raw,
    /// `{"token", "token_type", "expires_at", "expires_in"}`
    Json,
    /// `export NAME_TOKEN='…'` and `export NAME_EXPIRES_AT='…'`, for `eval` in a POSIX shell
    Env,
    /// AWS `credential_process` JSON: the fields `access_key_id` and `secret_access_key`,
    /// the token as the session token
    AwsCredentialProcess,
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Print a new store key (32 random bytes, base64) for `[daemon] store.key`
    InitKey,
}

#[derive(Subcommand)]
pub enum StateCommand {
    /// Seal every state file with `[daemon] state_key` (offline: refused while the daemon runs)
    Seal {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Open every sealed state file back into plain JSON (offline: refused while the daemon runs)
    Unseal {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check an audit log's hash chain: finds a removed, edited or reordered line
    Verify {
        /// The audit log (`log.audit`)
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd and launchd supervise it)
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run a program with credentials' current tokens in its environment, and restart (or signal) it when they rotate
    Exec {
        #[command(flatten)]
        config: ConfigArg,
        /// Put the current token of credential NAME in the program's variable VAR (repeat for more)
        #[arg(long = "env", value_name = "VAR=NAME", required = true, value_parser = parse_binding)]
        env: Vec<Binding>,
        /// On a rotation: restart the program, send it a signal (`signal:SIGHUP`), or nothing
        #[arg(
            long,
            value_name = "restart|signal:SIG|none",
            default_value = "restart",
            value_parser = parse_on_change
        )]
        on_change: OnChange,
        /// How long a restart or a stop waits after SIGTERM before SIGKILL
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// The program and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "PROGRAM")]
        program: Vec<std::ffi::OsString>,
    },
    /// Show each credential's health, expiry, last rotation, last error and next refresh
    Status {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        socket: SocketArg,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        /// List the fleet store's nodes and their heartbeats instead (with a `[daemon] store`)
        #[arg(long)]
        nodes: bool,
    },
    /// The fleet store (`[daemon] store`)
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Ask the running daemon to refresh now, and wait for the result
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
        /// Every credential
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Credentials to refresh
        #[arg(required_unless_present = "all", value_name = "NAME")]
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
        #[arg(value_name = "NAME")]
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
        #[command(flatten)]
        socket: SocketArg,
        /// raw (the token), json (token, token_type, expires_at, expires_in), env (`export NAME_TOKEN='…'` and `NAME_EXPIRES_AT` lines, for `eval`) or aws-credential-process (AWS `credential_process` JSON of an AWS credential's keys)
        #[arg(long, value_enum, default_value_t = TokenFormat::Raw)]
        format: TokenFormat,
        /// The credential
        name: String,
    },
    /// kubectl's exec credential plugin: print a client.authentication.k8s.io ExecCredential with the credential's current token
    KubectlCredential {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        socket: SocketArg,
        /// The credential
        name: String,
    },
    /// git's credential helper (gitcredentials(7)): `get` answers for the credentials whose `git.url` matches; `store` and `erase` do nothing
    GitCredential {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        socket: SocketArg,
        /// What git asks: get, store or erase (any other is ignored, as git wants)
        operation: String,
    },
    /// Get an oauth-refresh credential its first refresh token: a browser login (authorization code + PKCE, loopback redirect) or the device flow
    Login {
        #[command(flatten)]
        config: ConfigArg,
        /// The credential (an oauth-refresh source)
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
    /// The audit log (`log.audit`)
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The state directory's files (`[daemon] state_key`)
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
}

/// `VAR=NAME`: a variable name every shell agrees on, and a credential's name.
fn parse_binding(text: &str) -> Result<Binding, String> {
    let (var, credential) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not VAR=NAME"))?;
    let mut bytes = var.bytes();
    let valid = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!("{var:?} is not a variable name"));
    }
    if var.starts_with("REFRESHD_") {
        return Err(format!(
            "{var:?}: REFRESHD_* variables never reach the program; choose another name"
        ));
    }
    if credential.is_empty() {
        return Err(format!("{text:?} names no credential"));
    }
    Ok(Binding {
        var: var.to_owned(),
        credential: credential.to_owned(),
    })
}

fn parse_on_change(text: &str) -> Result<OnChange, String> {
    text.parse()
}
