/** Detached work not yet finished, so a caller in the same process (a test) can wait for it. */
const inFlight = new Set<Promise<void>>();

/**
 * Runs `work` once the current request's answer has been written (setImmediate runs after the
 * write the request's promise chain ends with), so neither its outcome nor its duration shows in the
 * answer: the account flows use it where the answer must not tell whether an address has an account.
 * Failures go to `onError` (logged); the user can ask again.
 */
export function runDetached(work: () => Promise<void>, onError: (err: unknown) => void): void {
  let done!: () => void;
  const settled = new Promise<void>((resolve) => (done = resolve));
  inFlight.add(settled);
  setImmediate(() => {
    work()
      .catch(onError)
      .finally(() => {
        inFlight.delete(settled);
        done();
      });
  });
}

/** Resolves once every piece of detached work started so far (and any it started) has finished. */
export async function detachedWorkSettled(): Promise<void> {
  while (inFlight.size > 0) await Promise.all([...inFlight]);
}
