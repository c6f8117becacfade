//! The coroutine-local convenience scope: cleared on exit and on panic, never visible to a
//! later request on a reused coroutine, not inherited by spawned coroutines.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use lifeguard_router_ext::{current, scope, Lifeguard, RequestExecutor, Settings};

fn executor(lg: &Lifeguard, id: &str) -> Arc<RequestExecutor> {
    let ctx = lg.context([("Lifeguard-Request-Id", id)]).unwrap();
    Arc::new(lg.executor(ctx))
}

#[test]
fn scope_is_cleared_on_exit_and_on_panic_across_reused_coroutines() {
    let lg = Lifeguard::new(common::pool(), Settings::default());
    // Sequential coroutines: may hands finished coroutines' stacks back out of its pool,
    // so later ones run on reused coroutines.
    for i in 0..200 {
        let lg = lg.clone();
        let h = may::go!(move || {
            assert!(current().is_none(), "request {i} starts clean");
            let exec = executor(&lg, &format!("r{i}"));
            let seen = scope(&exec, || {
                current().unwrap().context().request_id().to_string()
            });
            assert_eq!(seen, format!("r{i}"));
            assert!(current().is_none());
            let panicked = catch_unwind(AssertUnwindSafe(|| {
                scope(&exec, || {
                    if i % 2 == 0 {
                        panic!("handler failure");
                    }
                })
            }));
            assert_eq!(panicked.is_err(), i % 2 == 0);
            assert!(current().is_none(), "cleared after a panic too");
            // Leave the coroutine with nothing set; the next one must see nothing either.
        });
        h.join().expect("the coroutine's own assertions hold");
    }
}

#[test]
fn nested_scopes_restore_the_outer_one_and_children_do_not_inherit() {
    let lg = Lifeguard::new(common::pool(), Settings::default());
    let outer = executor(&lg, "outer");
    let inner = executor(&lg, "inner");
    let h = may::go!(move || {
        scope(&outer, || {
            scope(&inner, || {
                assert_eq!(current().unwrap().context().request_id(), "inner")
            });
            assert_eq!(current().unwrap().context().request_id(), "outer");
            let child = may::go!(|| current().is_none());
            assert!(
                child.join().unwrap(),
                "a spawned coroutine does not inherit the scope"
            );
        });
        assert!(current().is_none());
    });
    h.join().unwrap();
}

#[test]
fn handle_installs_the_scope_only_for_the_handler() {
    let lg = Lifeguard::new(common::pool(), Settings::default());
    let ctx = lg.context([("Lifeguard-Request-Id", "h1")]).unwrap();
    let done = lg.handle(ctx, |exec| {
        Arc::ptr_eq(&current().unwrap(), &current().unwrap())
            && current().unwrap().context().request_id() == exec.context().request_id()
    });
    assert!(done.output);
    assert!(
        current().is_none(),
        "also on a plain thread (may's thread-local fallback)"
    );
    assert_eq!(
        done.headers,
        vec![("Lifeguard-Request-Id".to_string(), "h1".to_string())]
    );

    let off = Lifeguard::new(
        lg.pool().clone(),
        Settings {
            coroutine_local: false,
            ..Settings::default()
        },
    );
    let done = off.handle(off.context([]).unwrap(), |_| current().is_none());
    assert!(done.output, "no scope when coroutine_local is off");
}
