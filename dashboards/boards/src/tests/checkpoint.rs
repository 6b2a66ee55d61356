//! Checkpoints of the board: for random logs and any k, the board after event k written as a
//! checkpoint (serialised, read back) and fed the events after k is the fold of the whole
//! log — the same changes and deltas for every later event, the same snapshots at the end.

use proptest::prelude::*;

use super::properties::{Step, broadcast_on, crowded_incident, log_of, step};
use super::typed;
use crate::{Situation, View};

/// Checks the checkpoint contract on the log of `steps`, checkpointed after event `k`.
fn checkpoint_at_k_plus_tail_is_the_fold(
    steps: &[Step],
    k: proptest::sample::Index,
) -> Result<(), TestCaseError> {
    let log = log_of(steps);
    let k = k.index(log.events.len() + 1);
    let mut original = crate::replay(&log.events[..k]);
    let bytes = serde_json::to_vec(&original).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut restored: Situation =
        serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(restored.position(), original.position());
    prop_assert_eq!(restored.as_of(), original.as_of());
    if let Err(e) = restored.check_invariants() {
        prop_assert!(false, "restored at k = {}: {}", k, e);
    }
    for event in &log.events[k..] {
        let a = original.apply(typed(event));
        let b = restored.apply(typed(event));
        prop_assert_eq!(&a, &b, "changes at position {}", event.position);
        for view in View::ALL {
            prop_assert_eq!(
                original.delta(&a, view),
                restored.delta(&b, view),
                "delta at position {}, {:?}",
                event.position,
                view
            );
        }
    }
    let whole = log.board(); // checks the invariants
    for view in View::ALL {
        prop_assert_eq!(restored.snapshot(view), whole.snapshot(view), "k = {}", k);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn a_checkpoint_at_any_k_plus_the_tail_is_the_fold(
        steps in proptest::collection::vec(step(), 0..220),
        k in any::<proptest::sample::Index>(),
    ) {
        checkpoint_at_k_plus_tail_is_the_fold(&steps, k)?;
    }

    /// Broadcasts beyond the listed ones keep their counters and agencies in a checkpoint.
    #[test]
    fn a_checkpoint_keeps_the_broadcasts_the_list_does_not_show(
        steps in proptest::collection::vec(broadcast_on(26, 8), 0..200),
        k in any::<proptest::sample::Index>(),
    ) {
        checkpoint_at_k_plus_tail_is_the_fold(&steps, k)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Markers beyond the shown ones (and their order) survive a checkpoint.
    #[test]
    fn a_checkpoint_keeps_the_markers_a_country_does_not_show(
        steps in proptest::collection::vec(crowded_incident(), 0..600),
        k in any::<proptest::sample::Index>(),
    ) {
        checkpoint_at_k_plus_tail_is_the_fold(&steps, k)?;
    }
}
