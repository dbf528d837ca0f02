import { AppError } from '../errors.ts';

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * An upstream endpoint we send people to or call: https, or http on a loopback host only (a
 * provider on the same machine, as in development and the tests). Anything else would carry codes,
 * tokens and assertions in clear.
 */
export function upstreamUrl(value: string, field: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new AppError('IDENT_VALIDATION', `body.${field}: not a URL`);
  }
  const ok = url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK.has(url.hostname));
  if (!ok || url.username || url.password || url.hash) {
    throw new AppError('IDENT_VALIDATION', `body.${field}: must be an https URL (http only on localhost), without credentials or fragment`);
  }
  // As given, not normalised: an issuer must match the upstream's own spelling exactly.
  return value;
}
