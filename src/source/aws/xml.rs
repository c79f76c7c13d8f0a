//! The little XML that STS answers with: the inside of the first `<Name>…</Name>` (or
//! `<Name attr="…">…</Name>`), and its text with the five predefined entities and character
//! references decoded. STS's query-protocol answers have no CDATA, comments or repeated
//! element names inside the parts read here, so this is not a general XML parser and must
//! never be used as one.

/// The inside of the first element called `name`.
pub(super) fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let close = format!("</{name}>");
    let mut rest = xml;
    let mut offset = 0;
    loop {
        let at = rest.find(&format!("<{name}"))?;
        let after = &rest[at + name.len() + 1..];
        // `<NameOther>` is another element.
        match after.chars().next()? {
            '>' | '/' | ' ' | '\t' | '\n' | '\r' => {
                let open_end = after.find('>')?;
                if after[..open_end].ends_with('/') {
                    return Some("");
                }
                let inside = &after[open_end + 1..];
                let end = inside.find(&close)?;
                return Some(&inside[..end]);
            }
            _ => {
                offset += at + name.len() + 1;
                rest = &xml[offset..];
            }
        }
    }
}

/// The decoded text of the first element called `name`; `None` if there is none or its
/// text holds markup or an unknown entity.
pub(super) fn text(xml: &str, name: &str) -> Option<String> {
    let raw = element(xml, name)?;
    if raw.contains('<') {
        return None;
    }
    unescape(raw.trim())
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let semi = rest[amp..].find(';')? + amp;
        let entity = &rest[amp + 1..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()?
                } else {
                    entity.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(code)?
            }
        };
        out.push(c);
        rest = &rest[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn elements_are_found_by_exact_name_with_or_without_attributes() {
        let xml = r#"<R xmlns="x"><CodeX>no</CodeX><Code a="1">yes</Code><Empty/></R>"#;
        assert_eq!(element(xml, "Code"), Some("yes"));
        assert_eq!(element(xml, "CodeX"), Some("no"));
        assert_eq!(element(xml, "Empty"), Some(""));
        assert_eq!(element(xml, "Missing"), None);
        assert_eq!(element("<Code>unclosed", "Code"), None);
    }

    #[test]
    fn text_decodes_entities_and_refuses_markup() {
        assert_eq!(
            text("<M>a &amp; b &lt;c&gt; &#65;&#x42; &quot;&apos;</M>", "M").as_deref(),
            Some("a & b <c> AB \"'")
        );
        assert_eq!(text("<M>&bogus;</M>", "M"), None);
        assert_eq!(text("<M><N>x</N></M>", "M"), None);
    }

    proptest! {
        #[test]
        fn escaped_text_comes_back_as_it_was(value in "\\PC*") {
            let escaped = value
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            let doc = format!("<R><V>{escaped}</V></R>");
            prop_assert_eq!(text(&doc, "V"), Some(value.trim().to_owned()));
        }
    }
}
