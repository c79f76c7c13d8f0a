//! The environment of `refreshd exec`'s program: refreshd's own, minus every `REFRESHD_*`
//! variable and every variable the config reads a secret from ([`Config::secret_variables`]),
//! plus one variable per `--env VAR=NAME` holding NAME's current token.
//!
//! Unlike the helper programs of `crate::child` (a short allow-list), the program is the
//! user's own and gets what it was started with: only refreshd's business is taken out.
//!
//! Must never: pass on a `REFRESHD_*` variable or a secret source's variable, or log a value.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;

use secrecy::ExposeSecret as _;

use super::follow::Tokens;
use crate::config::Config;

/// `--env VAR=NAME`: the variable and the credential whose token it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub var: String,
    pub credential: String,
}

/// What every start of the program shares: refreshd's environment, filtered once.
pub struct Environment {
    inherited: Vec<(OsString, OsString)>,
    bindings: Vec<Binding>,
}

impl Environment {
    pub fn new(config: &Config, bindings: &[Binding]) -> Environment {
        Environment::from_vars(std::env::vars_os(), &config.secret_variables(), bindings)
    }

    fn from_vars(
        vars: impl Iterator<Item = (OsString, OsString)>,
        secrets: &BTreeSet<String>,
        bindings: &[Binding],
    ) -> Environment {
        let inherited = vars
            .filter(|(name, _)| passes(name, secrets))
            .filter(|(name, _)| !bindings.iter().any(|b| OsStr::new(&b.var) == name))
            .collect();
        Environment {
            inherited,
            bindings: bindings.to_vec(),
        }
    }

    /// The names of the variables taken out: for the log, never their values.
    pub fn dropped(config: &Config) -> Vec<String> {
        let secrets = config.secret_variables();
        std::env::vars_os()
            .filter(|(name, _)| !passes(name, &secrets))
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect()
    }

    /// The program's whole environment with `tokens`.
    pub fn with(&self, tokens: &Tokens) -> Vec<(OsString, OsString)> {
        let mut env = self.inherited.clone();
        for binding in &self.bindings {
            if let Some(held) = tokens.get(&binding.credential) {
                env.push((
                    OsString::from(&binding.var),
                    OsString::from(held.token.expose_secret()),
                ));
            }
        }
        env
    }
}

/// Whether refreshd's variable `name` passes to the program.
fn passes(name: &OsStr, secrets: &BTreeSet<String>) -> bool {
    !name.as_bytes().starts_with(b"REFRESHD_") && name.to_str().is_none_or(|n| !secrets.contains(n))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use secrecy::SecretString;

    use super::super::follow::Held;
    use super::*;

    #[test]
    fn refreshd_and_secret_variables_stay_out_tokens_go_in() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("REFRESHD_CONFIG", "/etc/refreshd/config.toml"),
            ("CLIENT_SECRET", "s3cret"),
            ("APP_MODE", "prod"),
            ("API_TOKEN", "stale"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let secrets = BTreeSet::from(["CLIENT_SECRET".to_owned()]);
        let bindings = [Binding {
            var: "API_TOKEN".into(),
            credential: "api".into(),
        }];
        let environment = Environment::from_vars(vars, &secrets, &bindings);
        let tokens = BTreeMap::from([(
            "api".to_owned(),
            Held::new(SecretString::from("fresh-token".to_owned())),
        )]);
        let env: Vec<(String, String)> = environment
            .with(&tokens)
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        assert_eq!(
            env,
            [
                ("PATH".to_owned(), "/usr/bin".to_owned()),
                ("APP_MODE".to_owned(), "prod".to_owned()),
                ("API_TOKEN".to_owned(), "fresh-token".to_owned()),
            ]
        );
    }
}
