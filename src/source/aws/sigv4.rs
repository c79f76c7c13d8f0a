//! AWS Signature Version 4 query-string presigning (a presigned URL), by hand: what an RDS
//! IAM authentication token is. Pure functions of the request, the keys and the time, so
//! tests pin them against AWS's published example and botocore's output.
//!
//! Must never: make a request, log, or put the secret access key anywhere but into the
//! HMAC key (the session token does travel: it is part of the presigned URL, by design).

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The key pair (and session token of temporary keys) that signs.
pub(crate) struct Keys<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

/// A GET request to presign.
pub(crate) struct Request<'a> {
    /// The `host` header's value: the host, with `:port` unless it is the scheme's default.
    pub host: &'a str,
    /// Absolute path, already in its canonical (encoded) form.
    pub path: &'a str,
    /// The operation's own query parameters, in the order the URL carries them.
    pub params: &'a [(&'a str, &'a str)],
    pub region: &'a str,
    pub service: &'a str,
    pub time: OffsetDateTime,
    pub expires_secs: u32,
    /// The payload's hash: [`UNSIGNED_PAYLOAD`] for S3, [`EMPTY_PAYLOAD`] (a GET without
    /// a body, signed) for the others.
    pub payload: &'a str,
}

/// What a presigned S3 URL says in place of a payload hash.
#[cfg(test)]
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// SHA-256 of nothing: botocore signs the empty body of every other presigned GET.
pub(crate) const EMPTY_PAYLOAD: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The presigned URL's query: the operation's parameters, then the signing parameters in
/// botocore's order, then `X-Amz-Signature`.
pub(crate) fn presigned_query(request: &Request<'_>, keys: &Keys<'_>) -> String {
    let time = request.time.to_offset(time::UtcOffset::UTC);
    let date = format!(
        "{:04}{:02}{:02}",
        time.year(),
        u8::from(time.month()),
        time.day()
    );
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        time.hour(),
        time.minute(),
        time.second()
    );
    let scope = format!("{date}/{}/{}/aws4_request", request.region, request.service);
    let credential = format!("{}/{scope}", keys.access_key_id);
    let expires = request.expires_secs.to_string();
    let mut params: Vec<(&str, &str)> = request.params.to_vec();
    params.extend([
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", stamp.as_str()),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", "host"),
    ]);
    if let Some(token) = keys.session_token {
        params.push(("X-Amz-Security-Token", token));
    }
    let encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    let mut sorted = encoded.clone();
    sorted.sort();
    let canonical_query = join(&sorted);
    let canonical_request = format!(
        "GET\n{}\n{canonical_query}\nhost:{}\n\nhost\n{}",
        request.path, request.host, request.payload
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(
        keys.secret_access_key,
        &date,
        request.region,
        request.service,
    );
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    format!("{}&X-Amz-Signature={signature}", join(&encoded))
}

fn join(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `kSigning` of SigV4: the secret, narrowed to a day, a region and a service.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SigV4's URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> OffsetDateTime {
        crate::token::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 and test case 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_signing_key_matches_aws_documentation() {
        // "Examples of how to derive a signing key for Signature Version 4".
        assert_eq!(
            hex(&signing_key(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "20120215",
                "us-east-1",
                "iam"
            )),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn a_presigned_url_matches_aws_published_s3_example() {
        // S3 "Authenticating Requests: Using Query Parameters" example: GET /test.txt.
        let query = presigned_query(
            &Request {
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                params: &[],
                region: "us-east-1",
                service: "s3",
                time: at("2013-05-24T00:00:00Z"),
                expires_secs: 86_400,
                payload: UNSIGNED_PAYLOAD,
            },
            &Keys {
                access_key_id: "AKIAIOSFODNN7EXAMPLE",
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                session_token: None,
            },
        );
        assert!(
            query.ends_with(
                "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{query}"
        );
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(uri_encode("a-_.~Z9"), "a-_.~Z9");
        assert_eq!(uri_encode("a/b+c=d@e é"), "a%2Fb%2Bc%3Dd%40e%20%C3%A9");
    }
}
