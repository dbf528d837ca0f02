/**
 * How a phone number or address is shown back (pages, API answers, the list of factors): enough
 * for its owner to recognise it, not enough to read it off a shoulder or a screenshot.
 */

/** "••• 78": the last two digits of an E.164 number. */
export function maskPhone(e164: string): string {
  return `••• ${e164.slice(-2)}`;
}

/** "j•••@example.com": the first character of the local part and the domain. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf('@');
  return at > 0 ? `${email[0]}•••${email.slice(at)}` : '•••';
}
