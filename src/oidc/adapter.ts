import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { ClientRow } from '../repos/clients.ts';

/** Where the Client adapter reads clients from (the registry's shared cache). */
export interface ClientSource {
  find(clientId: string): Promise<ClientRow | undefined>;
  /** The raw secret of a client_secret_jwt client (it keys the HMAC), when one is kept sealed. */
  unsealSecret?(row: ClientRow): string | undefined;
}
import type { OidcPayloadsRepo, StoredPayload } from '../repos/oidc-payloads.ts';
import { currentRequestScope } from '../infra/request-scope.ts';
import { offerToRequest, takeFromRequest } from '../infra/request-prefetch.ts';
import { prefetchedAccountKey } from '../domain/authn/accounts.ts';
import { createLookupBatcher, type LookupBatcher } from './lookup-batcher.ts';
import {
  closeWriteWindow,
  dropHeldOfGrant,
  heldRow,
  heldRowByUid,
  holdConsume,
  holdDestroy,
  holdUpsert,
  inWriteWindow,
  takeHeldWrites,
  writesHeldOnSave,
  type HeldWrites,
} from './held-writes.ts';
import { upsertRow } from '../repos/oidc-payloads.ts';

// Models whose double use must revoke the grant: a code or refresh token redeemed twice.
const GRANTABLE = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

/**
 * A payload field of exchanged access tokens (grants/token-exchange.ts): the grant of the token they
 * were exchanged from. Their own grantId stays empty (the provider would reject a grant of another
 * client), so the row is filed under this grant instead: every revocation of that grant deletes the
 * token, and a read finds the token only while the grant exists.
 */
export const SUBJECT_GRANT_ID = 'subjectGrantId';

/**
 * Models whose id is a bearer value presented by a client: the row is stored under a keyed digest
 * of it, and the payload without its `jti` (restored from the presented value on find), so a
 * database dump holds no working token. They are all looked up by id only.
 * Not digested: Session and Interaction (their ids travel only in cookies signed with the cookie
 * keys, which are sealed under KEY_ENCRYPTION_KEY; a Session is also loaded by uid, which must
 * give back its id), Grant (its id is not a credential and other rows refer to it), ReplayDetection
 * (already a hash), DeviceCode (the device flow is off; it is loaded by user code and then saved
 * under its id, which a digest could not give back).
 */
export const DIGESTED_MODELS = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'ClientCredentials',
  'BackchannelAuthenticationRequest',
  'PushedAuthorizationRequest',
  'RegistrationAccessToken',
  'InitialAccessToken',
]);

/** Keyed digest of a bearer value (SecretBox.digest with a fixed purpose). */
export type TokenDigest = (value: string) => string;

const prefetchedGrantKey = (grantId: string) => `oidc-grant:${grantId}`;
const prefetchedSessionKey = (uid: string) => `oidc-session-uid:${uid}`;

/**
 * The account an interaction is for: the one its login step proved, else the session's. Filed under
 * it, the interaction's row is read with the account at the resumed authorization (lookup-batcher's
 * WITH_ACCOUNT), and goes with the account's other rows when they are revoked.
 */
function interactionAccountId(payload: AdapterPayload): string | undefined {
  const result = payload.result as { login?: { accountId?: unknown } } | undefined;
  const accountId = result?.login?.accountId ?? payload.session?.accountId;
  return typeof accountId === 'string' ? accountId : undefined;
}

function epoch(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}

/** Persists every oidc-provider model except Client in oidc_payloads. */
class PayloadAdapter implements Adapter {
  private readonly model: string;
  private readonly repo: OidcPayloadsRepo;
  private readonly lookups: LookupBatcher;
  /** Maps a presented id to the stored one: a digest for bearer models, itself otherwise. */
  private readonly key: (id: string) => string;
  private readonly digested: boolean;

  constructor(model: string, repo: OidcPayloadsRepo, lookups: LookupBatcher, digest: TokenDigest) {
    this.model = model;
    this.repo = repo;
    this.lookups = lookups;
    this.digested = DIGESTED_MODELS.has(model);
    this.key = this.digested ? digest : (id) => id;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const expiresAt = expiresIn ? new Date(Date.now() + expiresIn * 1000) : null;
    let stored = payload;
    if (this.digested) {
      const { jti: _jti, ...rest } = payload;
      stored = rest;
    }
    const keys = {
      grantId: payload.grantId ?? (payload[SUBJECT_GRANT_ID] as string | undefined),
      uid: payload.uid,
      userCode: payload.userCode,
      accountId: payload.accountId ?? (this.model === 'Interaction' ? interactionAccountId(payload) : undefined),
    };
    // A session is saved whenever it is used, so its device and last use are those of this request.
    const device = this.model === 'Session' && payload.accountId ? (currentRequestScope() ?? {}) : undefined;
    // Held for the request's one statement when it has a write window (held-writes.ts).
    if (holdUpsert(() => upsertRow(this.model, this.key(id), stored, expiresAt, keys), device)) {
      if (writesHeldOnSave(this.model)) {
        const held = takeHeldWrites();
        if (held && (await writeHeld(this.repo, held)) === 'reused') throw new errors.InvalidGrant('grant already used');
      }
      return;
    }
    await this.repo.upsert(this.model, this.key(id), stored, expiresAt, keys, device);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const held = inWriteWindow() ? heldRow(this.model, this.key(id)) : undefined;
    const stored = held
      ? held.payloadJson === null
        ? undefined
        : { payload: JSON.parse(held.payloadJson) as Record<string, unknown>, consumedAt: null }
      : ((this.model === 'Grant' ? takeFromRequest<StoredPayload>(prefetchedGrantKey(id)) : undefined) ??
        (await this.lookups.find(this.model, this.key(id))));
    // A token's grant and account, read with it: this request's next reads take them (once).
    if (stored?.grant) offerToRequest(prefetchedGrantKey(stored.grant.id), stored.grant);
    if (stored?.account) offerToRequest(prefetchedAccountKey(stored.account.id), stored.account);
    if (stored?.session) offerToRequest(prefetchedSessionKey(stored.session.uid), stored.session);
    const found = this.#out(stored);
    // The stored payload of a bearer model has no jti: the presented value is it.
    const payload: AdapterPayload | undefined = found && this.digested ? { ...found, jti: id } : found;
    const subjectGrantId = payload?.[SUBJECT_GRANT_ID];
    if (typeof subjectGrantId === 'string') {
      // Closes the gap between a concurrent revocation and the exchange that saved this token.
      const grant = await this.lookups.find('Grant', subjectGrantId);
      if (!grant || grant.payload.accountId !== payload!.accountId) return undefined;
    }
    return payload;
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const held = inWriteWindow() ? heldRowByUid(this.model, uid) : undefined;
    if (held) return JSON.parse(held.payloadJson) as AdapterPayload;
    const prefetched = this.model === 'Session' ? takeFromRequest<StoredPayload>(prefetchedSessionKey(uid)) : undefined;
    return this.#out(prefetched ?? (await this.repo.findByUid(this.model, uid)));
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#out(await this.repo.findByUserCode(this.model, userCode));
  }

  /**
   * Atomic: of two concurrent redemptions exactly one marks the row. The loser is treated as
   * reuse, so the whole grant is revoked, as the provider does for a token it sees consumed.
   */
  async consume(id: string): Promise<void> {
    if (GRANTABLE.has(this.model) && holdConsume(this.model, this.key(id))) return;
    if (await this.repo.consume(this.model, this.key(id))) return;
    if (GRANTABLE.has(this.model)) await revokeGrantOf(this.repo, this.model, this.key(id));
    throw new errors.InvalidGrant('grant already used');
  }

  async destroy(id: string): Promise<void> {
    if (holdDestroy(this.model, this.key(id))) return;
    await this.repo.destroy(this.model, this.key(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    dropHeldOfGrant(grantId);
    await this.repo.revokeByGrantId(grantId, this.model);
  }

  #out(stored: StoredPayload | undefined): AdapterPayload | undefined {
    if (!stored) return undefined;
    return stored.consumedAt ? { ...stored.payload, consumed: epoch(stored.consumedAt) } : stored.payload;
  }
}

/** Reuse of a code or refresh token: its whole grant goes. */
async function revokeGrantOf(repo: OidcPayloadsRepo, model: string, key: string): Promise<void> {
  const grantId = await repo.grantIdOf(model, key);
  if (!grantId) return;
  await repo.revokeByGrantId(grantId);
  // The Grant row's payload has no grantId (its id is the grant id), so revokeByGrantId misses it;
  // the provider's own revoke() destroys it by id, so do the same.
  await repo.destroy('Grant', grantId);
}

export type HeldWritesOutcome = 'none' | 'written' | 'reused';

/** Writes held writes in one statement; 'reused' when their consume lost, and then the grant is revoked. */
async function writeHeld(repo: OidcPayloadsRepo, held: HeldWrites): Promise<'written' | 'reused'> {
  if (await repo.writeHeld({ consume: held.consume, upserts: held.upserts.values(), deletes: held.deletes.values() })) return 'written';
  await revokeGrantOf(repo, held.consume!.model, held.consume!.key);
  return 'reused';
}

/**
 * Closes the running request's write window and writes what it still holds (held-writes.ts):
 * 'reused' when that was a consume of a token consumed before, and then its grant is revoked and
 * nothing it held was stored.
 */
export async function settleHeldWrites(repo: OidcPayloadsRepo): Promise<HeldWritesOutcome> {
  const held = closeWriteWindow();
  return held ? writeHeld(repo, held) : 'none';
}

/** Clients come from our clients table; the provider never writes them. */
class ClientTableAdapter implements Adapter {
  private readonly repo: ClientSource;

  constructor(repo: ClientSource) {
    this.repo = repo;
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const row = await this.repo.find(id);
    if (!row) return undefined;
    const metadata = typeof row.metadata === 'string' ? JSON.parse(row.metadata) : row.metadata;
    return {
      ...metadata,
      client_id: row.client_id,
      first_party: row.first_party,
      // The column decides, never metadata a caller sent (tokens.ts puts it in machine tokens).
      tenant_id: row.tenant_id,
      // The provider needs a secret value for confidential clients; it holds the keyed digest,
      // and client-secrets.ts compares digests instead of raw values. Only client_secret_jwt needs
      // the raw secret (to verify the HMAC-signed assertion), and only it has one sealed.
      ...(row.secret_digest ? { client_secret: this.repo.unsealSecret?.(row) ?? row.secret_digest } : {}),
    } as AdapterPayload;
  }

  async upsert(): Promise<void> {
    throw new Error('clients are managed through the admin API');
  }
  async findByUid(): Promise<undefined> {
    return undefined;
  }
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
  async consume(): Promise<void> {
    throw new Error('clients cannot be consumed');
  }
  async destroy(): Promise<void> {
    throw new Error('clients are managed through the admin API');
  }
  async revokeByGrantId(): Promise<void> {}
}

export function createAdapterFactory(deps: { payloads: OidcPayloadsRepo; clients: ClientSource; digest: TokenDigest }) {
  const lookups = createLookupBatcher(deps.payloads);
  return (model: string): Adapter =>
    model === 'Client'
      ? new ClientTableAdapter(deps.clients)
      : new PayloadAdapter(model, deps.payloads, lookups, deps.digest);
}
