//! The gateway at a field site (`vigil site`, docs/ARCHITECTURE.md "Field sites").
//!
//! There the gateway's bus is the site's own: the site's outbox answers the commands a site
//! forwards (`incidents.report`, `incidents.update`, `relocation.mark`, `broadcast.ack`) with
//! an [`AcceptedAtSite`] instead of a [`Written`], and refuses the others (`forbidden`,
//! naming why). This module owns what the HTTP side makes of it:
//! - [`Landed`]: a write's answer, at the centre or at a site; a handler answers a site's
//!   with 202 and a [`PendingAtSite`] body ([`pending`]), never a 201 (nothing is at the
//!   centre yet).
//! - `GET /api/v1/site/state` ([`state`]): the site's link and outbox counts, asked of the
//!   site on `vigil.local.state`; 404 on a gateway that is not at a site.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use events::command::{AcceptedAtSite, Reply, Written};
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;
use crate::bodies::{PendingAtSite, SiteState};
use crate::http::ApiError;

/// How long `GET /api/v1/site/state` waits for the site.
const STATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a write landed: carried out at the centre, or held in a field site's outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Landed {
    /// Carried out: its events are in the log.
    Written(Written),
    /// In the site's outbox, forwarded when its link is up.
    AtSite(AcceptedAtSite),
}

/// The HTTP answer to a write held at a site: 202 with a [`PendingAtSite`]. `id` is the
/// thing's id (the report's, or the path's).
pub fn pending(id: Uuid, at: &AcceptedAtSite) -> Response {
    metrics::counter!("vigil_gateway_pending_at_site_total").increment(1);
    let body = PendingAtSite {
        id,
        command_id: at.id,
        pending_at_site: true,
        site: at.site.clone(),
        outbox_position: at.position,
        state: at.state.clone(),
        duplicate: at.duplicate,
        message: format!(
            "accepted at site {}, pending: it goes to the centre when the site's link is up",
            at.site
        ),
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// `GET /api/v1/site/state`.
pub async fn state(State(state): State<Arc<AppState>>) -> Result<Json<SiteState>, ApiError> {
    let Some(site) = &state.site else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this gateway is not at a field site: it has no link or outbox to show",
        ));
    };
    let unavailable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("site {site}'s outbox {why}; try again"),
        )
    };
    let asked = tokio::time::timeout(
        STATE_TIMEOUT,
        state
            .store
            .nats()
            .request(events::subjects::SITE_STATE, bytes::Bytes::new()),
    )
    .await
    .map_err(|_| {
        unavailable(format!(
            "did not answer within {} s",
            STATE_TIMEOUT.as_secs()
        ))
    })?
    .map_err(|e| unavailable(format!("did not answer ({e})")))?;
    match serde_json::from_slice::<Reply<SiteState>>(&asked.payload) {
        Ok(Reply::Ok(s)) => Ok(Json(s)),
        Ok(Reply::Error(r)) => Err(unavailable(format!("refused: {}", r.message))),
        Err(e) => Err(unavailable(format!(
            "gave an answer this gateway cannot read ({e})"
        ))),
    }
}
