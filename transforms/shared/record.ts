/**
 * One record through the schema: decode, parse, validate, derive (event time, partition keys),
 * then — for the transform — mask, enrich and serialize. Pure and synchronous; never throws on
 * record content. Each failure names the field (a JSON pointer), the rule and what was wrong, so
 * the same reason can be recomputed from the raw bytes later (`failureReason`).
 */
import { ENRICHMENT_COLUMN, sanitizedPartitionValue, type Column, type LogicalType, type PiiMask, type SchemaModel } from '../../lib/schema/model';
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

/** What kind of problem failed a record: the `reason` dimension of the RecordsFailed metric. */
export type FailureCategory =
  | 'encoding'
  | 'json'
  | 'schema'
  | 'event-time'
  | 'value'
  | 'partition'
  | 'size'
  | 'response-size'
  | 'internal';

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
}

export type Analysis =
  | AnalyzedRecord
  /** Only whitespace: dropped by rule, never an error (see DROP_RULE_EMPTY). */
  | { readonly kind: 'empty' }
  | { readonly kind: 'failed'; readonly failure: RecordFailure };

/** The one documented rule under which the transform drops a record instead of delivering or failing it. */
export const DROP_RULE_EMPTY = 'empty-record';

export const MIN_EVENT_YEAR = 2000;
export const MAX_EVENT_YEAR = 2100;

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
  return derive(schema.model, value as Record<string, unknown>);
}

interface DerivePlan {
  /** Partition fields: JSON key and partition (column) name. */
  readonly partitions: ReadonlyArray<{ readonly jsonKey: string; readonly name: string }>;
}

const derivePlans = new WeakMap<SchemaModel, DerivePlan>();

function derivePlanFor(model: SchemaModel): DerivePlan {
  let plan = derivePlans.get(model);
  if (!plan) {
    plan = {
      partitions: model.extensions.partitionFields.map((jsonKey) => ({ jsonKey, name: model.inputColumns.find((c) => c.jsonKey === jsonKey)?.name ?? jsonKey })),
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

function derive(model: SchemaModel, record: Record<string, unknown>): Analysis {
  const x = model.extensions;
  const timeField = `/${x.eventTimeField}`;
  const rawTime = record[x.eventTimeField];
  const eventTime = typeof rawTime === 'string' ? parseDateTime(rawTime) : undefined;
  if (!eventTime) return { kind: 'failed', failure: failure('event-time', timeField, 'format', 'must be an RFC 3339 date-time with a time zone') };
  const year = isoYear(eventTime.iso);
  if (!(year >= MIN_EVENT_YEAR && year <= MAX_EVENT_YEAR)) {
    const shown = Number.isNaN(year) ? new Date(eventTime.epochMs).getUTCFullYear() : year;
    return {
      kind: 'failed',
      failure: failure('event-time', timeField, 'range', `is in UTC year ${shown}; the lake's partitions cover ${MIN_EVENT_YEAR}–${MAX_EVENT_YEAR}`),
    };
  }
  const keys: Record<string, string> = {};
  for (const p of derivePlanFor(model).partitions) {
    const raw = record[p.jsonKey];
    if (typeof raw !== 'string') {
      return { kind: 'failed', failure: failure('partition', `/${p.jsonKey}`, 'type', 'must be a string to partition by') };
    }
    const value = partitionValue(raw);
    if (value === '') {
      return {
        kind: 'failed',
        failure: failure('partition', `/${p.jsonKey}`, 'partition', `${JSON.stringify(raw.slice(0, 64))} has no letter, digit, "_" or "-" left to name an S3 partition with`),
      };
    }
    keys[p.name] = value;
  }
  const t = timePartitions(eventTime.iso);
  keys.year = t.year;
  keys.month = t.month;
  keys.day = t.day;
  keys.hour = t.hour;
  const entity = x.entityField !== undefined && typeof record[x.entityField] === 'string' ? (record[x.entityField] as string) : undefined;
  return { kind: 'valid', record, id: record[x.idField] as string, eventTime, partitionKeys: keys, entity };
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
}
type Shaper = (value: unknown, ctx: ShapeContext, parent: Record<string, unknown>) => Shaped;

interface FieldPlan {
  readonly jsonKey: string;
  readonly name: string;
  readonly shape: Shaper;
  /** Numbers and booleans under a plain name: copied without a call (the hot path). */
  readonly copy: boolean;
}

interface TransformPlan {
  readonly fields: readonly FieldPlan[];
  readonly optionalKeys: readonly string[];
  readonly version: string;
}

const plans = new WeakMap<SchemaModel, TransformPlan>();

function planFor(model: SchemaModel): TransformPlan {
  let plan = plans.get(model);
  if (!plan) {
    plan = {
      fields: topLevelPlan(model),
      optionalKeys: model.inputColumns.filter((c) => !c.required).map((c) => c.jsonKey),
      version: model.extensions.version,
    };
    plans.set(model, plan);
  }
  return plan;
}

function topLevelPlan(model: SchemaModel): FieldPlan[] {
  const fields = structPlan(model.inputColumns, model.extensions.pii, '').map((f): FieldPlan =>
    // derive() parsed and range-checked the event time already.
    f.jsonKey === model.extensions.eventTimeField ? { ...f, copy: false, shape: (_v, ctx) => ctx.eventTimeIso } : f);
  const money = model.extensions.money;
  if (!money) return fields;
  const at = fields.findIndex((f) => f.jsonKey === money.amountField);
  const minor: FieldPlan = {
    jsonKey: money.amountField,
    name: money.minorUnitsField,
    copy: false,
    shape: (amount, _ctx, parent) => {
      if (amount === null) return null;
      const currencyValue = hasOwn(parent, money.currencyField) ? parent[money.currencyField] : undefined;
      const currency = typeof currencyValue === 'string' ? currencyValue : money.defaultCurrency;
      if (currency === undefined) throw new ShapeError('value', 'currency', `needs "${money.currencyField}" to be converted to minor units`);
      const minorUnits = toMinorUnits(amount as number, currency);
      if (!minorUnits.ok) throw new ShapeError('value', 'minorUnits', minorUnits.message);
      return minorUnits.value;
    },
  };
  // A dropped amount (pii "drop") still yields minor units: they follow where the amount would be.
  fields.splice(at === -1 ? fields.length : at + 1, 0, minor);
  return fields;
}

function structPlan(columns: readonly Column[], pii: Readonly<Record<string, PiiMask>>, prefix: string): FieldPlan[] {
  return columns.map((c): FieldPlan => {
    const path = prefix + c.jsonKey;
    const mask = pii[path];
    const copy = !mask && (c.type.kind === 'double' || c.type.kind === 'boolean') && c.name !== '__proto__';
    return { jsonKey: c.jsonKey, name: c.name, copy, shape: mask ? maskShaper(mask) : typeShaper(c.type, pii, `${path}.`) };
  });
}

function maskShaper(mask: PiiMask): Shaper {
  return (value, ctx) => {
    if (value === null) return null;
    if (typeof value !== 'string') throw new ShapeError('value', 'type', 'must be a string to be masked');
    const masked = maskValue(mask, value, ctx.piiHashKey);
    return masked === undefined ? OMIT : masked;
  };
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
          throw new ShapeError('value', 'range', `is in UTC year ${new Date(time.epochMs).getUTCFullYear()}; timestamps must fall in years 0001–9999`);
        }
        return time.iso;
      };
    case 'int':
    case 'bigint':
      return (v) => {
        if (typeof v === 'number' && !Number.isSafeInteger(v)) {
          throw new ShapeError('value', 'safeInteger', 'is beyond ±(2^53 − 1): JSON parsers, Athena and OpenSearch would read a different number');
        }
        return v;
      };
    case 'double':
    case 'boolean':
      return (v) => v;
    case 'struct': {
      const fields = structPlan(t.fields, pii, prefix);
      return (v, ctx) => (v === null || typeof v !== 'object' ? v : shapeStruct(fields, v as Record<string, unknown>, ctx));
    }
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

function shapeStruct(fields: readonly FieldPlan[], source: Record<string, unknown>, ctx: ShapeContext): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    if (!hasOwn(source, f.jsonKey)) continue;
    const v = source[f.jsonKey];
    if (v === undefined) continue;
    if (f.copy) {
      out[f.name] = v;
      continue;
    }
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
  const analysis = analyzeRecord(schema, bytes);
  if (analysis.kind === 'empty') return { result: 'Dropped', rule: DROP_RULE_EMPTY };
  if (analysis.kind === 'failed') return { result: 'ProcessingFailed', failure: analysis.failure };
  const plan = planFor(schema.model);
  let enriched: Record<string, unknown>;
  try {
    enriched = shapeStruct(plan.fields, analysis.record as Record<string, unknown>, { piiHashKey: settings.piiHashKey, eventTimeIso: analysis.eventTime.iso });
  } catch (err) {
    if (!(err instanceof ShapeError)) throw err;
    return { result: 'ProcessingFailed', failure: failure(err.category, err.pointer(), err.rule, err.message) };
  }
  enriched[ENRICHMENT_COLUMN] = enrichment(plan, analysis.record, ingest, settings.processedAt);
  const data = Buffer.from(`${JSON.stringify(enriched)}\n`, 'utf8');
  if (data.length > FIREHOSE_MAX_RECORD_BYTES) {
    return {
      result: 'ProcessingFailed',
      failure: failure('size', '/', 'maxRecordBytes', `is ${data.length} bytes once enriched, over Firehose's ${FIREHOSE_MAX_RECORD_BYTES}-byte (1,000 KiB) record limit`),
    };
  }
  return settings.destination === 'lake'
    ? { result: 'Ok', data, partitionKeys: analysis.partitionKeys, id: analysis.id }
    : { result: 'Ok', data, id: analysis.id };
}

const arrivalIso = isoFormatter();
let processedAtDate: Date | undefined;
let processedAtIso = '';

function enrichment(plan: TransformPlan, record: Readonly<Record<string, unknown>>, ingest: IngestMetadata, processedAt: Date): Record<string, unknown> {
  if (processedAt !== processedAtDate) {
    processedAtDate = processedAt;
    processedAtIso = processedAt.toISOString();
  }
  let present = 0;
  for (const key of plan.optionalKeys) if (hasOwn(record, key) && record[key] !== null && record[key] !== undefined) present++;
  const quality = plan.optionalKeys.length === 0 ? 1 : Math.round((present / plan.optionalKeys.length) * 10_000) / 10_000;
  const k = ingest.kinesis;
  const out: Record<string, unknown> = {
    // An absent or absurd arrival time (not Firehose's doing) falls back to the processing time.
    arrival_time: arrivalIso(k ? k.arrivalMs : ingest.arrivalMs) || processedAtIso,
    processed_at: processedAtIso,
    source: k ? 'kinesis' : 'direct-put',
  };
  if (k) {
    out.shard_id = k.shardId;
    out.sequence_number = k.sequenceNumber;
  }
  out.schema_version = plan.version;
  out.quality_score = quality;
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
  const outcome = transformRecord(schema, rawBytes, { arrivalMs: 0 }, { destination: 'lake', piiHashKey: 'failure-reason', processedAt: new Date(0) });
  switch (outcome.result) {
    case 'Ok':
      return '';
    case 'Dropped':
      return `dropped (${outcome.rule}): the record is empty or only whitespace`;
    case 'ProcessingFailed':
      return describeFailure(outcome.failure);
  }
}
