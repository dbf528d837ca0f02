import { currentRequestScope, type RequestScope } from '../infra/request-scope.ts';
import type { UpsertRow } from '../repos/payload-write-batcher.ts';

/**
 * A token request redeems a code or a refresh token (consume), then saves each token it issues:
 * the provider awaits every one of those writes, one round trip after another. Inside a redemption
 * window (the token endpoint: http/middleware/token-redemption.ts) the consume is held instead, and
 * so are the saves that follow it; when the endpoint has built its answer, they are written in one
 * statement that stores the new tokens only if it consumed the old one (see settleRedemption in
 * adapter.ts). The answer waits for that statement, so no token is handed out before it is stored,
 * and a redemption that lost the race is answered invalid_grant with its grant revoked, as a
 * consume that lost would have been.
 */
export interface HeldRedemption {
  model: string;
  /** The stored id (the digest of a bearer value). */
  key: string;
  issued: UpsertRow[];
}

const windows = new WeakMap<RequestScope, { held?: HeldRedemption }>();

/** Opens the window for the running request; false outside a request. */
export function openRedemptionWindow(): boolean {
  const scope = currentRequestScope();
  if (!scope) return false;
  windows.set(scope, {});
  return true;
}

/** Holds a consume when the window is open and holds none yet (one redemption per request). */
export function holdConsume(model: string, key: string): boolean {
  const scope = currentRequestScope();
  const window = scope && windows.get(scope);
  if (!window || window.held) return false;
  window.held = { model, key, issued: [] };
  return true;
}

/** Holds a write made after a held consume; false when there is none, and the write goes out now. */
export function holdIssued(row: () => UpsertRow): boolean {
  const scope = currentRequestScope();
  const held = scope && windows.get(scope)?.held;
  if (!held) return false;
  held.issued.push(row());
  return true;
}

/** Closes the window and answers what it holds. */
export function closeRedemptionWindow(): HeldRedemption | undefined {
  const scope = currentRequestScope();
  if (!scope) return undefined;
  const held = windows.get(scope)?.held;
  windows.delete(scope);
  return held;
}
