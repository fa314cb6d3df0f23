//! Integration tests: the real service against a real PostgreSQL, one fresh database per
//! test. Needs only PostgreSQL on 127.0.0.1:5432 (override with TEST_DATABASE_SERVER).

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod api_errors;
mod browser;
mod contract;
mod database_checks;
mod keys;
mod limits;
mod migrations;
mod observability;
mod pipeline;
mod queue;
mod retention;
mod slow_clients;
