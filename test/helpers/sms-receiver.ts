import type http from 'node:http';
import { listenOn, portOf } from './server.ts';

/** One message the webhook provider posted: its JSON body and the Authorization header it sent. */
export interface ReceivedSms {
  to: string;
  text: string;
  authorization: string | undefined;
}

/**
 * A local HTTP receiver for SMS_PROVIDER=webhook: it keeps every {to, text} posted to it. `mode`
 * makes it fail as a real gateway can: `down` answers 502, `hang` never answers (the provider's
 * timeout must give up on its own).
 */
export async function startSmsReceiver() {
  const received: ReceivedSms[] = [];
  let mode: 'up' | 'down' | 'hang' = 'up';
  const hanging = new Set<http.ServerResponse>();
  const server = await listenOn(0);
  server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (mode === 'hang') return void hanging.add(res);
      if (mode === 'down') return void res.writeHead(502).end('gateway down');
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { to: string; text: string };
      received.push({ to: body.to, text: body.text, authorization: req.headers.authorization });
      res.writeHead(202, { 'content-type': 'application/json' }).end('{"queued":true}');
    });
  });
  const url = `http://127.0.0.1:${portOf(server)}/sms`;
  return {
    url,
    received,
    setMode(next: 'up' | 'down' | 'hang') {
      mode = next;
    },
    /** The latest message to `to` (the webhook posts within the request that sends it: no waiting). */
    last(to: string): ReceivedSms {
      const mine = received.filter((m) => m.to === to);
      if (!mine.length) throw new Error(`no SMS to ${to}`);
      return mine[mine.length - 1]!;
    },
    /** The 6-digit code of the latest message to `to`. */
    codeOf(to: string): string {
      const code = /\b(\d{6})\b/.exec(this.last(to).text)?.[1];
      if (!code) throw new Error(`no code texted to ${to}`);
      return code;
    },
    async stop() {
      for (const res of hanging) res.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

export type SmsReceiver = Awaited<ReturnType<typeof startSmsReceiver>>;
