//! The probe's attempts after the default client run side by side on a
//! few threads (each named [`PROBE_THREAD_NAME`], like every probe socket's
//! thread), so the whole matrix takes about as long as its longest chain
//! of round trips, not their sum.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{PROBE_THREAD_NAME, ProbeError, Progress};

/// Connections open at once, at most: enough to hide round trips, few
/// enough not to look like a flood (or fill a small server's backlog).
pub const MAX_PARALLEL: usize = 6;

/// A unit of work and the stage it reports in the progress line.
pub struct Job<'a, T> {
    pub stage: &'static str,
    pub run: Box<dyn FnOnce() -> T + Send + 'a>,
}

impl<'a, T> Job<'a, T> {
    pub fn new(stage: &'static str, run: impl FnOnce() -> T + Send + 'a) -> Job<'a, T> {
        Job {
            stage,
            run: Box::new(run),
        }
    }
}

/// Runs `jobs` on up to `workers` threads; the results come back in the
/// jobs' order. `progress` hears of each job as it finishes.
pub fn run_all<'a, T: Send>(
    jobs: Vec<Job<'a, T>>,
    workers: usize,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Vec<T>, ProbeError> {
    let total = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..total).map(|_| None).collect());
    let done = Mutex::new(0usize);
    let next = || queue.lock().ok().and_then(|mut q| q.pop_front());
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for _ in 0..workers.clamp(1, total.max(1)) {
            let spawned = std::thread::Builder::new()
                .name(PROBE_THREAD_NAME.to_string())
                .spawn_scoped(scope, || {
                    while let Some((i, job)) = next() {
                        let stage = job.stage;
                        let value = (job.run)();
                        if let Ok(mut r) = results.lock()
                            && let Some(slot) = r.get_mut(i)
                        {
                            *slot = Some(value);
                        }
                        let finished = done.lock().map(|mut d| {
                            *d += 1;
                            *d
                        });
                        progress(&Progress {
                            stage,
                            done: finished.unwrap_or(0),
                            total,
                        });
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) if handles.is_empty() => {
                    return Err(ProbeError::Internal(format!(
                        "cannot start a probe thread: {e}",
                        e = crate::text::Chain(&e)
                    )));
                }
                // Fewer workers than asked for still finish the queue.
                Err(_) => break,
            }
        }
        for h in handles {
            h.join()
                .map_err(|_| ProbeError::Internal("a probe thread panicked".to_string()))?;
        }
        Ok(())
    })?;
    let results = results
        .into_inner()
        .map_err(|_| ProbeError::Internal("a probe thread panicked".to_string()))?;
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| ProbeError::Internal("a probe job did not run".to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn jobs_run_in_parallel_and_come_back_in_order() {
        let heard = AtomicUsize::new(0);
        let active = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let jobs: Vec<Job<usize>> = (0..6)
            .map(|i| {
                let (active, most) = (&active, &most);
                Job::new("test", move || {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    active.fetch_sub(1, Ordering::SeqCst);
                    assert_eq!(std::thread::current().name(), Some(PROBE_THREAD_NAME));
                    i * 10
                })
            })
            .collect();
        let out = run_all(jobs, 3, &|p: &Progress| {
            heard.fetch_add(1, Ordering::Relaxed);
            assert_eq!(p.total, 6);
        })
        .unwrap();
        assert_eq!(out, [0, 10, 20, 30, 40, 50]);
        assert_eq!(heard.load(Ordering::Relaxed), 6);
        let most = most.load(Ordering::SeqCst);
        assert!((2..=3).contains(&most), "{most} jobs at once");
        assert!(
            run_all(Vec::<Job<()>>::new(), 4, &|_| {})
                .unwrap()
                .is_empty()
        );
    }
}
