/**
 * The sign-in as one flow (after Ory Kratos's login flow and Logto's verification records): every
 * way in records the factor it proved, and only `nextStep` says what comes next and, once the
 * policy is met, what the sign-in yields. Pure: the HTTP layer keeps the record and acts on the answer.
 */

/** The ways in. Today's: password, email_code, magic_link; the others are the factors to come. */
export type Factor =
  | 'password'
  | 'email_code'
  | 'magic_link'
  | 'totp'
  | 'webauthn'
  | 'passkey'
  | 'sms'
  | 'recovery_code'
  | 'federated';

export interface ProvenFactor {
  factor: Factor;
  /** Epoch seconds. */
  at: number;
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

export type SecondFactor = Extract<Factor, 'totp' | 'webauthn' | 'passkey' | 'sms' | 'recovery_code'>;

const SECOND_FACTORS: ReadonlySet<Factor> = new Set<SecondFactor>(['totp', 'webauthn', 'passkey', 'sms', 'recovery_code']);
const PHISHING_RESISTANT: ReadonlySet<Factor> = new Set<Factor>(['webauthn', 'passkey']);
const ADDRESS_PROOFS: ReadonlySet<Factor> = new Set<Factor>(['email_code', 'magic_link']);

/** The client's and tenant's rules for this sign-in. */
export interface SignInPolicy {
  mfa: MfaPolicy;
  /** The second factors the account has enrolled. */
  enrolled: readonly SecondFactor[];
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
export type AmrValue =
  | 'face' | 'fpt' | 'geo' | 'hwk' | 'iris' | 'kba' | 'mca' | 'mfa' | 'otp' | 'pin' | 'pop'
  | 'pwd' | 'rba' | 'retina' | 'sc' | 'sms' | 'swk' | 'tel' | 'user' | 'vbm' | 'wia';

export type NextStep =
  | { kind: 'complete'; accountId: string; amr: AmrValue[]; acr?: string; authTime: number }
  /** Prove the account's address (the code form): its address is unproven and the policy wants it proven. */
  | { kind: 'verify-address'; accountId: string }
  /** One of `options` is still required; none means the account must enrol one first. */
  | { kind: 'second-factor'; accountId: string; options: SecondFactor[] };

/** A new proof. A factor proven for another account starts the flow over for that account. */
export function prove(flow: SignInFlow | undefined, accountId: string, factor: Factor, at: number): ProvenFlow {
  const earlier = flow?.accountId === accountId ? flow.proven : [];
  return { accountId, proven: [...earlier, { factor, at }] };
}

/**
 * The acr values (OpenID EAP ACR Values 1.0) a sign-in can meet. The provider advertises none yet
 * and today's factors meet none, so no acr is claimed until phishing-resistant factors exist.
 */
const ACR_MET = new Map<string, (factors: ReadonlySet<Factor>) => boolean>([
  ['phr', (factors) => factors.has('webauthn') || factors.has('passkey')],
  ['phrh', (factors) => factors.has('webauthn')],
]);

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
  webauthn: ['hwk'],
  passkey: ['swk'],
  sms: ['sms'],
  recovery_code: ['otp'],
  federated: [], // the upstream's methods, decided with the federation
};

/**
 * Every method used in this sign-in (RFC 8176 section 1), in the order proven, and `mfa` when a
 * second factor joined a first one (a password, an emailed proof). A password with an emailed code
 * alone is not `mfa`: NIST SP 800-63B, which RFC 8176 defers to, does not count email as a factor.
 */
function amrOf(proven: readonly ProvenFactor[]): AmrValue[] {
  const methods = new Set(proven.flatMap((p) => AMR[p.factor]));
  const second = proven.some((p) => SECOND_FACTORS.has(p.factor));
  if (second && proven.some((p) => !SECOND_FACTORS.has(p.factor))) methods.add('mfa');
  return [...methods];
}

/** What comes next for `flow` under `policy`; `complete` once the policy is met. */
export function nextStep(flow: ProvenFlow, policy: SignInPolicy, account: SignInAccount, request: SignInRequest): NextStep {
  const { accountId, proven } = flow;
  const factors = new Set(proven.map((p) => p.factor));
  if (policy.requireVerifiedAddress && !account.emailVerified && ![...factors].some((f) => ADDRESS_PROOFS.has(f))) {
    return { kind: 'verify-address', accountId };
  }
  const wantsSecond = policy.mfa === 'required' || policy.mfa === 'phishing-resistant' || (policy.mfa === 'optional' && policy.enrolled.length > 0);
  if (wantsSecond) {
    const acceptable = policy.mfa === 'phishing-resistant' ? PHISHING_RESISTANT : SECOND_FACTORS;
    if (![...factors].some((f) => acceptable.has(f))) {
      return { kind: 'second-factor', accountId, options: policy.enrolled.filter((f) => acceptable.has(f)) };
    }
  }
  const acr = request.acrValues.find((value) => ACR_MET.get(value)?.(factors));
  // The sign-in happened when its last factor was proven.
  const authTime = proven[proven.length - 1]!.at;
  return { kind: 'complete', accountId, amr: amrOf(proven), ...(acr ? { acr } : {}), authTime };
}

/** Reads a flow record back from storage; anything malformed counts as no flow. */
export function parseFlow(value: unknown): SignInFlow | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { accountId, proven } = value as Record<string, unknown>;
  if (typeof accountId !== 'string' || !Array.isArray(proven)) return undefined;
  const valid = proven.every((p) => typeof p === 'object' && p !== null && typeof p.factor === 'string' && Object.hasOwn(AMR, p.factor) && typeof p.at === 'number');
  return valid ? { accountId, proven: proven as ProvenFactor[] } : undefined;
}
