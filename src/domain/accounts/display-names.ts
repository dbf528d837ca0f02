import { AppError } from '../errors.ts';

// Names people give themselves end up in mails, pages and ID tokens: one rule for every entry
// (the API's schemas, the registration pages, the account console).

export const MAX_NAME_LENGTH = 200;
/** C0 controls (NUL, CR, LF, TAB, ...) and DEL: a name never needs them and a header or mail line must not get them. */
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

export function hasControlCharacters(value: string): boolean {
  return CONTROL_CHARACTERS.test(value);
}

/** A given or family name as typed: at most MAX_NAME_LENGTH characters once trimmed, no control characters. */
export function isDisplayName(value: string): boolean {
  return value.trim().length <= MAX_NAME_LENGTH && !hasControlCharacters(value);
}

/** Refuses names the rule above refuses (IDENT_VALIDATION); undefined and null pass. */
export function assertDisplayNames(...names: (string | null | undefined)[]): void {
  for (const name of names) {
    if (typeof name === 'string' && !isDisplayName(name)) {
      throw new AppError('IDENT_VALIDATION', `names are at most ${MAX_NAME_LENGTH} characters without control characters`);
    }
  }
}
