//! Keeping this node's view of the store current: every third of a lease, one round renews
//! and takes leases, beats the node's heartbeat and reads every shared credential's
//! generation (the catch-up after a missed notification); between rounds, `LISTEN` hears
//! each commit and each rotate request at once.
//!
//! Must never commit a credential's state: that is [`super::fence`]'s alone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::{Fleet, Row, StoreError};

/// A statement's parameter (the three statements of a round are sent together).
type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// The channel every commit and rotate request is announced on.
pub const CHANNEL: &str = "refreshd";

impl Fleet {
    /// Starts the lease round and the listener; both run until aborted.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        let rounds = {
            let fleet = self.clone();
            tokio::spawn(async move {
                loop {
                    let _ = fleet.round().await;
                    tokio::time::sleep(fleet.lease / 3).await;
                }
            })
        };
        let listener = {
            let fleet = self.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = fleet.listen().await {
                        tracing::debug!("store listener: {e}");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        vec![rounds, listener]
    }

    /// One round: heartbeat, rows made, leases renewed and taken, generations read.
    pub async fn round(&self) -> Result<(), StoreError> {
        // A connection that stopped answering (a failover that blackholed the old address)
        // is given up after a lease, not after the kernel's retransmission timeout.
        let result = tokio::time::timeout(self.patience(), self.try_round())
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unreachable(format!(
                    "{}: no answer within {}",
                    self.target.describe,
                    humantime::format_duration(self.patience())
                )))
            });
        if result.is_err() {
            self.reset().await;
            self.lapse_all();
        }
        self.mark(result.as_ref().map(|_| ()));
        result
    }

    async fn try_round(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let names = self.names();
        let sent = tokio::time::Instant::now();
        let (claimed, rows) = self.send_round(&client, &names).await?;
        let claimed: HashSet<String> = claimed
            .iter()
            .map(|row| super::column(row, 0))
            .collect::<Result<_, _>>()?;
        // The lease ends `lease` after the database ran the update, which was after `sent`.
        let news = self.apply_round(&claimed, &rows, sent + self.lease)?;
        for name in news.acquired {
            tracing::info!(credential = %name, node = %self.node, "lease taken: this node refreshes it now");
            self.tell(&name, |news| {
                news.acquired += 1;
                true
            });
        }
        for (name, stamp) in news.asked {
            self.tell(&name, |news| ask(news, stamp));
        }
        for (name, generation) in news.generations {
            self.tell(&name, |news| raise(news, generation));
        }
        Ok(())
    }

    /// The round's four statements: heartbeat, rows made, leases renewed or taken (the
    /// names claimed), generations read (every row).
    async fn send_round(
        &self,
        client: &tokio_postgres::Client,
        names: &Vec<String>,
    ) -> Result<(Vec<tokio_postgres::Row>, Vec<tokio_postgres::Row>), StoreError> {
        let lease = self.lease.as_secs_f64();
        let node_params: [Param<'_>; 1] = [&self.node];
        let names_params: [Param<'_>; 1] = [names];
        let claim_params: [Param<'_>; 3] = [names, &self.node, &lease];
        let heartbeat = client.execute(
            "UPDATE refreshd_nodes SET heartbeat = clock_timestamp() WHERE name = $1",
            &node_params,
        );
        let made = client.execute(
            "INSERT INTO refreshd_credentials (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
            &names_params,
        );
        // The rows must exist before the claim runs: `join!` polls its futures in a rotating
        // order, so the two could reach the server the other way round and a new
        // credential would go unclaimed for a round (and a one-shot command would fail).
        let (heartbeat, made) = tokio::join!(heartbeat, made);
        heartbeat.map_err(StoreError::query)?;
        made.map_err(StoreError::query)?;
        // Rows locked by a refresh in flight are skipped: their lease was extended when it
        // began, and a takeover must wait for its transaction anyway.
        let claimed = client
            .query(
            "WITH free AS (
                 SELECT name FROM refreshd_credentials
                  WHERE name = ANY($1)
                    AND (holder = $2 OR holder IS NULL OR lease_until IS NULL OR lease_until < clock_timestamp())
                  FOR UPDATE SKIP LOCKED)
             UPDATE refreshd_credentials c
                SET holder = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
               FROM free WHERE c.name = free.name
             RETURNING c.name",
            &claim_params,
        )
            .await
            .map_err(StoreError::query)?;
        let rows = client
            .query(
                &format!(
                    "SELECT name, generation, holder, lease_until, {ASK_STAMP}
                       FROM refreshd_credentials WHERE name = ANY($1)"
                ),
                &[names],
            )
            .await
            .map_err(StoreError::query)?;
        self.counted(4);
        Ok((claimed, rows))
    }

    /// Records a round's rows in the view: leases held until `until`; what each credential's
    /// task is to be told.
    fn apply_round(
        &self,
        claimed: &HashSet<String>,
        rows: &[tokio_postgres::Row],
        until: tokio::time::Instant,
    ) -> Result<RoundNews, StoreError> {
        let mut news = RoundNews::default();
        let mut view = self.view();
        let now = tokio::time::Instant::now();
        for row in rows {
            let name: String = super::column(row, 0)?;
            let fresh = Row {
                generation: super::count(row, 1)?,
                holder: super::column(row, 2)?,
                lease_until: super::column(row, 3)?,
                rotate_asked_at: super::column(row, 4)?,
            };
            let held_before = view.held.get(&name).is_some_and(|u| *u > now);
            if claimed.contains(&name) {
                view.held.insert(name.clone(), until);
                if !held_before {
                    news.acquired.push(name.clone());
                }
            } else if fresh.holder.as_deref() != Some(self.node.as_str()) {
                view.held.remove(&name);
            }
            let old = view.rows.get(&name);
            // A request already there when this node first read the row is old news.
            if let Some(stamp) = fresh.rotate_asked_at
                && old.is_some_and(|o| o.rotate_asked_at != fresh.rotate_asked_at)
                && claimed.contains(&name)
            {
                news.asked.push((name.clone(), stamp));
            }
            news.generations.push((name.clone(), fresh.generation));
            view.rows.insert(name, fresh);
        }
        Ok(news)
    }

    /// The store stopped answering: no lease counts as held any more.
    fn lapse_all(&self) {
        self.view().held.clear();
    }

    /// Listens until the connection fails: each commit raises a generation, each rotate
    /// request reaches the holder.
    async fn listen(&self) -> Result<(), StoreError> {
        let (client, mut connection) = self.target.connect().await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(StoreError::query)?;
        self.counted(1);
        while let Some(payload) = rx.recv().await {
            self.heard(&payload);
        }
        driver.abort();
        Err(StoreError::Unreachable(
            "the listening connection closed".to_owned(),
        ))
    }

    /// A notification: `g GENERATION NAME` (a commit) or `a STAMP NAME` (a rotate request).
    fn heard(&self, payload: &str) {
        let mut parts = payload.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("g"), Some(generation), Some(name)) => {
                if let Ok(generation) = generation.parse::<u64>() {
                    self.tell(name, |news| raise(news, generation));
                }
            }
            (Some("a"), Some(stamp), Some(name)) if self.holds(name) => {
                if let Ok(stamp) = stamp.parse::<i64>() {
                    self.tell(name, |news| ask(news, stamp));
                }
            }
            _ => {}
        }
    }

    /// Gives up every lease this node holds (a clean stop): another node takes over at its
    /// next round instead of a lease later.
    pub async fn release(&self) {
        let Ok(client) = self.client().await else {
            return;
        };
        let kept: Vec<String> = self
            .uncommitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        if !kept.is_empty() {
            tracing::warn!(credentials = %kept.join(","), "keeping these leases: their newest refresh token is only in this node's state directory; start refreshd again here");
        }
        let released = client
            .execute(
                "UPDATE refreshd_credentials SET lease_until = clock_timestamp()
                  WHERE holder = $1 AND NOT (name = ANY($2))",
                &[&self.node, &kept],
            )
            .await;
        self.lapse_all();
        if let Ok(n) = released
            && n > 0
        {
            tracing::info!(leases = n, "leases released");
        }
    }
}

/// What a round tells the credentials' tasks.
#[derive(Default)]
struct RoundNews {
    acquired: Vec<String>,
    asked: Vec<(String, i64)>,
    generations: Vec<(String, u64)>,
}

/// A rotate request's stamp as SQL: microseconds since the epoch. The round and the
/// notification compute it with this same expression from the same column, so they agree.
pub(super) const ASK_STAMP: &str =
    "(extract(epoch FROM rotate_asked_at) * 1000000)::bigint AS rotate_asked_at";

/// Records the rotate request stamped `stamp`; `false` when it was already heard.
fn ask(news: &mut super::News, stamp: i64) -> bool {
    let stamp = u64::try_from(stamp).unwrap_or(0);
    if stamp > news.asks {
        news.asks = stamp;
        true
    } else {
        false
    }
}

pub(super) fn raise(news: &mut super::News, generation: u64) -> bool {
    if generation > news.generation {
        news.generation = generation;
        true
    } else {
        false
    }
}
