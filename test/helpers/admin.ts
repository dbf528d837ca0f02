import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ADMIN_SCOPES, adminAudience } from '../../src/domain/clients/admin-scopes.ts';
import { startTestServer, type TestServer } from './server.ts';

/**
 * The admin API through HTTP with real tokens: a server with the bootstrap admin client, tokens
 * from POST /token (client_credentials, resource = the admin audience), and a small JSON client
 * that keeps every answer it saw so a test can check that none ever carried a secret.
 */

export const ADMIN_CLIENT_ID = 'admin';
export const ADMIN_CLIENT_SECRET = `bootstrap-admin-secret-${randomBytes(24).toString('base64url')}`;
export const ALL_SCOPES: readonly string[] = ADMIN_SCOPES;

export function startAdminServer(overrides: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer({
    BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID,
    BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET,
    ...overrides,
  });
}

export const basic = (id: string, secret: string) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** POST /token with HTTP Basic client authentication; answers the status and the JSON body. */
export async function tokenRequest(
  ts: TestServer,
  client: { id: string; secret: string },
  params: Record<string, string>,
): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(new URL('/token', ts.issuer), {
    method: 'POST',
    headers: { authorization: basic(client.id, client.secret), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

const bootstrap = { id: ADMIN_CLIENT_ID, secret: ADMIN_CLIENT_SECRET };

/** An admin access token (a JWT for `${issuer}/api/v1`) with the given scopes. */
export async function adminToken(
  ts: TestServer,
  scopes: readonly string[] = ALL_SCOPES,
  client: { id: string; secret: string } = bootstrap,
): Promise<string> {
  const { status, body } = await tokenRequest(ts, client, {
    grant_type: 'client_credentials',
    resource: adminAudience(ts.issuer),
    scope: scopes.join(' '),
  });
  assert.equal(status, 200, `token request failed: ${JSON.stringify(body)}`);
  return body.access_token as string;
}

export interface ApiAnswer {
  status: number;
  headers: Headers;
  text: string;
  body: any;
}

export interface CallOptions {
  /** A JSON value to send (serialised here). */
  json?: unknown;
  /** A raw body, sent as is (Content-Type from headers, application/json by default). */
  raw?: string;
  headers?: Record<string, string>;
  /** Another token for this call; null sends no Authorization header. */
  token?: string | null;
}

/** Every answer's text in this process, for the "no secret ever leaves" checks. */
export const seenAnswers: string[] = [];

export class AdminApi {
  readonly ts: TestServer;
  token: string;

  constructor(ts: TestServer, token: string) {
    this.ts = ts;
    this.token = token;
  }

  url(path: string): URL {
    return new URL(`/api/v1${path}`, this.ts.issuer);
  }

  async call(method: string, path: string, opts: CallOptions = {}): Promise<ApiAnswer> {
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    const token = opts.token === undefined ? this.token : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.json !== undefined) body = JSON.stringify(opts.json);
    if (opts.raw !== undefined) body = opts.raw;
    if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(this.url(path), { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    seenAnswers.push(text);
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, text, body: parsed };
  }

  get = (path: string, opts?: CallOptions) => this.call('GET', path, opts);
  post = (path: string, json?: unknown, opts: CallOptions = {}) =>
    this.call('POST', path, json === undefined ? opts : { ...opts, json });
  patch = (path: string, json: unknown, opts: CallOptions = {}) => this.call('PATCH', path, { ...opts, json });
  delete = (path: string, opts?: CallOptions) => this.call('DELETE', path, opts);
}

/**
 * The error envelope: exactly {error, message, requestId, timestamp}, with this status and code
 * (and `reasons` on a refused password).
 */
export function assertError(res: ApiAnswer, status: number, code: string, what = '') {
  const where = `${what} ${res.status} ${res.text.slice(0, 300)}`;
  assert.equal(res.status, status, where);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/, where);
  const keys = ['error', 'message', ...(code === 'IDENT_PASSWORD_POLICY' ? ['reasons'] : []), 'requestId', 'timestamp'];
  assert.deepEqual(Object.keys(res.body ?? {}).sort(), keys, where);
  assert.equal(res.body.error, code, where);
  assert.equal(typeof res.body.message, 'string');
  assert.ok(res.body.message.length > 0);
  assert.equal(res.body.requestId, res.headers.get('x-request-id'), 'the envelope carries the echoed request id');
  assert.ok(Math.abs(Date.parse(res.body.timestamp) - Date.now()) < 60_000, 'timestamp is an ISO date of now');
}

/** A 4xx answer with the envelope, whatever the code. */
export function assertClientError(res: ApiAnswer, what = '') {
  const where = `${what}: ${res.status} ${res.text.slice(0, 300)}`;
  assert.ok(res.status >= 400 && res.status < 500, where);
  const keys = ['error', 'message', ...(res.body?.error === 'IDENT_PASSWORD_POLICY' ? ['reasons'] : []), 'requestId', 'timestamp'];
  assert.deepEqual(Object.keys(res.body ?? {}).sort(), keys, where);
  assert.match(res.body.error, /^IDENT_/, where);
  assert.notEqual(res.body.error, 'IDENT_INTERNAL', where);
}

let n = 0;
/** A unique marker for names and emails of one test. */
export function marker(prefix = 'm'): string {
  return `${prefix}${Date.now().toString(36)}${(n++).toString(36)}${randomBytes(3).toString('hex')}`;
}
