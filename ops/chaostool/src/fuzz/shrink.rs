//! Panics and shrinking for the in-process targets: a panic inside a check is caught and
//! recorded quietly (any other panic keeps the usual report), and a failing input is shrunk
//! with proptest's own `simplify`/`complicate` loop, bounded, to the simplest that still
//! fails.

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use super::{Tally, clip_debug};

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static PANICKED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside [`catch`] are recorded quietly; any other keeps the usual report.
pub(super) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                PANICKED.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic becomes `Err("panic: …")`.
fn catch<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    CATCHING.with(|c| c.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    match r {
        Ok(r) => r,
        Err(_) => Err(format!(
            "PANIC: {}",
            PANICKED
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "(no message)".into())
        )),
    }
}

/// Drives `strategy` until `budget` is spent, judging each value with `check` (which
/// returns a label to count, or what went wrong); failures are shrunk.
pub(super) fn fuzz_sync<S>(
    tally: &mut Tally,
    runner: &mut TestRunner,
    strategy: &S,
    budget: Duration,
    check: impl Fn(&S::Value) -> Result<&'static str, String>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let end = Instant::now() + budget;
    while Instant::now() < end {
        let Ok(mut tree) = strategy.new_tree(runner) else {
            continue;
        };
        tally.cases += 1;
        match catch(|| check(&tree.current())) {
            Ok(label) => tally.note(label),
            Err(first) => {
                let (value, why) = shrink(&mut tree, first, |v| catch(|| check(v)).err());
                tally.fail(format!("{why}\n    input (shrunk): {}", clip_debug(&value)));
            }
        }
    }
}

/// proptest's shrinking loop, bounded: the simplest value that still fails, and why.
fn shrink<T: ValueTree>(
    tree: &mut T,
    first: String,
    fails: impl Fn(&T::Value) -> Option<String>,
) -> (T::Value, String) {
    let mut best = (tree.current(), first);
    if !tree.simplify() {
        return best;
    }
    for _ in 0..4096 {
        let current = tree.current();
        match fails(&current) {
            Some(why) => {
                best = (current, why);
                if !tree.simplify() {
                    break;
                }
            }
            None => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::fuzz::runner;

    #[test]
    fn a_panic_is_caught_and_shrunk() {
        install_panic_hook();
        let mut tally = Tally::new("t");
        let mut r = runner(1, 1);
        fuzz_sync(
            &mut tally,
            &mut r,
            &(0u32..1000),
            Duration::from_millis(50),
            |n| {
                assert!(*n < 500, "too big");
                Ok("fine")
            },
        );
        assert!(tally.failures > 0);
        assert!(tally.examples[0].contains("PANIC"), "{:?}", tally.examples);
        assert!(
            tally.examples[0].contains("input (shrunk): 500"),
            "{:?}",
            tally.examples
        );
    }
}
