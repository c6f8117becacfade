//! Tests of connection-string parsing.
use std::path::Path;

use super::*;

fn err(s: &str) -> String {
    match Config::parse(s) {
        Err(Error::Config(m)) => m,
        Err(other) => panic!("expected a config error for {s:?}, got {other:?}"),
        Ok(c) => panic!("expected an error for {s:?}, got {c:?}"),
    }
}

fn ok(s: &str) -> Config {
    Config::parse(s).unwrap_or_else(|e| panic!("{s:?} failed: {e}"))
}

#[test]
fn defaults() {
    let c = Config::new();
    assert_eq!(c.get_host(), &Host::Tcp("localhost".into()));
    assert_eq!(c.get_port(), 5432);
    assert!(!c.get_user().is_empty());
    assert_eq!(c.get_password(), None);
    assert_eq!(c.get_dbname(), c.get_user());
    assert_eq!(c.get_connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
    assert_eq!(c.get_ssl_mode(), SslMode::Prefer);
    assert_eq!(c.get_channel_binding(), ChannelBinding::Prefer);
    assert!(c.get_keepalives().enabled);
    assert!(c.get_tcp_user_timeout().is_some());
    assert_eq!(c.get_prepare(), Prepare::Named);
    assert_eq!(c, Config::default());
}

#[test]
fn full_url() {
    let c = ok("postgresql://alice:pw@db.example.com:6543/shop\
                ?application_name=api&connect_timeout=7&options=-c%20search_path%3Dapp\
                &sslmode=disable");
    assert_eq!(c.get_host(), &Host::Tcp("db.example.com".into()));
    assert_eq!(c.get_port(), 6543);
    assert_eq!(c.get_user(), "alice");
    assert_eq!(c.get_password(), Some("pw"));
    assert_eq!(c.get_dbname(), "shop");
    assert_eq!(c.get_application_name(), Some("api"));
    assert_eq!(c.get_connect_timeout(), Some(Duration::from_secs(7)));
    assert_eq!(c.get_options(), Some("-c search_path=app"));
    assert_eq!(c.get_ssl_mode(), SslMode::Disable);
    assert_eq!(c.display_target(), "db.example.com:6543");
}

#[test]
fn minimal_url_keeps_defaults() {
    let c = ok("postgres://localhost");
    let d = Config::new();
    assert_eq!(c, d);
    assert_eq!(ok("postgres://"), d);
    assert_eq!(ok("postgres:///"), d);
    assert_eq!(ok("POSTGRES://localhost"), d);
    assert_eq!(ok("  postgres://localhost  "), d);
}

#[test]
fn url_percent_encoded_credentials() {
    let c = ok("postgres://us%40er:p%40ss%3Aw%2Fd@host/db");
    assert_eq!(c.get_user(), "us@er");
    assert_eq!(c.get_password(), Some("p@ss:w/d"));
    // A raw `@` in the password is tolerated because the last `@` ends the user info.
    let c = ok("postgres://user:p@ss@host/db");
    assert_eq!(c.get_password(), Some("p@ss"));
    assert_eq!(c.get_host(), &Host::Tcp("host".into()));
    // A raw `:` after the first one belongs to the password.
    assert_eq!(ok("postgres://u:a:b@h").get_password(), Some("a:b"));
    // Only a password: the user stays the default.
    let c = ok("postgres://:secret@h");
    assert_eq!(c.get_user(), Config::new().get_user());
    assert_eq!(c.get_password(), Some("secret"));
}

#[test]
fn url_ipv6() {
    let c = ok("postgres://u@[::1]:5433/db");
    assert_eq!(c.get_host(), &Host::Tcp("::1".into()));
    assert_eq!(c.get_port(), 5433);
    assert_eq!(c.display_target(), "[::1]:5433");
    let c = ok("postgres://[fe80::1%25eth0]");
    assert_eq!(c.get_host(), &Host::Tcp("fe80::1%eth0".into()));
    assert_eq!(c.get_port(), 5432);
}

#[test]
fn url_unix_socket_dir() {
    let c = ok("postgres://%2Fvar%2Frun%2Fpostgresql/db");
    assert_eq!(
        c.get_host(),
        &Host::Unix(PathBuf::from("/var/run/postgresql"))
    );
    assert_eq!(c.get_dbname(), "db");

    let c = ok("postgresql:///db?host=/tmp&port=5433");
    assert_eq!(c.get_host(), &Host::Unix(PathBuf::from("/tmp")));
    assert_eq!(c.socket_path(), Some(PathBuf::from("/tmp/.s.PGSQL.5433")));
    assert_eq!(c.display_target(), "/tmp/.s.PGSQL.5433");
}

#[test]
fn url_query_overrides_authority() {
    let c = ok("postgres://a:b@h1:1/d1?user=u2&password=p%262&dbname=d2&port=2&host=h2");
    assert_eq!(c.get_user(), "u2");
    assert_eq!(c.get_password(), Some("p&2"));
    assert_eq!(c.get_dbname(), "d2");
    assert_eq!(c.get_port(), 2);
    assert_eq!(c.get_host(), &Host::Tcp("h2".into()));
    // hostaddr is treated like host; empty segments are skipped.
    let c = ok("postgres://h?&hostaddr=10.0.0.1&");
    assert_eq!(c.get_host(), &Host::Tcp("10.0.0.1".into()));
}

#[test]
fn url_errors() {
    let m = err("postgres://h:abc/db");
    assert!(m.contains("invalid port \"abc\" in connection URL"), "{m}");
    assert!(err("postgres://h:0").contains("invalid port \"0\""));
    assert!(err("postgres://h:65536").contains("invalid port \"65536\""));
    assert!(err("postgres://h?port=x").contains("invalid port \"x\""));

    let m = err("postgres://h/db?foo=1");
    assert_eq!(m, "unknown connection parameter \"foo\"");

    let m = err("postgres://h/db?sslmode");
    assert!(m.contains("\"sslmode\""), "{m}");
    assert!(m.contains("missing \"=\""), "{m}");

    let m = err("postgres://a,b,c/db?port=1,2");
    assert!(m.contains("3 hosts but 2 ports"), "{m}");

    let m = err("postgres://[::1/db");
    assert!(m.contains("[::1"), "{m}");
    let m = err("postgres://[::1]x/db");
    assert!(m.contains("[::1]x"), "{m}");
    let m = err("postgres://::1/db");
    assert!(m.contains("IPv6"), "{m}");

    let m = err("postgres://h/a/b");
    assert!(m.contains("\"a/b\""), "{m}");

    let m = err("postgres://h/db?connect_timeout=soon");
    assert!(m.contains("connect_timeout \"soon\""), "{m}");

    let m = err("postgres://u:%FF@h");
    assert!(m.contains("password"), "{m}");
}

#[test]
fn key_value_basic() {
    let c = ok("host=db port=6000 user=bob password=pw dbname=app \
                application_name=svc connect_timeout=3 options=-cgeqo=off sslmode=allow");
    assert_eq!(c.get_host(), &Host::Tcp("db".into()));
    assert_eq!(c.get_port(), 6000);
    assert_eq!(c.get_user(), "bob");
    assert_eq!(c.get_password(), Some("pw"));
    assert_eq!(c.get_dbname(), "app");
    assert_eq!(c.get_application_name(), Some("svc"));
    assert_eq!(c.get_connect_timeout(), Some(Duration::from_secs(3)));
    assert_eq!(c.get_options(), Some("-cgeqo=off"));
    assert_eq!(c.get_ssl_mode(), SslMode::Allow);
}

#[test]
fn key_value_spacing_and_quoting() {
    let c = ok("  host = db\tport\n=\n5433   password = ''  ");
    assert_eq!(c.get_host(), &Host::Tcp("db".into()));
    assert_eq!(c.get_port(), 5433);
    assert_eq!(c.get_password(), None);
    let c = ok(r"host = /tmp  port= 5433 password='a \'quoted\' \\ pass word' user=x\ y");
    assert_eq!(c.get_host(), &Host::Unix(PathBuf::from("/tmp")));
    assert_eq!(c.get_port(), 5433);
    assert_eq!(c.get_password(), Some(r"a 'quoted' \ pass word"));
    assert_eq!(c.get_user(), "x y");
    assert_eq!(ok("dbname=''").get_dbname(), ok("dbname=''").get_user());
    assert_eq!(ok("options='-c a=b'").get_options(), Some("-c a=b"));
    assert_eq!(ok("hostaddr=127.0.0.1").display_target(), "127.0.0.1:5432");
    // Last setting wins, as in libpq.
    assert_eq!(ok("port=1 port=2").get_port(), 2);
}

#[test]
fn connect_timeout_zero_or_negative_means_none() {
    assert_eq!(ok("connect_timeout=0").get_connect_timeout(), None);
    assert_eq!(ok("connect_timeout=-5").get_connect_timeout(), None);
    assert_eq!(
        ok("connect_timeout=10").get_connect_timeout(),
        Some(Duration::from_secs(10))
    );
    assert!(err("connect_timeout=1.5").contains("connect_timeout \"1.5\""));
}

#[test]
fn key_value_errors() {
    assert_eq!(
        err("host=h foo=bar"),
        "unknown connection parameter \"foo\""
    );

    let m = err("host=h dbname");
    assert!(m.contains("missing \"=\" after \"dbname\""), "{m}");
    let m = err("host=h dbname x");
    assert!(m.contains("\"dbname\""), "{m}");

    let m = err("host=h password='abc");
    assert!(m.contains("unterminated"), "{m}");
    assert!(m.contains("\"password\""), "{m}");
    let m = err(r"password='abc\'");
    assert!(m.contains("\"password\""), "{m}");

    assert!(err("=x").contains("missing parameter name"));

    let m = err("port=abc");
    assert!(
        m.contains("invalid port \"abc\" in connection string"),
        "{m}"
    );
    assert!(err("port=70000").contains("\"70000\""));

    let m = err("host=a,b port=1,2,3");
    assert!(m.contains("2 hosts but 3 ports"), "{m}");
}

#[test]
fn ssl_modes() {
    for (name, mode) in [
        ("disable", SslMode::Disable),
        ("allow", SslMode::Allow),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ] {
        assert_eq!(ok(&format!("sslmode={name}")).get_ssl_mode(), mode);
        assert_eq!(
            ok(&format!("postgres://h?sslmode={name}")).get_ssl_mode(),
            mode
        );
    }
    assert!(SslMode::VerifyCa.requires_tls() && !SslMode::Prefer.requires_tls());
    let m = err("sslmode=bogus");
    assert!(m.contains("\"bogus\""), "{m}");
    assert!(m.contains("verify-full"), "{m}");
}

#[test]
fn tls_files_and_system_roots() {
    let c = ok("sslmode=verify-ca sslrootcert=/ca.pem sslcert=/c.pem sslkey=/k.pem sslsni=0");
    assert_eq!(
        c.get_ssl_root_cert(),
        Some(&RootCert::File("/ca.pem".into()))
    );
    assert_eq!(c.get_ssl_cert(), Some(Path::new("/c.pem")));
    assert_eq!(c.get_ssl_key(), Some(Path::new("/k.pem")));
    assert!(!c.get_ssl_sni());
    // `system` makes verify-full the default and refuses anything weaker.
    assert_eq!(ok("sslrootcert=system").get_ssl_mode(), SslMode::VerifyFull);
    let m = err("sslrootcert=system sslmode=require");
    assert!(m.contains("too weak"), "{m}");
    assert!(err("sslcert=/c.pem").contains("sslkey"));
    let m = err("sslnegotiation=direct");
    assert!(m.contains("sslnegotiation=direct needs"), "{m}");
    assert_eq!(
        ok("sslnegotiation=direct sslmode=require").get_ssl_negotiation(),
        SslNegotiation::Direct
    );
    assert!(err("channel_binding=require sslmode=disable").contains("needs TLS"));
    assert_eq!(
        ok("channel_binding=disable").get_channel_binding(),
        ChannelBinding::Disable
    );
    assert!(err("channel_binding=maybe").contains("\"maybe\""));
}

#[test]
fn require_auth_lists_and_negations() {
    let c = ok("require_auth=scram-sha-256,md5");
    let allowed = c.get_require_auth().expect("set");
    assert!(allowed.allows(AuthMethod::ScramSha256) && allowed.allows(AuthMethod::Md5));
    assert!(!allowed.allows(AuthMethod::Password) && !allowed.allows(AuthMethod::None));
    let allowed = ok("require_auth=!password,!none")
        .get_require_auth()
        .expect("set");
    assert!(allowed.allows(AuthMethod::Md5) && allowed.allows(AuthMethod::ScramSha256));
    assert!(!allowed.allows(AuthMethod::Password) && !allowed.allows(AuthMethod::None));
    assert!(err("require_auth=md5,!password").contains("mixes"));
    assert!(err("require_auth=kerberos").contains("\"kerberos\""));
    assert!(err("require_auth=md5,md5").contains("twice"));
    assert_eq!(ok("require_auth=").get_require_auth(), None);
}

#[test]
fn several_hosts() {
    let c = ok("postgres://u@a:1,b,[::1]:3/db?target_session_attrs=read-write");
    assert_eq!(
        c.get_hosts(),
        &[
            Host::Tcp("a".into()),
            Host::Tcp("b".into()),
            Host::Tcp("::1".into())
        ]
    );
    assert_eq!(c.get_ports(), &[1, 5432, 3]);
    assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
    let targets = c.targets().expect("targets");
    let shown: Vec<String> = targets.iter().map(Config::display_target).collect();
    assert_eq!(shown, ["a:1", "b:5432", "[::1]:3"]);
    assert!(targets
        .iter()
        .all(|t| t.get_user() == "u" && t.get_dbname() == "db"));

    let c =
        ok("host=a,b,/run/pg port=7 load_balance_hosts=random target_session_attrs=prefer-standby");
    assert_eq!(c.get_hosts()[2], Host::Unix("/run/pg".into()));
    let shown: Vec<String> = c
        .targets()
        .expect("targets")
        .iter()
        .map(Config::display_target)
        .collect();
    assert_eq!(shown, ["a:7", "b:7", "/run/pg/.s.PGSQL.7"]);
    assert_eq!(c.get_load_balance_hosts(), LoadBalanceHosts::Random);
    assert_eq!(
        c.get_target_session_attrs(),
        TargetSessionAttrs::PreferStandby
    );
    assert!(err("target_session_attrs=master").contains("read-write"));
}

#[test]
fn statements_keepalives_and_user_timeout() {
    assert_eq!(ok("prepare=unnamed").get_prepare(), Prepare::Unnamed);
    assert_eq!(ok("statement_cache=0").get_prepare(), Prepare::Unnamed);
    assert_eq!(ok("statement_cache=16").get_statement_cache(), 16);
    assert!(err("statement_cache=lots").contains("statement_cache"));
    let c = ok("keepalives=0 keepalives_idle=5 keepalives_interval=2 keepalives_count=4 tcp_user_timeout=1500");
    let k = c.get_keepalives();
    assert!(!k.enabled);
    assert_eq!(
        (k.idle, k.interval, k.count),
        (Duration::from_secs(5), Duration::from_secs(2), 4)
    );
    assert_eq!(c.get_tcp_user_timeout(), Some(Duration::from_millis(1500)));
    assert_eq!(ok("tcp_user_timeout=0").get_tcp_user_timeout(), None);
    assert!(err("keepalives=yes").contains("keepalives"));
}

#[test]
fn neither_url_nor_key_value() {
    assert!(err("localhost").contains("neither"));
    assert!(err("").contains("empty"));
    assert!(err("mysql://h/db").contains("\"mysql\""));
}

#[test]
fn debug_redacts_password() {
    let c = Config::new().password("hunter2");
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("***"), "{dbg}");
    let dbg = format!("{:?}", ok("postgres://u:hunter2@h"));
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!format!("{:?}", Config::new()).contains("***"));
}

#[test]
fn socket_path_and_host_setter() {
    assert_eq!(Config::new().socket_path(), None);
    let c = Config::new().host("/run/pg").port(6000);
    assert_eq!(c.get_host(), &Host::Unix(PathBuf::from("/run/pg")));
    assert_eq!(
        c.socket_path(),
        Some(PathBuf::from("/run/pg/.s.PGSQL.6000"))
    );
    let c = Config::new().unix_socket_dir("/var/run/postgresql");
    assert_eq!(
        c.socket_path(),
        Some(PathBuf::from("/var/run/postgresql/.s.PGSQL.5432"))
    );
    assert_eq!(
        Config::new().host("10.1.2.3").display_target(),
        "10.1.2.3:5432"
    );
}

#[test]
fn dbname_falls_back_to_user() {
    let c = Config::new().user("carol");
    assert_eq!(c.get_dbname(), "carol");
    assert_eq!(c.clone().dbname("other").get_dbname(), "other");
    assert_eq!(ok("user=dave").get_dbname(), "dave");
    assert_eq!(ok("postgres://erin@h").get_dbname(), "erin");
}

#[test]
fn from_str_matches_parse() {
    let c: Config = "host=h port=1".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c, ok("postgres://h:1"));
}

#[test]
fn memory_caps() {
    let c = Config::new();
    assert_eq!(c.get_max_message_size(), (1 << 30) + 1024);
    assert_eq!(c.get_reply_buffer(), 4 << 20);
    assert_eq!(c.get_notification_queue(), 10_000);
    let c = ok("postgres://h/db?max_message_size=65536&reply_buffer=1000&notification_queue=3");
    assert_eq!(c.get_max_message_size(), 65536);
    assert_eq!(c.get_reply_buffer(), 1000);
    assert_eq!(c.get_notification_queue(), 3);
    assert_eq!(
        ok("max_message_size='' notification_queue=''").limits(),
        Config::new().limits()
    );
    assert!(err("max_message_size=100").contains("from 8192"));
    assert!(err("reply_buffer=0").contains("reply_buffer"));
    assert!(err("notification_queue=-1").contains("notifications"));
    assert_eq!(
        Config::new().max_message_size(1).get_max_message_size(),
        8192
    );
    assert_eq!(
        Config::new().notification_queue(0).get_notification_queue(),
        1
    );
}
