//! `check --online`'s look at the store: it answers, its schema is one this build knows,
//! the key opens what it holds, and what it holds of each credential.
//!
//! Must never: change anything (no migration, no lease, no key recorded).

use tokio_postgres::Client;

use super::{Fleet, SEALED, StoreError};

impl Fleet {
    /// `check --online`: the store answers, its schema is one this build knows, the key opens
    /// what the store holds, and what it holds of each of `names` (one line each). Changes
    /// nothing: no migration, no lease, no key recorded.
    pub async fn probe(&self, names: &[String]) -> Result<Vec<String>, StoreError> {
        let (client, connection) = self.target.connect().await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut lines = Vec::new();
        let Some(schema) = self.probe_schema(&client).await? else {
            lines.push(format!(
                "{}: empty: `refreshd run` creates its tables",
                self.target.describe
            ));
            return Ok(lines);
        };
        lines.push(schema);
        self.probe_key(&client).await?;
        lines.extend(self.probe_credentials(&client, names).await?);
        Ok(lines)
    }

    /// The schema's line, or `None` for a database refreshd never wrote to.
    async fn probe_schema(&self, client: &Client) -> Result<Option<String>, StoreError> {
        let row = client
            .query_one("SELECT to_regclass('refreshd_schema') IS NOT NULL", &[])
            .await
            .map_err(StoreError::query)?;
        if !super::column::<bool>(&row, 0)? {
            return Ok(None);
        }
        let row = client
            .query_one("SELECT coalesce(max(version), 0) FROM refreshd_schema", &[])
            .await
            .map_err(StoreError::query)?;
        let version: i32 = super::column(&row, 0)?;
        let latest = super::schema::latest();
        if version > latest {
            return Err(StoreError::NewerSchema {
                found: version,
                known: latest,
            });
        }
        Ok(Some(format!(
            "{}: schema version {version}{}",
            self.target.describe,
            if version < latest {
                format!(" (`refreshd run` migrates it to {latest})")
            } else {
                String::new()
            }
        )))
    }

    /// `Err` when the store's key check does not open with this host's key.
    async fn probe_key(&self, client: &Client) -> Result<(), StoreError> {
        let check = client
            .query_opt(
                "SELECT value FROM refreshd_meta WHERE key = 'key_check'",
                &[],
            )
            .await
            .map_err(StoreError::query)?;
        if let Some(row) = check
            && self
                .key
                .open(
                    &crate::seal::Binding::store("", 0),
                    &super::column::<Vec<u8>>(&row, 0)?,
                )
                .is_err()
        {
            return Err(StoreError::WrongKey);
        }
        Ok(())
    }

    /// One line for each of `names` the store holds.
    async fn probe_credentials(
        &self,
        client: &Client,
        names: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let rows = client
            .query(
                &format!("SELECT name, generation, {SEALED}, holder FROM refreshd_credentials WHERE name = ANY($1)"),
                &[&names],
            )
            .await
            .map_err(StoreError::query)?;
        let mut lines = Vec::new();
        for row in rows {
            let name: String = super::column(&row, 0)?;
            let generation = super::count(&row, 1)?;
            let sealed: Option<Vec<u8>> = super::column(&row, 2)?;
            let holder: Option<String> = super::column(&row, 3)?;
            let state = self.unseal(&name, generation, sealed.as_deref())?;
            lines.push(format!(
                "{name}: in the store at generation {generation}, {}, lease holder {}",
                match state.and_then(|s| s.token) {
                    Some(token) => format!(
                        "token {} expires {}",
                        token.fingerprint(),
                        crate::token::rfc3339(token.expires_at)
                    ),
                    None => "no token yet".to_owned(),
                },
                holder.as_deref().unwrap_or("none")
            ));
        }
        Ok(lines)
    }
}
