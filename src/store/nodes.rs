//! `status --nodes`: the fleet's nodes, their versions, heartbeats and leases, read on a
//! connection of its own in a read-only transaction.
//!
//! It must never write to the store: no migration, no heartbeat, no lease, no key check
//! recorded (a host without a daemon only looks). A store without refreshd's schema, or with a
//! newer one, is said so, never created or upgraded.

use std::time::Duration;

use tokio_postgres::{Client, Transaction};

use super::schema::latest;
use super::{Fleet, NodeStatus, StoreError, column, count};

impl Fleet {
    /// The nodes and their heartbeats; `None` when the database has no refreshd schema yet
    /// (no node has joined it).
    pub async fn nodes(&self) -> Result<Option<Vec<NodeStatus>>, StoreError> {
        let patience = self.patience();
        let asked = async {
            let (mut client, connection) = self.target.connect().await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            read(&mut client, self).await
        };
        tokio::time::timeout(patience, asked)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unreachable(format!(
                    "{}: no answer within {}",
                    self.target.describe,
                    humantime::format_duration(patience)
                )))
            })
    }
}

/// Everything in one read-only transaction: the server refuses any write in it.
async fn read(client: &mut Client, fleet: &Fleet) -> Result<Option<Vec<NodeStatus>>, StoreError> {
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(StoreError::query)?;
    if !schema_present(&tx).await? {
        return Ok(None);
    }
    check_key(&tx, fleet).await?;
    let rows = tx
        .query(
            "SELECT n.name, n.version, n.started_at, n.heartbeat,
                    extract(epoch FROM clock_timestamp() - n.heartbeat)::float8,
                    (SELECT count(*) FROM refreshd_credentials c
                      WHERE c.holder = n.name AND c.lease_until > clock_timestamp())
               FROM refreshd_nodes n ORDER BY n.name",
            &[],
        )
        .await
        .map_err(StoreError::query)?;
    let nodes = rows
        .iter()
        .map(|row| {
            Ok(NodeStatus {
                name: column(row, 0)?,
                version: column(row, 1)?,
                started_at: column(row, 2)?,
                heartbeat: column(row, 3)?,
                heartbeat_age: Duration::try_from_secs_f64(column::<f64>(row, 4)?)
                    .unwrap_or(Duration::MAX),
                leases: count(row, 5)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    tx.rollback().await.map_err(StoreError::query)?;
    Ok(Some(nodes))
}

/// Whether refreshd's schema is there (`false` for a database no node has joined); a newer
/// one than this build knows is refused.
async fn schema_present(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    let row = tx
        .query_one(
            "SELECT to_regclass('refreshd_schema') IS NOT NULL
                    AND to_regclass('refreshd_nodes') IS NOT NULL",
            &[],
        )
        .await
        .map_err(StoreError::query)?;
    if !column::<bool>(&row, 0)? {
        return Ok(false);
    }
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM refreshd_schema", &[])
        .await
        .map_err(StoreError::query)?;
    let found: i32 = column(&row, 0)?;
    if found > latest() {
        return Err(StoreError::NewerSchema {
            found,
            known: latest(),
        });
    }
    Ok(true)
}

/// The key check, read only: a host with another key is told so (as the daemon would be);
/// a store without a recorded check is not given one.
async fn check_key(tx: &Transaction<'_>, fleet: &Fleet) -> Result<(), StoreError> {
    let row = tx
        .query_opt(
            "SELECT value FROM refreshd_meta WHERE key = 'key_check'",
            &[],
        )
        .await
        .map_err(StoreError::query)?;
    let Some(row) = row else {
        return Ok(());
    };
    let stored: Vec<u8> = column(&row, 0)?;
    match fleet.key.open(&crate::seal::Binding::store("", 0), &stored) {
        Ok(_) => Ok(()),
        Err(_) => Err(StoreError::WrongKey),
    }
}
