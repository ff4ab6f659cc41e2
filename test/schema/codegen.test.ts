import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { transformSync } from 'esbuild';
import { generatedFiles } from '../../lib/schema/codegen';
import { generatedCodeProblem } from '../../lib/schema/fingerprint';
import { glueColumns, listSchemas, readSchema, typeScriptTypes } from '../../lib/schema';
import { describeSchema, SchemaDerivationError, SchemaFileNameError } from '../../lib/schema/model';

/** A schema folder holding the iot schema under each of `pipelines`, edited by `edit`. */
const schemaDirs: string[] = [];
afterAll(() => {
  for (const dir of schemaDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function schemaDir(pipelines: readonly string[], edit: (schema: Record<string, unknown>) => void = () => undefined): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-codegen-'));
  schemaDirs.push(dir);
  for (const p of pipelines) {
    const schema = JSON.parse(JSON.stringify(readSchema('iot'))) as Record<string, unknown>;
    edit(schema);
    fs.writeFileSync(path.join(dir, `${p}.schema.json`), JSON.stringify(schema));
  }
  return dir;
}

/** What generating the code of a schema folder throws, or undefined. */
function generationError(dir: string): unknown {
  try {
    generatedFiles(dir);
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('generated TypeScript record types', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  test.each([
    [['foo-1', 'foo1'], /^schemas\/foo1\.schema\.json at \/: pipelines "foo-1" and "foo1" both generate the TypeScript type Foo1Record/],
    [['foo', 'foo-enriched'], /^schemas\/foo-enriched\.schema\.json at \/: pipelines "foo" and "foo-enriched" both generate the TypeScript type FooEnrichedRecord/],
  ])('pipelines %j whose type names collide are refused', (pipelines, message) => {
    const dir = schemaDir(pipelines);
    dirs.push(dir);
    const error = generationError(dir);
    expect(error).toBeInstanceOf(SchemaDerivationError);
    expect((error as Error).message).toMatch(message);
  });

  test('pipelines with distinct type names generate records.ts that compiles', () => {
    const dir = schemaDir(['foo-1', 'foo-2']);
    dirs.push(dir);
    const records = [...generatedFiles(dir)].find(([f]) => f.endsWith('records.ts'))![1];
    expect(records).toContain('export interface Foo1Record {');
    expect(records).toContain('export interface Foo2EnrichedRecord {');
    expect(() => transformSync(records, { loader: 'ts' })).not.toThrow();
  });

  test('a title containing "*/" stays inside the doc comment', () => {
    const schema = JSON.parse(JSON.stringify(readSchema('iot'))) as Record<string, unknown>;
    schema.title = 'Readings */ export const broken = 1; /*';
    const types = typeScriptTypes(describeSchema('iot', schema));
    expect(types).toContain('/** Readings *\\/ export const broken = 1; /*: the record producers send');
    expect(transformSync(types, { loader: 'ts' }).code).not.toContain('broken');
  });
});

describe('what the validator compiler refuses names the schema file', () => {
  test.each([
    ['an empty enum', (s: Record<string, unknown>) => { (s.properties as Record<string, Record<string, unknown>>).device_model.enum = []; }, /enum must have non-empty array/],
  ])('%s', (_name, edit, detail) => {
    const dir = schemaDir(['orders'], edit);
    try {
      const error = generationError(dir);
      expect(error).toBeInstanceOf(SchemaDerivationError);
      expect((error as Error).message).toMatch(/^schemas\/orders\.schema\.json at \/: /);
      expect((error as Error).message).toMatch(detail);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('an unknown format, or a keyword spelled otherwise, is refused where the schema is read (every command), at its path, with what was likely meant', () => {
  const refusal = (edit: (field: Record<string, unknown>) => void): string => {
    const dir = schemaDir(['orders'], (s) => edit((s.properties as Record<string, Record<string, unknown>>).device_model));
    try {
      return (generationError(dir) as Error).message;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  expect(refusal((f) => { f.format = 'foo'; })).toMatch(/^schemas\/orders\.schema\.json at \/properties\/device_model\/format: unknown format "foo" \(the validators know date, time, date-time, .*uuid/);
  expect(refusal((f) => { f.format = 'e-mail'; })).toMatch(/at \/properties\/device_model\/format: unknown format "e-mail"; did you mean "email"\?/);
  expect(refusal((f) => { f.maxlength = 5; })).toMatch(/at \/properties\/device_model: keyword "maxlength" is not one JSON Schema knows; did you mean "maxLength"\?/);
  expect(() => describeSchema('iot', { ...readSchema('iot'), properties: { ...(readSchema('iot') as { properties: object }).properties, device_model: { type: 'string', format: 'e-mail' } } }))
    .toThrow(/at \/properties\/device_model\/format: unknown format "e-mail"; did you mean "email"\?/);
});

describe('generated code against the schema files now', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-codegen-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (pipeline: string, schema: object, indent?: number) => fs.writeFileSync(path.join(dir, `${pipeline}.schema.json`), JSON.stringify(schema, null, indent).replace(/\n/g, '\r\n'));

  test('the repository\'s schemas match their generated code; the same schema laid out otherwise (CRLF, indents) still does', () => {
    for (const p of listSchemas()) expect(generatedCodeProblem(p, readSchema(p))).toBeUndefined();
    write('iot', readSchema('iot'), 4);
    expect(generatedCodeProblem('iot', readSchema('iot', dir))).toBeUndefined();
  });

  test('a schema edited since, or with no generated code, says to run npm run generate', () => {
    const schema = JSON.parse(JSON.stringify(readSchema('iot'))) as { properties: Record<string, unknown> };
    schema.properties.firmware_channel = { type: 'string' };
    write('iot', schema);
    expect(generatedCodeProblem('iot', readSchema('iot', dir))).toBe('schemas/iot.schema.json changed since the code was generated: run npm run generate');
    // A name no user's pipeline has (schemas/README.md's own example is "orders"), so it has no generated code.
    const ungenerated = 'never-generated-zz9';
    expect(listSchemas()).not.toContain(ungenerated);
    write(ungenerated, readSchema('iot'));
    expect(generatedCodeProblem(ungenerated, readSchema(ungenerated, dir))).toBe(`schemas/${ungenerated}.schema.json has no generated code yet: run npm run generate`);
  });
});

describe('schema file names', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  test.each([
    ['order_items', ': rename it order-items.schema.json'],
    ['Orders', ': rename it orders.schema.json'],
    ['2fa-events', ': rename it fa-events.schema.json'],
    ['__', ''],
  ])('%s.schema.json is refused as a schema to fix (npm run generate and cdk synth print it alone), naming the file and a name it could have', (pipeline, rename) => {
    const dir = schemaDir(['iot', pipeline]);
    dirs.push(dir);
    const error = generationError(dir);
    expect(error).toBeInstanceOf(SchemaFileNameError);
    expect(error).toBeInstanceOf(SchemaDerivationError);
    expect((error as Error).message).toBe(`schemas/${pipeline}.schema.json: "${pipeline}" is not a pipeline name (lower-case letters, digits and "-", starting with a letter, at most 31 characters)${rename}`);
  });
});

describe('reading a schema file', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-read-schema-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a byte order mark (a Windows editor\'s) is skipped, as require() skips it for the generated code', () => {
    fs.writeFileSync(path.join(dir, 'orders.schema.json'), `\uFEFF${fs.readFileSync(path.join(__dirname, '../../schemas/iot.schema.json'), 'utf8')}`);
    expect(readSchema('orders', dir)).toEqual(readSchema('iot'));
  });

  test('a file that is not JSON is said in one line, the parser\'s quote of it included', () => {
    fs.writeFileSync(path.join(dir, 'orders.schema.json'), '// orders\n{\n  "type": "object"\n}\n');
    let error: unknown;
    try {
      readSchema('orders', dir);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SchemaDerivationError);
    expect((error as Error).message).toMatch(/^schemas\/orders\.schema\.json at \/: is not valid JSON \(.*\): fix it, then run `npm run generate`$/);
    expect((error as Error).message).not.toMatch(/\n/);
  });
});

describe('Glue column comments', () => {
  test('a multi-line description becomes one line of at most 255 characters (Glue\'s Column.Comment takes no line breaks)', () => {
    const schema = structuredClone(readSchema('iot')) as { properties: Record<string, Record<string, unknown>> };
    schema.properties.temperature_c.description = `Temperature\r\nin °C.\n${'x'.repeat(300)}`;
    schema.properties.humidity_pct.description = `${'a'.repeat(254)}😀`;
    const comments = new Map(glueColumns(describeSchema('iot', schema)).columns.map((c) => [c.name, c.comment]));
    expect(comments.get('temperature_c')).toMatch(/^Temperature in °C\. x+$/);
    expect(comments.get('temperature_c')).toHaveLength(255);
    // Cut where a character outside the BMP would be halved: the half is dropped, not left as a lone surrogate.
    expect(comments.get('humidity_pct')).toBe('a'.repeat(254));
  });
});
