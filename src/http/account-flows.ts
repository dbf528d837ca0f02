import type { Registration } from '../domain/accounts/registration.ts';
import type { RegistrationPolicy } from '../domain/accounts/registration-policy.ts';
import type { EmailVerification } from '../domain/accounts/email-verification.ts';
import type { AddressProof } from '../domain/accounts/address-proof.ts';
import type { PasswordReset } from '../domain/accounts/password-reset.ts';
import type { MagicLinks } from '../domain/authn/magic-links.ts';
import type { SelfService } from '../domain/accounts/self-service.ts';
import type { Mfa } from '../domain/authn/mfa.ts';
import type { MfaPolicy } from '../domain/authn/sign-in-flow.ts';
import type { CodeFactors } from '../domain/authn/code-factors.ts';
import type { WebAuthn } from '../domain/authn/webauthn.ts';
import type { Captcha } from '../infra/captcha.ts';

/** The account lifecycle services the pages and the account API use. */
export interface AccountFlowDeps {
  registration: Registration;
  registrationDefaults: RegistrationPolicy;
  verification: EmailVerification;
  addressProof: AddressProof;
  passwordReset: PasswordReset;
  magicLinks: MagicLinks;
  selfService: SelfService;
  /** Second factors (TOTP, recovery codes) of the signed-in user. */
  mfa: Mfa;
  /** MFA_POLICY: the deployment's policy (a client's `mfa_policy` may make it stricter). */
  mfaPolicy: MfaPolicy;
  /** SMS and email codes as second factors of the signed-in user, and their sign-in step. */
  codeFactors: CodeFactors;
  /** Security keys and passkeys: registration, the second step, passwordless sign-in. */
  webauthn: WebAuthn;
  captcha: Captcha;
  authRateLimitPerIp: number;
  meRateLimitPerUser: number;
}
