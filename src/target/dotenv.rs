//! `.env` editing: sets one key's value and leaves every other byte of the file as it was.
//!
//! Quoting (design §3): bare when every character is in `[A-Za-z0-9._/+=:@%,^-]` and the
//! value does not start with `~`; else single quotes when it holds no `'`, `\`, `$` or
//! control character; else refused. Those two forms are read back identically by
//! python-dotenv, npm dotenv, docker compose, systemd `EnvironmentFile=` and bash `set -a; .`.
//! Pure functions on bytes: no I/O, and refusals never quote the value.

/// Why a value cannot be written so every reader reads it back exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the value cannot be written to a .env file so that every reader gets it back exactly: it {0}"
)]
pub struct Unquotable(&'static str);

fn bare_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._/+=:@%,^-".contains(&b)
}

/// The value as it goes after `KEY=`.
pub fn quote(value: &str) -> Result<String, Unquotable> {
    if value.is_empty() {
        return Err(Unquotable("is empty"));
    }
    if value.bytes().all(bare_safe) && !value.starts_with('~') {
        return Ok(value.to_owned());
    }
    if value.contains(['\'', '\\']) {
        return Err(Unquotable(
            "holds a quote or a backslash as well as characters that need quoting",
        ));
    }
    if value.contains('$') {
        return Err(Unquotable(
            "holds `$`, which python-dotenv expands even inside single quotes",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Unquotable("holds a control character (such as a newline)"));
    }
    Ok(format!("'{value}'"))
}

/// One physical-line span of the file that assigns `key`: `start..end` covers the whole
/// entry (several lines for a multi-line quoted value) including its line ending.
struct Entry {
    start: usize,
    end: usize,
    /// Leading whitespace and an `export ` prefix, kept as they were.
    prefix_end: usize,
    /// Whitespace and `# comment` after the value on its last line, kept as they were.
    comment: Option<(usize, usize)>,
    /// The entry ended without a newline (last line of the file).
    no_newline: bool,
    /// The value's text as written (quotes included), without blanks or a comment.
    value: (usize, usize),
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// If `line` is an assignment (`[blanks][export ]KEY[blanks]=`), the end of its
/// `[blanks][export ]` prefix, the key, and the index just past the `=`.
fn assignment(line: &[u8]) -> Option<(usize, &[u8], usize)> {
    let mut i = 0;
    while i < line.len() && is_blank(line[i]) {
        i += 1;
    }
    if line[i..].starts_with(b"export") && line.get(i + 6).is_some_and(|b| is_blank(*b)) {
        i += 6;
        while i < line.len() && is_blank(line[i]) {
            i += 1;
        }
    }
    let prefix_end = i;
    while i < line.len() && !is_blank(line[i]) && !matches!(line[i], b'=' | b'\n' | b'\r' | b'#') {
        i += 1;
    }
    let key = &line[prefix_end..i];
    while i < line.len() && is_blank(line[i]) {
        i += 1;
    }
    (!key.is_empty() && line.get(i) == Some(&b'=')).then_some((prefix_end, key, i + 1))
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Every entry that assigns `key`. Walks all assignments, so a line that merely looks like
/// `KEY=` inside another key's multi-line quoted value is never taken for one.
fn find_entries(content: &[u8], key: &str) -> Vec<Entry> {
    let key = key.as_bytes();
    let mut entries = Vec::new();
    let mut line_start = 0;
    while line_start < content.len() {
        let line_end = memchr_newline(content, line_start);
        // A UTF-8 byte order mark belongs to no key (python-dotenv and npm dotenv skip it).
        let skip = if line_start == 0 && content.starts_with(BOM) {
            BOM.len()
        } else {
            0
        };
        let line = &content[line_start + skip..line_end];
        let Some((prefix, found, value_start)) = assignment(line) else {
            line_start = line_end;
            continue;
        };
        let value_start_abs = line_start + skip + value_start;
        let (value_end_abs, entry_end) = value_extent(content, value_start_abs, line_end);
        if found == key {
            let last_line_end = trim_newline(content, line_start, entry_end);
            let rest = &content[value_end_abs..last_line_end];
            let comment = rest
                .iter()
                .position(|b| !is_blank(*b))
                .filter(|i| rest[*i] == b'#')
                .map(|_| (value_end_abs, last_line_end));
            entries.push(Entry {
                start: line_start,
                end: entry_end,
                prefix_end: line_start + skip + prefix,
                comment,
                no_newline: entry_end == content.len() && content.last() != Some(&b'\n'),
                value: (value_start_abs, value_end_abs),
            });
        }
        line_start = entry_end;
    }
    entries
}

/// End (exclusive, including the `\n`) of the line starting at `from`.
fn memchr_newline(content: &[u8], from: usize) -> usize {
    content[from..]
        .iter()
        .position(|b| *b == b'\n')
        .map(|i| from + i + 1)
        .unwrap_or(content.len())
}

/// Where the value's text ends (before any trailing comment) and where the entry ends.
/// A quoted value that is not closed on its line runs on to the line that closes it.
fn value_extent(content: &[u8], value_start: usize, line_end: usize) -> (usize, usize) {
    let mut i = value_start;
    while i < line_end && is_blank(content[i]) {
        i += 1;
    }
    match content.get(i) {
        Some(&quote @ (b'\'' | b'"')) if i < line_end => {
            let mut j = i + 1;
            while j < content.len() {
                if content[j] == b'\\' && quote == b'"' {
                    j += 2;
                    continue;
                }
                if content[j] == quote {
                    return (j + 1, memchr_newline(content, j));
                }
                j += 1;
            }
            // Never closed: treat it as a one-line value rather than swallow the file.
            (trim_newline(content, value_start, line_end), line_end)
        }
        _ => {
            let end = trim_newline(content, value_start, line_end);
            // A bare value ends at whitespace followed by `#`.
            let line = &content[value_start..end];
            let cut = (1..line.len()).find(|k| line[*k] == b'#' && is_blank(line[*k - 1]));
            let value_end = match cut {
                Some(k) => {
                    let mut v = value_start + k;
                    while v > value_start && is_blank(content[v - 1]) {
                        v -= 1;
                    }
                    v
                }
                None => end,
            };
            (value_end, line_end)
        }
    }
}

/// `end` without a trailing `\n` or `\r\n`, not before `start`.
fn trim_newline(content: &[u8], start: usize, end: usize) -> usize {
    let mut e = end;
    if e > start && content[e - 1] == b'\n' {
        e -= 1;
        if e > start && content[e - 1] == b'\r' {
            e -= 1;
        }
    }
    e
}

/// The value of `key` when the file holds it the way refreshd writes it (bare, or in
/// single quotes) and every assignment of it agrees; `None` otherwise. Used to reuse a
/// still-valid token at start, so an unusual line is simply not reused.
pub fn get(content: &[u8], key: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for entry in find_entries(content, key) {
        let raw = std::str::from_utf8(&content[entry.value.0..entry.value.1]).ok()?;
        let raw = raw.trim_matches(|c| c == ' ' || c == '\t');
        let value = match raw.strip_prefix('\'') {
            Some(rest) => rest.strip_suffix('\'')?.to_owned(),
            None if raw.bytes().all(bare_safe) => raw.to_owned(),
            None => return None,
        };
        if found.as_ref().is_some_and(|f| *f != value) {
            return None;
        }
        found = Some(value);
    }
    found.filter(|v| !v.is_empty())
}

/// Sets `key` to the already-quoted `value` in `content`: every line that assigns `key` is
/// rewritten (readers disagree on which of several wins), or one line is appended.
pub fn set(content: &[u8], key: &str, quoted: &str) -> Vec<u8> {
    let entries = find_entries(content, key);
    let mut out = Vec::with_capacity(content.len() + key.len() + quoted.len() + 2);
    if entries.is_empty() {
        out.extend_from_slice(content);
        if !content.is_empty() && !content.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(format!("{key}={quoted}\n").as_bytes());
        return out;
    }
    let mut copied = 0;
    for entry in entries {
        out.extend_from_slice(&content[copied..entry.start]);
        out.extend_from_slice(&content[entry.start..entry.prefix_end]);
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(quoted.as_bytes());
        if let Some((from, to)) = entry.comment {
            out.extend_from_slice(&content[from..to]);
        }
        if !entry.no_newline {
            out.push(b'\n');
        }
        copied = entry.end;
    }
    out.extend_from_slice(&content[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_str(content: &str, key: &str, value: &str) -> String {
        String::from_utf8(set(content.as_bytes(), key, &quote(value).unwrap())).unwrap()
    }

    #[test]
    fn quoting_rule() {
        assert_eq!(
            quote("eyJhbGci.eyJzdWIi.sig-_").unwrap(),
            "eyJhbGci.eyJzdWIi.sig-_"
        );
        assert_eq!(quote("ya29.a0Af+/=").unwrap(), "ya29.a0Af+/=");
        assert_eq!(
            quote("host:5432/db?Action=connect&X=1%2F").unwrap(),
            "'host:5432/db?Action=connect&X=1%2F'"
        );
        assert_eq!(quote("~home").unwrap(), "'~home'");
        assert_eq!(quote("a#b").unwrap(), "'a#b'");
        assert!(quote("a'b c").is_err());
        assert!(quote("a\\b").is_err());
        assert!(quote("a$b").is_err());
        assert!(quote("a\nb").is_err());
        assert!(quote("").is_err());
    }

    #[test]
    fn refusals_do_not_show_the_value() {
        let err = quote("secret$value").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn replaces_only_the_key_line_and_keeps_every_other_byte() {
        let before = "# comment\r\nA=1\r\nexport TOKEN=old\r\n\nB='two words'\r\n";
        let after = set_str(before, "TOKEN", "new");
        assert_eq!(
            after,
            "# comment\r\nA=1\r\nexport TOKEN=new\n\nB='two words'\r\n"
        );
    }

    #[test]
    fn appends_when_absent_adding_a_missing_final_newline() {
        assert_eq!(set_str("A=1", "TOKEN", "t"), "A=1\nTOKEN=t\n");
        assert_eq!(set_str("", "TOKEN", "t"), "TOKEN=t\n");
        assert_eq!(set_str("A=1\n", "TOKEN", "t"), "A=1\nTOKEN=t\n");
    }

    #[test]
    fn last_line_without_newline_stays_without() {
        assert_eq!(set_str("A=1\nTOKEN=old", "TOKEN", "new"), "A=1\nTOKEN=new");
    }

    #[test]
    fn similar_keys_and_comments_are_not_touched() {
        let before = "TOKEN_OLD=x\n# TOKEN=commented\nMYTOKEN=y\n  TOKEN = spaced # note\n";
        let after = set_str(before, "TOKEN", "new");
        assert_eq!(
            after,
            "TOKEN_OLD=x\n# TOKEN=commented\nMYTOKEN=y\n  TOKEN=new # note\n"
        );
    }

    #[test]
    fn multi_line_quoted_values_are_replaced_whole() {
        let before = "A=1\nTOKEN=\"line1\nline2\\\" still\"\nB=2\n";
        assert_eq!(set_str(before, "TOKEN", "new"), "A=1\nTOKEN=new\nB=2\n");
        let unclosed = "TOKEN='never closed\nB=2\n";
        assert_eq!(set_str(unclosed, "TOKEN", "new"), "TOKEN=new\nB=2\n");
    }

    #[test]
    fn lookalike_lines_inside_another_value_are_left_alone() {
        let before = "SCRIPT=\"#!/bin/sh\nexport TOKEN=placeholder\nexec app\"\nA=1\n";
        assert_eq!(
            set_str(before, "TOKEN", "new"),
            format!("{before}TOKEN=new\n")
        );
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_key() {
        let before = "\u{feff}TOKEN=old\r\nA=1\r\n";
        assert_eq!(
            set_str(before, "TOKEN", "new"),
            "\u{feff}TOKEN=new\nA=1\r\n"
        );
    }

    #[test]
    fn every_duplicate_is_updated() {
        assert_eq!(
            set_str("TOKEN=a\nX=1\nTOKEN=b\n", "TOKEN", "c"),
            "TOKEN=c\nX=1\nTOKEN=c\n"
        );
    }

    #[test]
    fn setting_the_same_value_is_a_no_op() {
        let before = "A=1\nTOKEN=same\n";
        assert_eq!(set_str(before, "TOKEN", "same"), before);
    }
}
