import { constantTimeEqual, type SecretBox } from '../../infra/crypto.ts';

/**
 * CSRF tokens for interaction forms: an HMAC of the interaction uid. The uid itself is bound to
 * the browser by the provider's signed, SameSite interaction cookie, so a form can be posted
 * only by the page that rendered it.
 */
export function createCsrf(box: SecretBox) {
  return {
    issue(uid: string): string {
      return box.mac('csrf:interaction', uid).toString('base64url');
    },
    verify(uid: string, token: unknown): boolean {
      return typeof token === 'string' && constantTimeEqual(box.mac('csrf:interaction', uid).toString('base64url'), token);
    },
  };
}

export type Csrf = ReturnType<typeof createCsrf>;
