//! The store's schema, owned by refreshd: numbered migrations applied in one transaction
//! under an advisory lock (hosts starting together apply each once), and a schema newer than
//! this build refused rather than guessed at. Also the key check every node passes before
//! it reads or writes a credential.
//!
//! Never edits a released migration: a new one is added with the next number.

use tokio_postgres::Client;

use super::StoreError;
use crate::seal::{Binding, Key};

/// The migrations, by version; a database at version N has had 1..=N applied.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/001_init.sql")),
    (2, include_str!("migrations/002_rotate_asks.sql")),
    (3, include_str!("migrations/003_refresh_intent.sql")),
    (4, include_str!("migrations/004_node_instance.sql")),
    (5, include_str!("migrations/005_reloads.sql")),
];

/// The version this build writes and understands.
pub fn latest() -> i32 {
    MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0)
}

/// Every refreshd migration waits on this one advisory lock ("refreshd" in ASCII).
const LOCK: i64 = 0x7265_6672_6573_6864;

/// Brings the schema to [`latest`]; refuses a newer one. The version it was at.
pub async fn migrate(client: &mut Client) -> Result<i32, StoreError> {
    let tx = client.transaction().await.map_err(StoreError::query)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(StoreError::query)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS refreshd_schema (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now(),
             applied_by text NOT NULL
         )",
    )
    .await
    .map_err(StoreError::query)?;
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM refreshd_schema", &[])
        .await
        .map_err(StoreError::query)?;
    let found: i32 = super::column(&row, 0)?;
    if found > latest() {
        return Err(StoreError::NewerSchema {
            found,
            known: latest(),
        });
    }
    let by = format!("refreshd {}", env!("CARGO_PKG_VERSION"));
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await.map_err(|e| StoreError::Query {
            message: format!("migration {version}: {}", super::describe(&e)),
            sqlstate: e.code().cloned(),
        })?;
        tx.execute(
            "INSERT INTO refreshd_schema (version, applied_by) VALUES ($1, $2)",
            &[version, &by],
        )
        .await
        .map_err(StoreError::query)?;
        tracing::info!(version, "store schema migrated");
    }
    tx.commit().await.map_err(StoreError::query)?;
    Ok(found)
}

/// The sealed value the key is checked against: nothing secret, bound to no credential.
const CHECK: &[u8] = b"refreshd store key check";

/// Checks `key` against the one the store was first written with (recording it on a new
/// store): a host with another key is refused before it reads or writes a credential.
pub async fn check_key(client: &Client, key: &Key) -> Result<(), StoreError> {
    let sealed = key.seal(&Binding::store("", 0), CHECK);
    client
        .execute(
            "INSERT INTO refreshd_meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING",
            &[&sealed],
        )
        .await
        .map_err(StoreError::query)?;
    let row = client
        .query_one(
            "SELECT value FROM refreshd_meta WHERE key = 'key_check'",
            &[],
        )
        .await
        .map_err(StoreError::query)?;
    let stored: Vec<u8> = super::column(&row, 0)?;
    match key.open(&Binding::store("", 0), &stored) {
        Ok(_) => Ok(()),
        Err(_) => Err(StoreError::WrongKey),
    }
}
