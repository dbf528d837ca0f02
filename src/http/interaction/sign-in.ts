import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { Accounts } from '../../domain/authn/accounts.ts';
import type { RegistrationPolicy } from '../../domain/accounts/registration-policy.ts';
import type { Mfa } from '../../domain/authn/mfa.ts';
import { mfaPolicyFor } from '../../domain/authn/mfa-policy.ts';
import {
  attainable, flowOfSession, nextStep, parseFlow, prove, requiredLevel, secondFactorsOf,
  type AcrLevel, type Factor, type FederatedVia, type MfaPolicy, type NextStep, type ProvenFlow, type SecondFactor, type SignInFlow, type SignInPolicy,
} from '../../domain/authn/sign-in-flow.ts';
import { STEP_UP_CHECKS } from '../../oidc/configuration/acr.ts';
import type { UserRow } from '../../repos/users.ts';
import { registrationPolicyOf } from '../registration.ts';
import { finish, flowContext, saveResult, type Details } from './shared.ts';
import { tenantOf } from './tenant.ts';

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
  /** MFA_POLICY; a client's mfa_policy may make it stricter for its sign-ins. */
  mfaPolicy: MfaPolicy;
  /** SMS_PROVIDER is not off: without it an SMS factor cannot be proven, so it is not asked for. */
  smsEnabled: boolean;
  /** ACR_VALUES, weakest first. */
  acrLevels: readonly AcrLevel[];
  /** The second factors a person can enrol within a sign-in (enroll.ts's methods). */
  enrollable: readonly SecondFactor[];
}) {
  const { provider, accounts } = deps;

  /**
   * The second factors a sign-in may ask for (the flow module decides whether it asks). A phone
   * enrolled before SMS was turned off cannot get a code: asking for it would be a dead end.
   */
  const enrolledOf = async (user: UserRow): Promise<SecondFactor[]> =>
    secondFactorsOf((await deps.mfa.enrolledFactors(user.id)).map((f) => f.type).filter((type) => type !== 'sms' || deps.smsEnabled));

  async function policyOf(details: Details, user: UserRow): Promise<SignInPolicy> {
    const clientId = details.params.client_id as string;
    // The client's registration policy is looked up only when it can matter: an address still to prove.
    const requireVerifiedAddress = !user.email_verified
      && (await registrationPolicyOf(provider, deps.registrationDefaults, clientId)).requireEmailVerification;
    const client = await provider.Client.find(clientId).catch(() => undefined);
    const mfa = mfaPolicyFor(deps.mfaPolicy, client?.metadata() as Record<string, unknown> | undefined);
    return { mfa, enrolled: await enrolledOf(user), acrLevels: deps.acrLevels, requireVerifiedAddress };
  }

  async function stepOf(details: Details, user: UserRow, flow: ProvenFlow) {
    const policy = await policyOf(details, user);
    return { policy, step: nextStep(flow, policy, { emailVerified: user.email_verified }, { acrValues: acrValuesOf(details) }) };
  }

  /**
   * The factors the person may enrol now, when the flow owes a second factor the account has none
   * of: those of enroll.ts's methods that meet what is owed (a phishing-resistant one for phr).
   * None under an effective policy of `off`: the operator chose not to have people enrol during
   * sign-ins, so a client asking for mfa of an account without a factor hears it cannot be met.
   */
  function enrollableFor(step: NextStep, policy: SignInPolicy): SecondFactor[] {
    if (step.kind !== 'second-factor' || step.options.length > 0 || policy.mfa === 'off') return [];
    const phishingResistant = owesPhishingResistant(step, policy);
    return deps.enrollable.filter((f) => f !== 'recovery_code' && (!phishingResistant || PHISHING_RESISTANT_FACTORS.has(f)));
  }

  /** Asks the flow module what comes next for `flow` and acts on it; false when a step has no handler here. */
  async function advance(ctx: Context, details: Details, user: UserRow, flow: ProvenFlow, steps: StepHandlers): Promise<boolean> {
    const { policy, step } = await stepOf(details, user, flow);
    if (step.kind === 'complete') {
      const { accountId, amr, acr, authTime } = step;
      const via = flow.proven.find((p) => p.factor === 'federated')?.provider;
      await accounts.recordSignIn(user, amr, flowContext(ctx, details), via);
      await finish(ctx, details, { login: { accountId, amr, ...(acr ? { acr } : {}), ts: authTime } });
      return true;
    }
    const enrol = step.kind === 'second-factor' && step.options.length === 0;
    if (enrol && enrollableFor(step, policy).length === 0) {
      // A second factor is owed that the account has none of and cannot enrol here: the client
      // hears that its requirement cannot be met.
      await finish(ctx, details, unmet(owesPhishingResistant(step, policy) ? 'no phishing-resistant authenticator enrolled' : 'no second factor enrolled'));
      return true;
    }
    if (step.kind === 'verify-address' && !steps.verifyAddress) return false;
    await saveResult(details, { flow } satisfies { flow: SignInFlow });
    if (step.kind === 'verify-address') {
      await steps.verifyAddress!();
      return true;
    }
    // Its own page (second-factor.ts, or enroll.ts when there is none to prove), so a reload
    // does not post the first factor again.
    ctx.status = 303;
    ctx.redirect(`/interaction/${details.uid}/mfa${enrol ? '/enroll' : ''}`);
    return true;
  }

  return {
    /** The account whose first factor this interaction has proven and that still owes a second one. */
    pendingAccount(details: Details): string | undefined {
      return parseFlow(details.result?.flow)?.accountId;
    },

    /** The second factors the flow offers the pending account now (none when it owes no second factor). */
    async secondFactorOptions(details: Details, user: UserRow): Promise<SecondFactor[]> {
      const flow = parseFlow(details.result?.flow);
      if (flow?.accountId !== user.id || flow.proven.length === 0) return [];
      const { step } = await stepOf(details, user, flow as ProvenFlow);
      return step.kind === 'second-factor' ? step.options : [];
    },

    /**
     * The factors the pending account may enrol in this interaction now: only while the flow owes
     * a second factor the account has none of (an account with one proves it instead: enrolling
     * another here would step around it).
     */
    async enrollableFactors(details: Details, user: UserRow): Promise<SecondFactor[]> {
      const flow = parseFlow(details.result?.flow);
      if (flow?.accountId !== user.id || flow.proven.length === 0) return [];
      const { policy, step } = await stepOf(details, user, flow as ProvenFlow);
      return enrollableFor(step, policy);
    },

    /**
     * Records `factor` (or several at once: a link proven by password and federation) as proven
     * for `user` in this interaction and goes on as the flow says.
     */
    async prove(ctx: Context, details: Details, user: UserRow, factor: Factor | Factor[], steps: StepHandlers = {}, via?: FederatedVia): Promise<void> {
      // Every way in looks accounts up in the interaction's tenant; an account of another tenant
      // reaching here would be a bug, and signing it in would cross tenants.
      if (user.tenant_id !== tenantOf(details)) ctx.throw(403, 'the account belongs to another tenant than this sign-in');
      const at = Math.floor(Date.now() / 1000);
      let flow = parseFlow(details.result?.flow);
      for (const f of Array.isArray(factor) ? factor : [factor]) flow = prove(flow, user.id, f, at, f === 'federated' ? via : undefined);
      if (!flow?.accountId) throw new Error('no factor to prove');
      if (!(await advance(ctx, details, user, flow as ProvenFlow, steps))) ctx.throw(500, 'no verify-address step on this way in');
    },

    /**
     * Answers the start of a sign-in the provider asked for only because the session's level is
     * below the request's acr_values or the client's MFA policy (the login prompt's `acr_values`
     * and `mfa_policy` checks alone): the signed-in user is not asked for the first factor again;
     * the flow starts from the session's sign-in and goes on to the second factor. True when it answered; false leaves the login page to the caller.
     */
    async stepUp(ctx: Context, details: Details): Promise<boolean> {
      const session = details.session;
      const reasons = details.prompt.reasons;
      if (!session?.accountId || reasons.length === 0 || reasons.some((r) => !STEP_UP_CHECKS.has(r))) return false;
      const user = await accounts.findActive(session.accountId);
      // Another tenant's session is never stepped up (the provider's tenant check asks for a sign-in).
      if (!user || user.tenant_id !== tenantOf(details)) return false;
      const authTime = Number(details.prompt.details.auth_time);
      const from = flowOfSession(user.id, Array.isArray(session.amr) ? session.amr : [], Number.isFinite(authTime) ? authTime : 0);
      if (from.proven.length === 0) return false;
      return advance(ctx, details, user, from as ProvenFlow, {});
    },

    /**
     * A requested level no factor of this provider can reach (none today: kept for a deployment whose levels outgrow its factors):
     * the client is told at once instead of after a password. True when it answered.
     */
    async unattainable(ctx: Context, details: Details): Promise<boolean> {
      const required = requiredLevel(acrValuesOf(details), deps.acrLevels);
      if (!required || attainable(required)) return false;
      await finish(ctx, details, unmet('phishing-resistant authentication is not available'));
      return true;
    },
  };
}

const PHISHING_RESISTANT_FACTORS: ReadonlySet<SecondFactor> = new Set<SecondFactor>(['webauthn']);

/**
 * Whether the second factor a step owes must be phishing-resistant: the request's level is phr, or
 * (the request's level met) the policy is phishing-resistant. `nextStep` asks for the request's
 * level first and names it in `level`.
 */
const owesPhishingResistant = (step: NextStep, policy: SignInPolicy) =>
  step.kind === 'second-factor' && (step.level === 'phr' || (step.level === undefined && policy.mfa === 'phishing-resistant'));

const acrValuesOf = (details: Details): string[] =>
  (typeof details.params.acr_values === 'string' ? details.params.acr_values.split(' ').filter(Boolean) : []);

/**
 * The answer to a client whose acr_values cannot be met: unmet_authentication_requirements
 * (OpenID Connect Core Unmet Authentication Requirements 1.0: "unable to meet the requirements of
 * the Relying Party for the authentication of the End-User").
 */
const unmet = (description: string) => ({ error: 'unmet_authentication_requirements', error_description: description });

export type SignIn = ReturnType<typeof createSignIn>;
