import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import type { SamlRequestChecks } from './saml-sp.ts';
import type { UpstreamChecks, UpstreamIdentity } from './upstream-oauth.ts';

/**
 * The short-lived records a federated sign-in leaves between the browser's trips, in the ephemeral
 * store every instance shares:
 *   federation:request:{state}  what our authorization request committed to (the interaction, the
 *                               provider, PKCE verifier, nonce; for SAML the AuthnRequest ID, the
 *                               state being the RelayState); taken once by the callback or ACS
 *   federation:result:{uid}     what the callback learnt, for the interaction to finish with; only a
 *                               browser holding that interaction's cookie can read it back
 * The callback comes back without the interaction cookie (its path is /interaction/{uid}), so it
 * never finishes the sign-in itself: the state names the interaction, and the finishing GET under
 * /interaction/{uid} proves it is the same browser.
 */

export const FEDERATION_RECORD_TTL_SECONDS = 10 * 60;
/** The uid of a link started in the account console (an interaction's records use its uid). */
export const CONSOLE_LINK_PREFIX = 'console:';

export interface FederationRequest {
  uid: string;
  providerId: string;
  checks: UpstreamChecks | SamlRequestChecks;
  /** Digest of the value the starting browser holds (http/federation-binding.ts). */
  binding: string;
  /** A link from the account console: the signed-in user and console session it is for. */
  linkFor?: LinkFor;
}

export interface LinkFor {
  userId: string;
  sessionId: string;
}

export type FederationResult = (
  | { providerId: string; identity: UpstreamIdentity }
  | { providerId: string; error: 'unavailable' | 'rejected' }
) & { linkFor?: LinkFor };

export interface FederationHandoff {
  uid: string;
  binding: string;
  result: FederationResult;
}

export function createFederationRecords(ephemeral: EphemeralStore) {
  const requestKey = (state: string) => `federation:request:${state}`;
  const resultKey = (uid: string) => `federation:result:${uid}`;
  const parse = <T>(value: string | undefined): T | undefined => (value === undefined ? undefined : (JSON.parse(value) as T));
  return {
    async saveRequest(request: FederationRequest): Promise<void> {
      await ephemeral.set(requestKey(request.checks.state), JSON.stringify(request), FEDERATION_RECORD_TTL_SECONDS);
    },
    async takeRequest(state: string): Promise<FederationRequest | undefined> {
      return parse(await ephemeral.take(requestKey(state)));
    },
    async saveResult(uid: string, result: FederationResult): Promise<void> {
      await ephemeral.set(resultKey(uid), JSON.stringify(result), FEDERATION_RECORD_TTL_SECONDS);
    },
    async peekResult(uid: string): Promise<FederationResult | undefined> {
      return parse(await ephemeral.get(resultKey(uid)));
    },
    /**
     * A SAML response checked at the ACS, waiting for its browser: the ACS is a cross-site POST,
     * which the browser binding's SameSite=Lax cookie does not accompany, so the ACS hands over to
     * a GET (the redirect that follows is a top-level navigation, which it does), and that GET
     * checks the binding before the result reaches the interaction.
     */
    async saveHandoff(token: string, handoff: FederationHandoff): Promise<void> {
      await ephemeral.set(`federation:handoff:${token}`, JSON.stringify(handoff), FEDERATION_RECORD_TTL_SECONDS);
    },
    async takeHandoff(token: string): Promise<FederationHandoff | undefined> {
      return parse(await ephemeral.take(`federation:handoff:${token}`));
    },
    async dropResult(uid: string): Promise<void> {
      await ephemeral.del(resultKey(uid));
    },
  };
}

export type FederationRecords = ReturnType<typeof createFederationRecords>;
