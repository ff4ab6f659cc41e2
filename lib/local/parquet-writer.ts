/**
 * The twin's record format conversion: JSON records → one Snappy Parquet file with exactly the
 * Glue table's columns (`parquetColumns(model)`; partition keys live in the path, not the file).
 *
 * Two stages, so a record that does not convert fails alone and its batch still converts:
 * 1. Every record is parsed and checked against the column model in JavaScript, with the OpenX JSON
 *    SerDe's rules Firehose documents (keys matched case-insensitively, unknown keys ignored, missing
 *    columns NULL, numeric strings accepted for numbers, nested JSON accepted as a string, the five
 *    documented timestamp forms). A record that fails becomes a `format-conversion-failed` outcome
 *    with `DataFormatConversion.ParseError` (not JSON) or `DataFormatConversion.MalformedData`
 *    (JSON that does not fit a column).
 * 2. The records that pass are staged as NDJSON (their original bytes when they need no
 *    normalisation, which is the common case) and DuckDB converts them with an explicit column list
 *    and writes Parquet. Should DuckDB still refuse the batch (a case the checks above did not
 *    foresee, e.g. duplicate keys), the batch is bisected to find the records DuckDB refuses; they
 *    fail alone with DuckDB's message and the rest is written.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { parquetColumns, quoteIdent, sqlString } from '../schema/artifacts';
import type { Column, LogicalType, SchemaModel } from '../schema/model';

export type ConversionErrorCode = 'DataFormatConversion.ParseError' | 'DataFormatConversion.MalformedData';

/**
 * Which Firehose JSON deserializer the twin imitates. 'openx' (Firehose's usual choice) coerces
 * numeric strings to numbers and nested JSON to strings; 'hive' refuses both.
 */
export type JsonDeserializer = 'openx' | 'hive';

export interface ConversionFailure {
  /** Position of the record in the input. */
  readonly index: number;
  readonly errorCode: ConversionErrorCode;
  readonly errorMessage: string;
}

export type RowConversion =
  | { readonly ok: true; /** One NDJSON line without its newline. */ readonly line: Uint8Array }
  | { readonly ok: false; readonly errorCode: ConversionErrorCode; readonly errorMessage: string };

export interface ParquetConversion {
  /** Rows written; 0 means no file was written. */
  readonly rows: number;
  /** Size of the Parquet file in bytes (0 when no file was written). */
  readonly bytes: number;
  /** Records that could not be converted, in input order. */
  readonly failures: readonly ConversionFailure[];
}

export interface ParquetWriterOptions {
  /** Where NDJSON staging files go (removed after each conversion). */
  readonly workDir: string;
  /** @default 'openx' */
  readonly deserializer?: JsonDeserializer;
  /** A DuckDB instance to share; when omitted the writer opens (and closes) its own in-memory one. */
  readonly instance?: DuckDBInstance;
  /** DuckDB worker threads for an instance the writer opens. @default DuckDB's default (one per core) */
  readonly threads?: number;
}

const PARSE_ERROR: ConversionErrorCode = 'DataFormatConversion.ParseError';
const MALFORMED_DATA: ConversionErrorCode = 'DataFormatConversion.MalformedData';
const NEWLINE = Buffer.from('\n');
/** Largest JSON object DuckDB will read (records are ≤ 1000 KiB on the way in; transforms may grow them). */
const MAX_OBJECT_BYTES = 64 * 1024 * 1024;
/** DuckDB error classes that mean "this data does not convert", as opposed to I/O or internal failures. */
const DATA_ERROR = /^(Invalid Input|Conversion|Out of Range|Mismatch Type|Invalid type|Invalid) Error/;

export class ParquetWriter {
  /** The Parquet columns, in file order. */
  readonly columns: ReadonlyArray<{ readonly name: string; readonly type: string }>;
  private readonly convertRow: (data: Uint8Array) => RowConversion;
  private readonly selectList: string;
  private readonly columnsArgument: string;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    model: SchemaModel,
    private readonly options: ParquetWriterOptions,
    private readonly instance: DuckDBInstance,
    private readonly connection: DuckDBConnection,
    private readonly ownsInstance: boolean,
  ) {
    this.columns = parquetColumns(model);
    this.convertRow = compileRowConverter(model, { deserializer: options.deserializer });
    this.selectList = this.columns.map((c) => quoteIdent(c.name)).join(', ');
    this.columnsArgument = `{${this.columns.map((c) => `${sqlString(c.name)}: ${sqlString(c.type)}`).join(', ')}}`;
  }

  static async open(model: SchemaModel, options: ParquetWriterOptions): Promise<ParquetWriter> {
    await fs.promises.mkdir(options.workDir, { recursive: true });
    const ownsInstance = options.instance === undefined;
    const instance = options.instance
      ?? await DuckDBInstance.create(':memory:', options.threads ? { threads: String(options.threads) } : undefined);
    const connection = await instance.connect();
    return new ParquetWriter(model, options, instance, connection, ownsInstance);
  }

  /**
   * Converts records (one JSON object each) into a Parquet file at `outFile`. Records that do not
   * convert are reported in `failures`; the rest are written in input order. Throws only for
   * failures that are not about the data (I/O, DuckDB itself): the caller should retry.
   */
  convert(records: readonly Uint8Array[], outFile: string): Promise<ParquetConversion> {
    if (this.closed) return Promise.reject(new Error('ParquetWriter is closed'));
    const run = this.queue.then(() => this.convertNow(records, outFile));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    this.connection.closeSync();
    if (this.ownsInstance) this.instance.closeSync();
  }

  private async convertNow(records: readonly Uint8Array[], outFile: string): Promise<ParquetConversion> {
    const failures: ConversionFailure[] = [];
    const lines: Uint8Array[] = [];
    const inputIndex: number[] = [];
    for (let i = 0; i < records.length; i++) {
      const row = this.convertRow(records[i]);
      if (row.ok) {
        lines.push(row.line);
        inputIndex.push(i);
      } else {
        failures.push({ index: i, errorCode: row.errorCode, errorMessage: row.errorMessage });
      }
    }
    let accepted = lines.map((_, i) => i);
    if (accepted.length > 0) {
      try {
        await this.copyToParquet(lines, accepted, outFile);
      } catch (error) {
        if (!isDataError(error)) throw error;
        // Something the checks did not foresee (e.g. duplicate keys): find the lines DuckDB refuses; they fail alone.
        const refused = new Map<number, string>();
        accepted = await this.isolate(lines, accepted, refused);
        for (const [line, message] of refused) {
          failures.push({ index: inputIndex[line], errorCode: MALFORMED_DATA, errorMessage: message });
        }
        failures.sort((a, b) => a.index - b.index);
        if (accepted.length > 0) await this.copyToParquet(lines, accepted, outFile);
      }
    }
    if (accepted.length === 0) {
      await fs.promises.rm(outFile, { force: true });
      return { rows: 0, bytes: 0, failures };
    }
    const { size } = await fs.promises.stat(outFile);
    return { rows: accepted.length, bytes: size, failures };
  }

  /** Splits `candidates` until every line DuckDB refuses is alone; returns the lines it accepts, in order. */
  private async isolate(lines: readonly Uint8Array[], candidates: readonly number[], refused: Map<number, string>): Promise<number[]> {
    try {
      await this.probe(lines, candidates);
      return [...candidates];
    } catch (error) {
      if (!isDataError(error)) throw error;
      if (candidates.length === 1) {
        refused.set(candidates[0], duckDbMessage(error));
        return [];
      }
      const mid = candidates.length >> 1;
      const left = await this.isolate(lines, candidates.slice(0, mid), refused);
      const right = await this.isolate(lines, candidates.slice(mid), refused);
      return left.concat(right);
    }
  }

  private async copyToParquet(lines: readonly Uint8Array[], which: readonly number[], outFile: string): Promise<void> {
    await this.withStagedLines(lines, which, (source) => this.connection.run(
      `COPY (SELECT ${this.selectList} FROM ${source}) TO ${sqlString(outFile)} (FORMAT parquet, COMPRESSION snappy)`,
    ));
  }

  /** Converts every column without writing anything (a count(*) would let DuckDB skip converting them). */
  private async probe(lines: readonly Uint8Array[], which: readonly number[]): Promise<void> {
    await this.withStagedLines(lines, which, async (source) => {
      try {
        await this.connection.run(`CREATE OR REPLACE TEMP TABLE sluice_probe AS SELECT ${this.selectList} FROM ${source}`);
      } finally {
        await this.connection.run('DROP TABLE IF EXISTS sluice_probe');
      }
    });
  }

  private async withStagedLines(lines: readonly Uint8Array[], which: readonly number[], use: (source: string) => Promise<unknown>): Promise<void> {
    const staging = path.join(this.options.workDir, `${randomUUID()}.ndjson`);
    const chunks: Uint8Array[] = [];
    for (const i of which) chunks.push(lines[i], NEWLINE);
    try {
      await fs.promises.writeFile(staging, Buffer.concat(chunks));
      await use(`read_json(${sqlString(staging)}, columns=${this.columnsArgument}, format='newline_delimited', `
        + `auto_detect=false, maximum_object_size=${MAX_OBJECT_BYTES})`);
    } finally {
      await fs.promises.rm(staging, { force: true });
    }
  }
}

function isDataError(error: unknown): boolean {
  // Not `instanceof Error`: errors from the native binding may come from another realm (e.g. under jest).
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && DATA_ERROR.test(message);
}

/** DuckDB's message without the staging file's path (it means nothing to the reader of an error record). */
function duckDbMessage(error: unknown): string {
  const message = (error as Error).message.split('\n')[0];
  return message.replace(/ in file "[^"]*"/, '').replace(/,? in line \d+/, '');
}

// ---------------------------------------------------------------------------------------------
// Per-record conversion (OpenX JSON SerDe semantics, as documented for Firehose).
// ---------------------------------------------------------------------------------------------

/** A value that does not fit its column: carries the path to the value for the error message. */
class Mismatch {
  readonly path: string[] = [];

  constructor(readonly problem: string) {}
}

interface ConversionState {
  /** The record needs rewriting for DuckDB (keys re-cased, values coerced or normalised). */
  changed: boolean;
  /** The record holds an integer beyond ±2^53, which JSON.parse cannot carry exactly. */
  unsafeInteger: boolean;
  /** Build the normalised record (second pass, only for records that need it); otherwise only check. */
  build: boolean;
}

type Converter = (value: unknown, state: ConversionState) => unknown;

export interface RowConverterOptions {
  /** @default 'openx' */
  readonly deserializer?: JsonDeserializer;
}

/**
 * Compiles the check-and-normalise step for a model's table columns: returns the NDJSON line
 * DuckDB should read for a record, or why the record does not convert.
 */
export function compileRowConverter(model: SchemaModel, options: RowConverterOptions = {}): (data: Uint8Array) => RowConversion {
  const openx = (options.deserializer ?? 'openx') === 'openx';
  const root = structConverter(model.tableColumns, openx);
  return (data) => {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (!isUtf8(bytes)) return { ok: false, errorCode: PARSE_ERROR, errorMessage: 'Encountered malformed JSON. The record is not valid UTF-8.' };
    const text = bytes.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      const detail = text.trim() === '' ? 'The record is empty.' : (error as Error).message;
      return { ok: false, errorCode: PARSE_ERROR, errorMessage: `Encountered malformed JSON. ${detail}` };
    }
    if (!isPlainObject(parsed)) {
      return { ok: false, errorCode: PARSE_ERROR, errorMessage: `Encountered malformed JSON. A record must be one JSON object, got ${describe(parsed)}.` };
    }
    const state: ConversionState = { changed: false, unsafeInteger: false, build: false };
    try {
      root(parsed, state);
    } catch (error) {
      if (!(error instanceof Mismatch)) throw error;
      return { ok: false, errorCode: MALFORMED_DATA, errorMessage: `${error.problem} at "${error.path.join('.').replace(/\.\[/g, '[')}"` };
    }
    if (!state.changed) {
      const trimmed = trimTrailingWhitespace(bytes);
      // The original bytes can be the NDJSON line as long as they are one line.
      if (trimmed.indexOf(0x0a) < 0 && trimmed.indexOf(0x0d) < 0) return { ok: true, line: trimmed };
    }
    if (state.unsafeInteger) {
      return {
        ok: false,
        errorCode: MALFORMED_DATA,
        errorMessage: 'The record holds an integer beyond ±2^53 and also needs normalising; the local twin cannot rewrite it without losing precision.',
      };
    }
    state.build = true;
    return { ok: true, line: Buffer.from(JSON.stringify(root(parsed, state)), 'utf8') };
  };
}

function converterFor(type: LogicalType, openx: boolean): Converter {
  switch (type.kind) {
    case 'string': return stringConverter(openx);
    case 'timestamp': return timestampConverter(openx);
    case 'date': return dateConverter;
    case 'int': return integerConverter(INT32_MIN, INT32_MAX, 'int', openx);
    case 'bigint': return bigintConverter(openx);
    case 'double': return doubleConverter(openx);
    case 'boolean': return booleanConverter(openx);
    case 'struct': return structConverter(type.fields, openx);
    case 'array': return arrayConverter(converterFor(type.items, openx));
    case 'map': return mapConverter(converterFor(type.values, openx), openx);
  }
}

function structConverter(fields: readonly Column[], openx: boolean): Converter {
  const byName = new Map<string, { name: string; convert: Converter }>();
  for (const f of fields) byName.set(f.name, { name: f.name, convert: converterFor(f.type, openx) });
  return (value, state) => {
    if (!isPlainObject(value)) throw new Mismatch(`expected a JSON object for a struct, got ${describe(value)}`);
    const out: Record<string, unknown> | undefined = state.build ? {} : undefined;
    for (const key in value) {
      let field = byName.get(key);
      if (field === undefined) {
        // OpenX matches keys case-insensitively; DuckDB does not, so re-cased keys mean a rewrite.
        const lower = key.toLowerCase();
        if (lower === key) continue;
        field = byName.get(lower);
        if (field === undefined) continue;
        state.changed = true;
      }
      const v = value[key];
      if (v === null) {
        if (out) out[field.name] = null;
        continue;
      }
      try {
        const converted = field.convert(v, state);
        if (out) out[field.name] = converted;
      } catch (error) {
        if (error instanceof Mismatch) error.path.unshift(field.name);
        throw error;
      }
    }
    return out;
  };
}

function arrayConverter(item: Converter): Converter {
  return (value, state) => {
    if (!Array.isArray(value)) throw new Mismatch(`expected a JSON array, got ${describe(value)}`);
    const out = state.build ? new Array<unknown>(value.length) : undefined;
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (v === null) {
        if (out) out[i] = null;
        continue;
      }
      try {
        const converted = item(v, state);
        if (out) out[i] = converted;
      } catch (error) {
        if (error instanceof Mismatch) error.path.unshift(`[${i}]`);
        throw error;
      }
    }
    return out;
  };
}

/**
 * OpenX (case-insensitive, Firehose's default) lower-cases every JSON key before it reads the record, a map's keys too:
 * `{"Temp": 1}` lands as `temp`. Two keys that are one once lower-cased fail the record here (Firehose's JSON reader
 * refuses a duplicate key; what it reports for them is not documented).
 */
function mapConverter(valueConverter: Converter, openx: boolean): Converter {
  return (value, state) => {
    if (!isPlainObject(value)) throw new Mismatch(`expected a JSON object for a map, got ${describe(value)}`);
    // No prototype: a map key "__proto__" must stay a key.
    const out: Record<string, unknown> | undefined = state.build ? Object.create(null) as Record<string, unknown> : undefined;
    // Keys lower-cased so far, to the key sent: made at the first, as most maps have none (two keys already lower-case
    // cannot be one).
    let lowered: Map<string, string> | undefined;
    for (const sent in value) {
      const key = openx ? sent.toLowerCase() : sent;
      if (key !== sent) {
        state.changed = true;
        const other = Object.hasOwn(value, key) ? key : lowered?.get(key);
        if (other !== undefined) throw new Mismatch(`map keys ${JSON.stringify(sent)} and ${JSON.stringify(other)} are one key once lower-cased, as the OpenX JSON deserializer reads keys`);
        (lowered ??= new Map()).set(key, sent);
      }
      const v = value[sent];
      if (v === null) {
        if (out) out[key] = null;
        continue;
      }
      try {
        const converted = valueConverter(v, state);
        if (out) out[key] = converted;
      } catch (error) {
        if (error instanceof Mismatch) error.path.unshift(key);
        throw error;
      }
    }
    return out;
  };
}

function stringConverter(openx: boolean): Converter {
  return (value, state) => {
    if (typeof value === 'string') return value;
    if (typeof value === 'number' || typeof value === 'boolean') {
      state.changed = true;
      return String(value);
    }
    // OpenX hands nested JSON to a string column as its JSON text; the Hive SerDe refuses it.
    if (openx) {
      state.changed = true;
      return JSON.stringify(value);
    }
    throw new Mismatch(`expected a string, got ${describe(value)}`);
  };
}

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const INT64_LIMIT = 2n ** 63n;
const INTEGER_TEXT = /^[+-]?\d{1,20}$/;
const DECIMAL_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function integerConverter(min: number, max: number, name: string, openx: boolean): Converter {
  return (value, state) => {
    if (typeof value === 'number') {
      if (Number.isInteger(value) && value >= min && value <= max) return value;
      throw new Mismatch(`${describe(value)} is not a valid ${name}`);
    }
    if (openx && typeof value === 'string' && INTEGER_TEXT.test(value)) {
      const n = Number(value);
      if (n >= min && n <= max) {
        state.changed = true;
        return n;
      }
    }
    throw new Mismatch(`${describe(value)} is not a valid ${name}`);
  };
}

function bigintConverter(openx: boolean): Converter {
  return (value, state) => {
    if (typeof value === 'number') {
      if (!Number.isInteger(value) || Math.abs(value) > 2 ** 63) throw new Mismatch(`${describe(value)} is not a valid bigint`);
      // The original text still holds every digit; only a rewrite would lose them.
      if (!Number.isSafeInteger(value)) state.unsafeInteger = true;
      return value;
    }
    if (openx && typeof value === 'string' && INTEGER_TEXT.test(value)) {
      const n = BigInt(value.replace(/^\+/, ''));
      if (n >= -INT64_LIMIT && n < INT64_LIMIT) {
        // Kept as text: DuckDB casts it exactly, where a JSON number could not carry every digit.
        state.changed = true;
        return n.toString();
      }
    }
    throw new Mismatch(`${describe(value)} is not a valid bigint`);
  };
}

function doubleConverter(openx: boolean): Converter {
  return (value, state) => {
    if (typeof value === 'number') {
      if (Number.isFinite(value)) return value;
      throw new Mismatch(`${describe(value)} is out of range for a double`);
    }
    if (openx && typeof value === 'string' && DECIMAL_TEXT.test(value)) {
      const n = Number(value);
      if (Number.isFinite(n)) {
        state.changed = true;
        return n;
      }
    }
    throw new Mismatch(`${describe(value)} is not a valid double`);
  };
}

function booleanConverter(openx: boolean): Converter {
  return (value, state) => {
    if (typeof value === 'boolean') return value;
    if (openx && typeof value === 'string') {
      const lower = value.toLowerCase();
      if (lower === 'true' || lower === 'false') {
        state.changed = true;
        return lower === 'true';
      }
    }
    throw new Mismatch(`${describe(value)} is not a valid boolean`);
  };
}

const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;

const dateConverter: Converter = (value) => {
  if (typeof value === 'string') {
    const m = DATE_TEXT.exec(value);
    if (m && validDate(+m[1], +m[2], +m[3])) return value;
  }
  throw new Mismatch(`${describe(value)} is not a valid date (yyyy-MM-dd)`);
};

// The OpenX timestamp forms the Firehose guide lists: yyyy-MM-dd'T'HH:mm:ss[.S]'Z' and
// yyyy-[M]M-[d]d HH:mm:ss[.S] (fractions up to 9 digits), epoch seconds, epoch milliseconds and
// floating-point epoch seconds. Offsets other than Z are not among them.
const SQL_TIMESTAMP = /^(\d{4})-(\d{1,2})-(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$/;
const EPOCH_TEXT = /^-?\d+(\.\d+)?$/;
/** Epoch values at or above this magnitude are milliseconds (1973 in ms, year 5138 in seconds). */
const EPOCH_MILLIS_THRESHOLD = 1e11;
const TIMESTAMP_FORMS = "yyyy-MM-dd'T'HH:mm:ss[.S]'Z', yyyy-M-d HH:mm:ss[.S] or epoch seconds/milliseconds";

function timestampConverter(openx: boolean): Converter {
  return (value, state) => {
    if (typeof value === 'string') {
      if (isIsoUtc(value)) return value;
      const sql = SQL_TIMESTAMP.exec(value);
      if (sql && validDateTime(sql)) {
        state.changed = true;
        const [, y, mo, d, h, mi, s, f] = sql;
        return `${y}-${mo.padStart(2, '0')}-${d.padStart(2, '0')}T${h}:${mi}:${s}${f ? `.${f}` : ''}Z`;
      }
      if (openx && EPOCH_TEXT.test(value)) {
        state.changed = true;
        return epochToIso(Number(value), value);
      }
    } else if (typeof value === 'number') {
      state.changed = true;
      return epochToIso(value, value);
    }
    throw new Mismatch(`${describe(value)} is not a timestamp in a supported form (${TIMESTAMP_FORMS})`);
  };
}

function epochToIso(n: number, original: unknown): string {
  const ms = Number.isInteger(n) && Math.abs(n) >= EPOCH_MILLIS_THRESHOLD ? n : n * 1000;
  const date = new Date(Math.trunc(ms));
  if (!Number.isFinite(ms) || Number.isNaN(date.getTime()) || date.getUTCFullYear() < 0 || date.getUTCFullYear() > 9999) {
    throw new Mismatch(`${describe(original)} is out of range for a timestamp`);
  }
  return date.toISOString();
}

/** yyyy-MM-dd'T'HH:mm:ss[.S{1,9}]'Z' with a real date and time: the form transforms write, checked without a regex. */
function isIsoUtc(s: string): boolean {
  const n = s.length;
  if (n < 20 || n > 30 || s.charCodeAt(n - 1) !== 0x5a) return false;
  if (s.charCodeAt(4) !== 0x2d || s.charCodeAt(7) !== 0x2d || s.charCodeAt(10) !== 0x54 || s.charCodeAt(13) !== 0x3a || s.charCodeAt(16) !== 0x3a) return false;
  if (n > 20 && (n === 21 || s.charCodeAt(19) !== 0x2e)) return false;
  for (let i = 0; i < n - 1; i++) {
    if (i === 4 || i === 7 || i === 10 || i === 13 || i === 16 || i === 19) continue;
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return validDate(digitsAt(s, 0, 4), digitsAt(s, 5, 2), digitsAt(s, 8, 2))
    && digitsAt(s, 11, 2) <= 23 && digitsAt(s, 14, 2) <= 59 && digitsAt(s, 17, 2) <= 59;
}

// A top-level function, not a closure: this runs for every timestamp of every record.
function digitsAt(s: string, at: number, count: number): number {
  let v = 0;
  for (let i = at; i < at + count; i++) v = v * 10 + (s.charCodeAt(i) - 0x30);
  return v;
}

function validDateTime(m: RegExpExecArray): boolean {
  return validDate(+m[1], +m[2], +m[3]) && +m[4] <= 23 && +m[5] <= 59 && +m[6] <= 59;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function validDate(year: number, month: number, day: number): boolean {
  if (month < 1 || month > 12 || day < 1) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]);
}

function trimTrailingWhitespace(bytes: Buffer): Buffer {
  let end = bytes.length;
  while (end > 0) {
    const b = bytes[end - 1];
    if (b !== 0x0a && b !== 0x0d && b !== 0x20 && b !== 0x09) break;
    end--;
  }
  return end === bytes.length ? bytes : bytes.subarray(0, end);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value) ?? String(value);
  const shown = text.length > 60 ? `${text.slice(0, 57)}…` : text;
  return `${typeof value === 'string' ? 'the string' : `the ${typeof value}`} ${shown}`;
}
