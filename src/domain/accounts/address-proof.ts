import type { SecretBox } from '../../infra/crypto.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import type { OidcPayloadsRepo } from '../../repos/oidc-payloads.ts';
import type { UserRow } from '../../repos/users.ts';
import { byUser, type ChangeContext } from '../authn/accounts.ts';
import { emailIdentifier, type FlowServices } from './account-flow.ts';
import { userPayload } from '../events/events.ts';

/**
 * Account pre-hijacking ("Pre-hijacked accounts", USENIX Security 2022): anyone can register an
 * address they do not own and choose its password. So the first proof of an address decides whose
 * the account is:
 *   - a proof from the registrant's own flow (the interaction that registered it or signed in to
 *     it with its password, or the browser that registered it) keeps that password;
 *   - any other proof (a link or code used elsewhere, a magic link, a federated sign-in) discards
 *     the password chosen before the proof and ends every session, grant and token of the account.
 *     The prover goes on by that proof and may choose a password (`passwordSession`).
 *
 * Where the registrant's side showed itself is recorded as "markers" the HTTP layer vouches for
 * (`interaction:<uid>` after it checked the interaction cookie, `browser:<cookie>`), stored only
 * as MACs, for `BINDING_TTL_SECONDS`. A proof after that is treated as from outside: the safe side.
 */

/** How the registrant's side showed itself where the marker was bound. */
export type RegistrantStep = 'registered' | 'password';

export interface ProofOutcome {
  user: UserRow;
  /** The registrant's step the proof's markers show; undefined for a proof from outside. */
  byRegistrant: RegistrantStep | undefined;
  /** True when this proof discarded the registrant's password and ended the account's sessions. */
  credentialsReset: boolean;
  /** With `credentialsReset`: a set-password step (forgot-password session) for the prover. */
  passwordSession?: string;
}

export const BINDING_TTL_SECONDS = 24 * 3600;

export function createAddressProof(deps: FlowServices & { payloads: OidcPayloadsRepo; ephemeral: EphemeralStore; box: SecretBox }) {
  const { users, events, payloads, ephemeral, box, codes } = deps;
  const keyOf = (user: Pick<UserRow, 'id'>, marker: string) =>
    `registrant:${user.id}:${box.mac('registrant-marker', marker).toString('base64url')}`;

  async function registrantStep(user: Pick<UserRow, 'id'>, markers: readonly string[]): Promise<RegistrantStep | undefined> {
    let found: RegistrantStep | undefined;
    for (const marker of markers) {
      const step = await ephemeral.get(keyOf(user, marker));
      if (step === 'password') return step;
      if (step === 'registered') found = step;
    }
    return found;
  }

  return {
    registrantStep,

    /** Records that whoever holds one of `markers` is the registrant's side of `user`. */
    async bindRegistrant(user: Pick<UserRow, 'id'>, markers: readonly string[], step: RegistrantStep): Promise<void> {
      for (const marker of markers) await ephemeral.set(keyOf(user, marker), step, BINDING_TTL_SECONDS);
    },

    /**
     * Marks `email` proven for `user` when it is still the user's unproven address, applying the
     * rule above. `markers` are those the proving request holds. Answers the user as it is after.
     */
    async prove(user: UserRow, email: string, markers: readonly string[], context: ChangeContext = {}): Promise<ProofOutcome> {
      const byRegistrant = await registrantStep(user, markers);
      if (user.email_verified) return { user, byRegistrant, credentialsReset: false };
      const reset = user.password_unverified_owner && byRegistrant === undefined;
      const updated = await deps.transaction(async (trx) => {
        const row = await users.markEmailVerified(user.id, email, { discardPassword: reset }, trx);
        if (!row) return undefined;
        await events.record({ type: 'user.email_verified', subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id), payload: { user: userPayload(row) } }, trx);
        if (reset) {
          await events.record(
            { type: 'user.credentials_reset', subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id), payload: { user: { id: user.id }, reason: 'address_proven_outside_registration' } },
            trx,
          );
        }
        return row;
      });
      // Another proof won the race, or the address changed since the code was sent.
      if (!updated) return { user: (await users.findById(user.id))!, byRegistrant, credentialsReset: false };
      if (!reset) return { user: updated, byRegistrant, credentialsReset: false };
      // Whoever signed in with the registrant's password is signed out everywhere.
      await payloads.revokeByAccountId(user.id);
      const passwordSession = await codes.openSession('forgot-password', emailIdentifier(user.tenant_id, user.email));
      return { user: updated, byRegistrant, credentialsReset: true, passwordSession };
    },
  };
}

export type AddressProof = ReturnType<typeof createAddressProof>;
