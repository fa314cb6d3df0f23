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
        None | Some("") | Some("identity") => read_up_to(raw, limit).await,
        Some("gzip") | Some("x-gzip") => {
            read_up_to(GzipDecoder::new(BufReader::new(raw)), limit).await
        }
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "the Content-Encoding {other:?} is not supported: send the body as identity or gzip"
        ))),
    }
}

async fn read_up_to(reader: impl AsyncRead + Unpin, limit: usize) -> Result<Vec<u8>, ApiError> {
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
