//! SIGINT and SIGTERM while a gate runs: the run is stopped (its future dropped, so the probe's
//! guard spawns its clean-up) and the process exits with 128 + the signal's number.

/// The signal that ended the run.
pub struct Interrupted {
    pub name: &'static str,
    pub exit_code: u8,
}

/// Resolves when SIGINT or SIGTERM arrives (never, if the handlers cannot be installed).
pub async fn interrupted() -> Interrupted {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => Interrupted { name: "SIGINT", exit_code: 130 },
        _ = term.recv() => Interrupted { name: "SIGTERM", exit_code: 143 },
    }
}
