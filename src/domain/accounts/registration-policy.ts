/**
 * Self-registration options. The deployment sets the tenant's defaults (REGISTRATION_* settings);
 * a client can override each one in its metadata (registration_enabled, registration_password,
 * registration_welcome_mail, registration_require_email_verification), as Logto's sign-in
 * experience or a Keycloak realm's registration flow would per application.
 */
export interface RegistrationPolicy {
  enabled: boolean;
  /** 'optional': the form may omit the password; the account gets a random one and a set-password mail. */
  password: 'required' | 'optional';
  welcomeMail: boolean;
  /** The first sign-in waits until the email is verified. */
  requireEmailVerification: boolean;
}

export const REGISTRATION_METADATA = {
  registration_enabled: 'enabled',
  registration_password: 'password',
  registration_welcome_mail: 'welcomeMail',
  registration_require_email_verification: 'requireEmailVerification',
} as const satisfies Record<string, keyof RegistrationPolicy>;

/** The policy for a client: its own metadata over the tenant's defaults. */
export function registrationPolicyFor(defaults: RegistrationPolicy, clientMetadata: Record<string, unknown> = {}): RegistrationPolicy {
  const policy = { ...defaults };
  for (const [property, field] of Object.entries(REGISTRATION_METADATA)) {
    const value = clientMetadata[property];
    if (value === undefined || value === null) continue;
    if (field === 'password') {
      if (value === 'required' || value === 'optional') policy.password = value;
    } else if (typeof value === 'boolean') {
      policy[field] = value;
    }
  }
  return policy;
}
