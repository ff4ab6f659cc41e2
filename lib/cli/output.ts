/** Output helpers shared by every command: tables for people, JSON for scripts, errors without stack traces. */

/** The shell's status for a command ended by SIGINT (128 + 2). */
export const INTERRUPTED_EXIT_CODE = 130;

/** A mistake the user can fix (bad flag, unknown pipeline, nothing listening): message only, exit code 2. */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = 'UserError';
  }
}

/** A number already written out for its column (see displayRows): printed as it is, right-aligned like numbers. */
export class FormattedNumber {
  constructor(readonly text: string) {}
}

export type Cell = string | number | boolean | null | undefined | bigint | FormattedNumber;

export interface TableOptions {
  /**
   * The width of the lines: a last column of text that would run past it wraps within its column (at spaces where it
   * can), so that each row reads whole, under its headings. @default no limit
   */
  readonly width?: number;
}

/** The least a wrapped last column keeps, however wide the columns before it: a few words a line. */
const MIN_WRAPPED_COLUMN_WIDTH = 16;

/**
 * Renders rows as an aligned text table; numbers right-aligned. A number is a count of the CLI's own
 * and gets thousands separators; a bigint is a value as the data has it (see displayValue) and does not;
 * a FormattedNumber prints as its column wrote it (see displayRows). Control characters print escaped,
 * so a record cannot retitle or recolour the terminal, nor reorder what it shows (see escapeControlCharacters).
 */
export function formatTable(headers: readonly string[], rows: ReadonlyArray<readonly Cell[]>, { width }: TableOptions = {}): string {
  const text = (c: Cell) => escapeControlCharacters(c === null || c === undefined ? ''
    : typeof c === 'number' ? formatNumber(c) : c instanceof FormattedNumber ? c.text : String(c));
  const cells = rows.map((r) => r.map(text));
  const titles = headers.map(escapeControlCharacters);
  // A loop, not Math.max(...): spreading a few hundred thousand rows overflows the call stack.
  const widths = titles.map((h, i) => cells.reduce((w, r) => Math.max(w, (r[i] ?? '').length), h.length));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => {
    const c = r[i];
    return typeof c === 'number' || typeof c === 'bigint' || c instanceof FormattedNumber || c === null || c === undefined;
  }));
  const last = headers.length - 1;
  if (width !== undefined && last >= 0 && !numeric[last]) {
    const before = widths.slice(0, last).reduce((sum, w) => sum + w + 2, 0);
    widths[last] = Math.min(widths[last], Math.max(width - before, MIN_WRAPPED_COLUMN_WIDTH, titles[last].length));
  }
  const line = (r: readonly string[]) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  // A row whose last cell wraps goes on over more lines, the other columns blank on them.
  const lines = (r: readonly string[]) => {
    const cell = r[last] ?? '';
    if (cell.length <= widths[last]) return [line(r)];
    return wrapText(cell, widths[last]).map((part, n) => line([...r.slice(0, last).map((c) => (n === 0 ? c : '')), part]));
  };
  return [line(titles), widths.map((w) => '─'.repeat(w)).join('  '), ...cells.flatMap(lines)].join('\n');
}

/**
 * `text` in lines of at most `width` characters, broken at spaces; a word longer than a line is broken where the line
 * ends. Nothing is left out but the spaces the lines break at.
 */
export function wrapText(text: string, width: number): string[] {
  const lines: string[] = [];
  let current = '';
  for (const word of text.split(' ')) {
    if (current !== '' && current.length + 1 + word.length <= width) {
      current += ` ${word}`;
      continue;
    }
    if (current !== '') lines.push(current);
    current = word;
    while (current.length > width) {
      lines.push(current.slice(0, width));
      current = current.slice(width);
    }
  }
  lines.push(current);
  return lines;
}

/**
 * C0 and C1 control characters, DEL and the bidirectional controls as `\u001b`, `\u202e`: text from records, safe to
 * print to a terminal. The bidirectional controls (ALM, LRM, RLM, the embeddings and overrides U+202A–U+202E, the
 * isolates U+2066–U+2069) drive no terminal, but they reorder what it shows, so a record could make the text around
 * it read otherwise than it is (Trojan Source).
 */
export function escapeControlCharacters(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, unicodeEscape);
}

/** A character as JSON and JavaScript write it escaped: `\u009b`. */
function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * `text` as one word of a command a user can paste into a POSIX shell: as it is when it holds nothing a shell reads
 * otherwise, else in single quotes (a quote inside as '\''). Bare, a data dir such as `/Users/jane/Jane's #1 projects`
 * split into words, opened a quote and turned the rest of the command into a comment. A word that starts with `=` is
 * quoted too: zsh (macOS's shell) reads `=name` as the path of the command `name`.
 */
export function shellWord(text: string): string {
  return /^(?!=)[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

/** `escapeControlCharacters` for each line of a multi-line text: its line breaks stay. */
export function escapeControlCharactersInLines(text: string): string {
  return text.split('\n').map(escapeControlCharacters).join('\n');
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

/**
 * JSON for scripts (every --json document): bigints as numbers when safe, else strings. JSON.stringify escapes the
 * C0 control characters but writes DEL and the C1 ones (U+007F–U+009F) as they are, and some terminals obey those
 * (U+009B starts a control sequence, as ESC [ does); the bidirectional controls too, which reorder what a terminal
 * shows (see escapeControlCharacters). They are written as `\u009b`, `\u202e` escapes, which parse back to the same
 * value. JSON text holds them only inside strings, so the escaping changes no value.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()) : v), 2)
    .replace(/[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, unicodeEscape);
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

/**
 * Query rows as table cells, read with the engine's column types. Integers print as the data has them (a
 * year is 2026, not 2,026). A DOUBLE or DECIMAL column prints every value grouped with the same decimals:
 * a DECIMAL its scale, a DOUBLE as many as its values need, one or two. So 1,000,000.00 sits above
 * 999,999.99 with the decimal points in line, and a whole double reads 1,000,000.0, never like a BIGINT:
 * Athena and DuckDB also print a double with its decimal point. CSV and JSON keep the values exact.
 */
export function displayRows(columnTypes: readonly string[], rows: ReadonlyArray<readonly unknown[]>): Cell[][] {
  const decimals = columnTypes.map((type, i) => decimalsOf(type, rows.map((r) => r[i])));
  return rows.map((r) => r.map((v, i) => {
    const digits = decimals[i];
    if (digits === undefined) return displayValue(v);
    // Athena sends a double's NaN and infinities as these strings.
    if (typeof v === 'string' && NON_FINITE.test(v)) return new FormattedNumber(v);
    if (typeof v !== 'number') return displayValue(v);
    if (!Number.isFinite(v)) return new FormattedNumber(String(v));
    const text = v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
    // A value too small for the column's decimals prints in full (0.0004, 1e-9), never as 0.00.
    return new FormattedNumber(v !== 0 && /^-?0\.?0*$/.test(text) ? String(v) : text);
  }));
}

const NON_FINITE = /^(NaN|-?Infinity)$/;

/** DuckDB's DOUBLE, FLOAT (and their aliases), Athena's double and real: binary floating point. */
const FLOATING_POINT_TYPE = /^(double|float[48]?|real)$/i;

/** The decimals a column's numbers print with: a DECIMAL(p,s) its scale s; a floating-point column 1 or 2. */
function decimalsOf(type: string, values: readonly unknown[]): number | undefined {
  const decimal = /^decimal\(\s*\d+\s*,\s*(\d+)\s*\)$/i.exec(type);
  // A DECIMAL(p,0) holds whole numbers: they print as integers do (2026, not 2,026).
  if (decimal) return Number(decimal[1]) === 0 ? undefined : Number(decimal[1]);
  if (!FLOATING_POINT_TYPE.test(type)) return undefined;
  const needed = (v: number) => {
    const hundredths = Math.abs(v).toFixed(2);
    return Number.isInteger(v) || hundredths.endsWith('.00') ? 0 : hundredths.endsWith('0') ? 1 : 2;
  };
  let digits = 1;
  for (const v of values) if (typeof v === 'number' && Number.isFinite(v) && digits < 2) digits = Math.max(digits, needed(v));
  return digits;
}

/** RFC 4180 CSV with a header line; NULL is an empty field. */
export function toCsv(headers: readonly string[], rows: ReadonlyArray<readonly unknown[]>): string {
  const field = (v: unknown): string => {
    const cell = displayValue(v);
    if (cell === null || cell === undefined) return '';
    const text = String(cell);
    return /[",\r\n]/.test(text) || text !== text.trim() ? `"${text.replace(/"/g, '""')}"` : text;
  };
  // RFC 4180: every record ends with CRLF, the last one too.
  return [headers, ...rows].map((r) => `${r.map(field).join(',')}\r\n`).join('');
}

/**
 * Rows as a JSON array of objects keyed by column name, for `--json`, written as toJson writes them. A name that repeats
 * (`SELECT a.*, b.*` of a join) gets `_2`, `_3`… after its second and later uses, so no column's values are dropped.
 * Keys come in the columns' order: a JavaScript object would put integer-like names (`SELECT 1 AS "7"`) first.
 */
export function rowsToJson(headers: readonly string[], rows: ReadonlyArray<readonly unknown[]>): string {
  if (rows.length === 0) return '[]';
  const keys = uniqueNames(headers).map((k) => toJson(k));
  const objects = rows.map((r) => {
    const members: string[] = [];
    keys.forEach((key, i) => {
      const value = r[i] instanceof Date ? (r[i] as Date).toISOString() : r[i];
      // As JSON.stringify, which leaves out a member whose value is undefined.
      if (value !== undefined) members.push(`    ${key}: ${toJson(value).replace(/\n/g, '\n    ')}`);
    });
    return members.length === 0 ? '  {}' : `  {\n${members.join(',\n')}\n  }`;
  });
  return `[\n${objects.join(',\n')}\n]`;
}

function uniqueNames(headers: readonly string[]): string[] {
  const used = new Set(headers);
  const seen = new Set<string>();
  return headers.map((h) => {
    if (!seen.has(h)) {
      seen.add(h);
      return h;
    }
    let n = 2;
    while (used.has(`${h}_${n}`)) n++;
    const name = `${h}_${n}`;
    used.add(name);
    return name;
  });
}
