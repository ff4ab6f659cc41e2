/**
 * `sluice query` against the twin: Parquet fixtures written into a temp data dir laid out like the
 * twin's (by the transform and the twin's Parquet writer), queried through DuckDB.
 */
import { constants as bufferConstants } from 'node:buffer';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { loadConfig } from '../../lib/config';
import { athenaFunctionHint, LocalAthena } from '../../lib/local/athena';
import { protectLongIntegers, rewriteUnnests, withoutQueryLocations } from '../../lib/local/athena-unnest';
import { localBucketName } from '../../lib/local/paths';
import { DuckDBInstance } from '@duckdb/node-api';
import { duckDbType, loadModel, readSchema } from '../../lib/schema';
import { sampleRecords } from '../../lib/schema/sample';
import { pipelineSchema, transformRecord } from '../../transforms/shared';
import { MAX_ERROR_LINE_BYTES } from '../../transforms/failure-router/error-records';
import { regionalSchema } from '../schema/regional-schema';
import { config, deliverToLake, expectNoStackTrace, notTwinDataDir, registerTwin, rowsIn, sluice, sluiceWithUnusableTempDir, tempDataDir } from './helpers';
import { within } from '../within';

let dataDir: string;
const NOW = new Date('2026-11-22T12:30:00Z');
/** iot records the transform accepts, with their event types. */
let records: Array<Record<string, unknown>>;

beforeAll(async () => {
  dataDir = tempDataDir();
  const schema = pipelineSchema('iot');
  records = sampleRecords(readSchema('iot'), 60, 7, { now: NOW })
    .filter((r) => transformRecord(schema, Buffer.from(JSON.stringify(r)), { arrivalMs: NOW.getTime() }, { destination: 'lake', piiHashKey: 'k', processedAt: NOW }).result === 'Ok');
  const landed = await deliverToLake(dataDir, 'iot', records.map((r) => Buffer.from(JSON.stringify(r))), NOW.getTime());
  expect(landed).toBe(records.length);
  // Another pipeline's files too: a query on iot is measured against iot's files only.
  const appEvents = sampleRecords(readSchema('app-events'), 20, 11, { now: NOW }).map((r) => Buffer.from(JSON.stringify(r)));
  expect(await deliverToLake(dataDir, 'app-events', appEvents, NOW.getTime())).toBeGreaterThan(0);
  writeErrorObjects();
});

/**
 * iot's error objects as the delivery stream writes them (lib/local/delivery-stream.ts): one JSON line per
 * failed record under errors/iot/<error-output-type>/yyyy/MM/dd/HH/.
 */
function writeErrorObjects(): void {
  const at = NOW.getTime();
  const processingFailed = (errorCode: string, n: number) => Array.from({ length: n }, (_, i) => ({
    attemptsMade: 1, arrivalTimestamp: at + i * 1000, errorCode, errorMessage: `${errorCode} message`,
    attemptEndingTimestamp: at + 5000, rawData: Buffer.from('{}').toString('base64'), lambdaArn: 'arn:aws:lambda:us-east-1:000000000000:function:t',
  }));
  const conversionFailed = Array.from({ length: 2 }, () => ({
    attemptsMade: 1, arrivalTimestamp: at, lastErrorCode: 'DataFormatConversion.ParseError', lastErrorMessage: 'bad field',
    attemptEndingTimestamp: at, rawData: 'e30=', sequenceNumber: '4960', subSequenceNumber: 0,
  }));
  const objects: Array<[string, object[]]> = [
    ['processing-failed', processingFailed('Lambda.ProcessingFailedStatus', 3)],
    ['processing-failed', processingFailed('Lambda.FunctionError', 1)],
    ['format-conversion-failed', conversionFailed],
  ];
  objects.forEach(([type, lines], i) => {
    const file = path.join(dataDir, 's3', localBucketName(config), 'errors', 'iot', type, '2026', '11', '22', '12', `sluice-dev-iot-lake-1-2026-11-22-12-30-0${i}-x${i}`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
  });
}
afterAll(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const query = (...args: string[]) => sluice('query', ...args, '--data-dir', dataDir);
/** `query <args> --json` that must succeed: its rows (and its stderr, in the failure, when it did not). */
async function jsonRows(...args: string[]): Promise<unknown> {
  const { code, stdout, stderr } = await query(...args, '--json');
  expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
  return JSON.parse(stdout) as unknown;
}
const alerts = () => records.filter((r) => r.event_type === 'alert').length;

describe('sluice query (DuckDB over the twin)', () => {
  test('prints a table and the files read, with the Glue table name working unqualified', async () => {
    const { code, stdout, stderr } = await query('SELECT count(*) AS events FROM iot');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(new RegExp(`events\\n─+\\n\\s*${records.length}\\n`));
    expect(stdout).toMatch(/1 row · read (\d+) of \1 Parquet files · \d+ ms/);
  });

  test('a table named with Athena\'s catalog too (awsdatacatalog.sluice_dev.iot) answers, as on Athena', async () => {
    const { code, stdout, stderr } = await query('SELECT (SELECT count(*) FROM awsdatacatalog.sluice_dev.iot) AS events, (SELECT count(*) FROM AwsDataCatalog."sluice_dev".iot_errors) AS errors', '--json');
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(JSON.parse(stdout)).toEqual([{ events: records.length, errors: 6 }]);
  });

  test('-c env=prod on a dev twin\'s data dir: a note says its bucket is not there, instead of silent zeros', async () => {
    // The object store's work folder is no bucket.
    fs.mkdirSync(path.join(dataDir, 's3', '.tmp'), { recursive: true });
    const { code, stdout, stderr } = await query('-c', 'env=prod', 'SELECT count(*) AS events FROM iot');
    expect(code).toBe(0);
    expect(stdout).toMatch(/events\n─+\n\s*0\n/);
    expect(stderr).toBe(`sluice: note: ${dataDir} has no data bucket sluice-prod-data (it has sluice-dev-data): the tables read as empty; was the twin run with other settings (-c env=…, prefix)?\n`);
    expect((await query('SELECT count(*) AS events FROM iot')).stderr).toBe('');
  });

  test('a query its partition filters prune to no file still counts its table\'s files', async () => {
    const whole = /read (\d+) of (\d+) Parquet files/.exec((await query('SELECT count(*) FROM iot')).stdout) ?? [];
    for (const where of ["event_type = 'no-such-type'", 'year = 1999']) {
      const { code, stdout } = await query(`SELECT count(*) AS n FROM iot WHERE ${where}`);
      expect(code).toBe(0);
      expect(stdout).toContain(`read 0 of ${whole[2]} Parquet files`);
    }
  });

  test('partition predicates prune files, and the footer shows it', async () => {
    const { code, stdout } = await query("SELECT count(*) AS n FROM sluice_dev.iot WHERE event_type = 'alert'");
    expect(code).toBe(0);
    expect(stdout).toMatch(new RegExp(`n\\n─+\\n\\s*${alerts()}\\n`));
    const [, read, total] = /read (\d+) of (\d+) Parquet files/.exec(stdout) ?? [];
    expect(Number(read)).toBeGreaterThan(0);
    expect(Number(read)).toBeLessThan(Number(total));
  });

  test('a misspelt table or schema names the lake\'s tables and the closest one, not DuckDB\'s catalog ("Did you mean sqlite_temp_master?")', async () => {
    const tables = 'app_events, app_events_errors, clickstream, clickstream_errors, iot, iot_errors, transactions, transactions_errors';
    const table = await query('SELECT count(*) FROM iott');
    expect(table.code).toBe(1);
    expect(table.stderr).toBe(`sluice: DuckDB refused the query: Table sluice_dev.iott does not exist (did you mean "iot"?); its tables are ${tables}\n`);
    const errors = await query('SELECT count(*) FROM awsdatacatalog.sluice_dev."IoT Error"');
    expect(errors.stderr).toBe(`sluice: DuckDB refused the query: Table sluice_dev."IoT Error" does not exist (did you mean "iot_errors"?); its tables are ${tables}\n`);
    const far = await query('SELECT count(*) FROM orders');
    expect(far.stderr).toBe(`sluice: DuckDB refused the query: Table sluice_dev.orders does not exist; its tables are ${tables}\n`);
    const schema = await query('SELECT count(*) FROM sluice_deb.iot');
    expect(schema.code).toBe(1);
    expect(schema.stderr).toBe(`sluice: DuckDB refused the query: Schema sluice_deb does not exist (did you mean "sluice_dev"?); the tables are in sluice_dev: ${tables}\n`);
    expect(`${table.stderr}${errors.stderr}${far.stderr}${schema.stderr}`).not.toMatch(/sqlite|pg_|duckdb_/);
  });

  test('a misspelt WITH query is suggested among the query\'s own WITH queries and the tables', async () => {
    const tables = 'app_events, app_events_errors, clickstream, clickstream_errors, iot, iot_errors, transactions, transactions_errors';
    const cte = await query('WITH recent_alerts AS (SELECT * FROM iot WHERE event_type = \'alert\') SELECT count(*) FROM recent_alert');
    expect(cte.code).toBe(1);
    expect(cte.stderr).toBe(`sluice: DuckDB refused the query: Table sluice_dev.recent_alert does not exist (did you mean "recent_alerts"?); its tables are ${tables}; the query's WITH queries are recent_alerts\n`);
    const table = await query('WITH recent AS (SELECT 1 AS a) SELECT count(*) FROM iott, recent');
    expect(table.stderr).toBe(`sluice: DuckDB refused the query: Table sluice_dev.iott does not exist (did you mean "iot"?); its tables are ${tables}; the query's WITH queries are recent\n`);
    const scope = await query('SELECT count(*) FROM (WITH inner_q AS (SELECT 1 AS a) SELECT * FROM inner_q) t, inner_q');
    expect(scope.stderr).toBe(`sluice: DuckDB refused the query: Table sluice_dev.inner_q does not exist (the WITH query "inner_q" can be read only inside the query that defines it, and by the WITH queries listed after it); its tables are ${tables}; the query's WITH queries are inner_q\n`);
    // Read by a WITH query listed before it: in the query that defines it, but not yet defined there.
    const order = await query('WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT * FROM a');
    expect(order.stderr).toMatch(/^sluice: DuckDB refused the query: Table sluice_dev\.b does not exist \(the WITH query "b" can be read only inside the query that defines it, and by the WITH queries listed after it\)/);
  });

  test('a DOUBLE column prints grouped with one number of decimals; years and counts as the data has them', async () => {
    const { code, stdout } = await query(
      'SELECT year, count(*) AS events, amount, price, temp FROM (VALUES (2026, 1000000::DOUBLE, 12::DECIMAL(10,2), 21::DOUBLE), (2026, 999999.99::DOUBLE, 3.5::DECIMAL(10,2), 21.5::DOUBLE))'
      + ' t(year, amount, price, temp) GROUP BY ALL ORDER BY amount DESC',
    );
    expect(code).toBe(0);
    expect(stdout.split('\n').slice(0, 4)).toEqual([
      'year  events        amount  price  temp',
      '────  ──────  ────────────  ─────  ────',
      '2026       1  1,000,000.00  12.00  21.0',
      '2026       1    999,999.99   3.50  21.5',
    ]);
  });

  test('--json prints rows as objects (numbers as numbers); statistics go to stderr', async () => {
    const { code, stdout, stderr } = await query('SELECT event_type, count(*) AS n FROM iot GROUP BY 1 ORDER BY 1', '--json');
    expect(code).toBe(0);
    const rows = JSON.parse(stdout) as Array<{ event_type: string; n: number }>;
    expect(rows.reduce((s, r) => s + r.n, 0)).toBe(records.length);
    expect(rows.map((r) => r.event_type)).toEqual([...new Set(records.map((r) => r.event_type as string))].sort());
    expect(stderr).toMatch(/rows · read \d+ of \d+ Parquet files/);
  });

  test('the time a query took counts on the monotonic clock: a wall clock an hour further on at every look adds nothing to it', async () => {
    const realNow = Date.now.bind(Date);
    let looks = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + 3_600_000 * ++looks);
    try {
      const { code, stderr } = await query('SELECT count(*) AS n FROM iot', '--json');
      expect(code).toBe(0);
      // The statistics line ends with the time taken: milliseconds or seconds, not the hour the wall clock moved.
      expect(stderr).toMatch(/ · \d+(\.\d)? m?s\n$/);
    } finally {
      wallClock.mockRestore();
    }
  });

  test('--json writes the control characters of values and names escaped (DEL and C1 too), and parses back to the exact values', async () => {
    const { code, stdout } = await query("SELECT 'csi' || chr(155) || '31m' || chr(127) AS \"v\u009b\", 'esc' || chr(27) || ']0;pwned' || chr(7) AS e", '--json');
    expect(code).toBe(0);
    // eslint-disable-next-line no-control-regex
    expect(stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(stdout).toContain('"v\\u009b": "csi\\u009b31m\\u007f"');
    expect(JSON.parse(stdout)).toEqual([{ 'v\u009b': 'csi\u009b31m\u007f', e: 'esc\u001b]0;pwned\u0007' }]);
  });

  test('an expression selected without an alias is named by its place, _col<n>, as Athena names it; columns and aliases keep their names', async () => {
    const { code, stdout } = await query('SELECT event_type, count(*), 1 AS one, max(event_type) FROM app_events GROUP BY 1 ORDER BY 1 LIMIT 1', '--json');
    expect(code).toBe(0);
    expect(Object.keys((JSON.parse(stdout) as object[])[0])).toEqual(['event_type', '_col1', 'one', '_col3']);
    // A set operation takes the first query's names; a * in the select list leaves DuckDB's.
    const union = await query('SELECT 1 UNION ALL SELECT 2 AS b ORDER BY 1', '--json');
    expect(JSON.parse(union.stdout)).toEqual([{ _col0: 1 }, { _col0: 2 }]);
    // current_date and its kind are functions, though DuckDB's parser reads them as column names.
    const clock = await query('SELECT TRUE, current_date, current_timestamp AS now, NULL', '--json');
    expect(Object.keys((JSON.parse(clock.stdout) as object[])[0])).toEqual(['_col0', '_col1', 'now', '_col3']);
    const star = await query("SELECT *, 'x' FROM (SELECT 1 AS a)", '--json');
    expect(JSON.parse(star.stdout)).toEqual([{ a: 1, "'x'": 'x' }]);
  });

  test('--json keeps every column when names repeat (a join of two tables, or aliases): later ones get _2, _3', async () => {
    const { code, stdout } = await query('SELECT 1 AS a, 2 AS a, 3 AS a_2, 4 AS a', '--json');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual([{ a: 1, a_3: 2, a_2: 3, a_4: 4 }]);
  });

  test('--json writes the keys in the columns\' order, a numeric name too (a JavaScript object would put it first)', async () => {
    const { code, stdout } = await query('SELECT \'x\' AS a, 7 AS "7", event_type FROM app_events LIMIT 1', '--json');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^\[\n {2}\{\n {4}"a": "x",\n {4}"7": 7,\n {4}"event_type": "[a-z_]+"\n {2}\}\n\]\n$/);
  });

  test('Athena\'s function names work, with Athena\'s answers (date_diff counts whole units, as Trino does)', async () => {
    const sql = "SELECT date_diff('hour', TIMESTAMP '2026-01-01 02:59', TIMESTAMP '2026-01-01 03:01') AS dd,"
      + " date_diff('day', DATE '2026-01-01', DATE '2026-01-03') AS days,"
      + " to_unixtime(from_iso8601_timestamp('2026-01-01T00:00:10Z')) AS unix,"
      + " day_of_week(DATE '2026-12-06') AS sunday, day_of_year(DATE '2026-02-01') AS doy,"
      + " regexp_like('txn_abc', '^txn_') AS rl, json_extract_scalar('{\"a\":{\"b\":\"x\"}}', '$.a.b') AS js,"
      + " date_add('hour', 2, TIMESTAMP '2026-01-01 23:00') = TIMESTAMP '2026-01-02 01:00' AS added,"
      + " (SELECT approx_distinct(x % 5000) FROM range(20000) t(x)) AS ad,"
      + " (SELECT approx_percentile(x, 0.5) FROM range(101) t(x)) BETWEEN 45 AND 55 AS ap";
    const { code, stdout } = await query(sql, '--json');
    expect(code).toBe(0);
    // approx_distinct counts exactly (Athena's estimate is within its 2.3 % standard error; DuckDB's HyperLogLog gave 6,021 for 5,000).
    expect(JSON.parse(stdout)).toEqual([{ dd: 0, days: 2, unix: 1767225610, sunday: 7, doy: 32, rl: true, js: 'x', added: true, ad: 5000, ap: true }]);
    // element_at and concat answer as Trino's: a map's value (not a list of it), NULL for a key or position absent, and NULL when any argument is.
    const trino = await query("SELECT element_at(MAP {'a': 1, 'b': 2}, 'b') AS mv, element_at(MAP {'a': 1}, 'z') AS absent, element_at([10, 20, 30], -1) AS last,"
      + " element_at([10], 5) AS beyond, concat('a', 'b', 'c') AS abc, concat('a', NULL) AS nul, concat([1], [2, 3]) AS arr,"
      + ` concat(${Array.from({ length: 40 }, (_, i) => `'${i % 10}'`).join(', ')}) AS many`, '--json');
    expect(trino.code).toBe(0);
    expect(JSON.parse(trino.stdout)).toEqual([{ mv: 2, absent: null, last: 30, beyond: null, abc: 'abc', nul: null, arr: [1, 2, 3], many: '0123456789'.repeat(4) }]);
    // DuckDB's own forms still work; what Athena refuses or answers NULL for, so does the twin.
    const own = await query("SELECT date_add(TIMESTAMP '2026-01-01', INTERVAL 1 DAY) = TIMESTAMP '2026-01-02' AS own, json_extract_scalar('{\"a\":{\"b\":1}}', '$.a') AS obj", '--json');
    expect(JSON.parse(own.stdout)).toEqual([{ own: true, obj: null }]);
    // An Athena function the twin lacks: what to write locally, not DuckDB's "Did you mean date_part?".
    const lacking = await query("SELECT date_format(TIMESTAMP '2026-01-01 10:00', '%Y-%m-%d %H:%i') AS d");
    expect(lacking.code).toBe(1);
    expect(lacking.stderr).toMatch(/date_format is an Athena \(Trino\) function the local engine \(DuckDB\) does not have: the query runs as it is on Athena \(--aws\); locally, write strftime\(t, format\)/);
    const unit = await query("SELECT date_add('days', 1, DATE '2026-01-01')");
    expect(unit.code).toBe(1);
    expect(unit.stderr).toMatch(/date_add: days is not a unit/);
  });

  test('regexp_replace and regexp_extract answer as Trino\'s: every match replaced, $1 names a group, NULL when nothing matches', async () => {
    // Trino's documented examples (functions/regexp), and what DuckDB's own answered: '3ca 2b 14m', 'baa', '' and ''.
    const sql = "SELECT regexp_replace('1a 2b 14m', '(\\d+)([ab]) ', '3c$2 ') AS groups, regexp_replace('aaa', 'a', 'b') AS every,"
      + " regexp_replace('1a 2b 14m', '\\d+[ab] ') AS removed, regexp_replace('ab', 'b', '\\$1\\\\') AS escaped,"
      + " regexp_extract('1a 2b 14m', '(\\d+)([a-z]+)', 2) AS group2, regexp_extract('abc', '\\d+') AS none, regexp_extract('abc', '(\\d)', 1) AS no_group";
    const literals = await jsonRows(sql);
    expect(literals).toEqual([{ groups: '3ca 3cb 14m', every: 'bbb', removed: '14m', escaped: 'a$1\\', group2: 'a', none: null, no_group: null }]);
    // Over a table's column: each device id's digits, as a script would take them.
    const devices = await query("SELECT device_id, regexp_replace(device_id, '[^0-9]', '') AS digits FROM iot", '--json');
    const rows = JSON.parse(devices.stdout) as Array<{ device_id: string; digits: string }>;
    expect(rows.length).toBe(records.length);
    for (const r of rows) expect(r.digits).toBe(r.device_id.replace(/[^0-9]/g, ''));
  });

  test('greatest and least are NULL when any argument is, as Trino\'s (DuckDB\'s skip NULLs)', async () => {
    const rows = await jsonRows("SELECT greatest(1, NULL, 3) AS g, least(2, NULL) AS l, greatest(1, 3, 2) AS g3, least('b', 'a') AS ls");
    expect(rows).toEqual([{ g: null, l: null, g3: 3, ls: 'a' }]);
    // Over a column that is NULL on some rows (alert_code, on events that are not alerts): those rows' greatest is NULL.
    const nulls = await query("SELECT count(*) FILTER (WHERE greatest(alert_code, '') IS NULL) AS n FROM iot", '--json');
    const expected = records.filter((r) => r.alert_code === undefined || r.alert_code === null).length;
    expect(expected).toBeGreaterThan(0);
    expect(JSON.parse(nulls.stdout)).toEqual([{ n: expected }]);
  });

  test('split_part past the last field is NULL, as Trino\'s (DuckDB\'s gives \'\')', async () => {
    // Device ids are dev-<hex>: two fields.
    const rows = await jsonRows("SELECT count(*) FILTER (WHERE split_part(device_id, '-', 3) IS NULL) AS past,"
      + " count(*) FILTER (WHERE split_part(device_id, '-', 2) = substr(device_id, 5)) AS second, count(*) AS n FROM iot");
    expect(rows).toEqual([{ past: records.length, second: records.length, n: records.length }]);
  });

  test('substr from position 0, for a length of 0 or less, or from before the start is empty, as Trino\'s', async () => {
    // DuckDB's own gave 'dev-000' for substr(device_id, 0, 8) (a 0-based habit), where Athena gives ''.
    const rows = await jsonRows("SELECT substr(device_id, 0, 8) AS zero, substr(device_id, 1, 8) AS first8, substring(device_id, 5, -1) AS negative,"
      + " substr(device_id, -20, 5) AS before, substr(device_id, -8) AS last8, substr(NULL, 0) AS nul FROM iot LIMIT 1");
    const [row] = rows as Array<Record<string, unknown>>;
    expect(row).toEqual({ zero: '', first8: expect.stringMatching(/^dev-[0-9a-f]{4}$/), negative: '', before: '', last8: expect.stringMatching(/^[0-9a-f]{8}$/), nul: null });
  });

  test('EXTRACT(DOW FROM t) is Trino\'s day_of_week, 1 (Monday) to 7 (Sunday), not DuckDB\'s 0 (Sunday) to 6', async () => {
    const rows = await jsonRows("SELECT extract(dow FROM DATE '2026-12-06') AS sunday, extract(DOW FROM TIMESTAMP '2026-12-07 10:00') AS monday,"
      + " extract(year FROM DATE '2026-12-06') AS y, extract(hour FROM TIME '10:11:12') AS h,"
      + " (SELECT count(*) FROM iot WHERE extract(dow FROM event_time) = day_of_week(event_time)) AS same, (SELECT count(*) FROM iot) AS n");
    const [row] = rows as Array<{ n: number }>;
    expect(row).toEqual({ sunday: 7, monday: 1, y: 2026, h: 10, same: row.n, n: records.length });
  });

  test('millisecond is the millisecond of the second, 0 to 999, as Trino\'s (DuckDB\'s counted the second\'s too)', async () => {
    const rows = await jsonRows("SELECT millisecond(TIMESTAMP '2026-01-01 00:00:01.234') AS ms, second(TIMESTAMP '2026-01-01 00:00:01.234') AS s,"
      + " (SELECT count(*) FROM iot WHERE millisecond(event_time) BETWEEN 0 AND 999) AS in_range");
    expect(rows).toEqual([{ ms: 234, s: 1, in_range: records.length }]);
  });

  test('trim, ltrim and rtrim remove whitespace as Trino\'s do (tabs, line breaks, Unicode spaces), not spaces alone; trim(BOTH \'x\' FROM s) still works', async () => {
    const rows = await jsonRows("SELECT '[' || trim(chr(9) || ' x ' || chr(13) || chr(10)) || ']' AS t, '[' || ltrim(chr(10) || 'x ') || ']' AS l,"
      + " '[' || rtrim(' x' || chr(12288)) || ']' AS r, '[' || trim(chr(160) || 'x') || ']' AS nbsp, trim(BOTH '$' FROM '$var$') AS chars,"
      + " (SELECT count(*) FROM iot WHERE trim(chr(9) || device_id || chr(10)) = device_id) AS ids");
    // A no-break space is no whitespace to Java (Character.isWhitespace), so Trino keeps it.
    expect(rows).toEqual([{ t: '[x]', l: '[x ]', r: '[ x]', nbsp: '[\u00a0x]', chars: 'var', ids: records.length }]);
  });

  test('a timestamp AT TIME ZONE is the session\'s (UTC) time in that zone, as on Athena: 10:00 UTC is 11:00 in Berlin', async () => {
    // DuckDB's own took 10:00 as Berlin's time, 09:00 UTC: hours and dates a query grouped by were shifted the other way.
    const rows = await jsonRows("SELECT TIMESTAMP '2026-01-01 10:00:00' AT TIME ZONE 'Europe/Berlin' AS berlin,"
      + " hour(TIMESTAMP '2026-12-31 23:30:00' AT TIME ZONE 'Europe/Berlin') AS h, CAST(TIMESTAMP '2026-12-31 23:30:00' AT TIME ZONE 'Europe/Berlin' AS DATE) AS d,"
      + " hour(from_unixtime(1767225600) AT TIME ZONE 'America/New_York') AS ny,"
      + " (SELECT count(*) FROM iot WHERE hour(event_time AT TIME ZONE 'Asia/Tokyo') = (hour(event_time) + 9) % 24) AS tokyo");
    expect(rows).toEqual([{ berlin: '2026-01-01 11:00:00.000', h: 0, d: '2027-01-01', ny: 19, tokyo: records.length }]);
  });

  test('format takes Java\'s format strings, as Trino\'s does (DuckDB\'s own took \'{}\' and gave \'%.2f\' back)', async () => {
    // Trino's documented examples (functions/conversion), and a column's values.
    const rows = await jsonRows("SELECT format('%.5f', pi()) AS pi, format('%03d', 8) AS padded, format('%,.2f', 1234567.89) AS grouped,"
      + " format('%-7s,%7s', 'hello', 'world') AS widths, format('%2$s %3$s %1$s', 'a', 'b', 'c') AS positions,"
      + " (SELECT count(*) FROM iot WHERE format('%d%%', battery_pct) = CAST(battery_pct AS VARCHAR) || '%') AS percents");
    expect(rows).toEqual([{ pi: '3.14159', padded: '008', grouped: '1,234,567.89', widths: 'hello  ,  world', positions: 'b c a', percents: records.length }]);
  });

  test('url_encode and url_decode are Java\'s URLEncoder and URLDecoder, as Trino\'s: a space is +, * is kept and ~ encoded', async () => {
    const rows = await jsonRows("SELECT url_encode('a b.-*_~!é/?=&') AS encoded, url_decode('a+b%20c%2B') AS decoded,"
      + " url_decode(url_encode('x y+z~*%20')) AS round_trip");
    // As java.net.URLEncoder.encode(s, UTF_8) gives them (functions/url lists the rules).
    expect(rows).toEqual([{ encoded: 'a+b.-*_%7E%21%C3%A9%2F%3F%3D%26', decoded: 'a b c+', round_trip: 'x y+z~*%20' }]);
  });

  test('approx_distinct takes a FILTER (and DISTINCT) as Athena\'s aggregate does, and counts exactly', async () => {
    const rows = await jsonRows("SELECT event_type, approx_distinct(user_id) FILTER (WHERE amount > 0) AS a, approx_distinct(user_id, 0.01) FILTER (WHERE amount > 0) AS e, approx_distinct(DISTINCT user_id) AS d, count(DISTINCT user_id) FILTER (WHERE amount > 0) AS c, count(DISTINCT user_id) AS n FROM app_events GROUP BY 1 ORDER BY 1") as Array<{ a: number; e: number; d: number; c: number; n: number }>;
    expect(rows.length).toBeGreaterThan(1);
    expect(rows.some((r) => r.c > 0 && r.c < r.n)).toBe(true);
    for (const r of rows) expect([r.a, r.e, r.d]).toEqual([r.c, r.c, r.n]);
    // A long run of digits in a string (a sequence number) does not keep the query from being rewritten.
    const digits = await query("SELECT approx_distinct(user_id) FILTER (WHERE event_id <> '12345678901234567890123456') AS a, count(DISTINCT user_id) AS n FROM app_events", '--json');
    expect({ code: digits.code, stderr: digits.code === 0 ? '' : digits.stderr }).toEqual({ code: 0, stderr: '' });
    const [{ a, n }] = JSON.parse(digits.stdout) as Array<{ a: number; n: number }>;
    expect(a).toBe(n);
    // Nor do integers too long for JavaScript's numbers (16 digits and more, a HUGEINT): DuckDB gets them back as written.
    const long = await query('SELECT approx_distinct(user_id) FILTER (WHERE length(user_id) < 12345678901234567890 AND -9007199254740993 < 1234567890123456'
      + ' AND 9007199254740993 - 9007199254740992 = 1) AS a, count(DISTINCT user_id) AS n FROM app_events', '--json');
    expect({ code: long.code, stderr: long.code === 0 ? '' : long.stderr }).toEqual({ code: 0, stderr: '' });
    const [longRow] = JSON.parse(long.stdout) as Array<{ a: number; n: number }>;
    expect(longRow.a).toBe(longRow.n);
  });

  test('a parse tree\'s long integers are held as strings while JavaScript holds it, and only those: strings, decimals and short integers stay', () => {
    const json = '{"a":12345678901234567890,"b":[-9007199254740993,42,1.2345678901234567e+30,123456789012345.5],'
      + '"c":"x\\":1234567890123456789","d":123456789012345,"e":18446744073709551615}';
    const held = protectLongIntegers(json)!;
    const tree = JSON.parse(held.text) as { a: unknown; b: unknown[]; c: unknown; d: unknown; e: unknown };
    expect(tree).toEqual({ a: '\u0000sluice-integer:12345678901234567890', b: ['\u0000sluice-integer:-9007199254740993', 42, 1.2345678901234567e+30, 123456789012345.5],
      c: 'x":1234567890123456789', d: 123456789012345, e: '\u0000sluice-integer:18446744073709551615' });
    expect(held.restore(JSON.stringify(tree))).toBe(json);
    // A query whose own strings hold the mark is left unprotected (and so unrewritten): nothing could be mistaken for it.
    expect(protectLongIntegers('{"s":"\\u0000sluice-integer:1","n":12345678901234567890}')).toBeUndefined();
  });

  test('an approx_distinct with a FILTER DuckDB refuses as a macro\'s says what to write locally', () => {
    const refused = new Error('Invalid Input Error: Function "approx_distinct" is a Macro Function. "DISTINCT", "FILTER", and "ORDER BY" are only applicable to aggregate functions.');
    expect((athenaFunctionHint(refused) as Error).message).toMatch(/could not be rewritten for the local engine \(DuckDB\) in this query: it runs as it is on Athena \(--aws\); locally, write count\(DISTINCT x\) FILTER \(WHERE …\)/);
  });

  test('dates, times, maps, varbinary and non-finite doubles come out as Athena gives them', async () => {
    const sql = "SELECT DATE '2026-01-02' AS d, TIME '10:11:12.5' AS tm, MAP {'a': 1, '__proto__': 2} AS m, 'abc'::BLOB AS b,"
      + " 'nan'::DOUBLE AS n, '-inf'::DOUBLE AS i, 1.5::DOUBLE AS x";
    const json = await query(sql, '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([{ d: '2026-01-02', tm: '10:11:12.500000', m: { a: 1, ['__proto__']: 2 }, b: '61 62 63', n: 'NaN', i: '-Infinity', x: 1.5 }]);
    // Maps keyed by structs keep their pairs; dates beyond year 9999 or before 0 their full form.
    const odd = await query("SELECT MAP {{'k': 1}: 'a', {'k': 2}: 'b'} AS m, DATE '-0044-03-15' AS d", '--json');
    expect(JSON.parse(odd.stdout)).toEqual([{ m: [{ key: { k: 1 }, value: 'a' }, { key: { k: 2 }, value: 'b' }], d: '-000044-03-15T00:00:00.000Z' }]);
    const table = await query(sql);
    expect(table.stdout).toMatch(/2026-01-02 +10:11:12\.500000 +\{ "a": 1, "__proto__": 2 \} +61 62 63 +NaN +-Infinity +1\.5/);
  });

  test('a string that starts with U+FEFF comes back whole, as Athena gives it, not taken for a byte order mark', async () => {
    const dir = tempDataDir();
    try {
      const [record] = sampleRecords(readSchema('app-events'), 1, 5, { now: NOW });
      const sent = { ...record, app_version: '\ufeff3.2.1', attributes: { '\ufeffkey': '\ufeffvalue' } };
      expect(await deliverToLake(dir, 'app-events', [Buffer.from(JSON.stringify(sent))], NOW.getTime())).toBe(1);
      const athena = await LocalAthena.open(dir, config);
      try {
        const result = await athena.query('SELECT app_version, length(app_version) AS n, attributes FROM app_events');
        expect(result.rows).toEqual([['\ufeff3.2.1', 6n, { '\ufeffkey': '\ufeffvalue' }]]);
      } finally {
        athena.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const printed = await query("SELECT chr(65279) || 'x' AS s", '--json');
    expect(JSON.parse(printed.stdout)).toEqual([{ s: '\ufeffx' }]);
  });

  test('values nested in a struct, an array or a map come out as Athena gives them too, in every output', async () => {
    const sql = "SELECT {'d': DATE '2026-12-05', 't': TIMESTAMP '2026-12-05 07:56:56.509', 'none': NULL::DATE, 'deeper': [{'tz': TIMESTAMPTZ '2026-12-05 07:56:56.509Z'}]} AS s,"
      + " [DATE '2026-12-05', NULL] AS dates, MAP {DATE '2026-12-05': [TIME '10:11:12.5']} AS m, [{'b': 'abc'::BLOB, 'n': 'nan'::DOUBLE}] AS odd";
    const json = await query(sql, '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual([{
      s: { d: '2026-12-05', t: '2026-12-05 07:56:56.509', none: null, deeper: [{ tz: '2026-12-05 07:56:56.509 UTC' }] },
      dates: ['2026-12-05', null],
      m: { '2026-12-05': ['10:11:12.500000'] },
      odd: [{ b: '61 62 63', n: 'NaN' }],
    }]);
    const csv = await query(sql, '--csv');
    expect(csv.stdout.split('\r\n')[1]).toBe('"{ ""d"": ""2026-12-05"", ""t"": ""2026-12-05 07:56:56.509"", ""none"": null, ""deeper"": [ { ""tz"": ""2026-12-05 07:56:56.509 UTC"" } ] }",'
      + '"[ ""2026-12-05"", null ]","{ ""2026-12-05"": [ ""10:11:12.500000"" ] }","[ { ""b"": ""61 62 63"", ""n"": ""NaN"" } ]"');
    const table = await query(sql);
    expect(table.stdout).toContain('{ "d": "2026-12-05", "t": "2026-12-05 07:56:56.509", "none": null, "deeper": [ { "tz": "2026-12-05 07:56:56.509 UTC" } ] }  [ "2026-12-05", null ]');
    // A table's own nested timestamp: every pipeline's sluice.arrival_time.
    const lake = await query('SELECT sluice.arrival_time AS nested, sluice FROM iot LIMIT 1', '--json');
    const [row] = JSON.parse(lake.stdout) as Array<{ nested: string; sluice: { arrival_time: string } }>;
    expect(row.sluice.arrival_time).toBe(row.nested);
    expect(row.nested).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/);
  });

  test('CROSS JOIN UNNEST of an array of rows into columns, AS t(a, b), gives one column per field, as on Athena; WITH ORDINALITY the position after them', async () => {
    // Each event type's locations: an array of rows {lat, lon}, as a table's array of structs is.
    const rows = 'WITH located AS (SELECT event_type, list(location ORDER BY event_id) AS places FROM iot WHERE location IS NOT NULL GROUP BY event_type)';
    const expected = await query(`${rows} SELECT l.event_type, p.lat, p.lon FROM located l CROSS JOIN UNNEST(l.places) AS t(p) ORDER BY ALL`, '--json');
    const fields = await query(`${rows} SELECT l.event_type, lat, t.lon FROM located l CROSS JOIN UNNEST(l.places) AS t(lat, lon) ORDER BY ALL`, '--json');
    expect({ code: fields.code, stderr: fields.stderr.replace(/^\d+ rows? · .*\n$/, '') }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(fields.stdout)).toEqual(JSON.parse(expected.stdout));
    expect((JSON.parse(fields.stdout) as unknown[]).length).toBe(records.filter((r) => r.location !== undefined && r.location !== null).length);
    const numbered = await query(`${rows} SELECT l.event_type, lat, n FROM located l, UNNEST(l.places) WITH ORDINALITY AS t(lat, lon, n) WHERE n = 1 ORDER BY 1`, '--json');
    expect((JSON.parse(numbered.stdout) as Array<{ n: number }>).map((r) => r.n)).toEqual((JSON.parse((await query(`${rows} SELECT 1 AS n FROM located ORDER BY event_type`, '--json')).stdout) as Array<{ n: number }>).map((r) => r.n));
    // An array of plain values unnests as it did.
    const plain = await query('SELECT tag FROM iot CROSS JOIN UNNEST(tags) AS t(tag) ORDER BY tag LIMIT 1', '--json');
    expect(plain.code).toBe(0);
    // A query DuckDB's parse tree does not write back as it was (VALUES here) is not rewritten: it fails saying what to write instead.
    const literal = await query("SELECT sku FROM (VALUES ([{'sku': 'a', 'qty': 2}])) o(items) CROSS JOIN UNNEST(o.items) AS t(sku, qty)");
    expect(literal.code).toBe(1);
    expect(literal.stderr).toMatch(/UNNEST\(array\) AS t\(a, b, …\) unnests rows into columns on Athena, and the twin could not rewrite this query for DuckDB: unnest into one column, AS t\(item\), and name the fields item\.a/);
  });

  test('partition filters beside a CROSS JOIN UNNEST still prune files, with the same answer', async () => {
    const alertTags = records.filter((r) => r.event_type === 'alert').reduce((n, r) => n + ((r.tags as unknown[] | undefined)?.length ?? 0), 0);
    for (const sql of [
      "SELECT count(*) AS n FROM iot CROSS JOIN UNNEST(tags) AS t(tag) WHERE event_type = 'alert'",
      "SELECT count(*) AS n FROM sluice_dev.iot AS i, UNNEST(i.tags) AS t(tag) WHERE i.event_type = 'alert' AND tag <> ''",
    ]) {
      const { code, stdout } = await query(sql);
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`n\\n─+\\n\\s*${alertTags}\\n`));
      const [, read, total] = /read (\d+) of (\d+) Parquet files/.exec(stdout) ?? [];
      expect(Number(read)).toBeGreaterThan(0);
      expect(Number(read)).toBeLessThan(Number(total));
    }
  });

  test('CROSS JOIN UNNEST(map) AS t(k, v) gives a row per entry, its key and its value, as on Athena', async () => {
    const counted = 'WITH counted AS (SELECT map(list(event_type ORDER BY event_type), list(n ORDER BY event_type)) AS counts FROM (SELECT event_type, count(*) AS n FROM iot GROUP BY 1))';
    const expected = await query('SELECT event_type AS k, count(*) AS v FROM iot GROUP BY 1 ORDER BY 1', '--json');
    const entries = await query(`${counted} SELECT k, v FROM counted CROSS JOIN UNNEST(counts) AS t(k, v) ORDER BY k`, '--json');
    expect({ code: entries.code, stderr: entries.stderr.replace(/^\d+ rows? · .*\n$/, '') }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(entries.stdout)).toEqual(JSON.parse(expected.stdout));
    const numbered = await query(`${counted} SELECT k, n FROM counted, UNNEST(counts) WITH ORDINALITY AS t(k, v, n) ORDER BY n`, '--json');
    expect((JSON.parse(numbered.stdout) as Array<{ k: string }>).map((r) => r.k)).toEqual((JSON.parse(expected.stdout) as Array<{ k: string }>).map((r) => r.k));
    // Two columns over an array of rows of two fields still give the fields.
    const pairs = await query("SELECT a, b FROM (SELECT [{'a': 1, 'b': 'x'}] AS rs) CROSS JOIN UNNEST(rs) AS t(a, b)", '--json');
    expect(JSON.parse(pairs.stdout)).toEqual([{ a: 1, b: 'x' }]);
    // Neither: a message naming the form, not DuckDB's "UNNEST not supported here" of the rewritten query alone.
    const neither = await query('SELECT k FROM (SELECT 1 AS x) CROSS JOIN UNNEST(x) AS t(k, v)');
    expect(neither.code).toBe(1);
    expect(neither.stderr).toMatch(/CROSS JOIN UNNEST\(x\) AS t\(a, b\) unnests an array of rows of two fields into their columns, or a map into its keys and values, and here x is neither/);
    // A map unnested in a query that fails for another reason fails with that reason.
    const misspelt = await query(`${counted} SELECT nope FROM counted CROSS JOIN UNNEST(counts) AS t(k, v)`);
    expect(misspelt.stderr).toMatch(/Referenced column "?nope"? not found/);
  });

  test('only partition filters are repeated beside an UNNEST: a SELECT alias in WHERE runs as without the UNNEST', async () => {
    const alertTags = records.filter((r) => r.event_type === 'alert').reduce((n, r) => n + ((r.tags as unknown[] | undefined)?.length ?? 0), 0);
    const aliased = await query("SELECT count(*) AS n FROM (SELECT event_type AS kind, tag FROM iot CROSS JOIN UNNEST(tags) AS t(tag) WHERE kind = 'alert')", '--json');
    expect({ code: aliased.code, stderr: aliased.stderr.replace(/^\d+ rows? · .*\n$/, '') }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(aliased.stdout)).toEqual([{ n: alertTags }]);
  });

  test('a condition beside an UNNEST is repeated over the table only when it reads partition columns and constants alone: never a function such as random()', async () => {
    const duck = await DuckDBInstance.create(':memory:');
    const connection = await duck.connect();
    const rewrite = async (sql: string): Promise<string> => {
      const tree = withoutQueryLocations(JSON.parse(String((await connection.runAndReadAll('SELECT json_serialize_sql($1::VARCHAR)', [sql])).getRows()[0][0]))) as { statements: Array<{ node: unknown }> };
      rewriteUnnests(tree.statements[0].node, { partitionColumns: new Map([['orders', ['channel', 'year']]]) });
      return String((await connection.runAndReadAll('SELECT json_deserialize_sql($1::JSON)', [JSON.stringify(tree)])).getRows()[0][0]);
    };
    try {
      const pruned = await rewrite("SELECT id, x FROM orders AS o CROSS JOIN UNNEST(nums) AS u(x) WHERE o.channel IN ('web', 'app') AND year BETWEEN 2025 AND 2026 + 1 AND NOT channel IS NULL AND x > 1");
      expect(pruned).toContain(`FROM (SELECT * FROM orders AS o WHERE ((o.channel IN ('web', 'app')) AND ("year" BETWEEN 2025 AND (2026 + 1)) AND (NOT (channel IS NULL)))) AS o ,`);
      for (const volatile of ['random() + year * 0 < 0.5', "channel = CASE WHEN random() < 0.5 THEN 'web' END", "lower(channel) = 'web'", 'id > 1', 'big > 5']) {
        expect(await rewrite(`SELECT id * 10 AS big, x FROM orders CROSS JOIN UNNEST(nums) AS u(x) WHERE ${volatile}`)).not.toMatch(/SELECT \* FROM orders/);
      }
    } finally {
      connection.closeSync();
      duck.closeSync();
    }
  });

  test('--csv prints RFC 4180 CSV with a header; nested values as JSON', async () => {
    const { code, stdout } = await query('SELECT event_id, sluice.schema_version AS v, location FROM iot ORDER BY event_id LIMIT 2', '--csv');
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\r\n');
    expect(lines[0]).toBe('event_id,v,location');
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/^[0-9a-f-]{36},1\.0\.0,/);
  });

  test('--csv ends every record with CRLF, the last one too (RFC 4180)', async () => {
    const { code, stdout } = await query("SELECT 'a' AS x, 1 AS n UNION ALL SELECT 'b', 2 ORDER BY n", '--csv');
    expect(code).toBe(0);
    expect(Buffer.from(stdout)).toEqual(Buffer.from('x,n\r\na,1\r\nb,2\r\n'));
  });

  test('timestamps print as Athena gives them, in every output: 2026-12-05 02:18:22.932, with UTC after one with a zone', async () => {
    const { stdout } = await query('SELECT max(event_time) AS latest FROM iot', '--json');
    expect((JSON.parse(stdout) as Array<{ latest: string }>)[0].latest).toMatch(/^2026-11-22 1[12]:\d\d:\d\d\.\d{3}$/);
    const sql = "SELECT TIMESTAMP '2026-12-05 02:18:22.932' AS t, TIMESTAMPTZ '2026-12-05 02:18:22.932Z' AS tz, TIMESTAMP '2026-12-05 02:18:22' AS whole";
    const json = await query(sql, '--json');
    expect(JSON.parse(json.stdout)).toEqual([{ t: '2026-12-05 02:18:22.932', tz: '2026-12-05 02:18:22.932 UTC', whole: '2026-12-05 02:18:22.000' }]);
    const csv = await query(sql, '--csv');
    expect(csv.stdout).toBe('t,tz,whole\r\n2026-12-05 02:18:22.932,2026-12-05 02:18:22.932 UTC,2026-12-05 02:18:22.000\r\n');
    const table = await query(sql);
    expect(table.stdout).toMatch(/\n2026-12-05 02:18:22\.932 +2026-12-05 02:18:22\.932 UTC +2026-12-05 02:18:22\.000\n/);
  });

  test('a query DuckDB refuses exits 1 with its message, no stack trace', async () => {
    const { code, stderr } = await query('SELECT no_such_column FROM iot');
    expect(code).toBe(1);
    expect(stderr).toMatch(/^sluice: DuckDB refused the query: Binder Error: .*no_such_column/);
    expectNoStackTrace(stderr);
    // DuckDB's message spans lines (candidates, the query, a caret); the CLI's is one line.
    const syntax = await query('SELEC count(*) FROM iot');
    expect(syntax.code).toBe(1);
    expect(syntax.stderr).toBe('sluice: DuckDB refused the query: Parser Error: syntax error at or near "SELEC" (LINE 1: SELEC count(*) FROM iot)\n');
  });

  test('--file reads the query from a file', async () => {
    const file = path.join(dataDir, 'q.sql');
    fs.writeFileSync(file, 'SELECT count(*) AS n FROM iot\n');
    const { code, stdout } = await query('--file', file, '--json');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual([{ n: records.length }]);
  });

  test('the query\'s own problems come first, in words: empty, a file that is missing, a directory or longer than Node.js can hold', async () => {
    const elsewhere = ['--data-dir', path.join(os.tmpdir(), 'sluice-no-such-data-dir')];
    // One byte over Node's longest string (buffer.constants.MAX_STRING_LENGTH), sparse: no disk space, and refused unread.
    const tooLong = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-long-query-')), 'q.sql');
    fs.writeFileSync(tooLong, '');
    fs.truncateSync(tooLong, bufferConstants.MAX_STRING_LENGTH + 1);
    const cases: Array<[string[], string]> = [
      [['', ...elsewhere], 'sluice: the query is empty\n'],
      [['--file', '/nonexistent/q.sql', ...elsewhere], 'sluice: cannot read --file /nonexistent/q.sql: no such file\n'],
      [['--file', os.tmpdir(), ...elsewhere], `sluice: cannot read --file ${os.tmpdir()}: it is a directory\n`],
      [['--file', tooLong, ...elsewhere], `sluice: cannot read --file ${tooLong}: it holds more than 536,870,888 bytes (512.0 MiB), the longest text Node.js can hold as one string: give a shorter one\n`],
    ];
    try {
      for (const [args, message] of cases) {
        const { code, stderr } = await sluice('query', ...args);
        expect({ args, code, stderr }).toEqual({ args, code: 2, stderr: message });
      }
    } finally {
      fs.rmSync(path.dirname(tooLong), { recursive: true, force: true });
    }
  });

  test('SQL that starts with a -- comment is the query, not an option, wherever the flags are', async () => {
    const sql = '-- alerts, as a saved query starts\nSELECT count(*) AS n FROM iot WHERE event_type = \'alert\'';
    for (const args of [[sql, '--json'], ['--json', sql]]) {
      const { code, stdout, stderr } = await query(...args);
      expect({ args, code, stderr: code === 0 ? '' : stderr }).toEqual({ args, code: 0, stderr: '' });
      expect(JSON.parse(stdout)).toEqual([{ n: alerts() }]);
    }
  });

  test('the stack\'s saved queries run here too', async () => {
    const list = await query('--list-saved');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/iot: events per event_type per hour \(today, UTC\)/);
    expect(list.stdout).toMatch(/iot: top device_id by events \(today, UTC\)/);

    const saved = await query('--saved', 'iot: top device_id', '--json');
    expect(saved.code).toBe(0);
    expect(Array.isArray(JSON.parse(saved.stdout))).toBe(true);

    const ambiguous = await query('--saved', 'events per event_type');
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/"events per event_type" matches \d+ saved queries; saved queries:\n {2}/);
  });

  test('the saved "failed records by error code" query counts the error objects, by type and Firehose\'s error code', async () => {
    const { code, stdout, stderr } = await query('--saved', 'iot: failed records by error code', '--json');
    expect(stderr).toMatch(/^1|^\d+ rows/);
    expect(code).toBe(0);
    const rows = JSON.parse(stdout) as Array<Record<string, unknown>>;
    expect(rows.map((r) => [r.error_type, r.error_code, r.records])).toEqual([
      ['processing-failed', 'Lambda.ProcessingFailedStatus', 3],
      ['format-conversion-failed', 'DataFormatConversion.ParseError', 2],
      ['processing-failed', 'Lambda.FunctionError', 1],
    ]);
    expect(rows[0].first_arrival).toBe('2026-11-22 12:30:00.000 UTC');
    // Athena's from_unixtime(bigint / 1000): whole seconds.
    expect(rows[0].last_arrival).toBe('2026-11-22 12:30:02.000 UTC');
    expect(rows[0].example_message).toBe('Lambda.ProcessingFailedStatus message');
    // A pipeline without error objects has the table too, empty.
    const none = await query('SELECT count(*) AS n FROM app_events_errors', '--json');
    expect(none.code).toBe(0);
    expect(JSON.parse(none.stdout)).toEqual([{ n: 0 }]);
  });

  test('--max-rows stops reading the result there: a big result is not held to print a few rows', async () => {
    // 3 million rows of 8-byte strings read whole took 13 s and 1.6 GB here; streamed, the first rows only.
    const big = await query("SELECT range AS n, 'x' || range AS s FROM range(3000000)", '--max-rows', '3', '--json');
    expect(big.code).toBe(0);
    expect(JSON.parse(big.stdout)).toEqual([{ n: 0, s: 'x0' }, { n: 1, s: 'x1' }, { n: 2, s: 'x2' }]);
    expect(big.stderr).toMatch(/3 rows \(stopped at --max-rows; the query did not run past them\)/);
    const lake = await query('SELECT event_id FROM iot', '--max-rows', '2');
    expect(lake.code).toBe(0);
    expect(lake.stdout).toMatch(/2 rows \(stopped at --max-rows; the query did not run past them\)/);
  });

  test('a LIMIT query says how many files it read at most', async () => {
    const limited = await query('SELECT event_id FROM iot LIMIT 1');
    expect(limited.code).toBe(0);
    const [, atMost, total] = /1 row · read at most (\d+) of (\d+) Parquet files \(a LIMIT stops reading early\)/.exec(limited.stdout) ?? [];
    expect(Number(atMost)).toBeGreaterThan(0);
    expect(Number(atMost)).toBe(Number(total));
  });

  test('a query that reads no table\'s Parquet (the error objects\' JSON, no table at all) says nothing of Parquet files', async () => {
    for (const sql of ['SELECT count(*) AS n FROM iot_errors', 'SELECT 1 AS one']) {
      const { code, stdout } = await query(sql);
      expect({ sql, code }).toEqual({ sql, code: 0 });
      expect(stdout).toMatch(/\n\n1 row · \d+ ms\n$/);
    }
  });

  test('EXPLAIN prints DuckDB\'s plan as it draws it, line by line', async () => {
    const { code, stdout } = await query("EXPLAIN SELECT count(*) FROM iot WHERE event_type = 'alert'");
    expect(code).toBe(0);
    expect(stdout).not.toContain('\\u000a');
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(/^┌─+┐$/);
    expect(lines).toContainEqual(expect.stringMatching(/^│ +READ_PARQUET +│$/));
    expect(stdout).toMatch(/┘\n\n1 row · \d+ ms\n$/);
  });

  test('a table read more than once (a self-join, UNION ALL) counts its files once', async () => {
    const once = await query('SELECT count(*) AS n FROM iot');
    const [, read, total] = /read (\d+) of (\d+) Parquet files/.exec(once.stdout) ?? [];
    const twice = await query('SELECT count(*) AS n FROM (SELECT event_id FROM iot UNION ALL SELECT event_id FROM iot UNION ALL SELECT event_id FROM iot)');
    expect(twice.code).toBe(0);
    expect(twice.stdout).toContain(`read ${read} of ${total} Parquet files`);
  });

  test('usage mistakes exit 2', async () => {
    expect((await query()).stderr).toMatch(/give a query: npx sluice query "SELECT …"/);
    expect((await query('SELECT 1', '--json', '--csv')).stderr).toMatch(/choose one of --json and --csv/);
    expect((await query('SELECT 1', '--saved', 'x')).stderr).toMatch(/give one of: a SQL argument, --file, --saved, --list-saved/);
    const missing = await sluice('query', 'SELECT 1', '--data-dir', path.join(dataDir, 'nope'));
    expect(missing.code).toBe(2);
    // A plain `local up` would start a twin on .sluice: the hint names the data dir given.
    expect(missing.stderr).toBe(`sluice: no twin data dir at ${path.join(dataDir, 'nope')}: start the twin with \`npx sluice local up --data-dir ${path.join(dataDir, 'nope')}\` (or pass --data-dir / SLUICE_DATA_DIR)\n`);
    expect((await query('SELECT 1', '--region', 'eu-west-1')).stderr).toMatch(/--region applies to a deployed stack; add --aws/);
  });

  test('a directory that is no twin\'s data dir is an error, not a twin with no data, and is left as it was', async () => {
    const other = tempDataDir();
    try {
      fs.writeFileSync(path.join(other, 'notes.txt'), 'x\n');
      const { code, stdout, stderr } = await sluice('query', 'SELECT count(*) FROM iot', '--data-dir', other);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr).toBe(notTwinDataDir(other));
      expect(fs.readdirSync(other)).toEqual(['notes.txt']);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  test('the data dir of a twin that has received nothing yet reads as empty tables', async () => {
    const fresh = tempDataDir();
    try {
      registerTwin(fresh, {});
      const { code, stdout, stderr } = await sluice('query', 'SELECT count(*) AS events FROM iot', '--data-dir', fresh, '--json');
      expect([code, stderr]).toEqual([0, expect.stringMatching(/^1 row · \d+ ms\n$/)]);
      expect(JSON.parse(stdout)).toEqual([{ events: 0 }]);
    } finally {
      fs.rmSync(fresh, { recursive: true, force: true });
    }
  });

  test('a data dir that is a file is an error, not an empty twin', async () => {
    const file = path.join(dataDir, 'q.sql');
    fs.writeFileSync(file, 'SELECT 1\n');
    const { code, stdout, stderr } = await sluice('query', 'SELECT count(*) FROM iot', '--data-dir', file);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^sluice: the data dir .*q\.sql is not a directory: pass the twin's data dir/);
  });
});

describe('sluice query runs one read-only statement and reads only the lake, as Athena does', () => {
  test('COPY … TO is refused and writes nothing, outside the data dir or inside it', async () => {
    const outside = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-copy-')), 'pwn.csv');
    try {
      const { code, stderr } = await query(`COPY (SELECT 42 AS x) TO '${outside}'`);
      expect(code).toBe(1);
      expect(stderr).toBe('sluice: only read-only queries run here, as on Athena (SELECT, WITH … SELECT, DESCRIBE, SHOW, EXPLAIN); this is a COPY statement\n');
      expect(fs.existsSync(outside)).toBe(false);
    } finally {
      fs.rmSync(path.dirname(outside), { recursive: true, force: true });
    }
    const inside = path.join(dataDir, 's3', localBucketName(config), 'pwn.csv');
    const copy = await query(`COPY (SELECT 42 AS x) TO '${inside}'`);
    expect(copy.code).toBe(1);
    expect(copy.stderr).toBe('sluice: only read-only queries run here, as on Athena (SELECT, WITH … SELECT, DESCRIBE, SHOW, EXPLAIN); this is a COPY statement\n');
    // EXPLAIN ANALYZE runs its statement: refused too.
    const analyzed = await query(`EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '${inside}'`);
    expect(analyzed.code).toBe(1);
    expect(analyzed.stderr).toBe('sluice: only read-only queries run here, as on Athena (SELECT, WITH … SELECT, DESCRIBE, SHOW, EXPLAIN); this is an EXPLAIN ANALYZE statement\n');
    expect(fs.existsSync(inside)).toBe(false);
    expect(fs.existsSync(inside)).toBe(false);
  });

  test('table functions cannot read files outside the lake', async () => {
    const secret = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-secret-')), 'secret.csv');
    fs.writeFileSync(secret, 'password\nhunter2\n');
    try {
      for (const sql of [`SELECT * FROM read_csv('${secret}')`, `SELECT * FROM read_text('${secret}')`, `SELECT * FROM glob('${path.dirname(secret)}/*')`]) {
        const { code, stdout, stderr } = await query(sql);
        expect({ sql, code }).toEqual({ sql, code: 1 });
        expect(stdout).not.toMatch(/hunter2|secret/);
        expect(stderr).toMatch(/Permission Error/);
      }
    } finally {
      fs.rmSync(path.dirname(secret), { recursive: true, force: true });
    }
  });

  test('nor files under .tmp/ in the working directory (DuckDB\'s default temp directory, which it allows)', async () => {
    const cwd = process.cwd();
    const here = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-cwd-'));
    fs.mkdirSync(path.join(here, '.tmp'));
    fs.writeFileSync(path.join(here, '.tmp', 'secret.txt'), 'SECRET=hunter2\n');
    process.chdir(here);
    try {
      const { code, stdout, stderr } = await query("SELECT * FROM read_text('.tmp/secret.txt')");
      expect(code).toBe(1);
      expect(stdout).not.toMatch(/hunter2/);
      expect(stderr).toMatch(/Permission Error/);
    } finally {
      process.chdir(cwd);
      fs.rmSync(here, { recursive: true, force: true });
    }
  });

  test('the restriction cannot be switched off from a query', async () => {
    for (const sql of ['SET enable_external_access = true', 'SET lock_configuration = false', "ATTACH 'x.duckdb'", 'CREATE TABLE t AS SELECT 1']) {
      const { code, stderr } = await query(sql);
      expect({ sql, code }).toEqual({ sql, code: 1 });
      expect(stderr).toMatch(/^sluice: (only read-only queries run here|DuckDB refused the query: Permission Error)/);
    }
  });

  test('a statement that writes to a table is refused as one, not with the binder\'s message about views', async () => {
    for (const [sql, kind] of [['DELETE FROM iot', 'a DELETE'], ['INSERT INTO iot SELECT * FROM iot', 'an INSERT'], ['/* tidy */ UPDATE iot SET year = 1', 'an UPDATE']]) {
      const { code, stdout, stderr } = await query(sql);
      expect({ sql, code, stdout }).toEqual({ sql, code: 1, stdout: '' });
      expect(stderr).toBe(`sluice: only read-only queries run here, as on Athena (SELECT, WITH … SELECT, DESCRIBE, SHOW, EXPLAIN); this is ${kind} statement\n`);
    }
  });

  test('a statement is refused by its kind before DuckDB prepares it: a refused EXPORT DATABASE leaves no folder in the lake', async () => {
    const exported = path.join(dataDir, 's3', localBucketName(config), 'exp');
    for (const sql of [`EXPORT DATABASE '${exported}'`, `/* a /* nested */ comment */ -- and a line\n  EXPORT DATABASE '${exported}' (FORMAT parquet)`]) {
      const { code, stdout, stderr } = await query(sql);
      expect({ sql, code, stdout, stderr }).toEqual({ sql, code: 1, stdout: '', stderr: 'sluice: only read-only queries run here, as on Athena (SELECT, WITH … SELECT, DESCRIBE, SHOW, EXPLAIN); this is an EXPORT statement\n' });
      expect(fs.existsSync(exported)).toBe(false);
    }
  });

  test('INSTALL is named as INSTALL (DuckDB\'s type for it is LOAD)', async () => {
    for (const [sql, kind] of [['INSTALL httpfs', 'an INSTALL'], ['force install httpfs', 'a FORCE INSTALL'], ['LOAD httpfs', 'a LOAD']]) {
      const { code, stderr } = await query(sql);
      expect({ sql, code, stderr }).toEqual({ sql, code: 1, stderr: `sluice: only read-only queries run here, as on Athena (SELECT, WITH … SELECT, DESCRIBE, SHOW, EXPLAIN); this is ${kind} statement\n` });
    }
  });

  test('two statements are refused, not run in part', async () => {
    const { code, stdout, stderr } = await query("SELECT 'a' AS x; SELECT 'b' AS y");
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe('sluice: the query has 2 statements; Athena runs one per query, so run them one at a time\n');
  });

  test('comments alone are no statement; EXPLAIN ANALYZE is refused however written', async () => {
    const comment = await query('/* nothing */ -- here\n;');
    expect(comment).toMatchObject({ code: 1, stdout: '', stderr: 'sluice: the query has no statement (only comments)\n' });
    const nested = await query('/* /* */ SELECT 1 */');
    expect(nested).toMatchObject({ code: 1, stdout: '', stderr: 'sluice: DuckDB found no statement in the query (only comments?)\n' });
    // DuckDB nests block comments: "/* /* */ x */" is one comment to it.
    for (const sql of ['/* x */ EXPLAIN ANALYZE SELECT 1', 'EXPLAIN (ANALYZE) SELECT 1', 'explain analyse select 1', 'EXPLAIN /* /* */ x */ ANALYZE SELECT 1',
      'EXPLAIN (FORMAT json, "analyze") SELECT 1', "EXPLAIN /* ' */ ANALYZE /* ' */ SELECT 1"]) {
      const refused = await query(sql);
      expect({ sql, code: refused.code, stderr: refused.stderr }).toEqual({ sql, code: 1, stderr: expect.stringMatching(/this is an EXPLAIN ANALYZE statement\n$/) });
    }
  });

  test('read-only forms other than SELECT still run', async () => {
    for (const sql of ['WITH t AS (SELECT count(*) AS n FROM iot) SELECT n FROM t', 'DESCRIBE iot', 'SHOW TABLES', 'SELECT 1;', 'EXPLAIN SELECT count(*) FROM iot',
      'FROM iot LIMIT 1', 'VALUES (1)', 'TABLE iot', 'SUMMARIZE iot', 'DESC iot', '((SELECT 1)) UNION (SELECT 2)', '/* a /* nested */ comment */ -- a line\n\t( SELECT 1 )',
      'EXPLAIN (FORMAT json) SELECT 1']) {
      const { code } = await query(sql);
      expect({ sql, code }).toEqual({ sql, code: 0 });
    }
  });
});

test('a temp dir that cannot take the query\'s scratch folder is said with what to do (exit 2), not as a bug', () => {
  const { code, stderr, tempDir } = sluiceWithUnusableTempDir('query', 'SELECT 1', '--data-dir', dataDir);
  expect({ code, stderr }).toEqual({ code: 2, stderr: `sluice: the temp dir ${tempDir} cannot take the query's scratch folder (ENOTDIR): set TMPDIR to a folder you can write\n` });
});

test('Ctrl-C during a local query exits 130 and leaves no scratch folder (profile, spill files) behind', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sigint-'));
  try {
    const child = spawn(process.execPath, [path.join(__dirname, '..', '..', 'bin', 'sluice.js'), 'query', '--data-dir', dataDir, 'SELECT sum(hash(x)) FROM range(50000000000) t(x)'],
      { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    const scratch = () => fs.readdirSync(tmp).filter((f) => f.startsWith('sluice-query-'));
    // The CLI's start (tsx, DuckDB) took over 20 s once on a machine loaded with other test runs: 40 s, within the test's 60.
    for (const deadline = Date.now() + 40_000; scratch().length === 0 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 50));
    expect(scratch()).toHaveLength(1);
    // The query is running now (its folder is made just before it starts); give it a moment more.
    await new Promise((r) => setTimeout(r, 500));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(Buffer.concat(err).toString('utf8')).toMatch(/sluice: interrupted \(Ctrl-C\)\n$/);
    expect(scratch()).toEqual([]);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}, 60_000);

describe('no signal leaves a local query\'s scratch folder behind', () => {
  const bin = path.join(__dirname, '..', '..', 'bin', 'sluice.js');
  const SLOW_SQL = 'SELECT sum(hash(x)) FROM range(50000000000) t(x)';
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-signals-'));
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const scratch = () => fs.readdirSync(tmp).filter((f) => f.startsWith('sluice-query-'));

  /** `sluice query` with its scratch folder made under `tmp`: how it ended, and its stderr. */
  function spawnQuery(sql: string) {
    const child = spawn(process.execPath, [bin, 'query', '--data-dir', dataDir, sql], { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stderr })));
    return { child, ended };
  }

  /** Waits until the slow query runs: its folder is made just before it starts; a moment more. (40 s: see above.) */
  async function whileRunning(): Promise<void> {
    for (const deadline = Date.now() + 40_000; scratch().length === 0 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 50));
    expect(scratch()).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 500));
  }

  test('a query DuckDB refuses leaves nothing either', async () => {
    const refused = spawnQuery('SELECT * FROM no_such_table');
    expect((await refused.ended).code).toBe(1);
    expect(scratch()).toEqual([]);
  }, 60_000);

  test('SIGTERM while DuckDB runs a query: it ends by SIGTERM at once, the folder removed first', async () => {
    const { child, ended } = spawnQuery(SLOW_SQL);
    await whileRunning();
    child.kill('SIGTERM');
    expect(await ended).toEqual({ code: null, signal: 'SIGTERM', stderr: '' });
    expect(scratch()).toEqual([]);
  }, 60_000);

  test('a second Ctrl-C right after the first, while DuckDB runs a query: one sluice: line, exit 130 or by SIGINT, the folder removed', async () => {
    const { child, ended } = spawnQuery(SLOW_SQL);
    await whileRunning();
    child.kill('SIGINT');
    child.kill('SIGINT');
    const { code, signal, stderr } = await ended;
    // The second may be taken with the first (signals pending together are one), or while the first is handled.
    expect(code === 130 || signal === 'SIGINT').toBe(true);
    expect(stderr.match(/sluice: interrupted/g)).toHaveLength(1);
    expect(stderr).toMatch(/sluice: interrupted \(Ctrl-C\)\n$/);
    expect(scratch()).toEqual([]);
  }, 60_000);

  test('Ctrl-C or SIGTERM at any moment of a query (loading, opening DuckDB, defining views, printing, closing) leaves nothing', async () => {
    // Quick queries, each interrupted at another moment from just after the start to after the end; two at a time.
    const moments = [300, 500, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1600, 1800, 2100, 2500];
    const outcomes: Array<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> = [];
    for (let i = 0; i < moments.length; i += 2) {
      outcomes.push(...await Promise.all(moments.slice(i, i + 2).map(async (ms, j) => {
        const { child, ended } = spawnQuery('SELECT event_type, count(*) AS n FROM iot GROUP BY 1');
        setTimeout(() => child.kill(j === 0 ? 'SIGINT' : 'SIGTERM'), ms);
        return ended;
      })));
      expect(scratch()).toEqual([]);
    }
    for (const outcome of outcomes) {
      // Done before the signal (0), stopped by Ctrl-C (130, or by the signal while loading), or ended by SIGTERM.
      expect([0, 130, null]).toContain(outcome.code);
      expectNoStackTrace(outcome.stderr);
    }
  }, 90_000);
});

test('Ctrl-C while --file - waits for a producer that pauses (the pipe open, nothing written): ends at once, exit 130 or by the signal', async () => {
  const preloadDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-preload-'));
  try {
    // The Ctrl-C goes once the CLI reads standard input (a listener for its data), which a preload tells on fd 3, rather
    // than after a fixed wait that a busy machine may not cover and an idle one spends doing nothing.
    const preload = path.join(preloadDir, 'tell-stdin-read.js');
    fs.writeFileSync(preload, "process.stdin.on('newListener', (event) => { if (event === 'readable' || event === 'data') require('node:fs').writeSync(3, 'reading\\n'); });\n");
    const child = spawn(process.execPath, ['--require', preload, path.join(__dirname, '..', '..', 'bin', 'sluice.js'), 'query', '--data-dir', dataDir, '--file', '-'],
      { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.stdin!.on('error', () => undefined);
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (code, signal) => resolve([code, signal])));
    const reading = await within(new Promise((resolve) => child.stdio[3]!.once('data', resolve)), 20_000, 'not reading');
    expect(reading).not.toBe('not reading');
    // A moment more, so the read is under way: the producer has paused.
    await new Promise((resolve) => setTimeout(resolve, 200));
    child.kill('SIGINT');
    const ended = await within(exited, 3_000, 'hung');
    child.stdin!.destroy();
    if (ended === 'hung') child.kill('SIGKILL');
    expect(ended === 'hung' ? ended : ended[0] === 130 || ended[1] === 'SIGINT').toBe(true);
    expect(stderr).toBe('sluice: interrupted (Ctrl-C)\n');
  } finally {
    fs.rmSync(preloadDir, { recursive: true, force: true });
  }
}, 30_000);

test('Ctrl-C before the query runs (while the CLI loads): the query never runs; the one sluice: line, exit 130 or by the signal', async () => {
  const preloadDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-preload-'));
  try {
    // The Ctrl-C goes as soon as bin/sluice.js listens for it, which a preload tells on fd 3: a fixed 300 ms once
    // came before that on a busy machine (Node itself had not started), and Node's default ended the process silently.
    const preload = path.join(preloadDir, 'tell-sigint-listener.js');
    fs.writeFileSync(preload, "process.on('newListener', (event) => { if (event === 'SIGINT') require('node:fs').writeSync(3, 'listening\\n'); });\n");
    const child = spawn(process.execPath, ['--require', preload, path.join(__dirname, '..', '..', 'bin', 'sluice.js'), 'query', '--data-dir', dataDir, 'SELECT 1'],
      { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    const err: Buffer[] = [];
    const out: Buffer[] = [];
    child.stderr!.on('data', (chunk: Buffer) => err.push(chunk));
    child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (code, signal) => resolve([code, signal])));
    // Loading the CLI (TypeScript through tsx) takes most of a second after that. Node takes the signal by bin/sluice.js's
    // handler (by the signal), or by the query engine's when that is in place by then (130).
    await Promise.race([new Promise((resolve) => child.stdio[3]!.once('data', resolve)), exited]);
    child.kill('SIGINT');
    const [code, signal] = await exited;
    expect(code === 130 || signal === 'SIGINT').toBe(true);
    expect(Buffer.concat(err).toString('utf8')).toBe('sluice: interrupted (Ctrl-C)\n');
    expect(Buffer.concat(out).toString('utf8')).toBe('');
  } finally {
    fs.rmSync(preloadDir, { recursive: true, force: true });
  }
}, 30_000);

describe('sluice query runs in UTC, as Athena does, whatever the machine\'s time zone', () => {
  /** `sluice <args>` as a new process with this TZ: DuckDB takes its zone from the process environment when it starts. */
  const sluiceIn = (tz: string, ...args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, '..', '..', 'bin', 'sluice.js'), ...args], { env: { ...process.env, TZ: tz }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });

  test('now() and current_date are UTC\'s in UTC+14: the last hour\'s events count, today is UTC\'s today', async () => {
    const dir = tempDataDir();
    try {
      // Event times in the hour before now.
      const recent = sampleRecords(readSchema('iot'), 20, 3).map((r) => Buffer.from(JSON.stringify(r)));
      const landed = await deliverToLake(dir, 'iot', recent);
      expect(landed).toBeGreaterThan(0);
      const before = new Date().toISOString().slice(0, 10);
      const { code, stdout, stderr } = await sluiceIn('Pacific/Kiritimati', 'query', '--json', '--data-dir', dir,
        "SELECT count(*) AS last_hours, CAST(current_date AS VARCHAR) AS today FROM iot WHERE event_time > now() - INTERVAL 2 HOUR");
      const after = new Date().toISOString().slice(0, 10);
      expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
      const [row] = JSON.parse(stdout) as Array<{ last_hours: number; today: string }>;
      expect(row.last_hours).toBe(landed);
      expect([before, after]).toContain(row.today);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sluice query reads the tables as Athena does through Glue when the files and the schema differ', () => {
  let dir: string;
  const inDir = (...args: string[]) => sluice('query', ...args, '--data-dir', dir);
  const iot = (n: number, seed: number) => sampleRecords(readSchema('iot'), n, seed, { now: NOW }).map((r) => Buffer.from(JSON.stringify(r)));
  beforeEach(() => {
    dir = tempDataDir();
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a column the schema gained that no file has yet reads as NULL of its type; queries on other tables are untouched', async () => {
    // Files from before uptime_s and location were added to the schema.
    const older = await deliverToLake(dir, 'iot', iot(40, 5), NOW.getTime(), { withoutColumns: ['uptime_s', 'location'] });
    const appEvents = await deliverToLake(dir, 'app-events', sampleRecords(readSchema('app-events'), 10, 6, { now: NOW }).map((r) => Buffer.from(JSON.stringify(r))), NOW.getTime());
    const sql = 'SELECT count(*) AS n, count(uptime_s) AS uptimes, count(location.lat) AS located, typeof(any_value(uptime_s)) AS uptime_type FROM iot';
    const before = await inDir(sql, '--json');
    expect({ code: before.code, stderr: before.code === 0 ? '' : before.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(before.stdout)).toEqual([{ n: older, uptimes: 0, located: 0, uptime_type: 'BIGINT' }]);
    const other = await inDir('SELECT count(*) AS n FROM app_events', '--json');
    expect(JSON.parse(other.stdout)).toEqual([{ n: appEvents }]);
    // Partition filters still prune the scan.
    const pruned = await inDir("SELECT count(*) AS n FROM iot WHERE event_type = 'alert'");
    const [, read, total] = /read (\d+) of (\d+) Parquet files/.exec(pruned.stdout) ?? [];
    expect(Number(read)).toBeGreaterThan(0);
    expect(Number(read)).toBeLessThan(Number(total));

    // Files written since have the columns: both generations read together.
    const newer = await deliverToLake(dir, 'iot', iot(40, 8), NOW.getTime());
    const after = await inDir(sql, '--json');
    const [row] = JSON.parse(after.stdout) as Array<{ n: number; uptimes: number; located: number }>;
    expect(row.n).toBe(older + newer);
    expect(row.uptimes).toBeGreaterThan(0);
    expect(row.uptimes).toBeLessThanOrEqual(newer);
  });

  test('a string partition value "null" reads as the string \'null\', as on Athena, not as SQL NULL; filters on it still prune', async () => {
    // On a partition key without an enum (Athena projects it as injected), where "null" is a value like any other: the
    // transform's sanitizer makes it of a producer's "null". An enum-projected key shows only the values its enum lists.
    const project = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-null-partition-'));
    try {
      fs.mkdirSync(path.join(project, 'schemas'));
      fs.copyFileSync(path.resolve(__dirname, '../../cdk.json'), path.join(project, 'cdk.json'));
      fs.writeFileSync(path.join(project, 'schemas', 'orders.schema.json'), JSON.stringify(regionalSchema()));
      const orders = loadConfig(['pipelines={"orders":{"source":"direct-put","destinations":["lake"]}}'], project);
      // app-events' files hold the orders table's columns: its region is a partition key, in the path only.
      await deliverToLake(dir, 'app-events', sampleRecords(readSchema('app-events'), 20, 6, { now: NOW }).map((r) => Buffer.from(JSON.stringify(r))), NOW.getTime());
      const appEvents = path.join(dir, 's3', localBucketName(config), 'data', 'app-events');
      const [file] = fs.readdirSync(appEvents, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.parquet'));
      for (const region of ['eu', 'null']) {
        const copy = path.join(project, 'data', 's3', localBucketName(orders), 'data', 'orders', `region=${region}`, 'event_type=signup', 'year=2026', 'month=11', 'day=22', 'hour=12', 'x.parquet');
        fs.mkdirSync(path.dirname(copy), { recursive: true });
        fs.copyFileSync(path.join(appEvents, file), copy);
      }
      const athena = await LocalAthena.open(path.join(project, 'data'), orders, { schemaDir: path.join(project, 'schemas') });
      try {
        const grouped = await athena.query("SELECT region, count(*) AS n FROM orders WHERE region IN ('eu', 'null') GROUP BY 1 ORDER BY 1");
        const [[eu, inFile]] = grouped.rows as Array<[string, bigint]>;
        expect(eu).toBe('eu');
        expect(inFile).toBeGreaterThan(0n);
        expect(grouped.rows).toEqual([['eu', inFile], ['null', inFile]]);
        const named = await athena.query("SELECT count(*) AS n FROM orders WHERE region = 'null'");
        expect(named.rows).toEqual([[inFile]]);
        expect({ read: named.filesRead, total: named.filesTotal }).toEqual({ read: 1, total: 2 });
      } finally {
        athena.close();
      }
    } finally {
      fs.rmSync(project, { recursive: true, force: true });
    }
  });

  test('files under an enum partition value the schema no longer lists do not show, as Athena\'s enum projection leaves them out; filters still prune', async () => {
    const landed = await deliverToLake(dir, 'app-events', sampleRecords(readSchema('app-events'), 20, 6, { now: NOW }).map((r) => Buffer.from(JSON.stringify(r))), NOW.getTime());
    const data = path.join(dir, 's3', localBucketName(config), 'data', 'app-events');
    const [file] = fs.readdirSync(data, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.parquet'));
    // A value removed from event_type's enum since its files were written, and the folder of a producer's "null".
    for (const value of ['retired', 'null']) {
      const copy = path.join(data, `event_type=${value}`, 'year=2026', 'month=11', 'day=22', 'hour=12', 'x.parquet');
      fs.mkdirSync(path.dirname(copy), { recursive: true });
      fs.copyFileSync(path.join(data, file), copy);
    }
    const all = await inDir("SELECT count(*) AS n, count(*) FILTER (WHERE event_type IN ('retired', 'null')) AS unlisted FROM app_events", '--json');
    expect({ code: all.code, stderr: all.code === 0 ? '' : all.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(all.stdout)).toEqual([{ n: landed, unlisted: 0 }]);
    const named = await inDir("SELECT count(*) AS n FROM app_events WHERE event_type = 'retired'", '--json');
    expect(JSON.parse(named.stdout)).toEqual([{ n: 0 }]);
    // A filter on a listed value reads only that value's files; the table's files are the listed values' (not the 2 copies).
    const [folder] = file.split(path.sep);
    const under = fs.readdirSync(path.join(data, folder), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.parquet')).length;
    const tableFiles = fs.readdirSync(data, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.parquet')).length - 2;
    const listed = await inDir(`SELECT count(*) AS n FROM app_events WHERE event_type = '${folder.slice('event_type='.length)}'`);
    expect(listed.stdout).toMatch(new RegExp(`read ${under} of ${tableFiles} Parquet files`));
  });

  test('a table with an unreadable file fails alone, saying which file; the other tables still answer', async () => {
    const landed = await deliverToLake(dir, 'iot', iot(20, 9), NOW.getTime());
    const broken = path.join(dir, 's3', localBucketName(config), 'data', 'app-events', 'event_type=signup', 'year=2026', 'month=11', 'day=22', 'hour=12', 'truncated.parquet');
    fs.mkdirSync(path.dirname(broken), { recursive: true });
    fs.writeFileSync(broken, 'PAR1');
    const ok = await inDir('SELECT count(*) AS n FROM iot', '--json');
    expect({ code: ok.code, stderr: ok.code === 0 ? '' : ok.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(ok.stdout)).toEqual([{ n: landed }]);
    for (const sql of ['SELECT count(*) FROM app_events', "SELECT count(*) FROM app_events WHERE event_type = 'signup' AND user_id = 'x'"]) {
      const failed = await inDir(sql);
      expect({ sql, code: failed.code }).toEqual({ sql, code: 1 });
      expect(failed.stderr).toMatch(/^sluice: DuckDB refused the query: .*table sluice_dev\.app_events cannot be read: .*truncated\.parquet.*\(queries on the other tables still run\)\n$/);
    }
  });

  /** A copy of one of iot's files with its columns as `replace` gives them (DuckDB's SELECT * REPLACE), in another hour's folder. */
  async function rewrittenIotFile(replace: string, eventType = 'alert', hour = 13, extraColumns = ''): Promise<string> {
    const data = path.join(dir, 's3', localBucketName(config), 'data', 'iot');
    const [file] = fs.readdirSync(data, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.parquet') && !f.includes('rewritten'));
    const copy = path.join(data, `event_type=${eventType}`, 'year=2026', 'month=11', 'day=22', `hour=${hour}`, 'rewritten.parquet');
    fs.mkdirSync(path.dirname(copy), { recursive: true });
    const instance = await DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    try {
      await connection.run(`COPY (SELECT * REPLACE (${replace})${extraColumns} FROM read_parquet('${path.join(data, file)}')) TO '${copy}' (FORMAT parquet)`);
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
    return copy;
  }

  test('a file whose column has a type Athena would not read as the table\'s fails the queries that read that column from it, naming the file, the column and both types; the others answer', async () => {
    const landed = await deliverToLake(dir, 'iot', iot(20, 9), NOW.getTime());
    const cases: Array<[replace: string, column: string, expected: RegExp]> = [
      // A string column written as numbers (a schema that went number → string).
      ['CAST(length(device_id) AS DOUBLE) AS device_id', 'device_id', /column device_id is DOUBLE in s3:\/\/[^ ]+\/data\/iot\/event_type=alert\/year=2026\/month=11\/day=22\/hour=13\/rewritten\.parquet and string in the table/],
      // int → a wider file type (integer → number, bigint).
      ['CAST(battery_pct AS BIGINT) AS battery_pct', 'battery_pct', /column battery_pct is BIGINT in s3:.* and int in the table/],
      ['CAST(battery_pct AS DOUBLE) AS battery_pct', 'battery_pct', /column battery_pct is DOUBLE in s3:.* and int in the table/],
      // Nested: a struct field of another type.
      ["{'lat': CAST(location.lat AS VARCHAR), 'lon': location.lon} AS location", 'location', /column location\.lat is VARCHAR in s3:.* and double in the table/],
    ];
    for (const [replace, column, expected] of cases) {
      const counted = async (sql: string) => (JSON.parse((await inDir(sql, '--json')).stdout) as Array<{ n: number }>)[0].n;
      const before = await counted(`SELECT count(${column}) AS n FROM iot`);
      const file = await rewrittenIotFile(replace);
      const copied = await rowsIn(file);
      const failed = await inDir(`SELECT count(${column}) FROM iot`);
      expect({ replace, code: failed.code }).toEqual({ replace, code: 1 });
      expect(failed.stderr).toMatch(/^sluice: DuckDB refused the query: .*HIVE_BAD_DATA as on Athena: /);
      expect(failed.stderr).toMatch(expected);
      expect(failed.stderr).toMatch(/fails a query that reads it from that file\. .*Changing a schema"\)\n$/);
      // A filter on the column reads it too.
      expect((await inDir(`SELECT count(*) FROM iot WHERE ${column} IS NULL`)).code).toBe(1);
      // As on Athena: the queries that do not read that column from that file answer (other partitions, other columns).
      const others = await inDir(`SELECT count(${column}) AS n FROM iot WHERE hour <> 13`, '--json');
      expect({ replace, code: others.code, stderr: others.code === 0 ? '' : others.stderr }).toEqual({ replace, code: 0, stderr: '' });
      expect(JSON.parse(others.stdout)).toEqual([{ n: before }]);
      expect(await counted('SELECT count(event_id) AS n FROM iot')).toBe(landed + copied);
      fs.rmSync(file);
    }
    // Two files written with the same wrong type: the error names the one the query reads; a column that is NULL in every
    // row of a file still fails (Athena judges the file's column type, not its values).
    await rewrittenIotFile('CAST(NULL AS VARCHAR) AS battery_pct', 'alert', 13);
    await rewrittenIotFile('CAST(battery_pct AS VARCHAR) AS battery_pct', 'alert', 14);
    const later = await rewrittenIotFile('CAST(battery_pct AS VARCHAR) AS battery_pct', 'alert', 15);
    const allNull = await inDir('SELECT count(battery_pct) FROM iot WHERE hour = 13');
    expect({ code: allNull.code }).toEqual({ code: 1 });
    expect(allNull.stderr).toMatch(/column battery_pct is VARCHAR in s3:\/\/[^ ]+\/hour=13\/rewritten\.parquet and int in the table/);
    const second = await inDir('SELECT max(battery_pct) FROM iot WHERE hour = 15');
    expect({ code: second.code }).toEqual({ code: 1 });
    expect(second.stderr).toMatch(/column battery_pct is VARCHAR in s3:\/\/[^ ]+\/hour=15\/rewritten\.parquet and int in the table/);
    // A file with a column of its own named filename (one the schema dropped) is named all the same, and hides nothing.
    await rewrittenIotFile('CAST(battery_pct AS VARCHAR) AS battery_pct', 'alert', 16, ', 42 AS filename');
    const own = await inDir('SELECT max(battery_pct) FROM iot WHERE hour = 16');
    expect(own.stderr).toMatch(/column battery_pct is VARCHAR in s3:\/\/[^ ]+\/hour=16\/rewritten\.parquet and int in the table/);
    const elsewhere = await inDir('SELECT count(*) AS n FROM iot WHERE hour = 16', '--json');
    expect({ code: elsewhere.code, stderr: elsewhere.code === 0 ? '' : elsewhere.stderr }).toEqual({ code: 0, stderr: '' });
    for (const hour of [13, 14, 15, 16]) fs.rmSync(path.join(path.dirname(path.dirname(later)), `hour=${hour}`), { recursive: true, force: true });
    // Under an event type the enum does not list, Athena's projection never reads the file: neither does the check.
    await rewrittenIotFile('CAST(battery_pct AS DOUBLE) AS battery_pct', 'retired');
    const ok = await inDir('SELECT count(*) AS n FROM iot', '--json');
    expect({ code: ok.code, stderr: ok.code === 0 ? '' : ok.stderr }).toEqual({ code: 0, stderr: '' });
  });

  test('types Athena reads as the table\'s (a narrower integer, FLOAT as DOUBLE) read as the table\'s type, DESCRIBE gives the schema\'s types, and a struct field the schema removed does not show', async () => {
    const landed = await deliverToLake(dir, 'iot', iot(20, 9), NOW.getTime());
    await rewrittenIotFile("CAST(uptime_s AS INTEGER) AS uptime_s, CAST(temperature_c AS FLOAT) AS temperature_c, CAST(battery_pct AS SMALLINT) AS battery_pct, {'lat': location.lat, 'lon': location.lon, 'alt': 1.5} AS location");
    const sql = 'SELECT count(*) AS n, typeof(any_value(uptime_s)) AS uptime, typeof(any_value(temperature_c)) AS temperature, typeof(any_value(battery_pct)) AS battery,'
      + ' typeof(any_value(location)) AS location FROM iot';
    const { code, stdout, stderr } = await inDir(sql, '--json');
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
    const [row] = JSON.parse(stdout) as Array<{ n: number }>;
    expect(row).toEqual({ n: expect.any(Number), uptime: 'BIGINT', temperature: 'DOUBLE', battery: 'INTEGER', location: 'STRUCT(lat DOUBLE, lon DOUBLE)' });
    expect(row.n).toBeGreaterThan(landed);

    const model = loadModel('iot');
    const described = await inDir('DESCRIBE iot', '--json');
    const types = Object.fromEntries((JSON.parse(described.stdout) as Array<{ column_name: string; column_type: string }>).map((c) => [c.column_name, c.column_type]));
    for (const c of model.tableColumns) expect({ column: c.name, type: types[c.name].replace(/"/g, '') }).toEqual({ column: c.name, type: duckDbType(c.type).replace(/"/g, '') });
  });

  test('the errors table keeps answering with error objects that hold lines over 16 MiB: such a line gives no row, the others read as Athena reads them', async () => {
    const folder = path.join(dir, 's3', localBucketName(config), 'errors', 'iot', 'processing-failed', '2026', '11', '22', '12');
    fs.mkdirSync(folder, { recursive: true });
    const line = (errorCode: string, rawData = 'e30=') => JSON.stringify({ attemptsMade: 1, arrivalTimestamp: NOW.getTime(), errorCode, errorMessage: 'm', rawData });
    const padded = (errorCode: string, bytes: number) => line(errorCode, 'A'.repeat(bytes - line(errorCode, '').length));
    const MiB = 1024 * 1024;
    fs.writeFileSync(path.join(folder, 'long-lines'), [
      line('first'), 'not JSON', '', padded('8-MiB', MAX_ERROR_LINE_BYTES), padded('9-MiB', 9 * MiB), 'y'.repeat(17 * MiB), line('last'),
    ].join('\n'));
    // 20 MiB without a line break, as in a damaged object: with it in the prefix, every query of the table failed.
    fs.writeFileSync(path.join(folder, 'no-line-break'), Buffer.alloc(20 * MiB, 'x'));
    fs.writeFileSync(path.join(folder, 'small.gz'), gzipSync(`${line('gzip')}\n`));
    // Gzip without `.gz`: read as text, as Athena's text input reads it (the failure router, which looks at the bytes, routes its lines).
    fs.writeFileSync(path.join(folder, 'gzip-without-extension'), gzipSync(`${line('hidden')}\n`.repeat(100)));

    const { code, stdout, stderr } = await inDir('SELECT errorcode, length(rawdata) AS raw, regexp_extract("$path", \'[^/]+$\') AS object FROM iot_errors'
      + ' WHERE "$path" NOT LIKE \'%/gzip-without-extension\' ORDER BY object, raw, errorcode', '--json');
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.parse(stdout)).toEqual([
      { errorcode: 'first', raw: 4, object: 'long-lines' },
      { errorcode: 'last', raw: 4, object: 'long-lines' },
      { errorcode: '8-MiB', raw: MAX_ERROR_LINE_BYTES - line('8-MiB', '').length, object: 'long-lines' },
      { errorcode: '9-MiB', raw: 9 * MiB - line('9-MiB', '').length, object: 'long-lines' },
      // A line that is not JSON: a row of NULLs, as the stack's JsonSerDe with ignore.malformed.json gives it.
      { errorcode: null, raw: null, object: 'long-lines' },
      { errorcode: 'gzip', raw: 4, object: 'small.gz' },
    ]);
    const hidden = await inDir('SELECT count(errorcode) AS records FROM iot_errors WHERE "$path" LIKE \'%/gzip-without-extension\'', '--json');
    expect(JSON.parse(hidden.stdout)).toEqual([{ records: 0 }]);
  });
});

describe('sluice query works in any data dir path', () => {
  test('one with a key=value folder (year=1999) reads the partitions of its own files\' paths', async () => {
    const parent = tempDataDir();
    try {
      // DuckDB's hive partitioning takes the first key=value folder of the whole path: every row's year read 1999.
      const dir = path.join(parent, 'year=1999', 'event_type=x', 'dd');
      const landed = await deliverToLake(dir, 'iot', sampleRecords(readSchema('iot'), 30, 12, { now: NOW }).map((r) => Buffer.from(JSON.stringify(r))), NOW.getTime());
      const { code, stdout, stderr } = await sluice('query', 'SELECT year, count(*) AS n, count(DISTINCT event_type) > 1 AS types FROM iot GROUP BY 1', '--data-dir', dir, '--json');
      expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: expect.any(String) });
      expect(JSON.parse(stdout)).toEqual([{ year: 2026, n: landed, types: true }]);
      const pruned = await sluice('query', 'SELECT count(*) AS n FROM iot WHERE year = 2026', '--data-dir', dir);
      const [, read, total] = /read (\d+) of (\d+) Parquet files/.exec(pruned.stdout) ?? [];
      expect(Number(read)).toBeGreaterThan(0);
      expect(read).toBe(total);
    } finally {
      fs.rmSync(parent, { recursive: true, force: true });
    }
  });

  test('one with glob characters, a backslash, a comma and a quote reads its own files, pruned, not a sibling\'s', async () => {
    const parent = tempDataDir();
    try {
      // DuckDB reads [x] as a character class: "br[x]" matched the sibling "brx", or nothing.
      const dir = path.join(parent, "br[x] *?\\, it's");
      const landed = await deliverToLake(dir, 'iot', sampleRecords(readSchema('iot'), 30, 12, { now: NOW }).map((r) => Buffer.from(JSON.stringify(r))), NOW.getTime());
      await deliverToLake(path.join(parent, 'brx'), 'iot', sampleRecords(readSchema('iot'), 5, 13, { now: NOW }).map((r) => Buffer.from(JSON.stringify(r))), NOW.getTime());
      const errorObject = path.join(dir, 's3', localBucketName(config), 'errors', 'iot', 'processing-failed', '2026', '11', '22', '12', 'sluice-dev-iot-lake-1-x');
      fs.mkdirSync(path.dirname(errorObject), { recursive: true });
      fs.writeFileSync(errorObject, `${JSON.stringify({ attemptsMade: 1, arrivalTimestamp: NOW.getTime(), errorCode: 'Lambda.FunctionError', errorMessage: 'm', rawData: 'e30=' })}\n`);

      const all = await sluice('query', 'SELECT count(*) AS n FROM iot', '--data-dir', dir);
      expect({ code: all.code, stderr: all.code === 0 ? '' : all.stderr }).toEqual({ code: 0, stderr: '' });
      expect(all.stdout).toMatch(new RegExp(`n\\n─+\\n\\s*${landed}\\n`));
      const [, read, total] = /read (\d+) of (\d+) Parquet files/.exec(all.stdout) ?? [];
      expect(Number(read)).toBe(Number(total));
      const alerts = await sluice('query', "SELECT count(*) AS n FROM iot WHERE event_type = 'alert'", '--data-dir', dir);
      const [, prunedRead, prunedTotal] = /read (\d+) of (\d+) Parquet files/.exec(alerts.stdout) ?? [];
      expect(Number(prunedRead)).toBeGreaterThan(0);
      expect(Number(prunedRead)).toBeLessThan(Number(total));
      expect(prunedTotal).toBe(total);
      // A scan is matched to its table by the folder of the files DuckDB names.
      const limited = await sluice('query', 'SELECT event_id FROM iot LIMIT 1', '--data-dir', dir);
      expect(limited.stdout).toContain(`read at most ${total} of ${total} Parquet files`);
      const errors = await sluice('query', 'SELECT count(*) AS n, any_value("$path") AS p FROM iot_errors', '--data-dir', dir, '--json');
      expect(JSON.parse(errors.stdout)).toEqual([{ n: 1, p: `s3://${localBucketName(config)}/errors/iot/processing-failed/2026/11/22/12/sluice-dev-iot-lake-1-x` }]);
      // A file of a column type Athena would not read is named by its key too, whatever the data dir's path holds.
      const data = path.join(dir, 's3', localBucketName(config), 'data', 'iot');
      const [first] = fs.readdirSync(data, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.parquet'));
      const plain = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-rewrite-'));
      try {
        fs.copyFileSync(path.join(data, first), path.join(plain, 'in.parquet'));
        const instance = await DuckDBInstance.create(':memory:');
        const connection = await instance.connect();
        await connection.run(`COPY (SELECT * REPLACE (CAST(battery_pct AS VARCHAR) AS battery_pct) FROM read_parquet('${path.join(plain, 'in.parquet')}')) TO '${path.join(plain, 'out.parquet')}' (FORMAT parquet)`);
        connection.closeSync();
        instance.closeSync();
        const bad = path.join(data, 'event_type=alert', 'year=2026', 'month=11', 'day=22', 'hour=13', 'bad.parquet');
        fs.mkdirSync(path.dirname(bad), { recursive: true });
        fs.copyFileSync(path.join(plain, 'out.parquet'), bad);
        const refused = await sluice('query', 'SELECT max(battery_pct) FROM iot WHERE hour = 13', '--data-dir', dir);
        expect({ code: refused.code }).toEqual({ code: 1 });
        expect(refused.stderr).toContain(`column battery_pct is VARCHAR in s3://${localBucketName(config)}/data/iot/event_type=alert/year=2026/month=11/day=22/hour=13/bad.parquet and int in the table`);
        fs.rmSync(path.dirname(bad), { recursive: true });
      } finally {
        fs.rmSync(plain, { recursive: true, force: true });
      }

      // DuckDB expands globs even in a list of file names: with a sibling holding the same relative paths,
      // "glob[x]/…/f.parquet" named "globx/…/f.parquet" (and the query failed, outside the allowed directory).
      const bare = path.join(parent, 'glob[x]');
      const bareLanded = await deliverToLake(bare, 'iot', sampleRecords(readSchema('iot'), 20, 14, { now: NOW }).map((r) => Buffer.from(JSON.stringify(r))), NOW.getTime());
      fs.cpSync(bare, path.join(parent, 'globx'), { recursive: true });
      const own = await sluice('query', 'SELECT count(*) AS n FROM iot', '--data-dir', bare, '--json');
      expect({ code: own.code, stderr: own.stderr, rows: own.code === 0 ? JSON.parse(own.stdout) as unknown : undefined }).toEqual({ code: 0, stderr: expect.any(String), rows: [{ n: bareLanded }] });
    } finally {
      fs.rmSync(parent, { recursive: true, force: true });
    }
  });
});
