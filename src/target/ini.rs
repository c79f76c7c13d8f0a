//! INI editing (`~/.databrickscfg`, `~/.aws/credentials`, an app's `.ini`): sets keys of one
//! section and leaves every other byte of the file as it was.
//!
//! The file is read the way Python's `configparser` reads it (the reader behind the
//! Databricks SDK and botocore): lines end in `\n`, `\r\n` or `\r`; a line whose first
//! non-blank character is `#` or `;` is a comment; `[name]` is a section header, names
//! compared exactly; `key = value` or `key: value` is an option, the first `=` or `:`
//! splitting it and keys compared without case (`str.lower`); a line indented deeper than
//! its option continues that option's value. Lines before the first header are the part
//! `section = None` names (configparser itself refuses keys there).
//!
//! Only the value's bytes change; a missing key is inserted after the section's last key,
//! with that key's indentation and `=` spacing, and a missing section appended at the end.
//! A second copy of the section or of the key, a value with a comment inside its
//! continuation lines, or an edit that would change how any other line reads is refused:
//! never a guess. Every edit is checked by reading the result back.
//!
//! Values are written bare, so one is refused when a reader would not read it back exactly
//! (see [`check_value`]). Pure functions on bytes: no I/O, and errors never quote a value
//! or any other byte of the file.

/// Why an INI file was not edited. Names sections, keys and line numbers only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IniError {
    #[error(
        "the value cannot be written to an INI file so that every reader gets it back exactly: it {0}"
    )]
    Value(&'static str),
    #[error(
        "{section} appears twice (lines {first} and {second}): readers disagree on which one counts, so refreshd will not guess; merge them"
    )]
    DuplicateSection {
        section: String,
        first: usize,
        second: usize,
    },
    #[error(
        "`{key}` appears twice in {section} (lines {first} and {second}, keys compare without case): configparser refuses such a file; remove one"
    )]
    DuplicateKey {
        key: String,
        section: String,
        first: usize,
        second: usize,
    },
    #[error(
        "line {line} holds `{key}` in {section} without `=` or `:`: refreshd will not guess what it means; give it a value or remove it"
    )]
    Valueless {
        key: String,
        section: String,
        line: usize,
    },
    #[error(
        "the value of `{key}` in {section} (line {line}) runs over several lines with a comment between them: refreshd will not guess which lines are the value; make it one line"
    )]
    CommentInValue {
        key: String,
        section: String,
        line: usize,
    },
    #[error(
        "setting `{key}` in {section} would change how other lines of the file read (an indented line would join the new value): indent the section's lines alike"
    )]
    Unstable { key: String, section: String },
}

/// Characters Python's `str.strip()` and `str.isspace()` take for blanks, in ASCII (line
/// breaks are line endings here and never reach it).
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c | 0x1c..=0x1f)
}

/// Whether `value` goes bare after `key = ` and reads back exactly: configparser strips
/// blanks and treats line breaks as the end (or continuation) of the value; go-ini (the
/// Databricks CLI and Terraform) cuts `#` and `;` comments and strips quotes; configparser's
/// default interpolation fails on `%`; a trailing `\` continues the line for go-ini.
pub fn check_value(value: &str) -> Result<(), IniError> {
    let refuse = |why| Err(IniError::Value(why));
    if value.is_empty() {
        return refuse("is empty");
    }
    if value.chars().any(char::is_control) {
        return refuse("holds a control character (such as a line break or NUL)");
    }
    if value.starts_with(|c: char| c.is_whitespace())
        || value.ends_with(|c: char| c.is_whitespace())
    {
        return refuse("starts or ends with a blank, which readers strip");
    }
    if value.contains(['#', ';']) {
        return refuse("holds `#` or `;`, which some INI readers take for a comment");
    }
    if value.contains('%') {
        return refuse(
            "holds `%`, which Python's ConfigParser (default interpolation) refuses to read",
        );
    }
    if value.starts_with(['"', '\'', '`']) {
        return refuse("starts with a quote, which some INI readers strip");
    }
    if value.ends_with('\\') {
        return refuse("ends with `\\`, which some INI readers take for a line continuation");
    }
    Ok(())
}

/// Why a configured section name or key cannot be used (the config names it).
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("must not be empty");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without blanks");
    }
    if key.contains(['=', ':', '[', ']', '#', ';', '"', '\'']) {
        return Err("must not hold `=`, `:`, `[`, `]`, `#`, `;` or a quote");
    }
    Ok(())
}

pub fn check_section(section: &str) -> Result<(), &'static str> {
    if section.is_empty() {
        return Err(
            "must not be empty (leave `section` out for the part before the first section)",
        );
    }
    if section.chars().any(char::is_control) {
        return Err("must not hold a line break or other control character");
    }
    if section.starts_with(char::is_whitespace) || section.ends_with(char::is_whitespace) {
        return Err("must not start or end with a blank");
    }
    if section.contains(['[', ']']) {
        return Err("must not hold `[` or `]`");
    }
    Ok(())
}

/// One physical line: `start..body` is its text, `body..end` its line ending.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    body: usize,
    end: usize,
}

/// An option as configparser reads it.
#[derive(Debug, Clone)]
struct Opt {
    /// `str.lower()` of the key as written.
    folded: String,
    /// Line index of `key = …`.
    line: usize,
    /// The first line's value, after the delimiter and its blanks, before trailing blanks.
    value: (usize, usize),
    /// Where the whole value ends (the last continuation line's text), and that line.
    value_end: usize,
    last_line: usize,
    /// Byte range from the key's end to the value's start (`" = "`, `":"`).
    separator: (usize, usize),
    /// The value as read: lines joined by `\n`, trailing blank lines dropped.
    text: Vec<u8>,
    /// A comment line lies between the key's line and its last continuation line.
    comment_inside: bool,
    /// A line without `=` or `:` (configparser's valueless option, or a parse error).
    valueless: bool,
}

#[derive(Debug, Clone)]
struct Section {
    /// `None`: the lines before the first header.
    name: Option<String>,
    header: Option<usize>,
    options: Vec<Opt>,
}

struct Parsed {
    lines: Vec<Line>,
    sections: Vec<Section>,
    /// Where the text starts: after a UTF-8 byte order mark, if any.
    text_start: usize,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn split_lines(content: &[u8]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < content.len() {
        let body = content[start..]
            .iter()
            .position(|b| matches!(b, b'\n' | b'\r'))
            .map_or(content.len(), |i| start + i);
        let end = match content.get(body) {
            Some(b'\r') if content.get(body + 1) == Some(&b'\n') => body + 2,
            Some(_) => body + 1,
            None => body,
        };
        lines.push(Line { start, body, end });
        start = end;
    }
    lines
}

/// `start..end` without leading and trailing blanks.
fn trim(content: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && is_blank(content[start]) {
        start += 1;
    }
    while end > start && is_blank(content[end - 1]) {
        end -= 1;
    }
    (start, end)
}

fn lower(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_lowercase()
}

/// The section name of a header line's trimmed text, as configparser's `\[(.+)\]` matches
/// it: up to the last `]` with at least one character between.
fn header_name(text: &[u8]) -> Option<&[u8]> {
    if text.first() != Some(&b'[') {
        return None;
    }
    let close = text.iter().rposition(|b| *b == b']')?;
    (close >= 2).then(|| &text[1..close])
}

fn parse(content: &[u8]) -> Parsed {
    let lines = split_lines(content);
    let text_start = if content.starts_with(BOM) {
        BOM.len()
    } else {
        0
    };
    let mut sections = vec![Section {
        name: None,
        header: None,
        options: Vec::new(),
    }];
    // configparser's state: the indentation of the last header or option line, and
    // whether an option is open for continuation lines.
    let mut indent_level = 0usize;
    let mut open = false;
    let mut comment_pending = false;
    for (index, line) in lines.iter().enumerate() {
        let start = line.start.max(text_start);
        let (text_from, text_to) = trim(content, start, line.body);
        let text = &content[text_from..text_to];
        if text.starts_with(b"#") || text.starts_with(b";") {
            comment_pending = open;
            continue;
        }
        let section = sections.last_mut().expect("never empty");
        if text.is_empty() {
            if open && let Some(opt) = section.options.last_mut() {
                opt.text.push(b'\n');
            }
            continue;
        }
        let indent = text_from - start;
        if open && indent > indent_level {
            let opt = section.options.last_mut().expect("an open option");
            opt.text.push(b'\n');
            opt.text.extend_from_slice(text);
            opt.value_end = text_to;
            opt.last_line = index;
            opt.comment_inside |= comment_pending;
            comment_pending = false;
            continue;
        }
        indent_level = indent;
        comment_pending = false;
        if let Some(name) = header_name(text) {
            sections.push(Section {
                name: Some(String::from_utf8_lossy(name).into_owned()),
                header: Some(index),
                options: Vec::new(),
            });
            open = false;
            continue;
        }
        let option = option_line(content, index, (text_from, text_to), line.body);
        open = !option.valueless;
        section.options.push(option);
    }
    for section in &mut sections {
        for opt in &mut section.options {
            while opt.text.last() == Some(&b'\n') {
                opt.text.pop();
            }
        }
    }
    Parsed {
        lines,
        sections,
        text_start,
    }
}

/// An option line's parts; `text_from..text_to` is its trimmed text, `body` where the line
/// ends.
fn option_line(
    content: &[u8],
    line: usize,
    (text_from, text_to): (usize, usize),
    body: usize,
) -> Opt {
    let text = &content[text_from..text_to];
    let Some(delimiter) = text.iter().position(|b| matches!(b, b'=' | b':')) else {
        return Opt {
            folded: lower(text),
            line,
            value: (text_to, text_to),
            value_end: text_to,
            last_line: line,
            separator: (text_to, text_to),
            text: Vec::new(),
            comment_inside: false,
            valueless: true,
        };
    };
    let (key_from, key_to) = trim(content, text_from, text_from + delimiter);
    let (mut value_from, mut value_to) = trim(content, text_from + delimiter + 1, text_to);
    let separator = (key_to, value_from);
    if value_from == value_to {
        // An empty value is filled after the line's trailing blanks (`token = ` gets
        // `token = t`, not `token =t `).
        (value_from, value_to) = (body, body);
    }
    Opt {
        folded: lower(&content[key_from..key_to]),
        line,
        value: (value_from, value_to),
        value_end: value_to,
        last_line: line,
        separator,
        text: content[value_from..value_to].to_vec(),
        comment_inside: false,
        // `= value` (no key) is a parse error to configparser: never ours.
        valueless: key_from == key_to,
    }
}

fn describe(section: Option<&str>) -> String {
    match section {
        Some(name) => format!("section [{name}]"),
        None => "the part before the first section".to_owned(),
    }
}

/// The file's line ending: the first one it uses, else `\n`.
fn line_ending<'c>(content: &'c [u8], lines: &[Line]) -> &'c [u8] {
    lines
        .iter()
        .find(|l| l.end > l.body)
        .map_or(b"\n", |l| &content[l.body..l.end])
}

/// The section named `section`, if the file has it once.
fn find_section<'p>(
    parsed: &'p Parsed,
    section: Option<&str>,
) -> Result<Option<&'p Section>, IniError> {
    let mut matching = parsed
        .sections
        .iter()
        .filter(|s| s.name.as_deref() == section);
    let first = matching.next();
    if let (Some(first), Some(second)) = (first, matching.next()) {
        let line = |s: &Section| s.header.map_or(0, |h| h + 1);
        return Err(IniError::DuplicateSection {
            section: describe(section),
            first: line(first),
            second: line(second),
        });
    }
    Ok(first)
}

/// The option `key` of `section`, if it has it once.
fn find_option<'s>(
    section: &'s Section,
    section_name: Option<&str>,
    key: &str,
) -> Result<Option<&'s Opt>, IniError> {
    let folded = key.to_lowercase();
    let mut matching = section.options.iter().filter(|o| o.folded == folded);
    let first = matching.next();
    let second = matching.next();
    if let (Some(first), Some(second)) = (first, second) {
        return Err(IniError::DuplicateKey {
            key: key.to_owned(),
            section: describe(section_name),
            first: first.line + 1,
            second: second.line + 1,
        });
    }
    if let Some(opt) = first {
        if opt.valueless {
            return Err(IniError::Valueless {
                key: key.to_owned(),
                section: describe(section_name),
                line: opt.line + 1,
            });
        }
        if opt.comment_inside {
            return Err(IniError::CommentInValue {
                key: key.to_owned(),
                section: describe(section_name),
                line: opt.line + 1,
            });
        }
    }
    Ok(first)
}

/// The value of `key` in `section` when the file holds it once, on one line; `None`
/// otherwise (missing, duplicated, several lines). Used to reuse a still-valid token.
pub fn get(content: &[u8], section: Option<&str>, key: &str) -> Option<String> {
    let parsed = parse(content);
    let found = find_section(&parsed, section).ok()??;
    let opt = find_option(found, section, key).ok()??;
    if opt.value_end != opt.value.1 {
        return None;
    }
    String::from_utf8(opt.text.clone())
        .ok()
        .filter(|v| !v.is_empty())
}

/// Sets each `(key, value)` of `edits` in `section`, in one result: the file's other bytes
/// stay as they were. Every value is checked first ([`check_value`]).
pub fn set(
    content: &[u8],
    section: Option<&str>,
    edits: &[(&str, &str)],
) -> Result<Vec<u8>, IniError> {
    for (_, value) in edits {
        check_value(value)?;
    }
    let mut current = content.to_vec();
    for (key, value) in edits {
        current = set_one(&current, section, key, value)?;
    }
    Ok(current)
}

fn set_one(
    content: &[u8],
    section: Option<&str>,
    key: &str,
    value: &str,
) -> Result<Vec<u8>, IniError> {
    let parsed = parse(content);
    let edited = match find_section(&parsed, section)? {
        Some(found) => match find_option(found, section, key)? {
            Some(opt) => splice(content, opt.value.0, opt.value_end, value.as_bytes()),
            None => insert_key(content, &parsed, found, key, value),
        },
        None => {
            // The part before the first section always exists (it may be empty).
            let name = section.unwrap_or_default();
            append_section(content, &parsed, name, key, value)
        }
    };
    verify(content, &edited, section, key, value)?;
    Ok(edited)
}

fn splice(content: &[u8], from: usize, to: usize, with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + with.len());
    out.extend_from_slice(&content[..from]);
    out.extend_from_slice(with);
    out.extend_from_slice(&content[to..]);
    out
}

/// A new `key = value` line after the section's last option (or its header), indented and
/// spaced like that option.
fn insert_key(
    content: &[u8],
    parsed: &Parsed,
    section: &Section,
    key: &str,
    value: &str,
) -> Vec<u8> {
    let indent_of = |index: usize| {
        let line = parsed.lines[index];
        let from = line.start.max(parsed.text_start);
        &content[from..trim(content, from, line.body).0]
    };
    let last = section.options.iter().rev().find(|o| !o.valueless);
    let (after, indent, separator): (Option<usize>, &[u8], &[u8]) = match (last, section.header) {
        (Some(opt), _) => (
            Some(opt.last_line),
            indent_of(opt.line),
            &content[opt.separator.0..opt.separator.1],
        ),
        (None, Some(header)) => (Some(header), indent_of(header), b" = "),
        (None, None) => (None, b"", b" = "),
    };
    let eol = line_ending(content, &parsed.lines);
    let mut inserted = Vec::new();
    let at = match after {
        Some(index) => {
            let line = parsed.lines[index];
            if line.end == line.body {
                // The file's last line, without a line ending.
                inserted.extend_from_slice(eol);
            }
            line.end
        }
        None => parsed.text_start,
    };
    inserted.extend_from_slice(indent);
    inserted.extend_from_slice(key.as_bytes());
    inserted.extend_from_slice(if separator.is_empty() {
        b" = "
    } else {
        separator
    });
    inserted.extend_from_slice(value.as_bytes());
    inserted.extend_from_slice(eol);
    splice(content, at, at, &inserted)
}

/// `[section]` and `key = value` at the end of the file, after a blank line.
fn append_section(content: &[u8], parsed: &Parsed, name: &str, key: &str, value: &str) -> Vec<u8> {
    let eol = line_ending(content, &parsed.lines);
    let mut out = content.to_vec();
    if !out.is_empty() {
        if !out.ends_with(b"\n") && !out.ends_with(b"\r") {
            out.extend_from_slice(eol);
        }
        let last_blank = parsed.lines.last().is_some_and(|l| {
            let (from, to) = trim(content, l.start.max(parsed.text_start), l.body);
            from == to
        });
        if !last_blank {
            out.extend_from_slice(eol);
        }
    }
    out.extend_from_slice(format!("[{name}]").as_bytes());
    out.extend_from_slice(eol);
    out.extend_from_slice(format!("{key} = {value}").as_bytes());
    out.extend_from_slice(eol);
    out
}

/// Every section and option as a reader sees them, in order.
type Model = Vec<(Option<String>, Vec<(String, Vec<u8>, bool)>)>;

fn model(parsed: &Parsed) -> Model {
    parsed
        .sections
        .iter()
        .map(|s| {
            let options = s
                .options
                .iter()
                .map(|o| (o.folded.clone(), o.text.clone(), o.valueless))
                .collect();
            (s.name.clone(), options)
        })
        .collect()
}

/// The edited file reads as the original with exactly this one value set, or the edit is
/// refused.
fn verify(
    before: &[u8],
    after: &[u8],
    section: Option<&str>,
    key: &str,
    value: &str,
) -> Result<(), IniError> {
    let mut expected = model(&parse(before));
    let folded = key.to_lowercase();
    let entry = (folded.clone(), value.as_bytes().to_vec(), false);
    match expected
        .iter_mut()
        .find(|(name, _)| name.as_deref() == section)
    {
        Some((_, options)) => match options.iter_mut().find(|(k, _, _)| *k == folded) {
            Some(existing) => *existing = entry,
            None => options.push(entry),
        },
        None => expected.push((section.map(str::to_owned), vec![entry])),
    }
    let mut actual = model(&parse(after));
    // Readers keep a section's options by name: their order does not matter.
    for (_, options) in expected.iter_mut().chain(actual.iter_mut()) {
        options.sort_by(|a, b| a.0.cmp(&b.0));
    }
    if expected == actual {
        Ok(())
    } else {
        Err(IniError::Unstable {
            key: key.to_owned(),
            section: describe(section),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_str(content: &str, section: Option<&str>, key: &str, value: &str) -> String {
        String::from_utf8(set(content.as_bytes(), section, &[(key, value)]).unwrap()).unwrap()
    }

    fn err(content: &str, section: Option<&str>, key: &str) -> IniError {
        set(content.as_bytes(), section, &[(key, "new")]).unwrap_err()
    }

    const DATABRICKSCFG: &str = "; Databricks CLI profiles\r\n[DEFAULT]\r\nhost  =  https://adb-1.azuredatabricks.net\r\ntoken  =  dapiOLD   \r\n\r\n# staging\r\n[staging]\r\nhost: https://adb-2.azuredatabricks.net\r\n";

    #[test]
    fn only_the_value_bytes_change() {
        let after = set_str(DATABRICKSCFG, Some("DEFAULT"), "token", "dapiNEW.x-y_z");
        assert_eq!(after, DATABRICKSCFG.replace("dapiOLD", "dapiNEW.x-y_z"));
        assert_eq!(
            get(after.as_bytes(), Some("DEFAULT"), "token").as_deref(),
            Some("dapiNEW.x-y_z")
        );
    }

    #[test]
    fn a_missing_key_follows_the_sections_last_key_spaced_like_it() {
        let after = set_str(DATABRICKSCFG, Some("staging"), "token", "t1");
        assert_eq!(
            after,
            format!("{DATABRICKSCFG}token: t1\r\n"),
            "CRLF and `: ` copied from the last key"
        );
        let before = "[a]\n  x = 1\n    continued\n; about [b]\n[b]\ny=2";
        assert_eq!(
            set_str(before, Some("a"), "token", "t"),
            "[a]\n  x = 1\n    continued\n  token = t\n; about [b]\n[b]\ny=2"
        );
        assert_eq!(
            set_str(before, Some("b"), "token", "t"),
            "[a]\n  x = 1\n    continued\n; about [b]\n[b]\ny=2\ntoken=t\n"
        );
        assert_eq!(set_str("[a]", Some("a"), "k", "v"), "[a]\nk = v\n");
    }

    #[test]
    fn a_missing_section_is_appended_after_a_blank_line() {
        assert_eq!(
            set_str("[a]\nx = 1", Some("b"), "k", "v"),
            "[a]\nx = 1\n\n[b]\nk = v\n"
        );
        assert_eq!(
            set_str("[a]\nx = 1\n\n", Some("b"), "k", "v"),
            "[a]\nx = 1\n\n[b]\nk = v\n"
        );
        assert_eq!(set_str("", Some("b"), "k", "v"), "[b]\nk = v\n");
    }

    #[test]
    fn the_part_before_the_first_section() {
        assert_eq!(set_str("", None, "k", "v"), "k = v\n");
        assert_eq!(
            set_str("# top\n[a]\nk = 1\n", None, "k", "v"),
            "k = v\n# top\n[a]\nk = 1\n"
        );
        assert_eq!(
            set_str("a=1\nk=old\n[s]\nk=2\n", None, "k", "v"),
            "a=1\nk=v\n[s]\nk=2\n"
        );
        assert_eq!(
            set_str("\u{feff}a=1\n", None, "k", "v"),
            "\u{feff}a=1\nk=v\n"
        );
    }

    #[test]
    fn keys_compare_without_case_sections_exactly() {
        let before = "[Prod]\nTOKEN = old\n[prod]\nx = 1\n";
        assert_eq!(
            set_str(before, Some("Prod"), "token", "new"),
            "[Prod]\nTOKEN = new\n[prod]\nx = 1\n"
        );
        assert_eq!(
            set_str(before, Some("prod"), "token", "new"),
            "[Prod]\nTOKEN = old\n[prod]\nx = 1\ntoken = new\n"
        );
    }

    #[test]
    fn comments_lookalikes_and_other_sections_are_left_alone() {
        let before = "[a]\n# token = commented\n;token=also\ntokens = other\nmy_token = x\n[b]\ntoken = b's\n";
        assert_eq!(
            set_str(before, Some("a"), "token", "new"),
            "[a]\n# token = commented\n;token=also\ntokens = other\nmy_token = x\ntoken = new\n[b]\ntoken = b's\n"
        );
    }

    #[test]
    fn an_inline_comment_is_part_of_the_value_to_configparser_and_is_replaced() {
        assert_eq!(
            set_str(
                "[a]\ntoken = <paste here> ; note\n",
                Some("a"),
                "token",
                "t"
            ),
            "[a]\ntoken = t\n"
        );
    }

    #[test]
    fn an_empty_value_is_filled() {
        assert_eq!(
            set_str("[a]\ntoken =\n", Some("a"), "token", "t"),
            "[a]\ntoken =t\n"
        );
        assert_eq!(
            set_str("[a]\ntoken = \n", Some("a"), "token", "t"),
            "[a]\ntoken = t\n"
        );
    }

    #[test]
    fn a_multi_line_value_is_replaced_whole() {
        let before = "[a]\ntoken = first\n  second\n\n  third\nx = 1\n";
        assert_eq!(
            set_str(before, Some("a"), "token", "t"),
            "[a]\ntoken = t\nx = 1\n"
        );
        assert_eq!(get(before.as_bytes(), Some("a"), "token"), None);
        assert!(matches!(
            err("[a]\ntoken = first\n# note\n  second\n", Some("a"), "token"),
            IniError::CommentInValue { line: 2, .. }
        ));
    }

    #[test]
    fn duplicates_are_refused() {
        assert!(matches!(
            err("[a]\nx=1\n[b]\n[a]\n", Some("a"), "token"),
            IniError::DuplicateSection {
                first: 1,
                second: 4,
                ..
            }
        ));
        assert!(matches!(
            err("[a]\ntoken=1\nToken=2\n", Some("a"), "token"),
            IniError::DuplicateKey {
                first: 2,
                second: 3,
                ..
            }
        ));
        assert!(matches!(
            err("[a]\ntoken\n", Some("a"), "token"),
            IniError::Valueless { line: 2, .. }
        ));
        // A duplicate elsewhere is the file's business.
        assert_eq!(
            set_str("[b]\nx=1\nx=2\n[a]\n", Some("a"), "k", "v"),
            "[b]\nx=1\nx=2\n[a]\nk = v\n"
        );
    }

    #[test]
    fn an_edit_that_would_change_another_line_is_refused() {
        // `  [b]` is a header only while no option precedes it at a shallower indent.
        assert!(matches!(
            err("[a]\n  [b]\n  x = 1\n", Some("a"), "token"),
            IniError::Unstable { .. }
        ));
    }

    #[test]
    fn lone_carriage_returns_end_lines_as_python_reads_them() {
        assert_eq!(
            set_str("[a]\rtoken = old\rx = 1\r", Some("a"), "token", "new"),
            "[a]\rtoken = new\rx = 1\r"
        );
    }

    #[test]
    fn values_no_reader_reads_back_are_refused_without_quoting_them() {
        for bad in [
            "", "a\nb", "a\0b", " lead", "trail ", "a#b", "a;b", "50%", "\"q\"", "'q'", "back\\",
        ] {
            let e = check_value(bad).unwrap_err().to_string();
            assert!(bad.len() < 3 || !e.contains(bad), "{e}");
        }
        check_value("eyJhbGciOi.e30.sig-_").unwrap();
        check_value("FwoGZXIvYXdzE+/=").unwrap();
        check_value("a=b:c").unwrap();
        check_value("2027-01-15T08:00:00Z").unwrap();
    }

    #[test]
    fn several_edits_land_in_one_result() {
        let after = set(
            b"[a]\nx = 1\n",
            Some("a"),
            &[("token", "t"), ("token_expires_at", "2027-01-15T08:00:00Z")],
        )
        .unwrap();
        assert_eq!(
            after,
            b"[a]\nx = 1\ntoken = t\ntoken_expires_at = 2027-01-15T08:00:00Z\n"
        );
    }

    #[test]
    fn setting_the_same_value_is_a_no_op() {
        let before = "[a]\ntoken = same\n";
        assert_eq!(set_str(before, Some("a"), "token", "same"), before);
    }
}
