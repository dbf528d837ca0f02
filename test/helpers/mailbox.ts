import net from 'node:net';
import { SMTPServer } from 'smtp-server';
import { detachedWorkSettled } from '../../src/domain/detached.ts';
import type { TestServer } from './server.ts';
import { waitFor } from './wait.ts';

// A real SMTP server for tests: it keeps every message it accepts, parsed just enough to read
// subjects, text and HTML parts (nodemailer's multipart/alternative).

export interface Received {
  to: string[];
  subject: string;
  headers: Map<string, string>;
  text: string;
  html: string;
  raw: string;
}

/** Decodes RFC 2047 encoded words (=?UTF-8?Q?...?= / =?UTF-8?B?...?=) of an unfolded header. */
function decodeHeader(value: string): string {
  return value
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?utf-8\?([qb])\?([^?]*)\?=/gi, (_, enc: string, body: string) =>
      enc.toLowerCase() === 'b'
        ? Buffer.from(body, 'base64').toString('utf8')
        : decodeQp(body.replace(/_/g, ' ')),
    );
}

function decodeQp(body: string): string {
  const soft = body.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    const hex = soft.slice(i + 1, i + 3);
    if (soft[i] === '=' && /^[0-9A-F]{2}$/i.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(soft[i] as string, 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

function parseHeaders(block: string): Map<string, string> {
  const headers = new Map<string, string>();
  for (const line of block.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0) headers.set(line.slice(0, at).trim().toLowerCase(), line.slice(at + 1).trim());
  }
  return headers;
}

function decodePart(headers: Map<string, string>, body: string): string {
  const encoding = (headers.get('content-transfer-encoding') ?? '7bit').toLowerCase();
  if (encoding === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (encoding === 'quoted-printable') return decodeQp(body);
  return body;
}

/** Just enough MIME for nodemailer's multipart/alternative (text + html) messages. */
export function parseMail(raw: string, to: string[]): Received {
  const split = raw.search(/\r?\n\r?\n/);
  const headers = parseHeaders(raw.slice(0, split));
  const body = raw.slice(split).replace(/^\r?\n\r?\n/, '');
  const parts: Record<string, string> = {};
  const boundary = /boundary="?([^";]+)"?/.exec(headers.get('content-type') ?? '')?.[1];
  const chunks = boundary ? body.split(`--${boundary}`).slice(1, -1) : [body];
  for (const chunk of chunks) {
    const at = chunk.search(/\r?\n\r?\n/);
    const partHeaders = boundary ? parseHeaders(chunk.slice(0, at)) : headers;
    const partBody = boundary ? chunk.slice(at).replace(/^\r?\n\r?\n/, '').replace(/\r?\n$/, '') : chunk;
    const type = (partHeaders.get('content-type') ?? 'text/plain').split(';')[0]!.trim();
    parts[type] = decodePart(partHeaders, partBody);
  }
  return {
    to,
    subject: decodeHeader(headers.get('subject') ?? ''),
    headers,
    text: (parts['text/plain'] ?? '').replace(/\r\n/g, '\n'),
    html: parts['text/html'] ?? '',
    raw,
  };
}

/**
 * A real SMTP server that keeps every message it accepts. It does not listen itself: the caller
 * hands it connections (`server.emit('connection', socket)`), see startMailbox.
 */
export function smtpServer(inbox: Received[]): SMTPServer {
  return new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        inbox.push(parseMail(Buffer.concat(chunks).toString('utf8'), session.envelope.rcptTo.map((r) => r.address)));
        callback();
      });
    },
  });
}

/** A TCP listener on 127.0.0.1, port 0 (a free port the system picks and we hold) unless told. */
async function listenTcp(onConnection: (socket: net.Socket) => void, port = 0): Promise<net.Server> {
  const server = net.createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

const closeTcp = (server: net.Server, sockets: Set<net.Socket>) =>
  new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  });

/**
 * An SMTP peer that accepts TCP connections and never says a word: a sender waiting for its
 * greeting hangs until its own timeout.
 */
export async function startBlackHoleSmtp() {
  const sockets = new Set<net.Socket>();
  const server = await listenTcp((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `smtp://127.0.0.1:${port}`,
    /** Connections accepted so far and still open. */
    get open() {
      return sockets.size;
    },
    stop: () => closeTcp(server, sockets),
  };
}
/** Kept here for the files that import it from the mailbox helpers. */
export { waitFor };

/** Server settings that send mail to `smtpUrl` promptly and retry fast (tests wait for mail). */
export function fastMailSettings(smtpUrl: string): Record<string, string> {
  return { SMTP_URL: smtpUrl, MAIL_POLL_INTERVAL_MS: '50', MAIL_RETRY_BASE_MS: '100', MAIL_RETRY_MAX_MS: '400' };
}

/**
 * A mailbox on a port of its own (bound once, on port 0, and held until stop): `next(to, subject)`
 * waits for the next unread mail matching both. `down()` simulates an outage without giving the
 * port up: connections are accepted and reset at once (ECONNRESET/ECONNREFUSED-like for the
 * sender); `up()` serves SMTP again on the same port.
 */
export async function startMailbox() {
  const inbox: Received[] = [];
  const read = new Set<Received>();
  const smtp = smtpServer(inbox);
  const sockets = new Set<net.Socket>();
  let serving = true;
  const tcp = await listenTcp((socket) => {
    if (!serving) {
      socket.on('error', () => {});
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    smtp.server.emit('connection', socket);
  });
  const port = (tcp.address() as net.AddressInfo).port;
  let stopped = false;
  return {
    inbox,
    port,
    url: `smtp://127.0.0.1:${port}`,
    async next(to: string, subject?: RegExp, timeoutMs = 15_000): Promise<Received> {
      const mail = await waitFor(`mail to ${to}${subject ? ` ${subject}` : ''}`, () =>
        inbox.find((m) => !read.has(m) && m.to.includes(to) && (!subject || subject.test(m.subject))), timeoutMs);
      read.add(mail);
      return mail;
    },
    /** Every mail to `to` so far. */
    all(to: string): Received[] {
      return inbox.filter((m) => m.to.includes(to));
    },
    /** An outage: the port stays ours, every connection (open or new) is reset. */
    down() {
      serving = false;
      for (const s of sockets) s.resetAndDestroy();
    },
    /** Back from the outage. */
    up() {
      serving = true;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await closeTcp(tcp, sockets);
      await new Promise<void>((resolve) => smtp.close(() => resolve()));
    },
  };
}

/**
 * Waits until the mail of everything done so far has gone out: the detached work of the account
 * flows (which queues their mail after the answer) has finished and the outbox holds no pending
 * row. A "nothing was sent" check made after this cannot pass merely because mail is slow.
 */
export async function mailSettled(ts: TestServer, timeoutMs = 15_000): Promise<void> {
  await detachedWorkSettled();
  await waitFor(
    'the outbox to drain (no pending mail)',
    async () => (await ts.server.services.db('outbox').where({ status: 'pending' }).first('id')) === undefined,
    timeoutMs,
  );
}

export type Mailbox = Awaited<ReturnType<typeof startMailbox>>;

/** The 6-digit code and the first link under `issuer` in a mail's text part. */
export function codeAndLink(mail: Received, issuer: string): { code?: string; link?: string } {
  const code = /^\s*(\d{6})\s*$/m.exec(mail.text)?.[1];
  const link = mail.text.split(/\s+/).find((w) => w.startsWith(issuer + '/'));
  return { ...(code ? { code } : {}), ...(link ? { link } : {}) };
}
