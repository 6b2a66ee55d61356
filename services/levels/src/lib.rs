//! The levels service: the security level of each area (1 Minimal … 6 Extreme), set by duty
//! officers with a reason, with its full history, over NATS only.
//!
//! # Commands (`vigil.cmd.levels.<name>`, a `Command` in, a `Reply` out)
//! - `set` — body [`area::SetLevel`]. The area must be registered (reference data loaded by
//!   `vigil import`); its country comes from there. Appended to the area's `level` stream
//!   with the version read; `previous_level` is the level before. A retry with the same
//!   command id is answered with the original outcome.
//! - `history` — body `{"area": "<id>"}`: every level set, oldest first, read from the
//!   stream (always current).
//!
//! # Promises
//! An answer `ok` means the event is on disk; a refusal changes nothing; a field officer
//! reads only areas of their own country.

pub mod area;

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::command::{Command, Refusal, Written};
use events::domain::{area as area_events, level};
use runtime::StoreClient;
use runtime::commands::{self, reply};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::area::{History, SetLevel};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "levels";

/// Body of `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The area's id.
    pub area: String,
}

/// Answer of `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaHistory {
    /// The area's id.
    pub area: String,
    /// Its country.
    pub country: events::validate::Country,
    /// Its name.
    pub name: String,
    /// The level now.
    pub level: Option<events::validate::SecurityLevel>,
    /// Every level set, oldest first.
    pub history: Vec<area::LevelEntry>,
}

/// Serves the levels commands until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = Arc::new(StoreClient::new(client.clone(), Duration::from_secs(5)));
    // No register: ready as soon as it runs.
    let ready = || runtime::status::ServiceStatus::ready(SERVICE);
    runtime::status::serve(client.clone(), SERVICE, ready, shutdown.clone());
    commands::serve(client, SERVICE, shutdown, move |name, payload| {
        let store = store.clone();
        async move { handle(&store, &name, payload).await }
    })
    .await
}

async fn handle(store: &StoreClient, name: &str, payload: Bytes) -> Vec<u8> {
    match name {
        "set" => reply(set(store, &payload).await),
        "history" => reply(history(store, &payload).await),
        other => reply::<()>(Err(Refusal::invalid(format!(
            "unknown command {:?}; levels takes set, history",
            other.chars().take(32).collect::<String>()
        )))),
    }
}

fn checked_area(area: &str) -> Result<(), Refusal> {
    events::validate::id("area", area).map_err(Refusal::from)
}

async fn set(store: &StoreClient, payload: &[u8]) -> Result<Written, Refusal> {
    let cmd: Command<SetLevel> = commands::decode(payload)?;
    checked_area(&cmd.body.area)?;
    let (reference, _) = commands::load(store, &area_events::stream_for(&cmd.body.area)).await?;
    let registration = area::registration(&reference);
    commands::execute(store, &level::stream_for(&cmd.body.area), &cmd, |events| {
        area::decide(
            registration.as_ref(),
            &History::fold(events),
            &cmd.actor,
            cmd.body.clone(),
        )
    })
    .await
}

async fn history(store: &StoreClient, payload: &[u8]) -> Result<AreaHistory, Refusal> {
    let cmd: Command<HistoryQuery> = commands::decode(payload)?;
    checked_area(&cmd.body.area)?;
    let (reference, _) = commands::load(store, &area_events::stream_for(&cmd.body.area)).await?;
    let registration = area::registration(&reference);
    area::may_read(registration.as_ref(), &cmd.actor, &cmd.body.area)?;
    let (events, _) = commands::load(store, &level::stream_for(&cmd.body.area)).await?;
    let history = History::fold(&events);
    let Some(reg) = registration else {
        return Err(Refusal::not_found("no such area"));
    };
    Ok(AreaHistory {
        area: reg.area,
        country: reg.country,
        name: reg.name,
        level: history.current(),
        history: history.entries,
    })
}
