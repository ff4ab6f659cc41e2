/**
 * What `sluice query` reads before it runs a query: only the views of the tables the query names, so that a lake of
 * many files does not make every query, `SELECT 1` included, wait for all of them. The answers stay what they were.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { localBucketName } from '../../lib/local/paths';
import { readSchema } from '../../lib/schema';
import { sampleRecords } from '../../lib/schema/sample';
import { config, deliverToLake, sluice, tempDataDir } from './helpers';

const NOW = new Date('2026-11-22T12:30:00Z');

let dir: string;
const query = async (...args: string[]) => {
  const result = await sluice('query', ...args, '--data-dir', dir);
  return { ...result, stderr: result.code === 0 ? '' : result.stderr };
};
const rows = async (sql: string): Promise<unknown> => {
  const { code, stdout, stderr } = await query(sql, '--json');
  expect({ sql, code, stderr }).toEqual({ sql, code: 0, stderr: '' });
  return JSON.parse(stdout);
};
const records = (pipeline: string, n: number, seed: number) => sampleRecords(readSchema(pipeline), n, seed, { now: NOW });
const asLines = (rs: ReadonlyArray<Record<string, unknown>>) => rs.map((r) => Buffer.from(JSON.stringify(r)));
const dataFolder = (pipeline: string) => path.join(dir, 's3', localBucketName(config), 'data', pipeline);

beforeEach(() => {
  dir = tempDataDir();
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('sluice query reads only the tables a query names', () => {
  test('another pipeline\'s files that cannot be read, or its prefix listed, fail only the queries that name its tables', async () => {
    const iot = await deliverToLake(dir, 'iot', asLines(records('iot', 20, 3)), NOW.getTime());
    await deliverToLake(dir, 'app-events', asLines(records('app-events', 10, 4)), NOW.getTime());
    // A Parquet file of app-events' that DuckDB cannot read, and its error objects' prefix a file, not a folder (listing it fails).
    const truncated = path.join(dataFolder('app-events'), 'event_type=signup', 'year=2026', 'month=11', 'day=22', 'hour=12', 'truncated.parquet');
    fs.mkdirSync(path.dirname(truncated), { recursive: true });
    fs.writeFileSync(truncated, 'PAR1');
    const errors = path.join(dir, 's3', localBucketName(config), 'errors', 'app-events');
    fs.mkdirSync(path.dirname(errors), { recursive: true });
    fs.writeFileSync(errors, 'not a folder');

    expect(await rows('SELECT count(*) AS n FROM iot')).toEqual([{ n: iot }]);
    expect(await rows('SELECT 1 AS x')).toEqual([{ x: 1 }]);
    expect(await rows('SELECT count(*) AS n FROM sluice_dev.iot_errors')).toEqual([{ n: 0 }]);
    // What a query refuses comes as it did, without any view.
    const misspelt = await query('SELECT date_format(now(), \'%Y\')');
    expect({ code: misspelt.code, stderr: misspelt.stderr }).toEqual({ code: 1, stderr: expect.stringMatching(/^sluice: DuckDB refused the query: .*date_format does not exist/) });
    // The tables whose files cannot be read or listed fail, saying which.
    for (const [table, reason] of [['app_events', /cannot be read: .*truncated\.parquet/], ['app_events_errors', /ENOTDIR.*app-events/]] as const) {
      const failed = await query(`SELECT count(*) FROM ${table}`);
      expect({ table, code: failed.code, stderr: failed.stderr }).toEqual({ table, code: 1, stderr: expect.stringMatching(reason) });
    }
  });

  test('a query naming its table only through a subquery, a CTE, DESCRIBE, EXPLAIN or Athena\'s catalog still finds it', async () => {
    const iot = await deliverToLake(dir, 'iot', asLines(records('iot', 20, 3)), NOW.getTime());
    const appEvents = await deliverToLake(dir, 'app-events', asLines(records('app-events', 10, 4)), NOW.getTime());
    expect(await rows('SELECT (SELECT count(*) FROM iot) AS n')).toEqual([{ n: iot }]);
    expect(await rows('WITH a AS (SELECT * FROM awsdatacatalog.sluice_dev.app_events) SELECT count(*) AS n FROM a')).toEqual([{ n: appEvents }]);
    expect(await rows('SELECT count(*) AS n FROM (SELECT event_id FROM iot UNION ALL SELECT event_id FROM APP_EVENTS)')).toEqual([{ n: iot + appEvents }]);
    expect(await rows('DESCRIBE iot')).toEqual(expect.arrayContaining([expect.objectContaining({ column_name: 'device_id' })]));
    const explained = await query('EXPLAIN SELECT count(*) FROM iot WHERE event_type = \'alert\'');
    expect({ code: explained.code, stderr: explained.stderr }).toEqual({ code: 0, stderr: '' });
    expect(explained.stdout).toMatch(/READ_PARQUET/);
    // The catalog lists every table, as before.
    const tables = await rows('SELECT table_name FROM information_schema.tables ORDER BY 1');
    expect(tables).toEqual(expect.arrayContaining([{ table_name: 'app_events' }, { table_name: 'iot' }, { table_name: 'iot_errors' }]));
  });
});
