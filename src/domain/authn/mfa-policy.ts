import type { AcrLevel, EnrolledType, MfaPolicy } from './sign-in-flow.ts';

/**
 * The MFA policies, weakest first: `off` never asks on its own, `optional` asks an account that has
 * a second factor, `required` asks every account (one without a factor enrols one during the
 * sign-in), `phishing-resistant` asks for WebAuthn. The deployment sets one (MFA_POLICY); a client
 * can set one in its metadata (`mfa_policy`).
 */
export const MFA_POLICIES = ['off', 'optional', 'required', 'phishing-resistant'] as const satisfies readonly MfaPolicy[];

export const isMfaPolicy = (value: unknown): value is MfaPolicy => (MFA_POLICIES as readonly unknown[]).includes(value);

/** The client metadata field that sets a client's policy. */
export const MFA_POLICY_METADATA = 'mfa_policy';

/**
 * The policy a sign-in for a client follows: the stricter of the deployment's and the client's.
 * The SSO session a sign-in makes serves every client, so a client may ask for more than the
 * deployment but never less: `off` on a client under `required` changes nothing.
 */
export function mfaPolicyFor(deployment: MfaPolicy, clientMetadata: Record<string, unknown> = {}): MfaPolicy {
  const client = clientMetadata[MFA_POLICY_METADATA];
  if (!isMfaPolicy(client)) return deployment;
  return MFA_POLICIES.indexOf(client) > MFA_POLICIES.indexOf(deployment) ? client : deployment;
}

/** The level every sign-in under `policy` reaches, when the policy alone asks for one. */
export function levelOfPolicy(policy: MfaPolicy): AcrLevel | undefined {
  return policy === 'required' ? 'mfa' : policy === 'phishing-resistant' ? 'phr' : undefined;
}

/** The kinds of factor a policy needs an account to keep, and the stored types that are one. */
const KEEPS: Record<MfaPolicy, readonly (readonly EnrolledType[])[]> = {
  off: [],
  optional: [],
  // Recovery codes stand in for an authenticator: alone they are not a second factor.
  required: [['totp', 'webauthn', 'sms', 'email']],
  'phishing-resistant': [['totp', 'webauthn', 'sms', 'email'], ['webauthn']],
};

/**
 * Whether removing factors that leaves `after` (from `before`, the confirmed types of the user)
 * takes away the last one of a kind the deployment's policy needs: the last second factor under
 * `required`, and also the last WebAuthn credential under `phishing-resistant`. Recovery codes can
 * always go.
 */
export function removalBreaksPolicy(policy: MfaPolicy, before: readonly EnrolledType[], after: readonly EnrolledType[]): boolean {
  return KEEPS[policy].some((kind) => before.some((t) => kind.includes(t)) && !after.some((t) => kind.includes(t)));
}
