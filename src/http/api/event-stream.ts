import Router from '@koa/router';
import type { JSONWebKeySet } from 'jose';
import type { Context } from 'koa';
import type { Writable } from 'node:stream';
import { z } from 'zod';
import { ADMIN_TOKEN_TTL_SECONDS } from '../../domain/clients/admin-scopes.ts';
import { AppError } from '../../domain/errors.ts';
import type { RecordedEvent } from '../../domain/events/events.ts';
import type { EventStream, StreamSink, StreamSubscription } from '../../domain/events/stream.ts';
import { streamFilter } from '../../domain/events/stream-topics.ts';
import type { Logger } from '../../infra/logger.ts';
import { auditEventView } from './audit-schemas.ts';
import { bearerAuth, requireScope, tenantScope, type Caller } from './auth.ts';
import type { ApiKeys } from '../../domain/access/api-keys.ts';
import type { Tenants } from '../../domain/tenants/tenants.ts';
import { parse } from './validate.ts';

// GET /api/v1/events/stream: the audit trail live, as server-sent events, for dashboards.

export interface StreamLimits {
  /** A comment line this often keeps proxies from closing an idle stream. */
  heartbeatMs: number;
  /**
   * Bytes a stream may have written but not yet sent before its client counts as too slow: it is
   * disconnected and resumes from the table with Last-Event-ID, instead of growing our memory.
   */
  maxBufferedBytes: number;
}

const LIMITS: StreamLimits = { heartbeatMs: 15_000, maxBufferedBytes: 1024 * 1024 };
// Replay writes wait for the client below this many buffered bytes (it sets the pace).
const REPLAY_HIGH_WATER = 64 * 1024;

const streamQuery = z.object({
  types: z.string().max(2000).optional(),
  topics: z.string().max(200).optional(),
});

/** Last-Event-ID is the seq of the last event the client saw (the `id:` we sent). */
function lastEventId(ctx: Context): string | undefined {
  const header = ctx.get('last-event-id').trim();
  if (!header) return undefined;
  if (!/^[0-9]{1,19}$/.test(header) || BigInt(header) > 2n ** 63n - 1n) {
    throw new AppError('IDENT_VALIDATION', 'Last-Event-ID: give the id of the last event received (a number)');
  }
  return BigInt(header).toString();
}

/**
 * When the stream ends: when the caller's bearer token (already verified) expires. A stream opened
 * with an API key lasts no longer than one opened with a token (ADMIN_TOKEN_TTL_SECONDS, or the
 * key's expiry if sooner): the client comes back with the key, which is checked again then, so a
 * revoked key's stream ends within that time.
 */
function streamExpiry(ctx: Context): number {
  const caller = ctx.state.caller as Caller;
  const cap = Date.now() + ADMIN_TOKEN_TTL_SECONDS * 1000;
  if (caller.apiKeyId) return Math.min(caller.expiresAt ?? cap, cap);
  return caller.expiresAt ?? cap;
}

/** One SSE message (the data is one JSON line: JSON.stringify escapes line breaks). */
export const sseEvent = (event: RecordedEvent) => `id: ${event.seq}\ndata: ${JSON.stringify(auditEventView(event))}\n\n`;

/**
 * A stream's writer over the response: bounded (a client that lets more than maxBufferedBytes pile
 * up is cut off; it resumes with Last-Event-ID) and paced for replays (ready waits for drain).
 */
export function createSseSink(out: Writable, limits: Pick<StreamLimits, 'maxBufferedBytes'>, onDrop: () => void) {
  let lastSent: string | undefined;
  let gone = false;
  const write = (text: string) => {
    if (gone || out.destroyed || out.writableEnded) return;
    out.write(text);
    if (out.writableLength > limits.maxBufferedBytes) {
      gone = true;
      onDrop();
      out.destroy();
    }
  };
  const sink: StreamSink = {
    send(event) {
      write(sseEvent(event));
      lastSent = event.seq;
    },
    async ready() {
      if (gone || out.destroyed || out.writableEnded) return false;
      if (out.writableLength < REPLAY_HIGH_WATER) return true;
      await new Promise<void>((resolve) => {
        const done = () => {
          out.off('drain', done);
          out.off('close', done);
          resolve();
        };
        out.on('drain', done);
        out.on('close', done);
      });
      return !(gone || out.destroyed || out.writableEnded);
    },
    end() {
      finish(': the server is stopping; reconnect with Last-Event-ID\n\n');
    },
  };
  function finish(comment: string) {
    if (gone) return;
    gone = true;
    if (!out.destroyed && !out.writableEnded) out.end(comment);
  }
  return {
    sink,
    /** A comment line; with a watermark past the last event sent, an `id:` too, so a filtered
     * stream's client resumes from there rather than from its last matching event. */
    heartbeat(watermark: string | undefined) {
      const id = watermark !== undefined && watermark !== '0' && (lastSent === undefined || BigInt(watermark) > BigInt(lastSent)) ? `id: ${watermark}\n` : '';
      write(`: keep-alive\n${id}\n`);
      if (id) lastSent = watermark;
    },
    comment: (text: string) => write(`: ${text}\n\n`),
    finish,
    get gone() {
      return gone || out.destroyed;
    },
  };
}

export function eventStreamRoutes(deps: {
  issuer: string;
  audience: string;
  publicJwks: JSONWebKeySet;
  tenants: Tenants;
  apiKeys?: ApiKeys;
  stream: EventStream;
  logger: Logger;
  limits?: Partial<StreamLimits>;
}): Router {
  const limits = { ...LIMITS, ...deps.limits };
  const router = new Router({ prefix: '/api/v1' });
  const auth = bearerAuth({ issuer: deps.issuer, audience: deps.audience, publicJwks: deps.publicJwks, tenants: deps.tenants, apiKeys: deps.apiKeys });

  router.get('/events/stream', auth, async (ctx) => {
    requireScope(ctx, 'iam.audit:read');
    const query = parse(streamQuery, ctx.query, 'query');
    const matches = streamFilter(tenantScope(ctx), query);
    const after = lastEventId(ctx);
    const expiresAt = streamExpiry(ctx);

    if (ctx.method === 'HEAD') {
      ctx.status = 200;
      ctx.type = 'text/event-stream';
      return;
    }
    // Where the stream starts is fixed before the client hears it is open: whatever commits once
    // it has the headers reaches it.
    const pending = await deps.stream.begin(after);
    ctx.status = 200;
    ctx.set('Content-Type', 'text/event-stream; charset=utf-8');
    ctx.set('Cache-Control', 'no-store');
    // nginx and similar proxies buffer responses unless told not to.
    ctx.set('X-Accel-Buffering', 'no');
    // The connection ends with the stream: a stopping server is not held up by a kept-alive socket.
    ctx.set('Connection', 'close');
    // Koa leaves the response to us: nothing buffers or rewrites the stream.
    ctx.respond = false;
    const res = ctx.res;
    res.flushHeaders();
    let isClosed = false;
    const closed = new Promise<void>((resolve) =>
      res.once('close', () => {
        isClosed = true;
        resolve();
      }),
    );
    const writer = createSseSink(res, limits, () => deps.logger.info({ requestId: ctx.state.requestId }, 'event stream: client too slow, disconnected'));
    res.write(`retry: 2000\n: stream open\n\n`);

    let subscription: StreamSubscription | undefined;
    const heartbeat = setInterval(() => writer.heartbeat(subscription?.watermark), limits.heartbeatMs);
    // The stream lives as long as the token that opened it: the client comes back with a new one.
    const expiry = setTimeout(
      () => writer.finish(': the access token expired; reconnect with a new token and Last-Event-ID\n\n'),
      Math.max(0, expiresAt - Date.now()),
    );
    try {
      subscription = await pending.attach(matches, writer.sink);
      if (isClosed || writer.gone) subscription.close();
      await closed;
    } catch (err) {
      deps.logger.warn({ err, requestId: ctx.state.requestId }, 'event stream failed');
      writer.finish(': the stream failed; reconnect with Last-Event-ID\n\n');
    } finally {
      clearInterval(heartbeat);
      clearTimeout(expiry);
      subscription?.close();
      pending.close();
    }
  });
  return router;
}
