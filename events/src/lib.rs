//! Vigil's vocabulary, shared by every service and by the store.
//!
//! # Layout
//! - [`aggregate`]: the one shape of a domain aggregate (parse, decide, apply, fold), pure.
//! - [`envelope`]: the event envelope — what a writer sends ([`NewEvent`]) and
//!   what the store records ([`RecordedEvent`]), stream names, expected versions.
//! - [`store_api`]: the request/reply shapes of `vigil.store.*` and their typed errors.
//! - [`subjects`]: every NATS subject name, in one place.
//! - [`codec`]: JSON encoding and decoding with size limits, and the upcasting hook that turns
//!   an old schema version into the current type and keeps an unknown type as raw JSON.
//! - [`domain`]: the typed, validated domain events (incidents, security levels, hostage
//!   cases, surges, relocation orders, clearances, broadcasts), as past-tense facts; beside
//!   them, the command bodies and what each service answers (`get`, its list's items).
//! - [`typed`]: a recorded event read from its stored bytes straight into its typed domain
//!   event ([`TypedRecorded`]), for the folds that replay the log.
//! - [`validate`]: input rules shared by the domain events (countries, coordinates, lengths).
//! - [`command`]: domain commands over NATS: the actor, the envelope, typed refusals.
//! - [`page`]: the one shape of every list answer (`items`, `position`, `next`) and its
//!   cursor paging.
//! - [`audit`]: records of refused requests, kept in the log like everything else.
//! - [`visibility`]: the sensitivity class of each event type and the one decision of what
//!   of a raw event each caller may see (whole, redacted, nothing).
//!
//! Nothing here does I/O.

pub mod aggregate;
pub mod audit;
pub mod codec;
pub mod command;
pub mod domain;
pub mod envelope;
pub mod page;
pub mod store_api;
pub mod subjects;
pub mod typed;
pub mod validate;
pub mod visibility;

pub use codec::{CodecError, Decoded, Limits};
pub use envelope::{
    Category, EventId, ExpectedVersion, Meta, NewEvent, RecordedEvent, StreamName, StreamNameError,
};
pub use store_api::{
    AppendOk, AppendReply, AppendRequest, ErrorCode, ReadReply, ReadRequest, StoreError,
    StreamReadReply, StreamReadRequest,
};
pub use typed::TypedRecorded;
