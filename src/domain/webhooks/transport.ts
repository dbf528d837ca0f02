import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { isForbiddenAddress, literalAddress } from './addresses.ts';

/** A delivery this side refused to make: the receiver's address is in a forbidden range. */
export class ForbiddenAddress extends Error {
  readonly code = 'EWEBHOOK_FORBIDDEN_ADDRESS';
}

export interface PostResult {
  status: number;
  latencyMs: number;
}

/**
 * Resolves like the system does, keeps only the addresses a webhook may reach, and hands those
 * to the socket: the address checked is the address connected to, so a name that resolves
 * differently a moment later (DNS rebinding) changes nothing.
 */
function checkedLookup(allowPrivateNetworks: boolean): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const usable = allowPrivateNetworks ? addresses : addresses.filter((a) => !isForbiddenAddress(a.address));
      if (!usable.length) return callback(new ForbiddenAddress(`${hostname} resolves only to forbidden addresses`), '', 0);
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, usable);
      callback(null, usable[0]!.address, usable[0]!.family);
    });
  };
}

const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * POSTs a webhook body (JSON unless the headers name another content type). Redirects are not followed (any 3xx is a failure), the whole exchange has
 * `timeoutMs`, a new connection is used each time, and the response body is read (up to 64 KiB)
 * and dropped. Rejects with ForbiddenAddress, a network error, or an AbortError on timeout.
 */
export async function postWebhook(opts: {
  url: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  allowPrivateNetworks: boolean;
  /** Cuts the attempt short (shutdown). */
  signal?: AbortSignal;
}): Promise<PostResult> {
  const url = new URL(opts.url);
  const literal = literalAddress(url);
  // An IP literal never reaches the lookup: it is checked here.
  if (literal && !opts.allowPrivateNetworks && isForbiddenAddress(literal)) throw new ForbiddenAddress(`${literal} is a forbidden address`);
  const client = url.protocol === 'https:' ? https : http;
  const started = performance.now();
  return new Promise<PostResult>((resolve, reject) => {
    const req = client.request(url, {
      method: 'POST',
      agent: false,
      lookup: checkedLookup(opts.allowPrivateNetworks),
      signal: opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs)]) : AbortSignal.timeout(opts.timeoutMs),
      headers: {
        'content-type': 'application/json',
        ...opts.headers,
        'content-length': String(Buffer.byteLength(opts.body)),
        'user-agent': 'idp-webhooks/1',
        connection: 'close',
      },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let read = 0;
      const done = () => resolve({ status: res.statusCode ?? 0, latencyMs: Math.round(performance.now() - started) });
      res.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > MAX_RESPONSE_BYTES) {
          res.destroy();
          done();
        }
      });
      res.on('end', done);
      res.on('error', () => done());
    });
    req.end(opts.body);
  });
}
