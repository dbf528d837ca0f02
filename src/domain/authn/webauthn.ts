import { randomUUID } from 'node:crypto';
import type {
  AuthenticationResponseJSON, AuthenticatorTransport, PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON, RegistrationResponseJSON,
} from '@simplewebauthn/server';
import type { Knex } from 'knex';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import type { MfaFactorsRepo } from '../../repos/mfa-factors.ts';
import type { UserRow, UsersRepo } from '../../repos/users.ts';
import type { CredentialWithFactor, WebAuthnCredentialsRepo } from '../../repos/webauthn-credentials.ts';
import { isDisplayName } from '../accounts/display-names.ts';
import { AppError } from '../errors.ts';
import type { EventRecorder } from '../events/events.ts';
import { byUser, viaClient, type Accounts, type ChangeContext } from './accounts.ts';
import type { FactorChanges } from './factor-changes.ts';
import { factorKey, type FactorGuard, type SecondFactorResult } from './factor-guard.ts';
import { lazyModule } from '../../infra/lazy-module.ts';

/** @simplewebauthn/server (with its CBOR, COSE and attestation stack), loaded when a passkey is first used or enrolled. */
const loadWebAuthn = lazyModule(() => import('@simplewebauthn/server'));

/**
 * WebAuthn credentials (@simplewebauthn/server): security keys and platform authenticators as a
 * second factor after a first one, and passkeys (discoverable, user verification required) that
 * sign in on their own. Each credential is a factor of type webauthn (mfa.ts lists, removes and
 * resets them with every other factor) plus its webauthn_credentials row.
 *
 * The relying-party ID is ISSUER's host name and the only accepted origin ISSUER's origin.
 * Challenges live on the EphemeralStore for 5 minutes, each used once (taken, whatever the outcome):
 *   webauthn:register:{userId}   a registration, bound to the user (and the kind asked for)
 *   webauthn:second:{uid}        a second-factor assertion, bound to the interaction and its pending account
 *   webauthn:passkey:{uid}       a passwordless assertion, bound to the interaction
 */

export type CredentialKind = 'passkey' | 'security-key';

export interface WebAuthnSettings {
  /** ISSUER's host name. */
  rpId: string;
  /** ISSUER's origin. */
  origin: string;
  /** What authenticators show as the site's name. */
  rpName: string;
}

export interface Device {
  id: string;
  name: string;
  kind: CredentialKind;
  createdAt: Date;
  lastUsedAt: Date | null;
  backedUp: boolean;
  transports: string[];
}

export type PasskeySignIn = { ok: true; user: UserRow } | { ok: false; reason: 'invalid' | 'locked' | 'inactive' };

const CHALLENGE_TTL_SECONDS = 5 * 60;
// EdDSA, ES256, RS256: what authenticators make. Named, so the library does not offer (and probe the
// runtime for) the experimental post-quantum ones.
const ALGORITHMS = [-8, -7, -257];
const DEFAULT_NAMES: Record<CredentialKind, string> = { passkey: 'Passkey', 'security-key': 'Security key' };
const MAX_DEVICE_NAME = 64;

const kindOf = (c: CredentialWithFactor): CredentialKind => (c.discoverable ? 'passkey' : 'security-key');
const transportsOf = (c: CredentialWithFactor) => (c.transports ? c.transports.split(',') as AuthenticatorTransport[] : []);
const descriptorOf = (c: CredentialWithFactor) => ({ id: c.credential_id, transports: transportsOf(c) });

/** A credential's JSON as posted: only objects go on to the library (which checks the rest). */
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

export function createWebAuthn(deps: {
  credentials: WebAuthnCredentialsRepo;
  factors: Pick<MfaFactorsRepo, 'insert' | 'touch'>;
  users: UsersRepo;
  accounts: Pick<Accounts, 'isLocked'>;
  ephemeral: EphemeralStore;
  events: EventRecorder;
  guard: FactorGuard;
  changes: FactorChanges;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  settings: WebAuthnSettings;
}) {
  const { credentials, ephemeral, events, guard, changes, settings } = deps;

  async function putChallenge(part: string, id: string, record: Record<string, unknown>): Promise<void> {
    await ephemeral.set(factorKey('webauthn', part, id), JSON.stringify(record), CHALLENGE_TTL_SECONDS);
  }

  /** The challenge record, once: a second try with the same one finds nothing. */
  async function takeChallenge(part: string, id: string): Promise<Record<string, unknown> | undefined> {
    const raw = await ephemeral.take(factorKey('webauthn', part, id));
    if (raw === undefined) return undefined;
    const record = JSON.parse(raw) as unknown;
    return isObject(record) && typeof record.challenge === 'string' ? record : undefined;
  }

  /**
   * Verifies an assertion by `stored` against `challenge` and moves its counter. A counter that
   * does not increase while either it or the stored one is non-zero means a cloned authenticator
   * (WebAuthn Level 3, 6.1.1): refused, and recorded. Answers whether the assertion holds.
   */
  async function checkAssertion(stored: CredentialWithFactor, response: AuthenticationResponseJSON, challenge: string, requireUserVerification: boolean, context: ChangeContext): Promise<boolean> {
    let info;
    try {
      const result = await (await loadWebAuthn()).verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge,
        expectedOrigin: settings.origin,
        expectedRPID: settings.rpId,
        // The library's own counter check is kept out (counter 0) so that a regression is told apart and recorded.
        credential: { id: stored.credential_id, publicKey: Buffer.from(stored.public_key, 'base64url'), counter: 0, transports: transportsOf(stored) },
        requireUserVerification,
      });
      if (!result.verified) return false;
      info = result.authenticationInfo;
    } catch {
      return false;
    }
    const counter = info.newCounter;
    const regressed = (counter > 0 || stored.sign_count > 0) && counter <= stored.sign_count;
    if (regressed || !(await credentials.advanceCounter(stored.factor_id, stored.sign_count, counter, info.credentialBackedUp))) {
      const user = await deps.users.findById(stored.user_id);
      await events.record({
        type: 'user.sign_in_failed', subjectId: stored.user_id, tenantId: user?.tenant_id ?? 'default', ...byUser(context, stored.user_id),
        payload: { user: { id: stored.user_id }, reason: 'authenticator_counter', factor: { id: stored.factor_id, type: 'webauthn' }, storedCounter: stored.sign_count, counter, ...viaClient(context) },
      });
      return false;
    }
    return true;
  }

  return {
    /** The user's security keys and passkeys, oldest first. */
    async devices(userId: string): Promise<Device[]> {
      await changes.owner(userId);
      return (await credentials.listOfUser(userId)).map((c) => ({
        id: c.factor_id,
        name: c.name,
        kind: kindOf(c),
        createdAt: c.confirmed_at,
        lastUsedAt: c.last_used_at,
        backedUp: c.backed_up,
        transports: transportsOf(c),
      }));
    },

    /**
     * Starts registering a credential of the user's. A passkey must be discoverable and verify the
     * user (it will sign in alone); a security key need be neither. The user's credentials are
     * excluded, so one authenticator is not registered twice.
     */
    async registrationOptions(userId: string, kind: CredentialKind): Promise<PublicKeyCredentialCreationOptionsJSON> {
      const user = await changes.owner(userId);
      const existing = await credentials.listOfUser(userId);
      const options = await (await loadWebAuthn()).generateRegistrationOptions({
        rpName: settings.rpName,
        rpID: settings.rpId,
        userName: user.email,
        // The user handle: the account id, never an address (it is stored on the authenticator).
        userID: new TextEncoder().encode(user.id),
        userDisplayName: [user.given_name, user.family_name].filter(Boolean).join(' ') || user.email,
        attestationType: 'none',
        excludeCredentials: existing.map(descriptorOf),
        authenticatorSelection: kind === 'passkey'
          ? { residentKey: 'required', requireResidentKey: true, userVerification: 'required' }
          : { residentKey: 'discouraged', requireResidentKey: false, userVerification: 'preferred' },
        extensions: { credProps: true },
        supportedAlgorithmIDs: ALGORITHMS,
      });
      await putChallenge('register', userId, { challenge: options.challenge, kind });
      return options;
    },

    /**
     * Finishes a registration with the browser's answer: a new factor, confirmed at once (the
     * ceremony is its proof). Like every factor change it is recorded and mailed, and the user's
     * other sessions end. IDENT_WEBAUTHN_INVALID when the answer does not verify, the challenge is
     * gone (5 minutes, once) or the credential is registered already.
     */
    async register(userId: string, response: unknown, name: string | undefined, currentSessionUid: string | undefined, context: ChangeContext = {}): Promise<Device> {
      const user = await changes.owner(userId);
      if (name !== undefined && (!isDisplayName(name) || name.trim().length > MAX_DEVICE_NAME)) {
        throw new AppError('IDENT_VALIDATION', `a name is at most ${MAX_DEVICE_NAME} characters without control characters`);
      }
      const pending = await takeChallenge('register', userId);
      if (!pending) throw new AppError('IDENT_WEBAUTHN_INVALID', 'no registration of yours is under way (it lasts 5 minutes); ask for new options');
      const kind: CredentialKind = pending.kind === 'passkey' ? 'passkey' : 'security-key';
      if (!isObject(response)) throw new AppError('IDENT_WEBAUTHN_INVALID');
      let info;
      try {
        const result = await (await loadWebAuthn()).verifyRegistrationResponse({
          response: response as unknown as RegistrationResponseJSON,
          expectedChallenge: pending.challenge as string,
          expectedOrigin: settings.origin,
          expectedRPID: settings.rpId,
          requireUserVerification: kind === 'passkey',
          supportedAlgorithmIDs: ALGORITHMS,
        });
        if (!result.verified) throw new Error('not verified');
        info = result.registrationInfo;
      } catch {
        throw new AppError('IDENT_WEBAUTHN_INVALID', 'the authenticator’s answer does not verify');
      }
      // A passkey must be discoverable: an authenticator that says it made a server-side credential is refused.
      const rk = (response.clientExtensionResults as { credProps?: { rk?: unknown } } | undefined)?.credProps?.rk;
      if (kind === 'passkey' && rk === false) throw new AppError('IDENT_WEBAUTHN_INVALID', 'the authenticator cannot keep a passkey (no discoverable credential)');
      if (await credentials.findByCredentialId(info.credential.id)) throw new AppError('IDENT_WEBAUTHN_INVALID', 'this authenticator is registered already');

      const id = randomUUID();
      const label = name?.trim() || DEFAULT_NAMES[kind];
      const transports = (info.credential.transports ?? []).filter((t) => /^[a-z-]{1,16}$/.test(t));
      await deps.transaction(async (trx) => {
        const row = await deps.factors.insert({ id, tenant_id: user.tenant_id, user_id: userId, type: 'webauthn', name: label, secret_sealed: null, confirmed_at: new Date() }, trx);
        await credentials.insert({
          factor_id: id,
          user_id: userId,
          credential_id: info.credential.id,
          public_key: Buffer.from(info.credential.publicKey).toString('base64url'),
          sign_count: info.credential.counter,
          transports: transports.join(','),
          discoverable: kind === 'passkey',
          backed_up: info.credentialBackedUp,
          device_type: info.credentialDeviceType,
          aaguid: info.aaguid,
        }, trx);
        await changes.enrolled(user, row, [], context, trx);
      });
      await changes.endOtherSessions(userId, currentSessionUid);
      return { id, name: label, kind, createdAt: new Date(), lastUsedAt: null, backedUp: info.credentialBackedUp, transports };
    },

    /** Options for the second step of interaction `uid`: any credential of the pending user. */
    async secondFactorOptions(uid: string, userId: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
      const options = await (await loadWebAuthn()).generateAuthenticationOptions({
        rpID: settings.rpId,
        allowCredentials: (await credentials.listOfUser(userId)).map(descriptorOf),
        userVerification: 'preferred',
      });
      await putChallenge('second', uid, { challenge: options.challenge, userId });
      return options;
    },

    /**
     * Checks a second-factor assertion of interaction `uid` for `userId`, bounded and counted by the
     * factor guard like every second factor (a wrong one counts toward the lockout).
     */
    async verifySecondFactor(uid: string, userId: string, response: unknown, context: ChangeContext = {}): Promise<SecondFactorResult> {
      return guard.attempt('webauthn', userId, context, async () => {
        const pending = await takeChallenge('second', uid);
        if (!pending || pending.userId !== userId || !isObject(response) || typeof response.id !== 'string') return undefined;
        const stored = await credentials.findByCredentialId(response.id);
        if (!stored || stored.user_id !== userId) return undefined;
        const ok = await checkAssertion(stored, response as unknown as AuthenticationResponseJSON, pending.challenge as string, false, context);
        return ok ? stored.factor_id : undefined;
      });
    },

    /** Options for a passwordless sign-in in interaction `uid`: no credential named, the user verified. */
    async passkeyOptions(uid: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
      const options = await (await loadWebAuthn()).generateAuthenticationOptions({ rpID: settings.rpId, userVerification: 'required' });
      await putChallenge('passkey', uid, { challenge: options.challenge });
      return options;
    },

    /**
     * A passwordless sign-in: the passkey found by its id decides the account. An unknown or
     * removed credential, a security key (not a passkey), a bad signature or no user verification
     * are all 'invalid', so the answer tells nothing of accounts; only a verified assertion learns
     * that its account is locked or inactive.
     */
    async signInWithPasskey(uid: string, response: unknown, tenantId: string, context: ChangeContext = {}): Promise<PasskeySignIn> {
      const pending = await takeChallenge('passkey', uid);
      if (!pending || !isObject(response) || typeof response.id !== 'string') return { ok: false, reason: 'invalid' };
      const stored = await credentials.findByCredentialId(response.id);
      if (!stored || !stored.discoverable) return { ok: false, reason: 'invalid' };
      // The user handle the authenticator keeps, when it sends one, must be the credential's account.
      const handle = isObject(response.response) ? response.response.userHandle : undefined;
      if (typeof handle === 'string' && handle !== Buffer.from(stored.user_id).toString('base64url')) return { ok: false, reason: 'invalid' };
      if (!(await checkAssertion(stored, response as unknown as AuthenticationResponseJSON, pending.challenge as string, true, context))) {
        return { ok: false, reason: 'invalid' };
      }
      const user = await deps.users.findById(stored.user_id);
      // A passkey of another tenant's account is as unknown here as no passkey at all.
      if (user && user.tenant_id !== tenantId) return { ok: false, reason: 'invalid' };
      if (!user || user.status !== 'active') return { ok: false, reason: 'inactive' };
      if (await deps.accounts.isLocked(user)) return { ok: false, reason: 'locked' };
      await deps.factors.touch(stored.factor_id);
      return { ok: true, user };
    },
  };
}

export type WebAuthn = ReturnType<typeof createWebAuthn>;
