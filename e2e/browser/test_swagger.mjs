// End-to-end test of the Swagger UI at /docs, in headless Chromium.
//
// Checks that the page renders every operation of the API, with a lock on the three that
// need a key and an Authorize button, then does what a developer does first:
//   - Authorize with the ingest key (bearerKey), close the dialog, open POST /v1/events,
//     "Try it out", leave the request example as it is (an EventBatch with one event of each
//     type) and Execute: 202, sent with the key;
//   - log out, Authorize with the read key, "Try it out" on GET /v1/batches/{batch_id} for
//     the batch just accepted, Execute: 200 with that batch.
//
//   APP_INGEST_KEY=... APP_READ_KEY=... \
//     node e2e/browser/test_swagger.mjs --base-url http://127.0.0.1:8080 [--screenshots DIR]
//
// Exits 0 when every check passes, 1 with a message naming the failed check. Screenshots of
// the page (always, also on failure) go to --screenshots (default: a temporary directory).
//
// For development only: --spec-override FILE.json replaces the OpenAPI document embedded in
// the page, to try a spec change before the binary serves it.
import { mkdtempSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CheckFailed, check, keyFromEnv, launchChromium, ok } from './chromium.mjs';

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
const ingestKey = keyFromEnv('APP_INGEST_KEY', 'an ingest key');
const readKey = keyFromEnv('APP_READ_KEY', 'a read key of the same game');

// Every operation of openapi.yaml, as Swagger UI lays it out: #operations-{tag}-{operationId},
// and whether it needs a key (a lock icon).
const OPERATIONS = [
  ['Events', 'ingest_events', 'POST', '/v1/events', true],
  ['Events', 'get_event', 'GET', '/v1/events/{event_id}', true],
  ['Batches', 'get_batch', 'GET', '/v1/batches/{batch_id}', true],
  ['Health', 'healthz', 'GET', '/healthz', false],
  ['Health', 'readyz', 'GET', '/readyz', false],
];
const EVENT_TYPES = ['custom', 'error', 'progression', 'purchase', 'resource', 'session_end', 'session_start'];

const { context, close } = await launchChromium({ timeout });

let page;
let failed = false;
try {
  page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const noPageErrors = () => check(pageErrors.length === 0, `JavaScript errors on the page: ${pageErrors.join('; ')}`);

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

  // 1. The page renders, with every operation, a lock on those that need a key, and the
  //    Authorize button.
  const res = await page.goto(`${baseUrl}/docs`);
  check(res && res.status() === 200, `GET /docs: status ${res && res.status()}`);
  await page.locator('.swagger-ui .info .title').waitFor();
  const title = (await page.locator('.swagger-ui .info .title').innerText()).split('\n')[0].trim();
  check(title.startsWith('Game events API'), `page title is ${JSON.stringify(title)}`);
  for (const [tag, id, method, path, secured] of OPERATIONS) {
    const op = page.locator(`#operations-${tag}-${id}`);
    await op.waitFor().catch(() => {
      throw new CheckFailed(`operation ${method} ${path} (#operations-${tag}-${id}) is not rendered`);
    });
    const shownMethod = (await op.locator('.opblock-summary-method').innerText()).trim();
    const shownPath = await op.locator('.opblock-summary-path').getAttribute('data-path');
    check(shownMethod === method && shownPath === path, `${id} shows ${shownMethod} ${shownPath}, expected ${method} ${path}`);
    const locks = await op.locator('.opblock-summary .authorization__btn').count();
    check(locks === (secured ? 1 : 0),
      `${method} ${path} shows ${locks} lock icon(s), expected ${secured ? 1 : 0}` +
        (secured ? ' (openapi.yaml must declare `security` on it)' : ' (it needs no key)'));
  }
  const count = await page.locator('.opblock').count();
  check(count === OPERATIONS.length, `${count} operations rendered, expected ${OPERATIONS.length}`);
  const authorizeButton = page.locator('.auth-wrapper button.authorize');
  check(await authorizeButton.isVisible(),
    'no Authorize button on the page (openapi.yaml must declare components.securitySchemes)');
  noPageErrors();
  await page.screenshot({ path: join(shots, '1-operations.png'), fullPage: true });
  ok(`/docs renders "${title}" with all ${count} operations, locks on the 3 that need a key, and Authorize`);

  // The Authorize dialog: `key` becomes the value of the bearerKey scheme (after logging out
  // of it if it holds one), then the dialog is closed.
  const authorize = async (key, what, shot) => {
    await authorizeButton.click();
    const dialog = page.locator('.dialog-ux .modal-ux');
    await dialog.waitFor();
    const bearer = dialog.locator('.auth-container').filter({ has: page.locator('h4 code', { hasText: /^bearerKey$/ }) });
    check(await bearer.count() === 1, 'the Authorize dialog has no bearerKey scheme');
    const queryScheme = await dialog.locator('.auth-container h4 code', { hasText: /^queryKey$/ }).count();
    check(queryScheme === 1, 'the Authorize dialog lacks the queryKey scheme (?key= for sendBeacon)');
    const logout = bearer.getByRole('button', { name: /^Logout$|Remove authorization/ });
    if (await logout.count()) await logout.click();
    const input = bearer.locator('input#auth-bearer-value, input[aria-label="auth-bearer-value"]');
    await input.fill(key);
    await bearer.getByRole('button', { name: /^Authorize$|Apply credentials/ }).click();
    await logout.waitFor().catch(() => {
      throw new CheckFailed(`after Authorize with the ${what}, the bearerKey scheme shows no Logout (not authorized)`);
    });
    const shown = await bearer.innerText();
    check(shown.includes('Authorized'), `after Authorize with the ${what}, bearerKey shows: ${shown}`);
    check(!shown.includes(key), `the Authorize dialog shows the ${what} in clear after authorizing`);
    await page.screenshot({ path: join(shots, shot) });
    await bearer.getByRole('button', { name: 'Close' }).click();
    await dialog.waitFor({ state: 'detached' });
    check(await authorizeButton.evaluate((b) => b.classList.contains('locked')),
      `after Authorize with the ${what}, the Authorize button does not show as locked`);
  };

  // The last live response of an operation: status code, body, headers, and the curl command.
  const execute = async (op) => {
    await op.locator('button.execute').click();
    const status = op.locator('.responses-wrapper .live-responses-table .response .response-col_status').first();
    await status.waitFor();
    const code = (await status.innerText()).trim();
    const body = (await op.locator('.live-responses-table .response-col_description pre').first().innerText().catch(() => '')).trim();
    const headers = await op.locator('.live-responses-table .response-col_description .microlight').last().innerText().catch(() => '');
    const curl = (await op.locator('.curl-command').innerText().catch(() => '')).trim();
    await op.locator('.live-responses-table').scrollIntoViewIfNeeded();
    return { code, body, headers, curl };
  };

  // 2. Authorize with the ingest key.
  await authorize(ingestKey, 'ingest key', '2-authorized-ingest.png');
  ok('Authorize: the ingest key is set as bearerKey; the dialog closes and the padlock shows locked');

  // 3. POST /v1/events: Try it out with the request example, Execute, 202.
  const post = page.locator('#operations-Events-ingest_events');
  await post.locator('.opblock-summary').first().click();
  await post.locator('button.try-out__btn').click();
  const bodyInput = post.locator('textarea.body-param__text');
  await bodyInput.waitFor();
  const example = await bodyInput.inputValue();
  let batch;
  try {
    batch = JSON.parse(example);
  } catch (e) {
    throw new CheckFailed(`the request example is not JSON: ${e.message}`);
  }
  const types = (batch.events ?? []).map((e) => e.type).sort();
  await post.screenshot({ path: join(shots, '3-try-it-out.png') });
  check(
    JSON.stringify(types) === JSON.stringify(EVENT_TYPES),
    `the request example should be an EventBatch with one event of each type; its events' types are ${JSON.stringify(types)}` +
      ' (the example is built from the schema when openapi.yaml has none: see the example on EventBatch)',
  );
  ok(`Try it out: the request example holds one event of each type (${types.join(', ')})`);

  const sent = await execute(post);
  await post.screenshot({ path: join(shots, '4-executed.png') });
  check(
    sent.curl.includes(`Authorization: Bearer ${ingestKey}`),
    'the request Swagger UI sent (its curl command) has no `Authorization: Bearer` with the ingest key',
  );
  check(
    sent.code.startsWith('202'),
    `Execute on POST /v1/events with the ingest key answered ${sent.code}: ${sent.body.slice(0, 2000)}\n` +
      '     (401/403: the key was not sent or not accepted; 422: the request example must be a valid batch, an example' +
      ' on EventBatch in openapi.yaml with distinct event ids and past timestamps)',
  );
  const accepted = JSON.parse(sent.body);
  check(accepted.accepted === EVENT_TYPES.length && typeof accepted.batch_id === 'string', `202 body: ${sent.body}`);
  check(sent.headers.includes(`location: /v1/batches/${accepted.batch_id}`),
    `202 response headers lack the batch's Location: ${sent.headers}`);
  ok(`Execute: 202 with the ingest key as Bearer, batch ${accepted.batch_id}, ${accepted.accepted} events accepted, ` +
    `Location /v1/batches/${accepted.batch_id}`);

  // 4. Log out, authorize with the read key, GET /v1/batches/{batch_id}: 200 with the batch.
  await authorize(readKey, 'read key', '5-authorized-read.png');
  ok('Authorize: logged out, then the read key is set as bearerKey');
  const get = page.locator('#operations-Batches-get_batch');
  await get.locator('.opblock-summary').first().click();
  await get.locator('button.try-out__btn').click();
  const idInput = get.locator('tr[data-param-name="batch_id"] input');
  await idInput.waitFor();
  await idInput.fill(accepted.batch_id);
  const read = await execute(get);
  await get.screenshot({ path: join(shots, '6-batch-read.png') });
  check(read.curl.includes(`Authorization: Bearer ${readKey}`),
    'the GET Swagger UI sent (its curl command) has no `Authorization: Bearer` with the read key (still the ingest key?)');
  check(read.code.startsWith('200'),
    `Execute on GET /v1/batches/${accepted.batch_id} with the read key answered ${read.code}: ${read.body.slice(0, 2000)}`);
  let status;
  try {
    status = JSON.parse(read.body);
  } catch (e) {
    throw new CheckFailed(`GET /v1/batches/${accepted.batch_id}: the 200 body is not JSON: ${read.body.slice(0, 500)}`);
  }
  check(status.batch_id === accepted.batch_id && status.accepted === EVENT_TYPES.length &&
    ['queued', 'processing', 'completed'].includes(status.status),
    `GET /v1/batches/${accepted.batch_id}: 200 body is not that batch, queued, processing or completed: ${read.body}`);
  ok(`Execute: GET /v1/batches/{batch_id} with the read key as Bearer: 200, batch ${status.batch_id} is ${status.status}`);
  noPageErrors();
  console.log('PASS swagger e2e: /docs renders every operation; after Authorize, "Try it out" gets a 202 on ' +
    `POST /v1/events with the ingest key and a 200 on GET /v1/batches/{batch_id} with the read key (screenshots in ${shots})`);
} catch (e) {
  failed = true;
  if (page) await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  const msg = e instanceof CheckFailed ? e.message : e.stack ?? String(e);
  console.error(`FAIL swagger e2e: ${msg}\n     screenshots in ${shots}`);
} finally {
  await close();
}
process.exit(failed ? 1 : 0);
