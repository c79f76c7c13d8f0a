//! Every exit status refreshd has (the README's table), in one place.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It worked; everything is healthy.
    Ok,
    /// A refresh, a rotation, a login failed; a credential is unhealthy; no daemon for
    /// `rotate`; `token` has no valid token or no such credential.
    Failed,
    /// `check` found problems; `once` or `login` was given an unknown NAME; `inspect` was
    /// given something that is not a JWT.
    Invalid,
    /// `status` has no data yet.
    NoData,
    /// `once` refreshed, but could not store the new state in the state directory: the
    /// newest refresh token may exist nowhere else (free the disk, then run it again).
    Unsaved,
    /// `once`: every refresh worked and every target was written, but a reload action
    /// failed (the app may still hold the old token), as certbot users asked of `renew`.
    ReloadFailed,
    /// `exec`: the program's own exit status (128 + the signal's number when a signal ended
    /// it; 126/127 when it could not be started).
    Program(u8),
    /// sysexits.h `EX_CONFIG`: the configuration is invalid, so a supervisor can tell "fix
    /// your config" from "crashed" (`RestartPreventExitStatus=78`).
    Config,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Invalid => 2,
            Exit::NoData => 3,
            Exit::Unsaved => 4,
            Exit::ReloadFailed => 5,
            Exit::Program(code) => code,
            Exit::Config => 78,
        }
    }

    /// `Ok` when `ok`, else `Failed`.
    pub fn from_ok(ok: bool) -> Exit {
        if ok { Exit::Ok } else { Exit::Failed }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

impl From<crate::daemon::Stopped> for Exit {
    fn from(stopped: crate::daemon::Stopped) -> Exit {
        match stopped {
            crate::daemon::Stopped::Clean => Exit::Ok,
            crate::daemon::Stopped::InvalidConfig => Exit::Config,
            crate::daemon::Stopped::Failed => Exit::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Failed,
            Exit::Invalid,
            Exit::NoData,
            Exit::Unsaved,
            Exit::ReloadFailed,
            Exit::Config,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 78]);
    }
}
