//! The hub's store of what nodes told it: one SQLite database (`hub.db` in the fleet dir, WAL
//! mode) in place of a JSON file per node. One writer thread takes every write from a bounded
//! queue and commits what has queued up in one transaction (group commit: one fsync for many
//! heartbeats); readers use their own connections, so a listing never waits for a write.
//!
//! - [`schema`]: the tables and their retention; [`import`]: the one-time import of
//!   `nodes/<id>.json`;
//! - [`write`]: the writes and how each is applied;
//! - [`read`]: the queries the admin API and the console make.

pub mod import;
pub mod read;
pub mod schema;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use super::error::HubApiError;
pub use write::Write;

/// The store's file in the fleet dir.
pub const DB_FILE: &str = "hub.db";
/// Writes waiting for the writer at most; a request finding the queue full waits for room.
const QUEUE: usize = 4096;
/// Writes committed in one transaction at most.
const BATCH: usize = 1024;
/// Read connections at most (each holds two or three open files), kept open for reuse.
const READERS: usize = 4;

/// One write and who waits for its outcome.
struct Job {
    write: Write,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The store: a queue to its writer thread and a pool of read connections.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    queue: tokio::sync::mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    reading: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

/// Opens a connection with the settings every connection of the store uses.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // FULL: a commit is on disk when the node is told its status was taken.
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

impl Store {
    /// Opens (or creates) `hub.db` in `dir`, imports `nodes/*.json` the first time, and starts
    /// the writer thread; the returned future is the writer, to be watched: it ends when
    /// `cancel` fires (after committing what was queued) or when the database fails for good.
    pub fn open(
        dir: &Path,
        cancel: CancellationToken,
    ) -> anyhow::Result<(
        Self,
        impl Future<Output = anyhow::Result<()>> + Send + 'static + use<>,
    )> {
        let path = dir.join(DB_FILE);
        let mut conn = connect(&path).map_err(|e| open_error(&path, &e))?;
        schema::prepare(&mut conn, dir).map_err(|e| open_error(&path, &e))?;
        let (queue, jobs) = tokio::sync::mpsc::channel(QUEUE);
        let writer_path = path.clone();
        let (ended, end) = tokio::sync::oneshot::channel();
        // Its own thread: SQLite blocks while it commits, and the async threads must not.
        std::thread::Builder::new()
            .name("hub-store".into())
            .spawn(move || {
                let _ = ended.send(run_writer(conn, jobs, &cancel, &writer_path));
            })
            .map_err(|e| anyhow::anyhow!("cannot start the store's writer thread: {e}"))?;
        let writer = async move {
            end.await
                .map_err(|_| anyhow::anyhow!("the store's writer thread panicked"))?
        };
        let store = Self {
            path,
            queue,
            readers: Mutex::new(Vec::new()),
            reading: tokio::sync::Semaphore::new(READERS),
        };
        Ok((store, writer))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `write` and waits until it is committed.
    pub async fn write(&self, write: Write) -> Result<(), HubApiError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        // Waits (without a thread) while the queue is full.
        self.queue
            .send(Job { write, done })
            .await
            .map_err(|_| stopped())?;
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                // The reason (and the file) is in the hub's log; the client is told to retry.
                Err(HubApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "the hub cannot store it now (its log says why); send it again later",
                ))
            }
            Err(_) => Err(stopped()),
        }
    }

    /// Runs `query` on a read connection (at most [`READERS`] at once), in one read
    /// transaction (one snapshot), off the async threads.
    pub async fn read<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        query: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HubApiError> {
        let _reader = self
            .reading
            .acquire()
            .await
            .map_err(|_| HubApiError::internal("the store's readers are closed"))?;
        let store = self.clone();
        super::error::blocking(move || {
            let conn = match busbar_base::sync::lock(&store.readers).pop() {
                Some(c) => c,
                None => connect(&store.path).map_err(|e| open_error(&store.path, &e))?,
            };
            let out = conn
                .unchecked_transaction()
                .map_err(anyhow::Error::from)
                .and_then(|tx| {
                    let out = query(&tx);
                    tx.finish()?;
                    out
                });
            let mut pool = busbar_base::sync::lock(&store.readers);
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
    }
}

/// A write refused because the writer is gone.
fn stopped() -> HubApiError {
    HubApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "the hub's store is stopping or stopped",
    )
}

/// An error opening the database, naming it and what to do.
fn open_error(path: &Path, e: &rusqlite::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot open the hub's store {}: {e} (if the file is damaged, move it away: the hub \
         starts with an empty one and nodes report again within a heartbeat)",
        path.display()
    )
}

/// The writer: takes what is queued (at most [`BATCH`]), applies it in one transaction and
/// answers each job. Ends when `cancel` fires (after what was queued), or when every sender
/// is gone. A commit that fails (a full disk) fails its batch, is logged, and is tried
/// again with the next batch after a pause; the hub keeps serving manifests and blobs.
fn run_writer(
    mut conn: Connection,
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
    cancel: &CancellationToken,
    path: &Path,
) -> anyhow::Result<()> {
    let waiter = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| anyhow::anyhow!("the store's writer cannot wait: {e}"))?;
    let mut failures = 0u32;
    loop {
        let first = waiter.block_on(async {
            tokio::select! {
                job = jobs.recv() => job,
                () = cancel.cancelled() => jobs.try_recv().ok(),
            }
        });
        let Some(first) = first else {
            return Ok(());
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match commit(&mut conn, &mut batch) {
            Ok(outcomes) => {
                failures = 0;
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.done.send(outcome);
                }
            }
            Err(e) => {
                let why = format!("cannot commit to {}: {e}", path.display());
                tracing::error!(batch = batch.len(), "{why}");
                for job in batch {
                    let _ = job.done.send(Err(why.clone()));
                }
                // A full disk passes: the next batch tries again, after a pause growing to 1 s.
                failures = failures.saturating_add(1);
                std::thread::sleep(Duration::from_millis(100 * u64::from(failures.min(10))));
            }
        }
    }
}

/// Applies a batch in one transaction; each write in a savepoint of its own, so a write that
/// fails (its own error) does not undo the others.
fn commit(conn: &mut Connection, batch: &mut [Job]) -> rusqlite::Result<Vec<Result<(), String>>> {
    let now = busbar_base::time::unix_ms();
    let mut tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch.iter() {
        let mut sp = tx.savepoint()?;
        match job.write.apply(&sp, now) {
            Ok(()) => {
                sp.commit()?;
                outcomes.push(Ok(()));
            }
            Err(e) => {
                sp.rollback()?;
                outcomes.push(Err(e.to_string()));
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}
