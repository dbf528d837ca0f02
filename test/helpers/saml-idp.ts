// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import * as samlify from 'samlify';

const webcrypto = globalThis.crypto;
x509.cryptoProvider.set(webcrypto);

export interface SigningIdentity {
  certificatePem: string;
  privateKeyPem: string;
}

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };

/** A self-signed RSA certificate and its key, as a SAML IdP signs with. */
export async function selfSignedIdentity(commonName = 'test-idp'): Promise<SigningIdentity> {
  const keys = await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${commonName}`,
    notBefore: new Date(Date.now() - 24 * 3600_000),
    notAfter: new Date(Date.now() + 30 * 24 * 3600_000),
    signingAlgorithm: RSA,
    keys,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const privateKeyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { certificatePem: certificate.toString('pem'), privateKeyPem };
}

/** IdP metadata as a real IdP publishes it: entity ID, signing certificate, HTTP-Redirect sign-on. */
export function samlIdpMetadata(opts: { entityId: string; ssoUrl: string; identity: SigningIdentity }): string {
  return samlify.IdentityProvider({
    entityID: opts.entityId,
    signingCert: opts.identity.certificatePem,
    singleSignOnService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: opts.ssoUrl }],
    singleLogoutService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: new URL('/slo', opts.ssoUrl).href }],
  }).getMetadata();
}
