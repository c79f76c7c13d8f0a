//! Properties of the INI, TOML and JSON editors, for every file the generators can build:
//! only the managed value's bytes change (or one chunk is inserted when it was missing),
//! editing twice is editing once, and the value reads back. No input makes them panic.

use proptest::prelude::*;

use crate::target::ini;
use crate::target::json::{self, Pointer};
use crate::target::toml::{self, KeyPath};

/// Tokens as providers issue them, with every character an INI value may hold bare.
fn ini_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._/+=:@,^~!?*()&<>{}|$é-]{1,60}"
        .prop_filter("not blank at the ends", |v| ini::check_value(v).is_ok())
}

/// Anything at all for the formats that escape: quotes, backslashes, line breaks, NUL.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._/+=-]{1,60}",
        "\\PC{0,40}",
        "[\"\\\\\n\r\t\u{0}\u{7f}\u{1f} a-é😀]{0,30}",
    ]
}

fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n")]
}

/// The exact bytes after replacing the one `old` (which must occur once) with `new`.
fn replaced(content: &str, old: &str, new: &str) -> String {
    assert_eq!(content.matches(old).count(), 1, "{old:?} in {content:?}");
    content.replacen(old, new, 1)
}

/// `after` is `before` with one contiguous chunk inserted; returns the chunk.
fn inserted_chunk<'a>(before: &[u8], after: &'a [u8]) -> Option<&'a [u8]> {
    let grown = after.len().checked_sub(before.len())?;
    let common = before.iter().zip(after).take_while(|(a, b)| a == b).count();
    (after[common + grown..] == before[common..]).then(|| &after[common..common + grown])
}

// --- INI ---------------------------------------------------------------------------------

/// One line of a section's body (never the managed key).
#[derive(Debug, Clone)]
enum IniLine {
    Blank(String),
    Comment(String),
    Opt {
        key: &'static str,
        separator: &'static str,
        value: String,
        trailing: &'static str,
        continued: Vec<String>,
    },
}

fn ini_line() -> impl Strategy<Value = IniLine> {
    prop_oneof![
        "[ \t]{0,3}".prop_map(IniLine::Blank),
        (
            "[ \t]{0,2}",
            prop::sample::select(vec!["#", ";"]),
            "[ -~]{0,20}"
        )
            .prop_map(|(indent, mark, text)| IniLine::Comment(format!("{indent}{mark}{text}"))),
        (
            prop::sample::select(vec!["a", "B", "x_y", "tokens", "my_token", "host"]),
            prop::sample::select(vec!["=", " = ", ": ", ":", "  =  "]),
            "[A-Za-z0-9 =:;#%._\\[\\]-]{0,16}",
            prop::sample::select(vec!["", " ", "\t "]),
            prop::collection::vec("[A-Za-z0-9=:._-]{1,10}", 0..2),
        )
            .prop_map(
                |(key, separator, value, trailing, continued)| IniLine::Opt {
                    key,
                    separator,
                    value: value.trim().to_owned(),
                    trailing,
                    continued,
                }
            ),
    ]
}

/// A file: sections of random lines, one section maybe named `prof` and maybe holding the
/// managed `token` line (with a unique old value) at a random place.
#[derive(Debug, Clone)]
struct IniFile {
    preamble: Vec<IniLine>,
    sections: Vec<(&'static str, &'static str, Vec<IniLine>)>,
    /// Where `[prof]` goes among the sections, and where `token` goes in its body.
    managed: Option<(usize, Option<TokenLine>)>,
    prof_body: Vec<IniLine>,
    eol: &'static str,
    final_eol: bool,
}

/// Where the managed line goes in `[prof]`'s body, its key's spelling and its `=`.
type TokenLine = (usize, &'static str, &'static str);

const OLD: &str = "OLD-VALUE-0xC0FFEE";

fn ini_file() -> impl Strategy<Value = IniFile> {
    let section = (
        prop::sample::select(vec!["s1", "s2", "DEFAULT", "Prof", "prof x"]),
        prop::sample::select(vec!["", "  "]),
        prop::collection::vec(ini_line(), 0..5),
    );
    let token_line = (
        0usize..6,
        prop::sample::select(vec!["token", "TOKEN", "Token"]),
        prop::sample::select(vec!["=", " = ", ": ", "\t=\t"]),
    );
    (
        prop::collection::vec(
            prop_oneof![
                "[ \t]{0,3}".prop_map(IniLine::Blank),
                "[#;][ -~]{0,10}".prop_map(IniLine::Comment)
            ],
            0..3,
        ),
        prop::collection::vec(section, 0..4),
        proptest::option::of((0usize..5, proptest::option::of(token_line))),
        prop::collection::vec(ini_line(), 0..5),
        eol(),
        any::<bool>(),
    )
        .prop_map(
            |(preamble, sections, managed, prof_body, eol, final_eol)| IniFile {
                preamble,
                sections,
                managed,
                prof_body,
                eol,
                final_eol,
            },
        )
}

fn render_ini_lines(lines: &[IniLine], indent: &str, out: &mut Vec<String>) {
    for line in lines {
        match line {
            IniLine::Blank(blank) => out.push(blank.clone()),
            IniLine::Comment(text) => out.push(text.clone()),
            IniLine::Opt {
                key,
                separator,
                value,
                trailing,
                continued,
            } => {
                out.push(format!("{indent}{key}{separator}{value}{trailing}"));
                out.extend(continued.iter().map(|c| format!("{indent}      {c}")));
            }
        }
    }
}

impl IniFile {
    fn render(&self) -> String {
        let mut lines = Vec::new();
        render_ini_lines(&self.preamble, "", &mut lines);
        let managed_at = self.managed.map(|(at, _)| at.min(self.sections.len()));
        for index in 0..=self.sections.len() {
            if managed_at == Some(index) {
                lines.push("[prof]".to_owned());
                let mut body = self.prof_body.clone();
                let token = self.managed.and_then(|(_, token)| token);
                let mut rendered = Vec::new();
                if let Some((at, key, separator)) = token {
                    let at = at.min(body.len());
                    let tail = body.split_off(at);
                    render_ini_lines(&body, "", &mut rendered);
                    rendered.push(format!("{key}{separator}{OLD}"));
                    render_ini_lines(&tail, "", &mut rendered);
                } else {
                    render_ini_lines(&body, "", &mut rendered);
                }
                lines.extend(rendered);
            }
            if let Some((name, indent, body)) = self.sections.get(index) {
                lines.push(format!("[{name}]"));
                render_ini_lines(body, indent, &mut lines);
            }
        }
        let mut text = lines.join(self.eol);
        if self.final_eol && !text.is_empty() {
            text.push_str(self.eol);
        }
        text
    }

    fn has_token(&self) -> bool {
        self.managed.is_some_and(|(_, token)| token.is_some())
    }
}

// --- TOML --------------------------------------------------------------------------------

/// A TOML document with `[database]` holding `password` (an old value, in one of TOML's
/// string forms) or not, among other tables, comments and values.
#[derive(Debug, Clone)]
struct TomlFile {
    root: Vec<String>,
    tables: Vec<(String, Vec<String>)>,
    /// Where `[database]` goes, and the `password` line's form in it.
    database: Option<(usize, Option<PasswordLine>)>,
    database_body: Vec<String>,
    eol: &'static str,
}

/// Where the `password` line goes in `[database]`'s body, its key, old value and comment.
type PasswordLine = (usize, &'static str, &'static str, &'static str);

fn toml_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ \t]{0,2}".prop_map(|s| s),
        "[ \t]{0,2}#[ -~]{0,16}",
        (
            prop::sample::select(vec!["host", "port", "'quoted key'", "\"k.d\"", "name"]),
            prop::sample::select(vec![
                "\"h\"",
                "5432",
                "'lit'",
                "[1, 2]",
                "{ a = 1 }",
                "true",
                "1979-05-27T07:32:00Z",
                "\"\"\"\nmulti\nline\"\"\""
            ]),
            prop::sample::select(vec!["", "   # note", " "]),
        )
            .prop_map(|(k, v, c)| format!("{k} = {v}{c}")),
    ]
}

fn toml_file() -> impl Strategy<Value = TomlFile> {
    (
        prop::collection::vec(toml_line(), 0..4),
        prop::collection::vec(
            (
                prop::sample::select(vec!["log", "server", "db2", "database.replica"]),
                prop::collection::vec(toml_line(), 0..4),
            ),
            0..3,
        ),
        proptest::option::of((
            0usize..4,
            proptest::option::of((
                0usize..4,
                prop::sample::select(vec![
                    "password = ",
                    "password   =   ",
                    "\"password\"=",
                    "'password' = ",
                ]),
                prop::sample::select(vec!["\"OLD\"", "'OLD'", "\"\"\"OLD\"\"\"", "'''OLD'''"]),
                prop::sample::select(vec!["", "  # rotated", " "]),
            )),
        )),
        prop::collection::vec(toml_line(), 0..4),
        eol(),
    )
        .prop_map(|(root, tables, database, database_body, eol)| TomlFile {
            root,
            // Table names may repeat: keep the first of each.
            tables: {
                let mut seen = Vec::new();
                tables
                    .into_iter()
                    .filter(|(name, _)| {
                        let new = !seen.contains(name);
                        seen.push(*name);
                        new
                    })
                    .map(|(name, body)| (name.to_owned(), dedup_toml(body)))
                    .collect()
            },
            database,
            database_body: dedup_toml(database_body),
            eol,
        })
        .prop_map(|mut file| {
            file.root = dedup_toml(file.root);
            file
        })
}

/// Lines with each key once (TOML refuses a key twice in a table).
fn dedup_toml(lines: Vec<String>) -> Vec<String> {
    let mut keys = Vec::new();
    lines
        .into_iter()
        .filter(|line| {
            let Some((key, _)) = line.split_once(" = ") else {
                return true;
            };
            let new = !keys.contains(&key.to_owned());
            keys.push(key.to_owned());
            new
        })
        .collect()
}

impl TomlFile {
    /// The document, and the managed line's old value text when there is one.
    fn render(&self) -> (String, Option<&'static str>) {
        let mut lines: Vec<String> = self.root.clone();
        let at = self.database.map(|(at, _)| at.min(self.tables.len()));
        let mut old = None;
        for index in 0..=self.tables.len() {
            if at == Some(index) {
                lines.push("[database]".to_owned());
                let mut body = self.database_body.clone();
                if let Some((_, Some((pos, key, value, comment)))) = self.database {
                    body.insert(pos.min(body.len()), format!("{key}{value}{comment}"));
                    old = Some(value);
                }
                lines.extend(body);
            }
            if let Some((name, body)) = self.tables.get(index) {
                lines.push(format!("[{name}]"));
                lines.extend(body.iter().cloned());
            }
        }
        let mut text = lines.join(self.eol);
        text.push_str(self.eol);
        (text, old)
    }
}

// --- JSON --------------------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        // Binary fractions: serde_json's own float printing round-trips them exactly.
        (-1_000_000i64..1_000_000).prop_map(|n| serde_json::json!(n as f64 / 8.0)),
        "\\PC{0,12}".prop_map(serde_json::Value::String),
    ];
    let any = leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z/~\"é]{1,6}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    // An app's config is an object at the top.
    prop::collection::btree_map("[a-z/~\"é]{1,6}", any, 0..5)
        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
}

fn json_text(value: &serde_json::Value, style: u8) -> String {
    use serde::Serialize;
    let indent: &[u8] = match style {
        0 => return serde_json::to_string(value).unwrap(),
        1 => b"  ",
        2 => b"    ",
        _ => b"\t",
    };
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer).unwrap();
    String::from_utf8(out).unwrap()
}

/// Every path (as pointer tokens) to an object in `value`.
fn objects(value: &serde_json::Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            out.push(at.clone());
            for (key, child) in map {
                at.push(key.clone());
                objects(child, at, out);
                at.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                at.push(i.to_string());
                objects(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn pointer_text(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The managed `token` of `[prof]`: its value's bytes change and nothing else; a missing
    /// one (or a missing `[prof]`) comes in as one inserted chunk; twice is once.
    #[test]
    fn ini_set_changes_only_the_value(file in ini_file(), value in ini_value()) {
        let before = file.render();
        let after = ini::set(before.as_bytes(), Some("prof"), &[("token", &value)])
            .map_err(|e| TestCaseError::fail(format!("{e} in {before:?}")))?;
        let after = String::from_utf8(after).unwrap();
        if file.has_token() {
            prop_assert_eq!(&after, &replaced(&before, OLD, &value));
        } else {
            let chunk = inserted_chunk(before.as_bytes(), after.as_bytes());
            let chunk = String::from_utf8_lossy(chunk.expect("one inserted chunk"));
            prop_assert!(chunk.contains(&value), "{:?}", chunk);
        }
        prop_assert_eq!(ini::get(after.as_bytes(), Some("prof"), "token"), Some(value.clone()));
        let again = ini::set(after.as_bytes(), Some("prof"), &[("token", &value)]).unwrap();
        prop_assert_eq!(String::from_utf8(again).unwrap(), after);
    }

    /// The same for the part before the first section.
    #[test]
    fn ini_set_before_the_first_section(
        preamble in prop::collection::vec(ini_line(), 0..6),
        rest in prop::collection::vec(ini_line(), 0..4),
        value in ini_value(),
        eol in eol(),
    ) {
        let mut lines = Vec::new();
        render_ini_lines(&preamble, "", &mut lines);
        lines.push("[s]".to_owned());
        render_ini_lines(&rest, "", &mut lines);
        let before = lines.join(eol) + eol;
        let after = ini::set(before.as_bytes(), None, &[("token", &value)]).unwrap();
        prop_assert!(inserted_chunk(before.as_bytes(), &after).is_some());
        prop_assert_eq!(ini::get(&after, None, "token"), Some(value.clone()));
        prop_assert_eq!(ini::set(&after, None, &[("token", &value)]).unwrap(), after);
    }

    /// `database.password`: a string there has only its bytes replaced; else one chunk (and
    /// at most a `[database]` header) comes in; the rest of the document reads the same.
    #[test]
    fn toml_set_changes_only_the_value(file in toml_file(), value in any_value()) {
        let (before, old) = file.render();
        let key = KeyPath::parse("database.password").unwrap();
        let after = toml::set(before.as_bytes(), &[(&key, &value)])
            .map_err(|e| TestCaseError::fail(format!("{e} in {before:?}")))?;
        let after = String::from_utf8(after).unwrap();
        let written = toml_quote(&value);
        match old {
            Some(old) => prop_assert_eq!(&after, &replaced(&before, old, &written)),
            None => {
                let chunk = inserted_chunk(before.as_bytes(), after.as_bytes());
                prop_assert!(chunk.is_some(), "not one inserted chunk: {:?} -> {:?}", before, after);
            }
        }
        prop_assert_eq!(toml::get(after.as_bytes(), &key), Some(value.clone()));
        prop_assert_eq!(toml::set(after.as_bytes(), &[(&key, &value)]).unwrap(), after.as_bytes());
        // Every other value reads as before (the `toml` crate, not toml_edit, reads it).
        let mut expected: ::toml::Table = ::toml::from_str(&before).unwrap();
        let mut actual: ::toml::Table = ::toml::from_str(&after).unwrap();
        for table in [&mut expected, &mut actual] {
            if let Some(::toml::Value::Table(db)) = table.get_mut("database") {
                db.remove("password");
                if db.is_empty() { table.remove("database"); }
            }
        }
        prop_assert_eq!(expected, actual);
    }

    /// A string at the pointer has only its bytes replaced; a missing member comes in as
    /// one chunk; the rest of the document reads the same; twice is once.
    #[test]
    fn json_set_changes_only_the_value(
        document in json_value(),
        style in 0u8..4,
        pick in any::<prop::sample::Index>(),
        existing in any::<bool>(),
        new_keys in prop::collection::vec("[a-z/~é]{1,5}", 1..3),
        value in any_value(),
    ) {
        let mut document = document;
        let mut targets = Vec::new();
        objects(&document, &mut Vec::new(), &mut targets);
        let parent = pick.get(&targets).clone();
        let object = document.pointer_mut(&pointer_text(&parent)).unwrap();
        let map = object.as_object_mut().unwrap();
        let mut tokens = parent.clone();
        let marker = "OLD-MARKER-\u{1f600}-0xC0FFEE".to_owned();
        if existing {
            map.insert(new_keys[0].clone(), serde_json::Value::String(marker.clone()));
            tokens.push(new_keys[0].clone());
        } else {
            let mut new_keys = new_keys;
            while map.contains_key(&new_keys[0]) {
                new_keys[0].push('+');
            }
            tokens.extend(new_keys);
        }
        let before = json_text(&document, style);
        let pointer = Pointer::parse(&pointer_text(&tokens)).unwrap();
        let after = json::set(before.as_bytes(), &[(&pointer, &value)])
            .map_err(|e| TestCaseError::fail(format!("{e} in {before:?}")))?;
        let after = String::from_utf8(after).unwrap();
        if existing {
            let old = serde_json::to_string(&marker).unwrap();
            prop_assert_eq!(&after, &replaced(&before, &old, &serde_json::to_string(&value).unwrap()));
        } else {
            prop_assert!(inserted_chunk(before.as_bytes(), after.as_bytes()).is_some());
        }
        prop_assert_eq!(json::get(after.as_bytes(), &pointer), Some(value.clone()));
        prop_assert_eq!(json::set(after.as_bytes(), &[(&pointer, &value)]).unwrap(), after.as_bytes());
        let read: serde_json::Value = serde_json::from_str(&after).unwrap();
        let mut expected = document.clone();
        set_pointer(&mut expected, &tokens, value);
        prop_assert_eq!(read, expected);
    }

    /// No bytes make an editor panic; whatever it accepts reads back.
    #[test]
    fn editors_never_panic(content in prop::collection::vec(any::<u8>(), 0..200), text in "\\PC{0,200}") {
        let key = KeyPath::parse("a.b").unwrap();
        let pointer = Pointer::parse("/a/b").unwrap();
        for bytes in [content.as_slice(), text.as_bytes()] {
            if let Ok(out) = ini::set(bytes, Some("s"), &[("k", "v")]) {
                prop_assert_eq!(ini::get(&out, Some("s"), "k"), Some("v".to_owned()));
            }
            if let Ok(out) = ini::set(bytes, None, &[("k", "v")]) {
                prop_assert_eq!(ini::get(&out, None, "k"), Some("v".to_owned()));
            }
            if let Ok(out) = toml::set(bytes, &[(&key, "v")]) {
                prop_assert_eq!(toml::get(&out, &key), Some("v".to_owned()));
            }
            if let Ok(out) = json::set(bytes, &[(&pointer, "v")]) {
                prop_assert_eq!(json::get(&out, &pointer), Some("v".to_owned()));
            }
        }
    }
}

/// What the TOML editor writes for `value`: the one-line basic string.
fn toml_quote(value: &str) -> String {
    let path = KeyPath::parse("k").unwrap();
    let out = toml::set(b"k = ''", &[(&path, value)]).unwrap();
    String::from_utf8(out).unwrap()["k = ".len()..].to_owned()
}

fn set_pointer(value: &mut serde_json::Value, tokens: &[String], new: String) {
    let mut here = value;
    for (i, token) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        here = match here {
            serde_json::Value::Array(items) => &mut items[token.parse::<usize>().unwrap()],
            serde_json::Value::Object(map) => {
                if last {
                    map.insert(token.clone(), serde_json::Value::String(new));
                    return;
                }
                map.entry(token.clone())
                    .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
            }
            _ => unreachable_type(),
        };
    }
}

fn unreachable_type() -> ! {
    panic!("the generated path goes through objects and arrays only")
}
