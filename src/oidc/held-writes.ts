import { currentRequestScope } from '../infra/request-scope.ts';
import type { SessionDevice } from '../repos/oidc-payloads.ts';
import type { UpsertRow } from '../repos/payload-write-batcher.ts';

/**
 * The provider awaits each write to its tables on its own: a sign-in's resumed authorization
 * removes the interaction, then saves the grant, the code and the session, one round trip after
 * another; a refresh consumes the old token, then saves the new refresh token, then the access
 * token. Inside a write window (http/middleware/held-writes.ts) those writes are held instead and
 * written together in one statement (adapter.ts), before the answer is sent: nothing is handed out
 * before it is stored.
 *
 * Two kinds of window. A resumed authorization's ('resume') holds every write until the session is
 * saved, the last thing it does and still inside the provider's error handling: the session goes
 * out with the rest, and a store that fails then is answered as the provider answers it
 * (temporarily_unavailable to the client). A token request's ('redemption') holds only a
 * redemption: the consume of a code or refresh token and the writes after it, written when the
 * answer is built and stored only if that statement is the one that consumed the token; a
 * redemption that lost the race is answered invalid_grant with its grant revoked, as a consume
 * that lost would have been. Other token requests (client_credentials) keep the write batcher,
 * which joins concurrent requests' writes.
 *
 * Reads in the same request see the held writes (a held row is found, a held removal is gone).
 */
export interface HeldUpsert {
  row: UpsertRow;
  /** A session's device, recorded with its use. */
  device?: SessionDevice;
}

export interface HeldWrites {
  consume?: { model: string; key: string };
  upserts: Map<string, HeldUpsert>;
  deletes: Map<string, { model: string; key: string }>;
}

export type WindowKind = 'resume' | 'redemption';

interface Window {
  kind: WindowKind;
  held: HeldWrites;
}

const slot = (model: string, key: string) => `${model}\0${key}`;
const emptyHeld = (): HeldWrites => ({ upserts: new Map(), deletes: new Map() });

function current(): Window | undefined {
  const window = currentRequestScope()?.writeWindow;
  return typeof window === 'object' ? (window as Window) : undefined;
}

/** Whether writes are held now: always in a 'resume' window, after the consume in a 'redemption' one. */
function holding(window: Window | undefined): window is Window {
  return !!window && (window.kind === 'resume' || !!window.held.consume);
}

/** Whether saving `model` writes what is held, now (the session of a resumed authorization). */
export function writesHeldOnSave(model: string): boolean {
  return model === 'Session' && current()?.kind === 'resume';
}

/**
 * Opens a window for the running request; false outside a request. A 'redemption' window is only
 * armed here and opens at the consume (holdConsume): a token request that redeems nothing
 * (client_credentials, token exchange) holds nothing and pays nothing for the window.
 */
export function openWriteWindow(kind: WindowKind): boolean {
  const scope = currentRequestScope();
  if (!scope) return false;
  scope.writeWindow = kind === 'redemption' ? 'redemption' : ({ kind, held: emptyHeld() } satisfies Window);
  return true;
}

/** Holds a code's or refresh token's consume (one per request); false when it must go out now. */
export function holdConsume(model: string, key: string): boolean {
  const scope = currentRequestScope();
  if (scope?.writeWindow === 'redemption') {
    scope.writeWindow = { kind: 'redemption', held: { ...emptyHeld(), consume: { model, key } } } satisfies Window;
    return true;
  }
  const window = current();
  if (!window || window.held.consume) return false;
  window.held.consume = { model, key };
  return true;
}

export function holdUpsert(row: () => UpsertRow, device?: SessionDevice): boolean {
  const window = current();
  if (!holding(window)) return false;
  const held = row();
  const key = slot(held.model, held.id);
  window.held.deletes.delete(key);
  window.held.upserts.set(key, { row: held, device });
  return true;
}

export function holdDestroy(model: string, key: string): boolean {
  const window = current();
  if (!holding(window)) return false;
  const at = slot(model, key);
  window.held.upserts.delete(at);
  window.held.deletes.set(at, { model, key });
  return true;
}

/**
 * A revocation goes out at once; the held writes of that grant are dropped with it, or they would
 * bring back what it removed.
 */
export function dropHeldOfGrant(grantId: string): void {
  const window = current();
  if (!window) return;
  for (const [key, { row }] of window.held.upserts) if (row.grant_id === grantId || (row.model === 'Grant' && row.id === grantId)) window.held.upserts.delete(key);
}

/** Whether the running request has a write window open (reads then look at what it holds first). */
export function inWriteWindow(): boolean {
  return current() !== undefined;
}

/** What this request holds for (model, key): undefined when nothing, `{ payloadJson: null }` when removed. */
export function heldRow(model: string, key: string): { payloadJson: string | null } | undefined {
  const window = current();
  if (!window) return undefined;
  const at = slot(model, key);
  if (window.held.deletes.has(at)) return { payloadJson: null };
  const upsert = window.held.upserts.get(at);
  return upsert && { payloadJson: upsert.row.payloadJson };
}

export function heldRowByUid(model: string, uid: string): { payloadJson: string } | undefined {
  const window = current();
  if (!window) return undefined;
  for (const { row } of window.held.upserts.values()) if (row.model === model && row.uid === uid) return { payloadJson: row.payloadJson };
  return undefined;
}

const anything = (held: HeldWrites | undefined) => (held && (held.consume || held.upserts.size || held.deletes.size) ? held : undefined);

/** Answers what the window holds, if anything, and holds nothing more until the next write. */
export function takeHeldWrites(): HeldWrites | undefined {
  const window = current();
  if (!window) return undefined;
  const held = window.held;
  window.held = emptyHeld();
  return anything(held);
}

/** Closes the window and answers what it still holds, if anything. */
export function closeWriteWindow(): HeldWrites | undefined {
  const scope = currentRequestScope();
  const window = scope?.writeWindow;
  if (!window) return undefined;
  scope.writeWindow = undefined;
  return typeof window === 'object' ? anything((window as Window).held) : undefined;
}
