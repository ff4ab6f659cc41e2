/**
 * A schema edited, or added with its cdk.json entry, without `npm run generate` since: the twin would validate with the
 * generated code of the schema before (or have none), and `replay` re-validate dead letters with it, while `sluice
 * schema` and `query` read the file as it is now. `local up`, `demo`, `put` and `replay` say so in one line, exit 2,
 * before anything starts. The CLI runs from a copy of the project; the repository's own schemas and generated code
 * stay as they are.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig, resourceNames } from '../../lib/config';
import { readSchema } from '../../lib/schema';
import { createRng, sampleRecord } from '../../lib/schema/sample';

const ROOT = path.resolve(__dirname, '../..');

let copy: string;
let iotSchema: string;
beforeAll(() => {
  copy = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-generated-code-'));
  for (const entry of ['bin', 'lib', 'transforms', 'schemas', 'cdk.json', 'package.json', 'tsconfig.json']) {
    fs.cpSync(path.join(ROOT, entry), path.join(copy, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'), 'dir');
  iotSchema = fs.readFileSync(path.join(copy, 'schemas', 'iot.schema.json'), 'utf8');
});
afterAll(() => fs.rmSync(copy, { recursive: true, force: true }));

function run(...argv: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, argv, { cwd: copy, encoding: 'utf8', timeout: 60_000, env: { ...process.env, SLUICE_DATA_DIR: path.join(copy, '.sluice') } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** What the commands that start or feed the twin give: exit 2, the one line, and nothing made in the data dirs. */
function expectRefused(pipeline: string, message: string): void {
  const demoDir = path.join(copy, 'demo-data');
  for (const argv of [['local', 'up'], ['demo', '--data-dir', demoDir], ['put', pipeline, '--verify'], ['replay'], ['replay', '--dry-run']]) {
    const refused = run('bin/sluice.js', ...argv);
    expect({ argv, code: refused.code, stdout: refused.stdout, stderr: refused.stderr }).toEqual({ argv, code: 2, stdout: '', stderr: `sluice: ${message}\n` });
  }
  for (const dir of [path.join(copy, '.sluice'), demoDir]) expect(fs.existsSync(dir) ? fs.readdirSync(dir) : []).toEqual([]);
}

test('a schema edited without npm run generate: local up, demo, put and replay say to run it, exit 2, nothing started', () => {
  const schema = JSON.parse(iotSchema) as { properties: Record<string, unknown> };
  schema.properties.firmware_channel = { type: 'string', maxLength: 16 };
  fs.writeFileSync(path.join(copy, 'schemas', 'iot.schema.json'), JSON.stringify(schema, null, 2));
  try {
    expectRefused('iot', 'schemas/iot.schema.json changed since the code was generated: run npm run generate');
  } finally {
    fs.writeFileSync(path.join(copy, 'schemas', 'iot.schema.json'), iotSchema);
  }
}, 120_000);

test('a schema edited into one the derivation refuses: local up, demo, put and replay give its own error, not "run npm run generate"', () => {
  const schema = JSON.parse(iotSchema) as { 'x-sluice': Record<string, unknown> };
  schema['x-sluice'].partitonFields = schema['x-sluice'].partitionFields;
  delete schema['x-sluice'].partitionFields;
  fs.writeFileSync(path.join(copy, 'schemas', 'iot.schema.json'), JSON.stringify(schema, null, 2));
  try {
    expectRefused('iot', 'schemas/iot.schema.json at /x-sluice/partitonFields: unknown key; allowed: version, idField, eventTimeField, partitionFields, entityField, pii, money, columns');
  } finally {
    fs.writeFileSync(path.join(copy, 'schemas', 'iot.schema.json'), iotSchema);
  }
}, 120_000);

test('a pipeline whose schema file and cdk.json entry were added without npm run generate: it has no generated code yet, exit 2 (not 1, the code for bugs)', () => {
  fs.writeFileSync(path.join(copy, 'schemas', 'orders.schema.json'), iotSchema.replace('iot.schema.json', 'orders.schema.json'));
  const cdkJson = fs.readFileSync(path.join(copy, 'cdk.json'), 'utf8');
  const withOrders = JSON.parse(cdkJson) as { context: { pipelines: Record<string, unknown> } };
  withOrders.context.pipelines.orders = {};
  fs.writeFileSync(path.join(copy, 'cdk.json'), JSON.stringify(withOrders, null, 2));
  try {
    expectRefused('orders', 'schemas/orders.schema.json has no generated code yet: run npm run generate');
  } finally {
    fs.writeFileSync(path.join(copy, 'cdk.json'), cdkJson);
    fs.rmSync(path.join(copy, 'schemas', 'orders.schema.json'));
  }
}, 120_000);

test('replay over dead letters of the schema as edited: refused (exit 2), not re-validated with the generated code of the schema before; the messages stay', () => {
  const schema = JSON.parse(iotSchema) as { properties: Record<string, unknown> };
  schema.properties.firmware_channel = { type: 'string', maxLength: 16 };
  fs.writeFileSync(path.join(copy, 'schemas', 'iot.schema.json'), JSON.stringify(schema, null, 2));
  // A record the edited schema accepts and the generated validator, of the schema before, fails for its new field.
  const record = { ...(sampleRecord(readSchema('iot'), createRng(7)) as Record<string, unknown>), firmware_channel: 'beta' };
  const message = {
    dedupeKey: 'dedupe-1', pipeline: 'iot', errorType: 'processing-failed', reason: 'schema: /firmware_channel is not a field of the schema',
    rawData: Buffer.from(JSON.stringify(record)).toString('base64'), attemptsMade: 4, arrivalTimestamp: 1_795_000_000_000,
  };
  const dataDir = path.join(copy, '.sluice');
  const queue = path.join(dataDir, 'dlq', `${resourceNames(loadConfig(), 'iot').dlq}.jsonl`);
  fs.mkdirSync(path.dirname(queue), { recursive: true });
  fs.writeFileSync(queue, `${JSON.stringify(message)}\n`);
  try {
    for (const argv of [['replay', '--dry-run'], ['replay', '--pipeline', 'iot']]) {
      const refused = run('bin/sluice.js', ...argv);
      expect({ argv, code: refused.code, stdout: refused.stdout, stderr: refused.stderr })
        .toEqual({ argv, code: 2, stdout: '', stderr: 'sluice: schemas/iot.schema.json changed since the code was generated: run npm run generate\n' });
    }
    expect(fs.readFileSync(queue, 'utf8')).toBe(`${JSON.stringify(message)}\n`);
  } finally {
    fs.writeFileSync(path.join(copy, 'schemas', 'iot.schema.json'), iotSchema);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}, 120_000);
