/** Output helpers shared by every command: tables for people, JSON for scripts, errors without stack traces. */

/** A mistake the user can fix (bad flag, unknown pipeline, nothing listening): message only, exit code 2. */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = 'UserError';
  }
}

export type Cell = string | number | boolean | null | undefined | bigint;

/**
 * Renders rows as an aligned text table; numbers right-aligned. A number is a count of the CLI's own
 * and gets thousands separators; a bigint is a value as the data has it (see displayValue) and does not.
 * Control characters print escaped, so a record cannot retitle or recolour the terminal.
 */
export function formatTable(headers: readonly string[], rows: ReadonlyArray<readonly Cell[]>): string {
  const text = (c: Cell) => escapeControlCharacters(c === null || c === undefined ? '' : typeof c === 'number' ? formatNumber(c) : String(c));
  const cells = rows.map((r) => r.map(text));
  const titles = headers.map(escapeControlCharacters);
  const widths = titles.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || typeof r[i] === 'bigint' || r[i] === null || r[i] === undefined));
  const line = (r: readonly string[]) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(titles), widths.map((w) => '─'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

/** C0 and C1 control characters and DEL as `\u001b`: text from records, safe to print to a terminal. */
export function escapeControlCharacters(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  return n.toLocaleString('en-US', { maximumFractionDigits: 2 });
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/** JSON for scripts: bigints as numbers when safe, else strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()) : v), 2);
}

/**
 * A query value as text in a table or CSV: dates as ISO-8601 UTC, nested values as JSON. Integers
 * become bigints, which formatTable prints as they are: a year is 2026, an id 10452, not 2,026.
 */
export function displayValue(value: unknown): Cell {
  if (value === null || value === undefined) return value;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === 'object') return toJson(value).replace(/\s*\n\s*/g, ' ');
  return value as Cell;
}

/** RFC 4180 CSV with a header line; NULL is an empty field. */
export function toCsv(headers: readonly string[], rows: ReadonlyArray<readonly unknown[]>): string {
  const field = (v: unknown): string => {
    const cell = displayValue(v);
    if (cell === null || cell === undefined) return '';
    const text = String(cell);
    return /[",\r\n]/.test(text) || text !== text.trim() ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return [headers, ...rows].map((r) => r.map(field).join(',')).join('\r\n');
}

/** Rows as JSON objects keyed by column name, for `--json`. */
export function rowsAsObjects(headers: readonly string[], rows: ReadonlyArray<readonly unknown[]>): Array<Record<string, unknown>> {
  return rows.map((r) => Object.fromEntries(headers.map((h, i) => [h, r[i] instanceof Date ? (r[i] as Date).toISOString() : r[i]])));
}
