/**
 * What `sluice query` reads before it runs a query: only the views of the tables the query names, and of their
 * Parquet files only the footers it has not seen (the data dir's footer cache), so that a lake of many files does not
 * make every query, `SELECT 1` included, wait for all of them. The answers stay what they were.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { localBucketName } from '../../lib/local/paths';
import { readSchema } from '../../lib/schema';
import { sampleRecords } from '../../lib/schema/sample';
import { config, deliverToLake, rowsIn, sluice, tempDataDir } from './helpers';

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
const parquetUnder = (folder: string) => fs.readdirSync(folder, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.parquet')).map((f) => path.join(folder, f));
const cacheDir = () => path.join(dir, '.cache', 'parquet-footers');

beforeEach(() => {
  dir = tempDataDir();
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Rewrites a Parquet file in place with its columns as `select` gives them (DuckDB's SELECT * EXCLUDE / REPLACE). */
async function rewriteInPlace(file: string, select: string): Promise<void> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    await connection.run(`COPY (SELECT ${select} FROM read_parquet('${file}')) TO '${file}.new' (FORMAT parquet)`);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
  fs.renameSync(`${file}.new`, file);
}

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
    // Only iot's footers were read, and kept.
    expect(fs.readdirSync(path.join(cacheDir(), localBucketName(config)))).toEqual(['iot.json']);
    // What a query refuses comes as it did, without any view.
    const misspelt = await query('SELECT date_fromat(now(), \'%Y\')');
    expect({ code: misspelt.code, stderr: misspelt.stderr }).toEqual({ code: 1, stderr: expect.stringMatching(/^sluice: DuckDB refused the query: .*date_fromat does not exist/) });
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

describe('files of different columns in one table (a schema change) read as Athena reads them', () => {
  test('columns the older files lack read as NULL of the table\'s types, scanned alone or with the newer files; partition filters still prune', async () => {
    const sampled = records('iot', 80, 5);
    // The alerts written before uptime_s and location were added to the schema, the other event types since.
    const older = await deliverToLake(dir, 'iot', asLines(sampled.filter((r) => r.event_type === 'alert')), NOW.getTime(), { withoutColumns: ['uptime_s', 'location'] });
    const newer = await deliverToLake(dir, 'iot', asLines(sampled.filter((r) => r.event_type !== 'alert')), NOW.getTime());
    expect(older).toBeGreaterThan(0);
    const typed = 'count(*) AS n, count(uptime_s) AS uptimes, count(location) AS located, typeof(any_value(uptime_s)) AS uptime, typeof(any_value(location)) AS location';
    const expectedLocation = 'STRUCT(lat DOUBLE, lon DOUBLE)';
    expect(await rows(`SELECT ${typed} FROM iot WHERE event_type = 'alert'`)).toEqual([{ n: older, uptimes: 0, located: 0, uptime: 'BIGINT', location: expectedLocation }]);
    const [all] = await rows(`SELECT ${typed} FROM iot`) as Array<{ n: number; uptimes: number }>;
    expect(all).toEqual(expect.objectContaining({ n: older + newer, uptime: 'BIGINT', location: expectedLocation }));
    expect(all.uptimes).toBeGreaterThan(0);
    const described = await rows('SELECT column_name, column_type FROM (DESCRIBE iot) WHERE column_name IN (\'uptime_s\', \'location\') ORDER BY 1');
    expect(described).toEqual([{ column_name: 'location', column_type: expectedLocation }, { column_name: 'uptime_s', column_type: 'BIGINT' }]);

    // Pruned to the older files, to the newer, and to none: counted against all the table's files.
    const files = parquetUnder(dataFolder('iot')).length;
    const alerts = parquetUnder(path.join(dataFolder('iot'), 'event_type=alert')).length;
    for (const [where, read] of [["event_type = 'alert'", alerts], ["event_type <> 'alert'", files - alerts], ['hour = 3', 0]] as const) {
      const { stdout } = await query(`SELECT count(*) FROM iot WHERE ${where}`);
      expect({ where, footer: /read \d+ of \d+ Parquet files/.exec(stdout)?.[0] }).toEqual({ where, footer: `read ${read} of ${files} Parquet files` });
    }
  });
});

describe('the footer cache in the data dir', () => {
  test('a file replaced with other columns (same path, new size and time) is read again', async () => {
    const landed = await deliverToLake(dir, 'iot', asLines(records('iot', 40, 6)), NOW.getTime());
    const sql = 'SELECT count(*) AS n, count(device_id) AS devices FROM iot';
    expect(await rows(sql)).toEqual([{ n: landed, devices: landed }]);
    expect(fs.existsSync(path.join(cacheDir(), localBucketName(config), 'iot.json'))).toBe(true);
    // Its owner's alone, as the data dir: it names the lake's files.
    expect(fs.statSync(path.join(dir, '.cache')).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(cacheDir(), localBucketName(config), 'iot.json')).mode & 0o777).toBe(0o600);

    // Not the first file: the columns of a group of files are read from its first.
    const file = parquetUnder(dataFolder('iot')).sort().at(-1) ?? '';
    const inFile = await rowsIn(file);
    expect(inFile).toBeGreaterThan(0);
    // The same path, without device_id: read as NULLs, not as the cache's columns.
    await rewriteInPlace(file, '* EXCLUDE (device_id)');
    expect(await rows(sql)).toEqual([{ n: landed, devices: landed - inFile }]);
    // And with a column of a type Athena would not read as the table's: the check sees it.
    await rewriteInPlace(file, '* REPLACE (CAST(battery_pct AS DOUBLE) AS battery_pct)');
    const failed = await query('SELECT max(battery_pct) FROM iot');
    expect({ code: failed.code, stderr: failed.stderr }).toEqual({ code: 1, stderr: expect.stringMatching(/HIVE_BAD_DATA as on Athena: column battery_pct is DOUBLE/) });
  });

  test('a file rewritten at the same size with its modification time set back is read again (the change time moved)', async () => {
    const landed = await deliverToLake(dir, 'iot', asLines(records('iot', 40, 6)), NOW.getTime());
    const sql = 'SELECT count(*) AS n, count(device_id) AS devices FROM iot';
    const file = parquetUnder(dataFolder('iot')).sort().at(-1) ?? '';
    // A whole second, which utimes can set back exactly.
    const then = new Date('2026-11-22T12:00:00Z');
    fs.utimesSync(file, then, then);
    expect(await rows(sql)).toEqual([{ n: landed, devices: landed }]);
    const inFile = await rowsIn(file);
    // device_id renamed device_ix in the footer, byte for byte: the same size, and the same modification time put back.
    const bytes = fs.readFileSync(file);
    const renamed = Buffer.from(bytes.toString('latin1').replaceAll('device_id', 'device_ix'), 'latin1');
    expect(renamed.length).toBe(bytes.length);
    fs.writeFileSync(file, renamed);
    fs.utimesSync(file, then, then);
    expect(fs.statSync(file).mtimeMs).toBe(then.getTime());
    expect(await rows(sql)).toEqual([{ n: landed, devices: landed - inFile }]);
  });

  test('a Parquet file DuckDB cannot read fails its table\'s queries, and the other files\' footers are kept all the same', async () => {
    await deliverToLake(dir, 'iot', asLines(records('iot', 40, 9)), NOW.getTime());
    const files = parquetUnder(dataFolder('iot'));
    const truncated = path.join(path.dirname(files[0]), 'truncated.parquet');
    fs.writeFileSync(truncated, 'PAR1');
    const failed = await query('SELECT count(*) FROM iot');
    expect({ code: failed.code, stderr: failed.stderr }).toEqual({ code: 1, stderr: expect.stringMatching(/table sluice_dev\.iot cannot be read: .*truncated\.parquet/) });
    const cache = JSON.parse(fs.readFileSync(path.join(cacheDir(), localBucketName(config), 'iot.json'), 'utf8')) as { files: Record<string, unknown> };
    expect(Object.keys(cache.files).map((f) => path.join(dataFolder('iot'), f)).sort()).toEqual([...files].sort());
  });

  test('a corrupt, truncated or foreign cache is ignored: the footers are read again, the answers the same', async () => {
    const older = await deliverToLake(dir, 'iot', asLines(records('iot', 30, 7)), NOW.getTime(), { withoutColumns: ['uptime_s'] });
    const newer = await deliverToLake(dir, 'iot', asLines(records('iot', 30, 8)), NOW.getTime());
    const sql = 'SELECT count(*) AS n, typeof(any_value(uptime_s)) AS uptime FROM iot';
    const expected = [{ n: older + newer, uptime: 'BIGINT' }];
    expect(await rows(sql)).toEqual(expected);
    const cache = path.join(cacheDir(), localBucketName(config), 'iot.json');
    const written = fs.readFileSync(cache, 'utf8');
    const parsed = JSON.parse(written) as { files: Record<string, [string, string]> };
    const [first] = Object.keys(parsed.files);
    const other = (digest: string) => JSON.stringify({ ...parsed, files: { ...parsed.files, [first]: [parsed.files[first][0], digest] } });
    for (const corrupt of [written.slice(0, written.length / 2), '', 'null', '[]', '{"version":99,"files":{}}', other('not a digest'), `${written}x`]) {
      fs.writeFileSync(cache, corrupt);
      expect(await rows(sql)).toEqual(expected);
    }
    // A cache that cannot be written (its folder a file) is only not kept.
    fs.rmSync(cacheDir(), { recursive: true });
    fs.writeFileSync(cacheDir(), '');
    expect(await rows(sql)).toEqual(expected);
  });
});
