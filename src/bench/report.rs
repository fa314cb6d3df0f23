//! The figures of a run, as text for people and as one JSON object for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::stats::Latencies;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    /// When the first request was sent (RFC 3339, UTC).
    pub started_at: String,
    pub batch_size: usize,
    pub concurrency: usize,
    pub players: u32,
    pub requests: u64,
    pub events_sent: u64,
    pub accepted_batches: u64,
    pub accepted_events: u64,
    pub errors: Errors,
    /// From the first request sent to the last response received.
    pub accept_seconds: f64,
    /// Events in 202 responses per second of `accept_seconds`.
    pub accepted_events_per_sec: f64,
    /// From the first request sent to the last accepted event stored.
    pub end_to_end_seconds: f64,
    pub end_to_end_events_per_sec: f64,
    /// Every request, whatever its outcome, from sending to the end of the response.
    pub post_latency: Option<Latencies>,
    /// `events.processed_at − events.received_at` over the run's events, from the database.
    pub end_to_end_latency: Option<StoredLatency>,
    pub ceiling: Option<CeilingReport>,
    /// `end_to_end_events_per_sec ÷ ceiling.events_per_sec`.
    pub end_to_end_vs_ceiling: Option<f64>,
}

/// Requests that were not accepted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors {
    /// Non-202 responses by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests without a response (connection refused or reset, timeout).
    pub transport: u64,
    /// A few of them, described.
    pub samples: Vec<String>,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.by_status.values().sum::<u64>() + self.transport
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StoredLatency {
    pub events: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CeilingReport {
    pub rows: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
}

impl Report {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} requests of {} events to {} ({} at a time, {} players), started {}",
            self.requests,
            self.batch_size,
            self.url,
            self.concurrency,
            self.players,
            self.started_at
        );
        let _ = writeln!(
            s,
            "accepted        {:>10} events in {:>8.2} s = {:>9.0} events/s  ({} batches)",
            self.accepted_events,
            self.accept_seconds,
            self.accepted_events_per_sec,
            self.accepted_batches
        );
        let _ = writeln!(
            s,
            "end to end      {:>10} events in {:>8.2} s = {:>9.0} events/s",
            self.accepted_events, self.end_to_end_seconds, self.end_to_end_events_per_sec
        );
        if let Some(c) = &self.ceiling {
            let _ = writeln!(
                s,
                "COPY ceiling    {:>10} rows   in {:>8.2} s = {:>9.0} events/s",
                c.rows, c.seconds, c.events_per_sec
            );
        }
        if let Some(r) = self.end_to_end_vs_ceiling {
            let _ = writeln!(s, "end to end / ceiling = {:.1} %", r * 100.0);
        }
        if let Some(l) = &self.post_latency {
            let _ = writeln!(
                s,
                "POST latency    p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} requests)",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.count
            );
        }
        if let Some(l) = &self.end_to_end_latency {
            let _ = writeln!(
                s,
                "accepted→stored p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} events)",
                l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.events
            );
        }
        if self.errors.total() == 0 {
            let _ = writeln!(s, "errors          none");
        } else {
            let by_status: Vec<String> = self
                .errors
                .by_status
                .iter()
                .map(|(status, n)| format!("{status}: {n}"))
                .collect();
            let _ = writeln!(
                s,
                "errors          {} ({}; transport: {})",
                self.errors.total(),
                by_status.join(", "),
                self.errors.transport
            );
            for sample in &self.errors.samples {
                let _ = writeln!(s, "  e.g. {sample}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            url: "http://127.0.0.1:8080".into(),
            started_at: "2026-11-25T14:00:00Z".into(),
            batch_size: 100,
            concurrency: 8,
            players: 10_000,
            requests: 2_000,
            events_sent: 200_000,
            accepted_batches: 1_999,
            accepted_events: 199_900,
            errors: Errors {
                by_status: [(503, 1)].into(),
                transport: 0,
                samples: vec!["503: database unavailable".into()],
            },
            accept_seconds: 10.0,
            accepted_events_per_sec: 19_990.0,
            end_to_end_seconds: 20.0,
            end_to_end_events_per_sec: 9_995.0,
            post_latency: None,
            end_to_end_latency: None,
            ceiling: Some(CeilingReport {
                rows: 199_900,
                seconds: 2.0,
                events_per_sec: 99_950.0,
            }),
            end_to_end_vs_ceiling: Some(0.1),
        }
    }

    #[test]
    fn the_text_has_the_headline_figures_and_the_errors() {
        let text = report().to_text();
        assert!(text.contains("19990 events/s"), "{text}");
        assert!(text.contains("9995 events/s"), "{text}");
        assert!(text.contains("end to end / ceiling = 10.0 %"), "{text}");
        assert!(
            text.contains("errors          1 (503: 1; transport: 0)"),
            "{text}"
        );
        assert!(text.contains("e.g. 503: database unavailable"), "{text}");
    }

    #[test]
    fn the_json_is_one_object_with_every_figure() {
        let v = serde_json::to_value(report()).unwrap();
        assert_eq!(v["end_to_end_events_per_sec"], 9_995.0);
        assert_eq!(v["errors"]["by_status"]["503"], 1);
        assert_eq!(v["ceiling"]["rows"], 199_900);
        assert!(v["post_latency"].is_null());
    }
}
