//! Fault tests: the real binary, as child processes, against real PostgreSQL, while
//! clients, processes and the database misbehave (issue 3). Each test gets a fresh
//! database (and, where it stops the database, a throwaway cluster of its own); see
//! helpers.rs. `soak` is ignored by default: `just soak`.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod bad_input;
mod crash;
mod dump;
mod hung;
mod outage;
mod shutdown;
mod soak;
mod startup;
