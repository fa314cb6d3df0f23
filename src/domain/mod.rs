//! The event model and its validation: pure code, no I/O.

pub mod batch;
pub mod event;
pub mod examples;
pub mod fields;
pub mod game;
pub mod retention;
pub mod wire;

pub use batch::{
    read_batch, validate_batch, BatchRejection, BodyRejection, ClockSkew, FieldError, ValidBatch,
    MAX_EVENTS_PER_BATCH,
};
pub use event::{Event, EventHeader, EventType};
pub use game::{GameId, GameName, Origin};
