//! The TLS side of a [`Config`]: `sslmode` and the certificates.

use std::path::{Path, PathBuf};

use super::{ChannelBinding, Config, RootCert, SslMode, SslNegotiation};
use crate::error::{Error, Result};

/// The TLS settings as given; `mode` stays `None` until set, because its default depends on
/// `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(super) mode: Option<SslMode>,
    pub(super) root_cert: Option<RootCert>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) sni: bool,
    pub(super) negotiation: SslNegotiation,
    pub(super) channel_binding: ChannelBinding,
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            mode: None,
            root_cert: None,
            cert: None,
            key: None,
            sni: true,
            negotiation: SslNegotiation::Postgres,
            channel_binding: ChannelBinding::Prefer,
        }
    }
}

impl Config {
    /// Sets whether to negotiate TLS and how far to trust the server's certificate.
    ///
    /// ```
    /// use lifeguard_core::pg::{Config, SslMode};
    ///
    /// let config = Config::new()
    ///     .host("db.internal")
    ///     .ssl_mode(SslMode::VerifyFull)
    ///     .ssl_root_cert("/etc/ssl/db-ca.pem");
    /// assert_eq!(config.get_ssl_mode(), SslMode::VerifyFull);
    /// ```
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.tls.mode = Some(mode);
        self
    }

    /// Sets the PEM file of the CA certificates that may sign the server's (`sslrootcert`).
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.root_cert = Some(RootCert::File(path.into()));
        self
    }

    /// Trusts the platform's root certificates (`sslrootcert=system`), which makes
    /// `verify-full` the default `sslmode` and weaker modes an error.
    pub fn ssl_system_roots(mut self) -> Self {
        self.tls.root_cert = Some(RootCert::System);
        self
    }

    /// Sets a client certificate and its private key (PEM files; `sslcert`, `sslkey`), sent
    /// when the server asks for one.
    pub fn ssl_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.cert = Some(cert.into());
        self.tls.key = Some(key.into());
        self
    }

    /// Sets whether the host name goes into the TLS handshake (SNI, `sslsni`; on by
    /// default, and never for IP addresses).
    pub fn ssl_sni(mut self, on: bool) -> Self {
        self.tls.sni = on;
        self
    }

    /// Sets how TLS is started.
    pub fn ssl_negotiation(mut self, negotiation: SslNegotiation) -> Self {
        self.tls.negotiation = negotiation;
        self
    }

    /// Sets whether SCRAM authentication is bound to the TLS channel.
    pub fn channel_binding(mut self, binding: ChannelBinding) -> Self {
        self.tls.channel_binding = binding;
        self
    }

    /// Whether to negotiate TLS: as set, else `verify-full` with `sslrootcert=system`, else
    /// `prefer`.
    pub fn get_ssl_mode(&self) -> SslMode {
        match (self.tls.mode, &self.tls.root_cert) {
            (Some(mode), _) => mode,
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        }
    }

    /// Where the trusted CA certificates come from, if anywhere.
    pub fn get_ssl_root_cert(&self) -> Option<&RootCert> {
        self.tls.root_cert.as_ref()
    }

    /// The client certificate's file, if one was given.
    pub fn get_ssl_cert(&self) -> Option<&Path> {
        self.tls.cert.as_deref()
    }

    /// The client key's file, if one was given.
    pub fn get_ssl_key(&self) -> Option<&Path> {
        self.tls.key.as_deref()
    }

    /// Whether SNI is sent.
    pub fn get_ssl_sni(&self) -> bool {
        self.tls.sni
    }

    /// How TLS is started.
    pub fn get_ssl_negotiation(&self) -> SslNegotiation {
        self.tls.negotiation
    }

    /// Whether SCRAM is bound to the TLS channel.
    pub fn get_channel_binding(&self) -> ChannelBinding {
        self.tls.channel_binding
    }

    /// Checks the TLS settings that only make sense together; parsing and connecting both
    /// ask, so a configuration built with the setters is held to the same rules.
    pub(crate) fn check_tls(&self) -> Result<()> {
        let mode = self.get_ssl_mode();
        if self.tls.root_cert == Some(RootCert::System) && mode != SslMode::VerifyFull {
            return Err(Error::config(format!(
                "sslmode \"{}\" is too weak for sslrootcert=system: use verify-full",
                mode_name(mode)
            )));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(Error::config(
                "sslcert and sslkey go together: give both or neither",
            ));
        }
        if self.tls.negotiation == SslNegotiation::Direct && !mode.requires_tls() {
            return Err(Error::config(format!(
                "sslnegotiation=direct needs sslmode require, verify-ca or verify-full (got \"{}\")",
                mode_name(mode)
            )));
        }
        if self.tls.channel_binding == ChannelBinding::Require && mode == SslMode::Disable {
            return Err(Error::config(
                "channel_binding=require needs TLS, but sslmode is disable",
            ));
        }
        Ok(())
    }
}

/// The `sslmode` spelling of `mode`.
pub(crate) fn mode_name(mode: SslMode) -> &'static str {
    super::options::SSL_MODES
        .iter()
        .find(|(_, m)| *m == mode)
        .map_or("prefer", |(name, _)| name)
}
