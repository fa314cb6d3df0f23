// End-to-end test of the TypeScript client generated from openapi.yaml by @hey-api/openapi-ts
// (generate.sh), against a running `app` (API and worker). tsconfig.json type-checks it with
// the generated client under `strict`, and compiles it into build/.
//
// Using only the generated functions, with each key given to the generated client's own auth
// (the `bearerKey` scheme):
//   - sends one batch holding every event type with an ingest key, follows the batch with a
//     read key until it is `completed`, reads every event back and compares it field by field
//     with what was sent;
//   - sends an invalid batch and reads the 422's `errors` through the generated types;
//   - sends a batch with no key (401) and with the read key (403), and reads a batch with the
//     ingest key (403), each answered with the generated Problem.
//
//   APP_INGEST_KEY=... APP_READ_KEY=... node e2e/ts/build/test_client.js --base-url http://127.0.0.1:8080
//
// Exits 0 when every check passes, 1 with a message naming the failed check.
import { isDeepStrictEqual, parseArgs } from 'node:util';
import { type Auth, type Client, createClient, createConfig } from './generated/client/index.js';
import { getBatch, getEvent, ingestEvents } from './generated/index.js';
import type {
  ClientOptions,
  GetBatchResponses,
  GetEventResponses,
  IngestEventsData,
  IngestEventsErrors,
  IngestEventsResponses,
} from './generated/index.js';

// The generated types this test relies on, each named here once. They are reached through
// the operations (operationIds `ingest_events`, `get_batch`, `get_event`) rather than by
// their schema names, so that a renamed schema (`Event_CustomEvent`, say) changes nothing
// here, while a renamed operation, status or field stops the test compiling, on these lines
// or where the field is used.
type EventBatch = IngestEventsData['body'];
type Event = EventBatch['events'][number];
type EventType = Event['type'];
type EventOf<T extends EventType> = Extract<Event, { type: T }>;
type BatchAccepted = IngestEventsResponses[202];
type BatchStatus = GetBatchResponses[200];
type StoredEvent = GetEventResponses[200];
type Problem = IngestEventsErrors[422];
type InvalidField = NonNullable<Problem['errors']>[number];

// Compile-time checks that the 422's fields are typed, not `any` (which would compile
// whatever the test read from them).
type Exactly<T, U> = (<G>() => G extends T ? 1 : 2) extends <G>() => G extends U ? 1 : 2 ? true : false;
const fieldIsAString: Exactly<InvalidField['field'], string> = true;
const statusIsANumber: Exactly<Problem['status'], number> = true;
void [fieldIsAString, statusIsANumber];

class CheckFailed extends Error {}

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new CheckFailed(what);
}

const ok = (msg: string) => console.log(`ok   ${msg}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const { values: opts } = parseArgs({
  options: {
    'base-url': { type: 'string', default: process.env.APP_URL ?? 'http://127.0.0.1:8080' },
    deadline: { type: 'string', default: '30' },
    timeout: { type: 'string', default: '10' },
  },
});
const baseUrl = opts['base-url'].replace(/\/$/, '');
const deadlineMs = Number(opts.deadline) * 1000;
const timeoutMs = Number(opts.timeout) * 1000;

/// The API key in the environment variable `name` (set by .ci/e2e.sh from `app keys create`):
/// from the environment rather than an argument, to keep it out of process listings.
function keyFromEnv(name: string, what: string): string {
  const key = (process.env[name] ?? '').trim();
  if (!key) {
    console.error(`FAIL ts e2e: ${name} is not set: it must hold ${what} (\`app keys create\`; .ci/e2e.sh sets it)`);
    process.exit(2);
  }
  return key;
}

/// A client of its own per key, as an application would hold them. The key goes through the
/// client's `auth`, which the generated functions apply to each security scheme their
/// operation declares: only to `bearerKey`, since POST /v1/events also declares `queryKey`
/// (`?key=`, for browsers' sendBeacon), where a key would end up in URLs and logs.
function clientWith(key: string | undefined): Client {
  return createClient(
    createConfig<ClientOptions>({
      baseUrl,
      auth: (scheme: Auth) => (scheme.type === 'http' && scheme.scheme === 'bearer' ? key : undefined),
      // Every request gets its own time limit, so that a hung server fails the test.
      fetch: (input: RequestInfo | URL, init?: RequestInit) =>
        fetch(input, { ...init, signal: AbortSignal.timeout(timeoutMs) }),
    }),
  );
}

/// The key a request was sent with: its `Authorization` header, checked to be the only place
/// the key went.
function sentKey(request: Request, key: string): void {
  check(request.headers.get('authorization') === `Bearer ${key}`,
    `${request.method} ${new URL(request.url).pathname}: not sent with \`Authorization: Bearer\` and its key`);
  check(!new URL(request.url).searchParams.has('key'), `${request.method} ${request.url}: the key is in the URL`);
}

/// A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, as the README asks
/// clients to make event ids.
function uuid7(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let ms = BigInt(Date.now());
  for (let i = 5; i >= 0; i--) {
    bytes[i] = Number(ms & 0xffn);
    ms >>= 8n;
  }
  bytes[6] = (bytes[6]! & 0x0f) | 0x70; // version 7
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // variant 10
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/// `minutesAgo` before `now`, in RFC 3339 with the offset `offsetMinutes` (whole seconds).
function at(now: Date, minutesAgo: number, offsetMinutes = 0): string {
  const local = new Date(now.getTime() - minutesAgo * 60_000 + offsetMinutes * 60_000);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  const offset = offsetMinutes === 0 ? 'Z' : `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  return local.toISOString().replace(/\.\d{3}Z$/, offset);
}

/// One event of every type, every optional field set, in the recent past and in two time
/// zones (the server stores and returns them in UTC). The mapped type makes it one of each
/// type the API has: a type added to openapi.yaml stops this compiling until it is here.
function oneOfEach(now: Date): { [T in EventType]: EventOf<T> } {
  const player = `ts-e2e-${uuid7().slice(-8)}`;
  const session = uuid7();
  const common = (minutesAgo: number, offsetMinutes = 0) => ({
    event_id: uuid7(), player_id: player, session_id: session, occurred_at: at(now, minutesAgo, offsetMinutes),
  });
  return {
    session_start: {
      type: 'session_start', ...common(30), platform: 'ios', app_version: '1.4.2', device: 'iPhone15,3', country: 'SE',
    },
    progression: {
      type: 'progression', ...common(25, 60), status: 'complete', level: 'world-1:stage-3', score: 12500, attempt: 3,
    },
    purchase: {
      type: 'purchase', ...common(20, 60), item_id: 'gem_pack_small', item_type: 'bundle', amount_minor: 499,
      currency: 'EUR', transaction_id: 'GPA.3372-4150-9012-34567',
    },
    resource: {
      type: 'resource', ...common(15, -330), flow: 'sink', currency: 'gold', amount: 250.5, item_type: 'booster',
      item_id: 'speed_x2',
    },
    custom: {
      type: 'custom', ...common(10), name: 'tutorial:step:completed', value: 42.5,
      properties: { step: 3, skipped: false, tags: ['a', 'b'], nested: { k: 1.5 } },
    },
    error: {
      type: 'error', ...common(5), severity: 'warning', message: 'NullReferenceException in ShopController.Open',
    },
    session_end: { type: 'session_end', ...common(1), duration_seconds: 1860 },
  };
}

/// An event's fields by name, to compare a sent event with the one read back.
const fieldsOf = (event: Event): Record<string, unknown> => event;

async function waitCompleted(reader: Client, readKey: string, batchId: string): Promise<BatchStatus> {
  const end = Date.now() + deadlineMs;
  let last: BatchStatus | undefined;
  for (;;) {
    const { data, error, request, response } = await getBatch({ client: reader, path: { batch_id: batchId } });
    check(data, `GET /v1/batches/${batchId}: ${response.status} ${JSON.stringify(error)}`);
    sentKey(request, readKey);
    last = data;
    if (last.status === 'completed') return last;
    check(last.status !== 'failed', `batch ${batchId} failed: ${last.last_error}`);
    if (Date.now() >= end) break;
    await sleep(200);
  }
  throw new CheckFailed(`batch ${batchId} not completed within ${deadlineMs / 1000}s (last status: ${last?.status})`);
}

/// A response refused with `status`, its body parsed as the generated Problem.
function refused(
  result: { error?: Problem; response: Response },
  status: number,
  what: string,
): Problem {
  const { error, response } = result;
  check(response.status === status, `${what}: expected ${status}, got ${response.status}: ${JSON.stringify(error)}`);
  check(error && typeof error === 'object', `${what}: the ${status} body is not a Problem: ${JSON.stringify(error)}`);
  const problem: Problem = error;
  check(problem.status === status && problem.type.startsWith('/problems/') && problem.title && problem.detail,
    `${what}: the ${status} body is not a full Problem: ${JSON.stringify(problem)}`);
  check(response.headers.get('content-type')?.startsWith('application/problem+json'),
    `${what}: Content-Type ${response.headers.get('content-type')}`);
  return problem;
}

async function run(ingestKey: string, readKey: string): Promise<void> {
  const ingest = clientWith(ingestKey);
  const reader = clientWith(readKey);
  const anonymous = clientWith(undefined);
  const now = new Date();
  const events = oneOfEach(now);
  const batch: EventBatch = { sent_at: at(now, 0), events: Object.values(events) };

  // Send it.
  const sent = await ingestEvents({ client: ingest, body: batch });
  check(sent.data, `POST /v1/events: expected 202, got ${sent.response.status}: ${JSON.stringify(sent.error)}`);
  sentKey(sent.request, ingestKey);
  const accepted: BatchAccepted = sent.data;
  check(sent.response.status === 202, `POST /v1/events: status ${sent.response.status}`);
  check(accepted.accepted === batch.events.length, `accepted ${accepted.accepted}, sent ${batch.events.length}`);
  const location = sent.response.headers.get('location');
  check(location === `/v1/batches/${accepted.batch_id}`, `Location ${location} for batch ${accepted.batch_id}`);
  ok(`POST /v1/events with the ingest key (Authorization: Bearer, no ?key=): 202, batch ${accepted.batch_id}, ` +
    `${accepted.accepted} events of types ${Object.keys(events).join(', ')}`);

  // Follow it until a worker has stored it.
  const t0 = Date.now();
  const status = await waitCompleted(reader, readKey, accepted.batch_id);
  check(status.batch_id === accepted.batch_id, `the batch status names batch ${status.batch_id}`);
  check(status.accepted === 7 && status.inserted === 7 && status.duplicates === 0,
    `completed batch: accepted ${status.accepted}, inserted ${status.inserted}, duplicates ${status.duplicates}`);
  check(status.attempts >= 1, `completed batch with attempts ${status.attempts}`);
  check(status.completed_at && Date.parse(status.completed_at) >= Date.parse(status.received_at),
    `completed_at ${status.completed_at} vs received_at ${status.received_at}`);
  ok(`GET /v1/batches/{batch_id} with the read key: completed after ${((Date.now() - t0) / 1000).toFixed(1)}s, ` +
    `inserted ${status.inserted}, attempts ${status.attempts}`);

  // Read every event back, as the generated union type, and compare it with what was sent.
  for (const want of batch.events) {
    const read = await getEvent({ client: reader, path: { event_id: want.event_id } });
    check(read.data, `GET /v1/events/${want.event_id} (${want.type}): ${read.response.status} ${JSON.stringify(read.error)}`);
    sentKey(read.request, readKey);
    const stored: StoredEvent = read.data;
    const have = stored.event;
    check(have.type === want.type, `${want.type}: read back as ${have.type}`);
    check(/(Z|\+00:00)$/.test(have.occurred_at), `${want.type}: occurred_at ${have.occurred_at} is not in UTC`);
    const [sentFields, storedFields] = [fieldsOf(want), fieldsOf(have)];
    const names = [...new Set([...Object.keys(sentFields), ...Object.keys(storedFields)])].sort();
    for (const name of names) {
      const [a, b] = [sentFields[name], storedFields[name]];
      const same = name === 'occurred_at'
        ? typeof a === 'string' && typeof b === 'string' && Date.parse(a) === Date.parse(b)
        : isDeepStrictEqual(a, b);
      check(same, `${want.type}.${name}: sent ${JSON.stringify(a)}, read back ${JSON.stringify(b)}`);
    }
    check(stored.batch_id === accepted.batch_id, `${want.type}: in batch ${stored.batch_id}, sent in ${accepted.batch_id}`);
    check(Date.parse(stored.received_at) <= Date.parse(stored.processed_at), `${want.type}: received_at after processed_at`);
    // sent_at was "now", so the clock-skew correction shifts by a few seconds at most.
    const skew = Math.abs(Date.parse(stored.corrected_occurred_at) - Date.parse(want.occurred_at)) / 1000;
    check(skew < 60, `${want.type}: corrected_occurred_at ${stored.corrected_occurred_at} is ${skew.toFixed(0)}s off`);
    ok(`GET /v1/events/{event_id}: ${want.type.padEnd(13)} ${names.length} fields match`);
  }

  // An invalid batch: a 422 whose errors are read through the generated types.
  const bad: EventOf<'purchase'> = {
    type: 'purchase', event_id: uuid7(), player_id: 'bad player', session_id: uuid7(), occurred_at: at(now, 0),
    item_id: 'x', item_type: 'x', amount_minor: 0, currency: 'eur',
  };
  const problem = refused(await ingestEvents({ client: ingest, body: { events: [bad] } }), 422, 'an invalid batch');
  const invalid: InvalidField[] = problem.errors ?? [];
  const fields = invalid.map((e) => e.field).sort();
  const expected = ['/events/0/amount_minor', '/events/0/currency', '/events/0/player_id'];
  check(isDeepStrictEqual(fields, expected), `the 422's errors name ${JSON.stringify(fields)}, expected ${JSON.stringify(expected)}`);
  for (const e of invalid) {
    check(e.index === 0 && e.reason.length > 0, `422 error ${JSON.stringify(e)}: index 0 and a reason expected`);
  }
  ok(`an invalid batch: 422 Problem "${problem.title}", errors naming ${fields.join(', ')}`);

  // Keys: none, or one of the wrong scope.
  const noKey = refused(await ingestEvents({ client: anonymous, body: batch }), 401, 'POST /v1/events with no key');
  ok(`POST /v1/events with no key: 401 Problem (${noKey.type})`);
  const readKeySends = await ingestEvents({ client: reader, body: batch });
  sentKey(readKeySends.request, readKey);
  refused(readKeySends, 403, 'POST /v1/events with the read key');
  ok('POST /v1/events with the read key: 403 Problem');
  const ingestKeyReads = await getBatch({ client: ingest, path: { batch_id: accepted.batch_id } });
  refused(ingestKeyReads, 403, 'GET /v1/batches/{batch_id} with the ingest key');
  ok('GET /v1/batches/{batch_id} with the ingest key: 403 Problem');
}

const ingestKey = keyFromEnv('APP_INGEST_KEY', 'an ingest key');
const readKey = keyFromEnv('APP_READ_KEY', 'a read key of the same game');
const redact = (s: string) => s.replaceAll(ingestKey, '[ingest key]').replaceAll(readKey, '[read key]');
try {
  await run(ingestKey, readKey);
  console.log('PASS ts e2e: the TypeScript client generated from openapi.yaml sends (ingest key), follows and reads ' +
    'back (read key) every event type, and reads a 422\'s errors, and 401 and 403 problems, through its types');
} catch (e) {
  const msg = e instanceof CheckFailed ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
  console.error(`FAIL ts e2e: ${redact(msg)}`);
  process.exitCode = 1;
}
