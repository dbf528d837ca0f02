import assert from 'node:assert/strict';
import { solveChallenge, type Challenge } from 'altcha-lib';
import { deriveKey } from 'altcha-lib/algorithms/sha';
import type { HttpBrowser } from './browser-http.ts';
import type { TestServer } from './server.ts';

/** Fetches the ALTCHA challenge like the widget does and solves it; the payload the form posts. */
export async function solveCaptcha(ts: TestServer, browser?: HttpBrowser, challengePath = '/api/v1/auth/captcha'): Promise<string> {
  const url = new URL(challengePath, ts.issuer);
  const res = browser ? await browser.request(url, { headers: { accept: 'application/json' } }) : await fetch(url);
  assert.equal(res.status, 200);
  const challenge = (await res.json()) as Challenge;
  const solution = await solveChallenge({ challenge, deriveKey, timeout: 10_000 });
  assert.ok(solution, 'the challenge is solvable');
  return Buffer.from(JSON.stringify({ challenge: { parameters: challenge.parameters, signature: challenge.signature }, solution })).toString('base64');
}

