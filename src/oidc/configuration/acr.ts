import { interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { levelOfPolicy, mfaPolicyFor } from '../../domain/authn/mfa-policy.ts';
import { ACR_LEVELS, flowOfSession, levelReached, requiredLevel, satisfies, type AcrLevel, type MfaPolicy } from '../../domain/authn/sign-in-flow.ts';

/** The reason the login prompt names when only the session's level falls short (see sign-in.ts's step-up). */
export const ACR_CHECK = 'acr_values';
/** The reason it names when the session falls short of the client's MFA policy (the stricter of MFA_POLICY and its mfa_policy). */
export const MFA_POLICY_CHECK = 'mfa_policy';
/** The reasons a signed-in user is stepped up for, without the first factor again. */
export const STEP_UP_CHECKS: ReadonlySet<string> = new Set([ACR_CHECK, MFA_POLICY_CHECK]);

const requested = (ctx: KoaContextWithOIDC): string[] => {
  const value = ctx.oidc.params?.acr_values;
  return typeof value === 'string' ? value.split(' ').filter(Boolean) : [];
};

/**
 * The interaction policy: the provider's own prompts, and on `login` one more check. oidc-provider
 * advertises acr_values and puts the session's acr in ID tokens but does not enforce acr_values.
 * This check does: a session whose sign-in reached less than the request's level (the weakest
 * level it lists; see `requiredLevel`) gets the login prompt again, so with prompt=none the client
 * hears `interaction_required` (OpenID Connect Core 3.1.2.6: the request cannot complete without
 * the End-User's interaction) and otherwise the interaction steps the session up. Without a
 * session the provider's own `no_session` check prompts, and the sign-in flow enforces the level.
 */
export function interactionPolicyFor(levels: readonly AcrLevel[], mfaPolicy: MfaPolicy) {
  const policy = interactionPolicy.base();
  policy.get('login')!.checks.add(new interactionPolicy.Check(
    ACR_CHECK,
    'the requested authentication context class has not been reached in this session',
    'interaction_required',
    (ctx) => {
      if (!ctx.oidc.session?.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      const required = requiredLevel(requested(ctx), levels);
      if (!required || satisfies(ctx.oidc.acr, required)) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      return interactionPolicy.Check.REQUEST_PROMPT;
    },
    // The session's sign-in time, which a step-up starts from (the interaction keeps only its amr).
    (ctx) => ({ auth_time: ctx.oidc.session?.authTime() }),
  ));
  // The SSO session serves every client: one signed in where the policy asked less (another
  // client, or before the policy changed) must not reach a client whose policy asks more. Its
  // amr says what its sign-in proved, whatever ACR_VALUES lets acr say.
  policy.get('login')!.checks.add(new interactionPolicy.Check(
    MFA_POLICY_CHECK,
    "the session's sign-in does not meet this client's multi-factor policy",
    'interaction_required',
    (ctx) => {
      const session = ctx.oidc.session;
      if (!session?.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      const needed = levelOfPolicy(mfaPolicyFor(mfaPolicy, ctx.oidc.client?.metadata() as Record<string, unknown> | undefined));
      const amr = Array.isArray(session.amr) ? session.amr : [];
      if (!needed || satisfies(levelReached(flowOfSession(session.accountId, amr, 0).proven, ACR_LEVELS), needed)) {
        return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      }
      return interactionPolicy.Check.REQUEST_PROMPT;
    },
    (ctx) => ({ auth_time: ctx.oidc.session?.authTime() }),
  ));
  return policy;
}

/** ACR_VALUES: advertised in discovery (acr_values_supported), the levels a sign-in claims as acr. */
export function acrConfiguration(levels: readonly AcrLevel[]): Configuration {
  return { acrValues: [...levels] };
}
