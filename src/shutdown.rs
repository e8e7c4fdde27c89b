//! Shutdown on SIGTERM or Ctrl-C (SIGINT), as a cancellation token.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Resolves on the first SIGTERM/SIGINT (Ctrl-C on Windows).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => info!(signal = "SIGTERM", "shutting down"),
            _ = int.recv() => info!(signal = "SIGINT", "shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        info!(signal = "ctrl-c", "shutting down");
    }
}

/// Runs `work` with a token that is cancelled on the first signal.
pub async fn run_until_signal<F, Fut, T>(work: F) -> T
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let token = CancellationToken::new();
    let watcher = {
        let token = token.clone();
        async move {
            tokio::select! {
                _ = signal() => token.cancel(),
                _ = token.cancelled() => {}
            }
        }
    };
    let guard = token.clone().drop_guard();
    let (out, ()) = tokio::join!(
        async move {
            let out = work(token).await;
            drop(guard);
            out
        },
        watcher
    );
    out
}
