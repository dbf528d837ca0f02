import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, afterEach, before, describe, it, mock } from 'node:test';
import { solveChallenge, type Challenge } from 'altcha-lib';
import { deriveKey } from 'altcha-lib/algorithms/sha';
import { SITEVERIFY_TIMEOUT_MS, captchaCspSources, createCaptcha, type Captcha } from '../../src/infra/captcha.ts';
import { randomToken } from '../../src/infra/crypto.ts';
import type { EphemeralStore } from '../../src/infra/ephemeral/index.ts';
import { MemoryStore } from '../../src/infra/ephemeral/memory.ts';

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64');
const unb64 = (payload: string) => JSON.parse(Buffer.from(payload, 'base64').toString('utf8'));

/** Fetches a challenge and solves it as the widget does; returns the payload it would submit. */
async function solve(captcha: Captcha): Promise<string> {
  const challenge = (await captcha.challenge()) as unknown as Challenge;
  const solution = await solveChallenge({ challenge, deriveKey, timeout: 10_000 });
  assert.ok(solution, 'the challenge is solvable');
  return b64({ challenge: { parameters: challenge.parameters, signature: challenge.signature }, solution });
}

describe('ALTCHA captcha', () => {
  let store: EphemeralStore;
  let hmacKey: string;
  let captcha: Captcha;

  before(() => {
    store = new MemoryStore();
    hmacKey = randomToken();
    captcha = createCaptcha({ provider: 'altcha', hmacKey, ephemeral: store, maxNumber: 500 });
  });
  after(() => store.close());
  afterEach(() => mock.timers.reset());

  it('describes the self-hosted widget and issues a signed challenge with an expiry', async () => {
    assert.deepEqual(captcha.widget, {
      provider: 'altcha',
      scriptUrl: '/assets/altcha.js',
      styleUrl: '/assets/altcha.css',
      challengeUrl: '/api/v1/auth/captcha',
    });
    const challenge = (await captcha.challenge()) as unknown as Challenge;
    assert.equal(challenge.parameters.algorithm, 'SHA-256');
    assert.match(challenge.signature ?? '', /^[0-9a-f]{64}$/);
    assert.ok(challenge.parameters.keySignature, 'deterministic mode: the derived key is signed');
    const lifetime = challenge.parameters.expiresAt! - Date.now() / 1000;
    assert.ok(lifetime > 590 && lifetime <= 600, `expires in about 600 s (got ${lifetime})`);
    const other = (await captcha.challenge()) as unknown as Challenge;
    assert.notEqual(other.parameters.nonce, challenge.parameters.nonce, 'every challenge is fresh');
  });

  it('accepts a solved payload once and refuses the replay', async () => {
    const payload = await solve(captcha);
    assert.equal(await captcha.verify(payload), true);
    assert.equal(await captcha.verify(payload), false, 'the same payload a second time');
  });

  it('refuses a replay on another instance sharing the key and the store', async () => {
    const peer = createCaptcha({ provider: 'altcha', hmacKey, ephemeral: store, maxNumber: 500 });
    const payload = await solve(captcha);
    assert.equal(await peer.verify(payload), true, 'any instance verifies the signed challenge');
    assert.equal(await captcha.verify(payload), false);
    // Two submissions racing: exactly one wins.
    const racing = await solve(captcha);
    const results = await Promise.all([captcha.verify(racing), peer.verify(racing)]);
    assert.deepEqual(results.sort(), [false, true]);
  });

  it('refuses a payload signed with another key', async () => {
    const stranger = createCaptcha({ provider: 'altcha', hmacKey: randomToken(), ephemeral: store, maxNumber: 500 });
    assert.equal(await captcha.verify(await solve(stranger)), false);
  });

  it('refuses tampered payloads', async () => {
    const original = unb64(await solve(captcha));
    const variants: Array<(p: any) => void> = [
      (p) => (p.solution.derivedKey = p.solution.derivedKey.replace(/^./, (c: string) => (c === '0' ? '1' : '0'))),
      (p) => (p.solution.derivedKey = p.challenge.parameters.keyPrefix),
      (p) => (p.challenge.parameters.expiresAt += 3600),
      (p) => (p.challenge.parameters.keyPrefix = '00'),
      (p) => delete p.challenge.parameters.keySignature,
      (p) => delete p.challenge.parameters.expiresAt,
      (p) => (p.challenge.parameters.algorithm = 'SHA-512'),
      (p) => (p.challenge.signature = '0'.repeat(64)),
      (p) => delete p.challenge.signature,
      (p) => (p.solution.counter = -1),
      (p) => (p.solution.counter = String(p.solution.counter)),
    ];
    for (const [i, change] of variants.entries()) {
      const tampered = structuredClone(original);
      change(tampered);
      assert.equal(await captcha.verify(b64(tampered)), false, `variant ${i}`);
    }
    // The untouched payload still works: the refusals above did not burn it.
    assert.equal(await captcha.verify(b64(original)), true);
  });

  it('refuses an expired payload', async () => {
    const payload = await solve(captcha);
    mock.timers.enable({ apis: ['Date'], now: Date.now() + 601_000 });
    assert.equal(await captcha.verify(payload), false);
  });

  it('honours a shorter lifetime', async () => {
    const quick = createCaptcha({ provider: 'altcha', hmacKey, ephemeral: store, maxNumber: 500, expiresSeconds: 30 });
    const payload = await solve(quick);
    mock.timers.enable({ apis: ['Date'], now: Date.now() + 31_000 });
    assert.equal(await quick.verify(payload), false);
  });

  it('refuses garbage and oversized input without throwing', async () => {
    const solved = await solve(captcha);
    const inputs: unknown[] = [
      undefined,
      null,
      42,
      true,
      {},
      [],
      unb64(solved), // the decoded object instead of the string
      '',
      'not base64 !!',
      Buffer.from('not json').toString('base64'),
      b64([]),
      b64(null),
      b64('string'),
      b64({ challenge: null, solution: null, test: true }), // the widget's test mode
      b64({ challenge: {}, solution: {} }),
      b64({ algorithm: 'SHA-256', challenge: 'abc', number: 1, salt: 'x', signature: 'y' }), // v1 shape
      b64({ ...unb64(solved), challenge: { ...unb64(solved).challenge, parameters: { ...unb64(solved).challenge.parameters, nonce: 'zz' } } }),
      'A'.repeat(5000),
      solved + 'A'.repeat(5000),
      b64({ ...unb64(solved), padding: 'x'.repeat(4000) }),
    ];
    for (const [i, input] of inputs.entries()) {
      assert.equal(await captcha.verify(input), false, `input ${i}`);
    }
    assert.equal(await captcha.verify(solved), true, 'garbage did not disturb a valid payload');
  });

  it('rejects unusable settings at construction', () => {
    assert.throws(() => createCaptcha({ provider: 'altcha', hmacKey: 'short', ephemeral: store }), /hmacKey/);
    assert.throws(() => createCaptcha({ provider: 'altcha', hmacKey, ephemeral: store, maxNumber: 0 }), /maxNumber/);
    assert.throws(() => createCaptcha({ provider: 'altcha', hmacKey, ephemeral: store, maxNumber: 2 ** 32 }), /maxNumber/);
    assert.throws(() => createCaptcha({ provider: 'altcha', hmacKey, ephemeral: store, expiresSeconds: 1.5 }), /expiresSeconds/);
    assert.throws(() => createCaptcha({ provider: 'turnstile', hmacKey, ephemeral: store, siteKey: 'site' }), /secret key/);
    assert.throws(() => createCaptcha({ provider: 'hcaptcha', hmacKey, ephemeral: store, secretKey: 'secret' }), /site key/);
    assert.throws(() => createCaptcha({ provider: 'recaptcha' as never, hmacKey, ephemeral: store }), /unknown captcha provider/);
  });
});

describe("captcha 'none'", () => {
  it('accepts anything and renders nothing', async () => {
    const store = new MemoryStore();
    try {
      const captcha = createCaptcha({ provider: 'none', hmacKey: '', ephemeral: store });
      assert.equal(captcha.provider, 'none');
      assert.deepEqual(captcha.widget, { provider: 'none' });
      assert.equal(await captcha.challenge(), undefined);
      assert.equal(await captcha.verify(undefined), true);
      assert.equal(await captcha.verify('anything'), true);
      assert.deepEqual(captchaCspSources(captcha.widget), { script: [], frame: [], connect: [], style: [] });
    } finally {
      await store.close();
    }
  });
});

interface SiteverifyRequest {
  method: string;
  contentType: string;
  fields: Record<string, string>;
}

/** Plays a vendor's siteverify: success for the token "good", failure otherwise, errors on cue. */
async function startSiteverify() {
  const requests: SiteverifyRequest[] = [];
  const server = http.createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    const fields = Object.fromEntries(new URLSearchParams(body));
    requests.push({ method: req.method ?? '', contentType: req.headers['content-type'] ?? '', fields });
    if (fields.response === 'server-error') {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"success":true}');
    } else if (fields.response === 'not-json') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>success</html>');
    } else if (fields.response === 'truthy') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"success":"true"}');
    } else {
      const success = fields.response === 'good';
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(success ? { success, hostname: 'localhost' } : { success, 'error-codes': ['invalid-input-response'] }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/siteverify`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * A siteverify peer at a port we keep: `reset` answers every connection with a TCP reset (an
 * unreachable service, without giving the port up), `silent` reads the request and never answers.
 */
async function deadSiteverify(mode: 'reset' | 'silent') {
  const sockets = new Set<net.Socket>();
  let received = 0;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    if (mode === 'reset') return socket.resetAndDestroy();
    sockets.add(socket);
    socket.on('data', () => received++);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/siteverify`,
    get received() {
      return received;
    },
    get open() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

for (const provider of ['turnstile', 'hcaptcha'] as const) {
  describe(`${provider} captcha`, () => {
    let store: EphemeralStore;
    let siteverify: Awaited<ReturnType<typeof startSiteverify>>;
    let captcha: Captcha;
    const secretKey = `secret-${provider}`;
    const siteKey = `site-${provider}`;

    before(async () => {
      store = new MemoryStore();
      siteverify = await startSiteverify();
      captcha = createCaptcha({ provider, hmacKey: '', ephemeral: store, secretKey, siteKey, verifyUrl: siteverify.url });
    });
    after(async () => {
      await siteverify.close();
      await store.close();
    });

    it("describes the vendor's widget and needs no challenge", async () => {
      const scriptUrl =
        provider === 'turnstile' ? 'https://challenges.cloudflare.com/turnstile/v0/api.js' : 'https://js.hcaptcha.com/1/api.js';
      assert.deepEqual(captcha.widget, { provider, scriptUrl, siteKey });
      assert.equal(await captcha.challenge(), undefined);
      const csp = captchaCspSources(captcha.widget);
      const origin = provider === 'turnstile' ? 'https://challenges.cloudflare.com' : 'https://hcaptcha.com';
      assert.ok(csp.script.includes(origin) && csp.frame.includes(origin), JSON.stringify(csp));
    });

    it('posts the form fields siteverify expects and accepts its success', async () => {
      const before = siteverify.requests.length;
      assert.equal(await captcha.verify('good', '203.0.113.7'), true);
      const [request] = siteverify.requests.slice(before);
      assert.ok(request);
      assert.equal(request.method, 'POST');
      assert.match(request.contentType, /^application\/x-www-form-urlencoded/);
      const expected: Record<string, string> = { secret: secretKey, response: 'good', remoteip: '203.0.113.7' };
      if (provider === 'hcaptcha') expected.sitekey = siteKey;
      assert.deepEqual(request.fields, expected);
    });

    it('leaves remoteip out when the address is unknown', async () => {
      const before = siteverify.requests.length;
      assert.equal(await captcha.verify('good'), true);
      assert.equal(siteverify.requests[before]?.fields.remoteip, undefined);
    });

    it('refuses what siteverify refuses, and answers it cannot read', async () => {
      assert.equal(await captcha.verify('bad', '203.0.113.7'), false);
      assert.equal(await captcha.verify('server-error'), false, 'an HTTP error status');
      assert.equal(await captcha.verify('not-json'), false);
      assert.equal(await captcha.verify('truthy'), false, 'only success === true counts');
    });

    it('refuses missing and oversized tokens without asking siteverify', async () => {
      const before = siteverify.requests.length;
      for (const token of [undefined, null, '', 42, { response: 'good' }, 'g'.repeat(9000)]) {
        assert.equal(await captcha.verify(token, '203.0.113.7'), false);
      }
      assert.equal(siteverify.requests.length, before);
    });

    it('fails closed when siteverify is unreachable', async () => {
      const dead = await deadSiteverify('reset');
      try {
        const offline = createCaptcha({ provider, hmacKey: '', ephemeral: store, secretKey, siteKey, verifyUrl: dead.url });
        assert.equal(await offline.verify('good', '203.0.113.7'), false);
      } finally {
        await dead.close();
      }
    });

    it(`gives up on a siteverify that never answers after its timeout (${SITEVERIFY_TIMEOUT_MS} ms) and fails closed`, async () => {
      const silent = await deadSiteverify('silent');
      try {
        const hanging = createCaptcha({ provider, hmacKey: '', ephemeral: store, secretKey, siteKey, verifyUrl: silent.url });
        const started = performance.now();
        const outcome = await hanging.verify('good', '203.0.113.7');
        const waited = performance.now() - started;
        assert.equal(outcome, false, 'a token that could not be checked is refused');
        assert.ok(silent.received > 0, 'the request reached siteverify, which kept silent');
        // Not a performance bound: it waited for the timeout (not an immediate failure) and did
        // give up (not hang until the socket or the test dies).
        assert.ok(waited >= SITEVERIFY_TIMEOUT_MS - 50, `gave up after ${Math.round(waited)} ms, before its timeout`);
        assert.ok(waited < SITEVERIFY_TIMEOUT_MS * 3, `gave up after ${Math.round(waited)} ms, long past its timeout`);
      } finally {
        await silent.close();
      }
    });
  });
}
