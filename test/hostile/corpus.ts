/**
 * The hostile-input corpus (issue #7): `test/fixtures/hostile/manifest.json` turned into the exact
 * bytes each case sends. The manifest holds a description of each record rather than the record,
 * so megabyte-sized cases cost the repository a line, and literal bytes that no JSON string can
 * carry (invalid UTF-8, byte order marks) sit in files next to it.
 *
 * A record is one of:
 * - `{ "file": "x.bin" }`: the file's bytes, with the ASCII placeholder `{{event_id}}` replaced;
 * - `{ "text": [parts] }`: parts concatenated; a part is a string (UTF-8, `{{event_id}}` replaced),
 *   `{ "hex": "c0af" }` (raw bytes), `{ "repeat": "[", "times": 100000 }`, `{ "base": true }` (the
 *   pipeline's base record as JSON) or `{ "fill": "k" }` (the character repeated until the record
 *   is `padTo` bytes);
 * - `{ "set": {...}, "unset": [...], "members": [parts] }`: the pipeline's base record with fields
 *   set (a value `{ "repeat", "times" }` becomes that long string) or removed, serialized, and
 *   `members` (raw JSON text, e.g. `,"amount":NaN`) spliced in before its closing brace.
 * Any record may add `"padTo": n`: trailing spaces (JSON whitespace) up to exactly n bytes.
 *
 * Every record gets its own event id (a UUID derived from the case name and its index), so rows
 * can be found by id and identical bytes never stand for two cases.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const CORPUS_DIR = path.resolve(__dirname, '..', 'fixtures', 'hostile');

/** The items of issue #7's list, one kind each; every one must be covered by at least one case. */
export const HOSTILE_KINDS = [
  'malformed-json',
  'truncated-json',
  'wrong-type',
  'missing-required',
  'extra-field',
  'huge-string',
  'deep-nesting',
  'unsafe-number',
  'nan',
  'infinity',
  'invalid-utf8',
  'bom',
  'nul',
  'control-characters',
  'proto-key',
  'constructor-key',
  'partition-slash',
  'partition-dotdot',
  'partition-encoded',
  'partition-unicode-case',
  'partition-control',
  'partition-not-a-string',
  'partition-duplicate-key',
  'partition-very-long',
  'partition-empty',
  'timestamp-far-past',
  'timestamp-far-future',
  'timestamp-odd-format',
  'record-at-limit',
  'record-over-limit',
  'batch-at-500',
  'batch-over-500',
  'batch-at-4mib',
  'batch-over-4mib',
  'empty-record',
] as const;

/** Kinds whose cases are whole batches at or over PutRecordBatch's limits. */
export const BATCH_KINDS: readonly HostileKind[] = ['batch-at-500', 'batch-over-500', 'batch-at-4mib', 'batch-over-4mib'];
export type HostileKind = (typeof HOSTILE_KINDS)[number];

/** Partition values that try to leave the data dir aim here; the test looks for it everywhere. */
export const ESCAPE_MARKER = 'sluice-hostile-escape';

export type TextPart =
  | string
  | { readonly hex: string }
  | { readonly repeat: string; readonly times: number }
  | { readonly base: true }
  | { readonly fill: string };

export interface RecordSpec {
  readonly file?: string;
  readonly text?: readonly TextPart[];
  readonly set?: Readonly<Record<string, unknown>>;
  readonly unset?: readonly string[];
  readonly members?: readonly TextPart[];
  readonly padTo?: number;
}

export type Api = 'PutRecord' | 'PutRecordBatch' | 'PutRecords';

export type Expectation =
  /** Delivered: exactly one Parquet row with this event id, matching `row` (columns as DuckDB's to_json shows them). */
  | { readonly outcome: 'row'; readonly row?: Readonly<Record<string, unknown>> }
  /** Failed: one error object line under errors/<pipeline>/<errorType>/ and one DLQ message whose reason contains `reason`. */
  | { readonly outcome: 'error'; readonly errorType: string; readonly reason: string; readonly reasonExcludes?: string }
  /** Dropped by the transform's one documented rule (blank records): no row, no error. */
  | { readonly outcome: 'dropped' }
  /** Refused by the API with this error code (the whole call, or the record's entry); nothing written. */
  | { readonly outcome: 'api-error'; readonly code: string; readonly message?: string };

export interface CaseSpec {
  readonly name: string;
  readonly covers: HostileKind;
  readonly pipeline: string;
  readonly api: Api;
  readonly why: string;
  readonly record?: RecordSpec;
  /** Several records in one call: `count` copies of `record`, or the listed `records`. */
  readonly batch?: { readonly count?: number; readonly record?: RecordSpec; readonly records?: readonly RecordSpec[]; readonly totalBytes?: number };
  readonly expect: Expectation;
}

interface Manifest {
  readonly bases: Readonly<Record<string, Record<string, unknown>>>;
  readonly cases: readonly CaseSpec[];
}

export interface HostileRecord {
  readonly eventId: string;
  readonly bytes: Buffer;
}

export interface HostileCase extends CaseSpec {
  readonly records: readonly HostileRecord[];
}

/** A UUID (version 4 layout) that only depends on the text: stable across runs. */
export function eventIdFor(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function loadCorpus(): HostileCase[] {
  const manifest = JSON.parse(fs.readFileSync(path.join(CORPUS_DIR, 'manifest.json'), 'utf8')) as Manifest;
  return manifest.cases.map((c) => {
    const specs = c.batch?.records ?? (c.batch ? Array.from({ length: c.batch.count ?? 1 }, () => c.batch!.record!) : [c.record!]);
    const padded = c.batch?.totalBytes === undefined ? specs : spreadPadding(specs, c.batch.totalBytes, (s, i) => build(manifest, c, s, i).length);
    const records = padded.map((spec, i) => {
      const bytes = build(manifest, c, spec, i);
      return { eventId: eventIdFor(`${c.name}#${i}`), bytes };
    });
    return { ...c, records };
  });
}

/** Pads the records so their sizes add up to exactly `total` bytes, spread evenly. */
function spreadPadding(specs: readonly RecordSpec[], total: number, sizeOf: (s: RecordSpec, i: number) => number): RecordSpec[] {
  const base = specs.map(sizeOf);
  const extra = total - base.reduce((a, b) => a + b, 0);
  if (extra < 0) throw new Error(`totalBytes ${total} is smaller than the records themselves`);
  return specs.map((s, i) => ({ ...s, padTo: base[i] + Math.floor(extra / specs.length) + (i < extra % specs.length ? 1 : 0) }));
}

function build(manifest: Manifest, c: CaseSpec, spec: RecordSpec, index: number): Buffer {
  const eventId = eventIdFor(`${c.name}#${index}`);
  const base = manifest.bases[c.pipeline];
  if (!base) throw new Error(`case ${c.name}: no base record for pipeline ${c.pipeline}`);
  const baseRecord = { ...base, event_id: eventId };
  const withId = (s: string) => s.split('{{event_id}}').join(eventId);
  let parts: Buffer[];
  let fill: string | undefined;
  const partBytes = (p: TextPart): Buffer => {
    if (typeof p === 'string') return Buffer.from(withId(p), 'utf8');
    if ('hex' in p) return Buffer.from(p.hex, 'hex');
    if ('repeat' in p) return Buffer.from(p.repeat.repeat(p.times), 'utf8');
    if ('base' in p) return Buffer.from(JSON.stringify(baseRecord), 'utf8');
    fill = p.fill;
    return Buffer.from('\u0000FILL\u0000');
  };
  if (spec.file !== undefined) {
    parts = [Buffer.from(withId(fs.readFileSync(path.join(CORPUS_DIR, spec.file), 'latin1')), 'latin1')];
  } else if (spec.text !== undefined) {
    parts = spec.text.map(partBytes);
  } else {
    const record: Record<string, unknown> = { ...baseRecord };
    for (const key of spec.unset ?? []) delete record[key];
    for (const [key, value] of Object.entries(spec.set ?? {})) {
      Object.defineProperty(record, key, { value: expandRepeats(value), enumerable: true, writable: true, configurable: true });
    }
    const json = JSON.stringify(record);
    parts = [Buffer.from(json.slice(0, -1), 'utf8'), ...(spec.members ?? []).map(partBytes), Buffer.from('}')];
  }
  const placeholder = parts.findIndex((p) => p.equals(Buffer.from('\u0000FILL\u0000')));
  if (placeholder >= 0) {
    if (spec.padTo === undefined) throw new Error(`case ${c.name}: a fill part needs padTo`);
    const others = parts.reduce((n, p, i) => (i === placeholder ? n : n + p.length), 0);
    parts[placeholder] = Buffer.from(fill!.repeat(spec.padTo - others), 'utf8');
  }
  let bytes = Buffer.concat(parts);
  if (spec.padTo !== undefined && bytes.length < spec.padTo) bytes = Buffer.concat([bytes, Buffer.alloc(spec.padTo - bytes.length, 0x20)]);
  if (spec.padTo !== undefined && bytes.length !== spec.padTo) throw new Error(`case ${c.name}: record is ${bytes.length} bytes, over padTo ${spec.padTo}`);
  return bytes;
}

/** `{ "repeat": s, "times": n }` anywhere in a value becomes s repeated n times. */
function expandRepeats(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(expandRepeats);
  const o = value as Record<string, unknown>;
  if (typeof o.repeat === 'string' && typeof o.times === 'number') return o.repeat.repeat(o.times);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) Object.defineProperty(out, k, { value: expandRepeats(v), enumerable: true, writable: true, configurable: true });
  return out;
}
