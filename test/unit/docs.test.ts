import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { configSchema } from '../../src/config/schema.ts';
import { ERROR_CODES } from '../../src/domain/errors.ts';
import { en } from '../../src/i18n/en.ts';
import { vi } from '../../src/i18n/vi.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

// The README is part of the product: these keep its tables from drifting from the code.
describe('documentation and catalogues', () => {
  it('the README settings table names every setting', () => {
    const missing = Object.keys(configSchema.shape).filter((key) => !readme.includes(`\`${key}\``));
    assert.deepEqual(missing, []);
  });

  it('the README error table lists every code with its status', () => {
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      assert.match(readme, new RegExp(`\\| \`${code}\` \\| ${status} \\|`), `${code} (${status}) in the README`);
    }
  });

  it('the Vietnamese catalogue translates every English message', () => {
    for (const key of Object.keys(en) as Array<keyof typeof en>) {
      assert.ok(vi[key], `vi has ${key}`);
      if (!key.startsWith('lang.')) assert.notEqual(vi[key], '', key);
    }
  });
});
