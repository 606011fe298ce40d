//! Input that can be waited on with a timeout, so that a line reader returns a partial batch
//! when its input goes quiet instead of blocking in a read until a batch is full.
//!
//! A regular file never makes a reader wait (its reads return at once, at worst with end of
//! file); standard input can block for ever, so it is read by a thread of its own into a
//! channel, which the source waits on with the batch timeout.

use std::fs::File;
use std::io::Read;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

/// Bytes read from standard input per chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the reader thread and the source: backpressure beyond that.
const CHUNKS_IN_FLIGHT: usize = 16;

/// What a line source reads from.
pub(crate) enum Input {
    File(File),
    Stdin(StdinPipe),
}

impl Input {
    /// Whether a read would return at once (with data or end of input), waiting up to
    /// `timeout` for that.
    #[inline]
    pub(crate) fn wait_readable(&mut self, timeout: Duration) -> bool {
        match self {
            Input::File(_) => true,
            Input::Stdin(pipe) => pipe.wait_readable(timeout),
        }
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Input::File(f) => f.read(buf),
            Input::Stdin(pipe) => pipe.read(buf),
        }
    }
}

/// Standard input, read by a thread of its own.
pub(crate) struct StdinPipe {
    chunks: Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    /// The reader thread is done: end of input (or the error below) comes next.
    closed: bool,
    pending_error: Option<std::io::Error>,
}

impl StdinPipe {
    pub(crate) fn spawn() -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        std::thread::Builder::new()
            .name("weir:stdin".into())
            .spawn(move || read_stdin(tx))?;
        Ok(StdinPipe {
            chunks: rx,
            current: Vec::new(),
            at: 0,
            closed: false,
            pending_error: None,
        })
    }

    fn wait_readable(&mut self, timeout: Duration) -> bool {
        if self.at < self.current.len() || self.closed {
            return true;
        }
        match self.chunks.recv_timeout(timeout) {
            Ok(Ok(chunk)) => {
                self.current = chunk;
                self.at = 0;
                true
            }
            // The error is delivered by the next read.
            Ok(Err(e)) => {
                self.closed = true;
                self.pending_error = Some(e);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                true
            }
        }
    }
}

impl Read for StdinPipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.current.len() {
            if let Some(e) = self.pending_error.take() {
                return Err(e);
            }
            if self.closed {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.closed = true;
                    return Err(e);
                }
                Err(_) => self.closed = true,
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn read_stdin(tx: SyncSender<std::io::Result<Vec<u8>>>) {
    let mut stdin = std::io::stdin().lock();
    loop {
        let mut chunk = vec![0; CHUNK];
        match stdin.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                chunk.truncate(n);
                if tx.send(Ok(chunk)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// Standard input cut at CSV row boundaries: reads hand out whole rows only (a newline
/// outside quotes ends a row; a doubled quote inside quotes keeps the count even), so a CSV
/// parser never blocks in the middle of a row, and a source can wait for the next row with a
/// timeout before asking the parser for it.
pub(crate) struct CsvRowPipe {
    pipe: StdinPipe,
    /// Bytes from the pipe not yet handed out start at `start`.
    frame: Vec<u8>,
    start: usize,
    /// `frame[..complete]` ends at a row boundary.
    complete: usize,
    scanned: usize,
    in_quotes: bool,
    eof: bool,
}

impl CsvRowPipe {
    pub(crate) fn spawn() -> std::io::Result<Self> {
        Ok(CsvRowPipe {
            pipe: StdinPipe::spawn()?,
            frame: Vec::new(),
            start: 0,
            complete: 0,
            scanned: 0,
            in_quotes: false,
            eof: false,
        })
    }

    fn has_row(&self) -> bool {
        self.complete > self.start || self.eof
    }

    /// Reads what the pipe has (blocking until something) and finds row boundaries in it.
    fn pull(&mut self) -> std::io::Result<()> {
        if self.start > 0 && self.start * 2 >= self.frame.len() {
            self.frame.drain(..self.start);
            self.complete -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        let len = self.frame.len();
        self.frame.resize(len + CHUNK, 0);
        let n = self.pipe.read(&mut self.frame[len..]);
        self.frame.truncate(len + *n.as_ref().unwrap_or(&0));
        if n? == 0 {
            self.eof = true;
        }
        for (i, b) in self.frame.iter().enumerate().skip(self.scanned) {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.complete = i + 1,
                _ => {}
            }
        }
        self.scanned = self.frame.len();
        Ok(())
    }

    /// Whether a whole row (or the end of input) can be read, waiting up to `timeout`.
    pub(crate) fn wait_row(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while !self.has_row() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !self.pipe.wait_readable(left) {
                return false;
            }
            if self.pull().is_err() {
                // The error comes again with the next read.
                self.eof = true;
            }
        }
        true
    }
}

impl Read for CsvRowPipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while !self.has_row() {
            self.pull()?;
        }
        let end = if self.eof && self.complete <= self.start {
            self.frame.len()
        } else {
            self.complete
        };
        let n = buf.len().min(end - self.start);
        buf[..n].copy_from_slice(&self.frame[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}
