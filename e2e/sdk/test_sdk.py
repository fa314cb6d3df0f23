"""End-to-end test of the Python client generated from openapi.yaml (e2e/sdk/generate.sh).

Against a running `app` (API and worker), using only the generated types and functions:
sends one batch holding every event type with an ingest key (`AuthenticatedClient`),
follows the batch until it is completed and reads every event back with a read key,
comparing each field by field with what was sent. Then checks that a resent batch is all
duplicates, that an invalid batch gets a typed 422 problem, and that an unknown event id
gets a typed 404. And the keys: a batch sent with no key gets a typed 401, a read with the
ingest key and a batch sent with the read key get typed 403s, a read key of another game
finds nothing (404), and no refused batch was stored.

    APP_INGEST_KEY=... APP_READ_KEY=... [APP_OTHER_READ_KEY=...] \
      python e2e/sdk/test_sdk.py --base-url http://127.0.0.1:8080

The keys come from `app keys create --game GAME --scope ingest|read` (the last line of its
output); APP_OTHER_READ_KEY, a read key of another game, is optional (.ci/e2e.sh sets it).

The client package must be importable: the script adds sdk/python (where `just sdk` puts it)
to sys.path. Exits 0 when every check passes, 1 with a message naming the failed check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, os.environ.get("SDK_DIR", str(ROOT / "sdk" / "python")))

try:
    from game_events_client import AuthenticatedClient, Client
    from game_events_client.api.batches import get_batch
    from game_events_client.api.events import get_event, ingest_events
    from game_events_client.models import (
        BatchAccepted,
        BatchState,
        BatchStatus,
        CustomEvent,
        CustomEventPropertiesType0,
        CustomEventType,
        ErrorEvent,
        ErrorEventType,
        EventBatch,
        ProgressionEvent,
        ProgressionEventType,
        PurchaseEvent,
        PurchaseEventType,
        ResourceEvent,
        ResourceEventType,
        SessionEndEvent,
        SessionEndEventType,
        SessionStartEvent,
        SessionStartEventType,
        Platform,
        Problem,
        ProgressionStatus,
        ResourceFlow,
        Severity,
        StoredEvent,
    )
except ImportError as e:  # the client is missing or lacks a type: say which
    sys.exit(f"FAIL: the generated client is missing or incomplete ({e}); run `just sdk` first")


class CheckFailed(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def conforms(obj: object, where: str) -> None:
    """No field of a parsed response is None. The server leaves an absent optional field out
    (UNSET in the generated types) and never sends null, even where openapi.yaml allows it
    (the events' optional fields are nullable, because clients may send null for them), so
    a None is a field the server should have left out."""
    if attrs.has(type(obj)):
        for f in attrs.fields(type(obj)):
            if f.name == "additional_properties":
                continue  # free-form JSON (custom properties, unknown fields), checked elsewhere
            value = getattr(obj, f.name)
            check(value is not None, f"{where}.{f.name} is null, which openapi.yaml does not allow "
                  "(not nullable: the server should omit it)")
            conforms(value, f"{where}.{f.name}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            conforms(item, f"{where}[{i}]")


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. The README asks
    clients for v7 event ids; Python's uuid module has uuid7 only from 3.14."""
    ms = time.time_ns() // 1_000_000
    value = (ms & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # variant 10
    return uuid.UUID(int=value)


def build_batch(now: dt.datetime) -> EventBatch:
    """One event of every type, every optional field set, timestamps in the recent past and
    in two time zones (the server stores and returns them in UTC)."""
    player = f"sdk-e2e-{secrets.token_hex(4)}"
    session = uuid7()
    cet = dt.timezone(dt.timedelta(hours=1))

    def at(minutes_ago: int, tz: dt.tzinfo = dt.timezone.utc) -> dt.datetime:
        return (now - dt.timedelta(minutes=minutes_ago)).astimezone(tz).replace(microsecond=0)

    common = lambda minutes_ago, tz=dt.timezone.utc: dict(  # noqa: E731
        event_id=uuid7(), player_id=player, session_id=session, occurred_at=at(minutes_ago, tz)
    )
    properties = CustomEventPropertiesType0.from_dict({"step": 3, "skipped": False, "tags": ["a", "b"], "nested": {"k": 1.5}})
    events = [
        SessionStartEvent(
            type_=SessionStartEventType.SESSION_START,
            platform=Platform.IOS,
            app_version="1.4.2",
            device="iPhone15,3",
            country="SE",
            **common(30),
        ),
        ProgressionEvent(
            type_=ProgressionEventType.PROGRESSION,
            status=ProgressionStatus.COMPLETE,
            level="world-1:stage-3",
            score=12500,
            attempt=3,
            **common(25, cet),
        ),
        PurchaseEvent(
            type_=PurchaseEventType.PURCHASE,
            item_id="gem_pack_small",
            item_type="bundle",
            amount_minor=499,
            currency="EUR",
            transaction_id="GPA.3372-4150-9012-34567",
            **common(20, cet),
        ),
        ResourceEvent(
            type_=ResourceEventType.RESOURCE,
            flow=ResourceFlow.SINK,
            currency="gold",
            amount=250.5,
            item_type="booster",
            item_id="speed_x2",
            **common(15),
        ),
        CustomEvent(
            type_=CustomEventType.CUSTOM,
            name="tutorial:step:completed",
            value=42.5,
            properties=properties,
            **common(10),
        ),
        ErrorEvent(
            type_=ErrorEventType.ERROR,
            severity=Severity.WARNING,
            message="NullReferenceException in ShopController.Open",
            **common(5),
        ),
        SessionEndEvent(
            type_=SessionEndEventType.SESSION_END,
            duration_seconds=1860,
            **common(1),
        ),
    ]
    return EventBatch(events=events, sent_at=now.replace(microsecond=0))


def normalized(event_dict: dict) -> dict:
    """An event's JSON with occurred_at as an aware datetime, so that the same instant in
    another zone (the server answers in UTC) compares equal."""
    d = dict(event_dict)
    d["occurred_at"] = dt.datetime.fromisoformat(d["occurred_at"])
    return d


def wait_completed(client: AuthenticatedClient, batch_id: uuid.UUID, deadline_s: float) -> BatchStatus:
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        r = get_batch.sync_detailed(batch_id, client=client)
        check(r.status_code == 200, f"GET /v1/batches/{batch_id}: status {r.status_code}: {r.content!r}")
        last = r.parsed
        check(isinstance(last, BatchStatus), f"GET /v1/batches/{batch_id}: not a BatchStatus: {last!r}")
        conforms(last, f"BatchStatus({last.status})")
        if last.status == BatchState.COMPLETED:
            return last
        check(last.status != BatchState.FAILED, f"batch {batch_id} failed: {last.last_error}")
        time.sleep(0.2)
    raise CheckFailed(f"batch {batch_id} not completed within {deadline_s}s (last status: {last and last.status})")


def refused(r, status: int, what: str) -> Problem:
    """A response refused with `status`, parsed as the generated Problem of that status."""
    check(r.status_code == status, f"{what}: expected {status}, got {r.status_code}: {r.content!r}")
    check(isinstance(r.parsed, Problem), f"{what}: the {status} body did not parse as a Problem: {r.parsed!r}")
    conforms(r.parsed, "Problem")
    check(r.parsed.status == status, f"{what}: Problem.status is {r.parsed.status}, the response's {status}")
    return r.parsed


def one_custom_event_batch(now: dt.datetime, name: str) -> EventBatch:
    return EventBatch(events=[CustomEvent(
        type_=CustomEventType.CUSTOM, name=name, event_id=uuid7(), player_id="sdk-e2e-refused",
        session_id=uuid7(), occurred_at=now.replace(microsecond=0))])


def check_keys_refused(anonymous: Client, ingest: AuthenticatedClient, reader: AuthenticatedClient,
                       now: dt.datetime, batch_id: uuid.UUID) -> list[uuid.UUID]:
    """The key checks, each answered with the generated Problem; returns the event ids of the
    batches refused, which must never be stored."""
    no_key = one_custom_event_batch(now, "refused:no-key")
    r = ingest_events.sync_detailed(client=anonymous, body=no_key)
    problem = refused(r, 401, "POST /v1/events with no key")
    challenge = r.headers.get("www-authenticate", "")
    check(challenge.lower().startswith("bearer"), f"POST /v1/events with no key: 401 without a Bearer "
          f"WWW-Authenticate challenge ({challenge!r})")
    print(f"ok   POST /v1/events with no key: 401 Problem ({problem.type_}), WWW-Authenticate: {challenge}")

    with_read_key = one_custom_event_batch(now, "refused:read-key")
    problem = refused(ingest_events.sync_detailed(client=reader, body=with_read_key), 403,
                      "POST /v1/events with a read key")
    print(f"ok   POST /v1/events with the read key: 403 Problem ({problem.type_})")

    problem = refused(get_batch.sync_detailed(batch_id, client=ingest), 403,
                      f"GET /v1/batches/{batch_id} with the ingest key")
    print(f"ok   GET /v1/batches/{{id}} with the ingest key: 403 Problem ({problem.type_})")
    event_id = no_key.events[0].event_id
    problem = refused(get_event.sync_detailed(event_id, client=ingest), 403,
                      f"GET /v1/events/{event_id} with the ingest key")
    print(f"ok   GET /v1/events/{{id}} with the ingest key: 403 Problem ({problem.type_})")

    problem = refused(get_batch.sync_detailed(batch_id, client=anonymous), 401,
                      f"GET /v1/batches/{batch_id} with no key")
    print(f"ok   GET /v1/batches/{{id}} with no key: 401 Problem ({problem.type_})")
    return [no_key.events[0].event_id, with_read_key.events[0].event_id]


def run(base_url: str, deadline_s: float, ingest_key: str, read_key: str, other_read_key: str | None) -> None:
    # One client a key, as an application would hold them; raise_on_unexpected_status makes
    # any status that openapi.yaml does not declare an error.
    def authenticated(key: str) -> AuthenticatedClient:
        return AuthenticatedClient(base_url=base_url, token=key, raise_on_unexpected_status=True, timeout=None)

    ingest, reader = authenticated(ingest_key), authenticated(read_key)
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True, timeout=None)
    now = dt.datetime.now(dt.timezone.utc)
    batch = build_batch(now)
    sent_types = sorted(e.type_.value for e in batch.events)
    check(
        sent_types == sorted(["session_start", "session_end", "progression", "purchase", "resource", "custom", "error"]),
        f"the batch should hold every event type once, holds {sent_types}",
    )

    # Send it.
    r = ingest_events.sync_detailed(client=ingest, body=batch)
    check(r.status_code == 202, f"POST /v1/events: expected 202, got {r.status_code}: {r.content!r}")
    accepted = r.parsed
    check(isinstance(accepted, BatchAccepted), f"POST /v1/events: 202 body is not a BatchAccepted: {accepted!r}")
    conforms(accepted, "BatchAccepted")
    check(accepted.accepted == len(batch.events), f"accepted {accepted.accepted}, sent {len(batch.events)}")
    location = r.headers.get("location")
    check(location == f"/v1/batches/{accepted.batch_id}", f"Location header {location!r} for batch {accepted.batch_id}")
    print(f"ok   POST /v1/events: 202, batch {accepted.batch_id}, {accepted.accepted} events, Location {location}")

    # Keys of the wrong kind, or none, are refused (the batch just sent exists, so a 403 is
    # about the key, not about a missing batch).
    refused_ids = check_keys_refused(anonymous, ingest, reader, now, accepted.batch_id)

    # Follow the batch until a worker has stored it.
    t0 = time.monotonic()
    status = wait_completed(reader, accepted.batch_id, deadline_s)
    check(status.batch_id == accepted.batch_id, "batch status names another batch")
    check(status.accepted == 7 and status.inserted == 7 and status.duplicates == 0,
          f"completed batch: accepted {status.accepted}, inserted {status.inserted}, duplicates {status.duplicates}")
    check(status.attempts >= 1, f"completed batch with attempts {status.attempts}")
    check(isinstance(status.completed_at, dt.datetime) and status.completed_at >= status.received_at,
          f"completed_at {status.completed_at!r} vs received_at {status.received_at!r}")
    check(not status.additional_properties, f"BatchStatus fields missing from the spec: {status.additional_properties}")
    print(f"ok   GET /v1/batches/{{id}}: completed after {time.monotonic() - t0:.1f}s, "
          f"inserted {status.inserted}, attempts {status.attempts}")

    # Read every event back, as the generated union type, and compare it with what was sent.
    for sent in batch.events:
        r = get_event.sync_detailed(sent.event_id, client=reader)
        check(r.status_code == 200, f"GET /v1/events/{sent.event_id} ({sent.type_}): {r.status_code}: {r.content!r}")
        stored = r.parsed
        check(isinstance(stored, StoredEvent), f"GET /v1/events/{sent.event_id}: not a StoredEvent: {stored!r}")
        conforms(stored, "StoredEvent")
        got = stored.event
        check(type(got) is type(sent), f"{sent.type_}: parsed as {type(got).__name__}, sent {type(sent).__name__}")
        check(got.occurred_at.utcoffset() == dt.timedelta(0), f"{sent.type_}: occurred_at {got.occurred_at} is not UTC")
        # The event types are closed (additionalProperties: false), so the generated class
        # drops a field it does not know: compare with the raw answer instead.
        unknown = set(json.loads(r.content)["event"]) - set(got.to_dict())
        check(not unknown, f"{sent.type_}: fields missing from the spec: {sorted(unknown)}")
        check(not stored.additional_properties, f"StoredEvent fields missing from the spec: {stored.additional_properties}")
        want, have = normalized(sent.to_dict()), normalized(got.to_dict())
        for field in sorted(set(want) | set(have)):
            check(want.get(field) == have.get(field),
                  f"{sent.type_}.{field}: sent {want.get(field)!r}, read back {have.get(field)!r}")
        check(stored.batch_id == accepted.batch_id, f"{sent.type_}: batch_id {stored.batch_id}, sent in {accepted.batch_id}")
        check(stored.received_at <= stored.processed_at, f"{sent.type_}: received_at after processed_at")
        # sent_at was "now", so the clock-skew correction shifts by a few seconds at most.
        skew = abs((stored.corrected_occurred_at - sent.occurred_at).total_seconds())
        check(skew < 60, f"{sent.type_}: corrected_occurred_at {stored.corrected_occurred_at} is {skew:.0f}s off")
        print(f"ok   GET /v1/events/{{id}}: {sent.type_:<13} {len(want)} fields match")

    # A resent batch (a client retrying) stores nothing twice.
    r = ingest_events.sync_detailed(client=ingest, body=batch)
    check(r.status_code == 202 and isinstance(r.parsed, BatchAccepted), f"resend: {r.status_code}: {r.content!r}")
    again = wait_completed(reader, r.parsed.batch_id, deadline_s)
    check(again.inserted == 0 and again.duplicates == 7, f"resend: inserted {again.inserted}, duplicates {again.duplicates}")
    print("ok   resent batch: 0 inserted, 7 duplicates")

    # Errors come back as the generated Problem type.
    bad = EventBatch(events=[PurchaseEvent(
        type_=PurchaseEventType.PURCHASE, event_id=uuid7(), player_id="bad player", session_id=uuid7(),
        occurred_at=now, item_id="x", item_type="x", amount_minor=0, currency="eur")])
    r = ingest_events.sync_detailed(client=ingest, body=bad)
    check(r.status_code == 422 and isinstance(r.parsed, Problem), f"invalid batch: {r.status_code}: {r.content!r}")
    conforms(r.parsed, "Problem")
    fields = sorted(e.field for e in r.parsed.errors)
    check(fields == ["/events/0/amount_minor", "/events/0/currency", "/events/0/player_id"], f"422 errors name {fields}")
    print(f"ok   invalid batch: 422 Problem naming {', '.join(fields)}")

    missing = uuid7()
    r = get_event.sync_detailed(missing, client=reader)
    check(r.status_code == 404 and isinstance(r.parsed, Problem) and r.parsed.status == 404,
          f"GET /v1/events/{missing}: {r.status_code}: {r.content!r}")
    conforms(r.parsed, "Problem")
    print("ok   unknown event id: 404 Problem")

    # The batches refused for their key were not queued: two batches sent after them have been
    # stored meanwhile, and their events are not found.
    for event_id in refused_ids:
        refused(get_event.sync_detailed(event_id, client=reader), 404,
                f"GET /v1/events/{event_id} (sent with no key or a read key, refused)")
    print(f"ok   the {len(refused_ids)} batches refused for their key were not stored (404)")

    # A read key finds only its own game's data.
    if other_read_key:
        other = authenticated(other_read_key)
        refused(get_batch.sync_detailed(accepted.batch_id, client=other), 404,
                f"GET /v1/batches/{accepted.batch_id} with another game's read key")
        event_id = batch.events[0].event_id
        refused(get_event.sync_detailed(event_id, client=other), 404,
                f"GET /v1/events/{event_id} with another game's read key")
        print("ok   another game's read key: 404 Problem for this game's batch and event")
    else:
        print("skip another game's read key (APP_OTHER_READ_KEY is not set)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", default=os.environ.get("APP_URL", "http://127.0.0.1:8080"))
    p.add_argument("--deadline", type=float, default=30.0, help="seconds to wait for a batch to complete")
    args = p.parse_args()
    # Keys from the environment, not arguments, so that they stay out of process listings.
    keys = {name: os.environ.get(name, "").strip() for name in ("APP_INGEST_KEY", "APP_READ_KEY", "APP_OTHER_READ_KEY")}
    for name in ("APP_INGEST_KEY", "APP_READ_KEY"):
        if not keys[name]:
            print(f"FAIL sdk e2e: {name} is not set (`app keys create --game GAME --scope "
                  f"{name.split('_')[1].lower()}`; .ci/e2e.sh sets it)", file=sys.stderr)
            return 2
    try:
        run(args.base_url, args.deadline, keys["APP_INGEST_KEY"], keys["APP_READ_KEY"], keys["APP_OTHER_READ_KEY"] or None)
    except CheckFailed as e:
        print(f"FAIL sdk e2e: {e}", file=sys.stderr)
        return 1
    print("PASS sdk e2e: the client generated from openapi.yaml sends (ingest key), follows and reads back "
          "(read key) every event type; missing and wrong keys get typed 401, 403 and 404 problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
