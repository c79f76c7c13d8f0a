//! The one way refreshd starts a process: reload commands, `systemctl` and `launchctl`,
//! the `on_failure` hook and the `command` source all come through [`Child`].
//!
//! A child gets an environment cleared to an allow-list of refreshd's own variables
//! ([`inherited`]), plus the `REFRESHD_*` variables and whatever its config names for it,
//! so a secret referenced as `{ env = … }` for one credential never reaches another's
//! program, and `NOTIFY_SOCKET`/`WATCHDOG_*` stay with the daemon. stdin is null (or the
//! bytes given, a notification's event), a timeout kills it, and what it says on stderr comes back with token-like runs masked.
//! Never puts a token in a child's argv or environment.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// Whether a variable of refreshd's environment passes to every child: the locale, the
/// user, the search path, temporary and XDG directories, and the session bus (for
/// `systemctl --user`).
pub fn inherited(name: &str) -> bool {
    matches!(
        name,
        "PATH"
            | "HOME"
            | "USER"
            | "LOGNAME"
            | "LANG"
            | "TZ"
            | "TMPDIR"
            | "DBUS_SESSION_BUS_ADDRESS"
    ) || name.starts_with("LC_")
        || name.starts_with("XDG_")
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ChildError {
    #[error("{program}: cannot start: {reason}")]
    Spawn { program: String, reason: String },
    #[error("{program} did not finish within {}s and was killed", after.as_secs())]
    Timeout { program: String, after: Duration },
    #[error("{program} printed more than {limit} bytes on stdout: that is not a token")]
    TooMuchOutput { program: String, limit: usize },
}

/// A process to run.
pub struct Child<'a> {
    argv: &'a [String],
    timeout: Duration,
    env: Vec<(String, String)>,
    inherit: &'a [String],
    capture_stdout: bool,
    stdin: Option<Vec<u8>>,
}

/// How a child ended.
pub struct Output {
    pub status: ExitStatus,
    /// Empty unless captured.
    pub stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl<'a> Child<'a> {
    /// `argv[0]` is the program; it is killed after `timeout`.
    pub fn new(argv: &'a [String], timeout: Duration) -> Child<'a> {
        Child {
            argv,
            timeout,
            env: Vec::new(),
            inherit: &[],
            capture_stdout: false,
            stdin: None,
        }
    }

    /// Sets these variables for the child.
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Child<'a> {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Passes these variables of refreshd's own environment on, besides the allow-list.
    pub fn inherit(mut self, names: &'a [String]) -> Child<'a> {
        self.inherit = names;
        self
    }

    /// Keeps what the child prints on stdout (the `command` source's token).
    pub fn capture_stdout(mut self) -> Child<'a> {
        self.capture_stdout = true;
        self
    }

    /// Gives the child these bytes on stdin (then end of file), instead of nothing.
    pub fn stdin(mut self, bytes: Vec<u8>) -> Child<'a> {
        self.stdin = Some(bytes);
        self
    }

    pub fn program(&self) -> String {
        self.argv.first().cloned().unwrap_or_default()
    }

    pub async fn run(self) -> Result<Output, ChildError> {
        let program = self.program();
        let mut command = tokio::process::Command::new(&program);
        command
            .args(self.argv.iter().skip(1))
            .env_clear()
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if self.capture_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in std::env::vars_os() {
            let Some(name) = key.to_str() else { continue };
            if inherited(name) || self.inherit.iter().any(|n| n == name) {
                command.env(&key, value);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().map_err(|e| ChildError::Spawn {
            program: program.clone(),
            reason: e.to_string(),
        })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let input = child.stdin.take().zip(self.stdin);
        let run = async {
            // Written beside the reads: a child that answers before it has read all of its
            // input must not block on a full pipe. One that never reads it gets EPIPE,
            // which is its business.
            let feed = async {
                if let Some((mut pipe, bytes)) = input {
                    use tokio::io::AsyncWriteExt;
                    let _ = pipe.write_all(&bytes).await;
                }
            };
            // Both pipes drained at once (a child blocked on a full stderr never exits), each
            // read only up to its limit: a runaway program cannot fill refreshd's memory.
            let ((), stdout, stderr, status) = tokio::join!(
                feed,
                read_limited(stdout, MAX_STDOUT),
                read_limited(stderr, MAX_STDERR),
                child.wait()
            );
            (stdout, stderr, status)
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok((_, _, Err(e))) => Err(ChildError::Spawn {
                program,
                reason: e.to_string(),
            }),
            Ok((Err(()), _, _)) => Err(ChildError::TooMuchOutput {
                program,
                limit: MAX_STDOUT,
            }),
            Ok((Ok(stdout), stderr, Ok(status))) => Ok(Output {
                status,
                stdout,
                stderr: stderr.unwrap_or_else(|()| b"(more stderr than refreshd keeps)".to_vec()),
            }),
            // Dropping the future drops the child, which kills it (kill_on_drop).
            Err(_) => Err(ChildError::Timeout {
                program,
                after: self.timeout,
            }),
        }
    }
}

/// What a program may print on stdout (a token, or JSON holding one).
const MAX_STDOUT: usize = 1 << 20;
/// What refreshd keeps of a program's stderr (the rest is read and dropped).
const MAX_STDERR: usize = 64 << 10;
/// The stderr lines logged of one run; the others are counted.
pub const MAX_STDERR_LINES: usize = 20;

/// Reads `pipe` to its end, keeping at most `limit` bytes: `Err(())` when there was more
/// (the rest is still read, so the child is never blocked on a full pipe).
async fn read_limited(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    limit: usize,
) -> Result<Vec<u8>, ()> {
    use tokio::io::AsyncReadExt;
    let Some(mut pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    let mut over = false;
    // On the heap: two of these live in every future that runs a child (a reload, a
    // command source), and a future is copied into its task whole.
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if kept.len() + n <= limit => kept.extend_from_slice(&buf[..n]),
            Ok(n) => {
                let room = limit - kept.len();
                kept.extend_from_slice(&buf[..room.min(n)]);
                over = true;
            }
        }
    }
    if over { Err(()) } else { Ok(kept) }
}

impl Output {
    /// The non-empty lines of stderr, with `also_hide` (a token the caller knows) and any
    /// run of token-like characters masked.
    pub fn stderr_lines(&self, also_hide: Option<&str>) -> Vec<String> {
        String::from_utf8_lossy(&self.stderr)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| match also_hide {
                Some(token) => mask_token_like(&crate::redact::redact(line, &[token])),
                None => mask_token_like(line),
            })
            .collect()
    }
}

/// Hides runs of 32 or more token characters (JWT parts, base64, opaque tokens): when a
/// program failed we do not know its token, and stderr ends up in logs and in status.
pub fn mask_token_like(line: &str) -> String {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "._~+=-".contains(c);
    let mut out = String::with_capacity(line.len());
    let mut run = String::new();
    for c in line.chars().chain(std::iter::once('\n')) {
        if is_token_char(c) {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 32 { "[redacted]" } else { &run });
        run.clear();
        if c != '\n' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_holds_the_locale_and_xdg_but_no_secrets() {
        for name in ["PATH", "LC_TIME", "XDG_RUNTIME_DIR", "LANG"] {
            assert!(inherited(name), "{name}");
        }
        for name in [
            "DATABRICKS_TOKEN",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(!inherited(name), "{name}");
        }
    }

    #[tokio::test]
    async fn a_child_sees_the_allow_list_and_what_it_is_given_only() {
        let argv: Vec<String> = ["sh", "-c", "env; echo oops >&2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let named = vec!["CARGO".to_owned()];
        let output = Child::new(&argv, Duration::from_secs(10))
            .envs([("REFRESHD_CREDENTIAL", "db")])
            .inherit(&named)
            .capture_stdout()
            .run()
            .await
            .unwrap();
        let env = String::from_utf8(output.stdout.clone()).unwrap();
        assert!(env.lines().any(|l| l == "REFRESHD_CREDENTIAL=db"), "{env}");
        // cargo sets CARGO for tests: passed on only because it is named.
        assert!(env.lines().any(|l| l.starts_with("CARGO=")), "{env}");
        for line in env.lines() {
            let key = line.split('=').next().unwrap();
            assert!(
                inherited(key)
                    || key == "CARGO"
                    || key.starts_with("REFRESHD_")
                    || ["PWD", "SHLVL", "_"].contains(&key),
                "a child inherited {key}"
            );
        }
        assert_eq!(output.stderr_lines(None), ["oops"]);
    }

    #[test]
    fn long_token_like_runs_in_stderr_are_masked() {
        let line = "error: refresh eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9xxxxxxxxx.sig failed at /usr/bin/x";
        assert_eq!(
            mask_token_like(line),
            "error: refresh [redacted] failed at /usr/bin/x"
        );
        assert_eq!(mask_token_like("short words stay"), "short words stay");
    }
}
