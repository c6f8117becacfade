//! `lifeguard-reflector`: runs a reflector until SIGTERM or SIGINT (then exits 0 after a
//! graceful shutdown). Configuration comes from the environment; `--help` lists it.
//! Exit 2: a configuration error; exit 1: start-up failed.

use std::process::ExitCode;
use std::time::Duration;

use lifeguard_reflector::{Reflector, ReflectorConfig, ENVIRONMENT};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .try_init();
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("lifeguard-reflector: keeps Lifeguard's Redis cache coherent\n\n{ENVIRONMENT}");
        return ExitCode::SUCCESS;
    }
    let config = match ReflectorConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lifeguard-reflector: {e}");
            return ExitCode::from(2);
        }
    };
    may::config().set_workers(2).set_stack_size(0x10000);
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lifeguard-reflector: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listen = config.listen.clone();
    let reflector = match Reflector::start(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lifeguard-reflector: start-up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listen {
        Some(addr) => eprintln!("lifeguard-reflector: metrics and health on http://{addr}"),
        None => eprintln!("lifeguard-reflector: running (no HTTP)"),
    }
    let _ = signals.forever().next();
    eprintln!("lifeguard-reflector: shutting down");
    reflector.shutdown(Duration::from_secs(5));
    ExitCode::SUCCESS
}
