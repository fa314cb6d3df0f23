//! Slow and abusive clients, on real sockets: a head or a body sent a byte at a time, idle
//! keep-alive connections, HTTP/2 with prior knowledge, and oversized heads. Each test
//! shortens the limits to a second or two; timing assertions allow for a loaded machine
//! (closed within limit + `MARGIN`), and check "not before the limit" only where the
//! limit starts at a moment the client knows.

use std::time::Duration;

use app::config::ClientTimeoutSettings;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::*;

/// How late past its limit a connection may be closed, on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(3);
/// How early a close may be measured before the limit (timers never fire early; this
/// covers clock reading only).
const EARLY: Duration = Duration::from_millis(100);
const ONE_BYTE_PER_SECOND: Duration = Duration::from_secs(1);

async fn spawn_with_limits(header_ms: u64, body_ms: u64, keep_alive_ms: u64) -> TestApp {
    TestApp::spawn_with(TestOptions {
        workers: 0,
        client_timeouts: ClientTimeoutSettings {
            request_header_timeout_ms: header_ms,
            request_body_timeout_ms: body_ms,
            keep_alive_timeout_ms: keep_alive_ms,
        },
        ..Default::default()
    })
    .await
}

/// Sends `bytes` one at a time, `every` apart, the first at once; stops when the server
/// has closed the connection.
fn trickle(mut writer: OwnedWriteHalf, bytes: Vec<u8>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        for byte in bytes {
            ticks.tick().await;
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
        }
        // Keep the connection open (dropping the writer would half-close it).
        std::future::pending::<()>().await;
    })
}

/// Reads until the server closes the connection (EOF, or a reset after it closed with
/// bytes unread); returns what it sent and when it closed. Panics if it is still open
/// after `within`.
async fn read_until_closed(
    reader: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> (Vec<u8>, Instant) {
    let mut received = Vec::new();
    let read = async {
        let mut chunk = [0; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("reading from the server: {e}"),
            }
        }
    };
    if tokio::time::timeout(within, read).await.is_err() {
        panic!("the connection is still open after {within:?}");
    }
    (received, Instant::now())
}

/// An HTTP/1 response as the server wrote it.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Reads one response (with a Content-Length body) from a keep-alive connection.
async fn read_response(reader: &mut (impl tokio::io::AsyncBufRead + Unpin)) -> RawResponse {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("a status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header");
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("a length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.expect("the body");
    RawResponse {
        status,
        headers,
        body,
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_sent_a_byte_a_second_are_cut_off_at_the_header_limit_while_others_are_served() {
    let header_limit = Duration::from_secs(2);
    let app = spawn_with_limits(2_000, 30_000, 30_000).await;
    // A whole head would take ~40 s at this pace.
    let head = b"GET /healthz HTTP/1.1\r\nHost: slow.example\r\n\r\n".to_vec();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let (reader, writer) = connect(&app).await.into_split();
        let started = Instant::now();
        let trickling = trickle(writer, head.clone(), ONE_BYTE_PER_SECOND);
        slow.push((reader, started, trickling));
    }

    // Meanwhile, other clients are served promptly.
    let served = async {
        let mut served = 0;
        let until = Instant::now() + header_limit;
        while Instant::now() < until {
            let started = Instant::now();
            let response = app.client.get(app.url("/healthz")).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(1),
                "a normal request took {took:?}"
            );
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        served
    };
    let closes =
        futures_util::future::join_all(slow.iter_mut().map(|(reader, started, _)| async move {
            let (received, closed) = read_until_closed(reader, header_limit + MARGIN).await;
            (received, closed - *started)
        }));
    let (served, closes) = tokio::join!(served, closes);

    assert!(served >= 5, "only {served} normal requests were served");
    for (received, after) in closes {
        assert!(
            received.is_empty(),
            "a cut-off head got an answer: {:?}",
            String::from_utf8_lossy(&received)
        );
        assert!(after >= header_limit - EARLY, "closed after {after:?}");
    }
    for (_, _, trickling) in slow {
        trickling.abort();
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("game_events_http_connections_timed_out_total{deadline=\"header\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_a_byte_a_second_gets_408_at_the_body_limit_and_the_connection_closes() {
    // The header limit is shorter than the body's: it must not apply to the body.
    let body_limit = Duration::from_secs(3);
    let app = spawn_with_limits(1_000, 3_000, 30_000).await;

    let cut_off = |expect_continue: bool| {
        let app = &app;
        async move {
            let (mut reader, mut writer) = connect(app).await.into_split();
            let expect = if expect_continue {
                "Expect: 100-continue\r\n"
            } else {
                ""
            };
            let head = format!(
                "POST /v1/events HTTP/1.1\r\nHost: slow.example\r\n\
                 Authorization: Bearer {}\r\n\
                 Content-Type: application/json\r\n{expect}Content-Length: 100\r\n\r\n",
                app.ingest_key
            );
            writer.write_all(head.as_bytes()).await.unwrap();
            let started = Instant::now();
            let trickling = trickle(writer, vec![b' '; 100], ONE_BYTE_PER_SECOND);
            let (received, closed) = read_until_closed(&mut reader, body_limit + MARGIN).await;
            trickling.abort();
            let mut received = received.as_slice();
            if expect_continue {
                let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
                assert!(
                    received.starts_with(interim),
                    "{:?}",
                    String::from_utf8_lossy(received)
                );
                received = &received[interim.len()..];
            }
            (read_response(&mut received).await, closed - started)
        }
    };
    let ((plain, plain_after), (expecting, expecting_after)) =
        tokio::join!(cut_off(false), cut_off(true));

    for (response, after) in [(plain, plain_after), (expecting, expecting_after)] {
        assert!(after >= body_limit - EARLY, "408 after {after:?}");
        assert_eq!(response.status, 408, "{response:?}");
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(response.header("connection"), Some("close"));
        let problem = response.json();
        assert_eq!(problem["type"], "/problems/request-timeout", "{problem}");
        assert_eq!(problem["status"], 408);
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("not received in full within 3s"),
            "{detail}"
        );
    }
    assert_eq!(app.count("batches").await, 0);
}

#[tokio::test]
async fn a_body_slower_than_the_header_limit_but_within_its_own_is_accepted() {
    let app = spawn_with_limits(500, 10_000, 30_000).await;
    let body = json!({ "events": [custom_event(Uuid::now_v7(), "p", Uuid::now_v7())] }).to_string();
    let stream = connect(&app).await;
    let (reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: slow.example\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.ingest_key,
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    // Four pieces 400 ms apart: 1.2 s in all, over twice the header limit.
    let mut ticks = tokio::time::interval(Duration::from_millis(400));
    for piece in body.as_bytes().chunks(body.len().div_ceil(4)) {
        ticks.tick().await;
        writer.write_all(piece).await.unwrap();
    }
    let response = read_response(&mut BufReader::new(reader)).await;
    assert_eq!(
        response.status,
        202,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
}

#[tokio::test]
async fn idle_connections_are_closed_at_the_keep_alive_limit_and_used_ones_stay_open() {
    let keep_alive = Duration::from_secs(2);
    let app = spawn_with_limits(5_000, 5_000, 2_000).await;

    // A connection that never sends anything.
    let silent = async {
        let mut stream = connect(&app).await;
        let accepted = Instant::now();
        let (received, closed) = read_until_closed(&mut stream, keep_alive + MARGIN).await;
        assert!(received.is_empty());
        let after = closed - accepted;
        assert!(after >= keep_alive - EARLY, "closed after {after:?}");
    };

    // A connection used every second: open well past the limit, then closed once idle.
    let used = async {
        let (reader, mut writer) = connect(&app).await.into_split();
        let mut reader = BufReader::new(reader);
        let mut last_response = Instant::now();
        for i in 0..3 {
            if i > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            writer
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: keep.example\r\n\r\n")
                .await
                .unwrap();
            let response = read_response(&mut reader).await;
            assert_eq!(response.status, 200, "request {i} on the same connection");
            last_response = Instant::now();
        }
        let (received, closed) = read_until_closed(&mut reader, keep_alive + MARGIN).await;
        assert!(received.is_empty());
        let after = closed - last_response;
        // The limit runs from the start of the response, just before the client read it.
        assert!(
            after >= keep_alive - Duration::from_millis(500),
            "closed after {after:?}"
        );
    };
    tokio::join!(silent, used);
}

#[tokio::test]
async fn http2_with_prior_knowledge_gets_the_keep_alive_limit_on_inactivity_only() {
    let keep_alive = Duration::from_millis(1_500);
    // A header limit this short would cut the connection off if it applied to HTTP/2.
    let app = spawn_with_limits(300, 5_000, 1_500).await;
    let (mut reader, mut writer) = connect(&app).await.into_split();
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const EMPTY_SETTINGS: &[u8] = b"\0\0\0\x04\0\0\0\0\0";
    const PING: &[u8] = b"\0\0\x08\x06\0\0\0\0\0pingpong";
    writer.write_all(PREFACE).await.unwrap();
    writer.write_all(EMPTY_SETTINGS).await.unwrap();

    // Active for twice the keep-alive limit: a ping every 250 ms, each answered.
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    let active_until = Instant::now() + 2 * keep_alive;
    let mut received = 0;
    let mut chunk = [0; 4096];
    while Instant::now() < active_until {
        ticks.tick().await;
        writer.write_all(PING).await.unwrap();
        // The server's answers (its settings, acks, ping acks) keep coming.
        match tokio::time::timeout(Duration::from_millis(200), reader.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("closed while active, after {received} bytes"),
            Ok(Ok(n)) => received += n,
            Err(_) => {}
        }
    }
    assert!(received > 0);
    let last_activity = Instant::now();
    let (_, closed) = read_until_closed(&mut reader, keep_alive + MARGIN).await;
    let after = closed - last_activity;
    assert!(
        after >= keep_alive - Duration::from_millis(500),
        "closed after {after:?}"
    );
}

/// A head of `fields` header fields (Host among them), sent raw.
fn head_with_fields(fields: usize) -> Vec<u8> {
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: big.example\r\n".to_vec();
    for i in 1..fields {
        head.extend_from_slice(format!("X-Field-{i}: {i}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Sends `head` while reading the answer (the server may answer before it has read it
/// all), until the server closes the connection or has answered and kept it open.
async fn send_head(app: &TestApp, head: Vec<u8>) -> RawResponse {
    let (reader, mut writer) = connect(app).await.into_split();
    // The server may stop reading and close: then this write fails, as it should.
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&head).await;
        writer
    });
    let response = tokio::time::timeout(MARGIN, read_response(&mut BufReader::new(reader)))
        .await
        .expect("an answer");
    sending.abort();
    response
}

#[tokio::test]
async fn heads_over_100_fields_or_about_400_kib_get_hypers_431() {
    // hyper's HTTP/1 bounds (poem does not change them): 100 header fields, and a head
    // must fit its read buffer, 8 KiB + 400 KiB. The 431 has no body (hyper writes it,
    // not the app) and closes the connection.
    let app = spawn_with_limits(10_000, 10_000, 10_000).await;
    let too_large = |response: RawResponse| {
        assert_eq!(response.status, 431, "{response:?}");
        assert_eq!(response.header("connection"), Some("close"));
        assert!(response.body.is_empty());
    };

    assert_eq!(send_head(&app, head_with_fields(100)).await.status, 200);
    too_large(send_head(&app, head_with_fields(101)).await);
    too_large(send_head(&app, head_with_fields(200)).await);

    let with_value_of = |bytes: usize| {
        let mut head = b"GET /healthz HTTP/1.1\r\nHost: big.example\r\nX-Big: ".to_vec();
        head.resize(head.len() + bytes, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        head
    };
    assert_eq!(send_head(&app, with_value_of(256 * 1024)).await.status, 200);
    too_large(send_head(&app, with_value_of(1024 * 1024)).await);
}
