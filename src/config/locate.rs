//! From the TOML parser's spans to what an error shows: the line of an offset, and the
//! dotted key (`credentials.db.targets[0].colour`) that sits there.

use std::path::Path;

use super::ConfigError;

/// The text being validated, for turning parser spans into lines.
pub(super) struct Doc<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    /// Where each line after the first starts: a line is found by binary search, not by
    /// counting from the top (ten thousand credentials each look up their line).
    line_starts: Vec<usize>,
}

impl<'a> Doc<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Doc<'a> {
        let line_starts = text
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        Doc {
            path,
            text,
            line_starts,
        }
    }

    pub(super) fn line(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.line_starts.partition_point(|start| *start <= offset) + 1
    }

    pub(super) fn error(
        &self,
        offset: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(offset),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where a table of the config sits (a source, a target: one inline table, often one
/// line): every error it raises names the line of `start` and a key under `key`, whichever
/// of its fields is wrong.
pub(super) struct At<'d, 'a> {
    pub doc: &'d Doc<'a>,
    pub start: usize,
    pub key: &'d str,
}

impl At<'_, '_> {
    /// An error about `field`, or about the table as a whole when `field` is empty.
    pub(super) fn err(&self, field: &str, message: String) -> ConfigError {
        let key = if field.is_empty() {
            self.key.to_owned()
        } else {
            format!("{}.{field}", self.key)
        };
        self.doc.error(self.start, key, message)
    }
}

/// The dotted key (`credentials.db.targets[0].colour`) whose key or value holds `offset`:
/// the innermost one, so a parser error names the field rather than its table.
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    type Best = Option<(usize, String)>;

    fn consider(best: &mut Best, size: usize, key: &str) {
        if best.as_ref().is_none_or(|(s, _)| size <= *s) {
            *best = Some((size, key.to_owned()));
        }
    }
    fn value(v: &toml::Spanned<DeValue<'_>>, key: &str, offset: usize, best: &mut Best) {
        let span = v.span();
        if span.contains(&offset) {
            consider(best, span.len(), key);
        }
        match v.get_ref() {
            DeValue::Table(t) => table(t, key, offset, best),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    value(item, &format!("{key}[{i}]"), offset, best);
                }
            }
            _ => {}
        }
    }
    fn table(t: &DeTable<'_>, prefix: &str, offset: usize, best: &mut Best) {
        for (k, v) in t.iter() {
            let key = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            if k.span().contains(&offset) {
                // The key itself (an unknown field): nothing is more precise.
                consider(best, 0, &key);
            }
            value(v, &key, offset, best);
        }
    }

    let (document, _) = DeTable::parse_recoverable(text);
    let mut best = None;
    table(document.get_ref(), "", offset, &mut best);
    best.map(|(_, key)| key)
}
