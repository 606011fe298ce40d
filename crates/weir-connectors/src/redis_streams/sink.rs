//! Redis Streams as a Weir sink: pipelined `XADD` (JSON in the field `data`), optional
//! `MAXLEN ~` trimming, exactly once with checkpoints.
//!
//! - With checkpoints: the records of a checkpoint are stored in it (pre-commit) and written
//!   when it completes, with explicit ids `<epoch>-<n>`, where the epoch (milliseconds, chosen
//!   at the barrier and stored with the records) grows with every checkpoint. After a crash the
//!   restored checkpoint's records are written again with the same ids, and Redis refuses the
//!   ones it already has ([`RedisStreamWriter::write_idempotent`]): nothing twice. The stream
//!   must be written by this sink alone (one instance), as explicit ids must keep growing.
//! - Without checkpoints: each batch is written at once (at-least-once).

use super::{RedisStreamWriter, RedisStreamWriterConfig};
use crate::io_runtime::block_on;
use weir_core::{CheckpointId, ErrorKind, OperatorContext, OperatorError, Sink};
use weir_types::Record;

/// Records of one checkpoint, as stored in it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Staged {
    checkpoint: CheckpointId,
    epoch: u64,
    /// JSON text of each record.
    records: Vec<String>,
}

pub struct RedisStreamSink {
    config: RedisStreamWriterConfig,
    writer: Option<RedisStreamWriter>,
    checkpointing: bool,
    current: Vec<String>,
    staged: Vec<Staged>,
    last_epoch: u64,
}

impl RedisStreamSink {
    pub fn new(config: RedisStreamWriterConfig) -> Self {
        RedisStreamSink {
            config,
            writer: None,
            checkpointing: false,
            current: Vec::new(),
            staged: Vec::new(),
            last_epoch: 0,
        }
    }

    fn writer(&mut self) -> Result<&mut RedisStreamWriter, OperatorError> {
        self.writer
            .as_mut()
            .ok_or_else(|| OperatorError::new(ErrorKind::Internal, "sink not opened"))
    }

    /// Writes the staged records of checkpoints up to `upto`, idempotently.
    fn write_staged(&mut self, upto: CheckpointId) -> Result<(), OperatorError> {
        let ready = self
            .staged
            .iter()
            .take_while(|s| s.checkpoint <= upto)
            .count();
        let batches: Vec<Staged> = self.staged.drain(..ready).collect();
        for staged in batches {
            let records: Vec<Record> = staged
                .records
                .iter()
                .map(|json| Record::from_json_str(json))
                .collect::<Result<_, _>>()
                .map_err(|e| OperatorError::new(ErrorKind::Internal, e.to_string()))?;
            let writer = self.writer()?;
            block_on(writer.write_idempotent(staged.epoch, 1, &records))
                .map_err(OperatorError::from)?;
        }
        Ok(())
    }
}

impl Sink<Record> for RedisStreamSink {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<(), OperatorError> {
        let writer = block_on(RedisStreamWriter::connect(self.config.clone()))
            .map_err(OperatorError::from)?;
        self.writer = Some(writer);
        self.checkpointing = ctx.checkpointing();
        if self.checkpointing {
            self.staged = weir_core::state::restore_binary::<Vec<Staged>>(ctx, "records")?
                .unwrap_or_default();
            self.last_epoch = self.staged.iter().map(|s| s.epoch).max().unwrap_or(0);
            // The restored checkpoint completed: write what it staged (again).
            self.write_staged(CheckpointId::MAX)?;
            let writer = self.writer()?;
            let last = block_on(writer.last_id()).map_err(OperatorError::from)?;
            self.last_epoch = self.last_epoch.max(last.map_or(0, |id| id.ms));
        }
        Ok(())
    }

    fn write(
        &mut self,
        batch: &mut Vec<Record>,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if self.checkpointing {
            self.current.extend(batch.drain(..).map(|r| r.to_string()));
            return Ok(());
        }
        let records = std::mem::take(batch);
        let writer = self.writer()?;
        block_on(writer.write(&records)).map_err(OperatorError::from)?;
        Ok(())
    }

    fn snapshot(
        &mut self,
        checkpoint: CheckpointId,
        ctx: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        if !self.checkpointing {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let epoch = now.max(self.last_epoch + 1);
        self.last_epoch = epoch;
        self.staged.push(Staged {
            checkpoint,
            epoch,
            records: std::mem::take(&mut self.current),
        });
        weir_core::state::save_binary(ctx, "records", &self.staged)
    }

    fn commit(
        &mut self,
        checkpoint: CheckpointId,
        _: &mut OperatorContext,
    ) -> Result<(), OperatorError> {
        self.write_staged(checkpoint)
    }
}
