//! Reading a [`Config`] from a `postgres://` URL or libpq `key=value` pairs.

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use super::options::{
    pick, CHANNEL_BINDINGS, LOAD_BALANCE, NEGOTIATIONS, PREPARE, SESSION_ATTRS, SSL_MODES, SWITCHES,
};
use super::{default_user, Config, Host, RootCert, DEFAULT_PORT};
use crate::error::{Error, Result};

/// Parses either string form.
pub(super) fn parse(s: &str) -> Result<Config> {
    let trimmed = s.trim();
    let config = if let Some(rest) = strip_url_scheme(trimmed) {
        parse_url(rest)?
    } else if trimmed.contains('=') {
        parse_key_value(trimmed)?
    } else if trimmed.is_empty() {
        return Err(Error::config("empty connection string"));
    } else if let Some((scheme, _)) = trimmed.split_once("://") {
        return Err(Error::config(format!(
            "unsupported URL scheme \"{scheme}\"; expected postgres:// or postgresql://"
        )));
    } else {
        return Err(Error::config(
            "connection string is neither a postgres:// URL nor key=value pairs",
        ));
    };
    config.check_tls()?;
    config.targets()?;
    Ok(config)
}

impl Config {
    /// Applies one named parameter, shared by both string forms so they accept the same keys
    /// with the same meaning.
    ///
    /// An empty value restores the default, as libpq treats empty settings as unset.
    fn apply(&mut self, key: &str, value: &str, src: Source) -> Result<()> {
        let ctx = src.context();
        match key {
            // A comma-separated list, as libpq takes it.
            "host" | "hostaddr" => self.hosts = value.split(',').map(Host::parse).collect(),
            "port" => {
                self.ports = value
                    .split(',')
                    .map(|p| {
                        if p.is_empty() {
                            Ok(DEFAULT_PORT)
                        } else {
                            parse_port(p, ctx)
                        }
                    })
                    .collect::<Result<_>>()?;
            }
            "user" => {
                self.user = if value.is_empty() {
                    default_user()
                } else {
                    value.to_owned()
                };
            }
            "password" => self.password = non_empty(value),
            "dbname" => self.dbname = non_empty(value),
            "application_name" => self.application_name = non_empty(value),
            "options" => self.options = non_empty(value),
            "connect_timeout" => {
                self.connect_timeout = match value {
                    "" => Some(super::DEFAULT_CONNECT_TIMEOUT),
                    secs => parse_seconds(key, secs, ctx)?,
                };
            }
            "sslmode" => {
                self.tls.mode = (!value.is_empty())
                    .then(|| pick(key, value, ctx, SSL_MODES, Default::default()))
                    .transpose()?;
            }
            "sslrootcert" => {
                self.tls.root_cert = match value {
                    "" => None,
                    "system" => Some(RootCert::System),
                    path => Some(RootCert::File(PathBuf::from(path))),
                };
            }
            "sslcert" => self.tls.cert = non_empty(value).map(PathBuf::from),
            "sslkey" => self.tls.key = non_empty(value).map(PathBuf::from),
            "sslsni" => self.tls.sni = pick(key, value, ctx, SWITCHES, true)?,
            "sslnegotiation" => {
                self.tls.negotiation = pick(key, value, ctx, NEGOTIATIONS, Default::default())?;
            }
            "channel_binding" => {
                self.tls.channel_binding =
                    pick(key, value, ctx, CHANNEL_BINDINGS, Default::default())?;
            }
            "require_auth" => {
                self.require_auth = match value {
                    "" => None,
                    list => Some(list.parse()?),
                };
            }
            "target_session_attrs" => {
                self.target_session_attrs =
                    pick(key, value, ctx, SESSION_ATTRS, Default::default())?;
            }
            "load_balance_hosts" => {
                self.load_balance_hosts = pick(key, value, ctx, LOAD_BALANCE, Default::default())?;
            }
            "prepare" => self.prepare = pick(key, value, ctx, PREPARE, Default::default())?,
            "statement_cache" => {
                self.statement_cache = if value.is_empty() {
                    super::DEFAULT_STATEMENT_CACHE
                } else {
                    value.parse().map_err(|_| {
                        Error::config(format!(
                            "invalid statement_cache \"{value}\" {ctx}: expected a number of statements"
                        ))
                    })?
                };
            }
            "keepalives" => self.keepalives.enabled = pick(key, value, ctx, SWITCHES, true)?,
            "keepalives_idle" => {
                if let Some(idle) = parse_seconds(key, value, ctx)? {
                    self.keepalives.idle = idle;
                }
            }
            "keepalives_interval" => {
                if let Some(interval) = parse_seconds(key, value, ctx)? {
                    self.keepalives.interval = interval;
                }
            }
            "keepalives_count" => {
                if !value.is_empty() {
                    self.keepalives.count = value.parse().map_err(|_| {
                        Error::config(format!(
                            "invalid keepalives_count \"{value}\" {ctx}: expected a whole number"
                        ))
                    })?;
                }
            }
            "tcp_user_timeout" => {
                // libpq counts this one in milliseconds; 0 means the kernel's default.
                self.tcp_user_timeout = match value {
                    "" => Some(super::net::DEFAULT_TCP_USER_TIMEOUT),
                    ms => match ms.parse::<u64>() {
                        Ok(0) => None,
                        Ok(ms) => Some(Duration::from_millis(ms)),
                        Err(_) => {
                            return Err(Error::config(format!(
                                "invalid tcp_user_timeout \"{value}\" {ctx}: expected milliseconds"
                            )))
                        }
                    },
                };
            }
            "max_message_size" | "reply_buffer" | "notification_queue" => {
                self.limits.apply(key, value, ctx)?;
            }
            _ => {
                return Err(Error::config(format!(
                    "unknown connection parameter \"{key}\""
                )))
            }
        }
        Ok(())
    }
}

/// Which string form a parameter came from, so errors point at the right thing.
#[derive(Clone, Copy)]
enum Source {
    Url,
    KeyValue,
}

impl Source {
    fn context(self) -> &'static str {
        match self {
            Source::Url => "in connection URL",
            Source::KeyValue => "in connection string",
        }
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn parse_port(value: &str, ctx: &str) -> Result<u16> {
    match value.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(Error::config(format!(
            "invalid port \"{value}\" {ctx}: expected a number from 1 to 65535"
        ))),
    }
}

/// Whole seconds, as libpq's timeouts are given; zero or negative means "no limit" (`None`),
/// and so does an empty value for `connect_timeout`.
fn parse_seconds(key: &str, value: &str, ctx: &str) -> Result<Option<Duration>> {
    if value.is_empty() {
        return Ok(None);
    }
    let secs: i64 = value.parse().map_err(|_| {
        Error::config(format!(
            "invalid {key} \"{value}\" {ctx}: expected whole seconds"
        ))
    })?;
    Ok(u64::try_from(secs)
        .ok()
        .filter(|&s| s > 0)
        .map(Duration::from_secs))
}

/// Returns what follows the scheme when `s` is a PostgreSQL URL. Schemes are
/// case-insensitive per RFC 3986.
fn strip_url_scheme(s: &str) -> Option<&str> {
    ["postgresql://", "postgres://"].iter().find_map(|scheme| {
        let head = s.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &s[scheme.len()..])
    })
}

fn decode(raw: &str, part: &str) -> Result<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            Error::config(format!(
                "{part} in connection URL is not valid UTF-8 after percent-decoding"
            ))
        })
}

/// Parses what follows `postgres://`.
///
/// Errors quote the part of the URL they are about, except when an `@` follows the first
/// `/` or `?`: then the user info may have been cut at an unencoded `/` or `?` in the
/// password, the quoted "database name", "query parameter" or "port" may be a piece of it,
/// and the error says what to fix without quoting anything.
fn parse_url(rest: &str) -> Result<Config> {
    parse_url_parts(rest).map_err(|e| {
        let cut = rest.find(['/', '?']);
        if cut.is_some_and(|at| rest[at..].contains('@')) {
            Error::config(
                "invalid connection URL (not repeated here: it may contain the password); \
                 a '/', '?' or '@' in the user name or password must be percent-encoded \
                 (%2F, %3F, %40)",
            )
        } else {
            e
        }
    })
}

fn parse_url_parts(rest: &str) -> Result<Config> {
    let src = Source::Url;
    let mut config = Config::new();

    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };

    // The last `@` ends the user info: a host cannot contain one, while a password someone
    // forgot to percent-encode often does.
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            config.apply("user", &decode(user, "user")?, src)?;
            if let Some(password) = password {
                config.password = Some(decode(password, "password")?);
            }
            hostport
        }
        None => authority,
    };

    // `host[:port],host[:port],...`: each port belongs to its host; a host without one
    // gets the default, as libpq does.
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for one in hostport.split(',') {
        let (host, port) = split_host_port(one)?;
        hosts.push(decode(host, "host")?);
        ports.push(match port {
            Some(port) if !port.is_empty() => parse_port(port, src.context())?,
            _ => DEFAULT_PORT,
        });
    }
    config.apply("host", &hosts.join(","), src)?;
    config.ports = ports;

    if let Some(path) = path {
        if path.contains('/') {
            return Err(Error::config(format!(
                "invalid database name \"{path}\" in connection URL: \
                 a '/' in it must be written as %2F"
            )));
        }
        config.apply("dbname", &decode(path, "database name")?, src)?;
    }

    // Query parameters come last so that they override the URL's own parts, which is how
    // `?host=/var/run/postgresql` reaches a socket directory the authority cannot spell.
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::config(format!(
                "missing \"=\" after query parameter \"{pair}\" in connection URL"
            )));
        };
        let key = decode(key, "query parameter name")?;
        let value = decode(value, &format!("value of query parameter \"{key}\""))?;
        config.apply(&key, &value, src)?;
    }
    Ok(config)
}

/// Splits `host[:port]` or `[v6addr][:port]`; the host is still percent-encoded.
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>)> {
    if let Some(bracketed) = hostport.strip_prefix('[') {
        let Some((addr, after)) = bracketed.split_once(']') else {
            return Err(Error::config(format!(
                "invalid host \"{hostport}\" in connection URL: missing ']' after IPv6 address"
            )));
        };
        return match after {
            "" => Ok((addr, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((addr, Some(port))),
                None => Err(Error::config(format!(
                    "invalid host \"{hostport}\" in connection URL: \
                     expected ':port' after ']'"
                ))),
            },
        };
    }
    match hostport.split_once(':') {
        // A second colon means an IPv6 address without the brackets that set off its port.
        Some((_, port)) if port.contains(':') => Err(Error::config(format!(
            "invalid host \"{hostport}\" in connection URL: IPv6 addresses must be in brackets"
        ))),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((hostport, None)),
    }
}

/// Parses libpq `key=value` pairs.
fn parse_key_value(s: &str) -> Result<Config> {
    let mut config = Config::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }

        let mut key = String::new();
        while let Some(c) = chars.next_if(|&c| c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            return Err(Error::config(
                "missing parameter name before \"=\" in connection string",
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            return Err(Error::config(format!(
                "missing \"=\" after \"{key}\" in connection string"
            )));
        }
        // Like libpq, whitespace after `=` is skipped, so `key = value` works.
        while chars.next_if(|c| c.is_whitespace()).is_some() {}

        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(unterminated(&key)),
                    },
                    Some(c) => value.push(c),
                    None => return Err(unterminated(&key)),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    // A trailing lone backslash is dropped, as libpq does.
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        config.apply(&key, &value, Source::KeyValue)?;
    }
    Ok(config)
}

fn unterminated(key: &str) -> Error {
    Error::config(format!(
        "unterminated quoted value for \"{key}\" in connection string"
    ))
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    /// A password with an unencoded `/` or `?` is cut there; whatever the error is about,
    /// no piece of the password may appear in it.
    #[test]
    fn errors_never_quote_a_password_cut_by_an_unencoded_slash_or_question_mark() {
        for url in [
            "postgres://app:s3cr/et-pw@db.example:5432/app",
            "postgres://app:s3cr?et-pw@db.example/app",
            "postgres://app:s3cr/e/t-pw@db.example/app",
            "postgres://app:s3cr?et=pw@db.example:notaport/app",
        ] {
            let e = match parse(url) {
                Err(e) => e.to_string(),
                Ok(_) => continue,
            };
            for piece in ["s3cr", "et-pw", "t-pw", "et=pw"] {
                assert!(!e.contains(piece), "{url}: {e}");
            }
            assert!(e.contains("percent-encoded"), "{url}: {e}");
        }
    }

    #[test]
    fn errors_without_credentials_still_quote_what_is_wrong() {
        let e = parse("postgres://db.example:notaport/app").unwrap_err();
        assert!(e.to_string().contains("notaport"), "{e}");
    }
}
