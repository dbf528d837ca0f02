import { lazyModule } from './lazy-module.ts';

const webcrypto = globalThis.crypto;

/**
 * @peculiar/x509 (with its ASN.1 schemas and tsyringe), loaded when a SAML provider first needs a
 * certificate: most servers never make one.
 */
const loadX509 = lazyModule(async () => {
  // @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API first.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto);
  return x509;
});

export interface SigningIdentity {
  certificatePem: string;
  /** PKCS#8 PEM. */
  privateKeyPem: string;
}

const RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
const DAY_MS = 24 * 3600_000;

/**
 * A fresh RSA key and a self-signed certificate for it, as SAML entities sign with: in SAML the
 * certificate is only a carrier for the public key that the peer pins from metadata, so no CA is
 * involved and its validity dates are not what is checked.
 */
export async function selfSignedIdentity(commonName: string, validDays = 10 * 365): Promise<SigningIdentity> {
  const x509 = await loadX509();
  const keys = await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify']);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex').replace(/^[89a-f]/, '1'),
    name: `CN=${commonName.replace(/[,=+<>#;"\\]/g, '_')}`,
    notBefore: new Date(Date.now() - DAY_MS),
    notAfter: new Date(Date.now() + validDays * DAY_MS),
    signingAlgorithm: RSA,
    keys,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const privateKeyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { certificatePem: certificate.toString('pem'), privateKeyPem };
}
