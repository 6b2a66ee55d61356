//! Field sites (issue 19): a duty station's own server that keeps taking work
//! while its link to the centre is cut, and forwards it, exactly once and in order, when the
//! link returns. See docs/ARCHITECTURE.md, "Field sites".
//!
//! # Layout
//! - [`outbox`]: the outbox's rules without I/O (order, one item per command id, what an
//!   answer from the centre does).
//! - [`store`]: the outbox on disk (its own fjall database; an accepted item is fsync'd).
//! - [`server`]: `vigil site`: the site's nats-server as a leaf node of the centre, the
//!   requests on the site's own bus.
//! - [`forward`]: the forwarder: the outbox to the centre in batches, in order.
//! - [`relay`]: the centre's side: checks what a site sends (known site, a command a site
//!   may forward, from the site's own people of the command's role and the site's scope)
//!   and passes it to the service.
//! - [`scope`]: which of the centre's events a site of a country gets (pure).
//! - [`feed`]: the centre's side: serves each site the events of its scope (catch-up reads
//!   and a live feed over the leaf link).
//! - [`mirror_log`]: the site's mirror on disk (its own fjall database, local positions
//!   1..n gap-free in centre order).
//! - [`mirror`]: the site's side: follows the feed into the mirror and serves the store's
//!   read API from it on the site's own bus.
//!
//! What NATS permissions enforce for a site's leaf-node user is in `runtime::nats_sites`.

pub mod feed;
pub mod forward;
pub mod mirror;
pub mod mirror_log;
pub mod outbox;
pub mod relay;
pub mod scope;
pub mod server;
pub mod store;

/// The subjects on a site's own bus (never forwarded to the centre: the site's leaf user
/// may not publish them there).
pub mod subjects {
    /// `vigil.local.submit.<service>.<command>`: submit a command (request).
    pub const SUBMIT: &str = "vigil.local.submit";
    /// `vigil.local.status.<id>`: the outbox item of a command (request).
    pub const STATUS: &str = "vigil.local.status";
    /// The link and the outbox's counts (request).
    pub const STATE: &str = events::subjects::SITE_STATE;
}
