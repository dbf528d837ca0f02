/**
 * The sign-in as one flow (after Ory Kratos's login flow and Logto's verification records): every
 * way in records the factor it proved, and only `nextStep` says what comes next and, once the
 * policy is met, what the sign-in yields. Pure: the HTTP layer keeps the record and acts on the answer.
 */

/**
 * The ways in. First factors: password, email_code (a code to sign in with), magic_link, passkey
 * (passwordless: a discoverable WebAuthn credential with user verification) and federated. Second
 * factors: totp, webauthn (a security key or passkey after a first factor), sms, email_otp (the
 * enrolled email factor) and recovery_code.
 */
export type Factor =
  | 'password'
  | 'email_code'
  | 'magic_link'
  | 'totp'
  | 'webauthn'
  | 'passkey'
  | 'sms'
  | 'email_otp'
  | 'recovery_code'
  | 'federated';

export interface ProvenFactor {
  factor: Factor;
  /** Epoch seconds. */
  at: number;
  /** For `federated`: the identity provider's alias. */
  provider?: string;
  /** For `federated`, when the provider is trusted for MFA: the methods the upstream says it used. */
  upstreamAmr?: string[];
}

/** How a federated factor came: the provider, and the upstream's methods when it is trusted for MFA. */
export interface FederatedVia {
  provider: string;
  upstreamAmr?: string[];
}

/** What one sign-in has proven so far, for one account. */
export interface SignInFlow {
  accountId?: string;
  proven: ProvenFactor[];
}

/** A flow with an account and at least one factor: what `prove` returns and `nextStep` takes. */
export interface ProvenFlow extends SignInFlow {
  accountId: string;
  proven: [...ProvenFactor[], ProvenFactor];
}

export type MfaPolicy = 'off' | 'optional' | 'required' | 'phishing-resistant';

export type SecondFactor = Extract<Factor, 'totp' | 'webauthn' | 'sms' | 'email_otp' | 'recovery_code'>;

const SECOND_FACTORS: ReadonlySet<Factor> = new Set<SecondFactor>(['totp', 'webauthn', 'sms', 'email_otp', 'recovery_code']);
const PHISHING_RESISTANT: ReadonlySet<Factor> = new Set<Factor>(['webauthn', 'passkey']);
/**
 * Factors that are multi-factor on their own: a passkey with user verification is something held
 * (the authenticator) and something known or been (its PIN or biometric), checked by the
 * authenticator (WebAuthn Level 3, "user verification"; NIST SP 800-63B multi-factor cryptographic
 * authenticator).
 */
const MULTI_FACTOR: ReadonlySet<Factor> = new Set<Factor>(['passkey']);
const ADDRESS_PROOFS: ReadonlySet<Factor> = new Set<Factor>(['email_code', 'magic_link']);

/**
 * The assurance levels (acr values) this provider knows, weakest first: `pwd` any sign-in (one
 * factor: a password, an emailed code or link), `mfa` a second factor joined a first one (amr
 * `mfa`), `phr` phishing-resistant (OpenID EAP ACR Values 1.0: WebAuthn or a passkey). A level
 * satisfies a request for any weaker one.
 */
export const ACR_LEVELS = ['pwd', 'mfa', 'phr'] as const;
export type AcrLevel = (typeof ACR_LEVELS)[number];

const rank = (value: string | undefined): number => ACR_LEVELS.indexOf(value as AcrLevel);

/** The client's and tenant's rules for this sign-in. */
export interface SignInPolicy {
  mfa: MfaPolicy;
  /** The second factors the account has enrolled (whatever the mfa policy says of asking for them). */
  enrolled: readonly SecondFactor[];
  /** The acr values this deployment offers (ACR_VALUES), weakest first. */
  acrLevels: readonly AcrLevel[];
  /** The account's address must be proven before it signs in (registration_require_email_verification). */
  requireVerifiedAddress: boolean;
}

export interface SignInRequest {
  /** The authorization request's acr_values, in order of preference. */
  acrValues: readonly string[];
}

export interface SignInAccount {
  emailVerified: boolean;
}

/** The IANA "Authentication Method Reference Values" registry (RFC 8176 section 2, and EAP's pop). */
const AMR_REGISTRY = [
  'face', 'fpt', 'geo', 'hwk', 'iris', 'kba', 'mca', 'mfa', 'otp', 'pin', 'pop',
  'pwd', 'rba', 'retina', 'sc', 'sms', 'swk', 'tel', 'user', 'vbm', 'wia',
] as const;
export type AmrValue =
  | (typeof AMR_REGISTRY)[number]
  /** Not in the registry: a sign-in through an upstream identity provider (issue 12's `fed`). */
  | 'fed';
const isAmrValue = (value: string): value is AmrValue => (AMR_REGISTRY as readonly string[]).includes(value);

export type NextStep =
  | { kind: 'complete'; accountId: string; amr: AmrValue[]; acr?: AcrLevel; authTime: number }
  /** Prove the account's address (the code form): its address is unproven and the policy wants it proven. */
  | { kind: 'verify-address'; accountId: string }
  /**
   * One of `options` is still required; none means the account must enrol one first. `level` is
   * the requested acr the step is for, when the request (not the mfa policy) asks for it.
   */
  | { kind: 'second-factor'; accountId: string; options: SecondFactor[]; level?: AcrLevel };

/** A new proof. A factor proven for another account starts the flow over for that account. */
export function prove(flow: SignInFlow | undefined, accountId: string, factor: Factor, at: number, via?: FederatedVia): ProvenFlow {
  const earlier = flow?.accountId === accountId ? flow.proven : [];
  return { accountId, proven: [...earlier, { factor, at, ...(via ?? {}) }] };
}

/**
 * Whether a proof is multi-factor on its own: a passkey, or a sign-in at a provider trusted for
 * MFA whose upstream says `mfa` (the provider's setting trustUpstreamMfa; by default the upstream's
 * word is not taken and the local second factor is asked when the account has one).
 */
const multiFactor = (p: ProvenFactor) => MULTI_FACTOR.has(p.factor) || (p.factor === 'federated' && (p.upstreamAmr ?? []).includes('mfa'));

/** When a sign-in's factors meet each level (the levels are cumulative: see `ACR_LEVELS`). */
const LEVEL_MET: Record<AcrLevel, (proven: readonly ProvenFactor[]) => boolean> = {
  pwd: (proven) => proven.length > 0,
  mfa: (proven) => amrOf(proven).includes('mfa'),
  phr: (proven) => proven.some((p) => PHISHING_RESISTANT.has(p.factor)),
};

/** The factors this provider can check today; a level none of them meets cannot be reached. */
const OFFERED: readonly ProvenFactor[] = (['password', 'email_code', 'magic_link', 'totp', 'sms', 'email_otp', 'recovery_code', 'webauthn', 'passkey'] as const)
  .map((factor) => ({ factor, at: 0 }));

/** The strongest of `levels` the factors `proven` meet: the sign-in's acr. */
export function levelReached(proven: readonly ProvenFactor[], levels: readonly AcrLevel[]): AcrLevel | undefined {
  return [...levels].sort((a, b) => rank(b) - rank(a)).find((level) => LEVEL_MET[level](proven));
}

/**
 * The level an authorization request's acr_values require. OpenID Connect Core 3.1.2.1 lists them
 * in order of preference, each acceptable; our levels are ordered, so the weakest one listed is
 * the least the request accepts (`mfa phr`: mfa will do). Values this deployment does not offer
 * are ignored (a voluntary request: the ID token's acr says what was reached); none offered: no
 * requirement.
 */
export function requiredLevel(acrValues: readonly string[], levels: readonly AcrLevel[]): AcrLevel | undefined {
  const offered = acrValues.filter((value): value is AcrLevel => levels.includes(value as AcrLevel));
  return offered.sort((a, b) => rank(a) - rank(b))[0];
}

/** Whether a sign-in at `reached` (a session's acr, maybe none) satisfies `required`. */
export function satisfies(reached: string | undefined, required: AcrLevel): boolean {
  return rank(reached) >= rank(required);
}

/** Whether any factor this provider offers today can reach `level`. */
export function attainable(level: AcrLevel): boolean {
  return LEVEL_MET[level](OFFERED);
}

/**
 * A flow standing for an earlier sign-in (a session stepping up): its amr read back as factors
 * proven at its auth time, in the amr's order, so the amr of the completed step-up lists them
 * again. pwd is the password, swk a passkey, hwk a security key and sms the SMS factor (second
 * factors). otp is an emailed proof when the sign-in was not mfa or had no other first factor; it
 * is the second factor (TOTP or the email factor: the amr is the same) when mfa came with a first
 * factor, or with an emailed proof and no other second factor to explain it. Methods no factor
 * here yields are dropped.
 */
export function flowOfSession(accountId: string, amr: readonly string[], authTime: number): SignInFlow {
  const has = (value: string) => amr.includes(value);
  const otherFirst = has('pwd') || has('swk');
  const otp: Factor[] = !has('mfa') ? ['email_code']
    : otherFirst ? ['totp']
      : has('hwk') || has('sms') ? ['email_code'] : ['email_code', 'totp'];
  const FACTORS_OF: Record<string, readonly Factor[]> = { fed: ['federated'], pwd: ['password'], swk: ['passkey'], hwk: ['webauthn'], sms: ['sms'], otp };
  const factors = [...new Set(amr)].flatMap((value) => (Object.hasOwn(FACTORS_OF, value) ? FACTORS_OF[value]! : []));
  return { accountId, proven: factors.map((factor) => ({ factor, at: authTime })) };
}

/**
 * RFC 8176 values per factor. An emailed code and a magic link are single-use secrets sent to the
 * mailbox: otp. Neither makes the sign-in `mfa`: RFC 8176 takes mfa from NIST SP 800-63, which
 * does not accept email as an out-of-band authenticator, and an RP asking for mfa must not get it
 * from a password and a mailbox.
 */
const AMR: Record<Factor, readonly AmrValue[]> = {
  password: ['pwd'],
  email_code: ['otp'],
  magic_link: ['otp'],
  totp: ['otp'],
  email_otp: ['otp'],
  webauthn: ['hwk'],
  passkey: ['swk'],
  sms: ['sms'],
  recovery_code: ['otp'],
  federated: ['fed'],
};

/**
 * Every method used in this sign-in (RFC 8176 section 1), in the order proven, and `mfa` when a
 * second factor joined a first one (a password, an emailed proof), or a factor that is
 * multi-factor by itself (a passkey) was proven. A password with an emailed sign-in code alone is
 * not `mfa`: an emailed code there is the first factor. The enrolled email factor (email_otp) is a
 * second factor beside a password, but never beside another proof from the same mailbox.
 */
function amrOf(proven: readonly ProvenFactor[]): AmrValue[] {
  // A trusted upstream's methods are listed too, those the registry knows.
  const methods = new Set(proven.flatMap((p) => [...AMR[p.factor], ...(p.upstreamAmr ?? []).filter(isAmrValue)]));
  const joined = proven.some((p) => !SECOND_FACTORS.has(p.factor)) && proven.some((p) => SECOND_FACTORS.has(p.factor) && addsToFirst(p.factor, proven));
  if (joined || proven.some(multiFactor)) methods.add('mfa');
  return [...methods];
}

/** Whether a first factor other than a mailbox proof (email_code, magic_link) was proven. */
const beyondMailbox = (proven: readonly ProvenFactor[]) =>
  proven.some((p) => !SECOND_FACTORS.has(p.factor) && !ADDRESS_PROOFS.has(p.factor));

/** Whether second factor `factor` adds to what `proven` shows: the email factor adds nothing to a mailbox proof. */
const addsToFirst = (factor: Factor, proven: readonly ProvenFactor[]) => factor !== 'email_otp' || beyondMailbox(proven);

/**
 * The enrolled factors of `acceptable` worth asking for after `proven`: not the email factor after
 * a mailbox proof (the same mailbox twice), and recovery codes only beside another factor left
 * (they stand in for one).
 */
function optionsFor(enrolled: readonly SecondFactor[], acceptable: ReadonlySet<Factor>, proven: readonly ProvenFactor[]): SecondFactor[] {
  const options = enrolled.filter((f) => acceptable.has(f) && addsToFirst(f, proven));
  return options.some((f) => f !== 'recovery_code') ? options : [];
}

/**
 * What comes next for `flow` under `policy`; `complete` once the policy and the requested level
 * are met. A requested level above what the factors reach asks for a second factor whatever the
 * mfa policy says (off does not stop a client asking for mfa); the options are those the account
 * has enrolled that reach the level, none meaning it must enrol one first.
 */
export function nextStep(flow: ProvenFlow, policy: SignInPolicy, account: SignInAccount, request: SignInRequest): NextStep {
  const { accountId, proven } = flow;
  const factors = new Set(proven.map((p) => p.factor));
  if (policy.requireVerifiedAddress && !account.emailVerified && ![...factors].some((f) => ADDRESS_PROOFS.has(f))) {
    return { kind: 'verify-address', accountId };
  }
  const required = requiredLevel(request.acrValues, policy.acrLevels);
  if (required && !LEVEL_MET[required](proven)) {
    const acceptable = required === 'phr' ? PHISHING_RESISTANT : SECOND_FACTORS;
    return { kind: 'second-factor', accountId, options: optionsFor(policy.enrolled, acceptable, proven), level: required };
  }
  if (policyAsksSecondFactor(policy.mfa, policy.enrolled)) {
    // A passkey is multi-factor on its own: it answers the policy as a second factor would.
    const acceptable = policy.mfa === 'phishing-resistant' ? PHISHING_RESISTANT : SECOND_FACTORS;
    const options = optionsFor(policy.enrolled, acceptable, proven);
    // Under the optional policy an account whose only factor is its mailbox, signed in from that
    // mailbox, has nothing left to prove: asking the same mailbox again adds nothing, so it completes
    // (at pwd: a client wanting mfa asks for it and hears it cannot be met).
    const nothingToAdd = policy.mfa === 'optional' && options.length === 0;
    if (!nothingToAdd && !proven.some((p) => acceptable.has(p.factor) || multiFactor(p))) {
      return { kind: 'second-factor', accountId, options };
    }
  }
  const acr = levelReached(proven, policy.acrLevels);
  // The sign-in happened when its last factor was proven.
  const authTime = proven[proven.length - 1]!.at;
  return { kind: 'complete', accountId, amr: amrOf(proven), ...(acr ? { acr } : {}), authTime };
}

/** The stored factor types (mfa_factors.type) and the second factor each gives a sign-in. */
export type EnrolledType = 'totp' | 'recovery' | 'webauthn' | 'sms' | 'email';
const FACTOR_OF_TYPE = { webauthn: 'webauthn', totp: 'totp', sms: 'sms', email: 'email_otp' } as const satisfies Record<Exclude<EnrolledType, 'recovery'>, SecondFactor>;

/**
 * The second factors an account's enrolled factors give its sign-ins, strongest first (the second
 * step offers the first one). Recovery codes stand in for an authenticator, so they count only
 * beside one: alone they never make a sign-in ask, nor reach mfa.
 */
export function secondFactorsOf(types: Iterable<EnrolledType>): SecondFactor[] {
  const enrolled = new Set(types);
  const factors: SecondFactor[] = Object.entries(FACTOR_OF_TYPE)
    .filter(([type]) => enrolled.has(type as EnrolledType))
    .map(([, factor]) => factor);
  if (factors.length && enrolled.has('recovery')) factors.push('recovery_code');
  return factors;
}

/** Whether the mfa policy by itself asks for a second factor (a client's acr_values may ask anyway). */
export function policyAsksSecondFactor(mfa: MfaPolicy, enrolled: readonly SecondFactor[]): boolean {
  return mfa === 'required' || mfa === 'phishing-resistant' || (mfa === 'optional' && enrolled.length > 0);
}

/** Reads a flow record back from storage; anything malformed counts as no flow. */
export function parseFlow(value: unknown): SignInFlow | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { accountId, proven } = value as Record<string, unknown>;
  if (typeof accountId !== 'string' || !Array.isArray(proven)) return undefined;
  const valid = proven.every((p) => typeof p === 'object' && p !== null && typeof p.factor === 'string' && Object.hasOwn(AMR, p.factor) && typeof p.at === 'number'
    && (p.upstreamAmr === undefined || (Array.isArray(p.upstreamAmr) && p.upstreamAmr.every((m: unknown) => typeof m === 'string'))));
  return valid ? { accountId, proven: proven as ProvenFactor[] } : undefined;
}
