/**
 * The delivery engine end to end on a temp data dir: records in, then what a user finds — Parquet
 * read back with DuckDB, Firehose error objects, bulk bodies, counters — never internal state.
 * Transforms are fakes written here (the real one is tested on its own).
 */
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { FirehoseTransformationResult, FirehoseTransformationResultRecord } from 'aws-lambda';
import type { TransformationEvent } from '../../transforms/shared/firehose-event';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import fc from 'fast-check';
import {
  DeliveryEngine,
  DeliveryStalledError,
  engineOptionsFromConfig,
  invocationChunks,
  LAMBDA_PAYLOAD_LIMIT,
  undeliveredRecordCount,
  type Clock,
  type DeliveryEngineOptions,
  type IncomingRecord,
  type KinesisRecordMetadata,
  type TransformProcessor,
} from '../../lib/local/delivery-stream';
import { ObjectStore } from '../../lib/local/object-store';
import { SearchSink } from '../../lib/local/search-sink';
import { loadConfig } from '../../lib/config';
import { loadModel } from '../../lib/schema/registry';
import { eio, fileHandlePrototype } from '../file-handle';

const model = loadModel('clickstream');
const BUCKET = 'sluice-local-lake';
const STREAM = 'sluice-dev-clickstream-lake';
const ARRIVAL = Date.UTC(2026, 2, 1, 10, 0, 0, 500);
const PROJECT_ROOT = path.resolve(__dirname, '..', '..');

let dataDir: string;
let reader: DuckDBInstance;
let sql: DuckDBConnection;
const engines: DeliveryEngine[] = [];

beforeAll(async () => {
  reader = await DuckDBInstance.create(':memory:');
  sql = await reader.connect();
});

afterAll(() => {
  sql.closeSync();
  reader.closeSync();
});

beforeEach(async () => {
  dataDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sluice-engine-'));
});

afterEach(async () => {
  await Promise.allSettled(engines.splice(0).map((e) => e.stop()));
  await fs.promises.rm(dataDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/** A clickstream record as a producer sends it; `directives` steer the fake transform. */
function record(i: number, directives: Record<string, unknown> = {}, kinesis = false): IncomingRecord {
  const body = {
    event_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    event_type: i % 2 === 0 ? 'click' : 'page_view',
    event_time: '2026-03-01T09:45:00.000Z',
    user_id: `u-${i}`,
    session_id: 's-1',
    page: { url: `https://shop.example.com/p/${i}`, path: `/p/${i}` },
    device: { type: 'desktop' },
    ...directives,
  };
  return {
    recordId: `rec-${i}`,
    data: Buffer.from(JSON.stringify(body)),
    arrivalTimestamp: ARRIVAL + i,
    ...(kinesis ? {
      kinesisRecordMetadata: {
        shardId: 'shardId-000000000000', partitionKey: `pk-${i}`, approximateArrivalTimestamp: ARRIVAL + i,
        sequenceNumber: `4960000000000000000000000000000000000000000000000000${String(i).padStart(4, '0')}`, subsequenceNumber: 0,
      },
    } : {}),
  };
}

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64');

/**
 * A stand-in for the record transform: enriches, derives partition keys from event_time, and obeys
 * `mode` (drop / fail / bad-type) and `partitionKeys` (taken as is) directives in the record.
 */
function fakeTransform(onEvent?: (event: TransformationEvent) => void): TransformProcessor {
  return async (event) => {
    onEvent?.(event);
    return {
      records: event.records.map((r): FirehoseTransformationResultRecord => {
        const input = JSON.parse(Buffer.from(r.data, 'base64').toString()) as Record<string, unknown>;
        const { mode, partitionKeys, ...fields } = input;
        if (mode === 'drop') return { recordId: r.recordId, result: 'Dropped', data: r.data };
        if (mode === 'fail') return { recordId: r.recordId, result: 'ProcessingFailed', data: r.data };
        const t = new Date(fields.event_time as string);
        const out = {
          ...fields,
          ...(mode === 'bad-type' ? { scroll_depth_pct: 'not a number' } : {}),
          sluice: {
            arrival_time: new Date(r.approximateArrivalTimestamp).toISOString(), processed_at: '2026-03-01T10:00:05.000Z',
            source: 'direct-put', schema_version: '1.0.0', quality_score: 0.5,
          },
        };
        const pad = (n: number): string => String(n).padStart(2, '0');
        return {
          recordId: r.recordId,
          result: 'Ok',
          data: b64(`${JSON.stringify(out)}\n`),
          metadata: {
            partitionKeys: (partitionKeys as Record<string, string> | undefined) ?? {
              event_type: fields.event_type as string, year: String(t.getUTCFullYear()), month: pad(t.getUTCMonth() + 1),
              day: pad(t.getUTCDate()), hour: pad(t.getUTCHours()),
            },
          },
        };
      }),
    };
  };
}

function lakeOptions(overrides: Partial<DeliveryEngineOptions> = {}, processor: Partial<NonNullable<DeliveryEngineOptions['processor']>> | null = {}): DeliveryEngineOptions {
  return {
    streamName: STREAM,
    dataDir,
    bucket: BUCKET,
    destination: { kind: 'lake', model, glueTable: { databaseName: 'sluice_dev', tableName: 'clickstream' } },
    processor: processor === null ? undefined : { invoke: fakeTransform(), retries: 2, retryDelayMs: 0, timeoutMs: 2000, ...processor },
    bufferSizeMiB: 64,
    bufferIntervalSeconds: 900,
    retryDelayMs: 1,
    maxRetryDelayMs: 5,
    ...overrides,
  };
}

async function open(options: DeliveryEngineOptions): Promise<DeliveryEngine> {
  const engine = await DeliveryEngine.open(options);
  engines.push(engine);
  return engine;
}

/** The stream's write-ahead-log segment, and where its frame ([u32 length][u32 crc32][payload], as the log writes them) holding `text` starts. */
function walFrameHolding(text: string): { file: string; bytes: Buffer; at: number } {
  const walDir = path.join(dataDir, 'firehose', STREAM, 'wal');
  const [segment] = fs.readdirSync(walDir);
  const file = path.join(walDir, segment);
  const bytes = fs.readFileSync(file);
  for (let at = 0; at < bytes.length; at += 8 + bytes.readUInt32BE(at)) {
    if (bytes.subarray(at, at + 8 + bytes.readUInt32BE(at)).includes(text)) return { file, bytes, at };
  }
  throw new Error(`no frame of ${file} holds ${text}`);
}

/** A write-ahead-log frame as the log writes one: [u32 length][u32 crc32][payload]. */
function walFrame(payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt32BE(zlib.crc32(payload), 4);
  return Buffer.concat([header, payload]);
}

/** The stream opened again after its log was tampered with, delivering under recovered/, with what it warned of. */
async function reopenRecovering(): Promise<{ engine: DeliveryEngine; warnings: string[] }> {
  const warnings: string[] = [];
  const engine = await open(lakeOptions({
    onError: (e) => warnings.push((e as Error).message), destination: { kind: 'lake', model, glueTable: { databaseName: 'd', tableName: 't' }, prefix: 'recovered/' },
  }, null));
  return { engine, warnings };
}

async function keys(prefix = ''): Promise<string[]> {
  return (await new ObjectStore(dataDir).listObjects(BUCKET, prefix)).map((o) => o.key);
}

async function errorLines(type: string): Promise<Array<Record<string, unknown>>> {
  const store = new ObjectStore(dataDir);
  const lines: Array<Record<string, unknown>> = [];
  for (const key of await keys(`errors/clickstream/${type}/`)) {
    const body = (await store.getObject(BUCKET, key)).toString();
    expect(body.endsWith('\n')).toBe(true);
    for (const line of body.trimEnd().split('\n')) lines.push(JSON.parse(line) as Record<string, unknown>);
  }
  return lines;
}

async function parquetRows(prefix: string, select = '*'): Promise<Array<Record<string, unknown>>> {
  const store = new ObjectStore(dataDir);
  const files = (await keys(prefix)).filter((k) => k.endsWith('.parquet')).map((k) => `'${store.pathFor(BUCKET, k)}'`);
  if (files.length === 0) return [];
  const result = await sql.runAndReadAll(`SELECT ${select} FROM read_parquet([${files.join(', ')}]) ORDER BY user_id`);
  return result.getRowObjectsJson() as Array<Record<string, unknown>>;
}

function expectBalanced(engine: DeliveryEngine): void {
  const c = engine.counters;
  expect(c.pending).toBe(0);
  expect(c.received).toBe(c.deliveredRows + c.dropped + c.processingFailed + c.formatConversionFailed + c.partitioningFailed + c.searchFailed);
}

/** A clock whose time and timers move only when told to. */
class ManualClock implements Clock {
  private time = ARRIVAL;
  private timers: Array<{ at: number; callback: () => void; cancelled: boolean }> = [];
  now(): number {
    return this.time;
  }
  setTimer(ms: number, callback: () => void): () => void {
    const timer = { at: this.time + ms, callback, cancelled: false };
    this.timers.push(timer);
    return () => {
      timer.cancelled = true;
    };
  }
  advance(ms: number): void {
    this.time += ms;
    const due = this.timers.filter((t) => !t.cancelled && t.at <= this.time);
    this.timers = this.timers.filter((t) => !due.includes(t));
    for (const t of due) t.callback();
  }
}

const nextFlush = (engine: DeliveryEngine): Promise<unknown> => new Promise((resolve) => engine.once('flushed', resolve));

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe('DeliveryEngine: lake', () => {
  it('delivers Ok records as Parquet per partition and every other record to its error object', async () => {
    const engine = await open(lakeOptions());
    const created: string[] = [];
    engine.store.on('objectCreated', (e) => created.push(e.key));
    const records = [
      ...Array.from({ length: 10 }, (_, i) => record(i)),
      record(10, { mode: 'drop' }),
      record(11, { mode: 'fail' }),
      record(12, { mode: 'bad-type' }, true),
    ];
    expect(await engine.ingest(records)).toEqual(records.map(() => ({ ok: true })));
    await engine.flush();

    const dataKeys = await keys('data/');
    expect(dataKeys).toHaveLength(2);
    for (const key of dataKeys) {
      expect(key).toMatch(/^data\/clickstream\/event_type=(click|page_view)\/year=2026\/month=03\/day=01\/hour=09\/sluice-dev-clickstream-lake-1-2026-03-01-10-00-00-[0-9a-f-]{36}\.parquet$/);
    }
    const clicks = await parquetRows('data/clickstream/event_type=click/', 'user_id, sluice.source AS source');
    expect(clicks.map((r) => r.user_id)).toEqual(['u-0', 'u-2', 'u-4', 'u-6', 'u-8']);
    expect((await parquetRows('data/clickstream/event_type=page_view/')).map((r) => r.user_id)).toEqual(['u-1', 'u-3', 'u-5', 'u-7', 'u-9']);

    const processingFailed = await errorLines('processing-failed');
    expect(processingFailed).toEqual([{
      attemptsMade: 1,
      arrivalTimestamp: ARRIVAL + 11,
      errorCode: 'Lambda.ProcessingFailedStatus',
      errorMessage: 'ProcessingFailed status set for record',
      attemptEndingTimestamp: expect.any(Number),
      rawData: Buffer.from(records[11].data).toString('base64'),
      lambdaArn: `arn:aws:lambda:us-east-1:000000000000:function:${STREAM}-transform`,
    }]);
    expect(Object.keys(processingFailed[0])).toEqual(['attemptsMade', 'arrivalTimestamp', 'errorCode', 'errorMessage', 'attemptEndingTimestamp', 'rawData', 'lambdaArn']);

    const conversion = await errorLines('format-conversion-failed');
    expect(conversion).toHaveLength(1);
    expect(conversion[0]).toEqual({
      attemptsMade: 1,
      arrivalTimestamp: ARRIVAL + 12,
      lastErrorCode: 'DataFormatConversion.MalformedData',
      lastErrorMessage: 'the string "not a number" is not a valid int at "scroll_depth_pct"',
      attemptEndingTimestamp: expect.any(Number),
      rawData: expect.any(String),
      sequenceNumber: records[12].kinesisRecordMetadata!.sequenceNumber,
      subSequenceNumber: 0,
      dataCatalogTable: {
        catalogId: '000000000000', databaseName: 'sluice_dev', tableName: 'clickstream', region: 'us-east-1',
        versionId: 'LATEST', catalogArn: 'arn:aws:glue:us-east-1:000000000000:catalog',
      },
    });
    // rawData is what the converter was given: the transformed record.
    expect(JSON.parse(Buffer.from(conversion[0].rawData as string, 'base64').toString()).scroll_depth_pct).toBe('not a number');
    expect((await keys('errors/'))[0]).toMatch(/^errors\/clickstream\/format-conversion-failed\/2026\/03\/01\/10\/sluice-dev-clickstream-lake-1-2026-03-01-10-00-00-[0-9a-f-]{36}$/);

    expect(engine.counters).toMatchObject({
      received: 13, deliveredRows: 10, dropped: 1, processingFailed: 1, formatConversionFailed: 1, partitioningFailed: 0,
      files: 2, errorFiles: 2, invocations: 1, retries: 0, pending: 0,
    });
    expectBalanced(engine);
    expect(created.sort()).toEqual((await keys()).sort());
  });

  it("hands the transform Firehose's event and splits invocations at the processor buffer hint", async () => {
    const events: TransformationEvent[] = [];
    const engine = await open(lakeOptions({ sourceKinesisStreamArn: 'arn:aws:kinesis:us-east-1:000000000000:stream/sluice-dev-clickstream' }, {
      invoke: fakeTransform((e) => events.push(e)),
      bufferMiB: 100 / (1024 * 1024),
    }));
    const records = Array.from({ length: 6 }, (_, i) => record(i, {}, true));
    await engine.ingest(records);
    await engine.flush();
    expect(events.length).toBe(6);
    expect(events[0]).toEqual({
      invocationId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      deliveryStreamArn: `arn:aws:firehose:us-east-1:000000000000:deliverystream/${STREAM}`,
      sourceKinesisStreamArn: 'arn:aws:kinesis:us-east-1:000000000000:stream/sluice-dev-clickstream',
      region: 'us-east-1',
      records: [{
        // Firehose's own id for the transform (56 digits: when the engine opened, then the record's place in the stream), not the PutRecord id.
        recordId: expect.stringMatching(/^49\d{13}0{41}$/),
        approximateArrivalTimestamp: ARRIVAL,
        data: Buffer.from(records[0].data).toString('base64'),
        kinesisRecordMetadata: records[0].kinesisRecordMetadata,
      }],
    });
    expect(new Set(events.map((e) => e.invocationId)).size).toBe(6);
    const run = events[0].records[0].recordId.slice(2, 15);
    expect(Math.abs(Number(run) - Date.now())).toBeLessThan(60_000);
    expect(events.map((e) => e.records[0].recordId)).toEqual([0, 1, 2, 3, 4, 5].map((seq) => `49${run}${String(seq).padStart(41, '0')}`));
    expect(engine.counters.invocations).toBe(6);
    expect(engine.counters.deliveredRows).toBe(6);
  });

  it('keeps every invocation under Lambda’s 6 MB request limit, and fills it as Firehose does', () => {
    // The event as the engine builds it, serialized as Lambda would receive it.
    const eventBytes = (chunk: ReadonlyArray<{ data: Buffer; kinesis?: KinesisRecordMetadata }>): number => Buffer.byteLength(JSON.stringify({
      invocationId: randomUUID(),
      deliveryStreamArn: `arn:aws:firehose:us-east-1:123456789012:deliverystream/${'s'.repeat(64)}`,
      sourceKinesisStreamArn: `arn:aws:kinesis:us-east-1:123456789012:stream/${'k'.repeat(128)}`,
      region: 'us-east-1',
      records: chunk.map((r, i) => ({
        recordId: `49${Date.now()}${String(i).padStart(41, '0')}`,
        approximateArrivalTimestamp: Date.now(),
        data: r.data.toString('base64'),
        ...(r.kinesis ? { kinesisRecordMetadata: r.kinesis } : {}),
      })),
    }));
    const big = Array.from({ length: 9 }, () => ({ data: Buffer.alloc(1000 * 1024) }));
    const chunks = invocationChunks(big, 64 * 1024 * 1024);
    expect(chunks.map((c) => c.length)).toEqual([4, 4, 1]);
    for (const chunk of chunks) expect(eventBytes(chunk)).toBeLessThanOrEqual(LAMBDA_PAYLOAD_LIMIT);
    // Small records: the request limit binds before a 3 MiB processor buffer, and an invocation comes within a few KB of it.
    const kinesis: KinesisRecordMetadata = { shardId: 'shardId-000000000000', partitionKey: 'p'.repeat(256), approximateArrivalTimestamp: Date.now(), sequenceNumber: '4'.repeat(56), subsequenceNumber: 0 };
    // A partition key JSON must escape, or that is not ASCII, is counted as serialized.
    const escaped: KinesisRecordMetadata = { ...kinesis, partitionKey: 'ü"\\\n\u0001é€😀'.repeat(20) };
    for (const small of [
      Array.from({ length: 40_000 }, () => ({ data: Buffer.alloc(120) })),
      Array.from({ length: 40_000 }, () => ({ data: Buffer.alloc(120), kinesis })),
      Array.from({ length: 40_000 }, () => ({ data: Buffer.alloc(120), kinesis: escaped })),
    ]) {
      const [first] = invocationChunks(small, 3 * 1024 * 1024);
      expect(first.length).toBeLessThan(small.length);
      expect(eventBytes(first)).toBeLessThanOrEqual(LAMBDA_PAYLOAD_LIMIT);
      expect(eventBytes(first.concat(small.slice(0, 1)))).toBeGreaterThan(LAMBDA_PAYLOAD_LIMIT - 2048);
    }
    expect(invocationChunks([{ data: Buffer.alloc(10) }, { data: Buffer.alloc(3000) }, { data: Buffer.alloc(10) }], 1000).map((c) => c.length)).toEqual([1, 1, 1]);
  });

  const brokenTransforms: Array<[string, TransformProcessor, string, RegExp]> = [
    ['throws', () => {
      throw new TypeError('Cannot read properties of undefined');
    }, 'Lambda.FunctionError', /^The Lambda function was successfully invoked but it returned an error result\. \(local twin: TypeError: Cannot read properties of undefined\)$/],
    ['times out', () => new Promise<FirehoseTransformationResult>(() => undefined), 'Lambda.FunctionTimedOut', /^The Lambda function invocation timed out\./],
    ['returns a missing record id', async (e) => ({ records: e.records.slice(1).map((r) => ({ recordId: r.recordId, result: 'Ok' as const, data: r.data })) }),
      'Lambda.MissingRecordId', /^One or more record Ids were not returned\./],
    ['returns a record id it was not given', async (e) => ({ records: e.records.map((r, i) => ({ recordId: i === 0 ? 'someone-else' : r.recordId, result: 'Ok' as const, data: r.data })) }),
      'Lambda.MissingRecordId', /was not in the invocation/],
    ['returns a record id twice', async (e) => ({ records: [...e.records, e.records[0]].map((r) => ({ recordId: r.recordId, result: 'Ok' as const, data: r.data })) }),
      'Lambda.DuplicatedRecordId', /^Multiple records were returned with the same record Id\./],
    ['returns malformed JSON', async () => 'not json' as unknown as FirehoseTransformationResult, 'Lambda.JsonProcessingException', /There was an error parsing returned records/],
    ['returns an unknown result', async (e) => ({ records: e.records.map((r) => ({ recordId: r.recordId, result: 'OK' as 'Ok', data: r.data })) }),
      'Lambda.JsonProcessingException', /result is "OK"/],
    ['returns data that is not base64', async (e) => ({ records: e.records.map((r) => ({ recordId: r.recordId, result: 'Ok' as const, data: '{"not":"base64"}' })) }),
      'Lambda.JsonProcessingException', /not valid base64/],
    ['returns no data', async (e) => ({ records: e.records.map((r) => ({ recordId: r.recordId, result: 'Dropped' as const })) }),
      'Lambda.JsonProcessingException', /data is missing/],
    ['returns more than 6 MB', async (e) => ({ records: e.records.map((r) => ({ recordId: r.recordId, result: 'Ok' as const, data: 'A'.repeat(7 * 1024 * 1024) })) }),
      'Lambda.FunctionError', /Lambda's limit is 6291456/],
  ];

  it.each(brokenTransforms)('retries a transform that %s, then fails its records with their original bytes', async (_what, invoke, code, message) => {
    const engine = await open(lakeOptions({}, { invoke, retries: 2, timeoutMs: 50 }));
    const records = [record(1), record(2), record(3)];
    await engine.ingest(records);
    await engine.flush();
    const lines = await errorLines('processing-failed');
    expect(lines.map((l) => l.rawData)).toEqual(records.map((r) => Buffer.from(r.data).toString('base64')));
    for (const l of lines) {
      expect(l).toMatchObject({ attemptsMade: 3, errorCode: code });
      expect(l.errorMessage).toMatch(message);
    }
    expect(engine.counters).toMatchObject({ invocations: 3, retries: 2, processingFailed: 3, deliveredRows: 0 });
    expect(await keys('data/')).toEqual([]);
    expectBalanced(engine);
  });

  it.each([[0, 'delivers'], [1, 'refuses']])('judges the response size as Lambda does, by its JSON: %i byte over 6 MiB %s', async (over, _what) => {
    const transform = fakeTransform();
    const invoke = async (event: TransformationEvent): Promise<FirehoseTransformationResult> => {
      const result = await transform(event);
      // A member Firehose ignores, sized so the whole response is exactly the limit (plus `over`) as JSON.
      const records = result.records.map((r) => ({ ...r, pad: '' }));
      const response = { records };
      records[0].pad = 'x'.repeat(LAMBDA_PAYLOAD_LIMIT + over - Buffer.byteLength(JSON.stringify(response)));
      expect(Buffer.byteLength(JSON.stringify(response))).toBe(LAMBDA_PAYLOAD_LIMIT + over);
      return response as FirehoseTransformationResult;
    };
    const engine = await open(lakeOptions({}, { invoke, retries: 0 }));
    await engine.ingest([record(1), record(2), record(3)]);
    await engine.flush();
    if (over === 0) {
      expect(engine.counters).toMatchObject({ processingFailed: 0, deliveredRows: 3 });
    } else {
      expect(engine.counters).toMatchObject({ processingFailed: 3, deliveredRows: 0 });
      expect((await errorLines('processing-failed'))[0].errorMessage).toMatch(/the response is 6291457 bytes as JSON; Lambda's limit is 6291456/);
    }
    expectBalanced(engine);
  });

  it('takes a response a few bytes under 6 MiB as JSON (no flat allowance per entry that would refuse it)', async () => {
    const transform = fakeTransform();
    const invoke = async (event: TransformationEvent): Promise<FirehoseTransformationResult> => {
      const result = await transform(event);
      const line = Buffer.from(result.records[0].data!, 'base64');
      const sized = (spaces: number) => ({ records: result.records.map((r, i) => (i === 0 ? { ...r, data: Buffer.concat([line, Buffer.alloc(spaces, 0x20)]).toString('base64') } : r)) });
      let spaces = 3 * Math.floor((LAMBDA_PAYLOAD_LIMIT - Buffer.byteLength(JSON.stringify(result))) / 4);
      while (Buffer.byteLength(JSON.stringify(sized(spaces + 3))) <= LAMBDA_PAYLOAD_LIMIT - 8) spaces += 3;
      const response = sized(spaces);
      expect(Buffer.byteLength(JSON.stringify(response))).toBeGreaterThan(LAMBDA_PAYLOAD_LIMIT - 16);
      return response;
    };
    const engine = await open(lakeOptions({}, { invoke, retries: 0 }));
    await engine.ingest([record(1), record(2), record(3)]);
    await engine.flush();
    expect(engine.counters).toMatchObject({ processingFailed: 0, deliveredRows: 3 });
    expectBalanced(engine);
  });

  it('delivers normally when a retry of a failed invocation succeeds', async () => {
    let calls = 0;
    const working = fakeTransform();
    const engine = await open(lakeOptions({}, {
      invoke: async (e) => {
        if (++calls === 1) throw new Error('cold start hiccup');
        return working(e);
      },
    }));
    await engine.ingest([record(1), record(2)]);
    await engine.flush();
    expect(engine.counters).toMatchObject({ invocations: 2, retries: 1, deliveredRows: 2, processingFailed: 0 });
    expect(await errorLines('processing-failed')).toEqual([]);
  });

  it('checks a keys object the transform shares between records for each of them: shared bad keys fail every record, equal good keys share one file', async () => {
    const good = { event_type: 'click', year: '2026', month: '03', day: '01', hour: '09' };
    const bad = { ...good, hour: '../etc' };
    const shared = [good, good, bad, bad, bad, { ...good }];
    const transform = fakeTransform();
    const engine = await open(lakeOptions({}, {
      invoke: async (event) => {
        const result = await transform(event);
        return { records: result.records.map((r, i) => ({ ...r, metadata: { partitionKeys: shared[i] } })) };
      },
    }));
    await engine.ingest(shared.map((_, i) => record(i)));
    await engine.flush();
    expect((await keys()).filter((k) => k.startsWith('data/'))).toEqual([
      expect.stringMatching(/^data\/clickstream\/event_type=click\/year=2026\/month=03\/day=01\/hour=09\/[^/]+\.parquet$/),
    ]);
    const lines = await errorLines('partitioning-failed');
    expect(lines.map((l) => l.errorCode)).toEqual(Array(3).fill('DynamicPartitioning.InvalidPartitionKey'));
    expect(new Set(lines.map((l) => l.rawData)).size).toBe(3);
    expect(engine.counters).toMatchObject({ partitioningFailed: 3, deliveredRows: 3, files: 1 });
    expectBalanced(engine);
  });

  it('fails records with hostile partition keys as partitioning-failed and never writes outside the data prefix', async () => {
    const hostile = ['../x', 'a/b', '%2F..', '', 'x'.repeat(5000), 'nul\u0000', '..', '.', 'a\\b'];
    const engine = await open(lakeOptions());
    const good = { event_type: 'click', year: '2026', month: '03', day: '01', hour: '09' };
    await engine.ingest([
      ...hostile.map((value, i) => record(i, { partitionKeys: { ...good, event_type: value } })),
      record(50, { partitionKeys: { ...good, hour: '../../../../etc' } }),
      record(51, { partitionKeys: { event_type: 'click' } }),
      record(52, { partitionKeys: good }),
    ]);
    await engine.flush();
    const all = await keys();
    expect(all.filter((k) => !k.startsWith('errors/clickstream/partitioning-failed/'))).toEqual([
      expect.stringMatching(/^data\/clickstream\/event_type=click\/year=2026\/month=03\/day=01\/hour=09\/[^/]+\.parquet$/),
    ]);
    const lines = await errorLines('partitioning-failed');
    expect(lines).toHaveLength(hostile.length + 2);
    expect(lines.at(-1)).toMatchObject({ errorCode: 'DynamicPartitioning.MetadataExtractionFailed', errorMessage: expect.stringContaining('"year" is missing') });
    expect(lines[0]).toMatchObject({ attemptsMade: 1, arrivalTimestamp: ARRIVAL, errorCode: 'DynamicPartitioning.InvalidPartitionKey', rawData: expect.any(String) });
    // Nothing anywhere in the data dir outside the bucket and the engine's own state.
    const everything = await fs.promises.readdir(dataDir, { recursive: true });
    expect(everything.filter((f) => !/^(s3|firehose)(\/|$)/.test(f))).toEqual([]);
    expect(engine.counters).toMatchObject({ partitioningFailed: hostile.length + 2, deliveredRows: 1 });
    expectBalanced(engine);
  });

  it('passes records through without a transform, under a prefix without expressions (yyyy/MM/dd/HH/ appended)', async () => {
    const engine = await open(lakeOptions({
      destination: { kind: 'lake', model, glueTable: { databaseName: 'd', tableName: 't' }, prefix: 'plain/' },
      timeZone: 'Asia/Tokyo',
    }, null));
    await engine.ingest([record(1), record(2)]);
    await engine.flush();
    expect(await keys('plain/')).toEqual([expect.stringMatching(/^plain\/2026\/03\/01\/19\/sluice-dev-clickstream-lake-1-2026-03-01-19-00-00-[0-9a-f-]{36}\.parquet$/)]);
    expect(await parquetRows('plain/', 'user_id')).toEqual([{ user_id: 'u-1' }, { user_id: 'u-2' }]);
  });

  it('flushes when the buffer reaches its size hint', async () => {
    const engine = await open(lakeOptions({ bufferSizeMiB: 500 / (1024 * 1024) }));
    const flushed = nextFlush(engine);
    await engine.ingest([record(1)]);
    expect(engine.counters.deliveredRows).toBe(0);
    await engine.ingest([record(2), record(3)]);
    await flushed;
    expect(engine.counters.deliveredRows).toBe(3);
  });

  it('flushes when the oldest buffered record is as old as the interval hint', async () => {
    const clock = new ManualClock();
    const engine = await open(lakeOptions({ clock, bufferIntervalSeconds: 2 }));
    await engine.ingest([record(1)]);
    clock.advance(1000);
    await engine.ingest([record(2)]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(engine.counters.deliveredRows).toBe(0);
    const flushed = nextFlush(engine);
    clock.advance(1000);
    await flushed;
    expect(engine.counters.deliveredRows).toBe(2);
  });

  it('stops taking records when stopping, after flushing what it holds', async () => {
    const engine = await open(lakeOptions());
    await engine.ingest([record(1), record(2)]);
    await engine.stop();
    expect(engine.counters.deliveredRows).toBe(2);
    expect(await engine.ingest([record(3), record(4)])).toEqual([
      { ok: false, errorCode: 'ServiceUnavailableException', errorMessage: expect.stringContaining('shutting down') },
      { ok: false, errorCode: 'ServiceUnavailableException', errorMessage: expect.stringContaining('shutting down') },
    ]);
  });

  it('answers ServiceUnavailableException when too much is pending', async () => {
    const engine = await open(lakeOptions({ maxPendingMiB: 1000 / (1024 * 1024) }));
    const accepted = await engine.ingest(Array.from({ length: 3 }, (_, i) => record(i)));
    expect(accepted.every((r) => r.ok)).toBe(true);
    const refused = await engine.ingest(Array.from({ length: 10 }, (_, i) => record(10 + i)));
    expect(refused.every((r) => !r.ok && r.errorCode === 'ServiceUnavailableException' && r.errorMessage === 'Slow down.')).toBe(true);
    await engine.flush();
    expect((await engine.ingest([record(30)]))[0].ok).toBe(true);
  });

  it('refuses configurations it cannot honour, naming the setting', async () => {
    await expect(DeliveryEngine.open(lakeOptions({ bufferSizeMiB: 0 }))).rejects.toThrow(/bufferSizeMiB must be > 0/);
    await expect(DeliveryEngine.open(lakeOptions({ bucket: 'Bad_Bucket' }))).rejects.toThrow(/bucket "Bad_Bucket"/);
    await expect(DeliveryEngine.open(lakeOptions({ timeZone: 'Mars/Olympus' }))).rejects.toThrow(/not a known IANA time zone/);
    await expect(DeliveryEngine.open(lakeOptions({}, { retries: -1 }))).rejects.toThrow(/processor\.retries/);
    await expect(DeliveryEngine.open(lakeOptions({
      destination: { kind: 'lake', model, glueTable: { databaseName: 'd', tableName: 't' }, errorPrefix: 'errors/!{timestamp:yyyy}/' },
    }))).rejects.toThrow(/must contain !\{firehose:error-output-type\}/);
  });
});

describe('DeliveryEngine: durability', () => {
  it('re-delivers acknowledged records after a SIGKILL, exactly once', async () => {
    const script = path.join(dataDir, 'crash.ts');
    fs.writeFileSync(script, `
      import { DeliveryEngine } from ${JSON.stringify(path.join(PROJECT_ROOT, 'lib/local/delivery-stream'))};
      import { loadModel } from ${JSON.stringify(path.join(PROJECT_ROOT, 'lib/schema/registry'))};
      (async () => {
        const engine = await DeliveryEngine.open({
          streamName: ${JSON.stringify(STREAM)}, dataDir: ${JSON.stringify(dataDir)}, bucket: ${JSON.stringify(BUCKET)},
          destination: { kind: 'lake', model: loadModel('clickstream'), glueTable: { databaseName: 'd', tableName: 't' } },
          bufferSizeMiB: 64, bufferIntervalSeconds: 900,
        });
        for (let batch = 0; batch < 5; batch++) {
          const records = Array.from({ length: 20 }, (_, i) => ({ recordId: 'r' + (batch * 20 + i),
            data: Buffer.from(JSON.stringify({ event_id: 'e' + (batch * 20 + i), user_id: 'u' + String(batch * 20 + i).padStart(3, '0') })) }));
          const results = await engine.ingest(records);
          if (!results.every((r) => r.ok)) throw new Error('not acknowledged');
        }
        process.stdout.write('acked 100\\n');
        process.kill(process.pid, 'SIGKILL');
      })();
    `);
    const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin/run-ts.js'), script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, s) => resolve(s)));
    expect(out).toContain('acked 100');
    expect(signal).toBe('SIGKILL');
    expect(await keys()).toEqual([]);

    const restarted = await open(lakeOptions({
      destination: { kind: 'lake', model, glueTable: { databaseName: 'd', tableName: 't' }, prefix: 'recovered/' },
    }, null));
    expect(restarted.counters).toMatchObject({ recovered: 100, received: 100 });
    await restarted.flush();
    const rows = await parquetRows('recovered/', 'user_id');
    expect(rows.map((r) => r.user_id)).toEqual(Array.from({ length: 100 }, (_, i) => `u${String(i).padStart(3, '0')}`));
    await restarted.stop();
    engines.splice(engines.indexOf(restarted), 1);
    // The crashed run's segment is gone once everything in it is delivered.
    expect(fs.readdirSync(path.join(dataDir, 'firehose', STREAM, 'wal'))).toHaveLength(1);

    // Delivered means delivered: a third start finds nothing to redo.
    const third = await open(lakeOptions({}, null));
    expect(third.counters.recovered).toBe(0);
  }, 60_000);

  it('a Kinesis batch read again after a crash (logged here, not yet checkpointed by the reader) is answered Ok without a second copy', async () => {
    const first = await open(lakeOptions({ destination: { kind: 'lake', model, glueTable: { databaseName: 'd', tableName: 't' }, prefix: 'kinesis/' } }, null));
    expect((await first.ingest([record(1, {}, true), record(2, {}, true)])).every((r) => r.ok)).toBe(true);

    // The next start: the reader's checkpoint was not written, so it offers the batch again, then a new record.
    const second = await open(lakeOptions({ destination: { kind: 'lake', model, glueTable: { databaseName: 'd', tableName: 't' }, prefix: 'kinesis/' } }, null));
    expect(second.counters.recovered).toBe(2);
    const again = await second.ingest([record(1, {}, true), record(2, {}, true), record(3, {}, true)]);
    expect(again.every((r) => r.ok)).toBe(true);
    expect(second.counters.received).toBe(3);
    // kinesis-mock restarted from saved state numbers new records from there: an earlier sequence number that
    // arrived later is a new record, not a repeat.
    const renumbered = record(4, {}, true);
    const fresh: IncomingRecord = { ...renumbered, kinesisRecordMetadata: { ...renumbered.kinesisRecordMetadata!, sequenceNumber: record(2, {}, true).kinesisRecordMetadata!.sequenceNumber } };
    expect((await second.ingest([fresh]))[0].ok).toBe(true);
    expect(second.counters.received).toBe(4);

    await second.flush();
    expect((await parquetRows('kinesis/', 'user_id')).map((r) => r.user_id)).toEqual(['u-1', 'u-2', 'u-3', 'u-4']);
  });

  it('cuts off a torn final frame and keeps every complete one', async () => {
    const first = await open(lakeOptions({}, null));
    await first.ingest([record(1), record(2)]);
    await first.ingest([record(3)]);
    // Simulate a crash mid-append: a frame header promising more bytes than were written.
    const walDir = path.join(dataDir, 'firehose', STREAM, 'wal');
    const [segment] = fs.readdirSync(walDir);
    fs.appendFileSync(path.join(walDir, segment), Buffer.from([0, 0, 1, 0, 1, 2, 3, 4, 9, 9, 9]));
    const sizeWithGarbage = fs.statSync(path.join(walDir, segment)).size;

    const warnings: string[] = [];
    const second = await open(lakeOptions({ onError: (e) => warnings.push((e as Error).message) }, null));
    expect(second.counters.recovered).toBe(3);
    expect(fs.statSync(path.join(walDir, segment)).size).toBe(sizeWithGarbage - 11);
    expect(warnings).toEqual([`${path.join(walDir, segment)}: cut off 11 bytes at byte ${sizeWithGarbage - 11} that a crash left unfinished (never acknowledged)`]);
  });

  it('a damaged frame with valid ones after it is skipped, not taken for a torn end: the acknowledged records after it are delivered', async () => {
    const first = await open(lakeOptions({}, null));
    for (const batch of [[record(1), record(2)], [record(3)], [record(4), record(5)]]) expect((await first.ingest(batch)).every((r) => r.ok)).toBe(true);
    // A byte of the frame holding record 3 flipped.
    const { file, bytes, at: damaged } = walFrameHolding('"u-3"');
    bytes[damaged + 12] ^= 0xff;
    fs.writeFileSync(file, bytes);
    // What a start counts of a log it does not run (read only) is what this start recovers.
    expect(undeliveredRecordCount(dataDir, STREAM)).toBe(4);

    const { engine: second, warnings } = await reopenRecovering();
    expect(second.counters.recovered).toBe(4);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: \\d+ corrupt bytes at byte ${damaged}, whole frames after them to the end: reading on from byte \\d+ \\(the records in the damaged part are lost; the segment as found is kept as .+\\.corrupt\\)$`));
    expect(fs.readFileSync(`${file}.corrupt`).equals(bytes)).toBe(true);
    await second.flush();
    expect((await parquetRows('recovered/', 'user_id')).map((r) => r.user_id)).toEqual(['u-1', 'u-2', 'u-4', 'u-5']);
  });

  it('frame-shaped bytes a producer sent, read on after damage, neither mark records delivered nor take their place', async () => {
    // A delivered mark's payload is 2 + {"through":N}, records' 1 + [u32 header length][header][data].
    const fakeMark = walFrame(Buffer.concat([Buffer.from([2]), Buffer.from(JSON.stringify({ through: 1_000_000 }))]));
    const fakeHeader = Buffer.from(JSON.stringify([[0, 'fake', 0, 4, null]]));
    const lengthOfHeader = Buffer.alloc(4);
    lengthOfHeader.writeUInt32BE(fakeHeader.length, 0);
    const fakeRecords = walFrame(Buffer.concat([Buffer.from([1]), lengthOfHeader, fakeHeader, Buffer.from('EVIL')]));
    // The producer's record ends its frame, so the fake frames in it chain to the next real frame and on to the end.
    const evil: IncomingRecord = { recordId: 'evil', data: Buffer.concat([Buffer.from('not json '), fakeMark, fakeRecords]) };
    const first = await open(lakeOptions({}, null));
    for (const batch of [[record(1), record(2)], [record(3), evil], [record(4)]]) expect((await first.ingest(batch)).every((r) => r.ok)).toBe(true);
    const { file, bytes, at: holding } = walFrameHolding('EVIL');
    // Damage to the checksum of the frame that holds the producer's record.
    bytes[holding + 5] ^= 0xff;
    fs.writeFileSync(file, bytes);
    expect(undeliveredRecordCount(dataDir, STREAM)).toBe(3);

    const { engine: second, warnings } = await reopenRecovering();
    expect(warnings).toEqual([expect.stringContaining(`corrupt bytes at byte ${holding}, whole frames after them to the end`)]);
    // Records 1, 2 and 4: the damaged frame's two are lost; the fake mark did not make them delivered, nor did the fake record take record 1's place.
    expect(second.counters.recovered).toBe(3);
    await second.flush();
    expect((await parquetRows('recovered/', 'user_id')).map((r) => r.user_id)).toEqual(['u-1', 'u-2', 'u-4']);
  });

  it('a frame whose checksum holds but whose records do not read (its header not JSON) is a bad frame, not a failed start', async () => {
    const first = await open(lakeOptions({}, null));
    expect((await first.ingest([record(1)])).every((r) => r.ok)).toBe(true);
    const walDir = path.join(dataDir, 'firehose', STREAM, 'wal');
    const [segment] = fs.readdirSync(walDir);
    fs.appendFileSync(path.join(walDir, segment), walFrame(Buffer.concat([Buffer.from([1, 0, 0, 0, 9]), Buffer.from('[not json'), Buffer.from('data')])));

    const warnings: string[] = [];
    const second = await open(lakeOptions({ onError: (e) => warnings.push((e as Error).message) }, null));
    expect(second.counters.recovered).toBe(1);
    expect(warnings).toEqual([expect.stringMatching(/: cut off 26 bytes at byte \d+ that a crash left unfinished \(never acknowledged\)$/)]);
  });

  it('a whole frame of a kind this Sluice does not know (a newer Sluice\'s log) stops the start, naming the file; nothing is cut off', async () => {
    const first = await open(lakeOptions({}, null));
    expect((await first.ingest([record(1)])).every((r) => r.ok)).toBe(true);
    const walDir = path.join(dataDir, 'firehose', STREAM, 'wal');
    const [segment] = fs.readdirSync(walDir);
    const file = path.join(walDir, segment);
    const at = fs.statSync(file).size;
    fs.appendFileSync(file, walFrame(Buffer.concat([Buffer.from([3]), Buffer.from('{"a later kind":true}')])));
    const bytes = fs.readFileSync(file);

    const refusal = `${file}: the frame at byte ${at} is of a kind this Sluice does not read (type 3): the write-ahead log was written by a newer Sluice. `
      + `Start the twin with that Sluice to deliver what it holds (a stop flushes it), or move ${path.join(dataDir, 'firehose', STREAM)} away to start without it; nothing in it was changed`;
    expect(() => undeliveredRecordCount(dataDir, STREAM)).toThrow(refusal);
    await expect(DeliveryEngine.open(lakeOptions({}, null))).rejects.toMatchObject({ name: 'EmulatorStateError', message: refusal });
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
  });

  it('keeps the write-ahead log small under a steady load, where records always arrive while a flush runs', async () => {
    const walDir = path.join(dataDir, 'firehose', STREAM, 'wal');
    let next = 0;
    const arriving: Array<Promise<unknown>> = [];
    // Each flush's transform sees records arrive (~400 KB): the segment being written is never wholly delivered.
    const batch = () => Array.from({ length: 4 }, () => record(next++, { page: { url: 'x'.repeat(100_000), path: '/' } }));
    const engine: DeliveryEngine = await open(lakeOptions({}, { invoke: fakeTransform(() => arriving.push(engine.ingest(batch()))) }));
    await engine.ingest(batch());
    const walBytes = () => fs.readdirSync(walDir).reduce((n, f) => n + fs.statSync(path.join(walDir, f)).size, 0);
    let most = 0;
    for (let i = 0; i < 20; i++) {
      await engine.flush();
      await Promise.all(arriving.splice(0));
      most = Math.max(most, walBytes());
    }
    // 8 MB went through; what the log holds is about a segment (1 MiB) beyond the ~400 KB not yet delivered.
    expect(engine.counters.deliveredRows).toBeGreaterThanOrEqual(76);
    expect(most).toBeLessThan(3 * 1024 * 1024);
  });

  it('a disk that fails the write of a new segment\'s first mark leaves no segment file and no open descriptor behind, append after append', async () => {
    const walDir = path.join(dataDir, 'firehose', STREAM, 'wal');
    const engine = await open(lakeOptions({}, null));
    const realOpen = fs.promises.open;
    const segmentHandles: fs.promises.FileHandle[] = [];
    const opened = jest.spyOn(fs.promises, 'open').mockImplementation(async (...args: Parameters<typeof realOpen>) => {
      const handle = await realOpen(...args);
      if (String(args[0]).startsWith(walDir)) segmentHandles.push(handle);
      return handle;
    });
    const failing = jest.spyOn(await fileHandlePrototype(dataDir), 'datasync').mockRejectedValue(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
    try {
      for (let i = 1; i <= 5; i++) expect((await engine.ingest([record(i)])).some((r) => r.ok)).toBe(false);
      expect(fs.readdirSync(walDir)).toEqual([]);
      // A closed FileHandle's fd is -1.
      expect(segmentHandles.map((h) => h.fd)).toEqual([-1, -1, -1, -1, -1]);
    } finally {
      failing.mockRestore();
      opened.mockRestore();
    }
    expect((await engine.ingest([record(6)])).every((r) => r.ok)).toBe(true);
    expect(fs.readdirSync(walDir)).toHaveLength(1);
  });

  it('acknowledges nothing whose write-ahead-log frame could not be fsynced', async () => {
    const options = lakeOptions({ destination: { kind: 'lake', model, glueTable: { databaseName: 'd', tableName: 't' }, prefix: 'fsync/' } }, null);
    const first = await open(options);
    // The segment exists (and was synced) before the disk starts failing: only the frame's own fdatasync fails.
    expect(await first.ingest([record(1)])).toEqual([{ ok: true }]);
    const datasync = jest.spyOn(await fileHandlePrototype(dataDir), 'datasync').mockRejectedValue(eio('fdatasync'));
    let syncs = 0;
    const answers = await first.ingest([record(2), record(3)]).finally(() => {
      syncs = datasync.mock.calls.length;
      datasync.mockRestore();
    });
    expect(syncs).toBeGreaterThan(0);
    expect(answers).toEqual([2, 3].map(() => ({
      ok: false,
      errorCode: 'ServiceUnavailableException',
      errorMessage: expect.stringMatching(/could not write its write-ahead log \(EIO: i\/o error, fdatasync\); these records were not accepted/),
    })));
    expect(first.counters.received).toBe(1);
    await first.stop();
    engines.splice(engines.indexOf(first), 1);

    // The refused frame was taken back: a restart recovers only what was acknowledged.
    const second = await open(options);
    expect(second.counters.recovered).toBe(0);
    expect((await parquetRows('fsync/', 'user_id')).map((r) => r.user_id)).toEqual(['u-1']);
  });

  it('retries object writes through disk errors without losing or duplicating a record', async () => {
    const store = new ObjectStore(dataDir);
    const enospc = (): Error => Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    let dataFailures = 0;
    let errorFailures = 0;
    const realFromFile = store.putObjectFromFile.bind(store);
    const realPut = store.putObject.bind(store);
    store.putObjectFromFile = async (...args) => (dataFailures++ < 3 ? Promise.reject(enospc()) : realFromFile(...args));
    store.putObject = async (...args) => (errorFailures++ < 3 ? Promise.reject(enospc()) : realPut(...args));
    const reported: string[] = [];
    const engine = await open(lakeOptions({ store, onError: (_e, context) => reported.push(context) }));
    await engine.ingest([record(1), record(2), record(3, { mode: 'fail' })]);
    await engine.flush();
    expect(await parquetRows('data/', 'user_id')).toEqual([{ user_id: 'u-1' }, { user_id: 'u-2' }]);
    expect(await errorLines('processing-failed')).toHaveLength(1);
    expect(reported.length).toBeGreaterThanOrEqual(6);
    expectBalanced(engine);
  });

  it('surfaces an error object it cannot write as a failure of stop(), and delivers it on the next start', async () => {
    const store = new ObjectStore(dataDir);
    store.putObject = async () => Promise.reject(Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' }));
    const engine = await open(lakeOptions({ store, retryDelayMs: 5 }));
    await engine.ingest([record(1), record(2, { mode: 'fail' })]);
    const flushing = engine.flush();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Still retrying: Firehose blocks delivery rather than drop an error record.
    expect(engine.counters.processingFailed).toBe(0);
    const stopping = engine.stop();
    await expect(flushing).rejects.toThrow(DeliveryStalledError);
    await expect(stopping).rejects.toThrow(/2 records could not be delivered before stopping \(EROFS: read-only file system\)/);
    engines.splice(0);

    const next = await open(lakeOptions());
    expect(next.counters.recovered).toBe(2);
    await next.flush();
    expect(await errorLines('processing-failed')).toHaveLength(1);
    // The Parquet object of the failed flush was written; the record is delivered again (at-least-once).
    expect((await parquetRows('data/', 'user_id')).map((r) => r.user_id)).toEqual(['u-1', 'u-1']);
  });

  it('holds received = delivered + dropped + failed for any mix of outcomes (property)', async () => {
    const outcome = fc.constantFrom('ok', 'drop', 'fail', 'bad-type', 'bad-key');
    await fc.assert(fc.asyncProperty(fc.array(outcome, { minLength: 1, maxLength: 40 }), async (modes) => {
      const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sluice-prop-'));
      try {
        const engine = await DeliveryEngine.open({ ...lakeOptions(), dataDir: dir });
        await engine.ingest(modes.map((m, i) => record(i, m === 'ok' ? {} : m === 'bad-key' ? { partitionKeys: { event_type: '..' } } : { mode: m })));
        await engine.stop();
        const c = engine.counters;
        expect(c.received).toBe(modes.length);
        expect(c.deliveredRows).toBe(modes.filter((m) => m === 'ok').length);
        expect(c.dropped).toBe(modes.filter((m) => m === 'drop').length);
        expect(c.processingFailed).toBe(modes.filter((m) => m === 'fail').length);
        expect(c.formatConversionFailed).toBe(modes.filter((m) => m === 'bad-type').length);
        expect(c.partitioningFailed).toBe(modes.filter((m) => m === 'bad-key').length);
        expect(c.pending).toBe(0);
      } finally {
        await fs.promises.rm(dir, { recursive: true, force: true });
      }
    }), { numRuns: 8 });
  }, 60_000);
});

describe('DeliveryEngine: search', () => {
  it('hands Ok documents to the sink and backs up failures under search-backup/<pipeline>/', async () => {
    const sink = new SearchSink({ model, dataDir, url: null });
    const engine = await open({
      ...lakeOptions(),
      streamName: 'sluice-dev-clickstream-search',
      destination: { kind: 'search', sink, backupMode: 'AllDocuments' },
    });
    await engine.ingest([record(1), record(2), record(3, { mode: 'fail' }), record(4, { mode: 'drop' })]);
    await engine.stop();
    const bulkDir = path.join(dataDir, 'opensearch', 'clickstream', 'clickstream-2026-03-01');
    const body = fs.readFileSync(path.join(bulkDir, '00000001.ndjson'), 'utf8').trimEnd().split('\n');
    expect(body.filter((_, i) => i % 2 === 0).map((l) => JSON.parse(l))).toEqual([
      // Firehose's default document ids (the records'), not the event ids.
      { index: { _index: 'clickstream-2026-03-01', _id: 'rec-1' } },
      { index: { _index: 'clickstream-2026-03-01', _id: 'rec-2' } },
    ]);
    expect(await keys('search-backup/clickstream/processing-failed/2026/03/01/10/')).toHaveLength(1);
    expect(await keys('search-backup/clickstream/2026/03/01/10/')).toHaveLength(1);
    expect(engine.counters).toMatchObject({ received: 4, deliveredRows: 2, processingFailed: 1, dropped: 1, files: 1, pending: 0 });
  });

  it('backs up documents OpenSearch refused as AmazonOpenSearchService-failed', async () => {
    const sink = { pipeline: 'clickstream', close: async () => undefined } as unknown as SearchSink;
    sink.deliver = async (documents) => ({
      indexed: documents.length - 1,
      requests: 1,
      bytes: 100,
      failed: [{
        document: documents[0], attemptsMade: 4, errorCode: '400', errorMessage: '{"type":"mapper_parsing_exception"}',
        attemptEndingTimestamp: ARRIVAL + 5000, esDocumentId: 'x', esIndexName: 'clickstream-2026-03-01',
      }],
    });
    const engine = await open({ ...lakeOptions(), streamName: 'sluice-dev-clickstream-search', destination: { kind: 'search', sink } });
    // A KPL user record (the second of its aggregate): its subsequence is in the failed-document line.
    const first = record(1, {}, true);
    await engine.ingest([{ ...first, kinesisRecordMetadata: { ...first.kinesisRecordMetadata!, subsequenceNumber: 1 } }, record(2, {}, true)]);
    await engine.flush();
    const [key] = await keys('search-backup/clickstream/AmazonOpenSearchService-failed/');
    expect(key).toMatch(/^search-backup\/clickstream\/AmazonOpenSearchService-failed\/2026\/03\/01\/10\/sluice-dev-clickstream-search-1-/);
    const line = JSON.parse((await new ObjectStore(dataDir).getObject(BUCKET, key)).toString()) as Record<string, unknown>;
    expect(Object.keys(line)).toEqual([
      'attemptsMade', 'arrivalTimestamp', 'errorCode', 'errorMessage', 'attemptEndingTimestamp', 'rawData', 'subsequenceNumber', 'esDocumentId', 'esIndexName', 'esTypeName',
    ]);
    expect(line).toMatchObject({ attemptsMade: 4, arrivalTimestamp: ARRIVAL + 1, errorCode: '400', subsequenceNumber: 1, esDocumentId: 'x', esTypeName: '' });
    expect(engine.counters).toMatchObject({ deliveredRows: 1, searchFailed: 1, pending: 0 });
  });
});

describe('engineOptionsFromConfig', () => {
  it('takes names, buffer hints and transform settings from the Sluice configuration', () => {
    const config = loadConfig();
    const invoke = fakeTransform();
    const options = engineOptionsFromConfig(config, 'clickstream', 'lake', { dataDir, bucket: BUCKET, model, processor: invoke, sourceKinesisStreamArn: 'arn:k' });
    expect(options).toMatchObject({
      streamName: `${config.prefix}-${config.env}-clickstream-lake`,
      bufferSizeMiB: config.local.bufferSizeMiB,
      bufferIntervalSeconds: config.local.bufferIntervalSeconds,
      sourceKinesisStreamArn: 'arn:k',
      processor: {
        invoke,
        retries: config.pipelines.clickstream.transform.retries,
        bufferMiB: config.pipelines.clickstream.transform.processorBufferMiB,
        timeoutMs: config.pipelines.clickstream.transform.timeoutSeconds * 1000,
      },
      destination: { kind: 'lake', glueTable: { databaseName: `${config.prefix}_${config.env}`.replace(/-/g, '_'), tableName: 'clickstream' } },
    });
    expect(engineOptionsFromConfig(config, 'clickstream', 'lake', { dataDir, model }).bucket).toBe(`${config.prefix}-${config.env}-data`);
    expect(() => engineOptionsFromConfig(config, 'iot', 'search', { dataDir, bucket: BUCKET, model })).toThrow(/no search destination/);
    expect(() => engineOptionsFromConfig(config, 'nope', 'lake', { dataDir, bucket: BUCKET, model })).toThrow(/not configured/);
  });
});
