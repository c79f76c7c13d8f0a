//! JSON editing (an app's own config): sets the string an RFC 6901 JSON Pointer names and
//! leaves every other byte of the document as it was.
//!
//! A small validating scanner (RFC 8259, strict: no comments, no trailing commas, no NaN)
//! finds the exact bytes of the string at the pointer, and only they are replaced, with the
//! new value escaped as JSON. A missing member is inserted as text after the last member of
//! the deepest object that exists, laid out like that member (its indentation and `": "`),
//! with objects created for the rest of the path: nothing else is re-serialised, so key
//! order, spacing and number spellings stay. An empty file becomes a new document.
//!
//! Refused, never guessed: a file that is not UTF-8 JSON, nesting deeper than 128 levels, a
//! key that appears twice in an object on the path, a non-object where the path goes on, a
//! non-string at the pointer, and a missing array element (only object members are made).
//! Every edit is checked by reading the result back. Pure functions on bytes: no I/O, and
//! errors name positions and the configured pointer, never the file's content.

use std::fmt;

/// An RFC 6901 JSON Pointer naming a member, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Err(
                "must name a member such as \"/db/password\", not the whole document".to_owned(),
            );
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON Pointer: it must start with `/`, such as \"/db/password\""
            ));
        };
        let tokens = rest
            .split('/')
            .map(unescape_token)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                format!("{text:?} is not a JSON Pointer: `~` must be followed by 0 or 1 (RFC 6901)")
            })?;
        Ok(Pointer {
            text: text.to_owned(),
            tokens,
        })
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Whether `self` names `other` or something inside it.
    pub fn starts_with(&self, other: &Pointer) -> bool {
        self.tokens.starts_with(&other.tokens)
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn unescape_token(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next()? {
                '0' => out.push('~'),
                '1' => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The pointer to the first `depth` tokens of `tokens`, for messages.
fn prefix(tokens: &[String], depth: usize) -> String {
    if depth == 0 {
        return "the document's top level".to_owned();
    }
    tokens[..depth]
        .iter()
        .map(|t| format!("/{}", escape_token(t)))
        .collect()
}

/// Why a JSON file was not edited. Names positions and the configured pointer only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the file is not UTF-8, so it is not JSON; not written")]
    NotUtf8,
    #[error("the file is not valid JSON: {what} at line {line}, column {column}; not written")]
    Invalid {
        what: &'static str,
        line: usize,
        column: usize,
    },
    #[error("at {at} there is {found}, not an object: the pointer cannot go on through it")]
    NotAnObject { at: String, found: &'static str },
    #[error(
        "at {at} there is {found}, not a string: refreshd replaces only a string; change it to \"\" or remove it"
    )]
    NotAString { at: String, found: &'static str },
    #[error(
        "{at} is past the end of an array, or not an index of it: refreshd creates object members only"
    )]
    NoElement { at: String },
    #[error(
        "{at} appears twice in its object (lines {first} and {second}): readers disagree on which one counts, so refreshd will not guess; remove one"
    )]
    DuplicateKey {
        at: String,
        first: usize,
        second: usize,
    },
    #[error("the edited document does not read back as expected; not written")]
    Unstable,
}

/// Nesting deeper than this is refused (serde_json's own limit).
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    fn described(self) -> &'static str {
        match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
        }
    }
}

/// A value's bytes, `start..end`.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    kind: Kind,
}

/// A member of an object: its key's bytes (quotes included) and its value.
#[derive(Debug, Clone, Copy)]
struct Member {
    key: (usize, usize),
    value: Span,
}

struct Scanner<'a> {
    src: &'a [u8],
    pos: usize,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Scanner<'_> {
    fn fail(&self, what: &'static str) -> JsonError {
        let before = &self.src[..self.pos.min(self.src.len())];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        JsonError::Invalid { what, line, column }
    }

    fn skip_ws(&mut self) {
        while self.src.get(self.pos).is_some_and(|b| is_ws(*b)) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        if self.src.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.fail(what))
        }
    }

    /// One value at `pos` (no leading blanks), validated; `pos` ends just past it.
    fn value(&mut self, depth: usize) -> Result<Span, JsonError> {
        let start = self.pos;
        let kind = match self.src.get(self.pos) {
            None => return Err(self.fail("a value is missing")),
            Some(b'{') => {
                self.object(depth + 1, |_| ())?;
                Kind::Object
            }
            Some(b'[') => {
                self.array(depth + 1, |_| ())?;
                Kind::Array
            }
            Some(b'"') => {
                self.string()?;
                Kind::String
            }
            Some(b't') => self.literal(b"true", Kind::Bool)?,
            Some(b'f') => self.literal(b"false", Kind::Bool)?,
            Some(b'n') => self.literal(b"null", Kind::Null)?,
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Kind::Number
            }
            Some(_) => return Err(self.fail("an unexpected character")),
        };
        Ok(Span {
            start,
            end: self.pos,
            kind,
        })
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<Kind, JsonError> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(kind)
        } else {
            Err(self.fail("an unexpected word"))
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while self.src.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - from
    }

    fn number(&mut self) -> Result<(), JsonError> {
        if self.src.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.src.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fail("a malformed number")),
        }
        if self.src.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.fail("a malformed number"));
            }
        }
        if matches!(self.src.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.src.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.fail("a malformed number"));
            }
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), JsonError> {
        self.expect(b'"', "a missing quote")?;
        loop {
            match self.src.get(self.pos) {
                None => return Err(self.fail("an unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.src.get(self.pos) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1;
                        }
                        Some(b'u')
                            if self
                                .src
                                .get(self.pos + 1..self.pos + 5)
                                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                        {
                            self.pos += 5;
                        }
                        _ => return Err(self.fail("a malformed escape in a string")),
                    }
                }
                Some(0..=0x1f) => return Err(self.fail("a control character inside a string")),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// An object at `pos`; `each` sees every member. Returns where its `}` is.
    fn object(&mut self, depth: usize, mut each: impl FnMut(Member)) -> Result<usize, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.fail("nesting deeper than 128 levels"));
        }
        self.expect(b'{', "a missing `{`")?;
        self.skip_ws();
        if self.src.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(self.pos - 1);
        }
        loop {
            self.skip_ws();
            let key_start = self.pos;
            if self.src.get(self.pos) != Some(&b'"') {
                return Err(self.fail("a member without a quoted name"));
            }
            self.string()?;
            let key = (key_start, self.pos);
            self.skip_ws();
            self.expect(b':', "a missing `:`")?;
            self.skip_ws();
            let value = self.value(depth)?;
            each(Member { key, value });
            self.skip_ws();
            match self.src.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(self.pos - 1);
                }
                _ => return Err(self.fail("a missing `,` or `}`")),
            }
        }
    }

    /// An array at `pos`; `each` sees every element.
    fn array(&mut self, depth: usize, mut each: impl FnMut(Span)) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.fail("nesting deeper than 128 levels"));
        }
        self.expect(b'[', "a missing `[`")?;
        self.skip_ws();
        if self.src.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            each(self.value(depth)?);
            self.skip_ws();
            match self.src.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.fail("a missing `,` or `]`")),
            }
        }
    }
}

/// The document's top-level value, validated whole; `None` for an empty (or all-blank) file.
fn document(src: &[u8]) -> Result<Option<Span>, JsonError> {
    if std::str::from_utf8(src).is_err() {
        return Err(JsonError::NotUtf8);
    }
    let mut scanner = Scanner { src, pos: 0 };
    scanner.skip_ws();
    if scanner.pos == src.len() {
        return Ok(None);
    }
    let top = scanner.value(0)?;
    scanner.skip_ws();
    if scanner.pos != src.len() {
        return Err(scanner.fail("more after the document's end"));
    }
    Ok(Some(top))
}

/// The members of the (valid) object at `at`, and where its `}` is.
fn members(src: &[u8], at: Span) -> (Vec<Member>, usize) {
    let mut found = Vec::new();
    let mut scanner = Scanner { src, pos: at.start };
    let close = scanner
        .object(0, |m| found.push(m))
        .expect("validated before");
    (found, close)
}

fn elements(src: &[u8], at: Span) -> Vec<Span> {
    let mut found = Vec::new();
    let mut scanner = Scanner { src, pos: at.start };
    scanner
        .array(0, |e| found.push(e))
        .expect("validated before");
    found
}

/// The text of a (valid) JSON string, quotes included; a lone surrogate becomes U+FFFD.
fn decode(raw: &[u8]) -> String {
    let text = std::str::from_utf8(&raw[1..raw.len() - 1]).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    let hex = |chars: &mut std::str::Chars<'_>| {
        let digits: String = chars.by_ref().take(4).collect();
        u32::from_str_radix(&digits, 16).unwrap_or(0xFFFD)
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = match chars.next() {
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('u') => {
                let high = hex(&mut chars);
                let code = if (0xD800..0xDC00).contains(&high) && chars.as_str().starts_with("\\u")
                {
                    let mut ahead = chars.clone();
                    ahead.nth(1);
                    let low = hex(&mut ahead);
                    if (0xDC00..0xE000).contains(&low) {
                        chars = ahead;
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        0xFFFD
                    }
                } else {
                    high
                };
                char::from_u32(code).unwrap_or('\u{FFFD}')
            }
            Some(other) => other,
            None => break,
        };
        out.push(escaped);
    }
    out
}

/// Where the pointer leads in a document.
enum Found {
    /// The string at the pointer.
    String(Span),
    /// The path stops existing after `depth` tokens, inside this object.
    Missing { object: Span, depth: usize },
}

fn line_of(src: &[u8], at: usize) -> usize {
    src[..at].iter().filter(|b| **b == b'\n').count() + 1
}

fn find(src: &[u8], top: Span, tokens: &[String]) -> Result<Found, JsonError> {
    let mut here = top;
    for (depth, token) in tokens.iter().enumerate() {
        match here.kind {
            Kind::Object => {
                let (all, _) = members(src, here);
                let mut matching = all
                    .iter()
                    .filter(|m| decode(&src[m.key.0..m.key.1]) == *token);
                match (matching.next(), matching.next()) {
                    (None, _) => {
                        return Ok(Found::Missing {
                            object: here,
                            depth,
                        });
                    }
                    (Some(first), Some(second)) => {
                        return Err(JsonError::DuplicateKey {
                            at: prefix(tokens, depth + 1),
                            first: line_of(src, first.key.0),
                            second: line_of(src, second.key.0),
                        });
                    }
                    (Some(only), None) => here = only.value,
                }
            }
            Kind::Array => {
                let index = token
                    .parse::<usize>()
                    .ok()
                    .filter(|_| token == "0" || !token.starts_with('0'));
                match index.and_then(|i| elements(src, here).get(i).copied()) {
                    Some(element) => here = element,
                    None => {
                        return Err(JsonError::NoElement {
                            at: prefix(tokens, depth + 1),
                        });
                    }
                }
            }
            kind => {
                return Err(JsonError::NotAnObject {
                    at: prefix(tokens, depth),
                    found: kind.described(),
                });
            }
        }
    }
    match here.kind {
        Kind::String => Ok(Found::String(here)),
        kind => Err(JsonError::NotAString {
            at: prefix(tokens, tokens.len()),
            found: kind.described(),
        }),
    }
}

/// The string at `pointer`, when the document is valid and holds one there.
pub fn get(content: &[u8], pointer: &Pointer) -> Option<String> {
    let top = document(content).ok()??;
    match find(content, top, pointer.tokens()).ok()? {
        Found::String(span) => Some(decode(&content[span.start..span.end])),
        Found::Missing { .. } => None,
    }
}

/// Sets each `(pointer, value)` of `edits`, in one result: the document's other bytes stay
/// as they were.
pub fn set(content: &[u8], edits: &[(&Pointer, &str)]) -> Result<Vec<u8>, JsonError> {
    let mut current = content.to_vec();
    for (pointer, value) in edits {
        current = set_one(&current, pointer, value)?;
        if get(&current, pointer).as_deref() != Some(*value) {
            return Err(JsonError::Unstable);
        }
    }
    Ok(current)
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

fn set_one(content: &[u8], pointer: &Pointer, value: &str) -> Result<Vec<u8>, JsonError> {
    let tokens = pointer.tokens();
    let Some(top) = document(content)? else {
        let mut out = nested(tokens, value, &Layout::pretty()).into_bytes();
        out.push(b'\n');
        return Ok(out);
    };
    let (at, text) = match find(content, top, tokens)? {
        Found::String(span) => {
            let mut out = content[..span.start].to_vec();
            out.extend_from_slice(quote(value).as_bytes());
            out.extend_from_slice(&content[span.end..]);
            return Ok(out);
        }
        Found::Missing { object, depth } => insertion(content, object, &tokens[depth..], value),
    };
    let mut out = Vec::with_capacity(content.len() + text.len());
    out.extend_from_slice(&content[..at]);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&content[at..]);
    Ok(out)
}

/// How new members are laid out: copied from the object they join.
struct Layout {
    /// Blanks before a member's key at the level being written (`"\n    "`, `" "`, `""`).
    indent: String,
    /// One more level of indentation, for a multi-line layout.
    unit: Option<String>,
    /// Between a key and its value (`": "`).
    separator: String,
}

impl Layout {
    fn pretty() -> Layout {
        Layout {
            indent: "\n".to_owned(),
            unit: Some("  ".to_owned()),
            separator: ": ".to_owned(),
        }
    }
}

/// `tokens` as nested objects ending in the string `value`, opening at `layout.indent`.
fn nested(tokens: &[String], value: &str, layout: &Layout) -> String {
    let Some((first, rest)) = tokens.split_first() else {
        return quote(value);
    };
    match &layout.unit {
        Some(unit) => {
            let inner = Layout {
                indent: format!("{}{unit}", layout.indent),
                unit: Some(unit.clone()),
                separator: layout.separator.clone(),
            };
            format!(
                "{{{}{}{}{}{}}}",
                inner.indent,
                quote(first),
                layout.separator,
                nested(rest, value, &inner),
                layout.indent
            )
        }
        None => format!(
            "{{{}{}{}}}",
            quote(first),
            layout.separator,
            nested(rest, value, layout)
        ),
    }
}

/// Where to insert the member for `tokens` into `object`, and its text.
fn insertion(src: &[u8], object: Span, tokens: &[String], value: &str) -> (usize, String) {
    let (all, close) = members(src, object);
    let text = |from: usize, to: usize| String::from_utf8_lossy(&src[from..to]).into_owned();
    let Some(last) = all.last() else {
        let layout = Layout {
            indent: String::new(),
            unit: None,
            separator: ": ".to_owned(),
        };
        let member = format!(
            "{}: {}",
            quote(&tokens[0]),
            nested(&tokens[1..], value, &layout)
        );
        return (object.start + 1, member);
    };
    let mut blank_start = last.key.0;
    while blank_start > 0 && is_ws(src[blank_start - 1]) {
        blank_start -= 1;
    }
    let separator = text(last.key.1, last.value.start);
    let mut indent = text(blank_start, last.key.0);
    if indent.is_empty() && src[blank_start - 1] == b'{' && separator.ends_with(' ') {
        // `{"a": 1}`: the only member shows no spacing between members; take `": "`'s.
        indent.push(' ');
    }
    let closing = text(last.value.end, close);
    let unit = indent.contains('\n').then(|| {
        indent
            .strip_prefix(closing.as_str())
            .filter(|u| closing.contains('\n') && !u.is_empty() && !u.contains('\n'))
            .map_or_else(
                || {
                    if indent.ends_with('\t') {
                        "\t".to_owned()
                    } else {
                        "  ".to_owned()
                    }
                },
                str::to_owned,
            )
    });
    let layout = Layout {
        indent,
        unit,
        separator,
    };
    let member = format!(
        ",{}{}{}{}",
        layout.indent,
        quote(&tokens[0]),
        layout.separator,
        nested(&tokens[1..], value, &layout)
    );
    (last.value.end, member)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(text: &str) -> Pointer {
        Pointer::parse(text).unwrap()
    }

    fn set_str(content: &str, at: &str, value: &str) -> String {
        String::from_utf8(set(content.as_bytes(), &[(&pointer(at), value)]).unwrap()).unwrap()
    }

    fn err(content: &str, at: &str) -> JsonError {
        set(content.as_bytes(), &[(&pointer(at), "v")]).unwrap_err()
    }

    #[test]
    fn pointers_parse_as_rfc_6901_says() {
        assert_eq!(pointer("/a~1b/c~0d/").tokens(), ["a/b", "c~d", ""]);
        assert_eq!(pointer("/db/password").to_string(), "/db/password");
        assert!(Pointer::parse("").is_err());
        assert!(Pointer::parse("db/password").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
        assert!(pointer("/db/password").starts_with(&pointer("/db")));
        assert!(!pointer("/dbx").starts_with(&pointer("/db")));
    }

    #[test]
    fn only_the_string_bytes_change() {
        let before = "{\r\n  \"db\" : {\"host\": \"h\",  \"password\":\"old\\u0041\" , \"n\": 1.50e+3},\r\n  \"other\": [1, 2]\r\n}\r\n";
        let after = set_str(before, "/db/password", "n\"e\\w\u{e9}\n");
        assert_eq!(after, before.replace("\"old\\u0041\"", r#""n\"e\\wé\n""#));
        assert_eq!(
            get(after.as_bytes(), &pointer("/db/password")).unwrap(),
            "n\"e\\w\u{e9}\n"
        );
        assert_eq!(set_str(&after, "/db/password", "n\"e\\w\u{e9}\n"), after);
    }

    #[test]
    fn escaped_keys_and_array_indexes_are_followed() {
        let before = r#"{"a/b": [{"t": "x"}, {"t~": "y"}], "\u0063": {"d": "z"}}"#;
        assert_eq!(
            set_str(before, "/a~1b/1/t~0", "new"),
            before.replace("\"y\"", "\"new\"")
        );
        assert_eq!(
            set_str(before, "/c/d", "q"),
            before.replace("\"z\"", "\"q\"")
        );
    }

    #[test]
    fn a_missing_member_joins_its_object_laid_out_like_its_last_member() {
        let before = "{\n    \"db\": {\n        \"host\": \"h\"\n    },\n    \"x\": 1\n}\n";
        assert_eq!(
            set_str(before, "/db/password", "p"),
            "{\n    \"db\": {\n        \"host\": \"h\",\n        \"password\": \"p\"\n    },\n    \"x\": 1\n}\n"
        );
        assert_eq!(
            set_str(before, "/auth/db/password", "p"),
            "{\n    \"db\": {\n        \"host\": \"h\"\n    },\n    \"x\": 1,\n    \"auth\": {\n        \"db\": {\n            \"password\": \"p\"\n        }\n    }\n}\n"
        );
        assert_eq!(
            set_str(r#"{"a":1,"b":{}}"#, "/b/c/d", "p"),
            r#"{"a":1,"b":{"c": {"d": "p"}}}"#
        );
        assert_eq!(
            set_str(r#"{"a": 1, "b": 2}"#, "/c/d", "p"),
            r#"{"a": 1, "b": 2, "c": {"d": "p"}}"#
        );
        assert_eq!(
            set_str("{\n\t\"a\": 1\n}", "/b/c", "p"),
            "{\n\t\"a\": 1,\n\t\"b\": {\n\t\t\"c\": \"p\"\n\t}\n}"
        );
    }

    #[test]
    fn an_empty_file_becomes_a_document() {
        assert_eq!(
            set_str("", "/db/password", "p"),
            "{\n  \"db\": {\n    \"password\": \"p\"\n  }\n}\n"
        );
        assert_eq!(set_str(" \n", "/t", "p"), "{\n  \"t\": \"p\"\n}\n");
    }

    #[test]
    fn what_the_pointer_cannot_go_through_is_refused() {
        assert!(matches!(
            err(r#"{"db": "x"}"#, "/db/password"),
            JsonError::NotAnObject {
                found: "a string",
                ..
            }
        ));
        assert!(matches!(
            err(r#"{"db": {"password": null}}"#, "/db/password"),
            JsonError::NotAString { found: "null", .. }
        ));
        assert!(matches!(
            err(r#"{"db": {"password": {"a": 1}}}"#, "/db/password"),
            JsonError::NotAString {
                found: "an object",
                ..
            }
        ));
        assert!(matches!(err("[1]", "/a"), JsonError::NoElement { .. }));
        assert!(matches!(
            err(r#"{"a": [{}]}"#, "/a/1/b"),
            JsonError::NoElement { .. }
        ));
        assert!(matches!(
            err(r#"{"a": [{}]}"#, "/a/01/b"),
            JsonError::NoElement { .. }
        ));
        assert!(matches!(err("\"s\"", "/a"), JsonError::NotAnObject { .. }));
        assert_eq!(
            set_str(r#"{"a": [{}]}"#, "/a/0/b", "p"),
            r#"{"a": [{"b": "p"}]}"#
        );
    }

    #[test]
    fn duplicate_keys_on_the_path_are_refused_elsewhere_kept() {
        assert!(matches!(
            err("{\"db\": {},\n\"db\": {}}", "/db/p"),
            JsonError::DuplicateKey {
                first: 1,
                second: 2,
                ..
            }
        ));
        let before = r#"{"x": 1, "x": 2, "t": "o"}"#;
        assert_eq!(set_str(before, "/t", "n"), before.replace("\"o\"", "\"n\""));
    }

    #[test]
    fn invalid_documents_are_refused_with_a_position_only() {
        for (bad, line, column) in [
            ("{\"a\": 1,}", 1, 9),
            ("{\n  \"secret-value\": nope}", 2, 19),
            ("{\"a\": NaN}", 1, 7),
            ("{\"a\": 01}", 1, 8),
            ("{} {}", 1, 4),
            ("\u{feff}{}", 1, 1),
            ("{\"a\": \"\t\"}", 1, 8),
            ("// c\n{}", 1, 1),
        ] {
            match err(bad, "/a") {
                JsonError::Invalid {
                    line: l, column: c, ..
                } => assert_eq!((l, c), (line, column), "{bad:?}"),
                other => panic!("{bad:?}: {other}"),
            }
        }
        let e = err("{\n  \"secret-value\": nope}", "/a").to_string();
        assert!(!e.contains("secret") && !e.contains("nope"), "{e}");
        assert_eq!(
            err("{\"a\": \"\u{0}\"}\u{80}", "/a"),
            JsonError::Invalid {
                what: "a control character inside a string",
                line: 1,
                column: 8
            }
        );
        assert_eq!(
            set(b"{\"a\": \"\xff\"}", &[(&pointer("/a"), "v")]).unwrap_err(),
            JsonError::NotUtf8
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            err(&deep, "/a"),
            JsonError::Invalid {
                what: "nesting deeper than 128 levels",
                ..
            }
        ));
    }

    #[test]
    fn surrogate_pairs_decode_and_lone_ones_do_not_stop_the_edit() {
        let before = r#"{"\ud83d\ude00": "x", "lone": "\ud800", "t": "o"}"#;
        assert_eq!(get(before.as_bytes(), &pointer("/\u{1f600}")).unwrap(), "x");
        assert_eq!(set_str(before, "/t", "n"), before.replace("\"o\"", "\"n\""));
    }
}
