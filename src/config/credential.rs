//! `[credentials.NAME]`: raw → typed. Assembles one credential from its source, targets,
//! reload actions and timing, and refuses the combinations no single part can see: two
//! kinds of target on one path, a refresh token spent without the store's lock.
//!
//! Must never: look at another credential (bearers are [`super::graph`]'s job) or at the
//! file system.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::access::{Access, RawAccess};
use super::locate::Doc;
use super::names::valid_credential_name;
use super::raw::{RawCredential, RawReload, RawTarget, RawTiming};
use super::{
    ConfigError, Network, ReloadConfig, SourceConfig, TargetConfig, Timing, reload, source, target,
};

/// Whether a credential is refreshed by this host alone or by the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Local,
    /// Through the store: one holder refreshes; with `local_fallback`, a host refreshes on
    /// its own while the store is unreachable (only safe for sources that spend no refresh
    /// token).
    Shared {
        local_fallback: bool,
    },
}

impl Sharing {
    /// Whether the credential goes through the fleet store.
    pub fn is_shared(self) -> bool {
        matches!(self, Sharing::Shared { .. })
    }
}

/// `reload_order = "rolling"`: the fleet's nodes reload one at a time, in node-name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolling {
    /// A node goes this long after the one before it reported (or after it began to wait),
    /// reported or not; also bounds the health check.
    pub timeout: Duration,
    /// Run after this node's reloads: exit 0 means the app came back healthy.
    pub health_check: Option<Vec<String>>,
}

/// Default `reload_timeout`.
pub const ROLL_TIMEOUT: Duration = Duration::from_secs(120);

/// One managed credential: where its token comes from and where it goes.
#[derive(Debug, Clone)]
pub struct Credential {
    pub name: String,
    pub source: SourceConfig,
    pub targets: Vec<TargetConfig>,
    pub reload: Vec<ReloadConfig>,
    pub on_failure: Option<Vec<String>>,
    pub timing: Timing,
    pub sharing: Sharing,
    /// Who else may read its token, and through what.
    pub access: Access,
    /// The proxy and CAs of its token requests.
    pub network: Network,
    /// `Some` when its reloads roll across the fleet one node at a time.
    pub rolling: Option<Rolling>,
    /// Line of `[credentials.NAME]` in the config, for messages.
    pub line: usize,
}

impl Credential {
    /// The other credentials its templates render (`uses`): when one of them changes,
    /// this credential's targets are written again.
    pub fn uses(&self) -> Vec<&str> {
        let mut uses: Vec<&str> = self
            .targets
            .iter()
            .filter_map(|t| match &t.kind {
                super::TargetKind::Template { uses, .. } => Some(uses),
                _ => None,
            })
            .flatten()
            .map(String::as_str)
            .collect();
        uses.sort_unstable();
        uses.dedup();
        uses
    }
}

/// Equal when a running credential would behave the same: the line it sits on is ignored,
/// so moving it in the file does not restart it on a reload.
impl PartialEq for Credential {
    fn eq(&self, other: &Credential) -> bool {
        self.name == other.name
            && self.source == other.source
            && self.targets == other.targets
            && self.reload == other.reload
            && self.on_failure == other.on_failure
            && self.timing == other.timing
            && self.sharing == other.sharing
            && self.access == other.access
            && self.network == other.network
            && self.rolling == other.rolling
    }
}

impl Doc<'_> {
    /// The credential `name`, whose table starts at `start`; `store`: the config has one.
    pub(super) fn credential(
        &self,
        name: String,
        start: usize,
        raw: RawCredential,
        defaults: &RawTiming,
        store: bool,
    ) -> Result<Arc<Credential>, ConfigError> {
        let key = format!("credentials.{name}");
        if !valid_credential_name(&name) {
            return Err(self.error(
                start,
                &key,
                "a credential name may hold only letters, digits, `_`, `-` and `.`, and may not start with `.` (it names files in the state directory)",
            ));
        }
        let timing = self.timing(start, &key, &raw.own_timing(), defaults)?;
        let source_start = raw.source.span().start;
        let source = source::source(
            self,
            source_start,
            &format!("{key}.source"),
            raw.source.into_inner(),
        )?;
        let fields = source.fields();
        let owner = super::Owner {
            name: &name,
            fields: &fields,
        };
        let targets = self.targets(start, &key, owner, raw.targets)?;
        let reload = self.reloads(&key, raw.reload)?;
        let sharing = self.sharing(start, &key, &source, store, raw.shared, raw.local_fallback)?;
        let access = self.access(
            &key,
            RawAccess {
                readers: raw.readers,
                serve: raw.serve,
                git: raw.git,
                docker: raw.docker,
            },
        )?;
        let network = self.network(&key, raw.proxy, raw.ca_file)?;
        let rolling = self.rolling(
            start,
            &key,
            RawRolling {
                order: raw.reload_order,
                timeout: raw.reload_timeout,
                health_check: raw.health_check,
            },
            sharing,
            !reload.is_empty(),
        )?;
        let on_failure = raw.on_failure.or_else(|| defaults.on_failure.clone());
        if on_failure.as_ref().is_some_and(|argv| argv.is_empty()) {
            return Err(self.error(
                start,
                format!("{key}.on_failure"),
                "must name a program: [\"/path/to/program\", \"arg\"…]",
            ));
        }
        Ok(Arc::new(Credential {
            name,
            source,
            targets,
            reload,
            on_failure,
            timing,
            sharing,
            access,
            network,
            rolling,
            line: self.line(start),
        }))
    }

    /// The targets of the credential at `start`; one path may not be two kinds of file,
    /// as each write would undo the other.
    fn targets(
        &self,
        start: usize,
        key: &str,
        owner: super::Owner<'_>,
        raw: Vec<Spanned<RawTarget>>,
    ) -> Result<Vec<TargetConfig>, ConfigError> {
        let mut targets = Vec::with_capacity(raw.len());
        for (i, spanned) in raw.into_iter().enumerate() {
            let at = spanned.span().start;
            let target_key = format!("{key}.targets[{i}]");
            let target = target::target(self, at, &target_key, spanned.into_inner(), Some(owner))?;
            if let Some(other) = targets.iter().find(|b: &&TargetConfig| {
                b.path == target.path && b.kind.name() != target.kind.name()
            }) {
                return Err(self.error(
                    start,
                    target_key,
                    format!(
                        "{} is also a {} target of this credential",
                        target.path.display(),
                        other.kind.name()
                    ),
                ));
            }
            targets.push(target);
        }
        Ok(targets)
    }

    fn reloads(
        &self,
        key: &str,
        raw: Vec<Spanned<RawReload>>,
    ) -> Result<Vec<ReloadConfig>, ConfigError> {
        raw.into_iter()
            .enumerate()
            .map(|(i, spanned)| {
                let at = spanned.span().start;
                reload::reload(
                    self,
                    at,
                    &format!("{key}.reload[{i}]"),
                    spanned.into_inner(),
                )
            })
            .collect()
    }

    /// Shared whenever there is a store, unless `shared = false`.
    fn sharing(
        &self,
        start: usize,
        key: &str,
        source: &SourceConfig,
        store: bool,
        shared: Option<bool>,
        local_fallback: Option<bool>,
    ) -> Result<Sharing, ConfigError> {
        let sharing = match (store, shared) {
            (false, _) | (true, Some(false)) => Sharing::Local,
            (true, _) => Sharing::Shared {
                // A source that spends no refresh token may refresh on every host at once.
                local_fallback: local_fallback.unwrap_or(source.oauth_refresh().is_none()),
            },
        };
        if local_fallback == Some(true) && source.oauth_refresh().is_some() {
            return Err(self.error(
                start,
                format!("{key}.local_fallback"),
                "an oauth-refresh source may not refresh without the store: two hosts would spend one refresh token, and a provider that rotates them revokes the grant",
            ));
        }
        Ok(sharing)
    }

    /// `reload_order`, `reload_timeout` and `health_check`: rolling needs a shared
    /// credential with something to reload; the other two mean nothing without it.
    fn rolling(
        &self,
        start: usize,
        key: &str,
        raw: RawRolling,
        sharing: Sharing,
        reloads: bool,
    ) -> Result<Option<Rolling>, ConfigError> {
        let rolling = match raw.order.as_deref() {
            None | Some("together") => false,
            Some("rolling") => true,
            Some(other) => {
                return Err(self.error(
                    start,
                    format!("{key}.reload_order"),
                    format!("`{other}`: must be \"together\" or \"rolling\""),
                ));
            }
        };
        if !rolling {
            for (set, name) in [
                (raw.timeout.is_some(), "reload_timeout"),
                (raw.health_check.is_some(), "health_check"),
            ] {
                if set {
                    return Err(self.error(
                        start,
                        format!("{key}.{name}"),
                        "only means something with reload_order = \"rolling\"",
                    ));
                }
            }
            return Ok(None);
        }
        let order = format!("{key}.reload_order");
        if !sharing.is_shared() {
            return Err(self.error(
                start,
                order,
                "\"rolling\" needs a credential shared through the fleet store ([daemon] store, and not shared = false): the nodes take turns through it",
            ));
        }
        if !reloads {
            return Err(self.error(
                start,
                order,
                "\"rolling\" needs reload actions to roll: add a [[credentials.NAME.reload]]",
            ));
        }
        if raw.health_check.as_ref().is_some_and(Vec::is_empty) {
            return Err(self.error(
                start,
                format!("{key}.health_check"),
                "must name a program: [\"/path/to/program\", \"arg\"…]",
            ));
        }
        let timeout = raw.timeout.unwrap_or(ROLL_TIMEOUT);
        if timeout.is_zero() {
            return Err(self.error(
                start,
                format!("{key}.reload_timeout"),
                "must be more than zero",
            ));
        }
        Ok(Some(Rolling {
            timeout,
            health_check: raw.health_check,
        }))
    }
}

/// The rolling keys of a credential table, as written.
struct RawRolling {
    order: Option<String>,
    timeout: Option<Duration>,
    health_check: Option<Vec<String>>,
}
