//! The enumerated connection settings and how libpq spells them.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Whether and how to negotiate TLS, with libpq's meanings.
///
/// | mode | TLS | the server's certificate |
/// |---|---|---|
/// | `Disable` | never | - |
/// | `Allow` | only if the server refuses plaintext | not checked |
/// | `Prefer` | first, plaintext if the server has none or refuses TLS | not checked |
/// | `Require` | always | checked against `sslrootcert` only when one is given |
/// | `VerifyCa` | always | chain to `sslrootcert` |
/// | `VerifyFull` | always | chain to `sslrootcert` and the host name |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Plaintext first; TLS when the server refuses a plaintext connection.
    Allow,
    /// TLS first; plaintext when the server offers no TLS or refuses the TLS connection.
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is verified only if a root certificate is given.
    Require,
    /// TLS with a certificate that chains to the root certificate.
    VerifyCa,
    /// TLS with a certificate that chains to the root certificate and names the host.
    VerifyFull,
}

impl SslMode {
    /// Whether a plaintext connection is out of the question.
    pub fn requires_tls(self) -> bool {
        self >= SslMode::Require
    }
}

/// Where the certificates that may sign the server's come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// The platform's trusted roots (`sslrootcert=system`); implies `sslmode=verify-full`.
    System,
}

/// How TLS is started (`sslnegotiation`, PostgreSQL 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslNegotiation {
    /// Ask with an `SSLRequest` first, as every server version understands.
    #[default]
    Postgres,
    /// Start the TLS handshake at once (ALPN `postgresql`), saving a round trip; servers
    /// before PostgreSQL 17 do not understand it.
    Direct,
}

/// Whether SCRAM binds the authentication to the TLS channel (`channel_binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBinding {
    /// Never bind.
    Disable,
    /// Bind when the connection is TLS and the server offers `SCRAM-SHA-256-PLUS`.
    #[default]
    Prefer,
    /// Refuse to authenticate without channel binding.
    Require,
}

/// An authentication method a server may ask for, as `require_auth` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The server let us in without asking for anything.
    None,
    /// The password in clear text.
    Password,
    /// An MD5 hash of the password.
    Md5,
    /// SCRAM-SHA-256 (with or without channel binding).
    ScramSha256,
    /// GSSAPI (Kerberos); this client does not speak it.
    Gss,
    /// SSPI; this client does not speak it.
    Sspi,
}

impl AuthMethod {
    const ALL: [AuthMethod; 6] = [
        AuthMethod::None,
        AuthMethod::Password,
        AuthMethod::Md5,
        AuthMethod::ScramSha256,
        AuthMethod::Gss,
        AuthMethod::Sspi,
    ];

    /// The name `require_auth` uses.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Gss => "gss",
            AuthMethod::Sspi => "sspi",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The authentication methods the server may use (`require_auth`, libpq 16).
///
/// A man in the middle can otherwise ask a SCRAM user for the clear-text password and get
/// it; with `require_auth=scram-sha-256` the client refuses before sending anything.
///
/// ```
/// use lifeguard_core::pg::{AuthMethod, RequireAuth};
///
/// let strict: RequireAuth = "scram-sha-256".parse()?;
/// assert!(strict.allows(AuthMethod::ScramSha256));
/// assert!(!strict.allows(AuthMethod::Password));
/// let not_clear: RequireAuth = "!password".parse()?;
/// assert!(not_clear.allows(AuthMethod::Md5));
/// assert!(!not_clear.allows(AuthMethod::Password));
/// # Ok::<(), lifeguard_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequireAuth {
    allowed: u8,
}

impl RequireAuth {
    /// Exactly these methods.
    pub fn only(methods: &[AuthMethod]) -> RequireAuth {
        RequireAuth {
            allowed: methods.iter().fold(0, |bits, m| bits | m.bit()),
        }
    }

    /// Whether the server may use `method`.
    pub fn allows(self, method: AuthMethod) -> bool {
        self.allowed & method.bit() != 0
    }

    /// The allowed methods, comma-separated, for error messages.
    pub fn describe(self) -> String {
        let names: Vec<&str> = AuthMethod::ALL
            .iter()
            .filter(|m| self.allows(**m))
            .map(|m| m.name())
            .collect();
        if names.is_empty() {
            "no method".to_owned()
        } else {
            names.join(", ")
        }
    }
}

impl std::fmt::Debug for RequireAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequireAuth({})", self.describe())
    }
}

impl std::str::FromStr for RequireAuth {
    type Err = Error;

    /// A comma-separated list of methods, or of `!method`s to exclude (not both), as libpq.
    fn from_str(value: &str) -> Result<RequireAuth> {
        let mut listed = 0u8;
        let mut negated = None;
        for item in value.split(',').map(str::trim) {
            let (not, name) = match item.strip_prefix('!') {
                Some(name) => (true, name),
                None => (false, item),
            };
            if *negated.get_or_insert(not) != not {
                return Err(Error::config(format!(
                    "require_auth \"{value}\" mixes methods and negated methods"
                )));
            }
            let method = AuthMethod::ALL
                .into_iter()
                .find(|m| m.name() == name)
                .ok_or_else(|| {
                    Error::config(format!(
                        "invalid require_auth method \"{name}\": expected none, password, md5, \
                         scram-sha-256, gss or sspi"
                    ))
                })?;
            if listed & method.bit() != 0 {
                return Err(Error::config(format!(
                    "require_auth \"{value}\" lists \"{name}\" twice"
                )));
            }
            listed |= method.bit();
        }
        let everything = RequireAuth::only(&AuthMethod::ALL).allowed;
        Ok(RequireAuth {
            allowed: if negated == Some(true) {
                everything & !listed
            } else {
                listed
            },
        })
    }
}

/// Which kind of server a connection must reach (`target_session_attrs`); with several
/// hosts, the first that fits is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetSessionAttrs {
    /// Any server.
    #[default]
    Any,
    /// One that accepts writes by default (`default_transaction_read_only` off, not in
    /// recovery).
    ReadWrite,
    /// One that does not accept writes by default.
    ReadOnly,
    /// One that is not in recovery.
    Primary,
    /// One in recovery (a hot standby).
    Standby,
    /// A standby if one of the hosts is, otherwise any.
    PreferStandby,
}

/// In what order several hosts are tried (`load_balance_hosts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalanceHosts {
    /// In the order given.
    #[default]
    Disable,
    /// In a random order chosen per connection, spreading connections over the hosts.
    Random,
}

/// How statements are prepared (`prepare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prepare {
    /// Named server-side statements, prepared once per connection and cached
    /// ([`Config::statement_cache`](super::Config::statement_cache)).
    #[default]
    Named,
    /// The unnamed statement, parsed, bound and executed in one request: what a pooler in
    /// transaction mode (PgBouncer before 1.21) needs, where consecutive requests may run on
    /// different server connections. Session state (`LISTEN`, session advisory locks,
    /// `SET` without `LOCAL`) does not survive between transactions there.
    Unnamed,
}

/// Looks `value` up in a table of spellings; the error lists them.
pub(super) fn pick<T: Copy>(
    key: &str,
    value: &str,
    ctx: &str,
    table: &[(&str, T)],
    default: T,
) -> Result<T> {
    if value.is_empty() {
        return Ok(default);
    }
    table
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            Error::config(format!(
                "invalid {key} \"{value}\" {ctx}: expected {}",
                names.join(", ")
            ))
        })
}

pub(super) const SSL_MODES: &[(&str, SslMode)] = &[
    ("disable", SslMode::Disable),
    ("allow", SslMode::Allow),
    ("prefer", SslMode::Prefer),
    ("require", SslMode::Require),
    ("verify-ca", SslMode::VerifyCa),
    ("verify-full", SslMode::VerifyFull),
];

pub(super) const NEGOTIATIONS: &[(&str, SslNegotiation)] = &[
    ("postgres", SslNegotiation::Postgres),
    ("direct", SslNegotiation::Direct),
];

pub(super) const CHANNEL_BINDINGS: &[(&str, ChannelBinding)] = &[
    ("disable", ChannelBinding::Disable),
    ("prefer", ChannelBinding::Prefer),
    ("require", ChannelBinding::Require),
];

pub(super) const SESSION_ATTRS: &[(&str, TargetSessionAttrs)] = &[
    ("any", TargetSessionAttrs::Any),
    ("read-write", TargetSessionAttrs::ReadWrite),
    ("read-only", TargetSessionAttrs::ReadOnly),
    ("primary", TargetSessionAttrs::Primary),
    ("standby", TargetSessionAttrs::Standby),
    ("prefer-standby", TargetSessionAttrs::PreferStandby),
];

pub(super) const LOAD_BALANCE: &[(&str, LoadBalanceHosts)] = &[
    ("disable", LoadBalanceHosts::Disable),
    ("random", LoadBalanceHosts::Random),
];

pub(super) const PREPARE: &[(&str, Prepare)] =
    &[("named", Prepare::Named), ("unnamed", Prepare::Unnamed)];

pub(super) const SWITCHES: &[(&str, bool)] = &[("0", false), ("1", true)];
