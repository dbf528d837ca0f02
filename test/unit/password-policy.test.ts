import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { configSchema } from '../../src/config/schema.ts';
import { createPasswordPolicy, type PolicyLogger } from '../../src/domain/authn/password-policy.ts';

const sha1 = (password: string) => createHash('sha1').update(password, 'utf8').digest('hex').toUpperCase();

/** A logger that keeps its warnings. */
function recordingLogger() {
  const warnings: Array<{ obj: object; msg: string }> = [];
  const logger: PolicyLogger = { warn: (obj, msg) => warnings.push({ obj, msg }) };
  return { logger, warnings };
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('password policy: length and strength', () => {
  const policy = createPasswordPolicy({ minLength: 8, minScore: 3 });

  it('refuses a short password', async () => {
    const result = await policy.check('Zq7#');
    assert.equal(result.ok, false);
    assert.ok(!result.ok && result.reasons.includes('too_short'));
    assert.ok(!result.ok && result.suggestions.includes('Use at least 8 characters.'));
  });

  it('refuses a password over the maximum length without analysing it', async () => {
    const result = await policy.check('violet-anchor-'.repeat(80));
    assert.deepEqual(result, { ok: false, reasons: ['too_long'], suggestions: ['Use at most 1024 characters.'] });
  });

  it('counts length in characters, not UTF-16 units', async () => {
    const strict = createPasswordPolicy({ minLength: 8, minScore: 0 });
    assert.deepEqual(await strict.check('🔑'.repeat(7)), {
      ok: false,
      reasons: ['too_short'],
      suggestions: ['Use at least 8 characters.'],
    });
    assert.deepEqual(await strict.check('🔑'.repeat(8)), { ok: true });
  });

  for (const common of ['password1', 'qwerty123', 'iloveyou', 'P@ssw0rd123']) {
    it(`refuses the common password ${common}`, async () => {
      const result = await policy.check(common);
      assert.equal(result.ok, false);
      assert.ok(!result.ok && result.reasons.includes('too_weak'), JSON.stringify(result));
      assert.ok(!result.ok && result.suggestions.length > 0);
    });
  }

  it("refuses a password built from the user's email or names that would pass for someone else", async () => {
    const inputs = ['ada.lovelace@example.com', 'Ada', 'Lovelace'];
    for (const password of ['adalovelace1815', 'AdaLovelace2024', 'Lovelace1815!', 'ada.lovelace@example.com']) {
      assert.deepEqual(await policy.check(password), { ok: true }, `${password} without user inputs`);
      const result = await policy.check(password, inputs);
      assert.equal(result.ok, false, `${password} with user inputs`);
      assert.ok(!result.ok && result.reasons.includes('too_weak'));
    }
  });

  it('accepts a strong passphrase, with or without user inputs', async () => {
    assert.deepEqual(await policy.check('violet-anchor-sprint-meadow'), { ok: true });
    assert.deepEqual(await policy.check('violet-anchor-sprint-meadow', ['ada@example.com', 'Ada', 'Lovelace']), { ok: true });
  });

  it('honours the configured minimum score', async () => {
    const lenient = createPasswordPolicy({ minLength: 8, minScore: 0 });
    assert.deepEqual(await lenient.check('password1'), { ok: true });
  });
});

describe('password policy: breached passwords (k-anonymity range lookup)', () => {
  const breached = 'correct horse battery staple';
  const clean = 'violet-anchor-sprint-meadow';
  const padded = 'lantern-orbit-quarry-thimble'; // listed, but only as a padding line (count 0)
  const paths: string[] = [];
  let server: http.Server;
  let base: string;

  before(async () => {
    // A range service: for any prefix, a few unrelated suffixes and padding lines; for the prefix
    // of `breached` its suffix with a count, for the prefix of `padded` its suffix with count 0.
    server = http.createServer((req, res) => {
      paths.push(req.url ?? '');
      const match = /^\/range\/([0-9A-F]{5})$/.exec(req.url ?? '');
      if (!match) {
        res.writeHead(req.url?.startsWith('/fail/') ? 500 : 404).end();
        return;
      }
      const prefix = match[1];
      const lines = ['0018A45C4D1DEF81644B54AB7F969B88D65:3', '00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0'];
      if (prefix === sha1(breached).slice(0, 5)) lines.push(`${sha1(breached).slice(5)}:3645804`);
      if (prefix === sha1(padded).slice(0, 5)) lines.push(`${sha1(padded).slice(5)}:0`);
      lines.push('FFFFFB7CBE6BF07D1A2E1E6B5CF3C3E1E25:12');
      res.writeHead(200, { 'content-type': 'text/plain' }).end(lines.join('\r\n'));
    });
    base = `http://127.0.0.1:${await listen(server)}`;
  });
  after(() => close(server));

  it('refuses a password whose suffix is in its range, sending only the 5-character prefix', async () => {
    paths.length = 0;
    const policy = createPasswordPolicy({ minLength: 8, minScore: 3, breachedRangeUrl: `${base}/range/` });
    assert.deepEqual(await policy.check(breached), {
      ok: false,
      reasons: ['breached'],
      suggestions: ['This password has appeared in a data breach; choose a different one.'],
    });
    assert.deepEqual(await policy.check(clean), { ok: true });
    assert.deepEqual(await policy.check(padded), { ok: true }, 'a count of 0 is padding, not a breach');

    assert.deepEqual(paths, [breached, clean, padded].map((p) => `/range/${sha1(p).slice(0, 5)}`));
    for (const path of paths) {
      for (const p of [breached, clean, padded]) assert.ok(!path.includes(sha1(p).slice(5, 10)), 'no part of a suffix is sent');
    }
  });

  it('makes no lookup for a password refused locally', async () => {
    paths.length = 0;
    const policy = createPasswordPolicy({ minLength: 8, minScore: 3, breachedRangeUrl: `${base}/range` });
    const result = await policy.check('password1');
    assert.ok(!result.ok && !result.reasons.includes('breached'));
    assert.deepEqual(paths, []);
  });

  it('fails open, with a warning, when the service answers an error', async () => {
    const { logger, warnings } = recordingLogger();
    const policy = createPasswordPolicy({ minLength: 8, minScore: 3, breachedRangeUrl: `${base}/fail`, logger });
    assert.deepEqual(await policy.check(breached), { ok: true });
    assert.equal(warnings.length, 1);
    assert.match(JSON.stringify(warnings[0]), /HTTP 500/);
    assert.ok(!JSON.stringify(warnings).includes(sha1(breached).slice(0, 5)), 'the warning names no part of the digest');
  });

  it('fails open, with a warning, when nothing listens on the port', async () => {
    const closed = http.createServer();
    const port = await listen(closed);
    await close(closed);
    const { logger, warnings } = recordingLogger();
    const policy = createPasswordPolicy({ minLength: 8, minScore: 3, breachedRangeUrl: `http://127.0.0.1:${port}/range`, logger });
    assert.deepEqual(await policy.check(breached), { ok: true });
    assert.equal(warnings.length, 1);
  });

  it('fails open, with a warning, when the service does not answer in time', async () => {
    const silent = http.createServer(() => {}); // never responds
    const port = await listen(silent);
    try {
      const { logger, warnings } = recordingLogger();
      const policy = createPasswordPolicy({
        minLength: 8,
        minScore: 3,
        breachedRangeUrl: `http://127.0.0.1:${port}/range`,
        timeoutMs: 200,
        logger,
      });
      const started = Date.now();
      assert.deepEqual(await policy.check(breached), { ok: true });
      assert.ok(Date.now() - started < 2000, 'gave up at the timeout');
      assert.equal(warnings.length, 1);
    } finally {
      await close(silent);
    }
  });

  it('uses an injected fetch', async () => {
    const urls: string[] = [];
    const policy = createPasswordPolicy({
      minLength: 8,
      minScore: 3,
      breachedRangeUrl: 'https://range.example/range',
      fetch: async (url) => {
        urls.push(String(url));
        return new Response(`${sha1(breached).slice(5).toLowerCase()}:2\n`);
      },
    });
    const result = await policy.check(breached);
    assert.ok(!result.ok && result.reasons.includes('breached'));
    assert.deepEqual(urls, [`https://range.example/range/${sha1(breached).slice(0, 5)}`]);
  });
});

describe('password policy settings', () => {
  it('defaults and bounds', () => {
    const cfg = configSchema.parse({});
    assert.equal(cfg.PASSWORD_MIN_LENGTH, 8);
    assert.equal(cfg.PASSWORD_MIN_SCORE, 3);
    assert.equal(cfg.HIBP_RANGE_URL, undefined);
    assert.equal(configSchema.parse({ HIBP_RANGE_URL: 'https://api.pwnedpasswords.com/range' }).HIBP_RANGE_URL, 'https://api.pwnedpasswords.com/range');
    for (const bad of [{ PASSWORD_MIN_LENGTH: '1025' }, { PASSWORD_MIN_LENGTH: '4' }, { PASSWORD_MIN_SCORE: '5' }, { HIBP_RANGE_URL: 'ftp://x/range' }]) {
      assert.equal(configSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
  });
});
