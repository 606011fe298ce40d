//! Bounded channels between tasks, with a policy for when they are full.
//!
//! One channel feeds one downstream task instance; every upstream instance holds a [`Sender`]
//! tagged with its input index, so the receiver can tell inputs apart (to count their ends,
//! take the minimum of their watermarks and align their barriers). Capacity is counted in
//! records, not batches. Control messages (watermarks, barriers, end) are never dropped and
//! never wait: only data is subject to the policy.

use crate::message::Message;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What a full channel does with more data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferPolicy {
    /// Wait until there is room: backpressure up to the sources. Loses nothing.
    #[default]
    Block,
    /// Discard the oldest queued records to make room (counted as dropped).
    DropOldest,
    /// Discard the incoming records that do not fit (counted as dropped).
    DropNewest,
}

/// The channel was closed because the job is aborting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

pub(crate) enum Received {
    Messages,
    Timeout,
    Closed,
}

type Envelope<T> = (u32, Message<T>);

struct State<T> {
    queue: VecDeque<Envelope<T>>,
    records: usize,
    closed: bool,
    receiver_waiting: bool,
    senders_waiting: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
    policy: BufferPolicy,
    dropped: Arc<AtomicU64>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the queue inconsistent (no user code
        // runs under it), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Creates a channel. `dropped` counts records discarded by a drop policy.
pub(crate) fn channel<T>(
    capacity: usize,
    policy: BufferPolicy,
    dropped: Arc<AtomicU64>,
) -> (SenderFactory<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            records: 0,
            closed: false,
            receiver_waiting: false,
            senders_waiting: 0,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        capacity: capacity.max(1),
        policy,
        dropped,
    });
    (
        SenderFactory {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// Makes senders for the inputs of one channel.
pub(crate) struct SenderFactory<T> {
    shared: Arc<Shared<T>>,
}

impl<T> SenderFactory<T> {
    pub(crate) fn sender(&self, input: u32) -> Sender<T> {
        Sender {
            shared: self.shared.clone(),
            input,
        }
    }

    pub(crate) fn closer(&self) -> Arc<dyn Close>
    where
        T: Send + 'static,
    {
        self.shared.clone()
    }
}

/// Lets the job abort every channel without knowing its type.
pub(crate) trait Close: Send + Sync {
    fn close(&self);
    /// Records queued now, and the capacity (for metrics; takes the lock briefly).
    fn level(&self) -> (usize, usize);
}

impl<T: Send> Close for Shared<T> {
    fn level(&self) -> (usize, usize) {
        (self.lock().records, self.capacity)
    }

    fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        drop(st);
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }
}

pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
    input: u32,
}

impl<T> Sender<T> {
    pub(crate) fn send(&self, msg: Message<T>) -> Result<(), Closed> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        if st.closed {
            return Err(Closed);
        }
        let msg = match msg {
            Message::Data(batch, ingest) => {
                let (guard, admitted) = self.admit(st, batch);
                st = guard;
                match admitted? {
                    Some(batch) => Message::Data(batch, ingest),
                    None => return Ok(()),
                }
            }
            control => control,
        };
        st.records += msg.len();
        st.queue.push_back((self.input, msg));
        if st.receiver_waiting {
            drop(st);
            shared.not_empty.notify_one();
        }
        Ok(())
    }

    /// Whether a full channel makes senders wait (the only policy under which several
    /// messages may be gathered and sent at once: nothing is dropped, so order and content
    /// are as if sent one by one).
    pub(crate) fn blocks(&self) -> bool {
        self.shared.policy == BufferPolicy::Block
    }

    /// Sends every message of `msgs` in order under one lock and with at most one wake-up
    /// (emptying `msgs`): what an exchange gathered for this target. Waits, as `send` does
    /// for one batch, until the records fit (or the channel is empty). Only for blocking
    /// channels; with a drop policy each message goes through `send`.
    pub(crate) fn send_all(&self, msgs: &mut Vec<Message<T>>) -> Result<(), Closed> {
        if msgs.is_empty() {
            return Ok(());
        }
        if !self.blocks() {
            for msg in msgs.drain(..) {
                self.send(msg)?;
            }
            return Ok(());
        }
        let shared = &*self.shared;
        let records: usize = msgs.iter().map(Message::len).sum();
        let mut st = shared.lock();
        while st.records > 0 && st.records + records > shared.capacity && !st.closed {
            st.senders_waiting += 1;
            st = shared.not_full.wait(st).unwrap_or_else(|p| p.into_inner());
            st.senders_waiting -= 1;
        }
        if st.closed {
            return Err(Closed);
        }
        st.records += records;
        let input = self.input;
        st.queue.extend(msgs.drain(..).map(|m| (input, m)));
        if st.receiver_waiting {
            drop(st);
            shared.not_empty.notify_one();
        }
        Ok(())
    }

    /// Applies the buffer policy to an incoming batch; returns what is to be queued.
    #[allow(clippy::type_complexity)]
    fn admit<'a>(
        &'a self,
        mut st: MutexGuard<'a, State<T>>,
        mut batch: Vec<T>,
    ) -> (MutexGuard<'a, State<T>>, Result<Option<Vec<T>>, Closed>) {
        let shared = &*self.shared;
        let cap = shared.capacity;
        if st.records + batch.len() <= cap {
            return (st, Ok(Some(batch)));
        }
        match shared.policy {
            BufferPolicy::Block => {
                // A batch larger than the whole capacity still goes through an empty channel.
                while st.records > 0 && st.records + batch.len() > cap && !st.closed {
                    st.senders_waiting += 1;
                    st = shared.not_full.wait(st).unwrap_or_else(|p| p.into_inner());
                    st.senders_waiting -= 1;
                }
                if st.closed {
                    return (st, Err(Closed));
                }
                (st, Ok(Some(batch)))
            }
            BufferPolicy::DropNewest => {
                let room = cap.saturating_sub(st.records);
                let dropped = batch.len() - room.min(batch.len());
                batch.truncate(room);
                shared.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
                (st, Ok((!batch.is_empty()).then_some(batch)))
            }
            BufferPolicy::DropOldest => {
                let mut dropped = 0usize;
                if batch.len() > cap {
                    let excess = batch.len() - cap;
                    batch.drain(..excess);
                    dropped += excess;
                }
                let mut excess = (st.records + batch.len()).saturating_sub(cap);
                let mut i = 0;
                while excess > 0 && i < st.queue.len() {
                    if let Message::Data(old, _) = &mut st.queue[i].1 {
                        let n = excess.min(old.len());
                        old.drain(..n);
                        let now_empty = old.is_empty();
                        excess -= n;
                        dropped += n;
                        st.records -= n;
                        if now_empty {
                            let _ = st.queue.remove(i);
                            continue;
                        }
                    }
                    i += 1;
                }
                shared.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
                (st, Ok(Some(batch)))
            }
        }
    }
}

pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// Moves every queued message into `out`, waiting up to `timeout` for the first one.
    pub(crate) fn recv_all(&self, out: &mut VecDeque<Envelope<T>>, timeout: Duration) -> Received {
        let shared = &*self.shared;
        let mut st = shared.lock();
        loop {
            if !st.queue.is_empty() {
                out.append(&mut st.queue);
                st.records = 0;
                let wake = st.senders_waiting > 0;
                drop(st);
                if wake {
                    shared.not_full.notify_all();
                }
                return Received::Messages;
            }
            if st.closed {
                return Received::Closed;
            }
            st.receiver_waiting = true;
            let (guard, result) = shared
                .not_empty
                .wait_timeout(st, timeout)
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
            st.receiver_waiting = false;
            if result.timed_out() && st.queue.is_empty() {
                return if st.closed {
                    Received::Closed
                } else {
                    Received::Timeout
                };
            }
        }
    }
}
