import { lazyModule } from '../../infra/lazy-module.ts';

/**
 * samlify and its schema validator, loaded on first use: a server with no SAML provider never
 * needs them, and they are heavy: samlify with its XML and crypto stack, and xmllint compiled to a
 * 4 MB asm.js file, ~8 MB of heap and ~13 MB of resident memory before any use.
 */
export type Samlify = typeof import('samlify');

/** The schema validator, itself loaded only when a document is first validated (reading metadata needs none). */
const loadXmllint = lazyModule(() => import('@authenio/samlify-node-xmllint'));

/** samlify, ready to parse: it refuses to parse anything until a schema validator is set; this one needs no Java. */
export const loadSamlify = lazyModule(async (): Promise<Samlify> => {
  const samlify = await import('samlify');
  samlify.setSchemaValidator({ validate: async (xml: string) => (await loadXmllint()).validate(xml) });
  return samlify;
});
