/**
 * Runs `work` once the current request's answer has been written (setImmediate runs after the
 * write the request's promise chain ends with), so neither its outcome nor its duration shows in the
 * answer: the account flows use it where the answer must not tell whether an address has an account.
 * Failures go to `onError` (logged); the user can ask again.
 */
export function runDetached(work: () => Promise<void>, onError: (err: unknown) => void): void {
  setImmediate(() => {
    work().catch(onError);
  });
}
