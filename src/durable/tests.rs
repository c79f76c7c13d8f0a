use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

fn private() -> Attributes {
    Attributes {
        mode: 0o600,
        owner: None,
    }
}

/// The unprivileged user the safety tests plant files as.
const NOBODY: u32 = 65534;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: it makes files owned by another user (run it as root, as CI does)"
    );
}

fn chown(path: &Path, uid: u32) {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(uid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

#[test]
fn replace_sets_mode_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, "old").unwrap();
    replace(
        &path,
        b"new",
        Attributes {
            mode: 0o640,
            owner: None,
        },
    )
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn create_new_never_clobbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    assert!(create_new(&path, b"first", private()).unwrap());
    assert!(!create_new(&path, b"second", private()).unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn links_resolve_to_their_final_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::write(&real, "x").unwrap();
    std::os::unix::fs::symlink("real", dir.path().join("a")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("b")).unwrap();
    let place = chase(&dir.path().join("b")).unwrap();
    assert_eq!(place.path, real.canonicalize().unwrap());
    assert!(place.existing.is_some());
    std::os::unix::fs::symlink("missing", dir.path().join("c")).unwrap();
    let place = chase(&dir.path().join("c")).unwrap();
    assert_eq!(place.name, "missing");
    assert!(place.existing.is_none());
    // Replacing through the link keeps the link.
    replace(&dir.path().join("b"), b"y", private()).unwrap();
    assert!(
        std::fs::symlink_metadata(dir.path().join("b"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&real).unwrap(), b"y");
}

#[test]
fn links_and_files_an_unprivileged_user_planted_are_refused() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    chown(&app, NOBODY);
    let secret = dir.path().join("root-only");
    std::fs::write(&secret, "root's").unwrap();

    // The app's own symlink to a root file: refused, and the file untouched.
    std::os::unix::fs::symlink(&secret, app.join(".env")).unwrap();
    chown(&app.join(".env"), NOBODY);
    let err = chase(&app.join(".env")).unwrap_err();
    assert!(
        err.to_string().contains("symlink owned by uid 65534"),
        "{err}"
    );
    assert!(replace(&app.join(".env"), b"TOKEN=x\n", private()).is_err());
    assert_eq!(std::fs::read(&secret).unwrap(), b"root's");

    // A dangling link of the app's: nothing is created where it points.
    std::os::unix::fs::symlink(dir.path().join("created"), app.join("token")).unwrap();
    chown(&app.join("token"), NOBODY);
    assert!(create_new(&app.join("token"), b"x", private()).is_err());
    assert!(!dir.path().join("created").exists());

    // A symlinked parent directory of the app's: refused the same way.
    std::os::unix::fs::symlink(dir.path(), app.join("up")).unwrap();
    chown(&app.join("up"), NOBODY);
    assert!(chase(&app.join("up/root-only")).is_err());

    // A file of a third user (a hard link, say) inside the app's directory: refused.
    std::fs::write(app.join("planted"), "x").unwrap();
    chown(&app.join("planted"), 1);
    let err = chase(&app.join("planted")).unwrap_err();
    assert!(
        err.to_string().contains("inside a directory of uid 65534"),
        "{err}"
    );

    // The app's own file in the app's directory, and a new one: fine.
    std::fs::write(app.join("own"), "x").unwrap();
    chown(&app.join("own"), NOBODY);
    assert!(chase(&app.join("own")).unwrap().existing.is_some());
    assert!(chase(&app.join("new")).unwrap().existing.is_none());
}

#[test]
fn a_fifo_is_refused_without_blocking_and_reads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let err = read_file(&fifo, 1024).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 2048]).unwrap();
    let err = read_file(&big, 1024).unwrap_err();
    assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
    assert_eq!(read_file(&big, 4096).unwrap().unwrap().0.len(), 2048);
    assert!(read_file(&dir.path().join("none"), 10).unwrap().is_none());
    // A pid file pointing at /dev/zero is not read until memory runs out.
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.pid")).unwrap();
    let err = read_file(&dir.path().join("zero.pid"), 32).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn litter_of_a_crash_is_removed_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, "A=1\n").unwrap();
    std::fs::write(
        dir.path().join("..env.0a1b2c3d4e5f.refreshd-tmp"),
        "TOKEN=x",
    )
    .unwrap();
    std::fs::write(dir.path().join("..env.keep"), "x").unwrap();
    std::fs::write(dir.path().join(".other.0a1b2c3d4e5f.refreshd-tmp"), "x").unwrap();
    let place = chase(&path).unwrap();
    assert_eq!(remove_litter(&place), 1);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["..env.keep", ".env", ".other.0a1b2c3d4e5f.refreshd-tmp"]
    );
}

#[test]
fn in_place_rewrites_keep_the_inode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, "a much longer old content\n").unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();
    let place = chase(&path).unwrap();
    let (file, _) = open_existing(&place, true).unwrap();
    rewrite_in_place(&file, b"short\n").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"short\n");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
}

#[test]
fn the_litter_index_points_only_at_files_with_litter() {
    let dir = tempfile::tempdir().unwrap();
    for name in [".env", "other", "linked-to"] {
        std::fs::write(dir.path().join(name), "A=1\n").unwrap();
    }
    std::fs::write(dir.path().join("..env.0a1b2c3d4e5f.refreshd-tmp"), "x").unwrap();
    std::os::unix::fs::symlink(dir.path().join("linked-to"), dir.path().join("link")).unwrap();
    let mut index = LitterIndex::default();
    assert!(index.may_have(&dir.path().join(".env")));
    assert!(!index.may_have(&dir.path().join("other")));
    // A temp file written after the directory was listed is not seen: the index is for
    // the one look at start.
    std::fs::write(dir.path().join(".other.0a1b2c3d4e5f.refreshd-tmp"), "x").unwrap();
    assert!(!index.may_have(&dir.path().join("other")));
    // Unsure means yes: a symlink's temp files lie beside its target; an unreadable
    // directory cannot be ruled out.
    assert!(index.may_have(&dir.path().join("link")));
    assert!(index.may_have(&dir.path().join("missing-dir/file")));
}
