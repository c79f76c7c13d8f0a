//! Tokens: what a source hands back ([`Fetched`]), what refreshd keeps ([`Token`]), the
//! unverified JWT claims it reads, and the expiry precedence of design §4.
//!
//! Claims are decoded WITHOUT verifying a signature: refreshd only reads `exp`/`iat`/`sub`
//! for scheduling and status, it never trusts a token for authorization. A token's value is
//! never formatted here except through [`fingerprint`].

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Named values a source yields beside the token, minted with it in the same answer (a
/// database user beside its password, an OAuth answer's `id_token`): every target of a
/// credential gets one rotation's token and fields together. Each value is a secret.
pub type Fields = std::collections::BTreeMap<String, SecretString>;

/// What a source returns from one successful fetch.
pub struct Fetched {
    pub access_token: SecretString,
    /// A refresh token the provider issued with this response (rotated, or first).
    pub refresh_token: Option<SecretString>,
    /// `expires_in` from a token response.
    pub expires_in: Option<Duration>,
    /// An absolute expiry the source reported (`expiry`, `expiration_time`).
    pub expires_at: Option<OffsetDateTime>,
    /// The granted scopes, when the response says.
    pub scopes: Option<Vec<String>>,
    /// For a chain: which member served the token, and why the ones before it did not.
    pub served: Option<Served>,
    /// The named values the answer held beside the token.
    pub fields: Fields,
}

impl Fetched {
    /// A bare token; the source fills in what else it learned.
    pub fn new(access_token: SecretString) -> Fetched {
        Fetched {
            access_token,
            refresh_token: None,
            expires_in: None,
            expires_at: None,
            scopes: None,
            served: None,
            fields: Fields::new(),
        }
    }
}

/// Which member of a chain served a token (`sources[1] google-service-account`) and the
/// failures of the members tried before it, for status and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    pub by: String,
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// Where a token's expiry came from, for status and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpirySource {
    Reported,
    JwtExp,
    ExpiresIn,
    DefaultLifetime,
}

/// A token as refreshd keeps it, with what it could learn about it.
#[derive(Clone)]
pub struct Token {
    pub access_token: SecretString,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub expiry_source: ExpirySource,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// For a chain: the member that served this token.
    pub served: Option<Served>,
    /// The named values minted with this token.
    pub fields: Fields,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("fingerprint", &fingerprint(&self.access_token))
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The unverified claims refreshd reads from a JWT.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    pub exp: Option<OffsetDateTime>,
    pub iat: Option<OffsetDateTime>,
    /// An `exp` or `iat` that is there but is not a time refreshd can schedule by.
    pub absurd: Option<&'static str>,
    pub sub: Option<String>,
    pub iss: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
}

/// A decoded JWT: its header and claims as JSON.
pub struct Decoded {
    pub header: Value,
    pub claims: Value,
}

/// Decodes a JWT's header and claims without checking its signature. `None` when the
/// value is not a JWS compact serialization with JSON header and claims (e.g. `ya29.` tokens).
pub fn decode_unverified(token: &str) -> Option<Decoded> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let header = jsonwebtoken::decode_header(token.trim()).ok()?;
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(token.trim()).ok()?;
    if !claims.is_object() {
        return None;
    }
    Some(Decoded {
        header: serde_json::to_value(header).ok()?,
        claims,
    })
}

impl Claims {
    pub fn from_json(claims: &Value) -> Claims {
        let mut absurd = None;
        let mut time = |key: &'static str| {
            let value = claims.get(key)?;
            let at = value.as_f64().and_then(unix_time);
            if at.is_none() {
                absurd.get_or_insert(key);
            }
            at
        };
        let (exp, iat) = (time("exp"), time("iat"));
        let text = |key: &str| claims.get(key).and_then(Value::as_str).map(str::to_owned);
        // `scope` (RFC 8693, space separated) or `scp` (Entra ID, Okta: string or array).
        let scopes = match claims.get("scope").or_else(|| claims.get("scp")) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Claims {
            exp,
            iat,
            absurd,
            sub: text("sub"),
            iss: text("iss"),
            client_id: text("client_id")
                .or_else(|| text("azp"))
                .or_else(|| text("appid"))
                .or_else(|| text("cid")),
            scopes,
        }
    }

    /// The claims of `token` if it is a JWT, else empty claims.
    pub fn of(token: &str) -> Claims {
        decode_unverified(token)
            .map(|d| Claims::from_json(&d.claims))
            .unwrap_or_default()
    }
}

/// The latest time refreshd schedules by (9000-01-01): ten years of `refresh_at` or jitter
/// added to it still fit the calendar, so no date arithmetic can overflow.
const LATEST_UNIX: i64 = 221_845_392_000;

/// A Unix time from a provider or a claim, if it lies between 1970 and the year 9000.
pub fn unix_time(seconds: f64) -> Option<OffsetDateTime> {
    let whole = seconds.floor();
    if !(0.0..LATEST_UNIX as f64).contains(&whole) {
        return None;
    }
    OffsetDateTime::from_unix_timestamp(whole as i64).ok()
}

/// Whether `at` lies between 1970 and the year 9000.
pub fn is_sane(at: OffsetDateTime) -> bool {
    (0..LATEST_UNIX).contains(&at.unix_timestamp())
}

/// A token whose times cannot be scheduled by, with the refresh token that came with it
/// (the old one may be spent: the new one must not be lost with the access token).
#[derive(Debug)]
pub struct Absurd {
    pub reason: String,
    pub refresh_token: Option<SecretString>,
}

impl Token {
    /// Builds a token from a fetch received at `received_at`, with the expiry precedence of
    /// design §4: an absolute expiry the source reported, the JWT `exp`, `expires_in`,
    /// then `default_lifetime`. `issued_at` is the JWT `iat`, else the arrival time. Times
    /// before 1970 or after 9000, and an `iat` after the expiry, are refused.
    pub fn from_fetched(
        fetched: Fetched,
        received_at: OffsetDateTime,
        default_lifetime: Duration,
    ) -> Result<(Token, Option<SecretString>), Absurd> {
        let claims = Claims::of(fetched.access_token.expose_secret());
        let refuse = |reason: String, fetched: Fetched| Absurd {
            reason,
            refresh_token: fetched.refresh_token,
        };
        if let Some(key) = claims.absurd {
            return Err(refuse(
                format!("the token's `{key}` is not a time between 1970 and the year 9000"),
                fetched,
            ));
        }
        if fetched.expires_at.is_some_and(|at| !is_sane(at)) || !is_sane(received_at) {
            return Err(refuse(
                "the reported expiry is not a time between 1970 and the year 9000".to_owned(),
                fetched,
            ));
        }
        let (expires_at, expiry_source) = if let Some(at) = fetched.expires_at {
            (at, ExpirySource::Reported)
        } else if let Some(exp) = claims.exp {
            (exp, ExpirySource::JwtExp)
        } else if let Some(expires_in) = fetched.expires_in {
            (received_at + expires_in, ExpirySource::ExpiresIn)
        } else {
            (
                received_at + default_lifetime,
                ExpirySource::DefaultLifetime,
            )
        };
        let scopes = fetched
            .scopes
            .filter(|s| !s.is_empty())
            .unwrap_or(claims.scopes);
        let token = Token {
            access_token: fetched.access_token,
            // Kept in UTC: state, logs and status all speak UTC.
            issued_at: claims
                .iat
                .unwrap_or(received_at)
                .to_offset(time::UtcOffset::UTC),
            expires_at: expires_at.to_offset(time::UtcOffset::UTC),
            expiry_source,
            subject: claims.sub,
            issuer: claims.iss,
            client_id: claims.client_id,
            scopes,
            served: fetched.served,
            fields: fetched.fields,
        };
        if token.issued_at > token.expires_at {
            return Err(Absurd {
                reason: format!(
                    "the token's `iat` ({}) is after its expiry ({})",
                    rfc3339(token.issued_at),
                    rfc3339(token.expires_at)
                ),
                refresh_token: fetched.refresh_token,
            });
        }
        Ok((token, fetched.refresh_token))
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.access_token)
    }

    /// A stand-in for a token not yet issued (what `check` renders a template with): the
    /// value given, valid until `expires_at`, nothing else known.
    pub fn sample(value: &SecretString, expires_at: OffsetDateTime) -> Token {
        Token {
            access_token: value.clone(),
            issued_at: expires_at,
            expires_at,
            expiry_source: ExpirySource::DefaultLifetime,
            subject: None,
            issuer: None,
            client_id: None,
            scopes: Vec::new(),
            served: None,
            fields: Fields::new(),
        }
    }

    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now
    }
}

/// Seconds from a response as a lifetime; `None` for zero, negative, non-finite or absurd
/// values (more than ten years), so odd provider output can never overflow a date.
pub fn seconds(value: f64) -> Option<Duration> {
    const TEN_YEARS: f64 = 10.0 * 365.0 * 86_400.0;
    (value.is_finite() && value > 0.0 && value <= TEN_YEARS).then(|| Duration::from_secs_f64(value))
}

/// The first 8 hex digits of the value's SHA-256: tells tokens apart without showing one.
pub fn fingerprint(secret: &SecretString) -> String {
    let digest = Sha256::digest(secret.expose_secret().as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Formats a time as RFC 3339 in UTC, to the second (`2026-11-21T20:15:03Z`).
pub fn rfc3339(at: OffsetDateTime) -> String {
    let at = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// Parses an RFC 3339 time with any offset (`2026-11-21T21:15:03.5+01:00`).
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()
}

/// "41m 3s", "-2m" for the past: how far `at` is from `now`, to the second.
pub fn remaining(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (at - now).whole_seconds();
    let text = humantime::format_duration(Duration::from_secs(secs.unsigned_abs())).to_string();
    if secs < 0 { format!("-{text}") } else { text }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine as _;

    /// An unsigned-looking JWT with the given claims (signature bytes are junk: never verified).
    pub(crate) fn jwt(claims: Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#);
        let body = b64.encode(serde_json::to_vec(&claims).unwrap());
        format!("{header}.{body}.c2lnbmF0dXJl")
    }

    /// A JWT-backed token issued at `issued_at` and expiring at `expires_at`.
    pub(crate) fn token_at(issued_at: OffsetDateTime, expires_at: OffsetDateTime) -> Token {
        let jwt = jwt(serde_json::json!({
            "iat": issued_at.unix_timestamp(),
            "exp": expires_at.unix_timestamp(),
        }));
        Token::from_fetched(
            Fetched::new(SecretString::from(jwt)),
            issued_at,
            Duration::from_secs(3600),
        )
        .unwrap()
        .0
    }

    fn fetched(
        token: &str,
        expires_in: Option<u64>,
        expires_at: Option<OffsetDateTime>,
    ) -> Fetched {
        Fetched {
            expires_in: expires_in.map(Duration::from_secs),
            expires_at,
            ..Fetched::new(SecretString::from(token))
        }
    }

    #[test]
    fn expiry_precedence_reported_then_exp_then_expires_in_then_default() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let exp = now + Duration::from_secs(3600);
        let reported = now + Duration::from_secs(1800);
        let token = jwt(
            serde_json::json!({"exp": exp.unix_timestamp(), "iat": now.unix_timestamp() - 5, "sub": "alice"}),
        );
        let lifetime = Duration::from_secs(7200);

        let (t, _) =
            Token::from_fetched(fetched(&token, Some(60), Some(reported)), now, lifetime).unwrap();
        assert_eq!(
            (t.expires_at, t.expiry_source),
            (reported, ExpirySource::Reported)
        );
        let (t, _) = Token::from_fetched(fetched(&token, Some(60), None), now, lifetime).unwrap();
        assert_eq!((t.expires_at, t.expiry_source), (exp, ExpirySource::JwtExp));
        assert_eq!(t.issued_at.unix_timestamp(), now.unix_timestamp() - 5);
        assert_eq!(t.subject.as_deref(), Some("alice"));
        let (t, _) =
            Token::from_fetched(fetched("ya29.opaque", Some(60), None), now, lifetime).unwrap();
        assert_eq!(
            (t.expires_at, t.expiry_source),
            (now + Duration::from_secs(60), ExpirySource::ExpiresIn)
        );
        assert_eq!(t.issued_at, now);
        let (t, _) = Token::from_fetched(fetched("opaque", None, None), now, lifetime).unwrap();
        assert_eq!(
            (t.expires_at, t.expiry_source),
            (now + lifetime, ExpirySource::DefaultLifetime)
        );
    }

    #[test]
    fn float_exp_and_scp_arrays_are_read() {
        let claims = Claims::from_json(
            &serde_json::json!({"exp": 1800000000.75, "scp": ["a", "b"], "azp": "app"}),
        );
        assert_eq!(claims.exp.unwrap().unix_timestamp(), 1_800_000_000);
        assert_eq!(claims.scopes, vec!["a", "b"]);
        assert_eq!(claims.client_id.as_deref(), Some("app"));
    }

    #[test]
    fn non_jwts_are_not_decoded() {
        assert!(decode_unverified("ya29.a0AfH6SMB").is_none());
        assert!(decode_unverified("a.b.c").is_none());
        assert!(decode_unverified("").is_none());
        assert!(decode_unverified(&jwt(serde_json::json!({"sub": "x"}))).is_some());
    }

    #[test]
    fn fingerprint_is_eight_hex_digits_of_sha256() {
        // sha256("abc") = ba7816bf…
        assert_eq!(fingerprint(&SecretString::from("abc")), "ba7816bf");
    }

    #[test]
    fn rfc3339_round_trips_with_offsets() {
        let at = parse_rfc3339("2026-11-21T21:15:03.25+01:00").unwrap();
        assert_eq!(rfc3339(at), "2026-11-21T20:15:03Z");
    }

    #[test]
    fn absurd_times_are_refused_with_the_refresh_token() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let lifetime = Duration::from_secs(3600);
        for (claims, why) in [
            (serde_json::json!({"exp": -62_200_000_000i64}), "`exp`"),
            (serde_json::json!({"exp": 253_402_300_799i64}), "`exp`"),
            (
                serde_json::json!({"exp": 1_800_003_600, "iat": "yesterday"}),
                "`iat`",
            ),
            (
                serde_json::json!({"exp": 1_800_003_600, "iat": 1_800_007_200}),
                "after its expiry",
            ),
        ] {
            let mut fetched = Fetched::new(SecretString::from(jwt(claims.clone())));
            fetched.refresh_token = Some(SecretString::from("rt-2".to_owned()));
            let absurd = Token::from_fetched(fetched, now, lifetime)
                .err()
                .unwrap_or_else(|| panic!("accepted {claims}"));
            assert!(absurd.reason.contains(why), "{}", absurd.reason);
            assert_eq!(absurd.refresh_token.unwrap().expose_secret(), "rt-2");
        }
        let mut fetched = Fetched::new(SecretString::from("opaque".to_owned()));
        fetched.expires_at = OffsetDateTime::from_unix_timestamp(-1).ok();
        assert!(Token::from_fetched(fetched, now, lifetime).is_err());
    }
}
