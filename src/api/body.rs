//! Reading a request body: `Content-Encoding` (identity or gzip), the size limit, which
//! applies to the decoded bytes, and the time limit. A gzip body is inflated as a stream
//! and reading stops one byte past the limit, so a small body that would inflate to
//! gigabytes costs no more than the limit in memory. The whole body must arrive within the
//! [`RequestBodyTimeout`] (request data), so that a client trickling its body cannot hold
//! the connection for ever (the other time limits are in `deadlines.rs`).

use async_compression::tokio::bufread::GzipDecoder;
use poem::http::header;
use poem::{Request, RequestBody};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::time::Instant;

use super::problem::ApiError;
use crate::deadlines::RequestBodyTimeout;

/// Reads the whole (decoded) body, failing with 413 past `limit` bytes, and with 408 if it
/// has not all arrived within the request's [`RequestBodyTimeout`] (the default one when
/// the app was given none).
pub async fn read_limited(
    request: &Request,
    body: &mut RequestBody,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let timeout = request
        .data::<RequestBodyTimeout>()
        .copied()
        .unwrap_or_default();
    let deadline = Instant::now() + timeout.0;
    let encoding = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    let raw = body
        .take()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .into_async_read();
    match encoding.as_deref() {
        None | Some("") | Some("identity") => {
            let mut raw = raw;
            let read = read_up_to(&mut raw, limit, deadline, timeout).await;
            drain_if_refused(read, raw, deadline).await
        }
        Some("gzip") | Some("x-gzip") => {
            let mut decoder = GzipDecoder::new(BufReader::new(raw));
            let read = read_up_to(&mut decoder, limit, deadline, timeout).await;
            drain_if_refused(read, decoder.into_inner(), deadline).await
        }
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "the Content-Encoding {other:?} is not supported: send the body as identity or gzip"
        ))),
    }
}

/// How much more of a body refused as too large is read (as sent, not inflated) and
/// thrown away before the 413 goes out. A client still sending its body would otherwise
/// see the connection reset before it reads the response; past this (or past the body's
/// deadline) the server just closes the connection.
const DRAIN_LIMIT: u64 = 4 * 1024 * 1024;

async fn drain_if_refused(
    read: Result<Vec<u8>, ApiError>,
    rest: impl AsyncRead + Unpin,
    deadline: Instant,
) -> Result<Vec<u8>, ApiError> {
    if let Err(ApiError::BodyTooLarge { .. }) = &read {
        // Best effort: the answer is 413 whether or not the rest arrives in time.
        let (mut rest, mut sink) = (rest.take(DRAIN_LIMIT), tokio::io::sink());
        let _ = tokio::time::timeout_at(deadline, tokio::io::copy(&mut rest, &mut sink)).await;
    }
    read
}

async fn read_up_to(
    reader: &mut (impl AsyncRead + Unpin),
    limit: usize,
    deadline: Instant,
    timeout: RequestBodyTimeout,
) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    let mut reader = reader.take(limit as u64 + 1);
    tokio::time::timeout_at(deadline, reader.read_to_end(&mut bytes))
        .await
        .map_err(|_| ApiError::RequestTimeout { limit: timeout.0 })?
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    if bytes.len() > limit {
        return Err(ApiError::BodyTooLarge { limit_bytes: limit });
    }
    Ok(bytes)
}
