//! The `command` source: runs a program (`databricks auth token`, `gcloud auth
//! print-access-token`) and reads the token from its stdout, plain or JSON.
//!
//! stdout is the secret and is never logged; stderr is logged line by line, with the token
//! cut out should the program print it there too. The child starts through
//! [`crate::child`]: refreshd's allow-listed variables, plus the source's `env` and the
//! variables it names in `inherit_env` (other credentials' secrets stay out), and it is
//! killed on timeout.

use serde_json::Value;

use super::fields;
use super::{FetchContext, SourceError};
use crate::child::{Child, ChildError, MAX_STDERR_LINES};
use crate::config::{CommandFormat, CommandSource};
use crate::token::Fetched;

pub(super) async fn run(
    source: &CommandSource,
    ctx: &FetchContext<'_>,
) -> Result<Fetched, SourceError> {
    let child = Child::new(&source.argv, ctx.timeout)
        .envs(source.env.iter().map(|(k, v)| (k.clone(), v.clone())))
        .inherit(&source.inherit_env)
        .capture_stdout();
    let program = child.program();
    let output = child.run().await.map_err(|e| match e {
        ChildError::Spawn { program, reason } => SourceError::Spawn {
            program,
            message: reason,
        },
        ChildError::Timeout { program, after } => SourceError::CommandTimeout { program, after },
        e @ ChildError::TooMuchOutput { .. } => SourceError::Malformed {
            origin: source.argv[0].clone(),
            reason: e.to_string(),
        },
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let parsed = parse_output(source, &stdout);
    let token_text = parsed.as_ref().ok().map(|p| p.token.as_str());
    let stderr_lines = output.stderr_lines(token_text);
    // A chatty program gets a few log lines, not one per line it printed.
    for line in stderr_lines.iter().take(MAX_STDERR_LINES) {
        tracing::warn!(credential = %ctx.credential, program = %program, "stderr: {line}");
    }
    if stderr_lines.len() > MAX_STDERR_LINES {
        tracing::warn!(
            credential = %ctx.credential,
            program = %program,
            "stderr: {} more lines not shown",
            stderr_lines.len() - MAX_STDERR_LINES
        );
    }
    if !output.status.success() {
        return Err(SourceError::CommandFailed {
            program,
            status: output.status.to_string(),
            stderr: stderr_lines.last().cloned(),
        });
    }
    let parsed = parsed.map_err(|reason| SourceError::Malformed {
        origin: program,
        reason,
    })?;
    Ok(fields::fetched(parsed.token, parsed.expiry, parsed.fields))
}

/// The token and what the output says of its expiry. Errors describe the output's shape,
/// never its content.
fn parse_output(source: &CommandSource, stdout: &str) -> Result<fields::Parsed, String> {
    let trimmed = stdout.trim();
    let fields = match &source.format {
        CommandFormat::Json(fields) => Some(fields),
        CommandFormat::Plain => None,
        CommandFormat::Auto(fields) => trimmed.starts_with('{').then_some(fields),
    };
    let Some(fields) = fields else {
        if trimmed.is_empty() {
            return Err("the command printed nothing on stdout".to_owned());
        }
        if trimmed.lines().count() > 1 || trimmed.contains(char::is_whitespace) {
            return Err("plain output must be one token on one line (use format = \"json\" for structured output)".to_owned());
        }
        return Ok(fields::Parsed {
            token: trimmed.to_owned(),
            expiry: None,
            fields: crate::token::Fields::new(),
        });
    };
    let value: Value = serde_json::from_str(trimmed).map_err(|e| {
        format!(
            "stdout is not JSON: {} at line {} column {}",
            e.classify_kind(),
            e.line(),
            e.column()
        )
    })?;
    let (token, expiry) = fields::token_and_expiry(
        &value,
        fields.token_field.as_deref(),
        fields.expiry_field.as_deref(),
    )?;
    Ok(fields::Parsed {
        token,
        expiry,
        fields: fields::named(&value, &fields.fields)?,
    })
}

pub(super) trait ClassifyKind {
    fn classify_kind(&self) -> &'static str;
}

impl ClassifyKind for serde_json::Error {
    fn classify_kind(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    enum Format {
        Auto,
        Plain,
        Json,
    }

    fn source(
        format: Format,
        token_field: Option<&str>,
        expiry_field: Option<&str>,
    ) -> CommandSource {
        let fields = crate::config::JsonFields {
            token_field: token_field.map(str::to_owned),
            expiry_field: expiry_field.map(str::to_owned),
            fields: [("user".to_owned(), "/user".to_owned())]
                .into_iter()
                .filter(|_| token_field == Some("/password"))
                .collect(),
        };
        CommandSource {
            argv: vec!["x".into()],
            format: match format {
                Format::Auto => CommandFormat::Auto(fields),
                Format::Plain => CommandFormat::Plain,
                Format::Json => CommandFormat::Json(fields),
            },
            env: Default::default(),
            inherit_env: Vec::new(),
        }
    }

    #[test]
    fn databricks_auth_token_output() {
        let out = r#"{"access_token":"eyJ.x.y","token_type":"Bearer","expiry":"2026-11-21T21:15:03.123+01:00"}"#;
        let fields::Parsed { token, expiry, .. } =
            parse_output(&source(Format::Auto, None, None), out).unwrap();
        assert_eq!(token, "eyJ.x.y");
        assert_eq!(
            crate::token::rfc3339(expiry.unwrap().expires_at.unwrap()),
            "2026-11-21T20:15:03Z"
        );
    }

    #[test]
    fn plain_pointer_and_relative_expiry() {
        let fields::Parsed { token, expiry, .. } =
            parse_output(&source(Format::Auto, None, None), "ya29.abc\n").unwrap();
        assert_eq!((token.as_str(), expiry), ("ya29.abc", None));
        let out = r#"{"data":{"secret":"s3"},"ttl":{"expires_in":"120"}}"#;
        let fields::Parsed { token, expiry, .. } = parse_output(
            &source(Format::Json, Some("/data/secret"), Some("/ttl/expires_in")),
            out,
        )
        .unwrap();
        assert_eq!(token, "s3");
        assert_eq!(expiry.unwrap().expires_in, Some(Duration::from_secs(120)));
    }

    #[test]
    fn fields_come_from_the_same_answer_as_the_token() {
        use secrecy::ExposeSecret;
        let out = r#"{"user":"u-7","password":"p-7","expires_in":60}"#;
        let parsed = parse_output(&source(Format::Json, Some("/password"), None), out).unwrap();
        assert_eq!(parsed.token, "p-7");
        let user = parsed
            .fields
            .get("user")
            .map(|v| v.expose_secret().to_owned());
        assert_eq!(user.as_deref(), Some("u-7"));
        let err = parse_output(
            &source(Format::Json, Some("/password"), None),
            r#"{"password":"p-secret"}"#,
        )
        .unwrap_err();
        assert_eq!(err, "fields.user: no value at \"/user\"");
    }

    #[test]
    fn malformed_output_is_described_without_its_content() {
        let err = parse_output(&source(Format::Plain, None, None), "tok en-secret").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        let err =
            parse_output(&source(Format::Json, None, None), "{\"token-secret\": 1").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        assert!(parse_output(&source(Format::Auto, None, None), "  ").is_err());
    }
}
