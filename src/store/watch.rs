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
        match &result {
            // A row lock not granted in time is a busy row, not a store that is down: the
            // leases held are not dropped for it (the next round renews them).
            Err(e) if e.is_busy() => {
                tracing::debug!(store = %self.target.describe, "round: {e}");
                return result;
            }
            Err(_) => {
                self.reset().await;
                self.lapse_all();
            }
            Ok(()) => {}
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
        let news = self.apply_rows(Some((&claimed, sent + self.lease)), &rows)?;
        self.announce(news);
        Ok(())
    }

    /// Tells each credential's task what the rows said.
    fn announce(&self, news: RoundNews) {
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
    }

    /// The round's four statements: heartbeat, rows made, leases renewed or taken (the
    /// names claimed), generations read (every row).
    async fn send_round(
        &self,
        client: &tokio_postgres::Client,
        names: &Vec<String>,
    ) -> Result<(Vec<tokio_postgres::Row>, Vec<tokio_postgres::Row>), StoreError> {
        let lease = self.lease.as_secs_f64();
        // A row whose intent names another node is taken over only once that node is gone:
        // its heartbeat older than a lease, by a database up for longer than a lease, seen
        // from a node whose own rounds have worked for a lease. After a restart or an outage
        // of the database, every holder that lives beats again (and renews its leases)
        // before another node may conclude it is gone.
        let settled = self
            .view()
            .answering_since
            .is_some_and(|since| since.elapsed() >= self.lease);
        let names_params: [Param<'_>; 1] = [names];
        let claim_params: [Param<'_>; 4] = [names, &self.node, &lease, &settled];
        let heartbeat = super::instance::beat(client, &self.node, self.instance.as_ref());
        // Only names without a row: `ON CONFLICT` on an existing row waits for the lock a
        // refresh in flight holds on it (a slow provider would then look like a store that
        // does not answer), while `NOT EXISTS` is a plain read that never waits.
        let made = client.execute(
            "INSERT INTO refreshd_credentials (name)
             SELECT n FROM unnest($1::text[]) AS n
              WHERE NOT EXISTS (SELECT 1 FROM refreshd_credentials c WHERE c.name = n)
             ON CONFLICT (name) DO NOTHING",
            &names_params,
        );
        // The rows must exist before the claim runs: `join!` polls its futures in a rotating
        // order, so the two could reach the server the other way round and a new
        // credential would go unclaimed for a round (and a one-shot command would fail).
        let (heartbeat, made) = tokio::join!(heartbeat, made);
        // A daemon whose row another instance took acts no more for the node: no claim.
        heartbeat?;
        made.map_err(StoreError::query)?;
        // Rows locked by a refresh in flight are skipped: their lease was extended when it
        // began, and a takeover must wait for its transaction anyway.
        let claimed = client
            .query(
            "WITH free AS (
                 SELECT name FROM refreshd_credentials f
                  WHERE name = ANY($1)
                    AND (holder = $2 OR holder IS NULL OR lease_until IS NULL OR lease_until < clock_timestamp())
                    AND (holder = $2 OR refreshing IS NULL OR refreshing = $2
                         OR ($4 AND pg_postmaster_start_time() < clock_timestamp() - make_interval(secs => $3)
                             AND NOT EXISTS (SELECT 1 FROM refreshd_nodes n
                                              WHERE n.name = f.refreshing
                                                AND n.heartbeat > clock_timestamp() - make_interval(secs => $3))))
                  FOR UPDATE SKIP LOCKED)
             UPDATE refreshd_credentials c
                SET holder = $2, lease_until = clock_timestamp() + make_interval(secs => $3),
                    refreshing = CASE WHEN c.holder = $2 THEN c.refreshing END,
                    refreshing_since = CASE WHEN c.holder = $2 THEN c.refreshing_since END
               FROM free WHERE c.name = free.name
             RETURNING c.name",
            &claim_params,
        )
            .await
            .map_err(StoreError::query)?;
        let rows = self.read_rows(client, names).await?;
        self.counted(3);
        Ok((claimed, rows))
    }

    /// The rows of `names` as a round reads them (a plain read: it never waits on a row that
    /// a refresh holds).
    async fn read_rows(
        &self,
        client: &tokio_postgres::Client,
        names: &Vec<String>,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
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
        self.counted(1);
        Ok(rows)
    }

    /// Records rows read in the view, and what each credential's task is to be told. A
    /// round's (`leases`: the names claimed, held until the instant) renews the leases; a
    /// notification's re-read leaves them as they are.
    fn apply_rows(
        &self,
        leases: Option<(&HashSet<String>, tokio::time::Instant)>,
        rows: &[tokio_postgres::Row],
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
            let held = match leases {
                Some((claimed, until)) if claimed.contains(&name) => {
                    view.held.insert(name.clone(), until);
                    if !held_before {
                        news.acquired.push(name.clone());
                    }
                    true
                }
                Some(_) => {
                    if fresh.holder.as_deref() != Some(self.node.as_str()) {
                        view.held.remove(&name);
                    }
                    false
                }
                None => held_before,
            };
            let old = view.rows.get(&name);
            // A request already there when this node first read the row is old news; one
            // is this node's to answer only while it holds the lease.
            if let Some(stamp) = fresh.rotate_asked_at
                && old.is_some_and(|o| o.rotate_asked_at != fresh.rotate_asked_at)
                && held
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

    /// Listens until the connection fails. A notification is a hint, never an order: it
    /// names a credential whose row to read again (any role that can log in may send one,
    /// with any payload), and what to do is decided from the row, as a round would. Hints
    /// that come in a burst are read together, at most one read per [`HINT_INTERVAL`].
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
        let mut named = HashSet::new();
        while let Some(payload) = rx.recv().await {
            self.hinted(&payload, &mut named);
            while let Ok(payload) = rx.try_recv() {
                self.hinted(&payload, &mut named);
            }
            if !named.is_empty() {
                let names: Vec<String> = named.drain().collect();
                if let Err(e) = self.reread(names).await {
                    tracing::debug!("store listener: {e}");
                }
                tokio::time::sleep(HINT_INTERVAL).await;
            }
        }
        driver.abort();
        Err(StoreError::Unreachable(
            "the listening connection closed".to_owned(),
        ))
    }

    /// Adds the credential a notification names to `named`, when it is one of this node's.
    /// `g GENERATION NAME` (a commit) and `a STAMP NAME` (a rotate request) are the shapes
    /// refreshd sends; the number is not believed.
    fn hinted(&self, payload: &str, named: &mut HashSet<String>) {
        let mut parts = payload.splitn(3, ' ');
        if let (Some("g" | "a"), Some(_), Some(name)) = (parts.next(), parts.next(), parts.next())
            && !named.contains(name)
            && crate::sync::lock(&self.news).contains_key(name)
        {
            named.insert(name.to_owned());
        }
    }

    /// Reads the rows of `names` again and tells their tasks what changed.
    async fn reread(&self, names: Vec<String>) -> Result<(), StoreError> {
        let client = self.client().await?;
        let rows = self.read_rows(&client, &names).await?;
        let news = self.apply_rows(None, &rows)?;
        self.announce(news);
        Ok(())
    }

    /// Gives up every lease this node holds (a clean stop): another node takes over at its
    /// next round instead of a lease later.
    pub async fn release(&self) {
        let Ok(client) = self.client().await else {
            return;
        };
        let kept: Vec<String> = crate::sync::lock(&self.uncommitted)
            .iter()
            .cloned()
            .collect();
        if !kept.is_empty() {
            tracing::warn!(credentials = %kept.join(","), "keeping these leases: their newest refresh token is only in this node's state directory; start refreshd again here");
        }
        let released = client
            .execute(
                "UPDATE refreshd_credentials
                    SET lease_until = clock_timestamp(), refreshing = NULL, refreshing_since = NULL
                  WHERE holder = $1 AND NOT (name = ANY($2))",
                &[&self.node, &kept],
            )
            .await;
        self.lapse_all();
        if let Some(instance) = &self.instance {
            super::instance::leave(&client, &self.node, instance).await;
        }
        if let Ok(n) = released
            && n > 0
        {
            tracing::info!(leases = n, "leases released");
        }
    }
}

/// The least time between two reads prompted by notifications: a flood of them (from any
/// role that can log in) costs the store a few reads a second.
const HINT_INTERVAL: Duration = Duration::from_millis(50);

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
