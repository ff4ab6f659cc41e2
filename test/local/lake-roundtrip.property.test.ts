/**
 * The lake path end to end, value by value: a schema-valid record goes through the transform
 * (`transformRecord`), the twin's Parquet conversion (`ParquetWriter`, the OpenX JSON SerDe's rules) and
 * back out of the Parquet file through DuckDB, and every column of every row must hold what the
 * transform's JSON line says, read by the Glue type: timestamps as instants, bigints exactly, doubles
 * bit for bit, structs, arrays and maps deep-equal. Records come from the sample generator (edgy mode
 * too) of each shipped pipeline and of a schema with every column type, with hard values put in: astral
 * and escaped characters, NUL, quotes and line breaks, a leading U+FEFF, -0 (0 already in the line:
 * JSON.stringify writes it so), subnormals, the largest double, integers at ±(2^53 − 1), empty maps and
 * arrays, map keys like "__proto__", "" and "a.b", time zones and 1–9 fraction digits, dates at the ends
 * of the calendar.
 *
 * The one documented difference: map keys reach the lake lower-cased (schemas/README.md), and a map with
 * two keys that differ only in case fails conversion.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import {
  DuckDBDateValue,
  DuckDBInstance,
  DuckDBListValue,
  DuckDBMapValue,
  DuckDBStructValue,
  DuckDBTimestampValue,
  type DuckDBConnection,
  type DuckDBValue,
} from '@duckdb/node-api';
// Strings read back whole (a leading U+FEFF too), as the local Athena reads them.
import '../../lib/local/duckdb-strings';
import { ParquetWriter } from '../../lib/local/parquet-writer';
import { describeSchema, type LogicalType, type SchemaModel } from '../../lib/schema/model';
import { createRng, sampleRecord } from '../../lib/schema/sample';
import { compileValidator } from '../../lib/schema/validator';
import { schemas } from '../../transforms/shared/generated';
import { knownPipelines, pipelineSchema, type PipelineSchema } from '../../transforms/shared/pipeline';
import { transformRecord, type IngestMetadata } from '../../transforms/shared/record';

const NOW = new Date('2026-11-22T14:00:00.000Z');

/** Every column type, nested every way the derivation allows, nullable where it can be. */
const everyTypeSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  'x-sluice': { version: '2.0.0', idField: 'id', eventTimeField: 'at', partitionFields: ['kind'], pii: {} },
  required: ['id', 'at', 'kind'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', maxLength: 64 },
    at: { type: 'string', format: 'date-time' },
    kind: { type: 'string', enum: ['a', 'b'] },
    text: { type: ['string', 'null'] },
    on_day: { type: 'string', format: 'date' },
    seen: { type: ['string', 'null'], format: 'date-time' },
    flag: { type: ['boolean', 'null'] },
    ratio: { type: ['number', 'null'] },
    count: { type: 'integer' },
    small: { type: 'integer', minimum: -1000, maximum: 1000 },
    wide: { type: 'integer', minimum: -(2 ** 40), maximum: 2 ** 40 },
    nested: {
      type: ['object', 'null'],
      additionalProperties: false,
      properties: {
        label: { type: ['string', 'null'] },
        seen_at: { type: 'string', format: 'date-time' },
        core: { type: 'object', additionalProperties: false, properties: { x: { type: ['number', 'null'] }, d: { type: 'string', format: 'date' } } },
        props: { type: 'object', additionalProperties: { type: ['string', 'null'] } },
      },
    },
    tags: { type: 'array', items: { type: ['string', 'null'] } },
    grid: { type: 'array', items: { type: 'array', items: { type: 'number' } } },
    visits: {
      type: 'array',
      items: { type: 'object', additionalProperties: false, properties: { at: { type: 'string', format: 'date-time' }, n: { type: 'integer' } } },
    },
    notes: { type: 'object', additionalProperties: { type: ['string', 'null'] } },
    tallies: { type: 'object', additionalProperties: { type: 'integer' } },
    dates: { type: 'object', additionalProperties: { type: 'string', format: 'date' } },
    flags: { type: 'object', additionalProperties: { type: 'array', items: { type: 'boolean' } } },
    spots: {
      type: 'object',
      additionalProperties: { type: 'object', additionalProperties: false, properties: { name: { type: 'string' }, score: { type: 'number' } } },
    },
  },
};

interface Subject {
  readonly name: string;
  readonly schema: PipelineSchema;
  readonly json: object;
}

const subjects: readonly Subject[] = [
  ...knownPipelines().map((p) => ({ name: p, schema: pipelineSchema(p), json: schemas[p] as object })),
  {
    name: 'every-type',
    schema: { pipeline: 'every-type', model: describeSchema('every-type', everyTypeSchema), validate: compileValidator(everyTypeSchema) } as unknown as PipelineSchema,
    json: everyTypeSchema,
  },
];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Path = ReadonlyArray<string | number>;

const HARD_STRINGS = [
  '', ' ', '\u0000', 'nul\u0000inside', '😀', '\uD83D\uDE00 astral', '𝄞𐍈', 'quote " and \\ backslash', '\\u0000 as text',
  'line\nbreak', 'cr\r\nlf', '\t', '\u2028\u2029', '\u007f\u0080\u009f', '\u001f', '\ufeffbom', 'e\u0301 vs é', 'null', 'NULL',
  '{"nested": "json"}', '[1, 2]', '1e3', ' 42 ', 'true', '2026-01-01T00:00:00Z', "it's", 'ÿ', 'İ', 'ß',
];
const HARD_NUMBERS = [
  -0, 0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308, 2 ** 53 - 1, -(2 ** 53 - 1),
  2 ** 53, -(2 ** 53), 2 ** 31, -(2 ** 31) - 1, 0.1, 1e21, 1e-7, 123456789.12345679, 0.30000000000000004, 1, -1, 100, 150, -60,
];
const HARD_KEYS = ['__proto__', '', 'a.b', 'Key', 'key', 'KEY', 'constructor', 'toString', '1', '0', 'a b', 'k"q', 'k\\b', '😀', 'ß', 'é', 'nul\u0000'];
/** Date-times at the ends of what a timestamp column takes (the event time keeps to the lake's years), and where a zone changes the day or year. */
const HARD_TIMES = [
  '0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000000001Z', '9999-12-31T23:59:59.999999999Z', '9999-12-31T23:59:59+00:00', '1969-12-31T23:59:59.999Z',
  '1970-01-01T00:00:00.0001-00:01', '1899-12-31T23:30:00-01:00', '1582-10-10T12:00:00Z', '2016-12-31T23:59:60Z', '2000-01-01T00:00:00+23:59',
  '2100-12-31T23:59:59.9999Z', '2024-02-29T12:00:00.5+05:45',
];
const HARD_DATES = ['1582-10-10', '0999-01-01', '2024-02-29', '2000-01-01', '1970-01-01', '1969-12-31', '0001-01-01', '9999-12-31', '1900-03-01'];

const DATE_TIME = /^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d(:?\d\d)?)$/;
const DATE = /^\d{4}-\d\d-\d\d$/;

/** A date-time within the lake's years, written with any zone and 0–9 fraction digits. */
const hardTime = fc
  .record({
    ms: fc.integer({ min: Date.UTC(2000, 0, 2), max: Date.UTC(2099, 11, 30) }),
    fraction: fc.stringMatching(/^[0-9]{0,9}$/),
    separator: fc.constantFrom('T', 't', ' '),
    zone: fc.oneof(fc.constantFrom('Z', 'z', '+00:00', '-00:00'), fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 })),
    compact: fc.boolean(),
  })
  .map(({ ms, fraction, separator, zone, compact }) => {
    const iso = new Date(ms).toISOString();
    const base = `${iso.slice(0, 10)}${separator}${iso.slice(11, 19)}${fraction === '' ? '' : `.${fraction}`}`;
    if (typeof zone === 'string') return `${base}${zone}`;
    const abs = Math.abs(zone);
    const hh = String(Math.floor(abs / 60)).padStart(2, '0');
    const mm = String(abs % 60).padStart(2, '0');
    return `${base}${zone < 0 ? '-' : '+'}${hh}${compact ? '' : ':'}${mm}`;
  });

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('null' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('string' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(...HARD_STRINGS), fc.string({ unit: 'grapheme', maxLength: 12 })) }),
  fc.record({ kind: fc.constant('number' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(...HARD_NUMBERS), fc.double({ noNaN: true, noDefaultInfinity: true })) }),
  fc.record({ kind: fc.constant('time' as const), at: fc.nat(), value: fc.oneof(hardTime, fc.constantFrom(...HARD_TIMES)) }),
  fc.record({ kind: fc.constant('date' as const), at: fc.nat(), value: fc.constantFrom(...HARD_DATES) }),
  fc.record({ kind: fc.constant('key' as const), at: fc.nat(), key: fc.constantFrom(...HARD_KEYS) }),
  fc.record({ kind: fc.constant('empty' as const), at: fc.nat() }),
);

/** Every path to a value inside a record (not the record itself). */
function paths(value: Json, at: Path = []): Path[] {
  if (value === null || typeof value !== 'object') return at.length === 0 ? [] : [at];
  const children = Array.isArray(value) ? value.map((v, i) => paths(v, [...at, i])) : Object.keys(value).map((k) => paths(value[k], [...at, k]));
  return [...(at.length === 0 ? [] : [at]), ...children.flat()];
}

const valueAt = (root: Json, p: Path): Json => p.reduce<Json>((v, k) => (v as Record<string | number, Json>)[k], root);

function setAt(root: Json, p: Path, value: Json): void {
  const parent = valueAt(root, p.slice(0, -1)) as Record<string | number, Json>;
  // A key "__proto__" is data here, as JSON.parse makes it.
  Object.defineProperty(parent, p[p.length - 1], { value, enumerable: true, writable: true, configurable: true });
}

type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

/**
 * Puts the mutation's value at the first place, from `m.at` on, where the record stays valid: a hard value is
 * wasted on a field whose enum, pattern or bounds refuse it.
 */
function mutate(record: Json, m: Mutation, valid: (record: Json) => boolean): Json {
  const all = paths(record);
  const kinds: Record<Mutation['kind'], (v: Json) => boolean> = {
    null: () => true,
    string: (v) => typeof v === 'string' && !DATE_TIME.test(v) && !DATE.test(v),
    number: (v) => typeof v === 'number',
    time: (v) => typeof v === 'string' && DATE_TIME.test(v),
    date: (v) => typeof v === 'string' && DATE.test(v),
    key: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
    empty: (v) => v !== null && typeof v === 'object',
  };
  const candidates = all.filter((p) => kinds[m.kind](valueAt(record, p)));
  for (let i = 0; i < candidates.length; i++) {
    const at = candidates[(m.at + i) % candidates.length];
    const changed = structuredClone(record);
    switch (m.kind) {
      case 'null': setAt(changed, at, null); break;
      case 'string': case 'number': case 'time': case 'date': setAt(changed, at, m.value); break;
      case 'empty': setAt(changed, at, Array.isArray(valueAt(changed, at)) ? [] : {}); break;
      case 'key': {
        // A new key holding a copy of a value the object already has: a map takes it, a struct refuses it.
        const target = valueAt(changed, at) as Record<string, Json>;
        const first = Object.keys(target)[0];
        if (first === undefined) continue;
        setAt(changed, [...at, m.key], structuredClone(target[first]));
      }
    }
    if (valid(changed)) return changed;
  }
  return record;
}

/** JSON text with every non-ASCII character as a `\u` escape (astral ones as surrogate pairs), as some producers write it. */
const asciiJson = (value: Json): string => JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

// ---------------------------------------------------------------------------------------------
// Values as the lake should hold them, from the transform's JSON line and from DuckDB, in one form.

type Canonical = null | string | boolean | Canonical[] | { [key: string]: Canonical };

const utcMicros = (iso: string): string => {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`the transform wrote ${JSON.stringify(iso)}, which is no instant`);
  return `t:${BigInt(ms) * 1000n}`;
};

/** Bit-exact: the shortest text that reads back as the same double, and -0 as itself. */
const doubleText = (n: number): string => (Object.is(n, -0) ? 'd:-0' : `d:${String(n)}`);

/** What the line's value must read as in a column of type `t` (map keys lower-cased, as OpenX reads them). */
function expectedValue(t: LogicalType, v: unknown): Canonical {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'string': return `s:${v as string}`;
    case 'timestamp': return utcMicros(v as string);
    case 'date': return `D:${Date.parse(`${v as string}T00:00:00Z`) / 86_400_000}`;
    case 'int': case 'bigint': return `i:${BigInt(v as number)}`;
    case 'double': return doubleText(v as number);
    case 'boolean': return v as boolean;
    case 'struct': return Object.fromEntries(t.fields.map((f) => [f.name, expectedValue(f.type, (v as Record<string, unknown>)[f.name])]));
    case 'array': return (v as unknown[]).map((item) => expectedValue(t.items, item));
    case 'map': {
      const entries = Object.keys(v as object).map((k): Canonical => [`s:${k.toLowerCase()}`, expectedValue(t.values, (v as Record<string, unknown>)[k])]);
      return entries.sort(byJson);
    }
  }
}

const byJson = (a: Canonical, b: Canonical): number => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1);

/** What DuckDB read from the Parquet file, in the form `expectedValue` writes. */
function actualValue(t: LogicalType, v: DuckDBValue): Canonical {
  if (v === null) return null;
  switch (t.kind) {
    case 'string': return `s:${v as string}`;
    case 'timestamp': return `t:${(v as DuckDBTimestampValue).micros}`;
    case 'date': return `D:${(v as DuckDBDateValue).days}`;
    case 'int': case 'bigint': return `i:${BigInt(v as number | bigint)}`;
    case 'double': return doubleText(v as number);
    case 'boolean': return v as boolean;
    case 'struct': return Object.fromEntries(t.fields.map((f) => [f.name, actualValue(f.type, (v as DuckDBStructValue).entries[f.name])]));
    case 'array': return (v as DuckDBListValue).items.map((item) => actualValue(t.items, item));
    case 'map': return (v as DuckDBMapValue).entries.map((e): Canonical => [actualValue({ kind: 'string' }, e.key), actualValue(t.values, e.value)]).sort(byJson);
  }
}

/** Whether a map in the line holds two keys that are one once lower-cased: documented to fail conversion. */
function hasCaseCollision(t: LogicalType, v: unknown): boolean {
  if (v === null || v === undefined) return false;
  switch (t.kind) {
    case 'struct': return t.fields.some((f) => hasCaseCollision(f.type, (v as Record<string, unknown>)[f.name]));
    case 'array': return (v as unknown[]).some((item) => hasCaseCollision(t.items, item));
    case 'map': {
      const keys = Object.keys(v as object);
      return new Set(keys.map((k) => k.toLowerCase())).size < keys.length || keys.some((k) => hasCaseCollision(t.values, (v as Record<string, unknown>)[k]));
    }
    default: return false;
  }
}

const rowType = (model: SchemaModel): LogicalType => ({ kind: 'struct', fields: model.tableColumns, geoPoint: false });

// ---------------------------------------------------------------------------------------------

let dir: string;
let reader: DuckDBInstance;
let sql: DuckDBConnection;
const writers = new Map<string, ParquetWriter>();
let files = 0;
const delivered = new Map<string, number>();

beforeAll(async () => {
  dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sluice-roundtrip-'));
  reader = await DuckDBInstance.create(':memory:', { threads: '1' });
  sql = await reader.connect();
  for (const s of subjects) writers.set(s.name, await ParquetWriter.open(s.schema.model, { workDir: path.join(dir, 'work'), instance: reader }));
});

afterAll(async () => {
  for (const w of writers.values()) await w.close();
  sql.closeSync();
  reader.closeSync();
  await fs.promises.rm(dir, { recursive: true, force: true });
});

/** Transforms the records' texts, converts the Ok lines and checks every column of every row read back. */
async function roundTrip(subject: Subject, texts: readonly string[], ingest: IngestMetadata): Promise<void> {
  const lines: Buffer[] = [];
  for (const text of texts) {
    const outcome = transformRecord(subject.schema, Buffer.from(text, 'utf8'), ingest, { destination: 'lake', piiHashKey: 'k', processedAt: NOW });
    if (outcome.result === 'Ok') lines.push(outcome.data);
  }
  if (lines.length === 0) return;
  const model = subject.schema.model;
  const out = path.join(dir, `${files++}.parquet`);
  const conversion = await writers.get(subject.name)!.convert(lines, out);
  const sent = lines.map((l) => JSON.parse(l.toString('utf8')) as Record<string, unknown>);
  const refusable = sent.map((line) => hasCaseCollision(rowType(model), line));
  const failed = new Set(conversion.failures.map((f) => f.index));
  const unexplained = conversion.failures.filter((f) => !refusable[f.index]).map((f) => ({ line: lines[f.index].toString('utf8'), ...f }));
  expect(unexplained).toEqual([]);
  const kept = sent.filter((_, i) => !failed.has(i));
  delivered.set(subject.name, (delivered.get(subject.name) ?? 0) + kept.length);
  if (kept.length === 0) return;
  const result = await sql.runAndReadAll(`SELECT * FROM read_parquet('${out}')`);
  const rows = result.getRowObjects();
  expect(rows.length).toBe(kept.length);
  rows.forEach((row, i) => {
    const expected = expectedValue(rowType(model), kept[i]);
    const actual = actualValue(rowType(model), new DuckDBStructValue(row));
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      // toEqual shows the columns that differ; the line says what the transform wrote.
      expect({ line: JSON.stringify(kept[i]), row: actual }).toEqual({ line: JSON.stringify(kept[i]), row: expected });
    }
  });
  await fs.promises.rm(out, { force: true });
}

const ingests: fc.Arbitrary<IngestMetadata> = fc.oneof(
  fc.record({ arrivalMs: fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2090, 0, 1) }) }),
  fc.record({
    arrivalMs: fc.constant(NOW.getTime()),
    kinesis: fc.record({
      shardId: fc.constant('shardId-000000000003'),
      sequenceNumber: fc.stringMatching(/^[0-9]{20,56}$/),
      arrivalMs: fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2090, 0, 1) }),
    }),
  }),
);

describe.each(subjects.map((s) => [s.name, s] as const))('%s: what the transform writes is what the lake holds', (_name, subject) => {
  it('for generated records with hard values put in', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ seed: fc.integer(), edgy: fc.boolean(), mutations: fc.array(mutation, { maxLength: 6 }), escaped: fc.boolean() }), { minLength: 1, maxLength: 6 }),
        ingests,
        async (drafts, ingest) => {
          const texts = drafts.map(({ seed, edgy, mutations, escaped }) => {
            let record = sampleRecord(subject.json, createRng(seed), { edgy, now: NOW }) as Json;
            for (const m of mutations) record = mutate(record, m, (r) => subject.schema.validate(r) as boolean);
            return escaped ? asciiJson(record) : JSON.stringify(record);
          });
          await roundTrip(subject, texts, ingest);
        },
      ),
      { numRuns: 100 },
    );
    // Most records get through: the property checked rows, not just refusals.
    expect(delivered.get(subject.name) ?? 0).toBeGreaterThan(40);
  });
});
