import type * as Samlify from 'samlify';
import { AppError } from '../errors.ts';
import { loadSamlify } from './saml-library.ts';

export interface SamlIdpMetadata {
  entityId: string;
  /** Where AuthnRequests go (HTTP-Redirect binding). */
  ssoRedirectUrl: string;
  /** The certificates (base64 DER) its responses and assertions must be signed with. */
  signingCertificates: string[];
  /** Where our LogoutResponses go (HTTP-Redirect binding), when it offers single logout. */
  sloRedirectUrl?: string;
}

const invalid = (why: string) => new AppError('IDENT_VALIDATION', `body.metadataXml: ${why}`);

/**
 * Reads what a SAML IdP's metadata must give us: its entity ID, a signing certificate (every
 * response or assertion is checked against it) and an HTTP-Redirect single sign-on endpoint. A
 * metadata document without one of them cannot serve a sign-in, so it is refused when the provider
 * is registered rather than at the first sign-in.
 */
export async function readSamlIdpMetadata(xml: string): Promise<SamlIdpMetadata> {
  const samlify = await loadSamlify();
  let meta: ReturnType<typeof Samlify.IdentityProvider>['entityMeta'];
  try {
    meta = samlify.IdentityProvider({ metadata: xml }).entityMeta;
  } catch {
    throw invalid('not SAML 2.0 IdP metadata');
  }
  const entityId: unknown = meta.getEntityID();
  if (typeof entityId !== 'string' || !entityId) throw invalid('no entityID');
  const certificate: unknown = meta.getX509Certificate('signing');
  const certificates = Array.isArray(certificate) ? certificate : [certificate];
  const signingCertificates = certificates.filter((c): c is string => typeof c === 'string' && c.trim() !== '').map((c) => c.replace(/\s+/g, ''));
  if (!signingCertificates.length) throw invalid('no signing certificate (KeyDescriptor use="signing")');
  const sso: unknown = meta.getSingleSignOnService('redirect');
  if (typeof sso !== 'string' || !sso) throw invalid('no SingleSignOnService with the HTTP-Redirect binding');
  // Optional: without it, an IdP-initiated logout still ends our sessions but gets no answer.
  const slo: unknown = meta.getSingleLogoutService('redirect');
  return { entityId, ssoRedirectUrl: sso, signingCertificates, ...(typeof slo === 'string' && slo ? { sloRedirectUrl: slo } : {}) };
}
