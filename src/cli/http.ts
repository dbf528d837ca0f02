import { ApiError, CliError } from './errors.ts';

const TIMEOUT_MS = 30_000;

/**
 * fetch, with the failures people actually hit (nothing listening, unknown host, no answer)
 * turned into one line that names the server, instead of undici's "fetch failed".
 */
export async function send(url: URL, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    if (e.name === 'TimeoutError') throw new CliError(`${url.origin} did not answer within ${TIMEOUT_MS / 1000} s`);
    const code = e.cause?.code;
    if (code === 'ECONNREFUSED') throw new CliError(`cannot connect to ${url.origin}: connection refused (is the server running? check --issuer)`);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new CliError(`cannot resolve ${url.hostname} (check --issuer)`);
    throw new CliError(`cannot reach ${url.origin}: ${code ?? e.cause?.message ?? e.message}`);
  }
}

async function bodyOf(res: Response): Promise<unknown> {
  const text = await res.text();
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * The answer's JSON, or an error from it: the admin API envelope {error, message, requestId} or an
 * OAuth error {error, error_description}; anything else is named by its status.
 */
export async function jsonOrThrow<T>(res: Response, what: string): Promise<T> {
  const body = await bodyOf(res);
  if (res.ok) return body as T;
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  if (typeof b.error === 'string') {
    const message = typeof b.message === 'string' ? b.message : typeof b.error_description === 'string' ? b.error_description : res.statusText;
    throw new ApiError(b.error, message, res.status, typeof b.requestId === 'string' ? b.requestId : undefined);
  }
  if (res.status >= 300 && res.status < 400) {
    throw new CliError(`${what}: redirected to ${res.headers.get('location') ?? '?'} (is --issuer the issuer URL?)`);
  }
  throw new CliError(`${what}: HTTP ${res.status} ${res.statusText}`.trimEnd());
}
