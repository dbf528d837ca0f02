import type { TestServer } from './server.ts';

export interface UserApiAnswer {
  status: number;
  headers: Headers;
  body: Record<string, any> | undefined;
}

/** Calls the account API (`/api/v1/auth/*`, `/api/v1/me*`) with a user's access token, or none. */
export async function callUserApi(ts: TestServer, method: string, path: string, token: string | undefined, body?: unknown): Promise<UserApiAnswer> {
  const res = await fetch(new URL(path, ts.issuer), {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, any>) : undefined };
}
