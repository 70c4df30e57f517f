//! The bounds of the queue between the capture loop and the sink thread,
//! in outcomes *and* bytes: an outcome can carry a peer's whole certificate
//! chain (up to the 64 KiB the kernel captures per direction), so 16,384
//! queued outcomes alone could hold a gigabyte a remote peer chose to send.
//! What does not fit is dropped and counted by the caller.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::outcome::HandshakeOutcome;

/// Bytes of outcomes queued for the sink thread at most.
pub const QUEUE_BYTES: usize = 64 << 20;

/// Outcomes and bytes queued, against their limits. Shared by the capture
/// loop (which admits) and the sink thread (which releases).
#[derive(Debug)]
pub struct QueueBudget {
    max_outcomes: usize,
    max_bytes: usize,
    outcomes: AtomicUsize,
    bytes: AtomicUsize,
}

impl QueueBudget {
    pub fn new(max_outcomes: usize, max_bytes: usize) -> Self {
        QueueBudget {
            max_outcomes: max_outcomes.max(1),
            max_bytes,
            outcomes: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Keeps the longest prefix of `batch` that fits and takes its room;
    /// returns the bytes taken (to [`QueueBudget::release`] when the batch
    /// is handled, or given up) and how many outcomes were cut off.
    pub fn admit(&self, batch: &mut Vec<HandshakeOutcome>) -> (usize, usize) {
        let waiting = self.outcomes.load(Ordering::Relaxed);
        let mut room_bytes = self
            .max_bytes
            .saturating_sub(self.bytes.load(Ordering::Relaxed));
        let room = self.max_outcomes.saturating_sub(waiting).min(batch.len());
        let mut kept = 0;
        let mut taken = 0;
        for outcome in batch.iter().take(room) {
            let size = outcome_bytes(outcome);
            if size > room_bytes {
                break;
            }
            room_bytes -= size;
            taken += size;
            kept += 1;
        }
        let dropped = batch.len() - kept;
        batch.truncate(kept);
        self.outcomes.fetch_add(kept, Ordering::Relaxed);
        self.bytes.fetch_add(taken, Ordering::Relaxed);
        (taken, dropped)
    }

    /// Gives back the room of `outcomes` outcomes of `bytes` bytes.
    pub fn release(&self, outcomes: usize, bytes: usize) {
        self.outcomes.fetch_sub(outcomes, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Outcomes and bytes queued now.
    pub fn queued(&self) -> (usize, usize) {
        (
            self.outcomes.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Roughly the memory an outcome holds: its fixed size, the chains it
/// carries and its lists of strings.
pub fn outcome_bytes(o: &HandshakeOutcome) -> usize {
    let strings = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
    let tls = &o.tls;
    let hello = tls.client_hello.as_ref().map_or(0, |h| {
        strings(&h.supported_versions)
            + strings(&h.cipher_suites)
            + strings(&h.alpn)
            + strings(&h.supported_groups)
            + strings(&h.signature_algorithms)
    });
    std::mem::size_of::<HandshakeOutcome>()
        + tls
            .server_chain_der
            .iter()
            .map(|c| c.len() + 24)
            .sum::<usize>()
        + tls
            .server_certificates
            .iter()
            .map(|c| c.heap_bytes())
            .sum::<usize>()
        + hello
        + strings(&tls.offered_versions)
        + strings(&tls.anomalies)
        + tls.messages.len() * 64
        + tls.alerts.len() * 64
        + tls.encrypted_records.len() * 48
        + o.openssl.calls.len() * 64
        + o.openssl
            .errors
            .iter()
            .map(|e| e.text.len() + 64)
            .sum::<usize>()
        + strings(&o.openssl.reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::sample_failure;

    fn with_chain(bytes: usize) -> HandshakeOutcome {
        let mut o = sample_failure();
        o.tls.server_chain_der = vec![vec![0x30; bytes]];
        o
    }

    /// A peer that sends 64 KiB "certificates" on every connection cannot
    /// fill the queue past its byte budget, however many outcomes fit.
    #[test]
    fn large_chains_are_bounded_by_bytes_not_count() {
        let budget = QueueBudget::new(16_384, 1 << 20);
        let mut total_dropped = 0;
        let mut taken_total = 0;
        for _ in 0..64 {
            let mut batch: Vec<_> = (0..8).map(|_| with_chain(64 << 10)).collect();
            let (taken, dropped) = budget.admit(&mut batch);
            assert_eq!(taken, batch.iter().map(outcome_bytes).sum::<usize>());
            taken_total += taken;
            total_dropped += dropped;
        }
        let (queued, bytes) = budget.queued();
        assert!(bytes <= 1 << 20, "{bytes}");
        assert_eq!(bytes, taken_total);
        assert!(queued < 16, "{queued} outcomes of 64 KiB in 1 MiB");
        assert_eq!(queued + total_dropped, 64 * 8);
        // Handled outcomes give their room back.
        budget.release(queued, bytes);
        assert_eq!(budget.queued(), (0, 0));
        let mut small: Vec<_> = (0..100).map(|_| sample_failure()).collect();
        assert_eq!(budget.admit(&mut small).1, 0);
        assert_eq!(small.len(), 100);
    }

    #[test]
    fn the_count_still_bounds_small_outcomes() {
        let budget = QueueBudget::new(10, QUEUE_BYTES);
        let mut batch: Vec<_> = (0..25).map(|_| sample_failure()).collect();
        assert_eq!(budget.admit(&mut batch).1, 15);
        assert_eq!(batch.len(), 10);
        let mut more = vec![sample_failure()];
        assert_eq!(budget.admit(&mut more).1, 1);
        assert!(more.is_empty());
    }
}
