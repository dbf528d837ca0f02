/**
 * The absolute URLs (under ISSUER) that account mails carry. One place, so the pages that answer
 * them and the mails that link to them cannot drift apart.
 */
export function createAccountLinks(issuer: string) {
  const at = (path: string, token?: string) => {
    const url = new URL(`${issuer}${path}`);
    if (token !== undefined) url.searchParams.set('token', token);
    return url.toString();
  };
  return {
    verifyEmail: (token: string) => at('/verify-email', token),
    resetPassword: (token: string) => at('/reset-password', token),
    forgotPassword: () => at('/forgot-password'),
    /** Completes the pending authorization `uid`; opened in the browser that asked for it. */
    magicLink: (uid: string, token: string) => at(`/interaction/${encodeURIComponent(uid)}/magic-link`, token),
    account: () => at('/account'),
  };
}

export type AccountLinks = ReturnType<typeof createAccountLinks>;
