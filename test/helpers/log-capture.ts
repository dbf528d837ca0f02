import { Writable } from 'node:stream';

/** A pino destination that keeps every log line, parsed, for assertions on what was logged. */
export function logCapture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { lines, stream, messages: () => lines.map((l) => String(l.msg)) };
}
