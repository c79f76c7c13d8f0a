//! TOML editing (an app's own config): sets the string at a dotted key path and leaves
//! every other byte of the document as it was.
//!
//! `toml_edit` reads the file with the position of every key and value, and the edit is
//! made on the bytes (`toml_edit`'s own rendering turns `\r\n` into `\n` and is not used):
//! a string already at the path has only its bytes replaced; a missing key is one inserted
//! line `key = "…"` after the last key of its table (indented like it), or `, key = "…"`
//! inside an inline table, or a dotted `db.key = "…"` line beside a dotted-key table's
//! other keys; missing tables (and a table that so far has no header of its own) come as a
//! `[table]` section appended at the end. New lines end like the file's first line. The
//! value is written as a one-line basic string, which every TOML reader reads back exactly.
//!
//! Refused, never guessed: a file that is not UTF-8 TOML, anything but a string at the path,
//! anything but a table on the way (an array of tables included). Every edit is checked by
//! reading the whole result back: it must hold what the file held plus this one value. Pure
//! functions on bytes: no I/O, and errors name positions and the configured path, never
//! the file's content.

use std::fmt;

use std::collections::BTreeMap;

use toml_edit::{Document, Item, Table, TableLike, Value};

/// A dotted key path, as configured (`database.password`, `servers."eu.1".token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    text: String,
    segments: Vec<String>,
}

impl KeyPath {
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        let keys = toml_edit::Key::parse(text).map_err(|e| {
            format!(
                "{text:?} is not a TOML key path such as \"database.password\" ({})",
                e.message()
            )
        })?;
        Ok(KeyPath {
            text: text.trim().to_owned(),
            segments: keys.iter().map(|k| k.get().to_owned()).collect(),
        })
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether `self` names `other` or something inside it.
    pub fn starts_with(&self, other: &KeyPath) -> bool {
        self.segments.starts_with(&other.segments)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The first `depth` segments of `path`, written as a TOML key path, for messages.
fn prefix(path: &[String], depth: usize) -> String {
    if depth == 0 {
        return "the top level".to_owned();
    }
    path[..depth]
        .iter()
        .map(|s| toml_edit::Key::new(s.as_str()).display_repr().into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// Why a TOML file was not edited. Names positions and the configured path only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TomlError {
    #[error("the file is not UTF-8, so it is not TOML; not written")]
    NotUtf8,
    // The parser's message names the grammar (what it expected), never the file's text.
    #[error("the file is not valid TOML: {message} at line {line}, column {column}; not written")]
    Invalid {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("at `{at}` there is {found}, not a table: the key path cannot go on through it")]
    NotATable { at: String, found: &'static str },
    #[error(
        "at `{at}` there is {found}, not a string: refreshd replaces only a string; change it to \"\" or remove it"
    )]
    NotAString { at: String, found: &'static str },
    #[error("the edited document does not read back as expected; not written")]
    Unstable,
}

fn described(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(value) => match value {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "an array",
            Value::InlineTable(_) => "an inline table",
        },
    }
}

fn parse(content: &[u8]) -> Result<Document<&str>, TomlError> {
    let text = std::str::from_utf8(content).map_err(|_| TomlError::NotUtf8)?;
    Document::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start).min(text.len());
        let before = &text.as_bytes()[..at];
        TomlError::Invalid {
            message: e.message().to_owned(),
            line: before.iter().filter(|b| **b == b'\n').count() + 1,
            column: before.iter().rev().take_while(|b| **b != b'\n').count() + 1,
        }
    })
}

/// The string at `path`: `Ok(Some(byte range))`, or `Ok(None)` when the path stops.
fn find(
    doc: &Document<&str>,
    path: &[String],
) -> Result<Option<std::ops::Range<usize>>, TomlError> {
    let mut item = doc.as_item();
    for (depth, segment) in path.iter().enumerate() {
        let table = item.as_table_like().ok_or_else(|| TomlError::NotATable {
            at: prefix(path, depth),
            found: described(item),
        })?;
        match table.get(segment) {
            Some(next) => item = next,
            None => return Ok(None),
        }
    }
    match item {
        Item::Value(value @ Value::String(_)) => Ok(Some(value.span().ok_or(TomlError::Unstable)?)),
        other => Err(TomlError::NotAString {
            at: prefix(path, path.len()),
            found: described(other),
        }),
    }
}

/// The string at `path`, when the document is valid and holds one there.
pub fn get(content: &[u8], path: &KeyPath) -> Option<String> {
    let doc = parse(content).ok()?;
    let span = find(&doc, path.segments()).ok()??;
    doc.raw()
        .get(span)
        .and_then(|raw| raw.parse::<Value>().ok())
        .and_then(|value| value.as_str().map(str::to_owned))
}

/// Sets each `(path, value)` of `edits`, in one result: the document's other bytes stay as
/// they were.
pub fn set(content: &[u8], edits: &[(&KeyPath, &str)]) -> Result<Vec<u8>, TomlError> {
    let mut current = content.to_vec();
    for (path, value) in edits {
        current = set_one(&current, path.segments(), value)?;
        if get(&current, path).as_deref() != Some(*value) {
            return Err(TomlError::Unstable);
        }
    }
    Ok(current)
}

fn set_one(content: &[u8], path: &[String], value: &str) -> Result<Vec<u8>, TomlError> {
    let doc = parse(content)?;
    let quoted = quote(value);
    let (at, cut, text) = match find(&doc, path)? {
        Some(span) => (span.start, span.end - span.start, quoted),
        None => {
            let (at, text) = insertion(&doc, path, &quoted);
            (at, 0, text)
        }
    };
    let mut out = Vec::with_capacity(content.len() + text.len());
    out.extend_from_slice(&content[..at]);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&content[at + cut..]);
    verify(&doc, &out, path, value)?;
    Ok(out)
}

/// `value` as a one-line TOML basic string: every reader reads it back exactly, and it
/// never spans lines.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Segments written as a TOML (dotted) key.
fn key_text(segments: &[String]) -> String {
    segments
        .iter()
        .map(|s| toml_edit::Key::new(s.as_str()).display_repr().into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// The file's line ending: the first one it uses, else `\n`.
fn line_ending(raw: &str) -> &'static str {
    match raw.find('\n') {
        Some(i) if i > 0 && raw.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// Just past the end of the line holding `at` (its line ending included).
fn line_end(raw: &str, at: usize) -> usize {
    raw[at..].find('\n').map_or(raw.len(), |i| at + i + 1)
}

/// Where the text for a missing `path` goes, and the text. `find` has seen that every step
/// that exists is a table and that the path stops inside the last one.
fn insertion(doc: &Document<&str>, path: &[String], quoted: &str) -> (usize, String) {
    let raw = doc.raw();
    let eol = line_ending(raw);
    // The last table with a body of its own (the top level, or one with a `[header]`) and
    // its depth: dotted-key tables write their keys there.
    let mut body: &Table = doc.as_table();
    let mut body_depth = 0;
    let mut item = doc.as_item();
    let mut depth = 0;
    while let Some(next) = path
        .get(depth)
        .and_then(|segment| item.as_table_like()?.get(segment))
    {
        item = next;
        depth += 1;
        if let Item::Table(table) = item
            && !table.is_dotted()
        {
            body = table;
            body_depth = depth;
        }
    }
    let rest = &path[depth..];
    match item {
        Item::Value(Value::InlineTable(inline)) => {
            let span = inline.span().unwrap_or(0..0);
            inline_insertion(raw, span, &format!("{} = {quoted}", key_text(rest)))
        }
        Item::Table(table) if table.is_dotted() => {
            let line = format!("{} = {quoted}", key_text(&path[body_depth..]));
            body_insertion(raw, body, depth == 0, &line, eol)
        }
        Item::Table(table)
            if rest.len() == 1
                && (depth == 0 || !table.is_implicit() && table.span().is_some()) =>
        {
            let line = format!("{} = {quoted}", key_text(rest));
            body_insertion(raw, table, depth == 0, &line, eol)
        }
        // Missing tables, or a table that exists only through its sub-tables' headers.
        _ => {
            let (last, parents) = path.split_last().expect("a key path has a key");
            let mut text = String::new();
            if !raw.is_empty() {
                if !raw.ends_with('\n') {
                    text.push_str(eol);
                }
                if !raw.trim_end_matches([' ', '\t']).ends_with("\n\n")
                    && !raw.trim_end_matches([' ', '\t']).ends_with("\n\r\n")
                {
                    text.push_str(eol);
                }
            }
            text.push_str(&format!(
                "[{}]{eol}{} = {quoted}{eol}",
                key_text(parents),
                key_text(std::slice::from_ref(last))
            ));
            (raw.len(), text)
        }
    }
}

/// A `key = value` line after the last key-value line of `table`'s body (dotted keys
/// included), indented like it; or after its header; or, at the top level, first.
fn body_insertion(raw: &str, table: &Table, top: bool, line: &str, eol: &str) -> (usize, String) {
    // (start, end) of the value that ends last in this body.
    fn last_value(table: &dyn TableLike, last: &mut Option<(usize, usize)>) {
        for (_, item) in table.iter() {
            match item {
                Item::Value(value) => {
                    if let Some(span) = value.span()
                        && last.is_none_or(|(_, end)| span.end > end)
                    {
                        *last = Some((span.start, span.end));
                    }
                }
                Item::Table(sub) if sub.is_dotted() => last_value(sub, last),
                _ => {}
            }
        }
    }
    let mut last = None;
    last_value(table, &mut last);
    let (at, indent) = match (last, table.span()) {
        (Some((start, end)), _) => {
            let line_start = raw[..start].rfind('\n').map_or(0, |i| i + 1);
            let indent_len = raw[line_start..]
                .find(|c| c != ' ' && c != '\t')
                .unwrap_or(0);
            (
                line_end(raw, end),
                &raw[line_start..line_start + indent_len],
            )
        }
        (None, Some(header)) if !top => (line_end(raw, header.end), ""),
        // First in the file, after a byte order mark.
        _ => (if raw.starts_with('\u{feff}') { 3 } else { 0 }, ""),
    };
    let mut text = String::new();
    if at == raw.len() && at > 0 && !raw.ends_with('\n') {
        text.push_str(eol);
    }
    text.push_str(indent);
    text.push_str(line);
    text.push_str(eol);
    (at, text)
}

/// `key = value` as the last member of the inline table at `span` (`{ … }`).
fn inline_insertion(raw: &str, span: std::ops::Range<usize>, member: &str) -> (usize, String) {
    let close = span.end.saturating_sub(1);
    let at = raw[..close].trim_end_matches([' ', '\t', '\r', '\n']).len();
    match raw.as_bytes().get(at.wrapping_sub(1)) {
        Some(b'{') if at == close => (at, format!(" {member} ")),
        Some(b'{' | b',') => (at, format!(" {member}")),
        _ => (at, format!(", {member}")),
    }
}

/// Every value of a document, by key, as a reader gets it.
#[derive(Debug, PartialEq)]
enum Model {
    Table(BTreeMap<String, Model>),
    Array(Vec<Model>),
    Scalar(String),
}

fn model_of_table(table: &dyn TableLike) -> Model {
    Model::Table(
        table
            .iter()
            .map(|(key, item)| (key.to_owned(), model_of_item(item)))
            .collect(),
    )
}

fn model_of_item(item: &Item) -> Model {
    match item {
        Item::None => Model::Scalar(String::new()),
        Item::Table(table) => model_of_table(table),
        Item::ArrayOfTables(array) => {
            Model::Array(array.iter().map(|t| model_of_table(t)).collect())
        }
        Item::Value(value) => model_of_value(value),
    }
}

fn model_of_value(value: &Value) -> Model {
    match value {
        Value::String(s) => Model::Scalar(format!("string {}", s.value())),
        Value::Integer(i) => Model::Scalar(format!("integer {}", i.value())),
        Value::Float(f) => Model::Scalar(format!("float {:?}", f.value())),
        Value::Boolean(b) => Model::Scalar(format!("boolean {}", b.value())),
        Value::Datetime(d) => Model::Scalar(format!("datetime {}", d.value())),
        Value::Array(array) => Model::Array(array.iter().map(model_of_value).collect()),
        Value::InlineTable(table) => model_of_table(table),
    }
}

/// The edited file reads as the original with exactly this one string set.
fn verify(
    before: &Document<&str>,
    after: &[u8],
    path: &[String],
    value: &str,
) -> Result<(), TomlError> {
    let after = parse(after).map_err(|_| TomlError::Unstable)?;
    let mut expected = model_of_table(before.as_table());
    let mut here = &mut expected;
    let (last, parents) = path.split_last().expect("a key path has a key");
    for segment in parents {
        let Model::Table(map) = here else {
            return Err(TomlError::Unstable);
        };
        here = map
            .entry(segment.clone())
            .or_insert_with(|| Model::Table(BTreeMap::new()));
    }
    let Model::Table(map) = here else {
        return Err(TomlError::Unstable);
    };
    map.insert(last.clone(), Model::Scalar(format!("string {value}")));
    if model_of_table(after.as_table()) == expected {
        Ok(())
    } else {
        Err(TomlError::Unstable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> KeyPath {
        KeyPath::parse(text).unwrap()
    }

    fn set_str(content: &str, at: &str, value: &str) -> String {
        String::from_utf8(set(content.as_bytes(), &[(&path(at), value)]).unwrap()).unwrap()
    }

    fn err(content: &str, at: &str) -> TomlError {
        set(content.as_bytes(), &[(&path(at), "v")]).unwrap_err()
    }

    #[test]
    fn key_paths_parse_as_toml_keys() {
        assert_eq!(
            path("database.password").segments(),
            ["database", "password"]
        );
        assert_eq!(
            path(r#"servers."eu.1".'tok en'"#).segments(),
            ["servers", "eu.1", "tok en"]
        );
        assert_eq!(path(" a . b ").segments(), ["a", "b"]);
        assert!(KeyPath::parse("").is_err());
        assert!(KeyPath::parse("a..b").is_err());
        assert!(KeyPath::parse("a b").is_err());
        assert!(path("a.b.c").starts_with(&path("a.b")));
        assert!(!path("a.bc").starts_with(&path("a.b")));
    }

    #[test]
    fn only_the_string_bytes_change() {
        let before = "# app\r\n[database] # db\r\nhost = \"h\"\r\npassword   =   'old'   # rotated by refreshd\r\nport = 5432\r\n";
        let after = set_str(before, "database.password", "new\"tok\\en\n");
        assert_eq!(after, before.replace("'old'", r#""new\"tok\\en\n""#));
        assert_eq!(
            get(after.as_bytes(), &path("database.password")).unwrap(),
            "new\"tok\\en\n"
        );
        assert_eq!(
            set_str(&after, "database.password", "new\"tok\\en\n"),
            after
        );
    }

    #[test]
    fn missing_keys_and_tables_are_created_and_the_rest_kept() {
        let before = "# app config\ntitle = \"x\"   # the title\n\n[database]\nhost = \"h\" # primary\n\n[log]\nlevel = \"info\"\n";
        assert_eq!(
            set_str(before, "database.password", "p"),
            "# app config\ntitle = \"x\"   # the title\n\n[database]\nhost = \"h\" # primary\npassword = \"p\"\n\n[log]\nlevel = \"info\"\n"
        );
        assert_eq!(
            set_str(before, "token", "p"),
            "# app config\ntitle = \"x\"   # the title\ntoken = \"p\"\n\n[database]\nhost = \"h\" # primary\n\n[log]\nlevel = \"info\"\n"
        );
        assert_eq!(
            set_str(before, "auth.db.password", "p"),
            format!("{before}\n[auth.db]\npassword = \"p\"\n")
        );
        assert_eq!(
            set_str("", "database.password", "p"),
            "[database]\npassword = \"p\"\n"
        );
        assert_eq!(
            set_str("db = { host = \"h\" }\n", "db.password", "p"),
            "db = { host = \"h\", password = \"p\" }\n"
        );
        assert_eq!(
            set_str("db.host = \"h\"\n", "db.password", "p"),
            "db.host = \"h\"\ndb.password = \"p\"\n"
        );
    }

    #[test]
    fn what_the_path_cannot_go_through_is_refused() {
        assert_eq!(
            err("database = \"x\"\n", "database.password"),
            TomlError::NotATable {
                at: "database".into(),
                found: "a string"
            }
        );
        assert_eq!(
            err("[database.password]\n", "database.password"),
            TomlError::NotAString {
                at: "database.password".into(),
                found: "a table"
            }
        );
        assert_eq!(
            err("[[database]]\n", "database.password"),
            TomlError::NotATable {
                at: "database".into(),
                found: "an array of tables"
            }
        );
        assert_eq!(
            err("[database]\npassword = [\"a\"]\n", "database.password"),
            TomlError::NotAString {
                at: "database.password".into(),
                found: "an array"
            }
        );
        assert_eq!(
            err("[database]\npassword = 1\n", "database.password"),
            TomlError::NotAString {
                at: "database.password".into(),
                found: "an integer"
            }
        );
    }

    #[test]
    fn a_byte_order_mark_stays_first() {
        assert_eq!(
            set_str("\u{feff}[a]\nb = 1\n", "token", "p"),
            "\u{feff}token = \"p\"\n[a]\nb = 1\n"
        );
    }

    #[test]
    fn invalid_documents_are_refused_with_a_position_only() {
        let e = err("a = 1\nsecret-value = nope\n", "t");
        assert!(matches!(e, TomlError::Invalid { line: 2, .. }), "{e:?}");
        let text = e.to_string();
        assert!(!text.contains("nope") && !text.contains("secret"), "{text}");
        assert_eq!(
            set(b"a = '\xff'", &[(&path("a"), "v")]).unwrap_err(),
            TomlError::NotUtf8
        );
        assert!(matches!(
            err("a = 1\na = 2\n", "t"),
            TomlError::Invalid { line: 2, .. }
        ));
    }
}
