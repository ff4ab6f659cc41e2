import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../../lib/config';
import { Progress } from '../../lib/cli/progress';
import type { SearchBackend, SearchResponseBody } from '../../lib/cli/search-backend';
import type { SqlEngine, SqlResult } from '../../lib/cli/sql';
import { defaultVerifyTimeoutMs, lakeVerifySql, verifyBulkFiles, verifyLake, verifySearch, type ExpectedRecord } from '../../lib/cli/verify';
import { openSearchDir } from '../../lib/local/paths';
import { resolveTarget, twinBufferIntervalSeconds, type LocalTarget } from '../../lib/cli/target';
import { registerTwin, tempDataDir } from './helpers';
import { pipelineSchema } from '../../transforms/shared/pipeline';
import { describeSchema } from '../../lib/schema';
import { regionalSchema } from '../schema/regional-schema';

/**
 * `put --verify` counts only what arrived since the put started (less a clock tolerance): the same records put again
 * have the same ids, and the earlier put's rows and documents must not pass for this one's.
 */
const config = loadConfig();
const model = pipelineSchema('clickstream').model;
const expected: ExpectedRecord[] = [{ id: 'e-1', partitionKeys: {} }, { id: 'e-2', partitionKeys: {} }];
const startedAt = Date.parse('2026-12-03T18:00:00.000Z');
const options = { timeoutMs: 0, pollMs: 10, progress: new Progress({ forced: false }), startedAt, clockToleranceMs: 1000 };

test('the lake query asks for rows that arrived since the put started, less the tolerance', () => {
  const sql = lakeVerifySql(model, 'db', 'clickstream', expected, { from: startedAt - 1000 });
  expect(sql).toMatch(/^SELECT DISTINCT "event_id" AS id FROM "db"\."clickstream" WHERE "sluice"\."arrival_time" >= TIMESTAMP '2026-12-03 17:59:59\.000' AND "event_id" IN \('e-1', 'e-2'\)$/);
  // What an earlier put left, for the message when verifying fails: before that time, not merely any.
  expect(lakeVerifySql(model, 'db', 'clickstream', expected, { until: startedAt - 1000 })).toMatch(/ WHERE "sluice"\."arrival_time" < TIMESTAMP '2026-12-03 17:59:59\.000' AND /);
  expect(lakeVerifySql(model, 'db', 'clickstream', expected)).not.toMatch(/arrival_time/);
});

test('a partition key without an enum (injected) is named even when there are too many partitions to list', () => {
  const regional = describeSchema('orders', regionalSchema());
  const landed = (n: number): ExpectedRecord[] => Array.from({ length: n }, (_, i) => ({
    id: `e-${i}`,
    partitionKeys: { region: i % 2 === 0 ? 'eu' : 'us', event_type: 'login', year: '2026', month: '12', day: String(1 + (i % 28)), hour: String(i % 24) },
  }));
  // Few partitions: one term each, every one naming its region.
  expect(lakeVerifySql(regional, 'db', 'orders', landed(4))).toMatch(/ WHERE \(\("region" = 'eu' AND .*\) OR .*\) AND "event_id" IN /);
  // More than the query lists: the regions still, as Athena requires.
  const many = lakeVerifySql(regional, 'db', 'orders', landed(200));
  expect(many).toMatch(/ WHERE "region" IN \('eu', 'us'\) AND "event_id" IN /);
  expect(lakeVerifySql(model, 'db', 'clickstream', landed(200))).toMatch(/ WHERE "event_id" IN /);
});

test('the twin\'s _bulk bodies: a document of an earlier put does not count, and is said to be there from before', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-verify-'));
  try {
    const dir = path.join(openSearchDir(dataDir), 'clickstream', 'clickstream-2026-12-03');
    fs.mkdirSync(dir, { recursive: true });
    const doc = (id: string, arrival: string) => [JSON.stringify({ index: { _index: 'clickstream-2026-12-03' } }), JSON.stringify({ event_id: id, sluice: { arrival_time: arrival } })];
    fs.writeFileSync(path.join(dir, '00000001.ndjson'), `${[...doc('e-1', '2026-12-03T17:55:00.000Z'), ...doc('e-2', '2026-12-03T17:59:59.500Z')].join('\n')}\n`);
    const result = await verifyBulkFiles(dataDir, config, model, expected, options);
    expect(result).toMatchObject({ found: 1, passed: false, missingSample: ['e-1'], arrivedBefore: 1 });

    // This put's copy of e-1 lands: both count.
    fs.writeFileSync(path.join(dir, '00000002.ndjson'), `${doc('e-1', '2026-12-03T18:00:02.000Z').join('\n')}\n`);
    const again = await verifyBulkFiles(dataDir, config, model, expected, options);
    expect(again).toMatchObject({ found: 2, passed: true });
    expect(again.arrivedBefore).toBeUndefined();
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

test('OpenSearch: the query filters on the arrival time, and asks for enough hits for several copies of each id', async () => {
  const bodies: Array<Record<string, unknown>> = [];
  const backend: SearchBackend = {
    description: 'test',
    async search(_index, body) {
      bodies.push(body);
      // Ten copies of e-1 from earlier puts would fill a page of two hits; this put's e-2 comes after them.
      // This put's documents (gte): e-2. Earlier puts' (lt): ten copies of e-1, which would fill a page of two hits.
      const thisPut = JSON.stringify(body).includes('"gte"');
      const asked = new Set(JSON.stringify(body).match(/e-\d/g));
      const all = thisPut ? [{ _source: { event_id: 'e-2' } }] : Array.from({ length: 10 }, () => ({ _source: { event_id: 'e-1' } }));
      const hits = all.filter((h) => asked.has(h._source.event_id));
      return { hits: { total: { value: hits.length }, hits } } as unknown as SearchResponseBody;
    },
    async close() {},
  };
  const result = await verifySearch(backend, config, model, expected, options);
  expect(bodies[0]).toEqual({
    size: 20,
    _source: ['event_id'],
    query: { bool: { filter: [{ terms: { event_id: ['e-1', 'e-2'] } }, { range: { 'sluice.arrival_time': { gte: '2026-12-03T17:59:59.000Z' } } }] } },
  });
  expect(result).toMatchObject({ found: 1, passed: false, missingSample: ['e-1'], arrivedBefore: 1 });
  expect(bodies[1]).toMatchObject({ query: { bool: { filter: [{ terms: { event_id: ['e-1'] } }, { range: { 'sluice.arrival_time': { lt: '2026-12-03T17:59:59.000Z' } } }] } } });
});

test('Ctrl-C while it asks what is there from before the put: the result says interrupted, and nothing is thrown', async () => {
  const interruption = new AbortController();
  const backend: SearchBackend = {
    description: 'test',
    search(_index, body, signal) {
      if (JSON.stringify(body).includes('"gte"')) return Promise.resolve({ hits: { total: { value: 0 }, hits: [] } } as unknown as SearchResponseBody);
      // The question about earlier puts hangs until Ctrl-C.
      setTimeout(() => interruption.abort(), 20);
      return new Promise((_, reject) => signal?.addEventListener('abort', () => reject(new Error('This operation was aborted')), { once: true }));
    },
    async close() {},
  };
  const result = await verifySearch(backend, config, model, expected, { ...options, signal: interruption.signal });
  expect(result).toMatchObject({ found: 0, passed: false, interrupted: true });
  expect(result.arrivedBefore).toBeUndefined();
});

test('--timeout bounds a round of many queries: past the deadline and one poll interval, no further query starts', async () => {
  // 10,000 ids are 10 queries a round; each takes 100 ms here and finds nothing.
  const many: ExpectedRecord[] = Array.from({ length: 10_000 }, (_, i) => ({ id: `e-${i}`, partitionKeys: {} }));
  const asked: string[] = [];
  const engine: SqlEngine = {
    description: 'test',
    database: 'db',
    async run(sql) {
      asked.push(sql.includes('>= TIMESTAMP') ? 'this put' : 'before');
      await new Promise((resolve) => setTimeout(resolve, 100));
      return { columns: ['id'], columnTypes: ['VARCHAR'], rows: [], stats: {} } as unknown as SqlResult;
    },
    savedQueries: async () => [],
    close: () => undefined,
  };
  const result = await verifyLake(engine, config, model, many, { ...options, startedAt: Date.now(), timeoutMs: 150, pollMs: 50 });
  expect(result).toMatchObject({ found: 0, passed: false });
  // The first round stops once past 200 ms (at most three queries, fewer on a slow machine); the question about earlier
  // puts gets one poll interval, is not finished in it, and so is not answered with a part of the count.
  expect(asked.filter((a) => a === 'this put').length).toBeLessThanOrEqual(3);
  expect(asked.filter((a) => a === 'before')).toEqual(['before']);
  expect(result.arrivedBefore).toBeUndefined();
});

test.each([['back', -3_600_000], ['forward', 3_600_000]])('--timeout is kept when the wall clock is set %s an hour mid-wait', async (_way, step) => {
  const realNow = Date.now.bind(Date);
  let stepped = 0;
  const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + stepped);
  let looks = 0;
  const engine: SqlEngine = {
    description: 'test',
    database: 'db',
    async run(sql) {
      if (sql.includes('>= TIMESTAMP')) looks++;
      stepped = step;
      return { columns: ['id'], columnTypes: ['VARCHAR'], rows: [], stats: {} } as unknown as SqlResult;
    },
    savedQueries: async () => [],
    close: () => undefined,
  };
  try {
    const began = performance.now();
    const result = await verifyLake(engine, config, model, expected, { ...options, startedAt: Date.now(), startedAtMonotonic: began, timeoutMs: 500, pollMs: 50 });
    expect(result).toMatchObject({ found: 0, passed: false });
    // Set back, the wait ran on for the hour; set forward, it gave up after one look.
    expect(performance.now() - began).toBeGreaterThanOrEqual(450);
    expect(performance.now() - began).toBeLessThan(5_000);
    expect(result.elapsedMs).toBeLessThan(5_000);
    expect(looks).toBeGreaterThan(2);
  } finally {
    clock.mockRestore();
  }
}, 15_000);

describe('put --verify waits by default as long as the configured buffering can hold a record', () => {
  const minutes = (where: 'local' | 'aws', pipeline: string, ...overrides: string[]) => defaultVerifyTimeoutMs(where, loadConfig(overrides), pipeline) / 60_000;

  test.each<[string, 'local' | 'aws', string, string[], number]>([
    ['cdk.json\'s values: 1.5 × (300 s lake buffering + 60 s processor interval) + 3 min', 'aws', 'iot', [], 12],
    ['the transform\'s processor interval adds to the lake\'s buffering', 'aws', 'iot', ['pipelines.iot.buffering.intervalSeconds=900', 'pipelines.iot.transform.processorIntervalSeconds=900'], 48],
    ['a search delivery buffering longer than the lake\'s', 'aws', 'clickstream', ['pipelines.clickstream.search.bufferingIntervalSeconds=900'], 27],
    ['a search-only pipeline: its search buffering, not the lake\'s', 'aws', 'clickstream', ['pipelines.clickstream.destinations=search', 'pipelines.clickstream.search.bufferingIntervalSeconds=60'], 6],
    ['the twin at cdk.json\'s 2 s', 'local', 'iot', [], 1],
    ['the twin at a long local.bufferIntervalSeconds', 'local', 'iot', ['local.bufferIntervalSeconds=120'], 3.5],
  ])('%s', (_name, where, pipeline, overrides, expected) => {
    expect(minutes(where, pipeline, ...overrides)).toBe(expected);
  });
  test('locally, the interval the twin on the data dir delivers with (local up --buffer-interval, in its twin.json), else the configuration\'s', () => {
    const dataDir = tempDataDir();
    const target = () => resolveTarget({ dataDir }) as LocalTarget;
    expect(twinBufferIntervalSeconds(target())).toBe(2);
    registerTwin(dataDir, {}, { bufferIntervalSeconds: 600 });
    expect(twinBufferIntervalSeconds(target())).toBe(600);
    registerTwin(dataDir, {}, { bufferIntervalSeconds: undefined }); // an older Sluice's twin.json
    expect(twinBufferIntervalSeconds(target())).toBe(2);
    // One edited by hand: what local up would not take is not waited on.
    for (const bad of ['600', -1, 1e9, Number.NaN]) {
      registerTwin(dataDir, {}, { bufferIntervalSeconds: bad as number });
      expect(twinBufferIntervalSeconds(target())).toBe(2);
    }
  });
});
