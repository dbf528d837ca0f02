import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

// MAIL_RETRY_BASE_MS / MAIL_RETRY_MAX_MS: after a failed send the next attempt is the base away,
// doubling per failure, capped at the maximum; the mail is never dropped.
const BASE_MS = 300;
const MAX_MS = 1000;
const EXPECTED = [300, 600, 1000, 1000]; // after failures 1, 2, 3 (600 doubled to 1200, capped) and 4

/** An SMTP server that is always down: it greets every connection with 421 and hangs up. */
async function failingSmtp() {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.on('error', () => {});
    socket.end('421 4.3.2 Service not available, closing transmission channel\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `smtp://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('mail retry backoff', () => {
  let ts: TestServer;
  let smtp: Awaited<ReturnType<typeof failingSmtp>>;
  before(async () => {
    smtp = await failingSmtp();
    ts = await startTestServer({
      SMTP_URL: smtp.url,
      MAIL_POLL_INTERVAL_MS: '20',
      MAIL_RETRY_BASE_MS: String(BASE_MS),
      MAIL_RETRY_MAX_MS: String(MAX_MS),
    });
  });
  after(async () => {
    await stopAndDestroy(ts);
    await smtp.close();
  });

  it('doubles the delay after each failed send from MAIL_RETRY_BASE_MS up to MAIL_RETRY_MAX_MS, and keeps the mail', async () => {
    const { db, mail } = ts.server.services;
    const id = await db.transaction((trx) =>
      mail.enqueue({ to: 'backoff@example.com', template: 'forgot-password', locale: 'en', data: { code: '123456', link: `${ts.issuer}/reset?token=t`, expiresInMinutes: 15 } }, trx),
    );

    // The row as the database sees it, with the database's clock (the one next_attempt_at is set by).
    const look = async () => {
      const { rows } = (await db.raw(
        `select attempts, status, last_error, payload_sealed is not null as sealed,
                (extract(epoch from next_attempt_at) * 1000)::float8 as next_ms, (extract(epoch from clock_timestamp()) * 1000)::float8 as now_ms
           from outbox where id = ?`,
        [id],
      )) as { rows: Array<{ attempts: number; status: string; last_error: string | null; sealed: boolean; next_ms: number; now_ms: number }> };
      return rows[0]!;
    };

    // Each failure's delay lies between next_attempt_at minus the first time the new count was seen
    // and next_attempt_at minus the last time the old count was seen: the failure happened between.
    let last = await look();
    assert.equal(last.attempts, 0);
    const delays: Array<{ atLeast: number; atMost: number }> = [];
    for (let failures = 1; failures <= EXPECTED.length; failures++) {
      const now = await waitFor(`failure ${failures}`, async () => {
        const row = await look();
        if (row.attempts < failures) last = row;
        return row.attempts >= failures ? row : undefined;
      });
      assert.equal(now.attempts, failures, 'each failure is counted once');
      assert.equal(now.status, 'pending', 'a failed mail stays pending');
      assert.ok(now.sealed, 'its payload is kept for the next attempt');
      assert.match(now.last_error ?? '', /421|Service not available/, 'last_error says why');
      delays.push({ atLeast: now.next_ms - now.now_ms, atMost: now.next_ms - last.now_ms });
      last = now;
    }

    // 25 ms of slack for the statement that reads and the one that writes overlapping.
    delays.forEach(({ atLeast, atMost }, i) => {
      const expected = EXPECTED[i]!;
      assert.ok(
        atLeast <= expected + 25 && expected <= atMost + 25,
        `failure ${i + 1}: next attempt ${Math.round(atLeast)}..${Math.round(atMost)} ms after it, expected ${expected} ms (${JSON.stringify(delays.map((d) => Math.round(d.atLeast)))})`,
      );
    });
    assert.ok(smtp.connections() >= EXPECTED.length, 'each attempt reached the SMTP server');
  });
});
