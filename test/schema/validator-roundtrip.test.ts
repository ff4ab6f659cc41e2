import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { duckDbType, listSchemas, loadModel, quoteIdent, readSchema } from '../../lib/schema';
import { renameToColumns, type Column, type LogicalType } from '../../lib/schema/model';
import { BAD_RECORD_KINDS, badRecordBytes, createRng, SampleError, sampleRecord } from '../../lib/schema/sample';
import { describeIssues, issuesFrom } from '../../lib/schema/validator';
import { staleGeneratedFiles } from '../../lib/schema/codegen';
import { validators } from '../../transforms/shared/generated';

const PIPELINES = listSchemas() as Array<keyof typeof validators>;

test('the committed precompiled validators and types match the schemas (run `npm run generate` after editing a schema)', () => {
  expect(staleGeneratedFiles()).toEqual([]);
});

test('precompiled validators contain no schema compiler (nothing compiles at cold start)', () => {
  for (const p of PIPELINES) {
    const code = fs.readFileSync(path.join(__dirname, '../../transforms/shared/generated', `${p}.validate.js`), 'utf8');
    expect(code).not.toMatch(/require\("ajv"\)|new Ajv|\.compile\(/);
  }
});

test('the precompiled validators load in plain Node, without a TypeScript loader', () => {
  // A bare `node` (no tsx, no jest transform) requires the generated index and validates one good and one bad record per pipeline.
  const script = `const g = require(${JSON.stringify(path.join(__dirname, '../../transforms/shared/generated'))});
    const out = {};
    for (const [p, v] of Object.entries(g.validators)) out[p] = [v(JSON.parse(process.argv[1])[p]), v({})];
    process.stdout.write(JSON.stringify(out));`;
  const good = Object.fromEntries(PIPELINES.map((p) => [p, sampleRecord(readSchema(p), createRng(1))]));
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script, JSON.stringify(good)], { encoding: 'utf8' })) as Record<string, [boolean, boolean]>;
  expect(out).toEqual(Object.fromEntries(PIPELINES.map((p) => [p, [true, false]])));
});

describe.each(PIPELINES)('%s', (pipeline) => {
  const schema = readSchema(pipeline);
  const validate = validators[pipeline];

  test('generated records pass the validator', () => {
    fc.assert(fc.property(fc.integer(), fc.boolean(), (seed, edgy) => {
      const record = sampleRecord(schema, createRng(seed), { edgy });
      const ok = validate(record);
      if (!ok) throw new Error(describeIssues(issuesFrom(validate.errors)));
    }), { numRuns: 300 });
  });

  test.each(BAD_RECORD_KINDS.filter((k) => k !== 'malformed-json'))('a record with %s fails with a message naming the field', (kind) => {
    const record = JSON.parse(badRecordBytes(schema, kind, createRng(7)).toString()) as Record<string, unknown>;
    expect(validate(record)).toBe(false);
    const issues = issuesFrom(validate.errors);
    expect(issues.length).toBeGreaterThan(0);
    // A JSON pointer to a field of the schema or of the record (keys may be any JSON key: `Hour` mapped by x-sluice.columns).
    const named = new Set([...Object.keys((schema as { properties: object }).properties), ...Object.keys(record)]);
    for (const i of issues) expect(named.has(decodeURIComponent(i.field.split('/')[1] ?? '').replace(/~1/g, '/').replace(/~0/g, '~'))).toBe(true);
  });

  test('changing one required field to the wrong type names exactly that field', () => {
    const { required, properties } = schema as { required: string[]; properties: Record<string, { type?: string | string[] }> };
    // [true] is of the wrong type for any field but an array, where the error would name an item (/items/0), or
    // none at all (an array of booleans); an array field gets true instead.
    const wrongTypeFor = (field: string): unknown => ([properties[field].type].flat().includes('array') ? true : [true]);
    fc.assert(fc.property(fc.integer(), fc.constantFrom(...required), (seed, field) => {
      const record = sampleRecord(schema, createRng(seed));
      record[field] = wrongTypeFor(field);
      expect(validate(record)).toBe(false);
      expect(issuesFrom(validate.errors).map((i) => i.field)).toContain(`/${field}`);
    }), { numRuns: 50 });
  });
});

describe('records written to Parquet by DuckDB with the derived types read back equal', () => {
  let dir: string;
  let connection: DuckDBConnection;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-roundtrip-'));
    connection = await (await DuckDBInstance.create(':memory:')).connect();
  });
  afterAll(() => {
    connection.closeSync();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test.each(PIPELINES)('%s', async (pipeline) => {
    const model = loadModel(pipeline);
    const schema = readSchema(pipeline);
    const columns = model.inputColumns;
    const rng = createRng(42);
    const records = Array.from({ length: 200 }, () => renameToColumns(columns, sampleRecord(schema, rng, { edgy: true })));
    const input = path.join(dir, `${pipeline}.ndjson`);
    const output = path.join(dir, `${pipeline}.parquet`);
    const back = path.join(dir, `${pipeline}.back.ndjson`);
    fs.writeFileSync(input, records.map((r) => JSON.stringify(r)).join('\n'));
    const spec = `{${columns.map((c) => `${sqlString(c.name)}: ${sqlString(duckDbType(c.type))}`).join(', ')}}`;
    await connection.run(`COPY (SELECT * FROM read_json(${sqlString(input)}, columns=${spec}, format='newline_delimited')) TO ${sqlString(output)} (FORMAT parquet, COMPRESSION snappy)`);

    const described = (await connection.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${sqlString(output)})`)).getRowObjectsJson();
    // DuckDB quotes struct field names only where needed; compare the types without quotes.
    const unquoted = (t: unknown) => String(t).replace(/"/g, '');
    expect(described.map((d) => [d.column_name, unquoted(d.column_type)])).toEqual(columns.map((c) => [c.name, unquoted(duckDbType(c.type))]));

    await connection.run(`COPY (SELECT ${columns.map((c) => quoteIdent(c.name)).join(', ')} FROM read_parquet(${sqlString(output)})) TO ${sqlString(back)} (FORMAT json)`);
    const rows = fs.readFileSync(back, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toHaveLength(records.length);
    rows.forEach((row, i) => expectSameRecord(columns, records[i], row));
  });
});

function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** Compares a written record with the row read back, per the column's logical type. */
function expectSameRecord(columns: readonly Column[], expected: Record<string, unknown>, actual: Record<string, unknown>): void {
  for (const c of columns) expectSameValue(c.type, expected[c.name], actual[c.name], c.name);
}

function expectSameValue(t: LogicalType, expected: unknown, actual: unknown, where: string): void {
  if (expected === undefined || expected === null) {
    expect({ where, actual: actual ?? null }).toEqual({ where, actual: null });
    return;
  }
  switch (t.kind) {
    case 'timestamp':
      expect({ where, t: Date.parse(`${String(actual).replace(' ', 'T')}Z`) }).toEqual({ where, t: Date.parse(String(expected)) });
      return;
    case 'struct':
      for (const f of t.fields) expectSameValue(f.type, (expected as Record<string, unknown>)[f.name], (actual as Record<string, unknown>)[f.name], `${where}.${f.name}`);
      return;
    case 'array':
      expect((actual as unknown[]).length).toBe((expected as unknown[]).length);
      (expected as unknown[]).forEach((e, i) => expectSameValue(t.items, e, (actual as unknown[])[i], `${where}[${i}]`));
      return;
    case 'map': {
      const values = actual as Record<string, unknown>;
      expect(Object.keys(values).sort()).toEqual(Object.keys(expected as object).sort());
      for (const [k, e] of Object.entries(expected as Record<string, unknown>)) expectSameValue(t.values, e, values[k], `${where}[${JSON.stringify(k)}]`);
      return;
    }
    default:
      expect({ where, v: actual }).toEqual({ where, v: expected });
  }
}

test('a schema the sampler cannot draw from: the error names the field, as a JSON pointer', () => {
  const schema = {
    type: 'object', additionalProperties: false, required: ['shipping'],
    properties: { shipping: { type: 'object', additionalProperties: false, required: ['country'], properties: { country: { type: 'string', pattern: '^[A-Z]{2}$' } } } },
  };
  expect(() => sampleRecord(schema, createRng(1))).toThrow(new SampleError('/shipping/country', 'a string with "pattern" needs "examples" to be sampled (pattern ^[A-Z]{2}$)'));
  const withExamples = { ...schema, properties: { shipping: { ...schema.properties.shipping, properties: { country: { type: 'string', pattern: '^[A-Z]{2}$', examples: ['DE'] } } } } };
  expect(sampleRecord(withExamples, createRng(1))).toEqual({ shipping: { country: 'DE' } });
});
