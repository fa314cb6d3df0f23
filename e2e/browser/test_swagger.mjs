// End-to-end test of the Swagger UI at /docs, in headless Chromium (Debian's chromium package,
// driven by playwright-core; no browser download).
//
// Checks that the page renders every operation of the API, then does what a developer does
// first: opens POST /v1/events, clicks "Try it out", leaves the request example as it is
// (an EventBatch with one event of each type) and clicks Execute; the answer must be 202.
//
//   node e2e/swagger/test_swagger.mjs --base-url http://127.0.0.1:8080 [--screenshots DIR]
//
// Exits 0 when every check passes, 1 with a message naming the failed check. Screenshots of
// the page (always, also on failure) go to --screenshots (default: a temporary directory).
//
// For development only: --spec-override FILE.json replaces the OpenAPI document embedded in
// the page, to try a spec change before the binary serves it.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    'base-url': { type: 'string', default: process.env.APP_URL ?? 'http://127.0.0.1:8080' },
    screenshots: { type: 'string' },
    'spec-override': { type: 'string' },
    timeout: { type: 'string', default: '20000' },
  },
});
const baseUrl = opts['base-url'].replace(/\/$/, '');
const timeout = Number(opts.timeout);
const shots = opts.screenshots ?? mkdtempSync(join(tmpdir(), 'app-e2e-swagger-shots-'));
mkdirSync(shots, { recursive: true });
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

// Every operation of openapi.yaml, as Swagger UI lays it out: #operations-{tag}-{operationId}.
const OPERATIONS = [
  ['Events', 'ingest_events', 'POST', '/v1/events'],
  ['Events', 'get_event', 'GET', '/v1/events/{event_id}'],
  ['Batches', 'get_batch', 'GET', '/v1/batches/{batch_id}'],
  ['Health', 'healthz', 'GET', '/healthz'],
  ['Health', 'readyz', 'GET', '/readyz'],
];
const EVENT_TYPES = ['custom', 'error', 'progression', 'purchase', 'resource', 'session_end', 'session_start'];

class CheckFailed extends Error {}
const check = (cond, what) => {
  if (!cond) throw new CheckFailed(what);
};
const ok = (msg) => console.log(`ok   ${msg}`);

// The machine's network is closed: without these flags Chromium waits on connections
// (updates, sync, QUIC) it cannot make. A fresh profile each run keeps runs independent.
const profile = mkdtempSync(join(tmpdir(), 'app-e2e-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: chromiumPath,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1280, height: 1600 },
  timeout,
});
context.setDefaultTimeout(timeout);

let page;
let failed = false;
try {
  page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  if (opts['spec-override']) {
    const spec = readFileSync(opts['spec-override'], 'utf8');
    JSON.parse(spec); // fail early on a bad file
    console.log(`NOTE using the OpenAPI document from ${opts['spec-override']} instead of the served one (development only)`);
    await page.route(`${baseUrl}/docs`, async (route) => {
      const res = await route.fetch();
      const html = await res.text();
      const patched = html.replace(/let spec = [\s\S]*?\n\};\n/, () => `let spec = ${spec};\n`);
      check(patched !== html, '--spec-override: could not find the embedded spec in /docs');
      await route.fulfill({ response: res, body: patched });
    });
  }

  // 1. The page renders, with every operation.
  const res = await page.goto(`${baseUrl}/docs`);
  check(res && res.status() === 200, `GET /docs: status ${res && res.status()}`);
  await page.locator('.swagger-ui .info .title').waitFor();
  const title = (await page.locator('.swagger-ui .info .title').innerText()).split('\n')[0].trim();
  check(title.startsWith('Game events API'), `page title is ${JSON.stringify(title)}`);
  for (const [tag, id, method, path] of OPERATIONS) {
    const op = page.locator(`#operations-${tag}-${id}`);
    await op.waitFor().catch(() => {
      throw new CheckFailed(`operation ${method} ${path} (#operations-${tag}-${id}) is not rendered`);
    });
    const shownMethod = (await op.locator('.opblock-summary-method').innerText()).trim();
    const shownPath = await op.locator('.opblock-summary-path').getAttribute('data-path');
    check(shownMethod === method && shownPath === path, `${id} shows ${shownMethod} ${shownPath}, expected ${method} ${path}`);
  }
  const count = await page.locator('.opblock').count();
  check(count === OPERATIONS.length, `${count} operations rendered, expected ${OPERATIONS.length}`);
  check(pageErrors.length === 0, `JavaScript errors on the page: ${pageErrors.join('; ')}`);
  await page.screenshot({ path: join(shots, '1-operations.png'), fullPage: true });
  ok(`/docs renders "${title}" with all ${count} operations`);

  // 2. POST /v1/events: Try it out with the request example, Execute, 202.
  const op = page.locator('#operations-Events-ingest_events');
  await op.locator('.opblock-summary').first().click();
  await op.locator('button.try-out__btn').click();
  const body = op.locator('textarea.body-param__text');
  await body.waitFor();
  const example = await body.inputValue();
  let batch;
  try {
    batch = JSON.parse(example);
  } catch (e) {
    throw new CheckFailed(`the request example is not JSON: ${e.message}`);
  }
  const types = (batch.events ?? []).map((e) => e.type).sort();
  await op.screenshot({ path: join(shots, '2-try-it-out.png') });
  check(
    JSON.stringify(types) === JSON.stringify(EVENT_TYPES),
    `the request example should be an EventBatch with one event of each type; its events' types are ${JSON.stringify(types)}` +
      ' (the example is built from the schema when openapi.yaml has none: see the example on EventBatch)',
  );
  ok(`Try it out: the request example holds one event of each type (${types.join(', ')})`);

  await op.locator('button.execute').click();
  const status = op.locator('.responses-wrapper .live-responses-table .response .response-col_status').first();
  await status.waitFor();
  const code = (await status.innerText()).trim();
  const responseBody = (await op.locator('.live-responses-table .response-col_description pre').first().innerText().catch(() => '')).trim();
  await op.locator('.live-responses-table').scrollIntoViewIfNeeded();
  await op.screenshot({ path: join(shots, '3-executed.png') });
  check(
    code.startsWith('202'),
    `Execute on POST /v1/events answered ${code}: ${responseBody.slice(0, 2000)}\n` +
      '     (the request example must be a valid batch: an example on EventBatch in openapi.yaml, with distinct event ids' +
      ' and past timestamps; without one Swagger UI builds it from the schema, repeating one event_id)',
  );
  const accepted = JSON.parse(responseBody);
  check(accepted.accepted === EVENT_TYPES.length && typeof accepted.batch_id === 'string',
    `202 body: ${responseBody}`);
  const headers = await op.locator('.live-responses-table .response-col_description .microlight').last().innerText().catch(() => '');
  check(headers.includes(`location: /v1/batches/${accepted.batch_id}`), `202 response headers lack the batch's Location: ${headers}`);
  ok(`Execute: 202, batch ${accepted.batch_id}, ${accepted.accepted} events accepted, Location /v1/batches/${accepted.batch_id}`);
  check(pageErrors.length === 0, `JavaScript errors on the page: ${pageErrors.join('; ')}`);
  console.log(`PASS swagger e2e: /docs renders every operation and "Try it out" on POST /v1/events gets a 202 (screenshots in ${shots})`);
} catch (e) {
  failed = true;
  if (page) await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  const msg = e instanceof CheckFailed ? e.message : e.stack ?? String(e);
  console.error(`FAIL swagger e2e: ${msg}\n     screenshots in ${shots}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
