import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/infra/logger.ts';
import { logCapture } from '../helpers/log-capture.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

// What someone meets in their first hour: the page at /, the favicon, and mail without SMTP_URL.

async function outboxFiles(ts: TestServer, id: string): Promise<string[]> {
  const dir = path.join(ts.store.dataDir, 'outbox');
  return waitFor('the mail files', () => {
    const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.includes(id)) : [];
    return files.length === 3 ? files.map((f) => path.join(dir, f)).sort() : undefined;
  });
}

describe('first hour: development', () => {
  let ts: TestServer;
  const logs = logCapture();

  before(async () => {
    ts = await startTestServer({ NODE_ENV: 'development', LOG_LEVEL: 'info' }, { logger: createLogger('info', logs.stream) });
  });
  after(() => stopAndDestroy(ts));

  it('the development boot log ends with readable next steps', () => {
    const messages = logs.messages();
    const listening = messages.indexOf('listening');
    assert.ok(listening >= 0);
    const after = messages.slice(listening + 1).filter((m) => m.startsWith('next: '));
    assert.ok(after[0]?.includes(`${ts.issuer}/`), after[0]);
    assert.ok(after.some((m) => m.includes('npx idp demo')));
    assert.ok(after.some((m) => m.includes('Register your first application')));
    assert.ok(after.some((m) => m.includes(path.join(ts.store.dataDir, 'outbox'))), 'where mail goes without SMTP_URL');
  });

  it('GET / shows the issuer, discovery, the account console and how to run the demo', async () => {
    const res = await fetch(`${ts.issuer}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const html = await res.text();
    assert.ok(html.includes(`<code>${ts.issuer}</code>`), 'the issuer');
    assert.ok(html.includes(`href="${ts.issuer}/.well-known/openid-configuration"`), 'the discovery link');
    assert.ok(html.includes('href="/account"'), 'the account console');
    assert.match(html, /README\.md/);
    assert.match(html, /npx idp demo/);
  });

  it('GET / follows Accept-Language', async () => {
    const res = await fetch(`${ts.issuer}/`, { headers: { 'accept-language': 'vi-VN,vi;q=0.9' } });
    assert.equal(res.headers.get('content-language'), 'vi');
    assert.match(await res.text(), /Máy chủ OpenID Connect/);
  });

  it('/favicon.ico is an icon', async () => {
    const res = await fetch(`${ts.issuer}/favicon.ico`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/x-icon');
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.deepEqual([...bytes.subarray(0, 4)], [0, 0, 1, 0], 'ICO header');
  });

  it('without SMTP_URL a mail is written readable next to its .eml and logged once with its code and link', async () => {
    const { db, mail } = ts.server.services;
    const link = `${ts.issuer}/verify-email/link?token=${randomBytes(8).toString('hex')}`;
    const id = await db.transaction((trx) =>
      mail.enqueue({ to: 'lan@example.com', template: 'verify-email', locale: 'vi', data: { name: 'Lan', code: '482913', link, expiresInMinutes: 15 } }, trx),
    );
    const [eml, html, txt] = await outboxFiles(ts, id);
    assert.match(eml!, /\.eml$/);
    assert.match(html!, /\.html$/);
    assert.match(txt!, /\.txt$/);
    const text = readFileSync(txt!, 'utf8');
    assert.match(text, /^To: lan@example\.com\nSubject: /);
    assert.ok(text.includes('Xin chào Lan'), 'decoded UTF-8, not quoted-printable');
    assert.ok(text.includes('482913') && text.includes(link));
    assert.match(readFileSync(html!, 'utf8'), /<html lang="vi">/);

    const line = await waitFor('the log line', () => logs.lines.find((l) => l.mailId === id));
    assert.ok(String(line.msg).includes('code 482913'), `the code in ${String(line.msg)}`);
    assert.ok(String(line.msg).includes(link), 'the link');
    assert.equal(line.body, undefined, 'no JSON-escaped body');
    assert.equal(line.file, txt);
    await waitFor('row marked sent', async () => ((await db('outbox').where({ id }).first())?.status === 'sent' ? true : undefined));
    const about = logs.lines.filter((l) => l.mailId === id).map((l) => String(l.msg));
    assert.equal(about.length, 1, `one line about the mail, got ${JSON.stringify(about)}`);
  });
});

describe('first hour: production', () => {
  let ts: TestServer;
  const logs = logCapture();

  before(async () => {
    ts = await startTestServer(
      { NODE_ENV: 'production', ISSUER: 'https://idp.example.test', LOG_LEVEL: 'info', KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64url') },
      { logger: createLogger('info', logs.stream) },
    );
  });
  after(() => stopAndDestroy(ts));

  it('GET / leaves out the development demo, and the boot log has no next steps', async () => {
    assert.ok(logs.messages().includes('listening'));
    assert.ok(!logs.messages().some((m) => m.startsWith('next: ')));
    const html = await (await fetch(`http://127.0.0.1:${ts.port}/`)).text();
    assert.ok(html.includes('<code>https://idp.example.test</code>'));
    assert.doesNotMatch(html, /idp demo/);
  });

  it('a mail written to the outbox never puts its code or link in the log', async () => {
    const { db, mail } = ts.server.services;
    const link = `https://idp.example.test/verify-email/link?token=${randomBytes(8).toString('hex')}`;
    const id = await db.transaction((trx) =>
      mail.enqueue({ to: 'prod@example.com', template: 'verify-email', locale: 'en', data: { code: '731904', link, expiresInMinutes: 15 } }, trx),
    );
    await outboxFiles(ts, id);
    const line = await waitFor('the log line', () => logs.lines.find((l) => l.mailId === id));
    assert.match(String(line.msg), /not sent/);
    const everything = JSON.stringify(logs.lines);
    assert.ok(!everything.includes('731904'), 'no code in any log line');
    assert.ok(!everything.includes(link), 'no link in any log line');
  });
});
