//! The checkpoint file on a real disk: written, read back, and broken on purpose.

use std::collections::BTreeMap;

use proptest::prelude::*;
use uuid::Uuid;

use super::*;

type State = BTreeMap<String, u64>;

fn codec(version: u32) -> Codec<State> {
    Codec::json(version)
}

fn sample() -> State {
    [("a".to_owned(), 1), ("b".to_owned(), 2)].into()
}

fn saved(dir: &Path) -> PathBuf {
    let id = Uuid::from_u128(7);
    save(dir, "board", &codec(3), 42, id, &sample()).expect("save");
    file(dir, "board")
}

#[test]
fn a_saved_checkpoint_loads_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("checkpoints");
    saved(&dir);
    let loaded = load(&dir, "board", &codec(3)).expect("load");
    assert_eq!(loaded.position, 42);
    assert_eq!(loaded.event_id, Uuid::from_u128(7));
    assert_eq!(loaded.state, sample());
    // Nothing but the checkpoint is left in the directory.
    let names: Vec<_> = fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["board.ckpt".to_owned()]);
}

#[test]
fn missing_is_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        load(tmp.path(), "board", &codec(1)).err(),
        Some(Ignored::Missing)
    );
    assert_eq!(
        load(&tmp.path().join("none"), "board", &codec(1)).err(),
        Some(Ignored::Missing)
    );
}

#[test]
fn another_version_is_ignored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    saved(tmp.path());
    assert_eq!(
        load(tmp.path(), "board", &codec(4)).err(),
        Some(Ignored::OtherVersion {
            found: 3,
            wanted: 4
        })
    );
}

#[test]
fn a_truncated_file_is_refused_at_every_length() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = saved(tmp.path());
    let whole = fs::read(&path).expect("read");
    for len in 0..whole.len() {
        fs::write(&path, &whole[..len]).expect("write");
        match load(tmp.path(), "board", &codec(3)) {
            Err(Ignored::Damaged(_)) => {}
            other => panic!("truncated to {len} bytes: {other:?}"),
        }
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = saved(tmp.path());
    let whole = fs::read(&path).expect("read");
    for at in 0..whole.len() {
        let mut bad = whole.clone();
        bad[at] ^= 0x20;
        fs::write(&path, &bad).expect("write");
        match load(tmp.path(), "board", &codec(3)) {
            Err(Ignored::Damaged(_)) => {}
            other => panic!("byte {at} flipped: {other:?}"),
        }
    }
}

#[test]
fn a_state_that_does_not_decode_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A well-framed file whose state is not the projection's: checksum right, JSON wrong.
    let bytes = frame(3, 5, Uuid::nil(), br#"{"a": "not a number"}"#);
    write_atomically(tmp.path(), "board", &bytes).expect("write");
    match load(tmp.path(), "board", &codec(3)) {
        Err(Ignored::Damaged(why)) => assert!(why.contains("does not decode"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_kill_while_writing_leaves_the_old_checkpoint_and_its_temp_is_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    saved(tmp.path());
    // What a kill -9 between write and rename leaves: a partial temp file.
    let partial = tmp.path().join("board.ckpt.tmp-99999-0");
    fs::write(&partial, &frame(3, 50, Uuid::nil(), b"{\"a\":")[..30]).expect("write");
    let loaded = load(tmp.path(), "board", &codec(3)).expect("the old checkpoint");
    assert_eq!(loaded.position, 42);
    assert!(!partial.exists(), "the leftover temp file is removed");
}

#[test]
fn saving_replaces_the_old_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    saved(tmp.path());
    let mut newer = sample();
    newer.insert("c".to_owned(), 3);
    save(
        tmp.path(),
        "board",
        &codec(3),
        99,
        Uuid::from_u128(9),
        &newer,
    )
    .expect("save");
    let loaded = load(tmp.path(), "board", &codec(3)).expect("load");
    assert_eq!((loaded.position, loaded.state), (99, newer));
}

#[test]
fn a_schedule_saves_after_enough_events_only() {
    let s = Schedule::from(10);
    assert!(!s.due(10));
    assert!(!s.due(11));
    assert!(s.due(10 + EVERY_EVENTS));
}

proptest! {
    /// Any state at any position comes back as it was saved.
    #[test]
    fn frames_round_trip(
        state in proptest::collection::btree_map("[a-z]{0,8}", any::<u64>(), 0..20),
        position in any::<u64>(),
        id in any::<u128>(),
        version in any::<u32>(),
    ) {
        let body = serde_json::to_vec(&state).expect("encode");
        let bytes = frame(version, position, Uuid::from_u128(id), &body);
        let (p, e, s) = unframe(&bytes, version).expect("unframe");
        prop_assert_eq!((p, e, s), (position, Uuid::from_u128(id), body.as_slice()));
    }
}
