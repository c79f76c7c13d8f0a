//! Text from outside (a database's error, a node's name, a provider's `error_description`, a
//! program's stderr) made safe to print on an operator's terminal: every control character
//! (C0 including newline and tab, DEL, C1) and every bidirectional override is written as a
//! Rust escape (`\u{1b}`), so no escape sequence reaches the terminal and no value can fake a
//! line of its own.
//!
//! JSON output ([`JsonWriter`]) stays JSON: serde escapes C0 already, DEL and C1 are escaped
//! there as `\u007f`, `\u009b`, which a JSON reader reads back as the same characters.
//!
//! It never drops or reorders a character: the escaped text still says what was there.

use std::fmt;
use std::io;

/// `text` as it may be printed: [`Display`](fmt::Display) writes it escaped.
#[derive(Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| unsafe_char(c)) {
            f.write_str(&rest[..at])?;
            write!(f, "\\u{{{:x}}}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `text` escaped, as an owned string.
pub fn shown(text: &str) -> String {
    Shown(text).to_string()
}

/// A character a terminal may act on rather than show: C0, DEL and C1 (`char::is_control`),
/// and the bidirectional marks and overrides that reorder what is shown around them.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes serialized JSON to `W` with DEL and C1 escaped (serde_json leaves them raw). In
/// valid JSON they occur only inside strings, where `\u00XX` means the same character; in
/// UTF-8, C1 is `0xC2 0x80..=0x9F`, and `0xC2` is never anything but a lead byte.
pub struct JsonWriter<W: io::Write> {
    inner: W,
    /// A `0xC2` whose next byte has not arrived yet.
    lead: bool,
}

impl<W: io::Write> JsonWriter<W> {
    pub fn new(inner: W) -> JsonWriter<W> {
        JsonWriter { inner, lead: false }
    }
}

impl<W: io::Write> io::Write for JsonWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut plain = 0;
        for (i, &b) in buf.iter().enumerate() {
            let escaped = if std::mem::take(&mut self.lead) {
                if (0x80..=0x9f).contains(&b) {
                    Some(b)
                } else {
                    self.inner.write_all(&[0xc2])?;
                    None
                }
            } else if b == 0x7f {
                Some(b)
            } else if b == 0xc2 {
                self.lead = true;
                None
            } else {
                None
            };
            if let Some(b) = escaped {
                write!(self.inner, "\\u{b:04x}")?;
            } else if !self.lead {
                self.inner.write_all(&[b])?;
            }
            plain = i + 1;
        }
        Ok(plain)
    }

    fn flush(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.lead) {
            self.inner.write_all(&[0xc2])?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(shown("plain tëxt"), "plain tëxt");
        assert_eq!(
            shown("a\u{1b}[2Jb\u{7}c\nd\te\u{7f}f\u{9b}g\u{202e}h"),
            "a\\u{1b}[2Jb\\u{7}c\\u{a}d\\u{9}e\\u{7f}f\\u{9b}g\\u{202e}h"
        );
        assert_eq!(shown("\u{0}"), "\\u{0}");
    }

    #[test]
    fn json_keeps_its_meaning_without_del_or_c1() {
        let value = serde_json::json!({"e": "a\u{1b}b\u{7f}c\u{9b}dé\u{85}"});
        let mut out = JsonWriter::new(Vec::new());
        // Byte by byte: a C1 character split between two writes is still escaped.
        for byte in serde_json::to_vec(&value).unwrap() {
            io::Write::write_all(&mut out, &[byte]).unwrap();
        }
        io::Write::flush(&mut out).unwrap();
        let text = String::from_utf8(out.inner).unwrap();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }
}
