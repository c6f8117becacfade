//! Header parsing: every accepted form and every malformed case (no database needed).

use std::time::Duration;

use lifeguard_core::pool::ReadPreference;
use lifeguard_router_ext::{HeaderNames, Problem, RequestContext, Settings};

fn parse(headers: &[(&str, &str)]) -> Result<RequestContext, Problem> {
    RequestContext::from_headers(&Settings::default(), headers.iter().copied())
}

fn rejected(headers: &[(&str, &str)], header: &str) {
    let p = parse(headers).expect_err("must be rejected");
    assert_eq!(p.status, 400);
    assert_eq!(p.header.as_deref(), Some(header));
    assert!(p.detail.contains(header), "{}", p.detail);
    let body: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
    for key in ["type", "title", "status", "detail", "header"] {
        assert!(!body[key].is_null(), "missing {key}");
    }
}

#[test]
fn defaults_without_headers() {
    let ctx = parse(&[("Accept", "*/*")]).unwrap();
    assert_eq!(
        ctx.read_options().preference,
        ReadPreference::ReplicaPreferred
    );
    assert!(ctx.read_options().min_lsn.is_none());
    assert!(ctx.read_options().max_staleness.is_none());
    assert!(ctx.timeout().is_none());
    assert!(!ctx.request_id_from_client());
    assert_eq!(ctx.request_id().len(), 36, "a generated UUID");
    assert_ne!(parse(&[]).unwrap().request_id(), ctx.request_id());
}

#[test]
fn every_preference_spelling() {
    for (text, pref) in [
        ("primary", ReadPreference::Primary),
        ("primary-preferred", ReadPreference::PrimaryPreferred),
        ("replica", ReadPreference::Replica),
        ("REPLICA-Preferred", ReadPreference::ReplicaPreferred),
        (" nearest ", ReadPreference::Nearest),
    ] {
        let ctx = parse(&[("lifeguard-read-preference", text)]).unwrap();
        assert_eq!(ctx.read_options().preference, pref, "{text}");
    }
    let s = Settings {
        default_preference: ReadPreference::Primary,
        ..Settings::default()
    };
    let ctx = RequestContext::from_headers(&s, []).unwrap();
    assert_eq!(ctx.read_options().preference, ReadPreference::Primary);
}

#[test]
fn bad_preference() {
    for v in [
        "",
        "secondary",
        "prefer-standby",
        "primary,replica",
        "primary preferred",
    ] {
        rejected(
            &[("Lifeguard-Read-Preference", v)],
            "Lifeguard-Read-Preference",
        );
    }
}

#[test]
fn staleness_and_timeout() {
    let ctx = parse(&[
        ("Lifeguard-Max-Staleness", "250"),
        ("Lifeguard-Timeout", "1500"),
    ])
    .unwrap();
    assert_eq!(
        ctx.read_options().max_staleness,
        Some(Duration::from_millis(250))
    );
    assert_eq!(ctx.timeout(), Some(Duration::from_millis(1500)));
    assert!(ctx.deadline().is_some());
    let ctx = parse(&[("Lifeguard-Max-Staleness", "0")]).unwrap();
    assert_eq!(ctx.read_options().max_staleness, Some(Duration::ZERO));

    let s = Settings {
        max_timeout: Some(Duration::from_millis(100)),
        default_timeout: Some(Duration::from_millis(50)),
        ..Settings::default()
    };
    let ctx = RequestContext::from_headers(&s, [("Lifeguard-Timeout", "99999")]).unwrap();
    assert_eq!(ctx.timeout(), Some(Duration::from_millis(100)), "clamped");
    let ctx = RequestContext::from_headers(&s, []).unwrap();
    assert_eq!(ctx.timeout(), Some(Duration::from_millis(50)), "default");
}

#[test]
fn bad_staleness() {
    for v in [
        "",
        "soon",
        "-1",
        "1.5",
        "10ms",
        "+5",
        "99999999999999999999",
        "86400001",
    ] {
        rejected(&[("Lifeguard-Max-Staleness", v)], "Lifeguard-Max-Staleness");
    }
}

#[test]
fn bad_timeout() {
    for v in ["", "0", "fast", "-3", "1e3", "86400001"] {
        rejected(&[("Lifeguard-Timeout", v)], "Lifeguard-Timeout");
    }
}

#[test]
fn tokens_take_the_maximum() {
    let ctx = parse(&[
        ("Lifeguard-Consistency-Token", "v1.42.1.10, v1.42.1.A0"),
        ("lifeguard-consistency-token", "v1.42.1.9F"),
    ])
    .unwrap();
    let t = ctx.read_options().min_lsn.unwrap();
    assert_eq!((t.system_id(), t.timeline(), t.lsn()), (42, 1, 0xA0));
    // A newer timeline wins over a higher LSN on an older one.
    let ctx = parse(&[("Lifeguard-Consistency-Token", "v1.42.1.FFFF,v1.42.2.1")]).unwrap();
    assert_eq!(ctx.read_options().min_lsn.unwrap().timeline(), 2);
}

#[test]
fn bad_token() {
    for v in [
        "v2.1.1.10",
        "v1.1.1",
        "v1.x.1.10",
        "v1.1.1.XYZ",
        "v1.1.1.10.5",
        "v1.1.1.10, garbage",
        "v1.1.1.11111111111111111",
    ] {
        rejected(
            &[("Lifeguard-Consistency-Token", v)],
            "Lifeguard-Consistency-Token",
        );
    }
    // One bad value among good ones still rejects.
    rejected(
        &[
            ("Lifeguard-Consistency-Token", "v1.1.1.10"),
            ("Lifeguard-Consistency-Token", "nope"),
        ],
        "Lifeguard-Consistency-Token",
    );
}

#[test]
fn request_id_echo_and_bad() {
    let ctx = parse(&[("Lifeguard-Request-Id", "req-01HZX:abc/1")]).unwrap();
    assert_eq!(ctx.request_id(), "req-01HZX:abc/1");
    assert!(ctx.request_id_from_client());
    let ctx = ctx.or_request_id("framework-id");
    assert_eq!(ctx.request_id(), "req-01HZX:abc/1", "the client's id wins");
    let ctx = parse(&[]).unwrap().or_request_id("framework-id");
    assert_eq!(ctx.request_id(), "framework-id");
    let long = "a".repeat(129);
    for v in ["", "has space", "tab\tinside", "é", long.as_str()] {
        rejected(&[("Lifeguard-Request-Id", v)], "Lifeguard-Request-Id");
    }
}

#[test]
fn repeated_single_valued_headers() {
    rejected(
        &[
            ("Lifeguard-Read-Preference", "primary"),
            ("Lifeguard-Read-Preference", "replica"),
        ],
        "Lifeguard-Read-Preference",
    );
    rejected(
        &[
            ("Lifeguard-Max-Staleness", "10"),
            ("Lifeguard-Max-Staleness", "20"),
        ],
        "Lifeguard-Max-Staleness",
    );
    // The same value twice is harmless.
    parse(&[
        ("Lifeguard-Read-Preference", "primary"),
        ("Lifeguard-Read-Preference", "primary"),
    ])
    .unwrap();
}

#[test]
fn configurable_names() {
    let s = Settings {
        names: HeaderNames {
            read_preference: "Read-From".into(),
            ..HeaderNames::default()
        },
        ..Settings::default()
    };
    let ctx = RequestContext::from_headers(&s, [("read-from", "primary")]).unwrap();
    assert_eq!(ctx.read_options().preference, ReadPreference::Primary);
    // The default name is no longer read.
    let ctx = RequestContext::from_headers(&s, [("Lifeguard-Read-Preference", "bogus")]).unwrap();
    assert_eq!(
        ctx.read_options().preference,
        ReadPreference::ReplicaPreferred
    );
    let p = RequestContext::from_headers(&s, [("Read-From", "bogus")]).unwrap_err();
    assert_eq!(p.header.as_deref(), Some("Read-From"));
}

#[test]
fn many_headers_are_fine_in_the_core() {
    // The 16-header limit is may_minihttp's (tests/minihttp.rs); the core takes any list.
    let names: Vec<String> = (0..40).map(|i| format!("X-Filler-{i}")).collect();
    let mut hs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    hs.push(("Lifeguard-Read-Preference", "nearest"));
    let ctx = parse(&hs).unwrap();
    assert_eq!(ctx.read_options().preference, ReadPreference::Nearest);
}
