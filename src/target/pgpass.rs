//! `.pgpass` editing: sets the password of the one line whose host, port, database and
//! username match, or inserts that line at the top (libpq takes the first match).
//!
//! Fields are escaped as libpq reads them: `\` as `\\` first, then `:` as `\:`. Pure
//! functions on bytes: no I/O, and nothing here formats the password.

/// Why a password cannot go into a `.pgpass` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the password or user cannot be written to .pgpass: it holds a line break or NUL")]
pub struct Unwritable;

pub struct Entry<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub database: &'a str,
    pub username: &'a str,
}

fn escape(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}

/// Splits a line into its unescaped fields as libpq does.
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.last_mut().expect("never empty").push(next);
                }
            }
            ':' => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

fn key_fields<'e>(entry: &'e Entry<'_>) -> [&'e str; 4] {
    [entry.host, entry.port, entry.database, entry.username]
}

/// The full line for `entry` with `password`, without a line ending.
pub fn line(entry: &Entry<'_>, password: &str) -> Result<String, Unwritable> {
    let unwritable = |v: &str| v.contains(['\n', '\r', '\0']);
    if unwritable(password) || unwritable(entry.username) {
        return Err(Unwritable);
    }
    let mut parts: Vec<String> = key_fields(entry)
        .iter()
        .map(|f| if *f == "*" { "*".to_owned() } else { escape(f) })
        .collect();
    parts.push(escape(password));
    Ok(parts.join(":"))
}

/// The result of setting a password: the new file, and whether an earlier wildcard line
/// would still win over ours (worth a warning; libpq takes the first match).
pub struct Edited {
    pub content: Vec<u8>,
    pub shadowed_by_line: Option<usize>,
}

/// The password of the first line whose host, port, database and username are exactly
/// `entry`'s (the line refreshd owns).
pub fn get(content: &[u8], entry: &Entry<'_>) -> Option<String> {
    let text = std::str::from_utf8(content).ok()?;
    let ours = key_fields(entry);
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(fields)
        .find(|theirs| theirs.len() == 5 && theirs[..4].iter().zip(ours).all(|(t, o)| t == o))
        .map(|mut theirs| theirs.remove(4))
        .filter(|p| !p.is_empty())
}

/// Sets the password of the line whose host, port, database and username are `entry`'s.
pub fn set(content: &[u8], entry: &Entry<'_>, password: &str) -> Result<Edited, Unwritable> {
    set_first(content, entry, password, 4)
}

/// Sets user and password of the first line whose host, port and database are `entry`'s
/// (whatever user it held: the user changes with each rotation), or inserts it at the top.
pub fn set_by_place(
    content: &[u8],
    entry: &Entry<'_>,
    password: &str,
) -> Result<Edited, Unwritable> {
    set_first(content, entry, password, 3)
}

/// The first line whose first `identifying` fields are `entry`'s becomes `entry` with
/// `password`; without one, that line goes first.
fn set_first(
    content: &[u8],
    entry: &Entry<'_>,
    password: &str,
    identifying: usize,
) -> Result<Edited, Unwritable> {
    let new_line = line(entry, password)?;
    let ours = key_fields(entry);
    let mut offset = 0;
    let mut shadowed_by_line = None;
    // Offsets are taken on the raw bytes: a non-UTF-8 byte elsewhere must not shift them.
    for (number, raw) in content.split_inclusive(|b| *b == b'\n').enumerate() {
        let start = offset;
        offset += raw.len();
        let text = String::from_utf8_lossy(raw);
        let body = text.trim_end_matches('\n').trim_end_matches('\r');
        let body_len = raw.len()
            - raw
                .iter()
                .rev()
                .take_while(|b| matches!(b, b'\n' | b'\r'))
                .count();
        if body.starts_with('#') || body.trim().is_empty() {
            continue;
        }
        let theirs = fields(body);
        if theirs.len() < 5 {
            continue;
        }
        if theirs[..identifying].iter().zip(ours).all(|(t, o)| t == o) {
            let end = start + body_len;
            let mut out = Vec::with_capacity(content.len() + 16);
            out.extend_from_slice(&content[..start]);
            out.extend_from_slice(new_line.as_bytes());
            // Our line ends in `\n` alone (never add `\r`), unless it ended the file bare.
            if end < content.len() {
                out.push(b'\n');
            }
            out.extend_from_slice(&content[(start + raw.len()).min(content.len())..]);
            return Ok(Edited {
                content: out,
                shadowed_by_line,
            });
        }
        if shadowed_by_line.is_none()
            && theirs[..4]
                .iter()
                .zip(ours)
                .all(|(t, o)| t == "*" || t == o)
        {
            shadowed_by_line = Some(number + 1);
        }
    }
    let mut out = Vec::with_capacity(content.len() + new_line.len() + 1);
    out.extend_from_slice(new_line.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(content);
    Ok(Edited {
        content: out,
        shadowed_by_line: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: Entry<'static> = Entry {
        host: "db.example.com",
        port: "5432",
        database: "postgres",
        username: "app@example.com",
    };

    fn set_str(content: &str, password: &str) -> (String, Option<usize>) {
        let edited = set(content.as_bytes(), &DB, password).unwrap();
        (
            String::from_utf8(edited.content).unwrap(),
            edited.shadowed_by_line,
        )
    }

    #[test]
    fn escapes_backslash_then_colon() {
        assert_eq!(
            line(&DB, r"a:b\c").unwrap(),
            r"db.example.com:5432:postgres:app@example.com:a\:b\\c"
        );
        assert_eq!(fields(r"h:1:d:u:a\:b\\c")[4], r"a:b\c");
        assert!(line(&DB, "a\nb").is_err());
    }

    #[test]
    fn replaces_the_matching_line_in_place() {
        let before = "# mine\nother:5432:postgres:bob:pw\ndb.example.com:5432:postgres:app@example.com:old\nlast:1:2:3:4";
        let (after, shadow) = set_str(before, "new");
        assert_eq!(
            after,
            "# mine\nother:5432:postgres:bob:pw\ndb.example.com:5432:postgres:app@example.com:new\nlast:1:2:3:4"
        );
        assert_eq!(shadow, None);
    }

    #[test]
    fn inserts_at_the_top_when_absent() {
        let (after, _) = set_str("x:1:d:u:p\n", "new");
        assert_eq!(
            after,
            "db.example.com:5432:postgres:app@example.com:new\nx:1:d:u:p\n"
        );
    }

    #[test]
    fn an_earlier_wildcard_line_is_reported() {
        let before =
            "*:*:*:app@example.com:wild\ndb.example.com:5432:postgres:app@example.com:old\n";
        let (after, shadow) = set_str(before, "new");
        assert!(after.ends_with("app@example.com:new\n"));
        assert_eq!(shadow, Some(1));
    }

    #[test]
    fn non_utf8_bytes_elsewhere_do_not_shift_the_edit() {
        let mut before = b"other:1:d:u:caf\xe9\n".to_vec();
        before.extend_from_slice(b"db.example.com:5432:postgres:app@example.com:old\n");
        let edited = set(&before, &DB, "new").unwrap();
        let mut expected = b"other:1:d:u:caf\xe9\n".to_vec();
        expected.extend_from_slice(b"db.example.com:5432:postgres:app@example.com:new\n");
        assert_eq!(edited.content, expected);
    }

    #[test]
    fn escaped_key_fields_match() {
        let entry = Entry {
            host: "h:x",
            port: "5432",
            database: "d",
            username: "u",
        };
        let edited = set(b"h\\:x:5432:d:u:old\r\n", &entry, "new").unwrap();
        assert_eq!(edited.content, b"h\\:x:5432:d:u:new\n");
    }
}
