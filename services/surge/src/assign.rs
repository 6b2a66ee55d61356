//! `assign`, `complete` and `cancel` of the surge service, with the officer's reservation
//! stream ([`crate::reserve`]): what keeps "one officer on one active surge" true across
//! instances, by the log alone.
//!
//! `assign`: read the surge and decide as the aggregate does (role, scope, the officer's
//! registration, approved, not full); then the officer's reservation stream, and the surge
//! of its hold if it is another command's; then, by [`reserve::resolve`]: append the
//! reservation with the version read (a lost race reads again), finish another command's
//! pending hold and look again, refuse, or finish this command's own hold — append the
//! assignment to the surge under the command's id with the surge's version. Every step reads
//! afresh, so each round either answers or follows an append someone made.
//!
//! `complete` and `cancel`: the change as the host makes it (optimistic concurrency on the
//! surge's stream), then a release on each of its officers' streams still held by it; a
//! retry (same id) writes the releases a crash left out.

use std::sync::Arc;

use events::aggregate::Aggregate;
use events::command::{Command, Refusal, Written};
use events::domain::DomainEvent;
use events::domain::surge_officer::{self, SurgeOfficerReleased, SurgeOfficerReserved};
use events::{AppendOk, AppendRequest, ErrorCode, ExpectedVersion, RecordedEvent, StreamName};
use runtime::commands::{self, STORE_DEADLINE, store_refusal};
use runtime::host::{Host, Service};
use runtime::store_client::ClientError;
use uuid::Uuid;

use crate::reserve::{self, Hold, Reservation, Step};
use crate::surge::{Facts, Surge, SurgeCommand};
use crate::{Change, Surges, stream_of};

/// Rounds of read-and-append before giving up with `conflict` ("try again"). Each round that
/// does not answer follows an append by someone else to the stream it read; ten assigns to
/// one surge at the same moment need at most ten.
const ROUNDS: usize = 32;

fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

fn too_busy() -> Refusal {
    Refusal::conflict("too many changes to this at the same moment; try again")
}

fn written(stream: &StreamName, e: &RecordedEvent, duplicate: bool) -> Written {
    Written {
        stream: stream.clone(),
        event_id: e.id,
        position: e.position,
        stream_version: e.version,
        duplicate,
    }
}

/// Surge `id` folded from its stream as it stands now, with the stream's events.
async fn surge_now(
    host: &Host<Surges>,
    id: Uuid,
) -> Result<(runtime::stream_cache::History, u64, Option<Surge>), Refusal> {
    let (history, version) = host.load(&stream_of(id)).await?;
    let state = Surge::fold(&history);
    Ok((history, version, state))
}

/// Appends `request`: what the store answered (new or a duplicate), or `None` if the stream
/// moved since it was read.
async fn append(host: &Host<Surges>, request: &AppendRequest) -> Result<Option<AppendOk>, Refusal> {
    match host.store().append_retrying(request, STORE_DEADLINE).await {
        Ok(ok) => Ok(Some(ok)),
        Err(ClientError::Store(e)) if e.code == ErrorCode::WrongExpectedVersion => Ok(None),
        Err(e) => Err(store_refusal(e)),
    }
}

/// `assign` (see the module doc).
pub(crate) async fn assign(host: &Arc<Host<Surges>>, payload: &[u8]) -> Result<Written, Refusal> {
    let cmd: Command<Change> = commands::decode(payload)?;
    let id = cmd.body.surge;
    let parsed = Surge::parse("assign", &cmd.actor, cmd.body.change.clone())?;
    let facts = Surges::facts(host, id, &cmd.actor, &parsed).await?;
    let SurgeCommand::Assign(asked) = &parsed else {
        return Err(Refusal::invalid("assign takes {\"officer\"}"));
    };
    let stream = stream_of(id);
    let officer_stream = surge_officer::stream_for(&asked.officer);
    for _ in 0..ROUNDS {
        let (history, _, state) = surge_now(host, id).await?;
        if let Some(done) = history.iter().find(|e| e.id == cmd.id) {
            return Ok(written(&stream, done, true));
        }
        // The aggregate's rules, without the register: the officer's stream decides who
        // holds them.
        let decided = Surge::decide(id, state.as_ref(), &cmd.actor, parsed.clone(), &facts)?;
        let Some(DomainEvent::SurgeOfficerAssigned(assigned)) = decided.into_iter().next() else {
            return Err(Refusal::invalid("assign takes {\"officer\"}"));
        };
        let officer = assigned.officer.as_str();
        let (held, version) = host.load(&officer_stream).await?;
        let hold = Reservation::fold(&held).and_then(|r| r.hold);
        let holder = match &hold {
            Some(h) if h.command != cmd.id => surge_now(host, h.surge).await?.2,
            _ => None,
        };
        match reserve::resolve(hold.as_ref(), holder.as_ref(), officer, id, cmd.id)? {
            Step::Held(other) => return Err(reserve::held(officer, other)),
            Step::Finish(h) => {
                // Another assignment stopped (or not yet arrived) between its two appends:
                // finish it; whatever comes of it, look again.
                finish(host, officer, &h).await?;
            }
            Step::Ours(h) => {
                let w = finish(host, officer, &h).await?;
                if !w.duplicate
                    && let Ok((_, _, Some(state))) = surge_now(host, id).await
                {
                    Surges::wrote(host, state);
                }
                return Ok(w);
            }
            Step::Free => {
                let reserved = SurgeOfficerReserved {
                    officer: officer.to_owned(),
                    surge: id,
                    command: cmd.id,
                    from_duty_station: assigned.from_duty_station.clone(),
                };
                let event = DomainEvent::from(reserved)
                    .try_to_new_event(reserve::reservation_id(cmd.id, version), cmd.meta())?;
                let request = AppendRequest {
                    after: None,
                    stream: officer_stream.clone(),
                    expected_version: expected(version),
                    events: vec![event],
                };
                // Reserved or lost the race: either way the next round reads what stands.
                append(host, &request).await?;
            }
        }
    }
    Err(too_busy())
}

/// Appends the assignment `hold` announces to its surge (once: under the reserving command's
/// id, with the surge's version), or releases the hold when the surge can no longer take the
/// officer (the refusal says why).
async fn finish(host: &Host<Surges>, officer: &str, hold: &Hold) -> Result<Written, Refusal> {
    let stream = stream_of(hold.surge);
    for _ in 0..ROUNDS {
        let (history, version, state) = surge_now(host, hold.surge).await?;
        if let Some(done) = history.iter().find(|e| e.id == hold.command) {
            return Ok(written(&stream, done, true));
        }
        let Some(surge) = state else {
            release(host, officer, hold.surge).await;
            return Err(Refusal::not_found(format!(
                "no surge {}; check the id",
                hold.surge
            )));
        };
        if let Err(refusal) = reserve::can_take(&surge, officer) {
            release(host, officer, hold.surge).await;
            return Err(refusal);
        }
        let event = DomainEvent::from(hold.assignment(officer))
            .try_to_new_event(hold.command, hold.meta.clone())?;
        let request = AppendRequest {
            after: None,
            stream: stream.clone(),
            expected_version: expected(version),
            events: vec![event],
        };
        if let Some(ok) = append(host, &request).await? {
            return Ok(Written {
                stream,
                event_id: hold.command,
                position: ok.first_position,
                stream_version: ok.stream_version,
                duplicate: ok.duplicate,
            });
        }
    }
    Err(too_busy())
}

/// Ends `officer`'s hold of `surge` on their reservation stream, if it is the one that
/// stands. For the record only (see [`crate::reserve`]): a failure is logged, not answered.
async fn release(host: &Host<Surges>, officer: &str, surge: Uuid) {
    let stream = surge_officer::stream_for(officer);
    for _ in 0..ROUNDS {
        let (held, version) = match host.load(&stream).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(%officer, %surge, error = %e.message, "could not read a reservation; not released");
                return;
            }
        };
        let Some(hold) = Reservation::fold(&held)
            .and_then(|r| r.hold)
            .filter(|h| h.surge == surge)
        else {
            return;
        };
        let event = DomainEvent::from(SurgeOfficerReleased {
            officer: officer.to_owned(),
            surge,
            command: hold.command,
        });
        let Ok(event) = event.try_to_new_event(reserve::release_id(hold.event), hold.meta.clone())
        else {
            return;
        };
        let request = AppendRequest {
            after: None,
            stream: stream.clone(),
            expected_version: expected(version),
            events: vec![event],
        };
        match append(host, &request).await {
            Ok(Some(_)) => return,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(%officer, %surge, error = %e.message, "could not release a reservation");
                return;
            }
        }
    }
}

/// `complete` and `cancel`: the change, then the releases (see the module doc).
pub(crate) async fn close(
    host: &Arc<Host<Surges>>,
    name: &str,
    payload: &[u8],
) -> Result<Written, Refusal> {
    let cmd: Command<Change> = commands::decode(payload)?;
    let id = cmd.body.surge;
    let parsed = Surge::parse(name, &cmd.actor, cmd.body.change.clone())?;
    let facts = Facts::default();
    let stream = stream_of(id);
    let w = commands::execute(host.store(), &stream, &cmd, |history| {
        let state = Surge::fold(history);
        Surge::decide(id, state.as_ref(), &cmd.actor, parsed.clone(), &facts)
    })
    .await?;
    if let Ok((_, _, Some(state))) = surge_now(host, id).await {
        for a in &state.officers {
            release(host, &a.officer, id).await;
        }
        if !w.duplicate {
            Surges::wrote(host, state);
        }
    }
    Ok(w)
}
