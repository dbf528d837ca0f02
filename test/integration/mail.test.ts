import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { outboxAad } from '../../src/domain/mail/mail.ts';
import { translate } from '../../src/i18n/index.ts';
import type { OutboxRow } from '../../src/repos/outbox.ts';
import { createUser } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { fastMailSettings, mailSettled, parseMail, startBlackHoleSmtp, startMailbox, waitFor, type Mailbox } from '../helpers/mailbox.ts';

const mailSettings = (smtpUrl: string) => ({ ...fastMailSettings(smtpUrl), MAIL_FROM: 'Test IdP <no-reply@idp.test>' });

const outboxRow = (ts: TestServer, id: string) => ts.server.services.db<OutboxRow>('outbox').where({ id }).first();

describe('mail outbox while SMTP is down', () => {
  let ts: TestServer;
  let mailbox: Mailbox;

  before(async () => {
    // The port stays bound to the mailbox, which resets every connection until it is brought up.
    mailbox = await startMailbox();
    mailbox.down();
    ts = await startTestServer(mailSettings(mailbox.url));
  });

  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  it('the mail stays pending and is retried, the server stays ready; it arrives once SMTP is up', async () => {
    const { db, mail } = ts.server.services;
    const code = '482913';
    const link = `${ts.issuer}/reset?token=tok-down&step=1`;
    const id = await db.transaction((trx) =>
      mail.enqueue({ to: 'down@example.com', template: 'forgot-password', locale: 'en', data: { code, link, expiresInMinutes: 15 } }, trx),
    );

    const failed = await waitFor('failed attempts', async () => {
      const r = await outboxRow(ts, id);
      return r && r.attempts >= 2 ? r : undefined;
    });
    assert.equal(failed.status, 'pending');
    assert.ok(failed.next_attempt_at instanceof Date);
    assert.ok(failed.last_error && /ECONNRESET|ECONNREFUSED|ESOCKET|ECONNECTION/.test(failed.last_error), String(failed.last_error));
    assert.ok(!failed.last_error.includes(code));
    assert.ok(failed.payload_sealed, 'the payload is kept until sent');
    assert.equal((await fetch(`${ts.issuer}/readyz`)).status, 200, 'a mail outage does not make the server unready');

    mailbox.up();
    const got = await mailbox.next('down@example.com');
    assert.equal(got.subject, translate('en', 'mail.forgot-password.subject'));
    assert.match(got.text, new RegExp(code));
    assert.ok(got.text.includes(link), 'the text part keeps the link as is');
    assert.ok(got.html.includes(link.replace('&', '&amp;')), 'the html part escapes the link');
    assert.equal(got.headers.get('from'), 'Test IdP <no-reply@idp.test>');
    assert.equal(got.headers.get('message-id'), `<${id}@idp.test>`);

    const sent = await waitFor('row marked sent', async () => {
      const r = await outboxRow(ts, id);
      return r?.status === 'sent' ? r : undefined;
    });
    assert.ok(sent.sent_at instanceof Date);
    assert.equal(sent.payload_sealed, null, 'the sealed payload is dropped once sent');
    assert.equal(mailbox.all('down@example.com').length, 1);
  });
});

describe('mail outbox while SMTP accepts connections and never answers', () => {
  let ts: TestServer;
  let blackHole: Awaited<ReturnType<typeof startBlackHoleSmtp>>;

  before(async () => {
    blackHole = await startBlackHoleSmtp();
    ts = await startTestServer({ ...mailSettings(blackHole.url), AUTH_API_RATE_LIMIT_PER_IP: '10000' });
  });

  after(async () => {
    // The hung sends end when their connections do; then the server stops without waiting on them.
    await blackHole.stop();
    await stopAndDestroy(ts);
  });

  const post = async (p: string, body: unknown) => {
    const started = Date.now();
    const res = await fetch(new URL(p, ts.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, text, ms: Date.now() - started };
  };

  it('a password reset is answered at once, its mail waiting in the outbox, while the mail worker hangs on SMTP', async () => {
    const { db, box } = ts.server.services;
    const user = await createUser(ts, `Old-${randomBytes(9).toString('base64url')}-1`);
    // Nothing is bounded by time here except "not as long as an SMTP timeout" (10 s of greeting):
    // a request that sent its mail itself would hang on this peer.
    const BOUND_MS = 5_000;

    const requested = await post('/api/v1/auth/password-reset/request', { email: user.email });
    assert.equal(requested.status, 202, requested.text);
    assert.ok(requested.ms < BOUND_MS, `the request answered in ${requested.ms} ms`);
    const resetRow = await waitFor('the reset mail queued', () =>
      db<OutboxRow>('outbox').where({ recipient: user.email, template: 'forgot-password' }).first(),
    );
    await waitFor('the mail worker connected to the silent SMTP peer', () => blackHole.open > 0);

    // The code, read from the outbox as the mail would carry it: the mail itself never arrives.
    const { code } = JSON.parse(box.decrypt(resetRow.payload_sealed!, outboxAad(resetRow.id))) as { code: string };
    const confirmed = await post('/api/v1/auth/password-reset/confirm', { email: user.email, code, password: `New-${randomBytes(9).toString('base64url')}-2` });
    assert.equal(confirmed.status, 200, confirmed.text);
    assert.ok(confirmed.ms < BOUND_MS, `the confirmation, which queues a password-changed mail, answered in ${confirmed.ms} ms`);

    const changed = await db<OutboxRow>('outbox').where({ recipient: user.email, template: 'password-changed' }).first();
    assert.ok(changed, 'the password-changed mail is queued with the change');
    assert.equal(changed.status, 'pending', 'and not sent: SMTP never answered');
    assert.equal((await outboxRow(ts, resetRow.id))!.status, 'pending');
    assert.ok(blackHole.open > 0, 'the worker is still waiting on SMTP');
  });
});

describe('mail outbox over SMTP', () => {
  let ts: TestServer;
  let mailbox: Mailbox;

  const row = (id: string) => outboxRow(ts, id);
  const received = (to: string) => mailbox.inbox.find((m) => m.to.includes(to));

  before(async () => {
    mailbox = await startMailbox();
    ts = await startTestServer(mailSettings(mailbox.url));
  });

  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  it('a mail committed with its transaction arrives with the subject, locale and body of its template', async () => {
    const { db, mail } = ts.server.services;
    const link = `${ts.issuer}/verify?token=tok-vi&a=b`;
    const id = await db.transaction(async (trx) => {
      await trx.raw('select 1');
      return mail.enqueue(
        { to: 'vi@example.com', template: 'verify-email', locale: 'vi', data: { name: 'Ánh <b>', code: '731904', link, expiresInMinutes: 10 } },
        trx,
      );
    });
    const got = await waitFor('the Vietnamese mail', () => received('vi@example.com'));
    assert.equal(got.subject, 'Xác minh địa chỉ email của bạn');
    assert.equal(got.subject, translate('vi', 'mail.verify-email.subject'));
    assert.match(got.text, /Xin chào Ánh <b>,/);
    assert.match(got.text, /731904/);
    assert.match(got.text, /hết hạn sau 10 phút/);
    assert.ok(got.text.includes(link));
    assert.match(got.html, /<html lang="vi">/);
    assert.match(got.html, /Xin chào Ánh &lt;b&gt;,/, 'data is escaped in the html part');
    assert.ok(!got.html.includes('Ánh <b>'));
    assert.ok(got.html.includes(`href="${link.replace('&', '&amp;')}"`));
    await waitFor('row marked sent', async () => ((await row(id))?.status === 'sent' ? true : undefined));
  });

  it('each template renders in both locales', async () => {
    const { db, mail } = ts.server.services;
    const link = `${ts.issuer}/x?token=t`;
    await db.transaction(async (trx) => {
      await mail.enqueue({ to: 'welcome-en@example.com', template: 'welcome', locale: 'en', data: { signInUrl: link, verifyFirst: true } }, trx);
      await mail.enqueue({ to: 'changed-vi@example.com', template: 'password-changed', locale: 'vi', data: { name: 'Lan', resetUrl: link } }, trx);
      await mail.enqueue({ to: 'magic-en@example.com', template: 'magic-link', locale: 'en', data: { link, expiresInMinutes: 5 } }, trx);
      await mail.enqueue({ to: 'magic-vi@example.com', template: 'magic-link', locale: 'vi', data: { link, expiresInMinutes: 5 } }, trx);
    });
    const welcome = await waitFor('welcome', () => received('welcome-en@example.com'));
    assert.equal(welcome.subject, 'Welcome');
    assert.match(welcome.text, /^Hello,\n\nYour account is created/);
    // Registration leaves the address unverified: the welcome must not promise a sign-in before it is.
    assert.match(welcome.text, /Once your address is confirmed, you can sign in/);
    assert.doesNotMatch(welcome.text + welcome.html, /ready/);
    const changed = await waitFor('password-changed', () => received('changed-vi@example.com'));
    assert.equal(changed.subject, 'Mật khẩu của bạn đã được thay đổi');
    assert.match(changed.text, /^Xin chào Lan,/);
    const magicEn = await waitFor('magic-link en', () => received('magic-en@example.com'));
    assert.equal(magicEn.subject, 'Your sign-in link');
    assert.ok(magicEn.text.includes(link));
    const magicVi = await waitFor('magic-link vi', () => received('magic-vi@example.com'));
    assert.equal(magicVi.subject, 'Liên kết đăng nhập của bạn');
  });

  it('a rolled-back transaction sends nothing', async () => {
    const { db, mail } = ts.server.services;
    let id: string | undefined;
    await assert.rejects(
      db.transaction(async (trx) => {
        id = await mail.enqueue(
          { to: 'rollback@example.com', template: 'verify-email', locale: 'en', data: { code: '000111', link: `${ts.issuer}/v`, expiresInMinutes: 10 } },
          trx,
        );
        throw new Error('the change failed');
      }),
      /the change failed/,
    );
    assert.ok(id);
    assert.equal(await row(id), undefined);
    await mailSettled(ts);
    assert.equal(received('rollback@example.com'), undefined);
  });

  it('the sealed payload does not hold the code or the link in clear text', async () => {
    const { db, mail, box } = ts.server.services;
    const code = 'C0DE-917355';
    const link = `${ts.issuer}/reset?token=very-secret-token`;
    await db.transaction(async (trx) => {
      const id = await mail.enqueue({ to: 'sealed@example.com', template: 'forgot-password', locale: 'en', data: { code, link, expiresInMinutes: 15 } }, trx);
      // Read inside the transaction: once committed, the worker sends it and drops the payload.
      const stored = (await trx<OutboxRow>('outbox').where({ id }).first())!;
      assert.equal(stored.status, 'pending');
      assert.equal(stored.recipient, 'sealed@example.com');
      const sealed = stored.payload_sealed ?? '';
      assert.ok(sealed.startsWith('v1.'));
      assert.ok(!sealed.includes(code));
      assert.ok(!sealed.includes('very-secret-token'));
      assert.ok(!JSON.stringify(stored).includes(code));
      assert.deepEqual(JSON.parse(box.decrypt(sealed, outboxAad(id))), { code, link, expiresInMinutes: 15 });
      assert.throws(() => box.decrypt(sealed, outboxAad('another-row')), 'bound to its row');
    });
    const got = await waitFor('the sealed mail', () => received('sealed@example.com'));
    assert.ok(got.text.includes(code));
  });

  it('enqueue refuses a link that is not an absolute http(s) URL and a malformed recipient', async () => {
    const { mail } = ts.server.services;
    await assert.rejects(
      mail.enqueue({ to: 'x@example.com', template: 'magic-link', locale: 'en', data: { link: 'javascript:alert(1)', expiresInMinutes: 5 } }),
      /absolute http\(s\) URL/,
    );
    await assert.rejects(
      mail.enqueue({ to: 'x@example.com', template: 'magic-link', locale: 'en', data: { link: '/relative', expiresInMinutes: 5 } }),
      /absolute http\(s\) URL/,
    );
    await assert.rejects(
      mail.enqueue({ to: 'x@example.com\r\nBcc: y@example.com', template: 'welcome', locale: 'en', data: { signInUrl: ts.issuer } }),
      /invalid mail recipient/,
    );
  });

  it('two concurrent claims never take the same row (skip locked)', async () => {
    const { db, mail, repos } = ts.server.services;
    // The running worker competes for the same rows; whoever claims a row, nobody else gets it.
    const ids = await db.transaction(async (trx) => {
      const out: string[] = [];
      for (let i = 0; i < 6; i++) {
        out.push(await mail.enqueue({ to: `claim${i}@example.com`, template: 'welcome', locale: 'en', data: { signInUrl: ts.issuer } }, trx));
      }
      return out;
    });
    const [a, b] = await Promise.all([repos.outbox.claimDue(3, 60_000), repos.outbox.claimDue(3, 60_000)]);
    const mine = [...a, ...b].map((r) => r.id).filter((id) => ids.includes(id));
    assert.equal(new Set(mine).size, mine.length, 'no row claimed twice');
    // Whatever the two claims took is leased: release it so the worker sends it.
    await db('outbox').whereIn('id', mine).update({ next_attempt_at: db.fn.now() });
    for (let i = 0; i < 6; i++) await waitFor(`claim${i}`, () => received(`claim${i}@example.com`));
    await mailSettled(ts);
    assert.equal(mailbox.inbox.filter((m) => m.to.some((t) => t.startsWith('claim'))).length, 6, 'each sent once');
  });
});

describe('mail outbox without SMTP_URL', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer({ MAIL_POLL_INTERVAL_MS: '50' });
  });

  after(async () => {
    await stopAndDestroy(ts);
  });

  it('writes each mail as a file under DATA_DIR/outbox', async () => {
    const { db, mail } = ts.server.services;
    const link = `${ts.issuer}/welcome?from=test`;
    const id = await db.transaction((trx) =>
      mail.enqueue({ to: 'dev@example.com', template: 'welcome', locale: 'en', data: { name: 'Dev', signInUrl: link } }, trx),
    );
    const dir = path.join(ts.store.dataDir, 'outbox');
    const file = await waitFor('the mail file', () => (existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith(`${id}.eml`)) : undefined));
    assert.match(file, /\.eml$/);
    const got = parseMail(readFileSync(path.join(dir, file), 'utf8'), ['dev@example.com']);
    assert.equal(got.subject, 'Welcome');
    assert.equal(got.headers.get('to'), 'dev@example.com');
    assert.equal(got.headers.get('from'), 'idp <no-reply@localhost>');
    assert.match(got.text, /Hello Dev,/);
    assert.ok(got.text.includes(link));
    await waitFor('row marked sent', async () => ((await db<OutboxRow>('outbox').where({ id }).first())?.status === 'sent' ? true : undefined));
  });
});
