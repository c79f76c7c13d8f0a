//! `template` targets: a MiniJinja template rendered into the whole file, for files whose
//! shape is the app's own (a JDBC URL in a properties file, a YAML fragment).
//!
//! Sandboxed: the environment has no loader (the crate is built without `multi_template`,
//! so `include`, `import` and `extends` cannot name a file), no function that reads the
//! process environment or a file (MiniJinja has none), strict undefined variables, a fuel
//! budget that bounds a render's work and memory, and an output limit. The variables come
//! from one function, [`context`].
//!
//! Must never: read a file or the environment while rendering, auto-escape (the output is
//! the app's format, not HTML), or put a value of the context (the token, a claim) into an
//! error: errors carry the error's kind, the template's line and the template's own text at
//! that place, never MiniJinja's message about a value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value};
use time::OffsetDateTime;

/// The largest template file read: a template is an app's config file, a few KiB.
pub const TEMPLATE_LIMIT: u64 = 1 << 20;

/// The work one render may do: about one unit per instruction and per 64 bytes of data, so
/// about 16 MiB of data or a quarter of a million instructions, a few milliseconds. A
/// `{% for i in range(10000) %}{% for j in range(10000) %}` runs out instead of running on.
const FUEL: u64 = 250_000;

/// Where a template's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `template = "/etc/refreshd/app.j2"`, read when the config is loaded.
    File(PathBuf),
    /// `inline = "…"` in the config.
    Inline,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "template {}", path.display()),
            Origin::Inline => f.write_str("inline template"),
        }
    }
}

/// A template whose syntax has been checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    origin: Origin,
    source: Arc<str>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("origin", &self.origin)
            .field("bytes", &self.source.len())
            .finish()
    }
}

/// The `claims` variable.
pub enum Claims {
    /// The token's own unverified claims (an empty map for a token that is not a JWT).
    Of(serde_json::Value),
    /// Any claim a template names, with a sample value: `check` without a token cannot know
    /// which claims the provider will send.
    Any,
}

/// What the template's variables are made from: one credential's rotation, and the
/// current values of the credentials the template `uses`.
pub struct Vars<'a> {
    pub credential: &'a str,
    pub token: &'a str,
    pub token_type: &'a str,
    pub expires_at: OffsetDateTime,
    pub claims: Claims,
    /// The fields minted with the token.
    pub fields: BTreeMap<&'a str, &'a str>,
    /// Each credential the template `uses`, by name, with its own values.
    pub uses: Vec<Vars<'a>>,
}

impl<'a> Vars<'a> {
    /// The variables for `token` of `credential`, its claims read from it.
    pub fn of(credential: &'a str, token: &'a str, expires_at: OffsetDateTime) -> Vars<'a> {
        let claims = crate::token::decode_unverified(token)
            .map(|decoded| decoded.claims)
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
        Vars {
            credential,
            token,
            token_type: "Bearer",
            expires_at,
            claims: Claims::Of(claims),
            fields: BTreeMap::new(),
            uses: Vec::new(),
        }
    }
}

/// Every variable [`context`] makes: a template naming another is refused at load.
const VARIABLES: &[&str] = &[
    "token",
    "token_type",
    "expires_at",
    "expires_at_unix",
    "credential",
    "claims",
    "fields",
    "credentials",
];

/// The render context: every variable a template can name. The one place they are made.
/// The rendering credential's values stand at the top; `credentials.NAME` holds each
/// credential's (its own and those it `uses`) under its name.
pub fn context(vars: &Vars<'_>) -> Value {
    let mut map = own(vars);
    let credentials: BTreeMap<&str, Value> = std::iter::once(vars)
        .chain(&vars.uses)
        .map(|one| (one.credential, Value::from(own(one))))
        .collect();
    map.insert("credentials", Value::from(credentials));
    Value::from(map)
}

/// One credential's variables.
fn own<'v>(vars: &Vars<'v>) -> BTreeMap<&'v str, Value> {
    let claims = match &vars.claims {
        Claims::Of(json) => from_json(json),
        Claims::Any => Value::from_object(AnyClaim),
    };
    let mut map: BTreeMap<&str, Value> = BTreeMap::new();
    map.insert("token", Value::from(vars.token));
    map.insert("token_type", Value::from(vars.token_type));
    map.insert(
        "expires_at",
        Value::from(crate::token::rfc3339(vars.expires_at)),
    );
    map.insert(
        "expires_at_unix",
        Value::from(vars.expires_at.unix_timestamp()),
    );
    map.insert("credential", Value::from(vars.credential));
    map.insert("claims", claims);
    let fields: BTreeMap<&str, Value> = vars
        .fields
        .iter()
        .map(|(name, value)| (*name, Value::from(*value)))
        .collect();
    map.insert("fields", Value::from(fields));
    map
}

fn from_json(json: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => items.iter().map(from_json).collect(),
        J::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect::<BTreeMap<String, Value>>(),
        ),
    }
}

/// `claims` for `check` without a token: every claim exists and is a sample string.
#[derive(Debug)]
struct AnyClaim;

impl Object for AnyClaim {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        key.as_str().map(|_| Value::from("sample-claim"))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Empty
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    // Spans of failing expressions, for errors that name the template's text.
    env.set_debug(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // `debug()` prints the whole context in a format of MiniJinja's choosing.
    env.remove_global("debug");
    // These built-ins turn an undefined value into "" or `null` even under strict rules:
    // `{{ claims.db_usr | urlencode }}` would write an empty user rather than fail.
    env.add_filter("urlencode", |state: &State, value: &Value| {
        defined(state, value).and_then(|()| minijinja::filters::urlencode(value))
    });
    env.add_filter(
        "tojson",
        |state: &State, value: &Value, indent: Option<Value>, kwargs: Kwargs| {
            defined(state, value).and_then(|()| minijinja::filters::tojson(value, indent, kwargs))
        },
    );
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    // A file's last line break is part of the file.
    syntax.keep_trailing_newline(true);
    if let Ok(syntax) = syntax.build() {
        env.set_syntax(syntax);
    }
    env
}

/// Fails on an undefined `value` as MiniJinja's own strict filters do (`string` is one),
/// so the error names the expression that was undefined.
fn defined(state: &State, value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        minijinja::filters::string(state, value).map(drop)
    } else {
        Ok(())
    }
}

/// The 1-based line of the first place `name` stands as a word in `source`.
fn line_of(source: &str, name: &str) -> Option<usize> {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    source.match_indices(name).find_map(|(at, _)| {
        let before = source[..at].chars().next_back();
        let after = source[at + name.len()..].chars().next();
        (!word(before) && !word(after)).then(|| source[..at].matches('\n').count() + 1)
    })
}

impl Template {
    /// Checks the syntax of `source` and that it names no variable but [`context`]'s. The
    /// error names the line, never a value.
    pub fn new(origin: Origin, source: String) -> Result<Template, String> {
        let template = Template {
            origin,
            source: source.into(),
        };
        let env = environment();
        let compiled = env
            .template_from_str(&template.source)
            .map_err(|e| template.describe(&e))?;
        let globals: Vec<&str> = env.globals().map(|(name, _)| name).collect();
        let mut unknown: Vec<String> = compiled
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| !VARIABLES.contains(&name.as_str()) && !globals.contains(&name.as_str()))
            .collect();
        unknown.sort_by_key(|name| line_of(&template.source, name));
        if let Some(name) = unknown.first() {
            let line = line_of(&template.source, name)
                .map(|line| format!(", line {line}"))
                .unwrap_or_default();
            return Err(format!(
                "{}{line}: unknown variable `{name}` (a template may use {})",
                template.origin,
                VARIABLES.join(", ")
            ));
        }
        Ok(template)
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The file's content for `vars`; at most `limit` bytes.
    pub fn render(&self, vars: &Vars<'_>, limit: usize) -> Result<String, String> {
        let env = environment();
        let compiled = env
            .template_from_str(&self.source)
            .map_err(|e| self.describe(&e))?;
        let out = compiled
            .render(context(vars))
            .map_err(|e| self.describe(&e))?;
        if out.len() > limit {
            return Err(format!(
                "{}: the rendered file would be {} bytes, more than the {limit} a target may hold; not written",
                self.origin,
                out.len()
            ));
        }
        Ok(out)
    }

    /// `error` without anything from the context: its kind, line and the template's text
    /// there. A syntax error's message is kept: it is found before any value exists.
    fn describe(&self, error: &minijinja::Error) -> String {
        let mut text = self.origin.to_string();
        if let Some(line) = error.line() {
            text.push_str(&format!(", line {line}"));
        }
        match error.kind() {
            ErrorKind::SyntaxError => {
                text.push_str(": syntax error");
                if let Some(detail) = error.detail() {
                    text.push_str(&format!(": {detail}"));
                }
            }
            ErrorKind::OutOfFuel => {
                text.push_str(": the template does too much work (a loop too long?)");
            }
            kind => text.push_str(&format!(": {kind}")),
        }
        if error.kind() != ErrorKind::SyntaxError
            && let Some(at) = self.excerpt(error)
        {
            text.push_str(&format!(" in `{at}`"));
        }
        text
    }

    /// The template's own text where `error` happened, on one line and short: for an
    /// undefined value, the expression MiniJinja names (rebuilt from the template's names
    /// and literals, never from a value), else the span of the failing expression.
    fn excerpt(&self, error: &minijinja::Error) -> Option<String> {
        let undefined = error
            .detail()
            .filter(|_| error.kind() == ErrorKind::UndefinedError)
            .and_then(|detail| detail.split_once('`'))
            .and_then(|(_, rest)| rest.split_once("` is undefined"))
            .map(|(expr, _)| expr.to_owned());
        if let Some(expr) = undefined {
            return Some(expr.chars().take(80).collect());
        }
        let range = error.range()?;
        let text = self.source.get(range)?.trim();
        let line = text.lines().next()?;
        let short: String = line.chars().take(80).collect();
        (!short.is_empty()).then_some(short)
    }
}

#[cfg(test)]
mod tests;
