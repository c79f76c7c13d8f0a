//! Lock files: the one way refreshd opens a file it only `flock`s (the daemon lock, a
//! credential's lock, a target's lock in `STATE_DIR/locks/`), and the bounded wait for one.
//!
//! A lock file is opened on its directory's held descriptor and never through a symlink:
//! a link planted at a lock's name is refused, so it can never make refreshd create or
//! truncate the file it points to. Nothing here writes a lock file's content.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{Mode, SFlag};

/// Opens (creating it 0600 if missing) the lock file `name` in the directory `dir` for
/// reading and writing: never through a symlink (`O_NOFOLLOW`), never kept across an
/// `exec`, and refused unless it is a regular file. `O_NONBLOCK` and `O_NOCTTY` keep a
/// FIFO or a terminal planted there from blocking the open or becoming refreshd's
/// terminal before it is refused.
pub fn open_lock_file<Fd: AsFd>(dir: Fd, name: &OsStr) -> io::Result<File> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_CREAT
            | OFlag::O_RDWR
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY,
        Mode::from_bits_truncate(0o600),
    )?;
    let stat = nix::sys::stat::fstat(&fd)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file (a lock file never is anything else)",
        ));
    }
    Ok(File::from(fd))
}

/// An exclusive `flock`, waiting at most `wait`.
pub fn lock_exclusive(file: File, wait: std::time::Duration) -> io::Result<Flock<File>> {
    const STEP: std::time::Duration = std::time::Duration::from_millis(20);
    // Counted in steps rather than read from a clock: a blocking thread, a bounded wait.
    let mut steps_left = wait.as_millis() / STEP.as_millis();
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, Errno::EWOULDBLOCK)) if steps_left > 0 => {
                steps_left -= 1;
                file = back;
                std::thread::sleep(STEP);
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("another process held the lock for {}s", wait.as_secs()),
                ));
            }
            Err((_, errno)) => return Err(errno.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn open_dir(path: &std::path::Path) -> File {
        File::open(path).unwrap()
    }

    #[test]
    fn makes_a_private_regular_file_and_opens_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_dir(dir.path());
        open_lock_file(&fd, OsStr::new("x.lock")).unwrap();
        let meta = std::fs::metadata(dir.path().join("x.lock")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        std::fs::write(dir.path().join("x.lock"), "4242\n").unwrap();
        open_lock_file(&fd, OsStr::new("x.lock")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.lock")).unwrap(),
            "4242\n",
            "opening never truncates"
        );
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_dir(dir.path());
        // Dangling: following it would create the file it names.
        let absent = dir.path().join("victim-absent");
        std::os::unix::fs::symlink(&absent, dir.path().join("a.lock")).unwrap();
        let err = open_lock_file(&fd, OsStr::new("a.lock")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::ELOOP), "{err}");
        assert!(!absent.exists(), "the link's target was created");
        // Existing: following it would open (and a daemon lock would truncate) someone's file.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("b.lock")).unwrap();
        let err = open_lock_file(&fd, OsStr::new("b.lock")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::ELOOP), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn anything_but_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_dir(dir.path());
        nix::unistd::mkfifo(&dir.path().join("f.lock"), Mode::from_bits_truncate(0o600)).unwrap();
        let err = open_lock_file(&fd, OsStr::new("f.lock")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        std::fs::create_dir(dir.path().join("d.lock")).unwrap();
        assert!(open_lock_file(&fd, OsStr::new("d.lock")).is_err());
    }
}
