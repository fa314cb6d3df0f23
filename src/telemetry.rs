//! Logging through `tracing`, filtered by `RUST_LOG` (default: info for this crate,
//! warnings for the libraries).

use tracing_subscriber::EnvFilter;

pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sqlxmq=warn,poem=warn";

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // `try_init`: tests start the service many times in one process.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
