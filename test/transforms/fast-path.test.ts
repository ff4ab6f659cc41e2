/**
 * The transform's fast paths against the general ones they stand in for: same bytes out, same
 * failures, for generated records of every pipeline (PII masks and money included) and of a schema
 * that uses every column type.
 */
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import type { TransformationEvent } from '../../transforms/shared/firehose-event';
import { describeSchema } from '../../lib/schema/model';
import { createRng, sampleRecord } from '../../lib/schema/sample';
import { compileValidator } from '../../lib/schema/validator';
import { createTransformHandler, DecodeBuffer } from '../../transforms/record-transform/handler';
import { schemas } from '../../transforms/shared/generated';
import { hmacSha256Hex } from '../../transforms/shared/hmac';
import { exactMinorUnits, minorUnitDigits, toMinorUnits } from '../../transforms/shared/money';
import { maskValue } from '../../transforms/shared/pii';
import { knownPipelines, pipelineSchema, type PipelineSchema } from '../../transforms/shared/pipeline';
import {
  LineBuffer,
  transformRecord,
  transformRecordGeneral,
  transformRecordInto,
  type IngestMetadata,
  type TransformSettings,
} from '../../transforms/shared/record';
import { parseDateTime, parseDateTimeByPattern } from '../../transforms/shared/timestamps';
import { quietTelemetry } from './helpers';

const NOW = new Date('2026-11-22T14:00:00.000Z');

/** Every column type, PII masks at depth, money with a default currency, renamed and upper-case keys. */
const wideSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  'x-sluice': {
    version: '3.1.4',
    idField: 'id',
    eventTimeField: 'at',
    partitionFields: ['kind', 'region'],
    pii: { 'contact.phone': 'last4', 'contact.email': 'hash', 'contact.name': 'redact', note: 'drop' },
    money: { amountField: 'price', currencyField: 'cur', minorUnitsField: 'price_minor', defaultCurrency: 'EUR' },
    // A key that is no identifier, with a quote, a backslash and a line separator: the compiled walk writes keys into code.
    columns: { Timestamp: 'seen_at', 'we"ird\\key\u2028 }': 'weird_key' },
  },
  required: ['id', 'at', 'kind', 'region'],
  additionalProperties: false,
  properties: {
    id: { type: 'string' },
    at: { type: 'string', format: 'date-time' },
    kind: { type: 'string', examples: ['Page View', 'click', 'ＦＵＬＬ', '../x'] },
    region: { type: 'string', enum: ['eu-west-1', 'US/East', 'ap..south'] },
    price: { type: 'number', minimum: 0, maximum: 100000 },
    cur: { type: 'string', enum: ['EUR', 'JPY', 'KWD', 'USD'] },
    note: { type: 'string' },
    Timestamp: { type: ['string', 'null'], format: 'date-time' },
    'we"ird\\key\u2028 }': { type: 'string' },
    on_day: { type: 'string', format: 'date' },
    flag: { type: 'boolean' },
    ratio: { type: ['number', 'null'] },
    count: { type: 'integer' },
    small: { type: 'integer', minimum: 0, maximum: 1000 },
    contact: {
      type: 'object',
      additionalProperties: false,
      properties: {
        name: { type: 'string' },
        email: { type: 'string' },
        phone: { type: ['string', 'null'] },
        since: { type: 'string', format: 'date-time' },
        deviceType: { type: 'string' },
        location: { type: 'object', required: ['lat', 'lon'], additionalProperties: false, properties: { lat: { type: 'number' }, lon: { type: 'number' } } },
      },
    },
    tags: { type: 'array', items: { type: 'string' } },
    scores: { type: 'array', items: { type: 'integer' } },
    visits: {
      type: 'array',
      items: { type: 'object', additionalProperties: false, properties: { at: { type: 'string', format: 'date-time' }, n: { type: 'integer' } } },
    },
    counters: { type: 'object', additionalProperties: { type: 'integer' } },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    grid: { type: 'array', items: { type: 'array', items: { type: 'number' } } },
  },
};
const wide: PipelineSchema = { pipeline: 'wide' as PipelineSchema['pipeline'], model: describeSchema('wide', wideSchema), validate: compileValidator(wideSchema) };

const subjects: ReadonlyArray<{ readonly schema: PipelineSchema; readonly json: object }> = [
  ...knownPipelines().map((p) => ({ schema: pipelineSchema(p), json: schemas[p] })),
  { schema: wide, json: wideSchema },
];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Every path to a value inside a record (not the record itself). */
function paths(value: Json, at: Array<string | number> = []): Array<Array<string | number>> {
  if (value === null || typeof value !== 'object') return at.length === 0 ? [] : [at];
  const children = Array.isArray(value) ? value.map((v, i) => paths(v, [...at, i])) : Object.entries(value).map(([k, v]) => paths(v, [...at, k]));
  return [...(at.length === 0 ? [] : [at]), ...children.flat()];
}

function setAt(root: Json, path: ReadonlyArray<string | number>, value: Json): void {
  let node = root as Record<string | number, Json>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, Json>;
  node[path[path.length - 1]] = value;
}

const DATE_TIME_LIKE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** The same instant written the ways producers write it. */
function rewriteTime(iso: string, form: number): string {
  switch (form) {
    case 0: return iso.replace('.000Z', 'Z').replace(/\.(\d)\d\dZ$/, '.$1Z');
    case 1: return iso.replace('Z', '+00:00');
    case 2: return iso.replace('T', 't').replace('Z', 'z');
    case 3: return iso.replace('Z', '123456Z');
    case 4: return iso.replace('T', ' ').replace('Z', '-05:30');
    case 5: return iso.replace(/:\d\d\.\d{3}Z$/, ':60.000Z'); // a leap second (valid only at 23:59 UTC)
    default: return iso.replace(/\.\d{3}Z$/, 'Z');
  }
}

const awkwardStrings = fc.constantFrom(
  '', 'plain', 'ünïcödé', '日本語', 'emoji 🚀', 'quote " and \\ backslash', 'bell\u0007', 'line\nbreak',
  'lone \ud800 high', 'lone \udc00 low', '__proto__', '4111111111111111', '1234', 'ab😀cde',
);

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('null' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('string' as const), at: fc.nat(), value: awkwardStrings }),
  fc.record({ kind: fc.constant('number' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(2 ** 60, -(2 ** 55), 2 ** 53 - 1, 19.999, 0.1, -0, 1e21), fc.double({ noNaN: true, noDefaultInfinity: true })) }),
  fc.record({ kind: fc.constant('time' as const), form: fc.nat({ max: 6 }) }),
  fc.record({ kind: fc.constant('keys' as const), at: fc.nat() }),
);

interface Case {
  readonly subject: (typeof subjects)[number];
  readonly bytes: Buffer;
  readonly ingest: IngestMetadata;
  readonly settings: TransformSettings;
}

/** Strings with the characters JSON escapes, or that need more than one byte, at good odds. */
const escapable = fc.string({ unit: fc.constantFrom('"', '\\', 'a', '1', '-', '\u0001', '\u007f', 'é', '\ud800', '😀', '\u2028'), maxLength: 30 });

const ingests = fc.record(
  {
    arrivalMs: fc.oneof(fc.integer({ min: 1_700_000_000_000, max: 1_900_000_000_000 }), fc.constantFrom(Number.NaN, 1e20, -1, 0)),
    kinesis: fc.record({
      shardId: fc.oneof(fc.constant('shardId-000000000000'), escapable, fc.string({ unit: 'binary', maxLength: 30 })),
      sequenceNumber: fc.oneof(fc.stringMatching(/^[0-9]{20,56}$/), escapable, fc.string({ unit: 'binary', maxLength: 80 })),
      arrivalMs: fc.oneof(fc.integer({ min: 1_700_000_000_000, max: 1_900_000_000_000 }), fc.constant(Number.NaN)),
    }),
  },
  { requiredKeys: ['arrivalMs'] },
);

const cases: fc.Arbitrary<Case> = fc
  .record({
    subject: fc.constantFrom(...subjects),
    seed: fc.integer(),
    edgy: fc.boolean(),
    mutations: fc.array(mutation, { maxLength: 4 }),
    framing: fc.constantFrom('', '', '', '\ufeff', ' \n'),
    ingest: ingests,
    destination: fc.constantFrom('lake' as const, 'search' as const),
    piiHashKey: fc.oneof(fc.constant('k'), fc.string({ unit: 'binary', maxLength: 100 })),
  })
  .map(({ subject, seed, edgy, mutations, framing, ingest, destination, piiHashKey }): Case => {
    const record = sampleRecord(subject.json, createRng(seed), { edgy, now: NOW }) as Json;
    for (const m of mutations) {
      const all = paths(record);
      const valueAt = (p: ReadonlyArray<string | number>): Json => p.reduce<Json>((v, k) => (v as Record<string | number, Json>)[k], record);
      // Numbers replace numbers and strings replace strings, so most mutations get past validation to the shaping.
      const candidates = m.kind === 'number' ? all.filter((p) => typeof valueAt(p) === 'number') : m.kind === 'string' ? all.filter((p) => typeof valueAt(p) === 'string') : all;
      const at = 'at' in m && candidates.length > 0 ? candidates[m.at % candidates.length] : undefined;
      if (m.kind === 'time') {
        for (const p of all) {
          const v = valueAt(p);
          if (typeof v === 'string' && DATE_TIME_LIKE.test(v)) setAt(record, p, rewriteTime(v, m.form));
        }
      } else if (at !== undefined) {
        if (m.kind === 'null') setAt(record, at, null);
        else if (m.kind === 'string') setAt(record, at, m.value);
        else if (m.kind === 'number') setAt(record, at, m.value);
        else setAt(record, at, { __proto__: 'a', constructor: 'b', toString: 'c', '1': 'd' } as unknown as Json);
      }
    }
    const text = framing === '\ufeff' ? `\ufeff${JSON.stringify(record)}` : `${framing}${JSON.stringify(record)}${framing}`;
    return { subject, bytes: Buffer.from(text, 'utf8'), ingest, settings: { destination, piiHashKey, processedAt: NOW } };
  });

/** Base64 as Firehose sends it, and as a broken producer might: whitespace, no padding, trailing junk, not base64 at all. */
const base64Framing = fc.constantFrom(
  (b: string) => b,
  (b: string) => b,
  (b: string) => `${b.slice(0, 8)}\n ${b.slice(8)}`,
  (b: string) => b.replace(/=+$/, ''),
  (b: string) => `${b}=A`,
  (b: string) => b.slice(0, -3),
  () => '!!!not base64***',
);

describe('the fast walk and serializer equal the general ones', () => {
  it('same outcome, byte for byte, for generated and mutated records of every pipeline', () => {
    let fastOk = 0;
    let failed = 0;
    fc.assert(
      fc.property(cases, ({ subject, bytes, ingest, settings }) => {
        const fast = transformRecord(subject.schema, bytes, ingest, settings);
        const general = transformRecordGeneral(subject.schema, bytes, ingest, settings);
        expect(fast).toEqual(general);
        if (fast.result !== 'Ok') failed++;
        else if (!bytes.includes('\\u')) fastOk++; // no \u escape: the fast walk made it
      }),
      { numRuns: 4000 },
    );
    // Both sides of the comparison were exercised, not just failures or the general walk.
    expect(fastOk).toBeGreaterThan(1000);
    expect(failed).toBeGreaterThan(200);
  });

  it('the handler answers each record as the general transform does, through one decode buffer and one line buffer', async () => {
    const handlers = new Map(knownPipelines().map((p) => [p, createTransformHandler({ pipeline: p, destination: 'lake', piiHashKey: 'k', now: () => NOW, ...quietTelemetry() })]));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...knownPipelines()), fc.array(fc.tuple(fc.integer(), fc.boolean(), ingests, base64Framing), { minLength: 1, maxLength: 40 }), async (pipeline, specs) => {
        const schema = pipelineSchema(pipeline);
        const records = specs.map(([seed, edgy, ingest, frame], i) => ({
          recordId: `r${i}`,
          approximateArrivalTimestamp: ingest.arrivalMs,
          data: frame(Buffer.from(JSON.stringify(sampleRecord(schemas[pipeline], createRng(seed), { edgy, now: NOW }))).toString('base64')),
          kinesisRecordMetadata: ingest.kinesis && {
            shardId: ingest.kinesis.shardId, partitionKey: 'k', approximateArrivalTimestamp: ingest.kinesis.arrivalMs,
            sequenceNumber: ingest.kinesis.sequenceNumber, subsequenceNumber: 0,
          },
        }));
        const event: TransformationEvent = { invocationId: 'i', deliveryStreamArn: 'arn:aws:firehose:us-east-1:1:deliverystream/x', region: 'us-east-1', records };
        const out = await handlers.get(pipeline)!(event);
        for (let i = 0; i < records.length; i++) {
          // Decoded as Buffer.from decodes it: the handler's reused decode buffer must give the same bytes.
          const expected = transformRecordGeneral(schema, Buffer.from(records[i].data, 'base64'), specs[i][2], { destination: 'lake', piiHashKey: 'k', processedAt: NOW });
          const got = out.records[i];
          if (expected.result === 'Ok') {
            expect(got.result).toBe('Ok');
            expect(Buffer.from(got.data!, 'base64')).toEqual(expected.data);
            expect(got.metadata).toEqual({ partitionKeys: expected.partitionKeys });
          } else {
            expect(got).toEqual({ recordId: `r${i}`, result: expected.result, data: records[i].data });
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it('the reused decode buffer gives the bytes Buffer.from gives, growing as records get longer', () => {
    const reused = new DecodeBuffer(4);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), base64Framing, fc.integer({ min: -4, max: 4 }), (bytes, frame, slack) => {
        const text = frame(Buffer.from(bytes).toString('base64'));
        const expected = Buffer.from(text, 'base64');
        expect(reused.decode(text)).toEqual(expected);
        // A buffer just too small, or just big enough, for this record.
        expect(new DecodeBuffer(Math.max(0, expected.length + slack)).decode(text)).toEqual(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('a line buffer that starts small grows to hold a batch and gives every line back intact', () => {
    const schema = pipelineSchema('clickstream');
    const lines = new LineBuffer(16);
    const settings: TransformSettings = { destination: 'lake', piiHashKey: 'k', processedAt: NOW };
    const inputs = Array.from({ length: 300 }, (_, i) => Buffer.from(JSON.stringify(sampleRecord(schemas.clickstream, createRng(i), { edgy: true, now: NOW }))));
    const outcomes = inputs.map((b) => transformRecordInto(lines, schema, b, { arrivalMs: NOW.getTime() }, settings));
    outcomes.forEach((o, i) => {
      const one = transformRecord(schema, inputs[i], { arrivalMs: NOW.getTime() }, settings);
      expect(o.result).toBe(one.result);
      if (o.result === 'Ok' && one.result === 'Ok') expect(Buffer.from(lines.base64(o.start, o.end), 'base64')).toEqual(one.data);
    });
  });
});

describe('date-times: reading the plain UTC form by position equals the pattern', () => {
  it('for the forms producers write and near misses', () => {
    const instant = fc.date({ min: new Date('0000-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }).map((d) => d.toISOString());
    const nearMiss = fc.tuple(instant, fc.nat(), fc.constantFrom('0', '9', '6', '3', 'T', 'Z', '.', ':', '-', ' ', 'z')).map(([s, at, c]) => {
      const i = at % s.length;
      return s.slice(0, i) + c + s.slice(i + 1);
    });
    const fraction = fc.tuple(instant, fc.stringMatching(/^[0-9]{0,14}$/)).map(([s, digits]) => s.replace(/\.\d{3}Z$/, digits === '' ? 'Z' : `.${digits}Z`));
    fc.assert(
      fc.property(fc.oneof(instant, nearMiss, fraction, fc.tuple(instant, fc.nat({ max: 6 })).map(([s, f]) => rewriteTime(s, f)), fc.string()), (s) => {
        expect(parseDateTime(s)).toEqual(parseDateTimeByPattern(s));
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('money: minor units without formatting the amount equal the exact decimal reading', () => {
  it('for amounts as producers send them and for any double', () => {
    const currency = fc.constantFrom('USD', 'JPY', 'KWD', 'CLF', 'EUR');
    const decimal = fc.tuple(fc.integer({ min: -1e12, max: 1e12 }), fc.nat({ max: 5 })).map(([n, places]) => n / 10 ** places);
    const large = fc.tuple(fc.integer({ min: 2 ** 37, max: 2 ** 40 }), fc.nat({ max: 4 })).map(([n, places]) => n / 10 ** places);
    fc.assert(
      fc.property(fc.oneof(decimal, large, fc.double({ noNaN: true, noDefaultInfinity: true })), currency, (amount, cur) => {
        expect(toMinorUnits(amount, cur)).toEqual(exactMinorUnits(String(amount), amount, cur, minorUnitDigits(cur)!));
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('PII masks: the hand-written forms equal the library ones', () => {
  it('HMAC-SHA-256 matches RFC 4231 test case 2 and node:crypto for any key and value', () => {
    expect(hmacSha256Hex('Jefe', 'what do ya want for nothing?')).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
    fc.assert(
      fc.property(
        fc.oneof(fc.constant('k'), fc.string({ unit: 'binary', maxLength: 150 })),
        fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 60 }), fc.nat({ max: 5000 }).map((n) => 'x'.repeat(n)), fc.constant('lone \ud800')),
        (key, value) => {
          expect(hmacSha256Hex(key, value)).toBe(createHmac('sha256', key).update(value, 'utf8').digest('hex'));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('last4 keeps the last four code points as Array.from counts them', () => {
    const reference = (v: string) => {
      const chars = Array.from(v);
      return chars.length > 4 ? chars.slice(-4).join('') : '[redacted]';
    };
    const surrogates = fc.array(fc.constantFrom('a', '1', '\ud83d', '\ude00', '😀', 'é'), { maxLength: 12 }).map((xs) => xs.join(''));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 20 }), surrogates), (v) => {
        expect(maskValue('last4', v, 'k')).toBe(reference(v));
      }),
      { numRuns: 5000 },
    );
  });
});

describe('where Node forbids compiling code (--disallow-code-generation-from-strings)', () => {
  it('the transform falls back to the general walk and writes the same bytes', () => {
    const inputs = knownPipelines().flatMap((pipeline) => {
      const rng = createRng(11);
      return Array.from({ length: 20 }, () => [pipeline, Buffer.from(JSON.stringify(sampleRecord(schemas[pipeline], rng, { now: NOW }))).toString('base64')] as const);
    });
    const settings: TransformSettings = { destination: 'lake', piiHashKey: 'k', processedAt: NOW };
    const ingest: IngestMetadata = { arrivalMs: NOW.getTime() };
    const lineOf = (pipeline: string, base64: string): string => {
      const o = transformRecord(pipelineSchema(pipeline), Buffer.from(base64, 'base64'), ingest, settings);
      return o.result === 'Ok' ? o.data.toString('utf8') : o.result;
    };
    const script = `require(${JSON.stringify(require.resolve('tsx/cjs'))});
      const { transformRecord } = require(${JSON.stringify(require.resolve('../../transforms/shared/record'))});
      const { pipelineSchema } = require(${JSON.stringify(require.resolve('../../transforms/shared/pipeline'))});
      const settings = { destination: 'lake', piiHashKey: 'k', processedAt: new Date(${NOW.getTime()}) };
      const lines = JSON.parse(process.argv[1]).map(([p, b]) => {
        const o = transformRecord(pipelineSchema(p), Buffer.from(b, 'base64'), { arrivalMs: ${NOW.getTime()} }, settings);
        return o.result === 'Ok' ? o.data.toString('utf8') : o.result;
      });
      process.stdout.write(JSON.stringify(lines));`;
    const out = execFileSync(process.execPath, ['--disallow-code-generation-from-strings', '-e', script, JSON.stringify(inputs)], { encoding: 'utf8' });
    const expected = inputs.map(([p, b]) => lineOf(p, b));
    expect(expected.filter((l) => l.startsWith('{')).length).toBeGreaterThan(60);
    expect(JSON.parse(out)).toEqual(expected);
  });
});
