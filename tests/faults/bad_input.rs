//! Bad input, table-driven: every refused request gets the right status and names the
//! field or limit at fault, nothing of it is queued, and the server keeps serving.
//!
//! A new case is one line in `cases()` (or in `FIELDS`, which generates missing, null,
//! wrong-type and out-of-bounds cases for a field of one or all event types).

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Map, Value};
use std::io::Write;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::common::{full_event, EVENT_TYPES, SESSION};
use crate::helpers::*;

const MIB: usize = 1024 * 1024;
const JSON: &str = "application/json";

/// One HTTP request.
#[derive(Clone)]
struct Request {
    content_type: Option<&'static str>,
    content_encoding: Option<&'static str>,
    body: Vec<u8>,
}

impl Request {
    fn content_type(mut self, content_type: Option<&'static str>) -> Self {
        self.content_type = content_type;
        self
    }

    fn encoding(mut self, encoding: &'static str) -> Self {
        self.content_encoding = Some(encoding);
        self
    }

    /// The same request, its body gzipped and labelled so.
    fn gzip(self) -> Self {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&self.body).unwrap();
        Self {
            body: encoder.finish().unwrap(),
            ..self.encoding("gzip")
        }
    }

    async fn send(&self, server: &Server) -> reqwest::Response {
        let mut request = server
            .http
            .post(server.url("/v1/events"))
            .body(self.body.clone());
        if let Some(content_type) = self.content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(encoding) = self.content_encoding {
            request = request.header("content-encoding", encoding);
        }
        request.send().await.expect("POST /v1/events")
    }
}

/// A JSON body as raw bytes, exactly as given.
fn raw(body: impl Into<Vec<u8>>) -> Request {
    Request {
        content_type: Some(JSON),
        content_encoding: None,
        body: body.into(),
    }
}

/// `request` with `from` replaced by `to` in its body (for what `json!` cannot write).
fn replaced(request: Request, from: &str, to: &str) -> Request {
    let text = String::from_utf8(request.body.clone()).unwrap();
    assert!(text.contains(from), "{from:?} is not in {text}");
    Request {
        body: text.replace(from, to).into_bytes(),
        ..request
    }
}

fn body(value: Value) -> Request {
    raw(value.to_string())
}

/// A batch of one valid event of `event_type`, changed by `change`.
fn event(event_type: &str, change: impl FnOnce(&mut Map<String, Value>)) -> Request {
    let mut e = valid_event(event_type);
    change(e.as_object_mut().unwrap());
    body(json!({ "events": [e] }))
}

/// One valid event of `event_type`, with every optional field set.
fn valid_event(event_type: &str) -> Value {
    full_event(
        event_type,
        Uuid::now_v7(),
        "player-1",
        SESSION,
        "2026-01-01T10:00:00Z",
    )
}

/// What a refused request must name.
#[derive(Debug, Clone)]
enum Names {
    /// 422: the JSON Pointer of the invalid value, the only field in `errors`.
    Field(String),
    /// 413: the `limit` exceeded.
    Limit(u64),
    /// 400, 415: the problem `type`.
    Problem(&'static str),
}

fn field(pointer: &str) -> Names {
    Names::Field(pointer.to_owned())
}
fn limit(limit: usize) -> Names {
    Names::Limit(limit as u64)
}
const NOT_JSON: Names = Names::Problem("/problems/bad-request");
const MEDIA_TYPE: Names = Names::Problem("/problems/unsupported-media-type");

struct Case {
    name: String,
    request: Request,
    status: u16,
    names: Names,
}

fn case(name: impl Into<String>, request: Request, status: u16, names: Names) -> Case {
    Case {
        name: name.into(),
        request,
        status,
        names,
    }
}

/// An object nested `depth` levels deep (the properties object itself is level 1).
fn nested(depth: usize) -> Value {
    (1..depth).fold(json!({"leaf": 1}), |inner, _| json!({ "n": inner }))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// The fields of each event type: the event types that have it ("*" = all), whether it is
/// required, a value of the wrong JSON type, and values out of its bounds. One line each.
#[rustfmt::skip]
fn fields() -> Vec<(&'static str, &'static str, bool, Value, Vec<Value>)> {
    const REQUIRED: bool = true;
    const OPTIONAL: bool = false;
    let long = |n: usize| json!("x".repeat(n));
    vec![
        ("*", "type", REQUIRED, json!(1), vec![json!("login"), json!(""), json!("Custom")]),
        ("*", "event_id", REQUIRED, json!(42), vec![json!("not-a-uuid"), json!(Uuid::nil()), json!("0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c0\u{1}"), json!("")]),
        ("*", "player_id", REQUIRED, json!(42), vec![json!(""), long(65), json!("player 1"), json!("player\u{1}"), json!("player\u{0}"), json!("spieler-ü")]),
        ("*", "session_id", REQUIRED, json!(true), vec![json!("session"), json!("0192f0c1-7d5e-7a3b-9c1d-2e3f4a5b6c0\u{0}")]),
        ("*", "occurred_at", REQUIRED, json!(1_767_261_600), vec![json!("2026-01-01T10:00:00"), json!("2026-01-01"), json!("2999-01-01T00:00:00Z"), json!("1999-12-31T23:59:59Z"), json!("yesterday")]),
        ("session_start", "platform", REQUIRED, json!(1), vec![json!("amiga"), json!(""), json!("IOS")]),
        ("session_start", "app_version", REQUIRED, json!(1.4), vec![json!(""), long(33), json!("1.0\u{7}")]),
        ("session_start", "device", OPTIONAL, json!([]), vec![json!(""), long(65), json!("pixel\n8")]),
        ("session_start", "country", OPTIONAL, json!(46), vec![json!("se"), json!("XX"), json!("SWE"), json!("UK")]),
        ("session_end", "duration_seconds", REQUIRED, json!("60"), vec![json!(-1), json!(604_801), json!(1.5), json!(1e20), json!(u64::MAX)]),
        ("progression", "status", REQUIRED, json!(0), vec![json!("won"), json!("")]),
        ("progression", "level", REQUIRED, json!(1), vec![json!(""), json!("a:b:c:d"), json!("a::b"), long(65), json!("w1\u{1b}")]),
        ("progression", "score", OPTIONAL, json!("100"), vec![json!(-1), json!(1.5), json!(u64::MAX)]),
        ("progression", "attempt", OPTIONAL, json!("2"), vec![json!(0), json!(-3), json!(i64::MAX)]),
        ("purchase", "item_id", REQUIRED, json!(7), vec![json!(""), long(65), json!("gem\u{1b}pack")]),
        ("purchase", "item_type", REQUIRED, json!({}), vec![json!(""), long(65)]),
        ("purchase", "amount_minor", REQUIRED, json!("499"), vec![json!(0), json!(-499), json!(4.99), json!(1e300), json!(u64::MAX)]),
        ("purchase", "currency", REQUIRED, json!(978), vec![json!("eur"), json!("EURO"), json!("")]),
        ("purchase", "transaction_id", OPTIONAL, json!(1), vec![json!(""), long(129), json!("T\u{0}1")]),
        ("resource", "flow", REQUIRED, json!(true), vec![json!("both"), json!("")]),
        ("resource", "currency", REQUIRED, json!(1), vec![json!(""), long(65)]),
        ("resource", "amount", REQUIRED, json!("5"), vec![json!(0), json!(-5), json!(-0.0), json!(-1e300)]),
        ("resource", "item_type", REQUIRED, json!([]), vec![json!(""), long(65)]),
        ("resource", "item_id", REQUIRED, json!(false), vec![json!(""), long(65)]),
        ("custom", "name", REQUIRED, json!(1), vec![json!(""), json!("a:b:c:d:e:f"), json!("a::b"), long(65), json!("tab\tname")]),
        ("custom", "value", OPTIONAL, json!("3.5"), vec![json!([1.5])]),
        ("custom", "properties", OPTIONAL, json!([1]), vec![nested(9), json!({"blob": "x".repeat(9 * 1024)}), Value::Object((0..51).map(|i| (format!("k{i}"), json!(i))).collect()), json!({"nul": "a\u{0}b"}), json!("{}")]),
        ("error", "severity", REQUIRED, json!(3), vec![json!("fatal"), json!("")]),
        ("error", "message", REQUIRED, json!(["boom"]), vec![json!(""), long(8193), json!("nul\u{0}")]),
    ]
}

/// Every case: a request, its status, and what its error must name. One line each.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let valid = || json!({ "events": [valid_event("custom")] });
    let now = OffsetDateTime::now_utc();
    let mut cases = vec![
        // Not JSON, or not UTF-8: 400.
        case("not JSON", raw("not json"), 400, NOT_JSON),
        case("an empty body", raw(""), 400, NOT_JSON),
        case("truncated JSON", raw(r#"{"events": [{"type": "custom", "event_id": "01"#), 400, NOT_JSON),
        case("invalid UTF-8", raw(&b"{\"events\": [\"\xff\xfe\"]}"[..]), 400, NOT_JSON),
        case("a UTF-8 BOM", raw([&b"\xef\xbb\xbf"[..], valid().to_string().as_bytes()].concat()), 400, NOT_JSON),
        case("trailing garbage", raw(format!("{} x", valid())), 400, NOT_JSON),
        case("NaN", replaced(body(valid()), "3.5", "NaN"), 400, NOT_JSON),
        case("Infinity", replaced(body(valid()), "3.5", "-Infinity"), 400, NOT_JSON),
        case("a number beyond f64", replaced(body(valid()), "3.5", "1e400"), 400, NOT_JSON),
        case("100000 nested arrays", raw("[".repeat(100_000)), 400, NOT_JSON),
        case("properties nested past the parser's limit", replaced(body(valid()), r#"{"hints":["a","b"],"step":3}"#, &nested(200).to_string()), 400, NOT_JSON),
        // JSON, but not a batch: 422 naming the place.
        case("a JSON array", body(json!([valid_event("custom")])), 422, field("")),
        case("a JSON string", body(json!("events")), 422, field("")),
        case("JSON null", raw("null"), 422, field("")),
        case("events missing", body(json!({})), 422, field("/events")),
        case("events null", body(json!({"events": null})), 422, field("/events")),
        case("events an object", body(json!({"events": {"0": valid_event("custom")}})), 422, field("/events")),
        case("events a string", body(json!({"events": "[]"})), 422, field("/events")),
        case("events empty", body(json!({"events": []})), 422, field("/events")),
        case("an event that is a number", body(json!({"events": [42]})), 422, field("/events/0")),
        case("an event that is null", body(json!({"events": [null]})), 422, field("/events/0")),
        case("an unknown top-level field", body(json!({"events": [valid_event("custom")], "extra": 1})), 422, field("/extra")),
        case("sent_at not a date-time", body(json!({"events": [valid_event("custom")], "sent_at": "now"})), 422, field("/sent_at")),
        case("sent_at without offset", body(json!({"events": [valid_event("custom")], "sent_at": "2026-01-01T10:00:00"})), 422, field("/sent_at")),
        case("the same event_id twice", { let e = valid_event("custom"); body(json!({"events": [e.clone(), e]})) }, 422, field("/events/1/event_id")),
        case("in the future after correcting the client clock", { let mut e = valid_event("custom"); e["occurred_at"] = json!(rfc3339(now)); body(json!({"sent_at": rfc3339(now - time::Duration::hours(3)), "events": [e]})) }, 422, field("/events/0/occurred_at")),
        case("an integer beyond u64", replaced(event("purchase", |_| {}), "\"amount_minor\":499", "\"amount_minor\":18446744073709551616000"), 422, field("/events/0/amount_minor")),
        // Content-Type: 415.
        case("no Content-Type", body(valid()).content_type(None), 415, MEDIA_TYPE),
        case("text/html", body(valid()).content_type(Some("text/html")), 415, MEDIA_TYPE),
        case("text/plain in Latin-1", body(valid()).content_type(Some("text/plain; charset=iso-8859-1")), 415, MEDIA_TYPE),
        case("a form", body(valid()).content_type(Some("application/x-www-form-urlencoded")), 415, MEDIA_TYPE),
        case("another JSON type", body(valid()).content_type(Some("application/merge-patch+json")), 415, MEDIA_TYPE),
        case("a malformed Content-Type", body(valid()).content_type(Some("json")), 415, MEDIA_TYPE),
        // Limits: 413 naming the limit.
        case("1001 events", body(json!({"events": (0..1001).map(|_| valid_event("custom")).collect::<Vec<_>>()})), 413, limit(1000)),
        case("a body over 1 MiB", event("custom", |e| { e.insert("properties".into(), json!({"pad": "x".repeat(MIB)})); }), 413, limit(MIB)),
        case("a body over 1 MiB of whitespace", raw(format!("{}{}", valid(), " ".repeat(MIB))), 413, limit(MIB)),
    ];
    // Every type: an unknown extra field, and a field of another type.
    for t in &EVENT_TYPES {
        cases.push(case(format!("{t}: an unknown field"), event(t, |e| { e.insert("colour".into(), json!("red")); }), 422, field("/events/0/colour")));
        let foreign = if *t == "error" { "duration_seconds" } else { "severity" };
        cases.push(case(format!("{t}: {foreign}, a field of another type"), event(t, |e| { e.insert(foreign.into(), json!("error")); }), 422, field(&format!("/events/0/{foreign}"))));
    }
    // Every field: missing and null (when required), the wrong type, out of bounds.
    for (types, name, required, wrong_type, out_of_bounds) in fields() {
        for t in EVENT_TYPES.iter().filter(|t| types == "*" || types == **t) {
            let pointer = format!("/events/0/{name}");
            let with = |v: Value| event(t, move |e| { e.insert(name.into(), v); });
            if required {
                cases.push(case(format!("{t}: {name} missing"), event(t, |e| { e.remove(name); }), 422, field(&pointer)));
                cases.push(case(format!("{t}: {name} null"), with(Value::Null), 422, field(&pointer)));
            }
            cases.push(case(format!("{t}: {name} = {wrong_type}"), with(wrong_type.clone()), 422, field(&pointer)));
            for v in &out_of_bounds {
                let shown: String = v.to_string().chars().take(40).collect();
                cases.push(case(format!("{t}: {name} = {shown}"), with(v.clone()), 422, field(&pointer)));
            }
        }
    }
    cases
}

/// Checks one response against its case; returns what is wrong, if anything.
async fn check(case: &Case, response: reqwest::Response) -> Result<(), String> {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap_or_default();
    let shown: String = text.chars().take(600).collect();
    if status != case.status {
        return Err(format!(
            "status {status}, expected {}: {shown}",
            case.status
        ));
    }
    if content_type != "application/problem+json" {
        return Err(format!("content-type {content_type:?}: {shown}"));
    }
    let problem: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {shown}"))?;
    if problem["status"] != status
        || !problem["title"].is_string()
        || !problem["detail"].is_string()
    {
        return Err(format!("not a problem document: {shown}"));
    }
    match &case.names {
        Names::Field(pointer) => {
            let fields: Vec<&str> = problem["errors"]
                .as_array()
                .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
                .unwrap_or_default();
            if fields.is_empty() || fields.iter().any(|f| f != pointer) {
                return Err(format!(
                    "expected errors naming only {pointer:?}, got {fields:?}: {shown}"
                ));
            }
        }
        Names::Limit(limit) => {
            if problem["limit"] != *limit {
                return Err(format!("expected limit {limit}: {shown}"));
            }
        }
        Names::Problem(problem_type) => {
            if problem["type"] != *problem_type {
                return Err(format!("expected type {problem_type}: {shown}"));
            }
        }
    }
    Ok(())
}

async fn run_cases(server: &Server, cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let response = case.request.send(server).await;
        if let Err(e) = check(case, response).await {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// After refused requests, the server still takes a valid batch and a worker stores it.
async fn still_serves(server: &Server, db: &TestDb) {
    let healthz = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let (body, ids) = new_batch(3);
    let batch_id = server.ingest(&body).await;
    assert_eq!(db.batch(batch_id).await.accepted, ids.len() as i32);
}

#[tokio::test]
async fn every_bad_request_is_refused_naming_its_fault_and_queues_nothing() {
    let db = TestDb::create().await;
    let server = Server::spawn("serve", &db.url, &[]).await;
    let cases = cases();
    let before = db.counts().await;
    run_cases(&server, &cases).await;
    assert_eq!(
        db.counts().await,
        before,
        "a refused request changed the database"
    );
    still_serves(&server, &db).await;
    eprintln!("{} bad-input cases refused as expected", cases.len());
}

/// The gzip cases that are refused. One line each.
#[rustfmt::skip]
fn gzip_cases() -> Vec<Case> {
    let valid = || json!({ "events": [valid_event("custom"), valid_event("purchase")] });
    // A JSON prefix that stays valid while it is read: a string of `n` bytes.
    let padded = |n: usize| raw(format!(r#"{{"events": [{}], "pad": "{}"}}"#, valid_event("custom"), "a".repeat(n)));
    vec![
        case("gzip: 1001 events", body(json!({"events": (0..1001).map(|_| valid_event("custom")).collect::<Vec<_>>()})).gzip(), 413, limit(1000)),
        case("gzip: inflates to just over 1 MiB", padded(MIB).gzip(), 413, limit(MIB)),
        case("gzip: not JSON inside", raw("not json").gzip(), 400, NOT_JSON),
        case("gzip: an invalid event inside", event("custom", |e| { e.remove("name"); }).gzip(), 422, field("/events/0/name")),
        case("gzip: labelled gzip, but plain JSON", body(valid()).encoding("gzip"), 400, NOT_JSON),
        case("gzip: truncated stream", { let mut r = body(valid()).gzip(); r.body.truncate(r.body.len() / 2); r }, 400, NOT_JSON),
        case("Content-Encoding: br", body(valid()).encoding("br"), 415, MEDIA_TYPE),
        case("Content-Encoding: foo", body(valid()).encoding("foo"), 415, MEDIA_TYPE),
        case("gzip without Content-Type", body(valid()).gzip().content_type(None), 415, MEDIA_TYPE),
    ]
}

/// Gzip bodies: accepted, and every limit applies to the inflated bytes, read as a stream.
/// (Needs the gzip support of issue 3's API change.)
#[tokio::test]
async fn gzip_bodies_are_accepted_and_limited_by_their_inflated_size() {
    let db = TestDb::create().await;
    let mut server = Server::spawn("serve", &db.url, &[]).await;
    let refused = gzip_cases();
    let before = db.counts().await;
    run_cases(&server, &refused).await;
    assert_eq!(
        db.counts().await,
        before,
        "a refused request changed the database"
    );

    // A bomb: 256 MiB of 'a' inside a JSON string, well under 1 MiB compressed. It must be
    // refused once 1 MiB has been inflated, not inflated whole into memory.
    let inflated = 256 * MIB;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(br#"{"events": [], "pad": ""#).unwrap();
    let chunk = vec![b'a'; MIB];
    for _ in 0..inflated / MIB {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.write_all(br#""}"#).unwrap();
    let bomb = Request {
        body: encoder.finish().unwrap(),
        ..raw("").encoding("gzip")
    };
    assert!(
        bomb.body.len() < MIB,
        "the bomb is {} bytes compressed",
        bomb.body.len()
    );
    let peak_before = server.proc.memory_kib("VmHWM").expect("VmHWM");
    let started = std::time::Instant::now();
    let response = bomb.send(&server).await;
    let elapsed = started.elapsed();
    let bomb_case = case("gzip: a bomb", raw(""), 413, limit(MIB));
    let outcome = check(&bomb_case, response).await;
    let peak_after = server.proc.memory_kib("VmHWM").expect("VmHWM");
    server.proc.assert_running();
    eprintln!(
        "gzip bomb: {} bytes inflating to {inflated}; answered in {elapsed:?}; server peak RSS {peak_before} -> {peak_after} KiB",
        bomb.body.len()
    );
    outcome.unwrap_or_else(|e| panic!("gzip bomb: {e}"));
    assert!(
        peak_after.saturating_sub(peak_before) < 64 * 1024,
        "the server's peak memory grew by {} KiB on a gzip bomb: it inflated it whole",
        peak_after - peak_before
    );
    assert_eq!(db.counts().await, before);

    // And a gzipped valid batch is accepted as it is.
    let request =
        body(json!({ "events": [valid_event("custom"), valid_event("purchase")] })).gzip();
    let batch_id = accepted_batch_id(request.send(&server).await).await;
    assert_eq!(db.batch(batch_id).await.accepted, 2);
    still_serves(&server, &db).await;
}
