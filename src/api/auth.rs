//! The API's keys, as the operations take them: `IngestKey` for `POST /v1/events` and
//! `ReadKey` for the reads. Each is a poem-openapi security scheme, so the document
//! declares how the key is sent and Swagger UI's Authorize button and generated clients
//! send it. Checking the key itself is `auth::KeyCache`'s.
//!
//! What a request gets: no key, an unknown key or a revoked key, 401 with
//! `WWW-Authenticate`; a valid key of the other scope, 403; a read key asking for
//! another game's data, 404 (the reads filter by the key's game). A key is never echoed
//! in an error, a log line or a metric.

use poem::http::header;
use poem::{Request, RequestBody};
use poem_openapi::auth::{ApiKey as QueryApiKey, Bearer};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};

use super::problem::ApiError;
use super::ApiState;
use crate::auth::{Grant, KeyError, Scope};

/// The query parameter that may carry an ingest key (`navigator.sendBeacon` cannot set
/// headers).
pub const KEY_PARAM: &str = "key";

/// A game's key in the `Authorization` header: `Authorization: Bearer KEY`. Ingest keys
/// send events; read keys read the game's batches and events.
#[derive(SecurityScheme)]
#[oai(rename = "bearerKey", ty = "bearer")]
#[allow(dead_code)] // declares the scheme in the document; `IngestKey` and `ReadKey` check it
struct BearerKeyScheme(Bearer);

/// An ingest key in the URL, `POST /v1/events?key=KEY`, for browsers' `sendBeacon`,
/// which cannot set headers. Read keys are never accepted in a URL.
#[derive(SecurityScheme)]
#[oai(
    rename = "queryKey",
    ty = "api_key",
    key_in = "query",
    key_name = "key"
)]
#[allow(dead_code)]
struct QueryKeyScheme(QueryApiKey);

/// The caller of `POST /v1/events`: a valid ingest key, from the header or the URL, sent
/// (by a browser) from an origin its game allows, of a game whose rate limit is not
/// used up.
pub struct IngestKey(pub Grant);

/// The caller of the reads: a valid read key, from the header.
pub struct ReadKey(pub Grant);

fn state(request: &Request) -> Result<&ApiState, ApiError> {
    request
        .data::<ApiState>()
        .ok_or_else(|| ApiError::Internal("the API state is missing".into()))
}

/// The key of the `Authorization` header: `None` without the header, an error when it is
/// there but not a bearer token.
fn bearer_key(request: &Request) -> Result<Option<&str>, ApiError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("");
    match value.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(key.trim())),
        _ => Err(ApiError::Unauthorized {
            detail: "the Authorization header must be `Bearer KEY`".to_owned(),
            key_presented: true,
        }),
    }
}

/// The value of the `key` query parameter, if any. Keys are letters and digits, so no
/// percent-decoding is needed: an encoded character makes the value no key at all.
fn query_key(request: &Request) -> Option<&str> {
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(KEY_PARAM)?.strip_prefix('='))
}

async fn verify(state: &ApiState, key: &str) -> Result<Grant, ApiError> {
    state.keys.verify(key).await.map_err(|e| match e {
        KeyError::Unknown => ApiError::Unauthorized {
            detail: "the API key is not valid: it is unknown or revoked".to_owned(),
            key_presented: true,
        },
        KeyError::Unavailable => ApiError::Unavailable(e.to_string()),
    })
}

fn missing(what: &str) -> ApiError {
    ApiError::Unauthorized {
        detail: format!("this request needs {what}"),
        key_presented: false,
    }
}

// The refusals the documentation's examples show too (`problem.rs`).

pub(super) fn missing_ingest_key() -> ApiError {
    missing("an ingest key: `Authorization: Bearer KEY`, or `?key=KEY` from a browser")
}

pub(super) fn missing_read_key() -> ApiError {
    missing("a read key: `Authorization: Bearer KEY`")
}

pub(super) fn read_key_sends_no_events() -> ApiError {
    ApiError::Forbidden("this is a read key: sending events needs an ingest key".to_owned())
}

pub(super) fn ingest_key_reads_nothing() -> ApiError {
    ApiError::Forbidden("this is an ingest key: reading needs a read key".to_owned())
}

impl IngestKey {
    async fn admit(request: &Request) -> Result<Self, ApiError> {
        let state = state(request)?;
        let (key, in_url) = match bearer_key(request)? {
            Some(key) => (key, false),
            None => match query_key(request) {
                Some(key) => (key, true),
                None => return Err(missing_ingest_key()),
            },
        };
        let grant = verify(state, key).await?;
        match grant.scope {
            Scope::Ingest => {}
            Scope::Read if in_url => {
                return Err(ApiError::Forbidden(
                    "a read key is never accepted in a URL, and sends no events; it is \
                     secret: revoke it (`app keys revoke`), since URLs end up in logs"
                        .to_owned(),
                ))
            }
            Scope::Read => return Err(read_key_sends_no_events()),
        }
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !grant.game.allows_origin(origin) {
                return Err(ApiError::Forbidden(format!(
                    "this game does not accept events from the origin {origin:?} \
                     (`app games origins` sets the origins it accepts)"
                )));
            }
        }
        state.limits.check(&grant.game)?;
        Ok(Self(grant))
    }
}

impl ReadKey {
    async fn admit(request: &Request) -> Result<Self, ApiError> {
        let state = state(request)?;
        let Some(key) = bearer_key(request)? else {
            return Err(match query_key(request) {
                // Not even looked up: a secret key in a URL is refused whatever it is.
                Some(_) => ApiError::Unauthorized {
                    detail: "read keys are accepted only in the Authorization header \
                             (`Bearer KEY`), never in a URL"
                        .to_owned(),
                    key_presented: true,
                },
                None => missing_read_key(),
            });
        };
        let grant = verify(state, key).await?;
        match grant.scope {
            Scope::Read => Ok(Self(grant)),
            Scope::Ingest => Err(ingest_key_reads_nothing()),
        }
    }
}

/// Implements `ApiExtractor` for a key type: the security schemes it declares, and its
/// `admit` as the extraction.
macro_rules! key_extractor {
    ($name:ident, [$($scheme:ident),+]) => {
        impl<'a> ApiExtractor<'a> for $name {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                $(<$scheme as ApiExtractor>::register(registry);)+
            }

            fn security_schemes() -> Vec<&'static str> {
                let mut schemes = Vec::new();
                $(schemes.extend(<$scheme as ApiExtractor>::security_schemes());)+
                schemes
            }

            async fn from_request(
                request: &'a Request,
                _body: &mut RequestBody,
                _options: ExtractParamOptions<()>,
            ) -> poem::Result<Self> {
                Ok(Self::admit(request).await?)
            }
        }
    };
}

key_extractor!(IngestKey, [BearerKeyScheme, QueryKeyScheme]);
key_extractor!(ReadKey, [BearerKeyScheme]);

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, authorization: Option<&str>) -> Request {
        let mut builder = Request::builder().uri(uri.parse().unwrap());
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.finish()
    }

    #[test]
    fn bearer_keys_are_read_from_the_authorization_header() {
        let key = |auth| bearer_key(&request("/v1/events", auth)).map(|k| k.map(str::to_owned));
        assert_eq!(key(None).unwrap(), None);
        assert_eq!(key(Some("Bearer abc")).unwrap().as_deref(), Some("abc"));
        assert_eq!(key(Some("bearer  abc ")).unwrap().as_deref(), Some("abc"));
        for bad in ["Basic YWJj", "abc", "Bearer"] {
            assert!(key(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_parameter_is_found_among_others() {
        let key = |uri| query_key(&request(uri, None)).map(str::to_owned);
        assert_eq!(key("/v1/events"), None);
        assert_eq!(key("/v1/events?key=abc").as_deref(), Some("abc"));
        assert_eq!(key("/v1/events?x=1&key=abc&y=2").as_deref(), Some("abc"));
        assert_eq!(key("/v1/events?keys=abc"), None);
        assert_eq!(key("/v1/events?key="), Some(String::new()));
    }
}
