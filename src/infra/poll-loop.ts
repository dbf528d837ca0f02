/**
 * The loop of a queue worker (the mail outbox, webhook deliveries): one run at a time, the next
 * `intervalMs` after the last, or at once when the last claimed a full batch (more are likely due).
 * A run's failure is reported and the loop goes on.
 */
export function createPollLoop(opts: {
  /** Claims and handles one batch; answers how many rows it claimed. */
  runOnce: () => Promise<number>;
  batchSize: number;
  intervalMs: number;
  onError: (err: unknown) => void;
}) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = true;

  function schedule(delayMs: number) {
    if (stopped) return;
    timer = setTimeout(tick, delayMs);
    timer.unref();
  }

  function tick() {
    timer = undefined;
    let claimed = 0;
    running = opts
      .runOnce()
      .then((n) => {
        claimed = n;
      })
      .catch(opts.onError)
      .finally(() => {
        running = undefined;
        schedule(claimed === opts.batchSize ? 0 : opts.intervalMs);
      });
  }

  return {
    start(): void {
      if (!stopped) return;
      stopped = false;
      schedule(0);
    },
    /** Stops polling and waits for the run in flight. */
    async stop(): Promise<void> {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
