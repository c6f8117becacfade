//! The reflector's HTTP endpoints: `GET /metrics`, `/health/live`, `/health/ready` and
//! `/status`. One request per connection, read within a second and at most 8 KiB: these
//! are for probes and scrapers, not for traffic.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use lifeguard_core::rt::{self, lock};
use may::coroutine::JoinHandle;
use may::net::{TcpListener, TcpStream};
use prometheus::Encoder;

use crate::{Role, Shared};

const MAX_HEAD: usize = 8 * 1024;

/// Binds `addr` and answers on a coroutine until cancelled.
pub(crate) fn serve(addr: &str, shared: Arc<Shared>) -> io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
    let accept = move || loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = shared.clone();
                let answer = move || {
                    if let Err(e) = answer(stream, &shared) {
                        tracing::debug!(error = %e, "reflector HTTP request failed");
                    }
                };
                if let Err(e) = rt::spawn("lifeguard-reflector-http-conn", 0x4000, answer) {
                    tracing::error!(error = %e, "cannot start a connection coroutine");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                may::coroutine::sleep(Duration::from_millis(20));
            }
        }
    };
    rt::spawn("lifeguard-reflector-http", 0x4000, accept)
}

fn answer(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return reply(&mut stream, 400, "text/plain", b"bad request\n");
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if method != b"GET" {
        return reply(&mut stream, 405, "text/plain", b"method not allowed\n");
    }
    match path {
        b"/metrics" => {
            let mut body = Vec::new();
            let families = shared.metrics.registry().gather();
            let encoded = prometheus::TextEncoder::new().encode(&families, &mut body);
            match encoded {
                Ok(()) => reply(&mut stream, 200, "text/plain; version=0.0.4", &body),
                Err(_) => reply(&mut stream, 500, "text/plain", b"cannot encode metrics\n"),
            }
        }
        b"/health/live" => reply(&mut stream, 200, "application/json", br#"{"status":"up"}"#),
        b"/health/ready" => match shared.is_ready() {
            true => reply(
                &mut stream,
                200,
                "application/json",
                br#"{"status":"ready"}"#,
            ),
            false => reply(
                &mut stream,
                503,
                "application/json",
                br#"{"status":"not ready"}"#,
            ),
        },
        b"/status" => {
            let body = status_json(shared).to_string();
            reply(&mut stream, 200, "application/json", body.as_bytes())
        }
        _ => reply(&mut stream, 404, "text/plain", b"not found\n"),
    }
}

fn status_json(shared: &Shared) -> serde_json::Value {
    let status = lock(&shared.status).clone();
    let (role, epoch, generation) = match status.role {
        Role::Connecting => ("connecting", None, None),
        Role::Standby => ("standby", None, None),
        Role::Leader { epoch, generation } => ("leader", Some(epoch), Some(generation)),
    };
    serde_json::json!({
        "role": role,
        "epoch": epoch,
        "generation": generation,
        "namespace": shared.config.namespace,
        "last_ok_ms_ago": status.last_ok.map(|at| at.elapsed().as_millis() as u64),
        "last_error": status.last_error,
    })
}

fn reply(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}
