/**
 * One record through the schema: decode, parse, validate, derive (event time, partition keys),
 * then — for the transform — mask, enrich and serialize. Pure and synchronous; never throws on
 * record content. Each failure names the field (a JSON pointer), the rule and what was wrong, so
 * the same reason can be recomputed from the raw bytes later (`failureReason`).
 */
import { ENRICHMENT_COLUMN, INHERITED_NAMES, MAX_EVENT_YEAR, MIN_EVENT_YEAR, ownValue, sanitizedPartitionValue, type Column, type LogicalType, type PiiMask, type SchemaModel } from '../../lib/schema/model';
import { describeIssues, issuesFrom, type ValidationIssue } from '../../lib/schema/issues';
import { decodeJson } from './json';
import { FIREHOSE_MAX_RECORD_BYTES, MAX_REASON_CHARS } from './limits';
import { toMinorUnits } from './money';
import { pipelineSchema, type PipelineSchema } from './pipeline';
import { maskValue } from './pii';
import { isoFormatter, isoYear, parseDateTime, timePartitions, type UtcTime } from './timestamps';

declare global {
  interface String {
    /** ES2024; in Node ≥ 20. False when the string holds an unpaired surrogate (not encodable as UTF-8). */
    isWellFormed(): boolean;
  }
}

/** What kinds of problem fail a record: the values of the `reason` dimension of the RecordsFailed metric. */
export const FAILURE_CATEGORIES = ['encoding', 'json', 'schema', 'event-time', 'value', 'partition', 'size', 'response-size', 'internal'] as const;

/** What kind of problem failed a record: the `reason` dimension of the RecordsFailed metric. */
export type FailureCategory = (typeof FAILURE_CATEGORIES)[number];

export interface RecordFailure {
  readonly category: FailureCategory;
  /** JSON pointer of the first offending field; "/" for the record itself. */
  readonly field: string;
  /** The rule that failed: a JSON Schema keyword (required, enum, …) or a Sluice rule (utf8, json, partition, …). */
  readonly rule: string;
  readonly message: string;
  /** Every schema issue, for `schema` failures. */
  readonly issues: readonly ValidationIssue[];
}

/** Oldest Firehose/Kinesis facts about a record that enrichment records. */
export interface IngestMetadata {
  /** When Firehose received the record (epoch ms). */
  readonly arrivalMs: number;
  /** Present when the record came from a Kinesis stream. */
  readonly kinesis?: {
    readonly shardId: string;
    readonly sequenceNumber: string;
    /** When the stream received it (epoch ms). */
    readonly arrivalMs: number;
  };
}

export interface AnalyzedRecord {
  readonly kind: 'valid';
  /** The record as the producer sent it (validated). */
  readonly record: Readonly<Record<string, unknown>>;
  readonly id: string;
  readonly eventTime: UtcTime;
  /** Event type partition value(s) and year/month/day/hour, keyed by partition column name. */
  readonly partitionKeys: Readonly<Record<string, string>>;
  /** Value of the schema's entityField, when it has one and the record carries it. */
  readonly entity?: string;
  /** Whether the record's JSON text holds a `\u` escape, the only way a string can get an unpaired surrogate. */
  readonly unicodeEscapes: boolean;
}

export type Analysis =
  | AnalyzedRecord
  /** Only whitespace: dropped by rule, never an error (see DROP_RULE_EMPTY). */
  | { readonly kind: 'empty' }
  | { readonly kind: 'failed'; readonly failure: RecordFailure };

/** The one documented rule under which the transform drops a record instead of delivering or failing it. */
export const DROP_RULE_EMPTY = 'empty-record';

export { MAX_EVENT_YEAR, MIN_EVENT_YEAR };

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function failure(category: FailureCategory, field: string, rule: string, message: string, issues: readonly ValidationIssue[] = []): RecordFailure {
  return { category, field, rule, message: message.slice(0, MAX_REASON_CHARS), issues };
}

/** "schema: /amount must be > 0; /currency is required" — one line a person can act on. */
export function describeFailure(f: RecordFailure): string {
  const what = f.issues.length > 0 ? describeIssuesCapped(f.issues) : `${f.field} ${f.message}`;
  return `${f.category} (${f.rule}): ${what}`.slice(0, MAX_REASON_CHARS);
}

function describeIssuesCapped(issues: readonly ValidationIssue[]): string {
  const shown = issues.slice(0, 10);
  const more = issues.length - shown.length;
  return describeIssues(shown.map((i) => ({ ...i, field: i.field.slice(0, 200) }))) + (more > 0 ? `; and ${more} more` : '');
}

/** Decodes, parses, validates and derives the event time and partition keys. */
export function analyzeRecord(schema: PipelineSchema, bytes: Uint8Array): Analysis {
  const decoded = decodeJson(bytes);
  if (!decoded.ok) {
    if (decoded.empty) return { kind: 'empty' };
    return { kind: 'failed', failure: failure(decoded.rule === 'utf8' ? 'encoding' : 'json', '/', decoded.rule, decoded.message) };
  }
  const value = decoded.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    return { kind: 'failed', failure: failure('json', '/', 'type', `must be a JSON object, got ${got}`) };
  }
  if (!schema.validate(value)) {
    const issues = issuesFrom(schema.validate.errors);
    const first = issues[0] ?? { field: '/', rule: 'schema', message: 'does not match the schema' };
    return { kind: 'failed', failure: failure('schema', first.field, first.rule, first.message, issues) };
  }
  return derive(schema.model, value as Record<string, unknown>, decoded.unicodeEscapes);
}

interface DerivePlan {
  /** Partition fields: JSON key and partition (column) name. */
  readonly partitions: ReadonlyArray<{ readonly jsonKey: string; readonly name: string }>;
  /**
   * Partition keys already built, by event hour (`YYYY-MM-DDTHH`) and then by partition values: a
   * batch repeats a handful of them, so records share one frozen object instead of each building
   * its own. `hour`/`byValues` are the hour last used; a batch that straddles an hour (late records)
   * switches between a few hours without rebuilding their keys.
   */
  readonly keysCache: { hour: string; byValues: Map<string, Readonly<Record<string, string>>>; readonly byHour: Map<string, Map<string, Readonly<Record<string, string>>>> };
}

/** Hours and partition-value combinations the keys cache holds before it starts over. */
const KEYS_CACHE_HOURS = 48;
const KEYS_CACHE_VALUES_PER_HOUR = 256;

const derivePlans = new WeakMap<SchemaModel, DerivePlan>();

function derivePlanFor(model: SchemaModel): DerivePlan {
  let plan = derivePlans.get(model);
  if (!plan) {
    plan = {
      partitions: model.extensions.partitionFields.map((jsonKey) => ({ jsonKey, name: model.inputColumns.find((c) => c.jsonKey === jsonKey)?.name ?? jsonKey })),
      keysCache: { hour: '-', byValues: new Map(), byHour: new Map() },
    };
    derivePlans.set(model, plan);
  }
  return plan;
}

/** Partition values repeat (event types): remember the sanitized form of the last few hundred. */
const partitionValueCache = new Map<string, string>();

function partitionValue(raw: string): string {
  let value = partitionValueCache.get(raw);
  if (value === undefined) {
    value = sanitizedPartitionValue(raw);
    if (raw.length <= 128) {
      if (partitionValueCache.size >= 512) partitionValueCache.clear();
      partitionValueCache.set(raw, value);
    }
  }
  return value;
}

/** Partition values (checked by `derive`) and year/month/day/hour, keyed by partition column name. */
function partitionKeysFor(plan: DerivePlan, record: Readonly<Record<string, unknown>>, iso: string, values: string): Readonly<Record<string, string>> {
  const cache = plan.keysCache;
  if (!iso.startsWith(cache.hour)) {
    const hour = iso.slice(0, 13);
    let byValues = cache.byHour.get(hour);
    if (byValues === undefined) {
      if (cache.byHour.size >= KEYS_CACHE_HOURS) cache.byHour.clear();
      byValues = new Map();
      cache.byHour.set(hour, byValues);
    }
    cache.hour = hour;
    cache.byValues = byValues;
  }
  let keys = cache.byValues.get(values);
  if (keys === undefined) {
    const built: Record<string, string> = {};
    for (const p of plan.partitions) built[p.name] = partitionValue(record[p.jsonKey] as string);
    const t = timePartitions(iso);
    built.year = t.year;
    built.month = t.month;
    built.day = t.day;
    built.hour = t.hour;
    keys = Object.freeze(built);
    if (cache.byValues.size < KEYS_CACHE_VALUES_PER_HOUR) cache.byValues.set(values, keys);
  }
  return keys;
}

function derive(model: SchemaModel, record: Record<string, unknown>, unicodeEscapes: boolean): Analysis {
  const x = model.extensions;
  const rawTime = record[x.eventTimeField];
  const eventTime = typeof rawTime === 'string' ? parseDateTime(rawTime) : undefined;
  if (!eventTime) return { kind: 'failed', failure: failure('event-time', `/${x.eventTimeField}`, 'format', 'must be an RFC 3339 date-time with a time zone') };
  const iso = eventTime.iso;
  const year = isoYear(iso);
  if (!(year >= MIN_EVENT_YEAR && year <= MAX_EVENT_YEAR)) {
    const shown = Number.isNaN(year) ? new Date(iso).getUTCFullYear() : year;
    return {
      kind: 'failed',
      failure: failure('event-time', `/${x.eventTimeField}`, 'range', `is in UTC year ${shown}; the lake's partitions cover ${MIN_EVENT_YEAR}–${MAX_EVENT_YEAR}`),
    };
  }
  const plan = derivePlanFor(model);
  let values = '';
  for (let i = 0; i < plan.partitions.length; i++) {
    const p = plan.partitions[i];
    const raw = record[p.jsonKey];
    if (typeof raw !== 'string') {
      return { kind: 'failed', failure: failure('partition', `/${p.jsonKey}`, 'type', 'must be a string to partition by') };
    }
    const value = partitionValue(raw);
    if (value === '') {
      return {
        kind: 'failed',
        // The value itself is not quoted: a reason reaches log lines and the dead-letter queue's readers (it may be PII).
        failure: failure('partition', `/${p.jsonKey}`, 'partition', `has no ASCII letter or digit to name an S3 partition with (${raw.length === 0 ? 'it is empty' : `${charactersOf(raw)}, not shown`}; partition values keep a-z, 0-9, "_" and "-", lower-cased; other characters become "_", and "_" and "-" are trimmed from the ends)`),
      };
    }
    values = i === 0 ? value : `${values}\u0000${value}`;
  }
  const keys = partitionKeysFor(plan, record, iso, values);
  const entity = x.entityField !== undefined && typeof record[x.entityField] === 'string' ? (record[x.entityField] as string) : undefined;
  return { kind: 'valid', record, id: record[x.idField] as string, eventTime, partitionKeys: keys, entity, unicodeEscapes };
}

/** "1 character", "12 characters": code points, as a person counts them. */
function charactersOf(text: string): string {
  const n = Array.from(text).length;
  return `${n} character${n === 1 ? '' : 's'}`;
}

// ---------------------------------------------------------------------------------------------
// Enrichment

export type TransformDestination = 'lake' | 'search';

export interface TransformSettings {
  readonly destination: TransformDestination;
  /** Key of the PII keyed hash (HMAC-SHA-256). */
  readonly piiHashKey: string;
  /** When the batch was processed: `sluice.processed_at`. */
  readonly processedAt: Date;
}

export type TransformOutcome =
  | {
      readonly result: 'Ok';
      /** The enriched record as one JSON line, newline-terminated (UTF-8). */
      readonly data: Buffer;
      /** Lake only: `metadata.partitionKeys` for dynamic partitioning. */
      readonly partitionKeys?: Readonly<Record<string, string>>;
      /** The record's id (schema idField): OpenSearch document id, DynamoDB key. */
      readonly id: string;
    }
  | { readonly result: 'Dropped'; readonly rule: string }
  | { readonly result: 'ProcessingFailed'; readonly failure: RecordFailure };

/** A `TransformOutcome` whose Ok line was appended to a `LineBuffer` rather than copied out. */
export type LineOutcome =
  | {
      readonly result: 'Ok';
      /** The line's bytes in the buffer: [start, end), newline included. */
      readonly start: number;
      readonly end: number;
      readonly partitionKeys?: Readonly<Record<string, string>>;
      readonly id: string;
    }
  | { readonly result: 'Dropped'; readonly rule: string }
  | { readonly result: 'ProcessingFailed'; readonly failure: RecordFailure };

/**
 * The enriched records of a batch as UTF-8 JSON lines, back to back in one growing buffer: a batch
 * allocates one buffer rather than one per record, and the response encodes each line from its slice.
 * Valid until the next `clear()`, so fill and read it within one synchronous stretch.
 */
export class LineBuffer {
  private bytes: Buffer;
  private used = 0;

  constructor(initialBytes = 256 * 1024) {
    this.bytes = Buffer.allocUnsafe(initialBytes);
  }

  /** Bytes written since the last `clear()`: where the next line starts. */
  get length(): number {
    return this.used;
  }

  clear(): void {
    this.used = 0;
  }

  /** Forgets everything after `length` bytes (a line that failed half-way). */
  truncate(length: number): void {
    if (length < this.used) this.used = length;
  }

  /** Appends `text` as UTF-8. */
  append(text: string): void {
    const room = this.bytes.length - this.used;
    // A UTF-16 unit is at most 3 UTF-8 bytes; only a long string needs its exact length counted.
    if (text.length * 3 > room) {
      const needed = Buffer.byteLength(text, 'utf8');
      if (needed > room) this.grow(needed);
    }
    this.used += this.bytes.write(text, this.used, 'utf8');
  }

  /** Appends `text` as UTF-8 and a newline. */
  appendLine(text: string): void {
    this.append(text);
    if (this.used === this.bytes.length) this.grow(1);
    this.bytes[this.used++] = 0x0a;
  }

  base64(start: number, end: number): string {
    return this.bytes.toString('base64', start, end);
  }

  /** A copy of [start, end). */
  copy(start: number, end: number): Buffer {
    return Buffer.from(this.bytes.subarray(start, end));
  }

  private grow(needed: number): void {
    const bigger = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.used + needed));
    this.bytes.copy(bigger, 0, 0, this.used);
    this.bytes = bigger;
  }
}

/** Thrown inside the shaping walk; collects the JSON pointer while it unwinds. Never leaves this module. */
class ShapeError {
  readonly segments: string[] = [];
  constructor(readonly category: FailureCategory, readonly rule: string, readonly message: string) {}
  pointer(): string {
    return this.segments.length === 0 ? '/' : `/${this.segments.map((s) => s.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
  }
}

const OMIT = Symbol('omit');
type Shaped = unknown;
interface ShapeContext {
  readonly piiHashKey: string;
  /** The record's event time, already parsed and normalised by `derive`. */
  readonly eventTimeIso: string;
  /** Optional top-level fields the fast walk found (not null): the quality score's count. */
  optionalPresent: number;
}
type Shaper = (value: unknown, ctx: ShapeContext, parent: Record<string, unknown>) => Shaped;

/**
 * How the fast walk treats a field, for records whose strings need no surrogate check (no `\u`
 * escape in the text): `copy` when shaping gives back the same JSON (doubles, booleans, unmasked
 * strings, and arrays and maps of those), `int` for the inline safe-integer check, `struct` to walk
 * into, `shape` to call the field's shaper as the general walk does.
 */
type FastKind = 'copy' | 'int' | 'struct' | 'shape';

interface FieldPlan {
  readonly jsonKey: string;
  readonly name: string;
  /** The general walk: every field goes through its shaper. */
  readonly shape: Shaper;
  readonly fast: FastKind;
  /** The fields of a `struct`. */
  readonly fields: readonly FieldPlan[];
  /** An optional top-level field of the input: counted for the quality score. */
  readonly optional: boolean;
}

interface TransformPlan {
  readonly fields: readonly FieldPlan[];
  readonly optionalKeys: readonly string[];
  readonly version: string;
  /** The fast walk, compiled for this schema by `compileShaper`; undefined where Node forbids compiling code. */
  readonly compiled: CompiledShaper | undefined;
}

const plans = new WeakMap<SchemaModel, TransformPlan>();

function planFor(model: SchemaModel): TransformPlan {
  let plan = plans.get(model);
  if (!plan) {
    const fields = topLevelPlan(model);
    const optionalKeys = model.inputColumns.filter((c) => !c.required).map((c) => c.jsonKey);
    const version = model.extensions.version;
    plan = { fields, optionalKeys, version, compiled: compiledOrNot(() => compileShaper(fields, optionalKeys.length, version)) };
    plans.set(model, plan);
  }
  return plan;
}

function topLevelPlan(model: SchemaModel): FieldPlan[] {
  const fields = structPlan(model.inputColumns, model.extensions.pii, '', true).map((f): FieldPlan =>
    // derive() parsed and range-checked the event time already.
    f.jsonKey === model.extensions.eventTimeField ? { ...f, fast: 'shape', shape: (_v, ctx) => ctx.eventTimeIso } : f);
  const money = model.extensions.money;
  if (!money) return fields;
  const at = fields.findIndex((f) => f.jsonKey === money.amountField);
  const minor: FieldPlan = {
    jsonKey: money.amountField,
    name: money.minorUnitsField,
    fast: 'shape',
    fields: [],
    optional: false, // the amount itself is counted
    shape: (amount, _ctx, parent) => {
      if (amount === null) return null;
      const currencyValue = hasOwn(parent, money.currencyField) ? parent[money.currencyField] : undefined;
      const currency = typeof currencyValue === 'string' ? currencyValue : money.defaultCurrency;
      if (currency === undefined) throw new ShapeError('value', 'currency', `needs "${money.currencyField}" to be converted to minor units`);
      const minorUnits = toMinorUnits(amount as number, currency, money.currencyField);
      if (!minorUnits.ok) throw new ShapeError('value', 'minorUnits', minorUnits.message);
      return minorUnits.value;
    },
  };
  // A dropped amount (pii "drop") still yields minor units: they follow where the amount would be.
  fields.splice(at === -1 ? fields.length : at + 1, 0, minor);
  return fields;
}

function structPlan(columns: readonly Column[], pii: Readonly<Record<string, PiiMask>>, prefix: string, topLevel = false): FieldPlan[] {
  return columns.map((c): FieldPlan => {
    const path = prefix + c.jsonKey;
    const mask = ownValue(pii, path);
    const fields = !mask && c.type.kind === 'struct' ? structPlan(c.type.fields, pii, `${path}.`) : [];
    const fast: FastKind = mask ? 'shape' : fastKind(c.type);
    // A struct's shaper walks the plan just built: building it again per level would double the work at every level of nesting.
    const shape = mask ? maskShaper(mask) : c.type.kind === 'struct' ? structShaper(fields) : typeShaper(c.type, pii, `${path}.`);
    return { jsonKey: c.jsonKey, name: c.name, fast, fields, optional: topLevel && !c.required, shape };
  });
}

function fastKind(t: LogicalType): FastKind {
  switch (t.kind) {
    case 'string':
    case 'date':
    case 'double':
    case 'boolean':
      return 'copy';
    case 'int':
    case 'bigint':
      return 'int';
    case 'struct':
      return 'struct';
    case 'array':
      return fastKind(t.items) === 'copy' ? 'copy' : 'shape';
    case 'map':
      // The general walk rebuilds the map key by key (setOwn keeps "__proto__" a key): the same JSON.
      return fastKind(t.values) === 'copy' ? 'copy' : 'shape';
    case 'timestamp':
      return 'shape';
  }
}

function maskShaper(mask: PiiMask): Shaper {
  return (value, ctx) => {
    if (value === null) return null;
    if (typeof value !== 'string') throw new ShapeError('value', 'type', 'must be a string to be masked');
    const masked = maskValue(mask, value, ctx.piiHashKey);
    return masked === undefined ? OMIT : masked;
  };
}

function structShaper(fields: readonly FieldPlan[]): Shaper {
  return (v, ctx) => (v === null || typeof v !== 'object' ? v : shapeStruct(fields, v as Record<string, unknown>, ctx));
}

function typeShaper(t: LogicalType, pii: Readonly<Record<string, PiiMask>>, prefix: string): Shaper {
  switch (t.kind) {
    case 'string':
    case 'date':
      return (v) => {
        if (typeof v === 'string' && !v.isWellFormed()) throw new ShapeError('encoding', 'utf16', 'holds an unpaired surrogate (\\uD800–\\uDFFF), which UTF-8 cannot encode');
        return v;
      };
    case 'timestamp':
      return (v) => {
        if (v === null) return null;
        const time = typeof v === 'string' ? parseDateTime(v) : undefined;
        if (!time) throw new ShapeError('value', 'format', 'must be an RFC 3339 date-time with a time zone');
        if (!(isoYear(time.iso) >= 1)) {
          throw new ShapeError('value', 'range', `is in UTC year ${new Date(time.iso).getUTCFullYear()}; timestamps must fall in years 0001–9999`);
        }
        return time.iso;
      };
    case 'int':
    case 'bigint':
      return (v) => {
        if (typeof v === 'number' && !Number.isSafeInteger(v)) throw unsafeInteger();
        return v;
      };
    case 'double':
    case 'boolean':
      return (v) => v;
    case 'struct':
      return structShaper(structPlan(t.fields, pii, prefix));
    case 'array': {
      const item = typeShaper(t.items, pii, prefix);
      return (v, ctx) => {
        if (!Array.isArray(v)) return v;
        const out = new Array<unknown>(v.length);
        for (let i = 0; i < v.length; i++) {
          try {
            out[i] = item(v[i], ctx, v as unknown as Record<string, unknown>);
          } catch (err) {
            if (err instanceof ShapeError) err.segments.unshift(String(i));
            throw err;
          }
        }
        return out;
      };
    }
    case 'map': {
      const value = typeShaper(t.values, pii, prefix);
      return (v, ctx) => {
        if (v === null || typeof v !== 'object') return v;
        const source = v as Record<string, unknown>;
        const out: Record<string, unknown> = {};
        for (const key of Object.keys(source)) {
          try {
            if (!key.isWellFormed()) throw new ShapeError('encoding', 'utf16', 'key holds an unpaired surrogate, which UTF-8 cannot encode');
            setOwn(out, key, value(source[key], ctx, source));
          } catch (err) {
            if (err instanceof ShapeError) err.segments.unshift(key.isWellFormed() ? key : '(key)');
            throw err;
          }
        }
        return out;
      };
    }
  }
}

function unsafeInteger(): ShapeError {
  return new ShapeError('value', 'safeInteger', 'is beyond ±(2^53 − 1): JSON parsers, Athena and OpenSearch would read a different number');
}

/** The general walk: masks PII, renames keys to column names and checks values, field by field in schema order. */
function shapeStruct(fields: readonly FieldPlan[], source: Record<string, unknown>, ctx: ShapeContext): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    if (!hasOwn(source, f.jsonKey)) continue;
    const v = source[f.jsonKey];
    if (v === undefined) continue;
    let shaped: Shaped;
    try {
      shaped = f.shape(v, ctx, source);
    } catch (err) {
      if (err instanceof ShapeError) err.segments.unshift(f.jsonKey);
      throw err;
    }
    if (shaped !== OMIT) setOwn(out, f.name, shaped);
  }
  return out;
}

/**
 * The fast walk, for records without `\u` escapes (nearly all): one function written for the schema
 * returns the shaped record, `sluice` struct included, as an object literal with the columns in
 * schema order. Absent fields are `undefined`, which JSON.stringify leaves out as the general walk
 * does. V8 builds such a literal with one fixed shape; a generic walk's keyed stores cost about as
 * much as serializing the result. Proven equal to `shapeStruct` by test/transforms/fast-path.test.ts.
 */
type CompiledShaper = (
  source: Record<string, unknown>, ctx: ShapeContext, arrivalTime: string, processedAt: string, shardId?: string, sequenceNumber?: string,
) => Record<string, unknown>;

/**
 * The compiled walk, or undefined when the process runs with --disallow-code-generation-from-strings
 * (Node's EvalError): the general walk then shapes every record, slower and with the same bytes.
 */
function compiledOrNot(compile: () => CompiledShaper): CompiledShaper | undefined {
  try {
    return compile();
  } catch (error) {
    if (error instanceof EvalError) return undefined;
    throw error;
  }
}

/**
 * Writes the fast walk of a schema's fields as JavaScript and compiles it, once per pipeline at cold
 * start (a few hundred bytes of code; nothing of the record reaches it). Every name enters the code as
 * a JSON string literal. Errors leave it as ShapeErrors without a field path; the caller reruns the
 * general walk for the path.
 */
function compileShaper(fields: readonly FieldPlan[], optionalFields: number, version: string): CompiledShaper {
  const shapers: Shaper[] = [];
  const functions: string[] = [];
  const literal = (text: string): string => JSON.stringify(text);
  const compileStruct = (struct: readonly FieldPlan[], topLevel: boolean): string => {
    const name = `s${functions.length}`;
    functions.push('');
    const body: string[] = [];
    const keys: string[] = [];
    struct.forEach((f, i) => {
      // describeSchema refuses these names; the compiler checks again since they would reach the code.
      if (INHERITED_NAMES.has(f.name) || INHERITED_NAMES.has(f.jsonKey)) throw new Error(`field ${JSON.stringify(f.jsonKey)} (column ${JSON.stringify(f.name)}) is named like an inherited member`);
      body.push(`const r${i} = src[${literal(f.jsonKey)}];`);
      if (f.optional) body.push(`if (r${i} !== undefined && r${i} !== null) ctx.optionalPresent++;`);
      switch (f.fast) {
        case 'copy':
          body.push(`const v${i} = r${i};`);
          break;
        case 'int':
          body.push(`if (typeof r${i} === 'number' && !Number.isSafeInteger(r${i})) throw unsafeInteger();`, `const v${i} = r${i};`);
          break;
        case 'struct':
          body.push(`const v${i} = r${i} === undefined || r${i} === null || typeof r${i} !== 'object' ? r${i} : ${compileStruct(f.fields, false)}(r${i}, ctx);`);
          break;
        case 'shape':
          shapers.push(f.shape);
          body.push(`let v${i} = r${i} === undefined ? undefined : shapers[${shapers.length - 1}](r${i}, ctx, src);`, `if (v${i} === OMIT) v${i} = undefined;`);
          break;
      }
      keys.push(`${literal(f.name)}: v${i}`);
    });
    let parameters = 'src, ctx';
    if (topLevel) {
      parameters += ', arrivalTime, processedAt, shardId, sequenceNumber';
      // The `enrichment` struct, key for key.
      const score = `quality(ctx.optionalPresent, ${optionalFields})`;
      keys.push(`${literal(ENRICHMENT_COLUMN)}: shardId === undefined`
        + ` ? { arrival_time: arrivalTime, processed_at: processedAt, source: "direct-put", schema_version: version, quality_score: ${score} }`
        + ` : { arrival_time: arrivalTime, processed_at: processedAt, source: "kinesis", shard_id: shardId, sequence_number: sequenceNumber, schema_version: version, quality_score: ${score} }`);
    }
    functions[Number(name.slice(1))] = `function ${name}(${parameters}) {\n${body.join('\n')}\nreturn { ${keys.join(', ')} };\n}`;
    return name;
  };
  compileStruct(fields, true);
  // The code is built above; every name in it is a JSON string literal.
  const make = new Function('unsafeInteger', 'shapers', 'OMIT', 'version', 'quality', `"use strict";\n${functions.join('\n')}\nreturn s0;`);
  return make(unsafeInteger, shapers, OMIT, version, quality) as CompiledShaper;
}

/** A plain assignment of "__proto__" would set the prototype instead of a key: JSON map keys are data. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

/**
 * The full per-record transform: validate, mask PII, rename keys to Glue columns, normalise
 * timestamps, add derived fields and the `sluice` struct, serialize as one JSON line, and check
 * the result against Firehose's record limit.
 */
export function transformRecord(schema: PipelineSchema, bytes: Uint8Array, ingest: IngestMetadata, settings: TransformSettings): TransformOutcome {
  return transformAlone(schema, bytes, ingest, settings, 'fast');
}

/** `transformRecord` by the general walk alone, never the fast one: the reference the fast path is tested against. */
export function transformRecordGeneral(schema: PipelineSchema, bytes: Uint8Array, ingest: IngestMetadata, settings: TransformSettings): TransformOutcome {
  return transformAlone(schema, bytes, ingest, settings, 'general');
}

const scratchLines = new LineBuffer(64 * 1024);

/** One record through a scratch line buffer, its line copied out. */
function transformAlone(schema: PipelineSchema, bytes: Uint8Array, ingest: IngestMetadata, settings: TransformSettings, walk: 'fast' | 'general'): TransformOutcome {
  scratchLines.clear();
  const o = transformRecordInto(scratchLines, schema, bytes, ingest, settings, walk);
  if (o.result !== 'Ok') return o;
  const data = scratchLines.copy(o.start, o.end);
  return o.partitionKeys ? { result: 'Ok', data, partitionKeys: o.partitionKeys, id: o.id } : { result: 'Ok', data, id: o.id };
}

/**
 * `transformRecord` for a batch: the line is appended to `lines` instead of copied into a Buffer
 * of its own. Nothing is appended unless the outcome is Ok.
 */
export function transformRecordInto(
  lines: LineBuffer,
  schema: PipelineSchema,
  bytes: Uint8Array,
  ingest: IngestMetadata,
  settings: TransformSettings,
  walk: 'fast' | 'general' = 'fast',
): LineOutcome {
  const analysis = analyzeRecord(schema, bytes);
  if (analysis.kind === 'empty') return { result: 'Dropped', rule: DROP_RULE_EMPTY };
  if (analysis.kind === 'failed') return { result: 'ProcessingFailed', failure: analysis.failure };
  return enrichInto(lines, schema, analysis, ingest, settings, walk);
}

/** The enriching half of `transformRecordInto`, for a record `analyzeRecord` found valid. */
function enrichInto(
  lines: LineBuffer,
  schema: PipelineSchema,
  analysis: AnalyzedRecord,
  ingest: IngestMetadata,
  settings: TransformSettings,
  walk: 'fast' | 'general',
): LineOutcome {
  const plan = planFor(schema.model);
  const record = analysis.record as Record<string, unknown>;
  const ctx: ShapeContext = { piiHashKey: settings.piiHashKey, eventTimeIso: analysis.eventTime.iso, optionalPresent: 0 };
  const start = lines.length;
  try {
    // Only a \u escape can put an unpaired surrogate in a string: then every string needs the general walk's check.
    if (walk === 'general' || analysis.unicodeEscapes || plan.compiled === undefined) {
      const enriched = shapeStruct(plan.fields, record, ctx);
      enriched[ENRICHMENT_COLUMN] = enrichment(plan, record, ingest, settings.processedAt);
      lines.appendLine(JSON.stringify(enriched));
    } else {
      batchClock(settings.processedAt);
      const k = ingest.kinesis;
      const arrival = arrivalTime(ingest);
      let shaped: Record<string, unknown>;
      try {
        shaped = k ? plan.compiled(record, ctx, arrival, batch.processedAtIso, k.shardId, k.sequenceNumber) : plan.compiled(record, ctx, arrival, batch.processedAtIso);
      } catch (err) {
        // The general walk meets the same first problem in the same order, and names its field.
        if (!(err instanceof ShapeError)) throw err;
        shapeStruct(plan.fields, record, ctx);
        throw err;
      }
      lines.appendLine(JSON.stringify(shaped));
    }
  } catch (err) {
    lines.truncate(start);
    if (!(err instanceof ShapeError)) throw err;
    return { result: 'ProcessingFailed', failure: failure(err.category, err.pointer(), err.rule, err.message) };
  }
  const end = lines.length;
  if (end - start > FIREHOSE_MAX_RECORD_BYTES) {
    lines.truncate(start);
    return {
      result: 'ProcessingFailed',
      failure: failure('size', '/', 'maxRecordBytes', `is ${end - start} bytes once enriched, over Firehose's ${FIREHOSE_MAX_RECORD_BYTES}-byte (1,000 KiB) record limit`),
    };
  }
  return settings.destination === 'lake'
    ? { result: 'Ok', start, end, partitionKeys: analysis.partitionKeys, id: analysis.id }
    : { result: 'Ok', start, end, id: analysis.id };
}

const checkLines = new LineBuffer(64 * 1024);
/** Settings for judging a record as the lake transform would, its output unused (so any hash key and clock do). */
const CHECK_SETTINGS: TransformSettings = { destination: 'lake', piiHashKey: 'lake-check', processedAt: new Date(0) };

/**
 * `analyzeRecord`, failing whatever the lake transform would fail: its masking, value and size checks too (an
 * amount with too many decimals for its currency, an unsafe integer, a record too large once enriched). What
 * reads a stream beside the transform (the metadata consumer) then records exactly the events the lake gets.
 */
export function analyzeForLake(schema: PipelineSchema, bytes: Uint8Array, ingest: IngestMetadata): Analysis {
  const analysis = analyzeRecord(schema, bytes);
  if (analysis.kind !== 'valid') return analysis;
  checkLines.clear();
  // The record's own ingest metadata: a Kinesis record's enriched line carries its shard and sequence number, and its
  // size is checked with them.
  const outcome = enrichInto(checkLines, schema, analysis, ingest, CHECK_SETTINGS, 'fast');
  if (outcome.result === 'ProcessingFailed') return { kind: 'failed', failure: outcome.failure };
  return analysis;
}

const arrivalIso = isoFormatter();

/** The clock of the batch being enriched, formatted once per batch. */
const batch = {
  processedAt: undefined as Date | undefined,
  processedAtIso: '',
};

/**
 * `sluice.arrival_time`: Kinesis's arrival time for a Kinesis-sourced record, Firehose's otherwise. An absent
 * or absurd one (not Firehose's doing) falls back to the processing time, so `batchClock` must have run.
 */
function arrivalTime(ingest: IngestMetadata): string {
  return arrivalIso(ingest.kinesis ? ingest.kinesis.arrivalMs : ingest.arrivalMs) || batch.processedAtIso;
}

function batchClock(processedAt: Date): void {
  if (processedAt !== batch.processedAt) {
    batch.processedAt = processedAt;
    batch.processedAtIso = processedAt.toISOString();
  }
}

/** Share of the schema's optional fields the record carries (not null), to four decimals. */
function qualityScore(plan: TransformPlan, record: Readonly<Record<string, unknown>>): number {
  let present = 0;
  for (const key of plan.optionalKeys) if (hasOwn(record, key) && record[key] !== null && record[key] !== undefined) present++;
  return quality(present, plan.optionalKeys.length);
}

function quality(optionalPresent: number, optionalFields: number): number {
  return optionalFields === 0 ? 1 : Math.round((optionalPresent / optionalFields) * 10_000) / 10_000;
}

/** The `sluice` struct. */
function enrichment(plan: TransformPlan, record: Readonly<Record<string, unknown>>, ingest: IngestMetadata, processedAt: Date): Record<string, unknown> {
  batchClock(processedAt);
  const k = ingest.kinesis;
  const out: Record<string, unknown> = {
    arrival_time: arrivalTime(ingest),
    processed_at: batch.processedAtIso,
    source: k ? 'kinesis' : 'direct-put',
  };
  if (k) {
    out.shard_id = k.shardId;
    out.sequence_number = k.sequenceNumber;
  }
  out.schema_version = plan.version;
  out.quality_score = qualityScore(plan, record);
  return out;
}

/**
 * Why a record fails (or would fail) the transform, recomputed from its raw bytes alone: the
 * parse, validation, derivation and size checks the transform runs, with the same wording.
 * Returns '' when the record transforms fine (its failure, if any, was not about its content, e.g.
 * the response-size budget or a Lambda error) and names the drop rule for a blank record.
 */
export function failureReason(pipeline: string, rawBytes: Uint8Array): string {
  const schema = pipelineSchema(pipeline);
  const outcome = transformRecord(schema, rawBytes, { arrivalMs: 0 }, CHECK_SETTINGS);
  switch (outcome.result) {
    case 'Ok':
      return '';
    case 'Dropped':
      return `dropped (${outcome.rule}): the record is empty or only whitespace`;
    case 'ProcessingFailed':
      return describeFailure(outcome.failure);
  }
}
