//! TLS for PostgreSQL connections: `rustls` driven over the coroutine socket.
//!
//! [`start`] runs the TLS handshake on a freshly connected socket (after the server said
//! yes to an `SSLRequest`, or at once with `sslnegotiation=direct`) and returns a
//! [`TlsSocket`] the rest of the client reads and writes like a plain one. Which
//! certificate is accepted follows libpq's `sslmode` (see [`SslMode`]).

mod binding;
mod stream;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use may::net::TcpStream;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};

use super::config::{Config, RootCert, SslMode};
use crate::error::{Error, Result};

pub(crate) use stream::TlsSocket;

/// The ALPN protocol PostgreSQL 17 expects (and requires for direct negotiation).
const ALPN: &[u8] = b"postgresql";

/// Runs the TLS handshake with `host` on `tcp`; `target` names the server in errors.
pub(crate) fn start(
    mut tcp: TcpStream,
    config: &Config,
    host: &str,
    target: &str,
) -> Result<TlsSocket> {
    let client = client_config(config)?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| Error::tls(format!("{host:?} is not a host name TLS can verify")))?;
    let mut conn = ClientConnection::new(client, name)
        .map_err(|e| Error::tls(format!("start TLS with {target}: {e}")))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| handshake_failed(e, config, host, target))?;
    }
    Ok(TlsSocket::new(tcp, conn))
}

/// The rustls configuration for `config`'s `sslmode`, root and client certificates.
fn client_config(config: &Config) -> Result<Arc<ClientConfig>> {
    // ring rather than aws-lc-rs, which needs cmake and a C toolchain's patience on every
    // cold build; rustls deprecates ring's provider only for lacking post-quantum key
    // exchange, which PostgreSQL's OpenSSL does not offer either.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::tls(format!("TLS versions: {e}")))?;
    let verifier = verifier(config, provider)?;
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut client = match (config.get_ssl_cert(), config.get_ssl_key()) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::tls(format!(
                    "read the client key (sslkey) {}: {e}",
                    key.display()
                ))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::tls(format!("the client certificate and key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    client.enable_sni = config.get_ssl_sni();
    client.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(client))
}

/// How far the server's certificate is trusted: not at all for `prefer` and `allow`; for
/// `require` only when a root certificate is given (as libpq); the chain for `verify-ca`;
/// the chain and the host name for `verify-full`.
fn verifier(config: &Config, provider: Arc<CryptoProvider>) -> Result<Arc<dyn ServerCertVerifier>> {
    let mode = config.get_ssl_mode();
    // `prefer` and `allow` never look at the roots, so they are not even read.
    let roots = match (mode >= SslMode::Require, config.get_ssl_root_cert()) {
        (false, _) => None,
        (true, Some(RootCert::File(path))) => Some(roots_from(path)?),
        (true, Some(RootCert::System)) => Some(system_roots()?),
        (true, None) => default_root_file()
            .map(|path| roots_from(&path))
            .transpose()?,
    };
    let Some(roots) = roots else {
        if mode >= SslMode::VerifyCa {
            return Err(Error::config(format!(
                "sslmode={} needs the CA certificates to check the server's against: set \
                 sslrootcert to a PEM file, or to system for the platform's roots",
                super::config::mode_name(mode)
            )));
        }
        return Ok(Arc::new(verify::AnyCertificate(provider)));
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| Error::tls(format!("trusted roots: {e}")))?;
    Ok(if mode == SslMode::VerifyFull {
        webpki
    } else {
        Arc::new(verify::ChainOnly(webpki))
    })
}

/// libpq's default root file, `~/.postgresql/root.crt`, when it exists.
fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".postgresql/root.crt");
    path.is_file().then_some(path)
}

fn read_certs(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::tls(format!("read {setting} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::tls(format!(
            "{setting} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn roots_from(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "sslrootcert")? {
        roots
            .add(cert)
            .map_err(|e| Error::tls(format!("sslrootcert {}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

/// The platform's trusted roots, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>> {
    static ROOTS: OnceLock<std::result::Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), |e| e.to_string());
                return Err(format!(
                    "sslrootcert=system: no usable platform root certificate ({why})"
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(Error::tls)
}

/// A handshake failure, said in terms of the settings that caused it.
fn handshake_failed(e: std::io::Error, config: &Config, host: &str, target: &str) -> Error {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let hint = match tls {
        Some(rustls::Error::InvalidCertificate(cause)) => match cause {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                " (the server's certificate has expired)".to_owned()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(" (the server's certificate does not name {host:?}; sslmode=verify-full checks it)")
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                " (the server's certificate does not chain to the roots in sslrootcert {})",
                match config.get_ssl_root_cert() {
                    Some(RootCert::File(path)) => path.display().to_string(),
                    Some(RootCert::System) => "system".to_owned(),
                    None => "~/.postgresql/root.crt".to_owned(),
                }
            ),
            _ => String::new(),
        },
        _ => String::new(),
    };
    match tls {
        Some(cause) => Error::tls(format!("handshake with {target} failed: {cause}{hint}")),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => Error::tls(format!(
            "{target} closed the connection during the TLS handshake"
        )),
        None => Error::connection(format!("TLS handshake with {target}"), Some(e)),
    }
}
