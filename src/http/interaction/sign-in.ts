import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { Accounts } from '../../domain/authn/accounts.ts';
import type { RegistrationPolicy } from '../../domain/accounts/registration-policy.ts';
import type { Mfa } from '../../domain/authn/mfa.ts';
import { nextStep, parseFlow, prove, type Factor, type ProvenFlow, type SecondFactor, type SignInPolicy } from '../../domain/authn/sign-in-flow.ts';
import type { UserRow } from '../../repos/users.ts';
import { registrationPolicyOf } from '../registration.ts';
import { finish, flowContext, type Details } from './shared.ts';

/** What a way in does when the flow asks for another step before completing. */
export interface StepHandlers {
  verifyAddress?: () => Promise<void>;
}

/**
 * The only place a sign-in completes: each way in hands its proven factor here, the flow module
 * says what comes next, and `complete` becomes the provider's login result.
 *
 * The flow record is kept in the interaction itself, under `result.flow` (oidc-provider keeps
 * `result` in the Interaction's stored payload): it is bound to the interaction uid the browser's
 * signed cookie names, expires and is deleted with it, and lives in the database every instance
 * shares. The ephemeral store would need its own expiry and, in memory, would bind the flow to one
 * process. A login result replaces `result` whole, so the record goes when the sign-in completes.
 */
export function createSignIn(deps: {
  provider: Provider;
  accounts: Accounts;
  registrationDefaults: RegistrationPolicy;
  mfa: Mfa;
  mfaPolicy: 'off' | 'optional';
}) {
  const { provider, accounts } = deps;

  /**
   * The second factors a sign-in may ask for. Recovery codes stand in for an authenticator, so
   * they are offered only beside one: alone they do not make a sign-in ask for a second step.
   */
  async function enrolledOf(user: UserRow): Promise<SecondFactor[]> {
    if (deps.mfaPolicy === 'off') return [];
    const types = new Set((await deps.mfa.enrolledFactors(user.id)).map((f) => f.type));
    if (!types.has('totp')) return [];
    return types.has('recovery') ? ['totp', 'recovery_code'] : ['totp'];
  }

  async function policyOf(details: Details, user: UserRow): Promise<SignInPolicy> {
    // The client's policy is looked up only when it can matter: an address still to prove.
    const requireVerifiedAddress = !user.email_verified
      && (await registrationPolicyOf(provider, deps.registrationDefaults, details.params.client_id as string)).requireEmailVerification;
    return { mfa: deps.mfaPolicy, enrolled: await enrolledOf(user), requireVerifiedAddress };
  }

  return {
    /** The account whose first factor this interaction has proven and that still owes a second one. */
    pendingAccount(details: Details): string | undefined {
      return parseFlow(details.result?.flow)?.accountId;
    },

    /** Records `factor` as proven for `user` in this interaction and goes on as the flow says. */
    async prove(ctx: Context, details: Details, user: UserRow, factor: Factor, steps: StepHandlers = {}): Promise<void> {
      const flow: ProvenFlow = prove(parseFlow(details.result?.flow), user.id, factor, Math.floor(Date.now() / 1000));
      const acrValues = typeof details.params.acr_values === 'string' ? details.params.acr_values.split(' ').filter(Boolean) : [];
      const step = nextStep(flow, await policyOf(details, user), { emailVerified: user.email_verified }, { acrValues });
      if (step.kind === 'complete') {
        const { accountId, amr, acr, authTime } = step;
        await accounts.recordSignIn(user, amr, flowContext(ctx, details));
        await finish(provider, ctx, { login: { accountId, amr, ...(acr ? { acr } : {}), ts: authTime } });
        return;
      }
      await provider.interactionResult(ctx.req, ctx.res, { flow }, { mergeWithLastSubmission: false });
      if (step.kind === 'verify-address' && steps.verifyAddress) return steps.verifyAddress();
      if (step.kind === 'second-factor') {
        // Its own page (second-factor.ts), so a reload does not post the first factor again.
        ctx.status = 303;
        return ctx.redirect(`/interaction/${details.uid}/mfa`);
      }
      ctx.throw(500, `no ${step.kind} step on this way in`);
    },
  };
}

export type SignIn = ReturnType<typeof createSignIn>;
