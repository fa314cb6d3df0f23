//! `app`: a game-event ingestion service.
//!
//! The HTTP API ([`api`]) validates requests ([`domain`]) and queues each batch durably in
//! PostgreSQL ([`queue`]); workers ([`worker`]) claim queued batches and write them into
//! normalized tables ([`store`]).

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod deadlines;
pub mod domain;
pub mod maintenance;
pub mod metrics;
pub mod queue;
pub mod rate_limit;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod worker;
