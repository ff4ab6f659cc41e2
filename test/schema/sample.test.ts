/**
 * The sample generator against the validator, keyword by keyword: for every keyword and string format
 * schemas/README.md supports, each record drawn from a schema that uses it passes the schema's own
 * compiled validator (what `sluice put` and the demo send must be records the pipeline accepts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { fullFormats } from 'ajv-formats/dist/formats';
import { describeSchema } from '../../lib/schema/model';
import { BAD_RECORD_KINDS, badRecordBytes, createRng, sampleRecord, sampleRecords } from '../../lib/schema/sample';
import { compileValidator, describeIssues, issuesFrom } from '../../lib/schema/validator';

type Json = Record<string, unknown>;

/** A record schema around one field, `value`, required or optional. */
function recordWith(value: Json, required = true): Json {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    type: 'object',
    additionalProperties: false,
    'x-sluice': { version: '1.0.0', idField: 'id', eventTimeField: 'ts', partitionFields: [] },
    required: ['id', 'ts', ...(required ? ['value'] : [])],
    properties: { id: { type: 'string', format: 'uuid' }, ts: { type: 'string', format: 'date-time' }, value },
  };
}

/** Every record drawn (plain and edgy) passes the validator; the schema itself passes describeSchema. */
function expectValidDraws(field: Json, runs = 200): void {
  const schema = recordWith(field);
  describeSchema('sample', schema);
  const validate = compileValidator(schema);
  fc.assert(fc.property(fc.integer(), fc.boolean(), (seed, edgy) => {
    const record = sampleRecord(schema, createRng(seed), { edgy });
    const drawn = JSON.stringify(record.value);
    if (!validate(record)) throw new Error(`${drawn}: ${describeIssues(issuesFrom(validate.errors))}`);
  }), { numRuns: runs });
}

const STRING_FORMATS = Object.keys(fullFormats).filter((f) => !['int32', 'int64', 'float', 'double'].includes(f));

describe('generated records pass the validator', () => {
  test.each(STRING_FORMATS)('string format %s', (format) => expectValidDraws({ type: 'string', format }));
  test.each(['int32', 'int64', 'float', 'double'])('number format %s', (format) => expectValidDraws({ type: 'number', format }));
  test('string format with minLength and maxLength', () => expectValidDraws({ type: 'string', format: 'ipv6', minLength: 10, maxLength: 39 }));
  test('a format with examples draws the examples', () => expectValidDraws({ type: 'string', format: 'ipv6', examples: ['::1', 'fe80::1'] }));

  const bound = fc.option(fc.integer({ min: -1000, max: 1000 }), { nil: undefined });
  test('integers: any consistent minimum / maximum / exclusive bounds / multipleOf', () => {
    fc.assert(fc.property(bound, bound, bound, bound, fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined }),
      (minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf) => {
        const field = Object.fromEntries(Object.entries({ type: 'integer', minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf }).filter(([, v]) => v !== undefined));
        try {
          describeSchema('sample', recordWith(field));
        } catch {
          return; // no value can pass: refused at load, tested below
        }
        expectValidDraws(field, 20);
      }), { numRuns: 150 });
  });

  test('numbers: any consistent bounds, fractional multipleOf included', () => {
    const fractional = fc.option(fc.constantFrom(0.01, 0.1, 0.25, 0.5, 2.5, 3), { nil: undefined });
    const numBound = fc.option(fc.double({ min: -500, max: 500, noNaN: true }), { nil: undefined });
    fc.assert(fc.property(numBound, numBound, numBound, numBound, fractional, (minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf) => {
      const field = Object.fromEntries(Object.entries({ type: 'number', minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf }).filter(([, v]) => v !== undefined));
      try {
        describeSchema('sample', recordWith(field));
      } catch {
        return;
      }
      expectValidDraws(field, 20);
    }), { numRuns: 150 });
  });

  test('integers with a fractional multipleOf, and one bound only', () => {
    expectValidDraws({ type: 'integer', multipleOf: 0.5, minimum: 1, maximum: 9 });
    expectValidDraws({ type: 'integer', maximum: -5 });
    expectValidDraws({ type: 'integer', exclusiveMaximum: 0 });
    expectValidDraws({ type: 'number', exclusiveMaximum: 0 });
    expectValidDraws({ type: 'number', minimum: 0.001, maximum: 0.002 });
    // fast-check found it: no multiple of 3 lies in the range, but ajv takes the subnormal bound for one (-5e-324 / 3 is -0).
    expectValidDraws({ type: 'number', minimum: -5e-324, maximum: -5e-324, multipleOf: 3 });
    // Bounds a double apart: with one open, only the closed one passes; with both open, nothing does, and the schema is refused.
    expectValidDraws({ type: 'number', exclusiveMinimum: -1e-323, maximum: -5e-324 });
    expectValidDraws({ type: 'number', minimum: 1, exclusiveMaximum: 1 + Number.EPSILON });
    expect(() => describeSchema('sample', recordWith({ type: 'integer', minimum: -5e-324, maximum: -5e-324, multipleOf: 3 }))).toThrow(/no integer lies within minimum -5e-324 and maximum -5e-324/);
    expect(() => describeSchema('sample', recordWith({ type: 'number', exclusiveMinimum: -1e-323, exclusiveMaximum: -5e-324 })))
      .toThrow(/no number lies within exclusiveMinimum -1e-323 and exclusiveMaximum -5e-324 \(the bounds are adjacent doubles\)/);
  });

  test('strings: minLength / maxLength, pattern with examples, enum, const', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 80 }), fc.integer({ min: 0, max: 80 }), (a, b) => {
      expectValidDraws({ type: 'string', minLength: Math.min(a, b), maxLength: Math.max(a, b) }, 20);
    }), { numRuns: 40 });
    expectValidDraws({ type: 'string', pattern: '^[A-Z]{2}$', examples: ['DE', 'FR'] });
    expectValidDraws({ type: 'string', enum: ['a', 'b'] });
    expectValidDraws({ const: 'only' });
    expectValidDraws({ type: 'integer', enum: [1, 2, 3] });
  });

  test('arrays: minItems / maxItems / uniqueItems', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 8 }), fc.boolean(), (a, b, uniqueItems) => {
      expectValidDraws({ type: 'array', minItems: Math.min(a, b), maxItems: Math.max(a, b), uniqueItems, items: { type: 'integer', minimum: 0, maximum: 99 } }, 20);
    }), { numRuns: 40 });
    expectValidDraws({ type: 'array', minItems: 2, uniqueItems: true, items: { type: 'boolean' } });
    expectValidDraws({ type: 'array', minItems: 5, items: { type: 'string', format: 'ipv6' } });
  });

  test('objects: nested structs, optional fields, min/maxProperties, maps, nullable', () => {
    const struct = {
      type: 'object', additionalProperties: false, required: ['a'], minProperties: 2, maxProperties: 3,
      properties: { a: { type: 'string' }, b: { type: 'integer', multipleOf: 7 }, c: { type: ['string', 'null'], format: 'ipv6' }, d: { type: 'boolean' } },
    };
    expectValidDraws(struct);
    expectValidDraws({ type: 'object', additionalProperties: false, properties: { deep: { type: 'object', additionalProperties: false, required: ['x'], properties: { x: { type: 'array', minItems: 1, items: { type: 'number', multipleOf: 0.01 } } } } } });
    expectValidDraws({ type: 'object', minProperties: 5, maxProperties: 20, additionalProperties: { type: 'integer', minimum: 1 } });
    expectValidDraws({ type: ['integer', 'null'], minimum: 3, maximum: 4 });
    expectValidDraws({ type: ['object', 'null'], additionalProperties: false, required: ['x'], properties: { x: { type: ['number', 'null'] } } });
    expectValidDraws({ type: ['array', 'null'], minItems: 2, uniqueItems: true, items: { type: ['boolean', 'null'] } });
    expectValidDraws({ type: ['object', 'null'], minProperties: 1, additionalProperties: { type: ['string', 'null'], format: 'date-time' } });
    // The enum still rules: null passes the type but not an enum that does not list it.
    expectValidDraws({ type: ['string', 'null'], enum: ['a', 'b'] });
  });
});

test('optional fields are drawn in a share of records, the same share for a seed', () => {
  const schema = recordWith({ type: 'string', format: 'ipv6' }, false);
  const draws = sampleRecords(schema, 1000, 9);
  const present = draws.filter((r) => 'value' in r).length;
  expect(present).toBeGreaterThan(550);
  expect(present).toBeLessThan(850);
  expect(sampleRecords(schema, 1000, 9).filter((r) => 'value' in r).length).toBe(present);
});

test('a field that admits null is null in a share of records, the same share for a seed', () => {
  const schema = recordWith({ type: 'array', items: { type: ['integer', 'null'], minimum: 0, maximum: 9 }, minItems: 1 });
  const nullsIn = (records: Array<Record<string, unknown>>) => records.flatMap((r) => r.value as unknown[]).filter((v) => v === null).length;
  const items = sampleRecords(schema, 1000, 9).flatMap((r) => r.value as unknown[]).length;
  const nulls = nullsIn(sampleRecords(schema, 1000, 9));
  expect(nulls / items).toBeGreaterThan(0.05);
  expect(nulls / items).toBeLessThan(0.15);
  expect(nullsIn(sampleRecords(schema, 1000, 9))).toBe(nulls);
  expect(nullsIn(sampleRecords(schema, 1000, 9, { nullRate: 0 }))).toBe(0);
  expect(nullsIn(sampleRecords(schema, 1000, 9, { edgy: true }))).toBeGreaterThan(nulls);
});

test('a nullable enum that lists null is null in a share of records, a listed value otherwise, and the validator agrees', () => {
  const tier = { type: ['string', 'null'], enum: ['bronze', 'silver', 'gold', null] };
  expectValidDraws(tier);
  const schema = recordWith(tier);
  const values = sampleRecords(schema, 1000, 9).map((r) => r.value);
  const nulls = values.filter((v) => v === null).length;
  expect(nulls / values.length).toBeGreaterThan(0.05);
  expect(nulls / values.length).toBeLessThan(0.15);
  expect(new Set(values)).toEqual(new Set(['bronze', 'silver', 'gold', null]));
  expect(sampleRecords(schema, 1000, 9, { nullRate: 0 }).filter((r) => r.value === null)).toEqual([]);
  const validate = compileValidator(schema);
  const record = sampleRecord(schema, createRng(1));
  expect([null, 'gold', 'platinum'].map((value) => validate({ ...record, value }))).toEqual([true, true, false]);
});

test('a record without a currency gets a whole amount when the default currency has no minor unit (JPY), as the transform requires', () => {
  const schema = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../schemas/app-events.schema.json'), 'utf8')) as { 'x-sluice': { money: object }; properties: Record<string, object> };
  schema['x-sluice'].money = { ...schema['x-sluice'].money, defaultCurrency: 'JPY' };
  schema.properties.currency = { type: 'string', enum: ['USD'] };
  const records = sampleRecords(schema, 400, 11);
  const withoutCurrency = records.filter((r) => typeof r.amount === 'number' && r.currency === undefined);
  expect(withoutCurrency.length).toBeGreaterThan(20);
  for (const r of withoutCurrency) expect(Number.isInteger(r.amount)).toBe(true);
  // With the currency given (USD), cents stay.
  expect(records.some((r) => r.currency === 'USD' && !Number.isInteger(r.amount))).toBe(true);
});

test('every kind of bad record fails the validator, whether or not the schema has a partition field with an enum, or any enum', () => {
  const withPartition = (partition: Json | undefined): Json => {
    const schema = recordWith({ type: 'number' });
    if (partition) {
      (schema.properties as Json).region = partition;
      (schema.required as string[]).push('region');
      (schema['x-sluice'] as Json).partitionFields = ['region'];
    }
    return schema;
  };
  const schemas = {
    'an enum partition field': withPartition({ type: 'string', enum: ['eu', 'us'] }),
    'a free-form partition field (no enum)': withPartition({ type: 'string', minLength: 2, maxLength: 24 }),
    'no partition field': withPartition(undefined),
  };
  for (const [name, schema] of Object.entries(schemas)) {
    describeSchema('sample', schema);
    const validate = compileValidator(schema);
    for (const kind of BAD_RECORD_KINDS) {
      for (let seed = 0; seed < 20; seed++) {
        const bytes = badRecordBytes(schema, kind, createRng(seed));
        let record: unknown;
        try {
          record = JSON.parse(bytes.toString('utf8'));
        } catch {
          continue; // malformed-json: fails before validation
        }
        if (validate(record)) throw new Error(`${name}: a ${kind} record passes the validator: ${bytes.toString('utf8')}`);
      }
    }
  }
});
