//! Prometheus metrics of this process, served at `/metrics` (by the API, and by a worker
//! given `--metrics-bind`). One registry per process: the API's and the worker's metrics
//! are separate series when they run as separate processes, and shared under `app run`.
//!
//! `/metrics` speaks the two text formats Prometheus tooling reads, chosen by the scrape's
//! `Accept` header ([`Format::negotiate`]): OpenMetrics 1.0.0 for a scraper that asks for it
//! (Prometheus does), the Prometheus text format 0.0.4 for everyone else (curl, promtool,
//! older scrapers). prometheus-client encodes both from the one registry.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

use poem::http::{header, HeaderValue};
use poem::listener::Listener;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::deadlines::{ConnectionLimits, DeadlineAcceptor};

/// A text format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0: counters named without `_total` in `# TYPE`, `# EOF` at the end.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: counters named with `_total` everywhere, no `# EOF`.
    PrometheusText,
}

/// The media type of OpenMetrics, whatever its version.
const OPENMETRICS_MEDIA_TYPE: &str = "application/openmetrics-text";

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format for a scrape whose `Accept` header fields are `accept`: OpenMetrics when
    /// they name `application/openmetrics-text` of version 1.0.0 (or of no version) with a
    /// weight above 0 and no lower than the text format's, the text format otherwise. So a
    /// request with no `Accept`, with only wildcards or with only formats not served here
    /// gets the text format, which every Prometheus tool reads; `application/*` and `*/*`
    /// never select OpenMetrics, since a client that does not name it may not parse it.
    /// A media range whose weight is malformed counts for nothing.
    pub fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Self {
        // The weight of each format: from its most specific matching media range
        // (RFC 9110, 12.5.1), so index 0 (an exact version) overrides index 1 (no version),
        // and so on down to `*/*`.
        let mut openmetrics: [Option<f32>; 2] = [None; 2];
        let mut text: [Option<f32>; 4] = [None; 4];
        for field in accept {
            for range in split_unquoted(field, ',') {
                let Some(range) = MediaRange::parse(range) else {
                    continue;
                };
                let version = range.version.as_deref();
                let (slot, precedence) = match (range.media_type.as_str(), version) {
                    (OPENMETRICS_MEDIA_TYPE, Some("1.0.0")) => (&mut openmetrics[..], 0),
                    (OPENMETRICS_MEDIA_TYPE, None) => (&mut openmetrics[..], 1),
                    ("text/plain", Some("0.0.4")) => (&mut text[..], 0),
                    ("text/plain", None) => (&mut text[..], 1),
                    ("text/*", _) => (&mut text[..], 2),
                    ("*/*", _) => (&mut text[..], 3),
                    _ => continue,
                };
                // Of two equally specific ranges (a client repeating itself), the higher
                // weight wins.
                let weight = &mut slot[precedence];
                *weight = Some(weight.map_or(range.weight, |w| w.max(range.weight)));
            }
        }
        let most_specific = |weights: &[Option<f32>]| weights.iter().find_map(|w| *w);
        match most_specific(&openmetrics) {
            Some(weight) if weight > 0.0 && weight >= most_specific(&text).unwrap_or(0.0) => {
                Self::OpenMetrics
            }
            _ => Self::PrometheusText,
        }
    }
}

/// One media range of an `Accept` header: its type in lowercase, its `version` parameter
/// (unquoted) and its weight (`q`, 1 when absent). Other parameters (`charset`,
/// `escaping`, …) do not change which of the two formats is meant, and are ignored.
#[derive(Debug, PartialEq)]
struct MediaRange {
    media_type: String,
    version: Option<String>,
    weight: f32,
}

impl MediaRange {
    /// `None` for an empty range, one without a `/`, or one with a malformed weight.
    fn parse(range: &str) -> Option<Self> {
        let mut parts = split_unquoted(range, ';');
        let media_type = parts.next()?.trim().to_ascii_lowercase();
        if !media_type.contains('/') {
            return None;
        }
        let mut parsed = Self {
            media_type,
            version: None,
            weight: 1.0,
        };
        for parameter in parts {
            let Some((name, value)) = parameter.split_once('=') else {
                continue;
            };
            let name = name.trim();
            let value = unquote(value.trim());
            if name.eq_ignore_ascii_case("q") {
                parsed.weight = parse_weight(&value)?;
            } else if name.eq_ignore_ascii_case("version") {
                parsed.version = Some(value);
            }
        }
        Some(parsed)
    }
}

/// An HTTP weight (RFC 9110, 12.4.2): `0` to `1` with at most three decimals.
fn parse_weight(value: &str) -> Option<f32> {
    let (whole, decimals) = value.split_once('.').unwrap_or((value, ""));
    let well_formed = matches!(whole, "0" | "1")
        && decimals.len() <= 3
        && decimals.bytes().all(|b| b.is_ascii_digit())
        && (whole == "0" || decimals.bytes().all(|b| b == b'0'));
    if !well_formed {
        return None;
    }
    value.parse().ok()
}

/// `s` split at each `separator` outside a quoted string, so that a quoted parameter value
/// holding a `,` or `;` stays whole.
fn split_unquoted(s: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (at, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == separator && !quoted => {
                    rest = Some(&s[at + c.len_utf8()..]);
                    return Some(&s[..at]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// A parameter value without its quotes and backslash escapes, if it is a quoted string.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut unquoted = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        unquoted.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    unquoted
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: String,
    pub status: u16,
}

/// Which deadline cut a connection off (`deadlines.rs`): `header` or `idle`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimedOutLabels {
    pub deadline: &'static str,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lowercase
pub enum JobOutcome {
    completed,
    retried,
    failed,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub outcome: JobOutcome,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub connections_timed_out: Family<TimedOutLabels, Counter>,
    pub events_accepted: Counter,
    pub batches_queued: Counter,
    pub queue_depth: Gauge,
    pub queue_dead: Gauge,
    pub queue_oldest_age_seconds: Gauge<f64, AtomicU64>,
    pub jobs: Family<JobLabels, Counter>,
    pub processing_seconds: Histogram,
    pub end_to_end_lag_seconds: Histogram,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("game_events");
        let metrics = Self {
            http_requests: Family::default(),
            connections_timed_out: Family::default(),
            events_accepted: Counter::default(),
            batches_queued: Counter::default(),
            queue_depth: Gauge::default(),
            queue_dead: Gauge::default(),
            queue_oldest_age_seconds: Gauge::default(),
            jobs: Family::default(),
            // 1 ms to ~65 s.
            processing_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            end_to_end_lag_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_connections_timed_out",
            "Connections closed because a client was too slow: header (a request head not received in time) or idle (no request in time, or a response not read)",
            metrics.connections_timed_out.clone(),
        );
        registry.register(
            "events_accepted",
            "Events accepted (202)",
            metrics.events_accepted.clone(),
        );
        registry.register(
            "batches_queued",
            "Batches queued",
            metrics.batches_queued.clone(),
        );
        registry.register(
            "queue_depth",
            "Queued batches not yet stored (waiting, running or awaiting retry), at the last scrape",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "queue_dead",
            "Batches that used up their attempts (app failed list), at the last scrape",
            metrics.queue_dead.clone(),
        );
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest queued batch not yet stored, at the last scrape",
            metrics.queue_oldest_age_seconds.clone(),
        );
        registry.register(
            "jobs",
            "Batch processing attempts by outcome: completed, retried (failed with attempts left), failed (none left)",
            metrics.jobs.clone(),
        );
        registry.register(
            "processing_seconds",
            "Time a worker takes to store a batch, claim to commit",
            metrics.processing_seconds.clone(),
        );
        registry.register(
            "end_to_end_lag_seconds",
            "Time from accepting a batch (202) to storing it",
            metrics.end_to_end_lag_seconds.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    pub fn job(&self, outcome: JobOutcome) {
        self.jobs.get_or_create(&JobLabels { outcome }).inc();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The metrics of this process in `format`.
pub fn encode(format: Format) -> String {
    encode_registry(&METRICS.registry, format)
}

fn encode_registry(registry: &Registry, format: Format) -> String {
    let mut exposition = String::new();
    // Writing to a String cannot fail.
    let _ = match format {
        Format::OpenMetrics => text::encode(&mut exposition, registry),
        Format::PrometheusText => prometheus_text::encode(&mut exposition, registry),
    };
    exposition
}

/// Refreshes the queue gauges from the database, then renders every metric in `format`. A
/// scrape while the database is down still answers, with the gauges of the last good scrape.
pub async fn render(pool: &sqlx::PgPool, format: Format) -> String {
    match crate::queue::stats(pool).await {
        Ok(stats) => {
            METRICS.queue_depth.set(stats.depth);
            METRICS.queue_dead.set(stats.dead);
            METRICS
                .queue_oldest_age_seconds
                .set(stats.oldest_age_seconds.unwrap_or(0.0));
        }
        Err(error) => tracing::warn!(%error, "cannot read the queue's size for /metrics"),
    }
    encode(format)
}

/// `GET /metrics` as a poem endpoint, in the format the request's `Accept` asks for.
pub fn endpoint(pool: sqlx::PgPool) -> impl poem::Endpoint {
    poem::endpoint::make(move |request: poem::Request| {
        let pool = pool.clone();
        let accept = request.headers().get_all(header::ACCEPT);
        let format = Format::negotiate(accept.iter().filter_map(|v| v.to_str().ok()));
        async move {
            poem::Response::builder()
                .content_type(format.content_type())
                // The body depends on Accept: a cache must not serve one format for the other.
                .header(header::VARY, HeaderValue::from_static("accept"))
                .body(render(&pool, format).await)
        }
    })
}

/// Serves `/metrics` (and `/healthz`) on `bind` until `shutdown`: a worker's own endpoint.
pub async fn serve(
    bind: std::net::SocketAddr,
    pool: sqlx::PgPool,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let app = poem::Route::new()
        .at("/metrics", endpoint(pool))
        .at("/healthz", poem::endpoint::make_sync(|_| "ok"));
    tracing::info!(%bind, "serving worker metrics at /metrics");
    let acceptor = poem::listener::TcpListener::bind(bind)
        .into_acceptor()
        .await?;
    // The API's default limits on slow and idle clients apply here too.
    let acceptor = DeadlineAcceptor::new(acceptor, ConnectionLimits::default());
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(1)))
        .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const PROMETHEUS_2: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_3: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

    fn negotiate(fields: &[&str]) -> Format {
        Format::negotiate(fields.iter().copied())
    }

    #[test]
    fn scrapers_that_ask_for_openmetrics_1_0_0_get_it() {
        for accept in [
            PROMETHEUS_2,
            PROMETHEUS_3,
            "application/openmetrics-text",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "Application/OpenMetrics-Text;Version=\"1.0.0\"",
            "text/plain;version=0.0.4, application/openmetrics-text",
            "text/plain;q=0.5, application/openmetrics-text;q=0.5",
            "application/openmetrics-text;q=0.001",
            "application/openmetrics-text; version=1.0.0; q=1.000",
        ] {
            assert_eq!(negotiate(&[accept]), Format::OpenMetrics, "{accept}");
        }
        // Accept may come as several header fields.
        assert_eq!(
            negotiate(&["text/plain;q=0.1", "application/openmetrics-text"]),
            Format::OpenMetrics
        );
    }

    #[test]
    fn everyone_else_gets_the_text_format() {
        for accept in [
            "",
            "*/*",
            "application/*",
            "text/plain",
            "text/plain;version=0.0.4",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "application/json",
            // Another version of OpenMetrics, or OpenMetrics refused or less wanted.
            "application/openmetrics-text;version=0.0.1",
            "application/openmetrics-text;version=2.0.0",
            "application/openmetrics-text;q=0",
            "application/openmetrics-text;q=0.000",
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5",
            "*/*;q=0.9,application/openmetrics-text;q=0.8",
            // The exact version outranks the range without one.
            "application/openmetrics-text;version=1.0.0;q=0,application/openmetrics-text",
            // Malformed ranges count for nothing.
            "application/openmetrics-text;q=abc",
            "application/openmetrics-text;q=1.5",
            "application/openmetrics-text;q=-1",
            "application/openmetrics-text;q=0.0001",
            "openmetrics",
            ";;,,",
            "\"application/openmetrics-text\"",
        ] {
            assert_eq!(negotiate(&[accept]), Format::PrometheusText, "{accept:?}");
        }
        assert_eq!(negotiate(&[]), Format::PrometheusText);
    }

    #[test]
    fn media_ranges_split_outside_quotes_only() {
        let ranges: Vec<&str> =
            split_unquoted(r#"a/b;x="1,2;3",c/d;y="q\"uote,d",e/f"#, ',').collect();
        assert_eq!(ranges, [r#"a/b;x="1,2;3""#, r#"c/d;y="q\"uote,d""#, "e/f"]);
        assert_eq!(
            MediaRange::parse(r#" Text/Plain ; charset="utf-8;x" ; version="0.0.4" ; Q=0.3 "#),
            Some(MediaRange {
                media_type: "text/plain".to_owned(),
                version: Some("0.0.4".to_owned()),
                weight: 0.3,
            })
        );
        assert_eq!(unquote(r#""a\"b\\c""#), r#"a"b\c"#);
        assert_eq!(unquote("plain"), "plain");
    }

    /// What a format says about one exposition, as its own rules read it.
    #[derive(Debug, Default)]
    struct Exposition {
        /// Each family's name and type, in order.
        families: Vec<(String, String)>,
        /// Each sample (its name and labels as written) and its value.
        samples: BTreeMap<String, f64>,
    }

    /// Reads `exposition` by the rules of `format`, panicking where it breaks one: every
    /// family has a HELP and a TYPE line before its samples; sample names are those the
    /// format gives a family of that type (a counter `x` of OpenMetrics has samples
    /// `x_total`, a counter of the text format is itself named `x_total`); histogram
    /// buckets end at `+Inf`; OpenMetrics ends with `# EOF`, the text format has none;
    /// no exemplars, timestamps or units, since this service records none.
    fn read(exposition: &str, format: Format) -> Exposition {
        let mut read = Exposition::default();
        let mut lines: Vec<&str> = exposition.lines().collect();
        assert!(exposition.ends_with('\n'), "no final newline");
        match format {
            Format::OpenMetrics => assert_eq!(lines.pop(), Some("# EOF"), "no # EOF at the end"),
            Format::PrometheusText => {}
        }
        let mut help: Option<&str> = None;
        let mut family: Option<(&str, &str)> = None;
        let mut last_bucket = None;
        for line in lines {
            if let Some(comment) = line.strip_prefix("# ") {
                let (keyword, rest) = comment.split_once(' ').expect(line);
                let (name, text) = rest.split_once(' ').expect(line);
                match keyword {
                    "HELP" => {
                        assert!(!text.trim().is_empty(), "empty help: {line}");
                        help = Some(name);
                    }
                    "TYPE" => {
                        assert_eq!(help, Some(name), "TYPE without its HELP: {line}");
                        // The types this service uses, spelled alike in both formats.
                        let types = ["counter", "gauge", "histogram"];
                        assert!(types.contains(&text), "type {text}: {line}");
                        if format == Format::PrometheusText && text == "counter" {
                            assert!(name.ends_with("_total"), "{line}");
                        }
                        if format == Format::OpenMetrics {
                            assert!(!name.ends_with("_total"), "{line}");
                        }
                        assert_eq!(last_bucket.take().unwrap_or("+Inf"), "+Inf");
                        family = Some((name, text));
                        read.families.push((name.to_owned(), text.to_owned()));
                    }
                    _ => panic!("unexpected comment: {line}"),
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            assert!(!series.contains(" # "), "an exemplar: {line}");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
            };
            let name = series.split('{').next().unwrap();
            let (family_name, family_type) = family.expect("a sample before any TYPE");
            let suffix = name.strip_prefix(family_name).expect(line);
            let allowed: &[&str] = match (format, family_type) {
                (Format::OpenMetrics, "counter") => &["_total"],
                (_, "histogram") => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            assert!(allowed.contains(&suffix), "{name} in {family_name}");
            if suffix == "_bucket" {
                let le = series.split("le=\"").nth(1).expect(line);
                last_bucket = le.split('"').next();
            }
            assert!(
                read.samples.insert(series.to_owned(), value).is_none(),
                "twice: {line}"
            );
        }
        assert_eq!(last_bucket.unwrap_or("+Inf"), "+Inf");
        read
    }

    fn every_metric_with_samples() -> Metrics {
        let metrics = Metrics::new();
        let requests = HttpLabels {
            route: "/v1/events",
            method: "POST".to_owned(),
            status: 202,
        };
        metrics.http_requests.get_or_create(&requests).inc_by(3);
        let timed_out = TimedOutLabels { deadline: "idle" };
        metrics
            .connections_timed_out
            .get_or_create(&timed_out)
            .inc();
        metrics.events_accepted.inc_by(21);
        metrics.batches_queued.inc_by(3);
        metrics.queue_depth.set(2);
        metrics.queue_dead.set(1);
        metrics.queue_oldest_age_seconds.set(0.25);
        metrics.job(JobOutcome::completed);
        metrics.job(JobOutcome::retried);
        metrics.processing_seconds.observe(0.003);
        metrics.end_to_end_lag_seconds.observe(0.5);
        metrics.end_to_end_lag_seconds.observe(100.0);
        metrics
    }

    #[test]
    fn both_formats_carry_the_same_samples_under_each_formats_names() {
        let metrics = every_metric_with_samples();
        let openmetrics = read(
            &encode_registry(&metrics.registry, Format::OpenMetrics),
            Format::OpenMetrics,
        );
        let text = read(
            &encode_registry(&metrics.registry, Format::PrometheusText),
            Format::PrometheusText,
        );
        assert_eq!(openmetrics.samples, text.samples);
        // The families differ only in a counter's name, which has `_total` in the text format.
        let renamed: Vec<(String, String)> = openmetrics
            .families
            .iter()
            .map(|(name, kind)| match kind.as_str() {
                "counter" => (format!("{name}_total"), kind.clone()),
                _ => (name.clone(), kind.clone()),
            })
            .collect();
        assert_eq!(renamed, text.families);
        assert_eq!(text.families.len(), 10, "{:?}", text.families);

        // The values are those recorded, under the names the README lists.
        let sample = |name: &str| text.samples.get(name).copied();
        let http =
            r#"game_events_http_requests_total{route="/v1/events",method="POST",status="202"}"#;
        assert_eq!(sample(http), Some(3.0));
        assert_eq!(
            sample(r#"game_events_jobs_total{outcome="retried"}"#),
            Some(1.0)
        );
        assert_eq!(sample("game_events_events_accepted_total"), Some(21.0));
        assert_eq!(sample("game_events_queue_oldest_age_seconds"), Some(0.25));
        assert_eq!(
            sample("game_events_end_to_end_lag_seconds_count"),
            Some(2.0)
        );
        assert_eq!(
            sample("game_events_end_to_end_lag_seconds_sum"),
            Some(100.5)
        );
        let lag_bucket = |le: &str| {
            sample(&format!(
                "game_events_end_to_end_lag_seconds_bucket{{le=\"{le}\"}}"
            ))
        };
        assert_eq!(lag_bucket("0.512"), Some(1.0));
        assert_eq!(lag_bucket("65.536"), Some(1.0));
        assert_eq!(lag_bucket("+Inf"), Some(2.0));
    }

    #[test]
    fn a_fresh_registry_reads_validly_in_both_formats() {
        // As at a process's first scrape: labelled families have no series yet, and are left
        // out until they have one; the other metrics are there, at zero.
        let metrics = Metrics::new();
        for format in [Format::OpenMetrics, Format::PrometheusText] {
            let exposition = encode_registry(&metrics.registry, format);
            let read = read(&exposition, format);
            let names: Vec<&str> = read.families.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names.len(), 7, "{exposition}");
            assert!(!names
                .iter()
                .any(|n| n.contains("jobs") || n.contains("http")));
            assert!(read.samples.values().all(|v| *v == 0.0), "{exposition}");
        }
    }

    #[test]
    fn help_texts_need_no_escaping() {
        // The OpenMetrics encoder writes HELP as it is, where the format wants `\`, `"` and
        // line breaks escaped: keep them out of the texts.
        let exposition = encode_registry(&Metrics::new().registry, Format::OpenMetrics);
        for line in exposition.lines().filter(|l| l.starts_with("# HELP ")) {
            assert!(!line.contains(['\\', '"']), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped_in_both_formats() {
        let mut registry = Registry::default();
        let family = Family::<Vec<(String, String)>, Counter>::default();
        registry.register("escaped", "Labels with quotes", family.clone());
        let value = "say \"hi\"\\ then\nbreak".to_owned();
        family
            .get_or_create(&vec![("label".to_owned(), value)])
            .inc();
        let escaped = r#"escaped_total{label="say \"hi\"\\ then\nbreak"} 1"#;
        for format in [Format::OpenMetrics, Format::PrometheusText] {
            let exposition = encode_registry(&registry, format);
            assert!(exposition.contains(escaped), "{format:?}:\n{exposition}");
            read(&exposition, format);
        }
    }

    #[test]
    fn content_types_name_the_format_and_its_version() {
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::PrometheusText.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
