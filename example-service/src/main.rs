//! `example-service`: the library API and the TechEmpower endpoints on Lifeguard.
//!
//! ```text
//! example-service [--listen ADDR]
//! ```
//!
//! Configuration comes from the environment (`example_service::config`); the service
//! migrates its schema, seeds, serves until SIGTERM or SIGINT, then shuts down gracefully
//! and exits 0. Exit 2: usage error; exit 1: start-up failed.

use std::process::ExitCode;

use example_service::AppConfig;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", example_service::config::USAGE);
        return ExitCode::SUCCESS;
    }
    let config = match AppConfig::from_env_and_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("example-service: {e}\n{}", example_service::config::USAGE);
            return ExitCode::from(2);
        }
    };
    // Stack size is in words: 64 Ki words = 512 KiB per coroutine, virtual memory
    // committed only as used. A debug build's frames are several times larger: a GraphQL
    // query at the default depth limit (16) needs about 1 MiB there, 512 KiB holds about
    // 40 levels in release.
    let stack_words = if cfg!(debug_assertions) {
        0x20000
    } else {
        0x10000
    };
    may::config()
        .set_workers(config.workers)
        .set_stack_size(stack_words);
    // Registered before start-up, so a signal during migrations is not lost.
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("example-service: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let running = match example_service::start(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("example-service: start-up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("example-service listening on http://{}", config.listen);
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    eprintln!(
        "example-service: {} received, shutting down",
        if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        }
    );
    running.shutdown(config.shutdown_grace);
    eprintln!("example-service: stopped");
    ExitCode::SUCCESS
}
