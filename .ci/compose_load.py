#!/usr/bin/env python3
"""Posts batches of new events to a running API, as a client would, for .ci/compose.sh.

Each batch is resent with the same event ids after a 503, a 429 or a lost connection until
it gets a 202 (event_id is the idempotency key, so resending is safe). The ids of every batch that
got a 202 are written to --ids-out, one per line: all of them must end up stored.

For a disruption under load (.ci/compose.sh restarts the database):
  --signal-file F   created once --signal-after batches got a 202: the disruption may begin;
  --wait-file G     the disruption is over once G exists: posting goes on until --batches
                    were sent and --after-wait batches begun after G got a 202, so the load
                    spans the disruption however long it takes (up to --deadline).

Any other status than 202, 429 or 503 fails the run. Only the standard library is used.
"""

import argparse
import datetime as dt
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="the API's base URL")
    p.add_argument("--key", default="", help="ingest key, sent as 'Authorization: Bearer KEY'")
    p.add_argument("--batches", type=int, required=True)
    p.add_argument("--events-per-batch", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rate", type=float, default=0, help="batches per second in all (0: no limit)")
    p.add_argument("--ids-out", required=True)
    p.add_argument("--signal-after", type=int, default=0)
    p.add_argument("--signal-file")
    p.add_argument("--wait-file")
    p.add_argument("--after-wait", type=int, default=20)
    p.add_argument("--deadline", type=float, default=300, help="seconds for the whole run")
    return p.parse_args()


def now():
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def make_batch(n):
    """A batch of one session's events: a start, then progression, purchase, custom, end."""
    session, player = str(uuid.uuid4()), f"ci-{uuid.uuid4().hex[:12]}"
    kinds = [
        {"type": "session_start", "platform": "linux", "app_version": "1.0.0", "country": "SE"},
        {"type": "progression", "status": "complete", "level": "world-1:level-2", "score": 1200},
        {"type": "purchase", "item_id": "gem_pack_small", "item_type": "bundle",
         "amount_minor": 499, "currency": "EUR"},
        {"type": "custom", "name": "ci:compose", "value": 1.5, "properties": {"phase": "load"}},
        {"type": "session_end", "duration_seconds": 60},
    ]
    events = []
    for i in range(n):
        event = dict(kinds[i % len(kinds)])
        event.update(event_id=str(uuid.uuid4()), player_id=player, session_id=session, occurred_at=now())
        events.append(event)
    return {"sent_at": now(), "events": events}


class Load:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.started = 0  # batches begun
        self.accepted = 0  # batches that got a 202
        self.begun_after_wait = 0  # batches begun once the wait file existed
        self.wait_seen = args.wait_file is None
        self.signalled = args.signal_file is None
        self.ids = []
        self.counts = {"202": 0, "503": 0, "connection errors": 0}
        self.errors = []
        self.deadline = time.monotonic() + args.deadline

    def more(self):
        """Whether to begin another batch; also notices the wait file."""
        if not self.wait_seen and os.path.exists(self.args.wait_file):
            self.wait_seen = True
        if self.errors or time.monotonic() > self.deadline:
            return False
        if self.started < self.args.batches:
            return True
        # Past --batches: go on until the disruption is over and a few batches begun after
        # it went through (each batch begun is resent until it gets a 202, or the run fails).
        return not self.wait_seen or self.begun_after_wait < self.args.after_wait

    def post(self, body):
        """Sends the batch until it gets a 202. Returns False if it never does."""
        data = json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if self.args.key:
            headers["authorization"] = f"Bearer {self.args.key}"
        while time.monotonic() < self.deadline:
            request = urllib.request.Request(f"{self.args.url}/v1/events", data=data, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, retry_after = response.status, None
            except urllib.error.HTTPError as e:
                status, retry_after = e.code, e.headers.get("retry-after")
                detail = e.read()[:500].decode(errors="replace")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                with self.lock:
                    self.counts["connection errors"] += 1
                time.sleep(0.5)
                continue
            with self.lock:
                self.counts[str(status)] = self.counts.get(str(status), 0) + 1
            if status == 202:
                return True
            if status in (429, 503):
                time.sleep(min(float(retry_after or 1), 5))
                continue
            with self.lock:
                self.errors.append(f"status {status}: {detail}")
            return False
        with self.lock:
            self.errors.append("deadline reached while a batch was still being resent")
        return False

    def worker(self):
        pause = self.args.concurrency / self.args.rate if self.args.rate else 0
        while True:
            with self.lock:
                if not self.more():
                    return
                self.started += 1
                self.begun_after_wait += self.wait_seen
            body = make_batch(self.args.events_per_batch)
            began = time.monotonic()
            if not self.post(body):
                return
            with self.lock:
                self.accepted += 1
                self.ids.extend(e["event_id"] for e in body["events"])
                if not self.signalled and self.accepted >= self.args.signal_after:
                    open(self.args.signal_file, "w").close()
                    self.signalled = True
            time.sleep(max(0, pause - (time.monotonic() - began)))

    def run(self):
        threads = [threading.Thread(target=self.worker) for _ in range(self.args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with open(self.args.ids_out, "w") as f:
            f.writelines(i + "\n" for i in self.ids)
        responses = ", ".join(f"{k}: {v}" for k, v in self.counts.items())
        print(f"load: {self.accepted} of {self.started} batches accepted "
              f"({len(self.ids)} events); responses {responses}")
        if not self.errors and time.monotonic() > self.deadline:
            self.errors.append(f"deadline of {self.args.deadline:.0f}s reached")
        if not self.errors and not self.wait_seen:
            self.errors.append(f"{self.args.wait_file} never appeared")
        for e in self.errors[:10]:
            print(f"load: error: {e}", file=sys.stderr)
        return not self.errors


if __name__ == "__main__":
    sys.exit(0 if Load(parse_args()).run() else 1)
