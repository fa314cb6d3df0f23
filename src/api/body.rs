//! Reading a request body: `Content-Encoding` (identity or gzip) and the size limit,
//! which applies to the decoded bytes. A gzip body is inflated as a stream and reading
//! stops one byte past the limit, so a small body that would inflate to gigabytes costs
//! no more than the limit in memory.

use async_compression::tokio::bufread::GzipDecoder;
use poem::http::header;
use poem::{Request, RequestBody};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use super::problem::ApiError;

/// Reads the whole (decoded) body, failing with 413 past `limit` bytes.
pub async fn read_limited(
    request: &Request,
    body: &mut RequestBody,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
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
            let read = read_up_to(&mut raw, limit).await;
            drain_if_refused(read, raw).await
        }
        Some("gzip") | Some("x-gzip") => {
            let mut decoder = GzipDecoder::new(BufReader::new(raw));
            let read = read_up_to(&mut decoder, limit).await;
            drain_if_refused(read, decoder.into_inner()).await
        }
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "the Content-Encoding {other:?} is not supported: send the body as identity or gzip"
        ))),
    }
}

/// How much more of a body refused as too large is read (as sent, not inflated) and
/// thrown away before the 413 goes out. A client still sending its body would otherwise
/// see the connection reset before it reads the response; past this the server just
/// closes the connection.
const DRAIN_LIMIT: u64 = 4 * 1024 * 1024;

async fn drain_if_refused(
    read: Result<Vec<u8>, ApiError>,
    rest: impl AsyncRead + Unpin,
) -> Result<Vec<u8>, ApiError> {
    if let Err(ApiError::BodyTooLarge { .. }) = &read {
        // Best effort: the answer is 413 whether or not the rest arrives.
        let _ = tokio::io::copy(&mut rest.take(DRAIN_LIMIT), &mut tokio::io::sink()).await;
    }
    read
}

async fn read_up_to(
    reader: &mut (impl AsyncRead + Unpin),
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    if bytes.len() > limit {
        return Err(ApiError::BodyTooLarge { limit_bytes: limit });
    }
    Ok(bytes)
}
