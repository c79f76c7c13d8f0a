//! Target writes are atomic and locked: a reader looping on the file never sees a partial
//! write, concurrent writers of one file lose no update, links stay links, no temp file is
//! left behind.

use std::path::Path;

use refreshd::config::TargetConfig;
use secrecy::SecretString;
use time::OffsetDateTime;

fn dotenv(path: &Path, key: &str) -> TargetConfig {
    TargetConfig::dotenv(path, key)
}

fn write(target: &TargetConfig, value: &str) {
    refreshd::target::write(
        target,
        &SecretString::from(value),
        OffsetDateTime::now_utc(),
        crate::common::target_locks(),
    )
    .unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_reader_never_sees_a_partial_file_during_1000_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let head = "# app\nAPI_URL=https://api.example.com\n";
    let tail = "LOG_LEVEL=debug\n";
    // Tokens of different lengths, so a torn or truncated read cannot look whole.
    let tokens = ["a".repeat(900), "b".repeat(1400)];
    let versions: Vec<String> = tokens
        .iter()
        .map(|t| format!("{head}TOKEN={t}\n{tail}"))
        .collect();
    std::fs::write(&path, &versions[0]).unwrap();
    let target = dotenv(&path, "TOKEN");

    crate::common::rewrites_under_a_reader(&path, &versions, |i| {
        write(&target, &tokens[(i + 1) % 2]);
    });
    assert_eq!(std::fs::read_to_string(&path).unwrap(), versions[0]);
    assert_eq!(
        entries(dir.path()),
        vec![".env"],
        "no temp file is left behind"
    );
}

#[test]
fn concurrent_writers_of_one_file_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, "KEEP=1\n").unwrap();
    let writers: Vec<_> = ["FIRST", "SECOND", "THIRD"]
        .into_iter()
        .map(|key| {
            let target = dotenv(&path, key);
            std::thread::spawn(move || {
                for i in 0..200 {
                    write(&target, &format!("{key}-{i}"));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let content = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = content.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "FIRST=FIRST-199",
            "KEEP=1",
            "SECOND=SECOND-199",
            "THIRD=THIRD-199"
        ],
        "{content}"
    );
    assert_eq!(entries(dir.path()), vec![".env"]);
}

#[test]
fn a_symlinked_target_keeps_its_link_across_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("releases")).unwrap();
    let real = dir.path().join("releases/shared.env");
    std::fs::write(&real, "A=1\n").unwrap();
    let link = dir.path().join(".env");
    std::os::unix::fs::symlink("releases/shared.env", &link).unwrap();
    let target = dotenv(&link, "TOKEN");
    for i in 0..20 {
        write(&target, &format!("token-{i}"));
    }
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("releases/shared.env")
    );
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        "A=1\nTOKEN=token-19\n"
    );
    assert_eq!(entries(&dir.path().join("releases")), vec!["shared.env"]);
}
