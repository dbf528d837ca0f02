// Output: JSON for scripts (--json), aligned plain-text tables and fields for people.

// Values come from the server and may have been written by anyone with API access: keep
// terminal control sequences out of what we print as text.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

function cell(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  if (Array.isArray(value)) return value.length ? value.map(cell).join(',') : '-';
  if (typeof value === 'object') return JSON.stringify(value).replace(CONTROL, '?');
  return String(value).replace(CONTROL, '?');
}

export interface Column<T> {
  header: string;
  value(row: T): unknown;
}

/** Columns padded to their widest cell, two spaces apart, header in capitals (like kubectl). */
export function table<T>(rows: T[], columns: Column<T>[]): string {
  const cells = [columns.map((c) => c.header.toUpperCase()), ...rows.map((r) => columns.map((c) => cell(c.value(r))))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells.map((line) => line.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

/** One "name  value" line per field, names aligned; for a single record. */
export function fields(record: Record<string, unknown>, indent = ''): string {
  const entries = Object.entries(record).filter(([, v]) => v !== undefined);
  const width = Math.max(0, ...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${indent}${k.padEnd(width)}  ${cell(v)}`).join('\n') + '\n';
}

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Remarks for people (hints, paging, warnings) go to stderr, so stdout stays the result. */
export function note(text: string): void {
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Tells when a list has more than this page, and how to get the next. */
export function pageNote(p: { data: unknown[]; page: number; pageSize: number; total: number }): void {
  const from = (p.page - 1) * p.pageSize;
  if (p.data.length && from + p.data.length < p.total) {
    note(`showing ${from + 1}-${from + p.data.length} of ${p.total}; next: --page ${p.page + 1}`);
  } else if (!p.data.length) {
    note(p.total ? `no results on page ${p.page} (total ${p.total})` : 'no results');
  }
}
