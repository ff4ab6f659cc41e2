import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { loadConfig } from '../../lib/config';
import { savedQueries } from '../../lib/infra/athena-workspace';
import { LocalAthena } from '../../lib/local/athena';
import { injectedKeyViolation } from '../../lib/local/injected-partitions';
import { describeSchema, injectedPartitionKeys, loadModel } from '../../lib/schema';
import { regionalSchema } from '../schema/regional-schema';

let duck: DuckDBInstance;
let connection: DuckDBConnection;
beforeAll(async () => {
  duck = await DuckDBInstance.create(':memory:');
  connection = await duck.connect();
});
afterAll(() => {
  connection.closeSync();
  duck.closeSync();
});

async function parseTree(sql: string): Promise<unknown> {
  const reader = await connection.runAndReadAll('SELECT json_serialize_sql($1::VARCHAR)', [sql]);
  const parsed = JSON.parse(String(reader.getRows()[0][0])) as { error: boolean; statements: Array<{ node: unknown }> };
  expect(parsed.error).toBe(false);
  return parsed.statements[0].node;
}

const INJECTED = new Map([['orders', ['region']]]);

describe('Athena\'s rule for injected partition keys, read from DuckDB\'s parse tree', () => {
  test.each([
    "SELECT count(*) FROM orders WHERE region = 'eu'",
    "SELECT * FROM sluice_dev.orders WHERE 'eu' = region AND year = 2026",
    "SELECT region, count(*) FROM orders WHERE region IN ('eu', 'us') AND hour > 3 GROUP BY region",
    "SELECT * FROM orders o WHERE o.region = lower('EU')",
    "SELECT * FROM orders WHERE region = CAST('eu' AS VARCHAR)",
    "SELECT * FROM (SELECT * FROM orders) t WHERE region = 'eu'",
    "SELECT * FROM (SELECT * FROM orders) t WHERE t.region = 'eu'",
    "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent r WHERE r.region = 'eu'",
    "SELECT * FROM orders o JOIN iot i ON o.user_id = i.device_id AND o.region = 'eu'",
    "SELECT * FROM orders WHERE region = 'eu' AND amount > (SELECT avg(amount) FROM orders WHERE region = 'eu')",
    "SELECT * FROM orders WHERE region = 'eu' AND attributes.region LIKE 'e%'",
    "SELECT * FROM orders WHERE region = 'eu' UNION ALL SELECT * FROM orders WHERE region = 'us'",
    "WITH recent AS (SELECT * FROM orders WHERE region = 'eu') SELECT count(*) FROM recent",
    // sluice put --verify's form: one AND-ed term per partition the records landed in.
    "SELECT DISTINCT id FROM orders WHERE ((region = 'eu' AND year = 2026) OR (region = 'us' AND year = 2026)) AND id IN ('a')",
    'SELECT * FROM iot',
  ])('runs: %s', async (sql) => {
    expect(injectedKeyViolation(await parseTree(sql), INJECTED)).toBeUndefined();
  });

  test.each([
    'SELECT count(*) FROM orders',
    'SELECT count(*) FROM sluice_dev.orders WHERE year = 2026',
    "SELECT * FROM orders WHERE region LIKE 'eu%'",
    "SELECT * FROM orders WHERE region = 'eu' OR year = 2026",
    "SELECT * FROM orders WHERE shipping_address.region = 'eu'",
    "SELECT * FROM orders WHERE region = 'eu' UNION ALL SELECT * FROM orders",
    "SELECT * FROM orders WHERE region = 'eu' AND amount > (SELECT avg(amount) FROM orders)",
    "SELECT * FROM orders WHERE (region = 'eu' AND year = 2026) OR year = 2025",
    "SELECT * FROM orders WHERE NOT region = 'eu'",
    "SELECT * FROM orders WHERE region = 'eu' AND region <> 'us'",
    'SELECT * FROM orders WHERE region = app_version',
    "SELECT * FROM orders WHERE region IN ('eu', app_version)",
    "SELECT * FROM iot JOIN orders ON iot.device_id = orders.user_id WHERE iot.event_type = 'x'",
  ])('refused as Athena refuses it: %s', async (sql) => {
    expect(injectedKeyViolation(await parseTree(sql), INJECTED)).toEqual({ table: 'orders', column: 'region' });
  });

  test('DESCRIBE reads no data and is not refused', async () => {
    expect(injectedKeyViolation(await parseTree('DESCRIBE orders'), INJECTED)).toBeUndefined();
  });
});

describe('a pipeline with a partition field without an enum', () => {
  const model = describeSchema('orders', regionalSchema());

  test('its field is projected as injected; the shipped pipelines have none', () => {
    expect(injectedPartitionKeys(model)).toEqual(['region']);
    for (const pipeline of ['app-events', 'clickstream', 'iot', 'transactions']) expect(injectedPartitionKeys(loadModel(pipeline))).toEqual([]);
  });

  test('gets only the saved query Athena can run on it (the others span every value of the field)', () => {
    const queries = savedQueries('db', { model, tableName: 'orders', errorTableName: 'orders_errors' });
    expect(queries.map((q) => q.name)).toEqual(['orders: failed records by error code']);
    expect(savedQueries('db', { model: loadModel('app-events'), tableName: 'app_events', errorTableName: 'app_events_errors' })).toHaveLength(3);
  });

  test('sluice query refuses, with Athena\'s message, a query on it that names no value; one that does runs', async () => {
    const project = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-injected-'));
    try {
      fs.mkdirSync(path.join(project, 'schemas'));
      fs.copyFileSync(path.resolve(__dirname, '../../cdk.json'), path.join(project, 'cdk.json'));
      fs.writeFileSync(path.join(project, 'schemas', 'orders.schema.json'), JSON.stringify(regionalSchema()));
      const config = loadConfig(['pipelines={"orders":{"source":"direct-put","destinations":["lake"]}}'], project);
      const athena = await LocalAthena.open(path.join(project, 'data'), config, { schemaDir: path.join(project, 'schemas') });
      try {
        await expect(athena.query('SELECT count(*) AS n FROM orders WHERE year = 2026')).rejects.toThrow(
          /^CONSTRAINT_VIOLATION: For the injected projected partition column region, the WHERE clause must contain only static equality conditions, and at least one such condition must be present\. .*WHERE region = '…'/,
        );
        const result = await athena.query("SELECT count(*) AS n FROM orders WHERE region = 'eu'");
        expect(result.rows).toEqual([[0n]]);
        // The error table has no such key.
        await expect(athena.query('SELECT count(*) FROM orders_errors')).resolves.toMatchObject({ rows: [[0n]] });
      } finally {
        athena.close();
      }
    } finally {
      fs.rmSync(project, { recursive: true, force: true });
    }
  });
});
