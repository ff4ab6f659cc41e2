import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PutRecordBatchCommand, PutRecordCommand } from '@aws-sdk/client-firehose';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { loadConfig, resourceNames } from '../../lib/config';
import { firehoseClient, kinesisClient } from '../../lib/local/aws-clients';
import { LocalAthena } from '../../lib/local/athena';
import { bucketDir, dlqPath } from '../../lib/local/paths';
import { startTwin, type Twin } from '../../lib/local/twin';
import { BATCH_KINDS, ESCAPE_MARKER, eventIdFor, HOSTILE_KINDS, loadCorpus, type HostileCase } from './corpus';

/**
 * Issue #7, hostile input: every case of test/fixtures/hostile/ goes through the twin's real APIs
 * (Firehose PutRecord/PutRecordBatch for the DirectPut pipeline, Kinesis PutRecords for the others)
 * and must be accounted for through the public surfaces: a Parquet row (SQL), or an error object
 * and a DLQ message with a reason, or an API error with nothing written. Then the totals add up,
 * every file stays inside the data dir, and the twin still delivers a normal record.
 */

/** What the API answered for one record of a case. */
type Sent = { readonly accepted: true } | { readonly accepted: false; readonly code: string; readonly message: string };

interface ErrorLine {
  readonly key: string;
  readonly line: number;
  readonly pipeline: string;
  readonly errorType: string;
  readonly errorCode: string;
  readonly rawData: string;
}

interface DlqLine {
  readonly pipeline: string;
  readonly errorType: string;
  readonly reason: string;
  readonly source: { readonly key: string; readonly line: number };
}

const corpus = loadCorpus();
const config = loadConfig(['local.bufferIntervalSeconds=1']);
const names = (p: string) => resourceNames(config, p);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Partition values as the lake may hold them (sanitizedPartitionValue's alphabet). */
const SAFE_PARTITION = /^[a-z0-9_-]{1,64}$/;

describe('hostile input corpus through the local twin', () => {
  let dataDir: string;
  let twin: Twin;
  const logLines: string[] = [];
  const sent = new Map<string, Sent[]>();
  /** Parquet rows by event id, per pipeline, as DuckDB's to_json renders them. */
  const rows = new Map<string, Array<Record<string, unknown>>>();
  /** Lake error-object lines by `<pipeline> <sha256 of rawData>`. */
  const errorLines = new Map<string, ErrorLine[]>();
  const allErrorLines: ErrorLine[] = [];
  /** DLQ messages by `<source key>#<line>`. */
  const dlqBySource = new Map<string, DlqLine[]>();
  let dlqLines: DlqLine[] = [];
  const outsideBefore = new Map<string, Set<string>>();

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-hostile-'));
    for (const dir of watchedDirs(dataDir)) outsideBefore.set(dir, new Set(fs.readdirSync(dir)));
    twin = await startTwin({ config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, pollIntervalMs: 100, log: (line) => logLines.push(line) });

    const firehose = firehoseClient(twin.endpoints.firehose, { maxAttempts: 1 });
    const kinesis = kinesisClient(twin.endpoints.kinesis, { maxAttempts: 1 });
    for (const group of callGroups(corpus)) {
      const answers = await send(group, firehose, kinesis);
      let at = 0;
      for (const c of group) {
        sent.set(c.name, answers.slice(at, at + c.records.length));
        at += c.records.length;
      }
    }
    await twin.settle(45_000);

    const athena = await LocalAthena.open(dataDir, config);
    try {
      for (const pipeline of Object.keys(config.pipelines)) {
        const { glueDatabase, glueTable } = names(pipeline);
        const result = await athena.query(`SELECT to_json(t) FROM ${glueDatabase}.${glueTable} t`);
        for (const [json] of result.rows) {
          const row = JSON.parse(String(json)) as Record<string, unknown>;
          const key = `${pipeline} ${String(row.event_id)}`;
          rows.set(key, [...(rows.get(key) ?? []), row]);
        }
      }
    } finally {
      athena.close();
    }

    const bucket = bucketDir(dataDir, twin.bucket);
    for (const file of listFiles(path.join(bucket, 'errors'))) {
      const key = `errors/${file}`;
      const [pipeline, errorType] = file.split('/');
      fs.readFileSync(path.join(bucket, key), 'utf8').split('\n').forEach((text, index) => {
        if (text.trim() === '') return;
        const o = JSON.parse(text) as Record<string, unknown>;
        const line: ErrorLine = {
          key, line: index + 1, pipeline, errorType,
          errorCode: String(o.errorCode ?? o.lastErrorCode ?? ''), rawData: String(o.rawData),
        };
        allErrorLines.push(line);
        const hashKey = `${pipeline} ${sha(Buffer.from(line.rawData, 'base64'))}`;
        errorLines.set(hashKey, [...(errorLines.get(hashKey) ?? []), line]);
      });
    }

    const dlqFile = dlqPath(dataDir, names('app-events').dlq);
    dlqLines = fs.existsSync(dlqFile)
      ? fs.readFileSync(dlqFile, 'utf8').trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as DlqLine)
      : [];
    for (const m of dlqLines) {
      const k = `${m.source.key}#${m.source.line}`;
      dlqBySource.set(k, [...(dlqBySource.get(k) ?? []), m]);
    }
  }, 120_000);

  afterAll(async () => {
    await twin?.stop();
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  test('the corpus covers every kind of hostile input the issue lists, at least 30 kinds, with distinct bytes', () => {
    const covered = new Set(corpus.map((c) => c.covers));
    expect(covered.size).toBeGreaterThanOrEqual(30);
    expect(covered).toEqual(new Set(HOSTILE_KINDS));
    expect(new Set(corpus.map((c) => c.name)).size).toBe(corpus.length);
    const viaKinesis = corpus.filter((c) => c.api === 'PutRecords');
    expect(new Set(viaKinesis.map((c) => c.covers)).size).toBeGreaterThanOrEqual(10);
    const seen = new Set<string>();
    for (const c of corpus) {
      if (c.expect.outcome === 'dropped') continue;
      for (const r of c.records) {
        const k = `${c.pipeline} ${sha(r.bytes)}`;
        expect(seen.has(k) ? `${c.name}: same bytes as another case` : k).toBe(k);
        seen.add(k);
      }
    }
  });

  test.each(corpus.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const answers = sent.get(c.name)!;
    const rowsOf = (id: string) => rows.get(`${c.pipeline} ${id}`) ?? [];
    const errorsOf = (bytes: Buffer) => errorLines.get(`${c.pipeline} ${sha(bytes)}`) ?? [];
    const e = c.expect;

    if (e.outcome === 'api-error') {
      for (const a of answers) {
        expect(a).toMatchObject({ accepted: false, code: e.code });
        if (e.message !== undefined && !a.accepted) expect(a.message).toContain(e.message);
      }
      for (const r of c.records) {
        expect(rowsOf(r.eventId)).toEqual([]);
        expect(errorsOf(r.bytes)).toEqual([]);
      }
      return;
    }

    // Listed, not counted: a refusal shows its code and message.
    expect(answers.filter((a) => !a.accepted)).toEqual([]);
    for (const r of c.records) {
      if (e.outcome === 'row') {
        const found = rowsOf(r.eventId);
        expect(found).toHaveLength(1);
        expect(found[0]).toMatchObject(e.row ?? {});
        expectSafePartitions(found[0]);
        expect(errorsOf(r.bytes)).toEqual([]);
      } else if (e.outcome === 'dropped') {
        expect(rowsOf(r.eventId)).toEqual([]);
        expect(errorsOf(r.bytes)).toEqual([]);
      } else {
        expect(rowsOf(r.eventId)).toEqual([]);
        const lines = errorsOf(r.bytes);
        expect(lines).toHaveLength(1);
        const [line] = lines;
        expect(line).toMatchObject({ errorType: e.errorType, pipeline: c.pipeline });
        expect(line.errorCode).not.toBe('');
        const messages = dlqBySource.get(`${line.key}#${line.line}`) ?? [];
        expect(messages).toHaveLength(1);
        expect(messages[0]).toMatchObject({ pipeline: c.pipeline, errorType: e.errorType });
        expect(messages[0].reason).toContain(e.reason);
        if (e.reasonExcludes !== undefined) expect(messages[0].reason).not.toContain(e.reasonExcludes);
      }
    }
  });

  test('every record is accounted for: accepted = rows + failed + dropped, error lines = DLQ messages', () => {
    for (const s of twin.summary()) {
      const lake = s.lake!;
      const cases = corpus.filter((c) => c.pipeline === s.pipeline);
      const accepted = cases.flatMap((c) => sent.get(c.name)!).filter((a) => a.accepted).length;
      const dropped = cases.filter((c) => c.expect.outcome === 'dropped').reduce((n, c) => n + c.records.length, 0);
      const failed = lake.processingFailed + lake.formatConversionFailed + lake.partitioningFailed;
      expect({ pipeline: s.pipeline, accepted, pending: lake.pending }).toEqual({ pipeline: s.pipeline, accepted: lake.received, pending: 0 });
      expect(lake.received).toBe(lake.deliveredRows + failed + lake.dropped);
      expect(lake.dropped).toBe(dropped);
      const rowCount = [...rows.entries()].filter(([k]) => k.startsWith(`${s.pipeline} `)).reduce((n, [, r]) => n + r.length, 0);
      expect(rowCount).toBe(lake.deliveredRows);
      const lakeErrors = allErrorLines.filter((l) => l.pipeline === s.pipeline);
      expect(lakeErrors).toHaveLength(failed);
      expect(dlqLines.filter((m) => m.source.key.startsWith(`errors/${s.pipeline}/`))).toHaveLength(failed);
    }
    // No record anywhere failed for a reason of the twin's own: no retried or lost work was logged.
    expect(logLines).toEqual([]);
  });

  test('every file the twin wrote is inside the data dir, and partition folders hold only safe values', async () => {
    const realDataDir = fs.realpathSync(dataDir);
    for (const entry of fs.readdirSync(dataDir, { recursive: true, withFileTypes: true })) {
      const full = path.join(entry.parentPath, entry.name);
      expect(entry.isSymbolicLink() ? `symlink ${full}` : 'no symlink').toBe('no symlink');
      expect(path.relative(realDataDir, fs.realpathSync(full)).startsWith('..')).toBe(false);
      expect(full).not.toContain(ESCAPE_MARKER);
    }
    for (const pipeline of Object.keys(config.pipelines)) {
      const stream = names(pipeline).lakeDeliveryStream;
      for (const f of listFiles(path.join(bucketDir(dataDir, twin.bucket), 'data', pipeline))) {
        expect(f).toMatch(new RegExp(`^event_type=[a-z0-9_-]{1,64}/year=\\d{4}/month=\\d{2}/day=\\d{2}/hour=\\d{2}/${stream}-1-[0-9-]{19}-[0-9a-f-]{36}\\.parquet$`));
      }
    }
    // Nothing appeared next to the data dir, above it or in the working directory.
    for (const [dir, before] of outsideBefore) {
      const added = fs.readdirSync(dir).filter((name) => !before.has(name));
      expect(added.filter((name) => name.includes(ESCAPE_MARKER) || name.startsWith('event_type=') || name === '..')).toEqual([]);
      expect(fs.existsSync(path.join(dir, ESCAPE_MARKER))).toBe(false);
    }
  });

  test('no hostile key polluted Object.prototype', () => {
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false);
  });

  test('after the corpus the twin is healthy: a normal record still lands through each API', async () => {
    const firehose = firehoseClient(twin.endpoints.firehose, { maxAttempts: 1 });
    const kinesis = kinesisClient(twin.endpoints.kinesis, { maxAttempts: 1 });
    const appId = eventIdFor('health#app-events');
    const iotId = eventIdFor('health#iot');
    await firehose.send(new PutRecordCommand({
      DeliveryStreamName: names('app-events').lakeDeliveryStream,
      Record: { Data: Buffer.from(JSON.stringify({ event_id: appId, user_id: 'user-after', event_type: 'logout', timestamp: '2026-01-15T09:00:00Z' })) },
    }));
    const put = await kinesis.send(new PutRecordsCommand({
      StreamName: names('iot').stream,
      Records: [{ PartitionKey: 'after', Data: Buffer.from(JSON.stringify({ event_id: iotId, event_type: 'heartbeat', event_time: '2026-01-15T09:00:00Z', device_id: 'dev-00c0ffee', temperature_c: 20, battery_pct: 99 })) }],
    }));
    expect(put.FailedRecordCount ?? 0).toBe(0);
    await twin.settle(30_000);
    const athena = await LocalAthena.open(dataDir, config);
    try {
      const app = await athena.query(`SELECT user_id, event_type FROM app_events WHERE event_id = '${appId}'`);
      expect(app.rows).toEqual([['user-after', 'logout']]);
      const iot = await athena.query(`SELECT device_id, event_type FROM iot WHERE event_id = '${iotId}'`);
      expect(iot.rows).toEqual([['dev-00c0ffee', 'heartbeat']]);
    } finally {
      athena.close();
    }
    expect((await twin.dlqCount()).consumer).toBe(0);
  });
});

/**
 * Cases sent in one call. Records that the API judges one by one share PutRecordBatch/PutRecords
 * calls (up to 500 records and 3 MiB), so hostile records also prove they do not spoil their
 * neighbours; API refusals and the batch-limit cases go alone, as the call itself is what they test.
 */
function callGroups(cases: readonly HostileCase[]): HostileCase[][] {
  const groups: HostileCase[][] = [];
  const open = new Map<string, { cases: HostileCase[]; records: number; bytes: number }>();
  for (const c of cases) {
    const shareable = c.api !== 'PutRecord' && c.expect.outcome !== 'api-error' && !BATCH_KINDS.includes(c.covers);
    if (!shareable) {
      groups.push([c]);
      continue;
    }
    const lane = `${c.api} ${c.pipeline}`;
    const records = c.records.length;
    const bytes = c.records.reduce((n, r) => n + r.bytes.length, 0);
    let group = open.get(lane);
    if (!group || group.records + records > 500 || group.bytes + bytes > 3 * 1024 * 1024) {
      group = { cases: [], records: 0, bytes: 0 };
      open.set(lane, group);
      groups.push(group.cases);
    }
    group.cases.push(c);
    group.records += records;
    group.bytes += bytes;
  }
  return groups;
}

/** Sends the records of cases of one API and pipeline in one call; one answer per record, in order. */
async function send(group: readonly HostileCase[], firehose: ReturnType<typeof firehoseClient>, kinesis: ReturnType<typeof kinesisClient>): Promise<Sent[]> {
  const [{ api, pipeline, name }] = group;
  const records = group.flatMap((c) => c.records);
  try {
    if (api === 'PutRecord') {
      await firehose.send(new PutRecordCommand({ DeliveryStreamName: resourceNames(config, pipeline).lakeDeliveryStream, Record: { Data: records[0].bytes } }));
      return [{ accepted: true }];
    }
    if (api === 'PutRecordBatch') {
      const answer = await firehose.send(new PutRecordBatchCommand({
        DeliveryStreamName: resourceNames(config, pipeline).lakeDeliveryStream,
        Records: records.map((r) => ({ Data: r.bytes })),
      }));
      return (answer.RequestResponses ?? []).map((r) => (r.ErrorCode ? { accepted: false, code: r.ErrorCode, message: r.ErrorMessage ?? '' } : { accepted: true }));
    }
    const answer = await kinesis.send(new PutRecordsCommand({
      StreamName: resourceNames(config, pipeline).stream,
      Records: records.map((r, i) => ({ Data: r.bytes, PartitionKey: `${name}-${i}` })),
    }));
    return (answer.Records ?? []).map((r) => (r.ErrorCode ? { accepted: false, code: r.ErrorCode, message: r.ErrorMessage ?? '' } : { accepted: true }));
  } catch (error) {
    const e = error as { name?: string; message?: string };
    return records.map(() => ({ accepted: false, code: e.name ?? 'Error', message: e.message ?? '' }));
  }
}

function expectSafePartitions(row: Record<string, unknown>): void {
  expect(String(row.event_type)).toMatch(SAFE_PARTITION);
  expect(row.year).toEqual(expect.any(Number));
  expect(row.year as number).toBeGreaterThanOrEqual(2000);
  expect(row.year as number).toBeLessThanOrEqual(2100);
  expect(row.month as number).toBeGreaterThanOrEqual(1);
  expect(row.month as number).toBeLessThanOrEqual(12);
  expect(row.day as number).toBeGreaterThanOrEqual(1);
  expect(row.day as number).toBeLessThanOrEqual(31);
  expect(row.hour as number).toBeGreaterThanOrEqual(0);
  expect(row.hour as number).toBeLessThanOrEqual(23);
}

/** Where an escaping key would land: the data dir's ancestors and the working directory. */
function watchedDirs(dataDir: string): string[] {
  const dirs = new Set<string>([process.cwd()]);
  for (let dir = path.dirname(path.resolve(dataDir)); ; dir = path.dirname(dir)) {
    dirs.add(dir);
    if (path.dirname(dir) === dir) break;
  }
  return [...dirs];
}

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
}
