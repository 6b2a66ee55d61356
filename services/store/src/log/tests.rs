use super::*;
use events::store_api::AppendOk;
use events::{AppendRequest, ExpectedVersion, NewEvent};
use serde_json::json;

fn stream() -> StreamName {
    StreamName::parse(&format!("incident-{}", Uuid::new_v4())).unwrap()
}

fn ev(n: u32) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: "Tested".into(),
        v: 1,
        data: json!({ "n": n }),
        meta: Default::default(),
    }
}

fn append(
    log: &Log,
    s: &StreamName,
    ev_: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<AppendOk, StoreError> {
    let mut group = [Pending {
        request: AppendRequest {
            stream: s.clone(),
            expected_version: ev_,
            events,
        }
        .into(),
        outcome: None,
    }];
    log.commit_group(&mut group).unwrap();
    group[0].outcome.take().unwrap()
}

#[test]
fn survives_reopen_with_positions_versions_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let s = stream();
    let batch = vec![ev(1), ev(2)];
    {
        let log = Log::open(dir.path(), Durability::SyncData).unwrap();
        let ok = append(&log, &s, ExpectedVersion::NoStream, batch.clone()).unwrap();
        assert_eq!(
            ok,
            AppendOk {
                first_position: 1,
                last_position: 2,
                stream_version: 2,
                duplicate: false,
            }
        );
        log.close().unwrap();
    }
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    assert_eq!(log.head(), 2);
    assert_eq!(log.stream_version(&s).unwrap(), 2);
    // The retry after a restart is answered from the permanent id index.
    let again = append(&log, &s, ExpectedVersion::NoStream, batch).unwrap();
    assert_eq!(
        again,
        AppendOk {
            first_position: 1,
            last_position: 2,
            stream_version: 2,
            duplicate: true,
        }
    );
    assert_eq!(log.head(), 2);
    let (events, version) = log.read_stream(&s, 1, 10).unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn a_group_judges_appends_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    let s = stream();
    let dup = ev(9);
    let mk = |e: Vec<NewEvent>, x| Pending {
        request: AppendRequest {
            stream: s.clone(),
            expected_version: x,
            events: e,
        }
        .into(),
        outcome: None,
    };
    let mut group = vec![
        mk(vec![ev(1)], ExpectedVersion::NoStream),
        mk(vec![ev(2)], ExpectedVersion::NoStream),
        mk(vec![dup.clone()], ExpectedVersion::Exact(1)),
        mk(vec![dup.clone()], ExpectedVersion::Exact(1)),
        mk(
            vec![NewEvent {
                data: json!({"other": true}),
                ..dup
            }],
            ExpectedVersion::Any,
        ),
    ];
    let committed = log.commit_group(&mut group).unwrap();
    assert_eq!(committed.events.len(), 2);
    let out: Vec<_> = group.into_iter().map(|p| p.outcome.unwrap()).collect();
    assert_eq!(
        out[0],
        Ok(AppendOk {
            first_position: 1,
            last_position: 1,
            stream_version: 1,
            duplicate: false,
        })
    );
    assert_eq!(out[1].as_ref().unwrap_err().current_version, Some(1));
    assert_eq!(
        out[2],
        Ok(AppendOk {
            first_position: 2,
            last_position: 2,
            stream_version: 2,
            duplicate: false,
        })
    );
    assert_eq!(
        out[3],
        out[2].clone().map(|ok| AppendOk {
            duplicate: true,
            ..ok
        }),
        "a retry inside the same group gets the original answer, marked as a duplicate"
    );
    assert_eq!(
        out[4].as_ref().unwrap_err().code,
        events::ErrorCode::IdReused
    );
}

#[test]
fn a_group_prepared_while_another_is_in_flight_sees_it_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    let s = stream();
    let first = ev(1);
    let pending = |events: Vec<NewEvent>, x| {
        Pending::new(AppendRequest {
            stream: s.clone(),
            expected_version: x,
            events,
        })
    };
    let mut one = vec![pending(vec![first.clone()], ExpectedVersion::NoStream)];
    let prepared_one = log.prepare_group(&mut one).unwrap();
    // Prepared on top of `one` before `one` is written: its version, its id and the
    // head it leaves count already.
    let mut two = vec![
        pending(vec![first.clone()], ExpectedVersion::NoStream),
        pending(vec![ev(2)], ExpectedVersion::Exact(1)),
        pending(vec![ev(3)], ExpectedVersion::NoStream),
    ];
    let prepared_two = log.prepare_group(&mut two).unwrap();
    assert_eq!(
        log.head(),
        0,
        "nothing is durable, so readers see nothing yet"
    );
    assert_eq!(log.commit_prepared(&mut one, prepared_one).events.len(), 1);
    assert_eq!(log.head(), 1);
    let committed = log.commit_prepared(&mut two, prepared_two);
    assert_eq!(
        committed
            .events
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(log.head(), 2);
    let out: Vec<_> = two.into_iter().map(|p| p.outcome.unwrap()).collect();
    assert_eq!(
        out[0],
        Ok(AppendOk {
            first_position: 1,
            last_position: 1,
            stream_version: 1,
            duplicate: true,
        }),
        "a retry of an event in flight gets its position"
    );
    assert_eq!(out[1].as_ref().unwrap().first_position, 2);
    assert_eq!(out[2].as_ref().unwrap_err().current_version, Some(2));
    // Reopened, the log holds exactly what was committed, chained.
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    assert_eq!(log.head(), 2);
    assert_eq!(log.stream_version(&s).unwrap(), 2);
}

#[test]
fn groups_prepared_on_a_group_that_is_never_written_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    let s = stream();
    let mut one = vec![Pending::new(AppendRequest {
        stream: s.clone(),
        expected_version: ExpectedVersion::NoStream,
        events: vec![ev(1)],
    })];
    let prepared_one = log.prepare_group(&mut one).unwrap();
    // Judged as if `one` were written: `wrong_expected_version` here would be a lie.
    let mut two = vec![Pending::new(AppendRequest {
        stream: s.clone(),
        expected_version: ExpectedVersion::NoStream,
        events: vec![ev(2)],
    })];
    let prepared_two = log.prepare_group(&mut two).unwrap();
    assert!(two[0].outcome.as_ref().unwrap().is_err());
    log.stop_writes(Failure::Failed("test".into()));
    assert!(
        log.commit_prepared(&mut one, prepared_one)
            .events
            .is_empty()
    );
    assert!(
        log.commit_prepared(&mut two, prepared_two)
            .events
            .is_empty()
    );
    for p in one.iter().chain(&two) {
        assert_eq!(
            p.outcome.as_ref().unwrap().as_ref().unwrap_err().code,
            events::ErrorCode::Unavailable
        );
    }
    assert_eq!(log.head(), 0);
    assert_eq!(log.stream_version(&s).unwrap(), 0);
}
