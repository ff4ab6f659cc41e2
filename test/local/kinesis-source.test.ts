/**
 * A Kinesis-sourced delivery stream reading a record the Kinesis Producer Library aggregated: Firehose
 * de-aggregates it before the transform, so each user record is a Firehose record of its own — a row, or an
 * error line of its own — and a restart that reads the Kinesis record again delivers none of them twice.
 * The real iot transform and delivery engine on a temp data dir; what is checked is what a user finds
 * (Parquet through DuckDB, error objects, counters).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { _Record } from '@aws-sdk/client-kinesis';
import { DuckDBInstance } from '@duckdb/node-api';
import type { FirehoseTransformationEvent } from 'aws-lambda';
import { DeliveryEngine, type DeliveryEngineOptions, type IncomingRecord } from '../../lib/local/delivery-stream';
import { firehoseRecordsOf } from '../../lib/local/kinesis-source';
import { ObjectStore } from '../../lib/local/object-store';
import { loadModel, readSchema } from '../../lib/schema/registry';
import { createRng, sampleRecord } from '../../lib/schema/sample';
import { createTransformHandler } from '../../transforms/record-transform/handler';
import type { TransformationEvent } from '../../transforms/shared/firehose-event';
import { aggregatedRecord } from '../kpl-encoder';

const BUCKET = 'sluice-local-lake';
const STREAM = 'sluice-dev-iot-lake';
const SHARD = 'shardId-000000000002';
const ARRIVAL = new Date(Date.UTC(2026, 2, 1, 10, 0, 0, 250));
const iot = readSchema('iot');

let dataDir: string;
const engines: DeliveryEngine[] = [];

beforeEach(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-kpl-'));
});

afterEach(async () => {
  await Promise.allSettled(engines.splice(0).map((e) => e.stop()));
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function kinesisRecord(sequenceNumber: string, data: Buffer): _Record {
  return { SequenceNumber: sequenceNumber, PartitionKey: 'aggregate-pk', Data: data, ApproximateArrivalTimestamp: ARRIVAL };
}

/** Opens the iot lake engine; `seen` gets every transformation event, as JSON on the wire (what a Lambda receives). */
async function openEngine(seen?: TransformationEvent[]): Promise<DeliveryEngine> {
  const transform = createTransformHandler({ pipeline: 'iot', destination: 'lake', piiHashKey: '' });
  const options: DeliveryEngineOptions = {
    streamName: STREAM,
    dataDir,
    bucket: BUCKET,
    destination: { kind: 'lake', model: loadModel('iot'), glueTable: { databaseName: 'sluice_dev', tableName: 'iot' } },
    processor: {
      invoke: (event) => {
        seen?.push(JSON.parse(JSON.stringify(event)) as TransformationEvent);
        return transform(event);
      },
      retries: 0,
      retryDelayMs: 0,
    },
    sourceKinesisStreamArn: 'arn:aws:kinesis:us-east-1:000000000000:stream/sluice-dev-iot',
    bufferSizeMiB: 64,
    bufferIntervalSeconds: 900,
  };
  const engine = await DeliveryEngine.open(options);
  engines.push(engine);
  return engine;
}

async function lakeRows(): Promise<Array<{ event_id: string; shard_id: string; sequence_number: string }>> {
  const store = new ObjectStore(dataDir);
  const files = (await store.listObjects(BUCKET, 'data/iot/')).filter((o) => o.key.endsWith('.parquet')).map((o) => `'${store.pathFor(BUCKET, o.key)}'`);
  if (files.length === 0) return [];
  const duck = await DuckDBInstance.create(':memory:');
  const sql = await duck.connect();
  try {
    const result = await sql.runAndReadAll(`SELECT event_id, sluice.shard_id AS shard_id, sluice.sequence_number AS sequence_number FROM read_parquet([${files.join(', ')}]) ORDER BY event_id`);
    return result.getRowObjectsJson() as Array<{ event_id: string; shard_id: string; sequence_number: string }>;
  } finally {
    sql.closeSync();
    duck.closeSync();
  }
}

async function processingFailedLines(): Promise<Array<Record<string, unknown>>> {
  const store = new ObjectStore(dataDir);
  const lines: Array<Record<string, unknown>> = [];
  for (const o of await store.listObjects(BUCKET, 'errors/iot/processing-failed/')) {
    for (const l of (await store.getObject(BUCKET, o.key)).toString().trimEnd().split('\n')) lines.push(JSON.parse(l) as Record<string, unknown>);
  }
  return lines;
}

describe('a Kinesis source with KPL-aggregated records', () => {
  const rng = createRng(21);
  const events = Array.from({ length: 3 }, () => sampleRecord(iot, rng));
  const bad = '{"event_id": "not json';
  const aggregate = aggregatedRecord([
    ...events.map((e) => ({ partitionKey: String(e.device_id), data: JSON.stringify(e) })),
    { partitionKey: 'broken', data: bad },
  ]);
  const SEQ = '49660000000000000000000000000000000000000000000000000021';

  test('the transform gets one record per user record, with the Kinesis record\'s sequence number and its index as subsequence number', () => {
    const records = firehoseRecordsOf(SHARD, kinesisRecord(SEQ, aggregate));
    expect(records.map((r) => Buffer.from(r.data).toString())).toEqual([...events.map((e) => JSON.stringify(e)), bad]);
    expect(records.map((r) => r.kinesisRecordMetadata)).toEqual([...events.map((e) => String(e.device_id)), 'broken'].map((partitionKey, i) => ({
      shardId: SHARD, partitionKey, approximateArrivalTimestamp: ARRIVAL.getTime(), sequenceNumber: SEQ, subsequenceNumber: i,
    })));
    expect(records.every((r) => r.arrivalTimestamp === ARRIVAL.getTime())).toBe(true);
  });

  test('a plain record, or one with the magic but a bad MD5, is passed on whole', () => {
    const plain = Buffer.from(JSON.stringify(events[0]));
    expect(firehoseRecordsOf(SHARD, kinesisRecord(SEQ, plain))).toEqual([{
      data: plain, arrivalTimestamp: ARRIVAL.getTime(),
      kinesisRecordMetadata: { shardId: SHARD, partitionKey: 'aggregate-pk', approximateArrivalTimestamp: ARRIVAL.getTime(), sequenceNumber: SEQ, subsequenceNumber: 0 },
    }]);
    const damaged = Buffer.from(aggregate);
    damaged[damaged.length - 1] ^= 0xff;
    expect(firehoseRecordsOf(SHARD, kinesisRecord(SEQ, damaged)).map((r) => r.data)).toEqual([damaged]);
    expect(firehoseRecordsOf(SHARD, kinesisRecord(SEQ, aggregatedRecord([])))).toEqual([]);
  });

  test('the transform\'s event gives subsequenceNumber as Firehose does: a number, 0 for a plain record, the index for a user record', async () => {
    const seen: TransformationEvent[] = [];
    const engine = await openEngine(seen);
    await engine.ingest([
      ...firehoseRecordsOf(SHARD, kinesisRecord(`${SEQ.slice(0, -2)}20`, Buffer.from(JSON.stringify(events[0])))),
      ...firehoseRecordsOf(SHARD, kinesisRecord(SEQ, aggregate)),
    ]);
    await engine.flush();
    const metadata = seen.flatMap((e) => e.records.map((r) => r.kinesisRecordMetadata));
    expect(metadata.map((m) => m?.subsequenceNumber)).toEqual([0, 0, 1, 2, 3]);
    // The same fields, of the same JSON types, as AWS's sample event.
    const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, '../fixtures/events/firehose-kinesis.json'), 'utf8')) as FirehoseTransformationEvent;
    const typesOf = (m: object | undefined) => Object.fromEntries(Object.entries(m ?? {}).map(([k, v]) => [k, typeof v]));
    for (const m of metadata) expect(typesOf(m)).toEqual(typesOf(fixture.records[0].kinesisRecordMetadata));
  });

  test('records an older Sluice logged with a string subsequenceNumber are sent, after a restart, with the number', async () => {
    const first = await openEngine();
    // As the twin logged them before: '' for a plain record, '0', '1', … for user records.
    const legacy = (records: IncomingRecord[], subsequence: (i: number) => string): IncomingRecord[] => records.map((r, i) => ({
      ...r, kinesisRecordMetadata: { ...r.kinesisRecordMetadata!, subsequenceNumber: subsequence(i) as unknown as number },
    }));
    await first.ingest([
      ...legacy(firehoseRecordsOf(SHARD, kinesisRecord(`${SEQ.slice(0, -2)}20`, Buffer.from(JSON.stringify(events[0])))), () => ''),
      ...legacy(firehoseRecordsOf(SHARD, kinesisRecord(SEQ, aggregate)), String),
    ]);
    const seen: TransformationEvent[] = [];
    const restarted = await openEngine(seen);
    expect(restarted.counters.recovered).toBe(5);
    await restarted.flush();
    expect(seen.flatMap((e) => e.records.map((r) => r.kinesisRecordMetadata?.subsequenceNumber))).toEqual([0, 0, 1, 2, 3]);
  });

  test('each user record lands on its own: 3 rows sharing the Kinesis record\'s sequence number, the bad one fails alone', async () => {
    const engine = await openEngine();
    expect((await engine.ingest(firehoseRecordsOf(SHARD, kinesisRecord(SEQ, aggregate)))).every((r) => r.ok)).toBe(true);
    await engine.flush();
    expect(await lakeRows()).toEqual(events.map((e) => ({ event_id: e.event_id, shard_id: SHARD, sequence_number: SEQ })).sort((a, b) => String(a.event_id).localeCompare(String(b.event_id))));
    const failed = await processingFailedLines();
    expect(failed.map((l) => Buffer.from(String(l.rawData), 'base64').toString())).toEqual([bad]);
    expect(engine.counters).toMatchObject({ received: 4, deliveredRows: 3, processingFailed: 1, pending: 0 });
  });

  test('read again after a restart (logged, not checkpointed), no user record is logged or delivered twice', async () => {
    const first = await openEngine();
    expect((await first.ingest(firehoseRecordsOf(SHARD, kinesisRecord(SEQ, aggregate)))).every((r) => r.ok)).toBe(true);

    // The next start, with nothing delivered yet (as after a SIGKILL): the reader's checkpoint is behind the
    // log, so it offers the aggregated record again, then a new one.
    const restarted = await openEngine();
    expect(restarted.counters.recovered).toBe(4);
    const again = await restarted.ingest([
      ...firehoseRecordsOf(SHARD, kinesisRecord(SEQ, aggregate)),
      ...firehoseRecordsOf(SHARD, kinesisRecord(`${SEQ.slice(0, -2)}22`, aggregatedRecord([{ partitionKey: 'later', data: JSON.stringify(events[0]) }]))),
    ]);
    expect(again.every((r) => r.ok)).toBe(true);
    await restarted.flush();
    expect(restarted.counters).toMatchObject({ recovered: 4, received: 5, deliveredRows: 4, processingFailed: 1, pending: 0 });
    const rows = await lakeRows();
    expect(rows.map((r) => r.event_id).sort()).toEqual([...events.map((e) => String(e.event_id)), String(events[0].event_id)].sort());
    expect(rows.filter((r) => r.sequence_number === SEQ)).toHaveLength(3);
  });
});
