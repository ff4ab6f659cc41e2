import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../../lib/cli/main';
import { listSchemas, readSchema } from '../../lib/schema';
import { describeSchema } from '../../lib/schema/model';

async function capture(argv: string[], runCli: typeof run = run): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { out.push(a.join(' ')); });
  const error = jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => { err.push(a.join(' ')); });
  const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { err.push(String(chunk)); return true; });
  try {
    const code = await runCli(argv);
    return { code, out: out.join('\n'), err: err.join('') };
  } finally {
    log.mockRestore();
    error.mockRestore();
    write.mockRestore();
  }
}

/** Runs `body` with the CLI loaded in an isolated registry where lib/schema is what `mock` gives. */
async function withSchemaModule(mock: () => object, body: (fresh: typeof run) => Promise<void>): Promise<void> {
  try {
    await jest.isolateModulesAsync(async () => {
      jest.doMock('../../lib/schema', mock);
      await body((require('../../lib/cli/main') as typeof import('../../lib/cli/main')).run);
    });
  } finally {
    jest.dontMock('../../lib/schema');
  }
}

describe('sluice schema', () => {
  test('prints Glue columns, partition keys, OpenSearch mapping and validator summary', async () => {
    const { code, out } = await capture(['schema', 'iot']);
    expect(code).toBe(0);
    expect(out).toMatch(/Glue columns/);
    expect(out).toMatch(/temperature_c\s+double\s+DOUBLE\s+double/);
    expect(out).toMatch(/Partition keys[\s\S]*event_type\s+string\s+type=enum values=telemetry,alert,heartbeat,firmware_update/);
    expect(out).toMatch(/location: geo_point/);
    expect(out).toMatch(/required\s+event_id, event_type, event_time, device_id, temperature_c, battery_pct/);
  });

  test('the OpenSearch mapping of a pipeline without the search destination is marked not indexed, with the destinations it has', async () => {
    const lakeOnly = await capture(['schema', 'app-events']);
    expect(lakeOnly.code).toBe(0);
    expect(lakeOnly.out).toMatch(/\nOpenSearch: not indexed: app-events has no search destination \(destinations: lake\); with the search destination its index template would be app-events-\* \(10 top-level fields; \d+ of the 1000 mapped fields an index takes; dynamic: strict\)(; its date, ip and geo_point fields:)?\n/);
    expect(lakeOnly.out).not.toMatch(/^OpenSearch index template/m);
    const indexed = await capture(['schema', 'clickstream']);
    expect(indexed.out).toMatch(/\nOpenSearch index template {2}clickstream-\* {2}\(\d+ top-level fields; \d+ of the 1000 mapped fields an index takes; dynamic: strict\)(; its date, ip and geo_point fields:)?\n/);
    expect(indexed.out).not.toMatch(/not indexed/);
    // -c as the other commands take it: iot, not indexed by default, is with the search destination given for one run.
    expect((await capture(['schema', 'iot'])).out).toMatch(/\nOpenSearch: not indexed: iot has no search destination \(destinations: lake, metadata\)/);
    const withSearch = await capture(['schema', 'iot', '-c', 'pipelines.iot.destinations=lake,search,metadata']);
    expect(withSearch.out).toMatch(/\nOpenSearch index template {2}iot-\* {2}\(\d+ top-level fields; \d+ of the 1000 mapped fields an index takes; dynamic: strict\)(; its date, ip and geo_point fields:)?\n/);
    const json = JSON.parse((await capture(['schema', 'app-events', '--json'])).out) as { destinations: string[] };
    expect(json.destinations).toEqual(['lake']);
  });

  test('--json gives scripts every artifact', async () => {
    const { code, out } = await capture(['schema', 'transactions', '--json']);
    expect(code).toBe(0);
    const parsed = JSON.parse(out) as { glue: { columns: Array<{ name: string; type: string }> }; opensearch: { index_patterns: string[] }; validator: { pii: Record<string, string> } };
    expect(parsed.glue.columns.find((c) => c.name === 'amount_minor')?.type).toBe('bigint');
    expect(parsed.opensearch.index_patterns).toEqual(['transactions-*']);
    expect(parsed.validator.pii.email).toBe('hash');
  });

  test('a schema whose OpenSearch mapping would be refused still shows the rest, and says why there is no mapping', async () => {
    // The runs are inside the isolated registry the mock is in: the command's module is loaded when the command runs.
    await withSchemaModule(() => ({
      ...jest.requireActual<object>('../../lib/schema'),
      openSearchIndexTemplate: () => {
        const { SchemaDerivationError } = jest.requireActual<typeof import('../../lib/schema/model')>('../../lib/schema/model');
        throw new SchemaDerivationError('/', 'the OpenSearch mapping would have 1212 fields, over index.mapping.total_fields.limit (1000)', 'iot');
      },
    }), async (fresh) => {
      const table = await capture(['schema', 'iot'], fresh);
      expect(table.code).toBe(0);
      expect(table.out).toMatch(/temperature_c\s+double\s+DOUBLE\s+n\/a/);
      expect(table.out).toMatch(/OpenSearch: no search destination for this schema: schemas\/iot\.schema\.json at \/: the OpenSearch mapping would have 1212 fields/);
      const json = await capture(['schema', 'iot', '--json'], fresh);
      expect(JSON.parse(json.out)).toMatchObject({ opensearch: { error: expect.stringMatching(/1212 fields/) }, glue: { columns: expect.any(Array) } });
    });
  });

  test('the OpenSearch section lists date, ip and geo_point fields nested in objects and arrays by their dotted path', async () => {
    const nested = JSON.parse(JSON.stringify(readSchema('iot'))) as { properties: Record<string, unknown> };
    const object = (properties: object, required: string[] = []) => ({ type: 'object', additionalProperties: false, required, properties });
    nested.properties.site = object({ geo: object({ lat: { type: 'number' }, lon: { type: 'number' } }, ['lat', 'lon']), gateway_ip: { type: 'string', format: 'ipv4' } });
    nested.properties.visits = { type: 'array', items: object({ at: { type: 'string', format: 'date-time' }, note: { type: 'string' } }) };
    await withSchemaModule(() => {
      const actual = jest.requireActual<typeof import('../../lib/schema')>('../../lib/schema');
      return { ...actual, loadModel: () => describeSchema('iot', nested) };
    }, async (fresh) => {
      const { code, out } = await capture(['schema', 'iot'], fresh);
      expect(code).toBe(0);
      const listed = out.slice(out.indexOf('\nOpenSearch'), out.indexOf('\nValidator')).split('\n').filter((l) => l.startsWith('  '));
      expect(listed).toEqual([
        '  event_time: date', '  location: geo_point', '  site.geo: geo_point', '  site.gateway_ip: ip', '  visits.at: date',
        '  sluice.arrival_time: date', '  sluice.processed_at: date',
      ]);
    });
  });

  test('an unknown pipeline is a usage error with the known names', async () => {
    // A name no user's pipeline has (schemas/README.md's own example is "orders").
    const { code, err } = await capture(['schema', 'never-a-pipeline-zz9']);
    expect(code).toBe(2);
    expect(err).toMatch(`unknown pipeline "never-a-pipeline-zz9"; known pipelines: ${listSchemas().join(', ')}`);
    expect(err).not.toMatch(/at .*\.ts:\d+/); // no stack trace for a user mistake
  });

  test('a pipeline the configuration names without a schema file is said to lack its schema, as the other commands say, not to be unknown', async () => {
    const { code, err } = await capture(['schema', 'payments', '-c', 'pipelines.payments={}']);
    expect(code).toBe(2);
    expect(err).toMatch('pipelines.payments: no schema for pipeline "payments"; add schemas/payments.schema.json');
    expect(err).not.toMatch(/unknown pipeline/);
  });

  test('an unknown pipeline prints its control characters escaped: a name typed or pasted cannot clear or retitle the terminal', async () => {
    const { code, err } = await capture(['schema', 'or\u001b[2Jders\u0007']);
    expect(code).toBe(2);
    expect(err).toBe(`sluice: unknown pipeline "or\\u001b[2Jders\\u0007"; known pipelines: ${listSchemas().join(', ')}`);
  });
});

describe('sluice schema --against: what changed since an earlier schema, and what it does to the data already written', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-schema-against-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const earlier = (edit: (s: Record<string, any>) => void): string => { // eslint-disable-line @typescript-eslint/no-explicit-any
    const schema = structuredClone(readSchema('iot')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    edit(schema);
    const file = path.join(dir, `iot-${fs.readdirSync(dir).length}.json`);
    fs.writeFileSync(file, JSON.stringify(schema));
    return file;
  };

  test('an unsafe change is listed with its consequence and exits 1, so a CI step before cdk deploy stops', async () => {
    const file = earlier((s) => { s.properties.temperature_c = { type: 'integer' }; });
    const { code, out, err } = await capture(['schema', 'iot', '--against', file]);
    expect(code).toBe(1);
    expect(out).toMatch(new RegExp(`^schemas/iot.schema.json against ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 2 changes, 1 unsafe, 1 with care\n`));
    expect(out).toMatch(/\nunsafe +temperature_c +bigint → double +Athena fails a query that reads it from a file written before\s+with\s+HIVE_BAD_DATA/);
    expect(out).toMatch(/\nwith care +x-sluice\.version +unchanged \(1\.0\.0\)/);
    expect(out).toMatch(/See schemas\/README\.md, "Changing a schema"\./);
    expect(err).toBe(`sluice: 1 unsafe change to iot's schema against ${file}`);
  });

  test('safe changes alone exit 0; --json gives each change', async () => {
    const file = earlier((s) => { delete s.properties.humidity_pct; s['x-sluice'].version = '0.9.0'; });
    const { code, out } = await capture(['schema', 'iot', '--against', file, '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual({ pipeline: 'iot', against: file, earlier: true, changes: [
      { verdict: 'safe', subject: 'humidity_pct', change: 'added (optional, double)', consequence: expect.stringMatching(/^a new column: earlier rows read NULL/) },
      { verdict: 'safe', subject: 'x-sluice.version', change: '0.9.0 → 1.0.0', consequence: expect.any(String) },
    ] });
  });

  test('a git revision is read from the project\'s history: HEAD gives what the working tree changed since the last commit', async () => {
    const atHead = path.join(dir, 'iot-at-head.json');
    fs.writeFileSync(atHead, execFileSync('git', ['show', 'HEAD:schemas/iot.schema.json'], { cwd: path.join(__dirname, '..', '..') }));
    const fromFile = await capture(['schema', 'iot', '--against', atHead]);
    const fromGit = await capture(['schema', 'iot', '--against', 'HEAD']);
    expect(fromGit.code).toBe(fromFile.code);
    expect(fromGit.out).toBe(fromFile.out.replace(`against ${atHead}`, 'against HEAD'));
  });

  test('a project in a folder of its git repository reads the revision\'s schema from its own schemas/, not from the repository\'s top', async () => {
    const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-schema-monorepo-'));
    try {
      const project = path.join(repo, 'services', 'sluice');
      fs.mkdirSync(path.join(project, 'schemas'), { recursive: true });
      const schema = structuredClone(readSchema('iot')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      schema.properties.temperature_c = { type: 'integer' };
      fs.writeFileSync(path.join(project, 'schemas', 'iot.schema.json'), JSON.stringify(schema));
      const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { cwd: repo, stdio: 'pipe' });
      git('init', '-q');
      git('add', '-A');
      git('commit', '-q', '-m', 'iot');
      let result!: Awaited<ReturnType<typeof capture>>;
      // The whole run is inside the isolated registry: the command's module is loaded when the command runs.
      await jest.isolateModulesAsync(async () => {
        jest.doMock('../../lib/config', () => ({ ...jest.requireActual('../../lib/config'), PROJECT_ROOT: project }));
        result = await capture(['schema', 'iot', '--against', 'HEAD'], (require('../../lib/cli/main') as typeof import('../../lib/cli/main')).run);
      });
      const { code, out } = result;
      expect(out).toMatch(/\nunsafe +temperature_c +bigint → double /);
      expect(code).toBe(1);
    } finally {
      fs.rmSync(repo, { recursive: true, force: true });
    }
  });

  test('what is neither a file nor a revision, an earlier schema that is not JSON or does not derive, are usage errors that say so', async () => {
    const missing = await capture(['schema', 'iot', '--against', 'no-such-rev-zz9']);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^sluice: --against no-such-rev-zz9: no such file, and no such git revision in /);
    const option = await capture(['schema', 'iot', '--against', '--output=x']);
    expect(option.code).toBe(2);
    expect(option.err).toMatch(/is neither a file nor a git revision/);
    const notJson = path.join(dir, 'not-json.json');
    fs.writeFileSync(notJson, '{"type": ');
    expect((await capture(['schema', 'iot', '--against', notJson])).err).toMatch(new RegExp(`^sluice: ${notJson.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not valid JSON: `));
    const broken = earlier((s) => { s['x-sluice'].partitionFields = ['no_such_field']; });
    const derive = await capture(['schema', 'iot', '--against', broken]);
    expect(derive.code).toBe(2);
    expect(derive.err).toMatch(/is not a schema Sluice can derive a table from: /);
  });
});
