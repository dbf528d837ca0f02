import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { AppError, type ErrorCode } from '../../src/domain/errors.ts';
import { OneTimeCodes, OTP_SETTINGS, type OtpNamespace } from '../../src/domain/authn/one-time-codes.ts';
import { SecretBox } from '../../src/infra/crypto.ts';
import { MemoryStore } from '../../src/infra/ephemeral/memory.ts';
import { RedisStore } from '../../src/infra/ephemeral/redis.ts';
import type { EphemeralStore } from '../../src/infra/ephemeral/types.ts';
import { createLogger } from '../../src/infra/logger.ts';

const box = new SecretBox(randomBytes(32));

function rejectsWith(code: ErrorCode) {
  return (err: unknown) => {
    assert.ok(err instanceof AppError, `AppError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  };
}

/** A fresh identifier per test, so tests never share state. */
const newId = () => `user-${randomUUID()}@example.test`;

/** Issues without the cooldown getting in the way (for tests that issue more than once). */
async function reissue(store: EphemeralStore, codes: OneTimeCodes, ns: OtpNamespace, id: string) {
  await store.del(`${ns}:cooldown:${id}`);
  return codes.issue(ns, id);
}

type Opened = { store: EphemeralStore; cleanup: () => Promise<void> };

function suite(name: string, open: () => Opened | Promise<Opened>) {
  describe(`one-time codes on ${name}`, () => {
    let store: EphemeralStore;
    let cleanup: () => Promise<void>;
    let codes: OneTimeCodes;

    before(async () => {
      ({ store, cleanup } = await open());
      codes = new OneTimeCodes(store, box);
    });
    after(async () => {
      await cleanup();
    });

    it('issues a 6-digit code that verifies once and gives a single-use session', async () => {
      const id = newId();
      const issued = await codes.issue('verify-email', id);
      assert.equal(issued.kind, 'numeric');
      assert.match(issued.code, /^\d{6}$/);
      const ttl = issued.expiresAt.getTime() - Date.now();
      assert.ok(ttl > 14 * 60_000 && ttl <= 15 * 60_000, `expiresAt ~15 min ahead, ${ttl}`);

      const session = await codes.verify('verify-email', id, issued.code);
      assert.ok(session.length >= 43);
      await assert.rejects(codes.verify('verify-email', id, issued.code), rejectsWith('IDENT_OTP_INVALID'));

      assert.equal(await codes.takeSession('add-email', session), undefined, 'sessions are per namespace');
      assert.equal(await codes.takeSession('verify-email', session), id);
      assert.equal(await codes.takeSession('verify-email', session), undefined);
      assert.equal(await codes.takeSession('verify-email', 'not-a-session'), undefined);
    });

    it('stores only a keyed hash of the code and of the session token', async () => {
      const id = newId();
      const { code, link } = await codes.issue('forgot-password', id);
      const raw = await store.get(`forgot-password:otp:${id}`);
      assert.ok(raw && link);
      assert.ok(!raw.includes(code) && !raw.includes(link), 'neither the code nor the link token is in the stored record');
      assert.deepEqual(Object.keys(JSON.parse(raw)).sort(), ['h', 'l', 'n']);

      const session = await codes.verify('forgot-password', id, code);
      assert.equal(await store.get(`forgot-password:otp:${id}`), undefined, 'the code is deleted on success');
      assert.equal(await store.get(`forgot-password:session:${session}`), undefined, 'the session key is not the raw token');
      assert.equal(await codes.takeSession('forgot-password', session), id);
    });

    it('counts wrong codes; the 5th wrong try locks typed codes: even the right one, and a new one, are refused', async () => {
      const id = newId();
      const { code } = await codes.issue('verify-phone', id);
      const wrong = code === '000000' ? '000001' : '000000';
      for (let i = 1; i <= 4; i++) {
        await assert.rejects(codes.verify('verify-phone', id, wrong), (err: unknown) => {
          assert.ok(err instanceof AppError && err.code === 'IDENT_OTP_INVALID');
          assert.deepEqual(err.detail, { attemptsLeft: 5 - i });
          return true;
        });
        assert.equal(JSON.parse((await store.get(`verify-phone:otp:${id}`))!).n, i);
      }
      await assert.rejects(codes.verify('verify-phone', id, wrong), rejectsWith('IDENT_OTP_LOCKED'));
      assert.equal(await store.get(`verify-phone:otp:${id}`), undefined, 'the code is deleted on lock');
      assert.ok(await store.get(`verify-phone:lock:${id}`));
      await assert.rejects(codes.verify('verify-phone', id, code), rejectsWith('IDENT_OTP_LOCKED'));
      // A new code can still be sent (the owner must get a mail), but typed it is refused until the lock ends.
      const fresh = await reissue(store, codes, 'verify-phone', id);
      await assert.rejects(codes.verify('verify-phone', id, fresh.code), rejectsWith('IDENT_OTP_LOCKED'));

      // The lock is per namespace: the same identifier still works elsewhere.
      const other = await codes.issue('add-phone', id);
      const session = await codes.verify('add-phone', id, other.code);
      assert.equal(await codes.takeSession('add-phone', session), id);
    });

    it('beyondQuota (a request that passed a CAPTCHA) is sent past the daily quota', async () => {
      const id = newId();
      await codes.issue('verify-phone', id);
      for (let i = 1; i < OTP_SETTINGS['verify-phone'].dailyQuota; i++) await reissue(store, codes, 'verify-phone', id);
      await assert.rejects(reissue(store, codes, 'verify-phone', id), rejectsWith('IDENT_OTP_DAILY_QUOTA'));
      // The refused send started its cooldown before the quota said no; a minute later:
      await store.del(`verify-phone:cooldown:${id}`);
      assert.ok((await codes.issue('verify-phone', id, { beyondQuota: true })).code);
    });

    it('malformed input counts as a wrong try', async () => {
      const id = newId();
      const { code } = await codes.issue('add-email', id);
      await assert.rejects(codes.verify('add-email', id, 'x'.repeat(10_000)), rejectsWith('IDENT_OTP_INVALID'));
      await assert.rejects(codes.verify('add-email', id, ''), rejectsWith('IDENT_OTP_INVALID'));
      assert.equal(JSON.parse((await store.get(`add-email:otp:${id}`))!).n, 2);
      assert.ok(await codes.verify('add-email', id, code));
      await assert.rejects(codes.issue('add-email', ''), rejectsWith('IDENT_VALIDATION'));
    });

    it('a resend replaces the code but keeps the wrong-attempt count', async () => {
      const id = newId();
      const first = await codes.issue('phone-auth', id);
      const wrong = (c: string) => (c === '000000' ? '000001' : '000000');
      for (let i = 0; i < 3; i++) await assert.rejects(codes.verify('phone-auth', id, wrong(first.code)), rejectsWith('IDENT_OTP_INVALID'));
      let second = await reissue(store, codes, 'phone-auth', id);
      while (second.code === first.code) second = await reissue(store, codes, 'phone-auth', id);
      await assert.rejects(codes.verify('phone-auth', id, first.code), rejectsWith('IDENT_OTP_INVALID'));
      await assert.rejects(codes.verify('phone-auth', id, wrong(second.code)), rejectsWith('IDENT_OTP_LOCKED'));
    });

    it('absent and expired codes fail like wrong ones', async () => {
      const short = new OneTimeCodes(store, box, { 'verify-email': { codeTtlSeconds: 1 } });
      const id = newId();
      await assert.rejects(short.verify('verify-email', id, '123456'), rejectsWith('IDENT_OTP_INVALID'));
      const { code, expiresAt } = await short.issue('verify-email', id);
      assert.ok(expiresAt.getTime() - Date.now() <= 1000);
      await sleep(1300);
      await assert.rejects(short.verify('verify-email', id, code), rejectsWith('IDENT_OTP_INVALID'));
    });

    it('refuses a second send within the cooldown, then allows it', async () => {
      const short = new OneTimeCodes(store, box, { 'add-email': { cooldownSeconds: 1 } });
      const id = newId();
      await short.issue('add-email', id);
      await assert.rejects(short.issue('add-email', id), rejectsWith('IDENT_OTP_COOLDOWN'));
      await assert.rejects(codes.issue('add-email', id), rejectsWith('IDENT_OTP_COOLDOWN'));
      // The default cooldown is a minute.
      assert.equal(codes.settings('add-email').cooldownSeconds, 60);
      await sleep(1300);
      await short.issue('add-email', id);
    });

    it('enforces the daily quota; refused sends within the cooldown do not spend it', async () => {
      const q = new OneTimeCodes(store, box, { 'forgot-password': { dailyQuota: 2 } });
      const id = newId();
      await q.issue('forgot-password', id);
      await assert.rejects(q.issue('forgot-password', id), rejectsWith('IDENT_OTP_COOLDOWN'));
      await reissue(store, q, 'forgot-password', id);
      await assert.rejects(reissue(store, q, 'forgot-password', id), rejectsWith('IDENT_OTP_DAILY_QUOTA'));
      assert.equal(await store.get(`forgot-password:daily:${id}`), '3');
    });

    it('two concurrent verifies of one code: exactly one wins', async () => {
      const id = newId();
      const { code } = await codes.issue('verify-email', id);
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => codes.verify('verify-email', id, code)));
      const won = results.filter((r) => r.status === 'fulfilled');
      assert.equal(won.length, 1);
      for (const r of results) if (r.status === 'rejected') rejectsWith('IDENT_OTP_INVALID')(r.reason);
    });

    it('concurrent wrong tries are all counted: the code locks and is gone', async () => {
      const id = newId();
      const { code } = await codes.issue('verify-email', id);
      const guesses = Array.from({ length: 12 }, (_, i) => String((Number(code) + 1 + i) % 1_000_000).padStart(6, '0'));
      const results = await Promise.allSettled(guesses.map((g) => codes.verify('verify-email', id, g)));
      assert.ok(results.every((r) => r.status === 'rejected'));
      const invalid = results.filter((r) => r.status === 'rejected' && (r.reason as AppError).code === 'IDENT_OTP_INVALID');
      const counted = invalid.filter((r) => r.status === 'rejected' && (r.reason as AppError).detail !== undefined);
      assert.equal(counted.length, 4, 'exactly four counted wrong tries before the lock');
      assert.equal(await store.get(`verify-email:otp:${id}`), undefined);
      await assert.rejects(codes.verify('verify-email', id, code), rejectsWith('IDENT_OTP_LOCKED'));
    });

    it('magic links: a 256-bit token, verifiable without the identifier, once', async () => {
      const id = newId();
      const issued = await codes.issue('magic-link', id);
      assert.equal(issued.kind, 'link');
      assert.ok(Buffer.from(issued.code, 'base64url').length >= 32);
      const raw = await store.get(`magic-link:otp:${id}`);
      assert.ok(raw && !raw.includes(issued.code));

      const { identifier, session } = await codes.verifyLink('magic-link', issued.code);
      assert.equal(identifier, id);
      assert.equal(await codes.takeSession('magic-link', session), id);
      await assert.rejects(codes.verifyLink('magic-link', issued.code), rejectsWith('IDENT_OTP_INVALID'));
      await assert.rejects(codes.verify('magic-link', id, issued.code), rejectsWith('IDENT_OTP_INVALID'));
    });

    it('a code issued with a link: either verifies, once; the link cannot be typed as the code', async () => {
      const id = newId();
      const byLink = await codes.issue('verify-email', id);
      assert.match(byLink.code, /^\d{6}$/);
      assert.ok(byLink.link && Buffer.from(byLink.link, 'base64url').length >= 32);
      await assert.rejects(codes.verify('verify-email', id, byLink.link), rejectsWith('IDENT_OTP_INVALID'));
      const { identifier } = await codes.verifyLink('verify-email', byLink.link);
      assert.equal(identifier, id);
      await assert.rejects(codes.verify('verify-email', id, byLink.code), rejectsWith('IDENT_OTP_INVALID'));

      const byCode = await reissue(store, codes, 'verify-email', id);
      await codes.verify('verify-email', id, byCode.code);
      await assert.rejects(codes.verifyLink('verify-email', byCode.link!), rejectsWith('IDENT_OTP_INVALID'));
    });

    it('a bound link verifies only with the same binding; a session can be peeked before it is taken', async () => {
      const id = newId();
      const issued = await codes.issue('magic-link', id, { bind: 'interaction-a' });
      assert.equal(await codes.peekLink('magic-link', issued.code, 'interaction-a'), id, 'peeking says whose it is');
      assert.equal(await codes.peekLink('magic-link', issued.code, 'interaction-b'), undefined);
      await assert.rejects(codes.verifyLink('magic-link', issued.code), rejectsWith('IDENT_OTP_INVALID'));
      await assert.rejects(codes.verifyLink('magic-link', issued.code, 'interaction-b'), rejectsWith('IDENT_OTP_INVALID'));
      const { session } = await codes.verifyLink('magic-link', issued.code, 'interaction-a');
      assert.equal(await codes.peekSession('magic-link', session), id);
      assert.equal(await codes.peekSession('magic-link', session), id);
      assert.equal(await codes.takeSession('magic-link', session), id);
      assert.equal(await codes.peekSession('magic-link', session), undefined);
    });

    it('magic links: concurrent clicks give one session; a resend voids the older link', async () => {
      const id = newId();
      const first = await codes.issue('magic-link', id);
      const second = await reissue(store, codes, 'magic-link', id);
      await assert.rejects(codes.verifyLink('magic-link', first.code), rejectsWith('IDENT_OTP_INVALID'));
      assert.equal(JSON.parse((await store.get(`magic-link:otp:${id}`))!).n, 0, 'a stale link is not a counted try');

      const results = await Promise.allSettled([1, 2, 3, 4].map(() => codes.verifyLink('magic-link', second.code)));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    });

    it('magic links: unknown tokens fail without counting; a lock ends the live link but not the next one', async () => {
      const id = newId();
      const issued = await codes.issue('magic-link', id);
      for (let i = 0; i < 6; i++) {
        await assert.rejects(codes.verifyLink('magic-link', randomBytes(32).toString('base64url')), rejectsWith('IDENT_OTP_INVALID'));
      }
      await assert.rejects(codes.verifyLink('magic-link', ''), rejectsWith('IDENT_OTP_INVALID'));
      assert.equal(JSON.parse((await store.get(`magic-link:otp:${id}`))!).n, 0);
      // Wrong tokens against the identifier do count; the lock deletes the live link.
      for (let i = 0; i < 4; i++) await assert.rejects(codes.verify('magic-link', id, 'nope'), rejectsWith('IDENT_OTP_INVALID'));
      await assert.rejects(codes.verify('magic-link', id, 'nope'), rejectsWith('IDENT_OTP_LOCKED'));
      await assert.rejects(codes.verifyLink('magic-link', issued.code), rejectsWith('IDENT_OTP_INVALID'));
      // A link sent while locked works: a stranger's wrong tries do not lock the owner out.
      const next = await reissue(store, codes, 'magic-link', id);
      const { identifier } = await codes.verifyLink('magic-link', next.code);
      assert.equal(identifier, id);
    });

    it('compareAndSwap: swaps only on the expected value, keeps or sets the TTL', async () => {
      const k = `cas:${randomUUID()}`;
      await assert.rejects(store.compareAndSwap(k, undefined, 'a'));
      assert.equal(await store.compareAndSwap(k, 'x', 'a', 60), false);
      assert.equal(await store.compareAndSwap(k, undefined, 'a', 1), true);
      assert.equal(await store.compareAndSwap(k, undefined, 'b', 60), false);
      assert.equal(await store.compareAndSwap(k, 'a', 'b'), true);
      assert.equal(await store.get(k), 'b');
      await sleep(1300);
      assert.equal(await store.get(k), undefined, 'the TTL was kept');
      assert.equal(await store.compareAndSwap(k, undefined, 'c', 60), true);
      assert.equal(await store.compareAndSwap(k, 'c', undefined), true);
      assert.equal(await store.get(k), undefined);
    });
  });
}

suite('MemoryStore', () => {
  const store = new MemoryStore();
  return { store, cleanup: () => store.close() };
});

if (process.env.REDIS_URL) {
  suite('RedisStore', async () => {
    const prefix = `test-otp-${randomUUID()}:`;
    const store = await RedisStore.open({ url: process.env.REDIS_URL!, keyPrefix: prefix, commandTimeoutMs: 2000, logger: createLogger('silent') });
    return {
      store,
      cleanup: async () => {
        // SCAN's MATCH is not prefixed by ioredis, DEL is: strip the prefix before deleting.
        let cursor = '0';
        do {
          const [next, keys] = await store.client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
          cursor = next;
          if (keys.length) await store.client.del(...keys.map((k) => k.slice(prefix.length)));
        } while (cursor !== '0');
        await store.close();
      },
    };
  });
}
