/**
 * A library loaded on first use instead of at boot: heavy modules that a given configuration may
 * never need (SAML, WebAuthn, the password-strength dictionaries, SMTP, ...) cost memory from the
 * moment they are imported, for the life of the process.
 *
 * `load` runs once, on the first call; every caller shares its promise. A failed load is not
 * remembered: the next call tries again.
 */
export function lazyModule<T>(load: () => Promise<T>): () => Promise<T> {
  let loading: Promise<T> | undefined;
  return () => {
    if (!loading) {
      loading = load();
      loading.catch(() => (loading = undefined));
    }
    return loading;
  };
}
