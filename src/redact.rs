//! Cuts secrets out of text that came from elsewhere (a provider's error, an API's
//! message) before it reaches a log, a state file, status or a hook's environment. A
//! provider may echo a secret in another shape than it was sent, so every secret is looked
//! for raw, URL-encoded, base64 and base64url (padded or not), JSON-escaped, in any ASCII
//! case, and by any run that starts with its first 12 characters.
//!
//! Never logs; it only returns the text with each match replaced by `[redacted]`.

use base64::Engine as _;

const MASK: &str = "[redacted]";

/// A prefix this long is as good as the secret: nothing else starts with it by chance.
const PREFIX: usize = 12;

/// `text` with every shape of every secret in `secrets` replaced by `[redacted]`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let folded = text.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        for shape in shapes(secret) {
            let shape = shape.to_ascii_lowercase();
            if shape.len() < 4 {
                continue;
            }
            cuts.extend(
                folded
                    .match_indices(&shape)
                    .map(|(at, m)| (at, at + m.len())),
            );
        }
        if let Some((end, _)) = secret.char_indices().nth(PREFIX) {
            let prefix = secret[..end].to_ascii_lowercase();
            for (at, _) in folded.match_indices(&prefix) {
                let run = text[at..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "._~+/=-%".contains(c)))
                    .unwrap_or(text.len() - at);
                cuts.push((at, at + run.max(prefix.len())));
            }
        }
    }
    if cuts.is_empty() {
        return text.to_owned();
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for (start, end) in cuts {
        if end <= done {
            continue;
        }
        let start = start.max(done);
        out.push_str(&text[done..start]);
        if !out.ends_with(MASK) {
            out.push_str(MASK);
        }
        done = end;
    }
    out.push_str(&text[done..]);
    out
}

/// The shapes a provider might echo `secret` in.
fn shapes(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = secret.as_bytes();
    let mut shapes = vec![
        secret.to_owned(),
        url::form_urlencoded::byte_serialize(bytes).collect(),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ];
    if let Ok(json) = serde_json::to_string(secret) {
        shapes.push(json.trim_matches('"').to_owned());
    }
    shapes.sort();
    shapes.dedup();
    shapes
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "rt-9f/a+b=c\"d e&Secret-Token";

    #[test]
    fn every_shape_of_a_secret_is_cut() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let shapes = [
            SECRET.to_owned(),
            url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect::<String>(),
            percent_encoding::utf8_percent_encode(SECRET, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .to_ascii_lowercase(),
            STANDARD.encode(SECRET),
            URL_SAFE_NO_PAD.encode(SECRET),
            serde_json::to_string(SECRET).unwrap(),
            SECRET.to_ascii_uppercase(),
            format!("{}XYZ", &SECRET[..12]),
        ];
        for shape in shapes {
            let text = format!("invalid_grant: token {shape} is revoked");
            let out = redact(&text, &[SECRET]);
            assert!(out.starts_with("invalid_grant: token "), "{out}");
            assert!(
                out.ends_with(" is revoked") || out.ends_with("is revoked"),
                "{out}"
            );
            assert!(out.contains(MASK), "{shape} survived: {out}");
            assert!(!out.contains(&SECRET[..12]), "{out}");
        }
    }

    #[test]
    fn other_text_is_left_alone() {
        assert_eq!(
            redact("the refresh token was revoked", &[SECRET]),
            "the refresh token was revoked"
        );
        assert_eq!(redact("abc", &[]), "abc");
        // Too short to look for without cutting ordinary words.
        assert_eq!(redact("a b", &["a"]), "a b");
    }
}
