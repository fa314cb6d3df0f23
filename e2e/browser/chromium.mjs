// What the browser tests share: headless Chromium (Debian's chromium package, driven by
// playwright-core; no browser download), the check helpers, and the API keys from the
// environment.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class CheckFailed extends Error {}

export const check = (cond, what) => {
  if (!cond) throw new CheckFailed(what);
};

export const ok = (msg) => console.log(`ok   ${msg}`);

/// The API key in the environment variable `name` (set by .ci/e2e.sh from `app keys create`).
export function keyFromEnv(name, what) {
  const key = (process.env[name] ?? '').trim();
  if (!key) {
    console.error(`FAIL: ${name} is not set: it must hold ${what} (\`app keys create\`; .ci/e2e.sh sets it)`);
    process.exit(2);
  }
  return key;
}

/// A headless Chromium with a fresh profile; `close()` removes the profile.
export async function launchChromium({ timeout, viewport = { width: 1280, height: 1600 } }) {
  // The machine's network is closed: without these flags Chromium waits on connections
  // (updates, sync, QUIC) it cannot make. A fresh profile each run keeps runs independent
  // (no cached CORS preflight, no stored Swagger UI authorization).
  const profile = mkdtempSync(join(tmpdir(), 'app-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport,
    timeout,
  });
  context.setDefaultTimeout(timeout);
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/// A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, as the README asks
/// clients to make event ids.
export function uuid7() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let ms = BigInt(Date.now());
  for (let i = 5; i >= 0; i--) {
    bytes[i] = Number(ms & 0xffn);
    ms >>= 8n;
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
