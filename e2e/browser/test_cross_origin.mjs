// End-to-end test of what a browser game does: send events to the API from a page on
// another origin, in headless Chromium.
//
// Serves game_page.html from a second origin (its own port on 127.0.0.1), and from that page:
//   1. fetch POST /v1/events with JSON and `Authorization: Bearer INGEST_KEY`: the browser
//      sends a CORS preflight (OPTIONS, seen through the DevTools protocol and, with
//      --app-log, in the server's access log), then the POST; the page reads the 202's body
//      and its Location and X-Request-Id headers (Access-Control-Allow-Origin and
//      Access-Control-Expose-Headers at work);
//   2. navigator.sendBeacon to /v1/events?key=INGEST_KEY with the batch as a string (sent as
//      text/plain, no preflight): queued, answered 202, and the key is not in the access log;
//   3. fetch without a key: 401, and the page can read the problem (CORS headers on errors);
//   4. fetch of a read (GET /v1/batches/{id}): blocked by the browser, as designed (only
//      POST /v1/events is cross-origin; read keys are secret and belong on a backend).
// Then, from node, reads every event of both batches with the read key until all are stored.
//
//   APP_INGEST_KEY=... APP_READ_KEY=... node e2e/browser/test_cross_origin.mjs \
//     --base-url http://127.0.0.1:8080 [--app-log app.log] [--screenshots DIR]
//
// Exits 0 when every check passes, 1 with a message naming the failed check.
import http from 'node:http';
import { existsSync, mkdtempSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CheckFailed, check, keyFromEnv, launchChromium, ok, uuid7 } from './chromium.mjs';

const { values: opts } = parseArgs({
  options: {
    'base-url': { type: 'string', default: process.env.APP_URL ?? 'http://127.0.0.1:8080' },
    'app-log': { type: 'string' },
    screenshots: { type: 'string' },
    timeout: { type: 'string', default: '20000' },
    deadline: { type: 'string', default: '30' },
  },
});
const api = new URL(opts['base-url']).origin;
const timeout = Number(opts.timeout);
const deadlineMs = Number(opts.deadline) * 1000;
const shots = opts.screenshots ?? mkdtempSync(join(tmpdir(), 'app-e2e-cross-origin-shots-'));
mkdirSync(shots, { recursive: true });
const appLog = opts['app-log'];
if (appLog && !existsSync(appLog)) {
  console.error(`FAIL: --app-log ${appLog} does not exist`);
  process.exit(2);
}
const ingestKey = keyFromEnv('APP_INGEST_KEY', 'an ingest key');
const readKey = keyFromEnv('APP_READ_KEY', 'a read key of the same game');
const redact = (s) => String(s).replaceAll(ingestKey, '[ingest key]').replaceAll(readKey, '[read key]');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/// Polls `probe` until it returns a truthy value, or fails naming `what` at the deadline.
async function until(what, probe, ms = 5000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() >= end) throw new CheckFailed(`${what} (waited ${ms / 1000}s)`);
    await sleep(100);
  }
}

// A batch of `types` (custom events named after how they are sent, a session around them),
// all of one session, in the recent past.
const player = `browser-e2e-${uuid7().slice(-8)}`;
const session = uuid7();
function batchOf(how, types) {
  const now = Date.now();
  const events = types.map((type, i) => {
    const event = {
      type,
      event_id: uuid7(),
      player_id: player,
      session_id: session,
      occurred_at: new Date(now - 5000 + i * 100).toISOString(),
    };
    if (type === 'session_start') Object.assign(event, { platform: 'web', app_version: '1.0.0' });
    if (type === 'custom') Object.assign(event, { name: `browser:${how}`, value: i, properties: { how } });
    if (type === 'session_end') Object.assign(event, { duration_seconds: 5 });
    return event;
  });
  return { sent_at: new Date(now).toISOString(), events };
}

// The access log's lines (text format): method=... route="..." uri=...}: ... status=NNN.
const accessLines = (method, route, status) => {
  if (!appLog) return [];
  return readFileSync(appLog, 'utf8').split('\n').filter((line) =>
    line.includes(`method=${method} route="${route}"`) && line.includes(` status=${status} `));
};

// The page's origin: a tiny server of its own, on another port than the API's.
const pageHtml = readFileSync(new URL('./game_page.html', import.meta.url));
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(pageHtml);
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }
});
await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
const pageOrigin = `http://127.0.0.1:${server.address().port}`;

const { context, close } = await launchChromium({ timeout, viewport: { width: 1100, height: 700 } });
let page;
let failed = false;
try {
  check(pageOrigin !== api, `the page's origin ${pageOrigin} is the API's: the test would not be cross-origin`);
  page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  const consoleErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  const browserSaid = () => (consoleErrors.length ? `\n     the browser's console: ${redact(consoleErrors.join(' | '))}` : '');

  // Every request the page makes, preflights included (Playwright's own events do not show
  // preflights; the DevTools protocol does).
  const requests = new Map();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  cdp.on('Network.requestWillBeSent', (e) => {
    requests.set(e.requestId, {
      method: e.request.method, url: e.request.url, headers: e.request.headers,
      preflight: e.initiator?.type === 'preflight', type: e.type,
    });
  });
  cdp.on('Network.responseReceived', (e) => {
    const r = requests.get(e.requestId);
    if (r) Object.assign(r, { status: e.response.status, responseHeaders: lowerKeys(e.response.headers), responseType: e.type });
  });
  cdp.on('Network.loadingFailed', (e) => {
    const r = requests.get(e.requestId);
    if (r) Object.assign(r, { failed: e.errorText, corsError: e.corsErrorStatus?.corsError });
  });
  const seen = (pred) => [...requests.values()].filter(pred);
  const describe = (list) => redact(JSON.stringify(list.map(({ method, url, status, failed, corsError }) =>
    ({ method, url, status, failed, corsError }))));

  // 0. The page, from its own origin.
  const res = await page.goto(`${pageOrigin}/`);
  check(res && res.status() === 200, `GET ${pageOrigin}/: status ${res && res.status()}`);
  check(await page.evaluate(() => typeof window.game === 'object'), 'game_page.html did not set up window.game');
  ok(`the game page is served from ${pageOrigin}; the API is at ${api}, another origin`);
  const preflightsLoggedBefore = accessLines('OPTIONS', '/v1/events', 204).length;

  // 1. fetch with the ingest key: a preflight, then the POST; the page reads the answer.
  const fetched = batchOf('fetch', ['session_start', 'custom', 'custom']);
  const requestId = `browser-e2e-${uuid7()}`;
  const sent = await page.evaluate(([a, k, b, id]) => window.game.sendWithFetch(a, k, b, id), [api, ingestKey, fetched, requestId]);
  check(!sent.error,
    `fetch POST ${api}/v1/events from ${pageOrigin} was blocked: ${sent.error}${browserSaid()}\n` +
      `     requests: ${describe(seen((r) => r.url.startsWith(api)))}`);
  check(sent.status === 202, `fetch POST /v1/events with the ingest key: ${sent.status} ${sent.body}`);
  const accepted = JSON.parse(sent.body);
  check(accepted.accepted === fetched.events.length && /^[0-9a-f-]{36}$/.test(accepted.batch_id ?? ''),
    `fetch POST /v1/events: 202 body ${sent.body}`);
  check(sent.location === `/v1/batches/${accepted.batch_id}`,
    `the page reads Location ${JSON.stringify(sent.location)}, expected /v1/batches/${accepted.batch_id} ` +
      '(null: not in Access-Control-Expose-Headers)');
  check(sent.requestId === requestId,
    `the page reads X-Request-Id ${JSON.stringify(sent.requestId)}, expected the one it sent, ${requestId} ` +
      '(null: not in Access-Control-Expose-Headers)');
  ok(`fetch from the page: 202, batch ${accepted.batch_id}; the page reads the body, Location and X-Request-Id`);

  const preflight = await until(
    `no CORS preflight (OPTIONS ${api}/v1/events) before the fetch; requests: ${describe([...requests.values()])}`,
    () => seen((r) => r.preflight && r.method === 'OPTIONS' && r.url === `${api}/v1/events` && r.status)[0]);
  const ph = preflight.responseHeaders;
  const listed = (value) => (value ?? '').split(',').map((s) => s.trim().toLowerCase());
  check(preflight.status === 204, `the preflight was answered ${preflight.status}, expected 204`);
  check(ph['access-control-allow-origin'] === '*', `preflight Access-Control-Allow-Origin: ${ph['access-control-allow-origin']}`);
  check(listed(ph['access-control-allow-methods']).includes('post'),
    `preflight Access-Control-Allow-Methods: ${ph['access-control-allow-methods']}`);
  for (const h of ['authorization', 'content-type', 'content-encoding', 'x-request-id']) {
    check(listed(ph['access-control-allow-headers']).includes(h),
      `preflight Access-Control-Allow-Headers lacks ${h}: ${ph['access-control-allow-headers']}`);
  }
  check(Number(ph['access-control-max-age']) > 0, `preflight Access-Control-Max-Age: ${ph['access-control-max-age']}`);
  check(!('access-control-allow-credentials' in ph), 'the preflight allows credentials; it must not');
  const post = seen((r) => !r.preflight && r.method === 'POST' && r.url === `${api}/v1/events`)[0];
  check(post && post.status === 202, `the POST after the preflight: ${describe(post ? [post] : [])}`);
  const expose = listed(post.responseHeaders['access-control-expose-headers']);
  check(post.responseHeaders['access-control-allow-origin'] === '*' &&
    ['location', 'x-request-id', 'retry-after'].every((h) => expose.includes(h)) &&
    !('access-control-allow-credentials' in post.responseHeaders),
    `the 202's CORS headers: ${JSON.stringify(post.responseHeaders)}`);
  ok(`the browser sent a preflight first: OPTIONS /v1/events 204, allow-origin *, allow-headers ` +
    `${ph['access-control-allow-headers']}, max-age ${ph['access-control-max-age']}`);
  if (appLog) {
    await until(`no \`OPTIONS /v1/events\` 204 line in the access log (${appLog}) for the preflight`,
      () => accessLines('OPTIONS', '/v1/events', 204).length > preflightsLoggedBefore);
    ok('the server logged the preflight: OPTIONS /v1/events status=204');
  }

  // 2. sendBeacon: a text/plain POST with the key in the URL, no preflight.
  const beaconed = batchOf('beacon', ['custom', 'custom', 'session_end']);
  const beaconsLoggedBefore = accessLines('POST', '/v1/events', 202).filter((l) => l.includes('?key=')).length;
  const queued = await page.evaluate(([a, k, b]) => window.game.sendWithBeacon(a, k, b), [api, ingestKey, beaconed]);
  check(queued === true, `navigator.sendBeacon returned ${queued}: the browser did not queue the beacon${browserSaid()}`);
  const isBeacon = (r) => r.url.startsWith(`${api}/v1/events?key=`);
  const beacon = await until(`the beacon got no response; requests: ${describe(seen(isBeacon))}`,
    () => seen((r) => isBeacon(r) && !r.preflight && (r.status || r.failed))[0]);
  check(beacon.status === 202, `the beacon POST /v1/events?key=… was answered ${beacon.status ?? beacon.failed}, expected 202`);
  const beaconType = beacon.headers['Content-Type'] ?? beacon.headers['content-type'] ?? '';
  check(/^text\/plain/i.test(beaconType), `the beacon was sent as ${JSON.stringify(beaconType)}, not text/plain`);
  check(seen((r) => isBeacon(r) && r.method === 'OPTIONS').length === 0, 'the beacon had a preflight; a text/plain beacon needs none');
  ok(`sendBeacon from the page: queued, sent as ${beaconType} without a preflight, answered 202`);
  if (appLog) {
    await until('no `POST /v1/events?key=[redacted]` 202 line in the access log for the beacon',
      () => accessLines('POST', '/v1/events', 202).filter((l) => l.includes('uri=/v1/events?key=[redacted]')).length >
        beaconsLoggedBefore);
    check(!readFileSync(appLog, 'utf8').includes(ingestKey), `the ingest key sent in the beacon's URL is in the log ${appLog}`);
    ok('the server logged the beacon as /v1/events?key=[redacted]; the key is nowhere in its log');
  }

  // 3. No key: 401, and the page can read why.
  const unkeyed = batchOf('no-key', ['custom']);
  const refused = await page.evaluate(([a, b]) => window.game.sendWithFetch(a, '', b, 'browser-e2e-no-key'), [api, unkeyed]);
  check(!refused.error, `fetch POST /v1/events without a key was blocked, so the page cannot read the 401: ` +
    `${refused.error}${browserSaid()}`);
  check(refused.status === 401, `fetch POST /v1/events without a key: ${refused.status} ${refused.body}`);
  let problem;
  try {
    problem = JSON.parse(refused.body);
  } catch {
    throw new CheckFailed(`the 401 body the page reads is not JSON: ${refused.body}`);
  }
  check(problem.status === 401 && problem.type === '/problems/unauthorized' && typeof problem.detail === 'string',
    `the 401 problem the page reads: ${refused.body}`);
  check(/^application\/problem\+json/.test(refused.contentType ?? ''), `the 401's Content-Type: ${refused.contentType}`);
  check(refused.requestId === 'browser-e2e-no-key', `the page reads the 401's X-Request-Id as ${refused.requestId}`);
  ok(`fetch without a key: 401, and the page reads the problem: "${problem.detail}"`);

  // 4. The reads are not cross-origin.
  consoleErrors.length = 0;
  const read = await page.evaluate(([a, k, p]) => window.game.read(a, k, p), [api, ingestKey, `/v1/batches/${accepted.batch_id}`]);
  check(read.error, `fetch GET /v1/batches/{id} from the page was not blocked (${read.status} ${read.body}): ` +
    'only POST /v1/events is meant to be cross-origin');
  ok('fetch GET /v1/batches/{id} from the page: blocked by CORS, as designed (reads are not cross-origin)');
  check(pageErrors.length === 0, `JavaScript errors on the page: ${pageErrors.join('; ')}`);
  await page.screenshot({ path: join(shots, 'cross-origin-page.png'), fullPage: true });

  // 5. Both batches are stored: every event, read back from node with the read key.
  const expected = [
    ...fetched.events.map((e) => [e, accepted.batch_id]),
    ...beaconed.events.map((e) => [e, null]),
  ];
  const stored = new Map();
  const t0 = Date.now();
  await until(`not every event of both batches was stored within ${deadlineMs / 1000}s`, async () => {
    for (const [event] of expected) {
      if (stored.has(event.event_id)) continue;
      const r = await fetch(`${api}/v1/events/${event.event_id}`, {
        headers: { Authorization: `Bearer ${readKey}` }, signal: AbortSignal.timeout(timeout),
      });
      const body = await r.text();
      if (r.status === 200) stored.set(event.event_id, JSON.parse(body));
      else check(r.status === 404, `GET /v1/events/${event.event_id} with the read key: ${r.status} ${body}`);
    }
    return stored.size === expected.length;
  }, deadlineMs).catch((error) => {
    if (!(error instanceof CheckFailed)) throw error;
    const missing = expected.filter(([event]) => !stored.has(event.event_id))
      .map(([event, batchId]) => `${event.event_id} (${event.type}, sent with ${batchId ? 'fetch' : 'sendBeacon'})`);
    throw new CheckFailed(`${error.message}; still 404: ${missing.join(', ')}`);
  });
  let beaconBatch = null;
  for (const [event, batchId] of expected) {
    const s = stored.get(event.event_id);
    check(s.event.type === event.type && s.event.player_id === player && s.event.session_id === session &&
      (event.type !== 'custom' || s.event.name === event.name),
      `GET /v1/events/${event.event_id}: stored ${JSON.stringify(s.event)}, sent ${JSON.stringify(event)}`);
    if (batchId) {
      check(s.batch_id === batchId, `event ${event.event_id} sent with fetch is stored in batch ${s.batch_id}, not ${batchId}`);
    } else {
      beaconBatch ??= s.batch_id;
      check(s.batch_id === beaconBatch && s.batch_id !== accepted.batch_id,
        `the beacon's events are stored in batches ${beaconBatch} and ${s.batch_id} (the fetch's: ${accepted.batch_id})`);
    }
  }
  const r = await fetch(`${api}/v1/events/${unkeyed.events[0].event_id}`, { headers: { Authorization: `Bearer ${readKey}` } });
  check(r.status === 404, `the event of the batch refused with 401 is stored (GET: ${r.status})`);
  ok(`both batches are stored: ${fetched.events.length} events from fetch (batch ${accepted.batch_id}) and ` +
    `${beaconed.events.length} from sendBeacon (batch ${beaconBatch}), read back with the read key after ` +
    `${((Date.now() - t0) / 1000).toFixed(1)}s; the 401 batch is not`);
  console.log(`PASS cross-origin e2e: a page on ${pageOrigin} sends batches to ${api} with fetch (through a preflight) ` +
    `and with sendBeacon, and both are stored (screenshot in ${shots})`);
} catch (e) {
  failed = true;
  if (page) await page.screenshot({ path: join(shots, 'cross-origin-failure.png'), fullPage: true }).catch(() => {});
  const msg = e instanceof CheckFailed ? e.message : e.stack ?? String(e);
  console.error(`FAIL cross-origin e2e: ${redact(msg)}\n     screenshots in ${shots}`);
} finally {
  await close();
  server.close();
}
process.exit(failed ? 1 : 0);

function lowerKeys(headers) {
  return Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
}
