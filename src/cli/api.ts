import { adminAudience, type AdminScope } from '../domain/clients/admin-scopes.ts';
import type { Args } from './args.ts';
import { ApiError, UsageError } from './errors.ts';
import { jsonOrThrow, send } from './http.ts';

export interface Connection {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** The tenant to act in (X-Tenant-Id); the client's own when unset. */
  tenant?: string;
}

export interface Page<T> {
  data: T[];
  page: number;
  pageSize: number;
  total: number;
}

/**
 * Flags first, then IDP_* (the CLI's own), then the server's own settings, so on the server's
 * host the bootstrap admin client works with no further setup.
 */
export function resolveConnection(args: Args, env: NodeJS.ProcessEnv = process.env): Connection {
  const pick = (...values: (string | undefined)[]) => values.find((v) => v !== undefined && v !== '');
  const issuer = pick(args.string('issuer'), env.IDP_ISSUER, env.ISSUER) ?? `http://localhost:${env.PORT || 3000}`;
  const clientId = pick(args.string('client-id'), env.IDP_CLIENT_ID, env.BOOTSTRAP_ADMIN_CLIENT_ID);
  const clientSecret = pick(args.string('client-secret'), env.IDP_CLIENT_SECRET, env.BOOTSTRAP_ADMIN_CLIENT_SECRET);
  const missing = [!clientId && '--client-id (or IDP_CLIENT_ID)', !clientSecret && '--client-secret (or IDP_CLIENT_SECRET)'].filter(Boolean);
  if (missing.length) throw new UsageError(`missing credentials: set ${missing.join(' and ')}`);
  if (!URL.canParse(issuer) || !/^https?:$/.test(new URL(issuer).protocol)) {
    throw new UsageError(`the issuer "${issuer}" is not an http(s) URL`);
  }
  // The server strips a trailing slash from its issuer; the admin audience is built from it.
  const tenant = pick(args.string('tenant'), env.IDP_TENANT);
  return { issuer: issuer.replace(/\/+$/, ''), clientId: clientId!, clientSecret: clientSecret!, ...(tenant ? { tenant } : {}) };
}

type Query = Record<string, string | number | undefined>;

/** The admin API under <issuer>/api/v1, with a client_credentials token fetched on first use. */
export class AdminApi {
  readonly issuer: string;
  readonly #connection: Connection;
  readonly #scopes: AdminScope[];
  /** Required plus if-held scopes, until the token endpoint says the client lacks some of them. */
  #wanted: AdminScope[];
  #token: { value: string; expiresAt: number } | undefined;

  constructor(connection: Connection, scopes: AdminScope[], ifHeld: AdminScope[] = []) {
    this.#connection = connection;
    this.issuer = connection.issuer;
    this.#scopes = [...new Set(scopes)];
    this.#wanted = [...new Set([...scopes, ...ifHeld])];
  }

  async #accessToken(): Promise<string> {
    // Admin tokens live minutes; take a new one shortly before this one runs out.
    if (this.#token && this.#token.expiresAt > Date.now() + 10_000) return this.#token.value;
    try {
      return await this.#requestToken(this.#wanted);
    } catch (err) {
      // The client lacks some of the if-held scopes: the required ones alone, then.
      if (!(err instanceof ApiError && err.code === 'invalid_scope') || this.#wanted.length === this.#scopes.length) throw err;
      this.#wanted = this.#scopes;
      return this.#requestToken(this.#wanted);
    }
  }

  async #requestToken(scopes: AdminScope[]): Promise<string> {
    const { clientId, clientSecret } = this.#connection;
    // RFC 6749 2.3.1: id and secret are form-encoded before they go into the Basic header.
    const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
    const res = await send(new URL(`${this.issuer}/token`), {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        resource: adminAudience(this.issuer),
        scope: scopes.join(' '),
      }),
    });
    let body: { access_token?: string; expires_in?: number };
    try {
      body = await jsonOrThrow(res, 'token request');
    } catch (err) {
      if (err instanceof ApiError && err.code === 'invalid_client') {
        throw new ApiError(err.code, `${err.description}; check --client-id and --client-secret`, err.status);
      }
      throw err;
    }
    if (!body?.access_token) throw new ApiError('invalid_response', 'the token endpoint answered without an access_token', res.status);
    this.#token = { value: body.access_token, expiresAt: Date.now() + (body.expires_in ?? 60) * 1000 };
    return this.#token.value;
  }

  async request<T>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, opts: { body?: unknown; query?: Query } = {}): Promise<T> {
    const url = new URL(`${adminAudience(this.issuer)}${path}`);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { authorization: `Bearer ${await this.#accessToken()}`, accept: 'application/json' };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (this.#connection.tenant) headers['x-tenant-id'] = this.#connection.tenant;
    const res = await send(url, {
      method,
      headers,
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    });
    return jsonOrThrow<T>(res, `${method} ${url.pathname}`);
  }

  get<T>(path: string, query?: Query) {
    return this.request<T>('GET', path, query ? { query } : {});
  }

  post<T>(path: string, body?: unknown) {
    return this.request<T>('POST', path, body === undefined ? {} : { body });
  }

  patch<T>(path: string, body: unknown) {
    return this.request<T>('PATCH', path, { body });
  }

  delete(path: string) {
    return this.request<void>('DELETE', path);
  }

  /** A GET that answers undefined for a 404 (to reuse what exists). */
  async find<T>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return undefined;
      throw err;
    }
  }
}

/** A path segment from user input; an id may hold characters that mean something in a URL. */
export const seg = (value: string) => encodeURIComponent(value);
