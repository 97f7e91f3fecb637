//! The `busbar` binary: parse arguments, install logging, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = busbar::cli::Cli::parse();
    let json_logs = cli.log_format == busbar::logging::LogFormat::Json;
    let _log_flush = match busbar::logging::init(&cli.log_output()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    runtime.spawn(stop_on_signal(shutdown.clone()));
    match runtime.block_on(busbar::cli::run(cli, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json_logs {
                tracing::error!("{e:#}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(busbar::client::exit_code(&e))
        }
    }
}

/// Fires `shutdown` on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("Ctrl-C received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    shutdown.cancel();
}
