//! Realtime first: while a realtime query runs on the agent, reload cursors
//! step aside, so the chart query gets the machine's cores and the reload's
//! database backend blocks on a full socket instead of competing with it.
//!
//! A reload is never starved: it pauses at most [`MAX_PAUSE`] at a time and
//! then runs for at least [`MIN_RUN`] before it can be paused again, so under
//! a continuous realtime load it still gets about a fifth of its speed; and a
//! realtime query holds reloads back only for its first [`REALTIME_WINDOW`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Longest a reload waits for realtime queries to finish.
pub const MAX_PAUSE: Duration = Duration::from_millis(20);
/// Shortest run a reload gets after a pause that hit [`MAX_PAUSE`].
pub const MIN_RUN: Duration = Duration::from_millis(5);
/// How long one realtime query holds reloads back: a chart query is done
/// well within it; a longer one is an export and competes as an equal.
pub const REALTIME_WINDOW: Duration = Duration::from_secs(2);
/// Rows between two checks: an atomic load, so the idle cost is nil.
const CHECK_EVERY: u32 = 32;

/// The realtime queries running on one agent, shared by all its sources
/// (they share the machine's cores).
#[derive(Debug, Default)]
pub struct Priority {
    realtime: AtomicUsize,
    idle: Notify,
}

impl Priority {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Marks a realtime query as running until the guard is dropped.
    pub fn realtime(self: &Arc<Self>) -> RealtimeGuard {
        self.realtime.fetch_add(1, Ordering::AcqRel);
        RealtimeGuard(self.clone())
    }

    /// Whether a realtime query is running.
    pub fn busy(&self) -> bool {
        self.realtime.load(Ordering::Acquire) > 0
    }
}

/// Held for the life of one realtime query.
#[derive(Debug)]
pub struct RealtimeGuard(Arc<Priority>);

impl Drop for RealtimeGuard {
    fn drop(&mut self) {
        if self.0.realtime.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A reload's side: called once per row by the connector's read loop.
#[derive(Debug, Default)]
pub struct Pacer {
    priority: Option<Arc<Priority>>,
    rows: u32,
    free_until: Option<Instant>,
    paused: Duration,
}

impl Pacer {
    /// `None` never pauses (realtime queries, tests).
    pub fn new(priority: Option<Arc<Priority>>) -> Self {
        Pacer {
            priority,
            ..Pacer::default()
        }
    }

    /// Total time this query stepped aside so far.
    pub fn paused(&self) -> Duration {
        self.paused
    }

    /// The priority to wait on, if this row is a check point and a realtime
    /// query runs and the reload is not in its guaranteed run.
    fn due(&mut self) -> Option<Arc<Priority>> {
        self.rows = self.rows.wrapping_add(1);
        if !self.rows.is_multiple_of(CHECK_EVERY) {
            return None;
        }
        let p = self.priority.as_ref()?;
        if !p.busy() {
            return None;
        }
        if self.free_until.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        Some(p.clone())
    }

    /// Async read loops (PostgreSQL, MySQL, SQL Server).
    pub async fn row(&mut self) {
        let Some(p) = self.due() else { return };
        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + MAX_PAUSE);
        let mut timed_out = false;
        loop {
            let notified = p.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a guard dropped in between
            // still wakes us.
            notified.as_mut().enable();
            if !p.busy() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.free_until = Some(Instant::now() + MIN_RUN);
                timed_out = true;
                break;
            }
        }
        self.paused += start.elapsed();
        tracing::trace!(
            paused_us = start.elapsed().as_micros() as u64,
            timed_out,
            "reload stepped aside for realtime"
        );
    }

    /// Blocking read loops (SQLite, on a blocking thread).
    pub fn row_blocking(&mut self) {
        let Some(p) = self.due() else { return };
        let start = Instant::now();
        while p.busy() {
            if start.elapsed() >= MAX_PAUSE {
                self.free_until = Some(Instant::now() + MIN_RUN);
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        self.paused += start.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn rows(pacer: &mut Pacer, n: u32) {
        for _ in 0..n {
            pacer.row().await;
        }
    }

    #[tokio::test]
    async fn reload_waits_for_realtime_then_resumes() {
        let p = Priority::new();
        let mut pacer = Pacer::new(Some(p.clone()));
        rows(&mut pacer, 1000).await;
        assert_eq!(
            pacer.paused(),
            Duration::ZERO,
            "paused with no realtime query"
        );
        let guard = p.realtime();
        let release = async {
            tokio::time::sleep(Duration::from_millis(8)).await;
            drop(guard);
        };
        tokio::join!(rows(&mut pacer, CHECK_EVERY), release);
        assert!(
            pacer.paused() >= Duration::from_millis(7),
            "{:?}",
            pacer.paused()
        );
        assert!(
            pacer.free_until.is_none(),
            "woke by timeout, not by the release"
        );
        assert!(!p.busy());
        let before = pacer.paused();
        rows(&mut pacer, 1000).await;
        assert_eq!(pacer.paused(), before);
    }

    #[tokio::test]
    async fn a_long_realtime_query_pauses_a_reload_only_briefly() {
        let p = Priority::new();
        let _guard = p.realtime();
        let mut pacer = Pacer::new(Some(p.clone()));
        rows(&mut pacer, CHECK_EVERY).await;
        let paused = pacer.paused();
        assert!(
            paused >= MAX_PAUSE && paused < Duration::from_secs(2),
            "{paused:?}"
        );
        assert!(pacer.free_until.is_some());
        // Then a guaranteed run: no pause at the next check points.
        pacer.free_until = Some(Instant::now() + Duration::from_secs(60));
        rows(&mut pacer, 10 * CHECK_EVERY).await;
        assert_eq!(pacer.paused(), paused);
    }

    #[test]
    fn blocking_loops_pause_too() {
        let p = Priority::new();
        let guard = p.realtime();
        let mut pacer = Pacer::new(Some(p.clone()));
        for _ in 0..CHECK_EVERY {
            pacer.row_blocking();
        }
        assert!(pacer.paused() >= MAX_PAUSE);
        drop(guard);
        let before = pacer.paused();
        pacer.free_until = None;
        for _ in 0..1000 {
            pacer.row_blocking();
        }
        assert_eq!(pacer.paused(), before);
    }

    #[test]
    fn realtime_queries_need_no_pacer() {
        let p = Priority::new();
        let _guard = p.realtime();
        let mut pacer = Pacer::new(None);
        for _ in 0..1000 {
            pacer.row_blocking();
        }
        assert_eq!(pacer.paused(), Duration::ZERO);
    }
}
