use lifeguard_core::pg::Connection;
use lifeguard_core::Executor;
use std::sync::Arc;

#[test]
fn smoke() {
    may::config().set_workers(2);
    let url = std::env::var("LIFEGUARD_PRIMARY_URL").unwrap();
    let conn = Arc::new(Connection::open(&url).unwrap());
    let row = conn
        .query_one("SELECT $1::int4 + 1, 'hi'::text", &[&41i32])
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, String>(1), "hi");
    let hs: Vec<_> = (0..1000i32)
        .map(|i| {
            let c = conn.clone();
            may::go!(move || {
                let r = c.query_one("SELECT $1::int4 * 2", &[&i]).unwrap();
                assert_eq!(r.get::<_, i32>(0), i * 2);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let app = Connection::open(&std::env::var("LIFEGUARD_APP_URL").unwrap()).unwrap();
    assert_eq!(
        app.query_one("SELECT current_user::text", &[])
            .unwrap()
            .get::<_, String>(0),
        "lifeguard_app"
    );
    println!("cached {}", conn.cached_statements());
}
