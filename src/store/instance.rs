//! One daemon per node name. Two processes acting as one node would both renew its leases
//! and both refresh as the holder: the fence is by node name. So each `refreshd run`
//! registers an instance (a random id, its host and pid) in its node's row, and another
//! process claiming the name of a node whose heartbeat is fresh is refused, named by host
//! and pid. The heartbeat of the rounds then counts only while the row is still this
//! instance's. One-shot commands (`once`, `rotate` without a daemon) act as the node
//! without an instance of their own, as they always did beside the daemon.
//!
//! Never takes a live node's name: only a row whose heartbeat is a lease old, or one this
//! host's previous daemon left (its pid gone, or this very pid after a container restart).

use std::time::Duration;

use time::OffsetDateTime;
use tokio_postgres::Client;

use super::StoreError;

/// This process, as it registers in its node's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub host: String,
    pub pid: i32,
}

impl Instance {
    /// This process: a random id, the host name and the pid.
    pub fn this_process() -> Instance {
        let mut bytes = [0u8; 8];
        // Without randomness (never on Linux), the pid and start time still tell two apart.
        let _ = getrandom::fill(&mut bytes);
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let id = bytes.iter().fold(format!("{pid:x}-"), |mut id, b| {
            id.push_str(&format!("{b:02x}"));
            id
        });
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        Instance { id, host, pid }
    }

    /// Whether a row naming `host` and `pid` is this host's earlier daemon, gone: its pid
    /// no longer runs, or it is this very pid (a container's PID 1, restarted).
    fn succeeds(&self, host: Option<&str>, pid: Option<i32>) -> bool {
        let Some(pid) = pid else {
            return false;
        };
        host == Some(self.host.as_str())
            && (pid == self.pid
                || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                    == Err(nix::errno::Errno::ESRCH))
    }
}

/// Registers `node` (as `instance`, for a daemon) with its version and start time.
pub(super) async fn register(
    client: &Client,
    node: &str,
    started_at: OffsetDateTime,
    lease: Duration,
    instance: Option<&Instance>,
) -> Result<(), StoreError> {
    let version = env!("CARGO_PKG_VERSION");
    let Some(me) = instance else {
        client
            .execute(
                "INSERT INTO refreshd_nodes (name, version, started_at, heartbeat)
                 VALUES ($1, $2, $3, clock_timestamp())
                 ON CONFLICT (name) DO UPDATE SET version = $2, started_at = $3, heartbeat = clock_timestamp()",
                &[&node, &version, &started_at],
            )
            .await
            .map_err(StoreError::query)?;
        return Ok(());
    };
    // Read, decide, then write only if the row is still as read: two daemons starting at
    // once cannot both pass.
    for _ in 0..3 {
        let row = client
            .query_opt(
                "SELECT instance, host, pid,
                        heartbeat > clock_timestamp() - make_interval(secs => $2)
                   FROM refreshd_nodes WHERE name = $1",
                &[&node, &lease.as_secs_f64()],
            )
            .await
            .map_err(StoreError::query)?;
        let seen: Option<String> = match &row {
            None => None,
            Some(row) => {
                let other: Option<String> = super::column(row, 0)?;
                let host: Option<String> = super::column(row, 1)?;
                let pid: Option<i32> = super::column(row, 2)?;
                let fresh: bool = super::column(row, 3)?;
                let live_other = other.as_ref().is_some_and(|o| *o != me.id) && fresh;
                if live_other && !me.succeeds(host.as_deref(), pid) {
                    return Err(StoreError::NodeInUse {
                        node: node.to_owned(),
                        host: host.unwrap_or_else(|| "?".into()),
                        pid: pid.unwrap_or(0),
                    });
                }
                other
            }
        };
        let written = client
            .execute(
                "INSERT INTO refreshd_nodes (name, version, started_at, heartbeat, instance, host, pid)
                 VALUES ($1, $2, $3, clock_timestamp(), $4, $5, $6)
                 ON CONFLICT (name) DO UPDATE
                    SET version = $2, started_at = $3, heartbeat = clock_timestamp(),
                        instance = $4, host = $5, pid = $6
                  WHERE refreshd_nodes.instance IS NOT DISTINCT FROM $7",
                &[&node, &version, &started_at, &me.id, &me.host, &me.pid, &seen],
            )
            .await
            .map_err(StoreError::query)?;
        if written == 1 {
            return Ok(());
        }
    }
    Err(StoreError::invalid_answer(format!(
        "node {node}: its row kept changing while this process registered; another process is starting with the same node name"
    )))
}

/// The round's heartbeat; for a daemon, only while the node's row is still its own.
pub(super) async fn beat(
    client: &Client,
    node: &str,
    instance: Option<&Instance>,
) -> Result<(), StoreError> {
    let Some(me) = instance else {
        client
            .execute(
                "UPDATE refreshd_nodes SET heartbeat = clock_timestamp() WHERE name = $1",
                &[&node],
            )
            .await
            .map_err(StoreError::query)?;
        return Ok(());
    };
    let beaten = client
        .execute(
            "UPDATE refreshd_nodes SET heartbeat = clock_timestamp() WHERE name = $1 AND instance = $2",
            &[&node, &me.id],
        )
        .await
        .map_err(StoreError::query)?;
    if beaten == 0 {
        return Err(StoreError::NodeTaken(node.to_owned()));
    }
    Ok(())
}

/// At a clean stop: the name is free at once for the next daemon.
pub(super) async fn leave(client: &Client, node: &str, instance: &Instance) {
    let _ = client
        .execute(
            "UPDATE refreshd_nodes SET instance = NULL WHERE name = $1 AND instance = $2",
            &[&node, &instance.id],
        )
        .await;
}
