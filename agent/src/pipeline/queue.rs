//! The bounded queue from the capture task to the sink thread.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use tracing::warn;

use crate::outcome::HandshakeOutcome;
use crate::queue_budget::QueueBudget;

/// The bounded queue to the sink thread. What does not fit is counted.
pub struct OutcomeQueue {
    /// Each batch travels with the bytes it took.
    pub tx: Option<SyncSender<(Vec<HandshakeOutcome>, usize)>>,
    /// Outcomes (at most `--queue`) and bytes sent and not yet handled by
    /// the sink thread.
    pub queued: Arc<QueueBudget>,
    pub dropped: u64,
    pub warned_at: Option<std::time::Instant>,
    /// Only these server ports (`--port`), when set.
    pub ports: Vec<u16>,
}

impl OutcomeQueue {
    pub fn send(&mut self, mut batch: Vec<HandshakeOutcome>) {
        if !self.ports.is_empty() {
            batch.retain(|o| o.server.port.is_some_and(|p| self.ports.contains(&p)));
        }
        if batch.is_empty() {
            return;
        }
        if self.tx.is_none() {
            return;
        }
        // Keep what fits; the rest is counted.
        let (bytes, over) = self.queued.admit(&mut batch);
        if over > 0 {
            self.note_dropped(over as u64);
        }
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        let Some(tx) = &self.tx else { return };
        let sent = tx.try_send((batch, bytes));
        if let Err(TrySendError::Full((batch, _)) | TrySendError::Disconnected((batch, _))) = sent {
            self.queued.release(n, bytes);
            self.note_dropped(batch.len() as u64);
        }
    }

    /// Closes the queue: the sink thread ends once it has handled the rest.
    pub fn close(&mut self) {
        drop(self.tx.take());
    }

    fn note_dropped(&mut self, n: u64) {
        self.dropped += n;
        let quiet = self
            .warned_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10));
        if !quiet {
            warn!(
                dropped_total = self.dropped,
                "outcome queue full: outcomes dropped (counted)"
            );
            self.warned_at = Some(std::time::Instant::now());
        }
    }
}
