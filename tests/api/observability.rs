//! Request ids, JSON logs and metrics (in both of their formats), through real `app`
//! processes and the in-process API.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// A child `app` process whose stdout lines are collected; killed on drop.
struct AppProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl AppProcess {
    fn start(args: &[&str], database_url: &str) -> Self {
        Self::start_logging(args, database_url, None)
    }

    /// Starts with `RUST_LOG` set to `filter` (the app's default filter when `None`).
    fn start_logging(args: &[&str], database_url: &str, filter: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_app"));
        match filter {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start app");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// The JSON log lines printed so far.
    fn json_lines(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|_| panic!("a log line is not JSON: {l}"))
            })
            .collect()
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_request_id_follows_its_batch_into_the_worker_log_and_both_processes_export_metrics() {
    // The test's own database, migrated; the processes below are what is tested.
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let url = &app.db_settings.database_url;
    let (api_port, worker_port) = (free_port(), free_port());
    let api = AppProcess::start(&["serve", "--bind", &format!("127.0.0.1:{api_port}")], url);
    let worker_metrics = format!("127.0.0.1:{worker_port}");
    let worker = AppProcess::start(&["work", "--metrics-bind", &worker_metrics], url);
    let base = format!("http://127.0.0.1:{api_port}");
    wait_for(Duration::from_secs(30), "the API to be ready", || async {
        let ready = reqwest::get(format!("{base}/readyz")).await.ok()?;
        ready.status().is_success().then_some(())
    })
    .await;

    let request_id = format!("trace-{}", Uuid::now_v7().simple());
    let response = app
        .client
        .post(format!("{base}/v1/events"))
        .bearer_auth(&app.ingest_key)
        .header("x-request-id", &request_id)
        .json(&json!({ "events": [custom_event(Uuid::now_v7(), "p", Uuid::now_v7())] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-request-id"], request_id.as_str());
    let batch_id = response.json::<Value>().await.unwrap()["batch_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The worker's "batch stored" line carries the request's id and the batch's.
    let stored = wait_for(
        Duration::from_secs(30),
        "the worker to log the stored batch",
        || async {
            worker
                .json_lines()
                .into_iter()
                .find(|l| l["message"] == "batch stored")
        },
    )
    .await;
    assert_eq!(
        stored["span"]["request_id"],
        request_id.as_str(),
        "{stored}"
    );
    assert_eq!(stored["span"]["batch_id"], batch_id.as_str(), "{stored}");
    // So does the API's access-log line for the request.
    let access = api
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "request" && l["span"]["request_id"] == request_id.as_str())
        .expect("an access-log line with the request id");
    assert_eq!(access["status"], 202);
    let (_, batch) = app.get_json(&format!("/v1/batches/{batch_id}")).await;
    assert_eq!(batch["request_id"], request_id.as_str());

    // A generated id when the client sends none.
    let response = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert!(Uuid::parse_str(response.headers()["x-request-id"].to_str().unwrap()).is_ok());

    let api_metrics = get_text(&format!("{base}/metrics")).await;
    for expected in [
        "game_events_events_accepted_total 1",
        "game_events_batches_queued_total 1",
        r#"game_events_http_requests_total{route="/v1/events",method="POST",status="202"} 1"#,
        "game_events_queue_depth 0",
        "game_events_queue_oldest_age_seconds",
    ] {
        assert!(
            api_metrics.contains(expected),
            "API /metrics lacks {expected:?}:\n{api_metrics}"
        );
    }
    // The worker's own endpoint negotiates its format as the API's does.
    let worker_url = format!("http://{worker_metrics}/metrics");
    let (content_type, openmetrics) = scrape(&worker_url, Some(PROMETHEUS_2_ACCEPT)).await;
    assert_eq!(content_type, OPENMETRICS, "{openmetrics}");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(openmetrics.contains("# TYPE game_events_jobs counter\n"));
    let (content_type, worker_metrics) = scrape(&worker_url, None).await;
    assert_eq!(content_type, PROMETHEUS_TEXT, "{worker_metrics}");
    assert!(worker_metrics.contains("# TYPE game_events_jobs_total counter\n"));
    for expected in [
        r#"game_events_jobs_total{outcome="completed"} 1"#,
        "game_events_processing_seconds_count 1",
        "game_events_end_to_end_lag_seconds_count 1",
    ] {
        assert!(
            worker_metrics.contains(expected),
            "worker /metrics lacks {expected:?}:\n{worker_metrics}"
        );
    }
}

/// What Prometheus 2 sends when it scrapes (and Debian's prometheus, 2.42, does).
const PROMETHEUS_2_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// GETs a `/metrics` with `accept` (or none): the response's content type and body, after
/// checking that the response says it varies with `Accept`.
async fn scrape(url: &str, accept: Option<&str>) -> (String, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        let value = response.headers().get(name);
        value.map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("vary").as_deref(), Some("accept"));
    let content_type = header("content-type").unwrap_or_default();
    (content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_come_in_the_format_the_scraper_asks_for() {
    let app = TestApp::spawn().await;
    // A stored batch, so that the labelled counters and the histograms have samples.
    let body = json!({ "events": [custom_event(Uuid::now_v7(), "p", Uuid::now_v7())] });
    let batch_id = app.ingest(&body).await;
    app.wait_for_status(batch_id, "completed", Duration::from_secs(30))
        .await;
    let url = app.url("/metrics");

    // OpenMetrics for Prometheus: counters are families without `_total` (their samples
    // have it), and the exposition ends with `# EOF`.
    let (content_type, openmetrics) = scrape(&url, Some(PROMETHEUS_2_ACCEPT)).await;
    assert_eq!(content_type, OPENMETRICS, "{openmetrics}");
    assert!(openmetrics.ends_with("\n# EOF\n"), "{openmetrics}");
    for line in [
        "# TYPE game_events_http_requests counter\n",
        "# TYPE game_events_events_accepted counter\n",
        "# TYPE game_events_processing_seconds histogram\n",
        r#"game_events_http_requests_total{route="/v1/events",method="POST",status="202"} "#,
        r#"game_events_jobs_total{outcome="completed"} "#,
        "game_events_end_to_end_lag_seconds_count ",
    ] {
        assert!(
            openmetrics.contains(line),
            "OpenMetrics lacks {line:?}:\n{openmetrics}"
        );
    }

    // The text format 0.0.4 for everyone else: counters are `_total` in HELP and TYPE too,
    // and there is no `# EOF`.
    for accept in [
        None,
        Some("*/*"),
        Some("text/plain"),
        Some("application/openmetrics-text; version=0.0.1"),
    ] {
        let (content_type, text) = scrape(&url, accept).await;
        assert_eq!(content_type, PROMETHEUS_TEXT, "Accept {accept:?}");
        assert!(!text.contains("# EOF"), "Accept {accept:?}:\n{text}");
        for line in [
            "# HELP game_events_http_requests_total HTTP requests",
            "# TYPE game_events_http_requests_total counter\n",
            "# TYPE game_events_processing_seconds histogram\n",
            r#"game_events_http_requests_total{route="/v1/events",method="POST",status="202"} "#,
            r#"game_events_jobs_total{outcome="completed"} "#,
            "game_events_end_to_end_lag_seconds_count ",
        ] {
            assert!(
                text.contains(line),
                "Accept {accept:?}: text lacks {line:?}:\n{text}"
            );
        }
    }
}

#[tokio::test]
async fn keys_never_reach_the_logs_the_metrics_or_an_error_body() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let port = free_port();
    // Everything every library logs at debug, where a header or a URL would show up.
    let mut api = AppProcess::start_logging(
        &["serve", "--bind", &format!("127.0.0.1:{port}")],
        &app.db_settings.database_url,
        Some("debug"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "the API to be ready", || async {
        let ready = reqwest::get(format!("{base}/readyz")).await.ok()?;
        ready.status().is_success().then_some(())
    })
    .await;
    let unknown = "Z".repeat(32);
    let body = json!({ "events": [custom_event(Uuid::now_v7(), "p", Uuid::now_v7())] });
    let events = format!("{base}/v1/events");
    let batches = format!("{base}/v1/batches/{}", Uuid::now_v7());
    let mut bodies = Vec::new();
    for request in [
        app.client
            .post(&events)
            .bearer_auth(&app.ingest_key)
            .json(&body),
        app.client
            .post(format!("{events}?key={}", app.ingest_key))
            .json(&body),
        app.client
            .post(format!("{events}?key={unknown}"))
            .json(&body),
        app.client.post(&events).bearer_auth(&unknown).json(&body),
        app.client
            .post(&events)
            .bearer_auth(&app.read_key)
            .json(&body),
        app.client.get(&batches).bearer_auth(&app.ingest_key),
        app.client.get(format!("{batches}?key={}", app.read_key)),
    ] {
        bodies.push(request.send().await.unwrap().text().await.unwrap());
    }
    let metrics = get_text(&format!("{base}/metrics")).await;
    // The access-log line of the last request, /metrics, is the last to be written.
    let lines = wait_for(
        Duration::from_secs(10),
        "the access log of /metrics",
        || async {
            let lines = api.lines.lock().unwrap().clone();
            lines
                .iter()
                .any(|l| {
                    l.contains("\"message\":\"request\"") && l.contains("\"uri\":\"/metrics\"")
                })
                .then_some(lines)
        },
    )
    .await;
    for key in [&app.ingest_key, &app.read_key, &unknown] {
        for line in &lines {
            assert!(!line.contains(key.as_str()), "a key in the log: {line}");
        }
        assert!(!metrics.contains(key.as_str()), "a key in the metrics");
        for body in &bodies {
            assert!(!body.contains(key.as_str()), "a key in a response: {body}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/v1/events?key=[redacted]")),
        "no access-log line shows the redacted query"
    );
    api.child.kill().unwrap();
}
