//! Rolling reloads: each node's report that it ran its reload actions (and health check) for
//! one committed generation of a credential, and the question a node waiting its turn asks
//! the store: have all live nodes before me (in name order) reported, and did one fail?
//!
//! Must never: decide when to give up waiting (the roll in [`crate::credential`] keeps the
//! time), run a reload, or block: each call is one short query.

use std::time::Duration;

use super::{Fleet, StoreError, column};

/// What a node reports for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnResult {
    Done,
    Failed,
}

impl TurnResult {
    fn as_str(self) -> &'static str {
        match self {
            TurnResult::Done => "done",
            TurnResult::Failed => "failed",
        }
    }
}

/// Where a node stands in the roll of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Every live node before this one reported done.
    Go,
    /// Live nodes before this one have not reported yet: `reported` of them did, the first
    /// pending is named.
    Wait { reported: usize, pending: String },
    /// A node before this one reported a failed reload or health check: the roll stops.
    Stopped { node: String },
}

impl Fleet {
    /// One look at the roll of `credential`'s `generation` from this node's place.
    pub async fn reload_turn(&self, credential: &str, generation: u64) -> Result<Turn, StoreError> {
        let client = self.client().await?;
        let generation = generation as i64;
        let rows = client
            .query(
                r#"SELECT n.name, r.result
                   FROM refreshd_nodes n
                   LEFT JOIN refreshd_reloads r
                     ON r.credential = $1 AND r.generation = $2 AND r.node = n.name
                  WHERE n.name COLLATE "C" < $3
                    AND (r.result IS NOT NULL
                         OR n.heartbeat > clock_timestamp() - make_interval(secs => $4))
                  ORDER BY n.name COLLATE "C""#,
                &[
                    &credential,
                    &generation,
                    &self.node,
                    &self.lease.as_secs_f64(),
                ],
            )
            .await;
        self.counted(1);
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                self.reset().await;
                return Err(StoreError::query(e));
            }
        };
        let mut reported = 0;
        let mut pending = None;
        for row in &rows {
            let name: String = column(row, 0)?;
            match column::<Option<String>>(row, 1)?.as_deref() {
                Some("failed") => return Ok(Turn::Stopped { node: name }),
                Some(_) => reported += 1,
                None => {
                    pending.get_or_insert(name);
                }
            }
        }
        Ok(match pending {
            Some(pending) => Turn::Wait { reported, pending },
            None => Turn::Go,
        })
    }

    /// Reports this node's turn of `credential`'s `generation`; reports of generations
    /// older than `keep` behind it are dropped on the way (the table stays small).
    pub async fn report_reload(
        &self,
        credential: &str,
        generation: u64,
        result: TurnResult,
    ) -> Result<(), StoreError> {
        const KEEP: i64 = 16;
        let client = self.client().await?;
        let generation = generation as i64;
        let done = client
            .execute(
                "INSERT INTO refreshd_reloads (credential, generation, node, result)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (credential, generation, node)
                 DO UPDATE SET result = $4, at = clock_timestamp()",
                &[&credential, &generation, &self.node, &result.as_str()],
            )
            .await;
        let done =
            match done {
                Ok(_) => client
                    .execute(
                        "DELETE FROM refreshd_reloads WHERE credential = $1 AND generation < $2",
                        &[&credential, &(generation - KEEP)],
                    )
                    .await,
                Err(e) => Err(e),
            };
        self.counted(2);
        if let Err(e) = done {
            self.reset().await;
            return Err(StoreError::query(e));
        }
        Ok(())
    }
}

/// How long a waiting node sleeps between two looks.
pub const POLL: Duration = Duration::from_millis(500);
