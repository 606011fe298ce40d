//! The durable store: one fjall keyspace `tasks` (task id → JSON record) behind a writer thread
//! that commits whatever has queued up as one atomic batch (group commit). Submits wait for
//! their batch to be fsynced (`fdatasync`); status changes are flushed to the OS at once
//! (enough for `kill -9`) and synced with the next submit.

use crate::error::TaskError;
use crate::model::TaskRecord;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub(crate) enum Write {
    Put(String, Vec<u8>),
    Delete(String),
}

struct Cmd {
    writes: Vec<Write>,
    /// Wait for `fdatasync` (submits); otherwise flushed to OS buffers.
    sync: bool,
    done: Option<oneshot::Sender<Result<(), TaskError>>>,
    /// Ids to drop from `recent` once written (terminal records kept in memory until then).
    evict: Vec<String>,
}

/// Records not yet readable from the store (terminal ones between their transition and their
/// write).
pub(crate) type Recent = Arc<Mutex<HashMap<String, Arc<TaskRecord>>>>;

pub(crate) struct Store {
    path: PathBuf,
    tasks: Keyspace,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub recent: Recent,
}

impl Store {
    /// Opens (or recovers) the store in `dir`, returning every stored record.
    pub fn open(dir: &Path) -> Result<(Store, Vec<TaskRecord>), TaskError> {
        let backend = |e: fjall::Error| TaskError::Store {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| TaskError::Store {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let db = Database::builder(dir)
            .manual_journal_persist(true)
            .open()
            .map_err(backend)?;
        let tasks = db
            .keyspace("tasks", || {
                KeyspaceCreateOptions::default().manual_journal_persist(true)
            })
            .map_err(backend)?;
        let mut records = Vec::new();
        for guard in tasks.iter() {
            let (key, value) = guard.into_inner().map_err(backend)?;
            let record: TaskRecord =
                serde_json::from_slice(&value).map_err(|e| TaskError::Store {
                    path: dir.display().to_string(),
                    message: format!(
                        "task {} has an unreadable record: {e}",
                        String::from_utf8_lossy(&key)
                    ),
                })?;
            records.push(record);
        }
        let recent: Recent = Arc::default();
        let (tx, rx) = mpsc::channel::<Cmd>();
        let writer_db = db.clone();
        let writer_tasks = tasks.clone();
        let writer_recent = recent.clone();
        let writer_path = dir.display().to_string();
        let thread = std::thread::Builder::new()
            .name("weir-tasks-writer".into())
            .spawn(move || writer(writer_db, writer_tasks, rx, writer_recent, writer_path))
            .map_err(|e| TaskError::Store {
                path: dir.display().to_string(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok((
            Store {
                path: dir.to_path_buf(),
                tasks,
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                recent,
            },
            records,
        ))
    }

    fn send(&self, cmd: Cmd) -> Result<(), TaskError> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(cmd).map_err(|_| TaskError::ShutDown),
            None => Err(TaskError::ShutDown),
        }
    }

    /// Sends writes whose batch will be fsynced; the receiver answers once it is.
    pub fn send_durable(
        &self,
        writes: Vec<Write>,
    ) -> Result<oneshot::Receiver<Result<(), TaskError>>, TaskError> {
        let (done, wait) = oneshot::channel();
        self.send(Cmd {
            writes,
            sync: true,
            done: Some(done),
            evict: Vec::new(),
        })?;
        Ok(wait)
    }

    /// Writes and waits until the batch holding these writes is fsynced.
    pub async fn write_durable(&self, writes: Vec<Write>) -> Result<(), TaskError> {
        self.send_durable(writes)?
            .await
            .map_err(|_| TaskError::ShutDown)?
    }

    /// Writes without waiting (flushed to the OS with its batch).
    pub fn write(&self, writes: Vec<Write>, evict: Option<String>) {
        let evict_ids: Vec<String> = evict.into_iter().collect();
        if self
            .send(Cmd {
                writes,
                sync: false,
                done: None,
                evict: evict_ids.clone(),
            })
            .is_err()
        {
            // Shut down: the write is lost like any after a crash; the record stays readable.
            tracing::debug!(target: "weir_tasks", "write after shutdown dropped");
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<TaskRecord>, TaskError> {
        let value = self.tasks.get(id).map_err(|e| TaskError::Store {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        match value {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| TaskError::Store {
                    path: self.path.display().to_string(),
                    message: format!("task {id} has an unreadable record: {e}"),
                }),
        }
    }

    /// Stops the writer after everything sent so far is written and synced.
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

pub(crate) fn encode(record: &TaskRecord) -> Vec<u8> {
    // A record of JSON values and plain fields always serialises.
    serde_json::to_vec(record).unwrap_or_default()
}

fn writer(db: Database, tasks: Keyspace, rx: mpsc::Receiver<Cmd>, recent: Recent, path: String) {
    const MAX_BATCH: usize = 4096;
    while let Ok(first) = rx.recv() {
        let mut cmds = vec![first];
        while cmds.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(cmd) => cmds.push(cmd),
                Err(_) => break,
            }
        }
        let mut batch = db.batch();
        let mut sync = false;
        for cmd in &mut cmds {
            sync |= cmd.sync;
            for w in cmd.writes.drain(..) {
                match w {
                    Write::Put(id, bytes) => batch.insert(&tasks, id, bytes),
                    Write::Delete(id) => batch.remove(&tasks, id),
                }
            }
        }
        let mode = if sync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        let result = batch
            .commit()
            .and_then(|()| db.persist(mode))
            .map_err(|e| TaskError::Store {
                path: path.clone(),
                message: e.to_string(),
            });
        if let Err(e) = &result {
            tracing::error!(target: "weir_tasks", "task store write failed: {e}");
        }
        {
            let mut recent = recent.lock().unwrap_or_else(|p| p.into_inner());
            for cmd in &cmds {
                for id in &cmd.evict {
                    recent.remove(id);
                }
            }
        }
        for cmd in cmds {
            if let Some(done) = cmd.done {
                let _ = done.send(result.clone());
            }
        }
    }
    let _ = db.persist(PersistMode::SyncData);
}
