import type { EphemeralStore } from '../../infra/ephemeral/index.ts';
import type { Logger } from '../../infra/logger.ts';
import type { EventsReader } from '../../repos/events.ts';
import { toRecordedEvent, type EventRecorder, type RecordedEvent } from './events.ts';

/**
 * Where a stream's events go (the HTTP response). `send` must not block: a sink that cannot keep
 * up drops its client (which resumes from the table) rather than buffer without bound.
 */
export interface StreamSink {
  send(event: RecordedEvent): void;
  /** Resolves once the sink can take more (replay paces itself by it); false: the sink is gone. */
  ready(): Promise<boolean>;
  /** The hub is closing (the server stops): end the stream. */
  end(): void;
}

export interface StreamSubscription {
  /** Every event up to this seq has been considered for this stream (sent, or filtered out). */
  readonly watermark: string;
  close(): void;
}

/** A stream whose start is fixed, not yet attached to its sink. */
export interface PendingStream {
  attach(matches: (e: RecordedEvent) => boolean, sink: StreamSink): Promise<StreamSubscription>;
  close(): void;
}

export interface StreamSettings {
  /** How long a hole in seq is waited for: a lower seq may still commit after a higher one. */
  gapWaitMs: number;
  /** How often the table is read while streams are open, should a notification be lost. */
  pollIntervalMs: number;
  /** Rows per read of the table (tail and replay). */
  batch: number;
}

const DEFAULTS: StreamSettings = { gapWaitMs: 3000, pollIntervalMs: 5000, batch: 500 };
const CHANNEL = 'audit-events';

interface Listener {
  watermark: bigint;
  matches: (e: RecordedEvent) => boolean;
  sink: StreamSink;
}

/**
 * Live events for dashboards, across instances. The table is the source of truth: a committed
 * event is announced on a pub/sub channel (Redis, or in process on the embedded store), and each
 * instance with open streams then reads the table past its tail and hands new rows, in seq order,
 * to its streams. Reading the table rather than trusting the message means a lost message (Redis
 * down) only delays events until the next poll, and every stream sees events in one order, so a
 * seq is a resume point: Last-Event-ID n replays seq > n from the table and joins the live tail
 * exactly where the replay ended, with nothing twice and nothing left out.
 *
 * Seqs are taken before commit, so seq n+1 can commit before n. The tail therefore stops at a hole
 * and waits up to gapWaitMs for it to fill; after that it is a rolled-back transaction's number and
 * the tail moves on (an event committing later still is in the table and the audit API, not live).
 */
export function createEventStream(deps: {
  reader: Pick<EventsReader, 'after' | 'latestSeq'>;
  ephemeral: Pick<EphemeralStore, 'publish' | 'subscribe'>;
  recorder: Pick<EventRecorder, 'onCommitted'>;
  logger: Logger;
  settings?: Partial<StreamSettings>;
}) {
  const settings = { ...DEFAULTS, ...deps.settings };
  const listeners = new Set<Listener>();
  // Streams open or opening; the tail runs only while there are any.
  let holders = 0;
  let tail: bigint | undefined;
  let warming: Promise<void> | undefined;
  let generation = 0;
  let gapSince: number | undefined;
  let polling = false;
  let again = false;
  let pollTimer: NodeJS.Timeout | undefined;
  let gapTimer: NodeJS.Timeout | undefined;
  let subscribed: Promise<void> | undefined;
  let closed = false;

  // Every instance announces what it commits (the server, and the CLI on the same stores).
  deps.recorder.onCommitted((event) => {
    void deps.ephemeral.publish(CHANNEL, event.seq).catch(() => {});
  });

  function deliver(event: RecordedEvent) {
    const seq = BigInt(event.seq);
    for (const l of listeners) {
      if (seq <= l.watermark) continue;
      l.watermark = seq;
      try {
        if (l.matches(event)) l.sink.send(event);
      } catch (err) {
        // One stream's fault ends that stream only.
        deps.logger.warn({ err }, 'event stream: a stream failed');
        listeners.delete(l);
        l.sink.end();
      }
    }
  }

  async function poll(): Promise<void> {
    if (polling) {
      again = true;
      return;
    }
    polling = true;
    try {
      do {
        again = false;
        const generationAtStart = generation;
        if (tail === undefined) return;
        const rows = await deps.reader.after(String(tail), settings.batch);
        if (generationAtStart !== generation || tail === undefined) {
          // The streams went (and maybe came back, with a new tail) while this read ran: start over.
          again = tail !== undefined;
          continue;
        }
        let advanced = 0;
        for (const row of rows) {
          const seq = BigInt(row.seq);
          if (seq !== tail + 1n) {
            const now = Date.now();
            gapSince ??= now;
            if (now - gapSince < settings.gapWaitMs) {
              scheduleGapCheck(settings.gapWaitMs - (now - gapSince));
              break;
            }
          }
          gapSince = undefined;
          tail = seq;
          advanced++;
          deliver(toRecordedEvent(row));
        }
        if (advanced === settings.batch) again = true;
      } while (again);
    } catch (err) {
      deps.logger.warn({ err }, 'event stream: reading new events failed; retried at the next notification or poll');
    } finally {
      polling = false;
    }
  }

  function scheduleGapCheck(ms: number) {
    if (gapTimer) return;
    gapTimer = setTimeout(() => {
      gapTimer = undefined;
      void poll();
    }, ms);
    gapTimer.unref();
  }

  /** Starts the tail at the table's end (nothing before a stream opened is live). */
  function warm(): Promise<void> {
    if (tail !== undefined) return Promise.resolve();
    warming ??= (async () => {
      subscribed ??= deps.ephemeral.subscribe(CHANNEL, () => {
        if (tail !== undefined) void poll();
      });
      await subscribed;
      const latest = BigInt(await deps.reader.latestSeq());
      if (!holders) return;
      tail = latest;
      gapSince = undefined;
      pollTimer = setInterval(() => void poll(), settings.pollIntervalMs);
      pollTimer.unref();
    })().finally(() => {
      warming = undefined;
    });
    return warming;
  }

  /** The last stream went: stop reading the table until the next one opens. */
  function release() {
    holders--;
    if (holders > 0) return;
    generation++;
    tail = undefined;
    clearInterval(pollTimer);
    clearTimeout(gapTimer);
    pollTimer = undefined;
    gapTimer = undefined;
  }

  return {
    /**
     * Starts a stream: fixes where it begins (after `after`, a seq, or after what is committed now)
     * and keeps the tail running for it. Call it before telling the client the stream is open, so
     * every event committed after that reaches it; then `attach` its sink (or `close`).
     */
    async begin(after?: string): Promise<PendingStream> {
      holders++;
      let done = false;
      let listener: Listener | undefined;
      let watermark = 0n;
      const subscription: StreamSubscription = {
        get watermark() {
          return String(listener?.watermark ?? watermark);
        },
        close() {
          if (done) return;
          done = true;
          if (listener) listeners.delete(listener);
          release();
        },
      };
      try {
        await warm();
        if (after !== undefined) watermark = BigInt(after);
        else {
          // What is committed now: the tail may not have caught up with the latest commits yet.
          const latest = BigInt(await deps.reader.latestSeq());
          watermark = tail !== undefined && tail > latest ? tail : latest;
        }
      } catch (err) {
        subscription.close();
        throw err;
      }
      return {
        close: () => subscription.close(),
        /**
         * Replays from the table what lies between the start and the tail, then joins the tail.
         * Resolves once the stream is live (or gone: the sink went away during the replay, or the
         * hub is closing).
         */
        async attach(matches: (e: RecordedEvent) => boolean, sink: StreamSink): Promise<StreamSubscription> {
          try {
            // Each read goes up to the tail as it is when the read starts; rows past it come live.
            // The loop ends when the replay has reached the tail with no await in between.
            let gone = false;
            while (!gone && !done && !closed && tail !== undefined && watermark < tail) {
              const upTo = tail;
              const rows = await deps.reader.after(String(watermark), settings.batch);
              for (const row of rows) {
                const seq = BigInt(row.seq);
                if (seq > upTo) break;
                const event = toRecordedEvent(row);
                if (matches(event)) {
                  if (!(await sink.ready())) {
                    gone = true;
                    break;
                  }
                  sink.send(event);
                }
                watermark = seq;
              }
              // Fewer rows than asked, or some past the tail: everything up to the tail is seen.
              if (!gone && (rows.length < settings.batch || BigInt(rows.at(-1)!.seq) >= upTo) && watermark < upTo) watermark = upTo;
            }
            if (closed) sink.end();
            else if (!gone && !done && tail !== undefined) {
              listener = { watermark, matches, sink };
              listeners.add(listener);
            }
          } finally {
            if (!listener) subscription.close();
          }
          return subscription;
        },
      };
    },
    /** Ends every stream (the server is stopping); later opens end at once. */
    close(): void {
      closed = true;
      for (const l of [...listeners]) l.sink.end();
      listeners.clear();
      clearInterval(pollTimer);
      clearTimeout(gapTimer);
    },
  };
}

export type EventStream = ReturnType<typeof createEventStream>;
