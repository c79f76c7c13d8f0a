//! `refreshd inspect`: a JWT's header, claims and expiry, without verifying it.

use std::io::Read;

use anyhow::Context as _;

use crate::cli::Exit;
use crate::token;

pub fn run(arg: Option<String>) -> anyhow::Result<Exit> {
    let text = match arg.as_deref() {
        None | Some("-") => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the token from stdin")?;
            input
        }
        Some(token) => token.to_owned(),
    };
    let Some(decoded) = token::decode_unverified(text.trim()) else {
        eprintln!(
            "refreshd: not a JWT (three base64url parts with a JSON header and claims); opaque tokens such as Google's ya29.… cannot be decoded"
        );
        return Ok(Exit::Invalid);
    };
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    println!("header: {}", pretty(&decoded.header));
    println!("claims: {}", pretty(&decoded.claims));
    let now = crate::clock::system_now();
    let claims = token::Claims::from_json(&decoded.claims);
    if let Some(iat) = claims.iat {
        println!(
            "issued:  {} ({} ago)",
            token::rfc3339(iat),
            token::remaining(now, iat)
        );
    }
    match claims.exp {
        Some(exp) if exp > now => println!(
            "expires: {} (in {})",
            token::rfc3339(exp),
            token::remaining(exp, now)
        ),
        Some(exp) => println!(
            "expires: {} (expired {} ago)",
            token::rfc3339(exp),
            token::remaining(now, exp)
        ),
        None => println!("expires: no exp claim"),
    }
    println!("signature: not verified");
    Ok(Exit::Ok)
}
