/**
 * `sluice redrive-consumer` against the twin's own emulators (kinesis-mock, dynalite) and a Firehose endpoint that runs
 * the twin's consumer as the twin does (Lambda's Invoke): records put with `sluice put`, a consumer dead-letter message
 * in the twin's file as its event source mapping writes it, then the redrive: the records land in the metadata table
 * through the twin's consumer (never written from the command's own process), the message goes, and a second redrive
 * of the same range changes no counter.
 */
import * as fs from 'node:fs';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { CreateTableCommand, DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { CreateStreamCommand, DescribeStreamSummaryCommand, GetRecordsCommand, GetShardIteratorCommand, KinesisClient, ListShardsCommand, type _Record } from '@aws-sdk/client-kinesis';
import { dynamoClient, dynamoDocumentClient, kinesisClient } from '../../lib/local/aws-clients';
import { DlqFile } from '../../lib/local/dlq-file';
import { startDynamo, startKinesis, type RunningService } from '../../lib/local/emulators';
import { startFirehoseApi, type RunningFirehoseApi } from '../../lib/local/firehose-api';
import { consumerInvocation } from '../../lib/local/twin';
import { consumerFunctionName } from '../../lib/local/twin-record';
import { createMetadataRecorder } from '../../transforms/metadata-consumer/handler';
import { freePort } from '../../lib/local/ports';
import type { KinesisInvocationRecord } from '../../lib/local/event-source-mapping';
import { METADATA_TABLE_KEYS } from '../../transforms/shared/metadata-table';
import { config, RecordingBackend, registerTwin, sluice, sluiceAfresh, tempDataDir } from './helpers';

const STREAM = 'sluice-dev-iot';
const TABLE = 'sluice-dev-metadata';
let kinesis: RunningService;
let dynamo: RunningService;
let kc: KinesisClient;
let dc: DynamoDBClient;
let dataDir: string;
const backend = new RecordingBackend();
let api: RunningFirehoseApi;

beforeAll(async () => {
  kinesis = await startKinesis({ port: 0 });
  dynamo = await startDynamo({ port: await freePort() });
  kc = kinesisClient(kinesis.endpoint);
  dc = dynamoClient(dynamo.endpoint);
  await kc.send(new CreateStreamCommand({ StreamName: STREAM, ShardCount: 1 }));
  for (let i = 0; i < 100; i++) {
    const { StreamDescriptionSummary } = await kc.send(new DescribeStreamSummaryCommand({ StreamName: STREAM }));
    if (StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const { partitionKey, sortKey } = METADATA_TABLE_KEYS;
  await dc.send(new CreateTableCommand({
    TableName: TABLE, BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: partitionKey, AttributeType: 'S' }, { AttributeName: sortKey, AttributeType: 'S' }],
    KeySchema: [{ AttributeName: partitionKey, KeyType: 'HASH' }, { AttributeName: sortKey, KeyType: 'RANGE' }],
  }));
  const consumer = createMetadataRecorder({ pipeline: 'iot', tableName: TABLE, ttlDays: config.metadata.ttlDays, dynamo: dynamoDocumentClient(dynamo.endpoint) });
  backend.functions.set(consumerFunctionName(config, 'iot'), consumerInvocation(consumer, config.pipelines.iot.consumer.timeoutSeconds));
  api = await startFirehoseApi({ port: 0, backend });
  dataDir = tempDataDir();
  registerTwin(dataDir, { kinesis: kinesis.endpoint }, { endpoints: { firehose: api.url, kinesis: kinesis.endpoint, dynamo: dynamo.endpoint } });
  // The stream's records every test redrives from (each test runs alone too, with -t).
  const put = await sluice('put', 'iot', '--count', '6', '--data-dir', dataDir, '--endpoint-kinesis', kinesis.endpoint);
  expect(put.code).toBe(0);
}, 120_000);
afterAll(async () => {
  kc?.destroy();
  dc?.destroy();
  await api?.close();
  await kinesis?.stop();
  await dynamo?.stop();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

async function shardRecords(): Promise<{ shardId: string; records: _Record[]; streamArn: string }> {
  const { Shards } = await kc.send(new ListShardsCommand({ StreamName: STREAM }));
  const shardId = Shards![0].ShardId!;
  let { ShardIterator: iterator } = await kc.send(new GetShardIteratorCommand({ StreamName: STREAM, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' }));
  const records: _Record[] = [];
  for (let page = 0; iterator && page < 20; page++) {
    const response = await kc.send(new GetRecordsCommand({ ShardIterator: iterator }));
    records.push(...(response.Records ?? []));
    if ((response.Records ?? []).length === 0) break;
    iterator = response.NextShardIterator;
  }
  const { StreamDescriptionSummary } = await kc.send(new DescribeStreamSummaryCommand({ StreamName: STREAM }));
  return { shardId, records, streamArn: StreamDescriptionSummary!.StreamARN! };
}

/** The twin's event source mapping's on-failure record for `records` (its KinesisInvocationRecord). */
function onFailure(shardId: string, streamArn: string, records: readonly _Record[], overrides: Partial<KinesisInvocationRecord['KinesisBatchInfo']> = {}): string {
  const record: KinesisInvocationRecord = {
    requestContext: { requestId: 'r-1', functionArn: 'arn:aws:lambda:us-east-1:000000000000:function:sluice-dev-iot-metadata-consumer', condition: 'RetryAttemptsExhausted', approximateInvokeCount: 6 },
    responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
    version: '1.0',
    timestamp: new Date().toISOString(),
    KinesisBatchInfo: {
      shardId,
      startSequenceNumber: records[0].SequenceNumber!,
      endSequenceNumber: records[records.length - 1].SequenceNumber!,
      approximateArrivalOfFirstRecord: new Date(records[0].ApproximateArrivalTimestamp!).toISOString(),
      approximateArrivalOfLastRecord: new Date(records[records.length - 1].ApproximateArrivalTimestamp!).toISOString(),
      batchSize: records.length,
      streamArn,
      ...overrides,
    },
  };
  return JSON.stringify(record);
}

/** Event items and the sum of every counter of iot in the table. */
async function tableState(): Promise<{ events: number; counted: number }> {
  const { Items } = await dc.send(new ScanCommand({ TableName: TABLE }));
  let events = 0;
  let counted = 0;
  for (const item of Items ?? []) {
    const pk = item.pk?.S ?? '';
    if (pk.startsWith('event#iot#')) events++;
    if (pk.startsWith('count#iot#')) counted += Number(item.events?.N ?? 0);
  }
  return { events, counted };
}

const consumerDlq = () => new DlqFile({ dataDir, queue: 'sluice-dev-consumer-dlq' });

test('a failed batch is read from the stream again and recorded; its message goes; redriven again, nothing is counted twice', async () => {
  const { shardId, records, streamArn } = await shardRecords();
  expect(records).toHaveLength(6);
  // Records 2–5 failed in the consumer; the others were written by it.
  await consumerDlq().send([onFailure(shardId, streamArn, records.slice(1, 5)), '{"damaged']);

  const dry = await sluiceAfresh('redrive-consumer', '--data-dir', dataDir, '--dry-run', '--json');
  expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, outcomes: { 'would-redrive': 1, unreadable: 1 } });
  expect(await tableState()).toEqual({ events: 0, counted: 0 });

  const run = await sluiceAfresh('redrive-consumer', '--data-dir', dataDir, '--json');
  expect(run.code).toBe(1); // the damaged message is kept
  expect(JSON.parse(run.stdout)).toMatchObject({ outcomes: { redriven: 1, unreadable: 1 }, messages: [{ outcome: 'redriven', records: 4, pipeline: 'iot' }, { outcome: 'unreadable', reason: 'the message body is not JSON' }] });
  expect(await tableState()).toEqual({ events: 4, counted: 4 });
  expect(await consumerDlq().count()).toBe(1);
  // Written by the twin's consumer, whose writes the twin serializes with its own, not by a second writer in the command.
  expect(backend.invocations).toBe(1);

  // The same range again (a message delivered twice, a run cut off before its delete): the consumer finds its events.
  await consumerDlq().send([onFailure(shardId, streamArn, records.slice(0, 5))]);
  const again = await sluiceAfresh('redrive-consumer', '--data-dir', dataDir, '--json');
  expect(JSON.parse(again.stdout)).toMatchObject({ outcomes: { redriven: 1, unreadable: 1 } });
  expect(await tableState()).toEqual({ events: 5, counted: 5 });
}, 120_000);

test('a range the stream does not hold is kept and said, never counted as redriven', async () => {
  const { shardId, records, streamArn } = await shardRecords();
  const before = await consumerDlq().count();
  // Ends past the shard's last record: kinesis-mock has no record there (as a range whose records are gone would not be whole).
  const past = (BigInt(records[records.length - 1].SequenceNumber!) + 10n ** 20n).toString();
  await consumerDlq().send([onFailure(shardId, streamArn, records.slice(4), { endSequenceNumber: past, batchSize: 3 })]);
  const run = await sluiceAfresh('redrive-consumer', '--data-dir', dataDir, '--json');
  expect(run.code).toBe(1);
  const report = JSON.parse(run.stdout) as { messages: Array<{ outcome: string; reason: string }> };
  expect(report.messages.map((m) => m.outcome)).not.toContain('redriven');
  expect(report.messages.at(-1)).toMatchObject({ outcome: 'incomplete', records: 2, reason: expect.stringMatching(/holds no record \d+ \(the range's end\): read to the stream's tip$/) });
  expect(await consumerDlq().count()).toBe(before + 1);
}, 120_000);

test('one redrive at a time per consumer dead-letter file: a second is refused while the first runs; its lock, once its process is gone, is taken over and let go', async () => {
  const { shardId, records, streamArn } = await shardRecords();
  await consumerDlq().send([onFailure(shardId, streamArn, records.slice(0, 1))]);
  const lock = path.join(dataDir, 'dlq', 'sluice-dev-consumer-dlq.redrive-consumer.pid');
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  const invocations = backend.invocations;
  try {
    fs.writeFileSync(lock, `${other.pid}\n`);
    const refused = await sluiceAfresh('redrive-consumer', '--data-dir', dataDir);
    expect([refused.code, refused.stderr]).toEqual([2, `sluice: another sluice redrive-consumer (pid ${other.pid}) is redriving sluice-dev-consumer-dlq; wait for it to finish, `
      + `or stop it: two at once would invoke the consumer with the same batches and report them twice (${lock})\n`]);
    expect(backend.invocations).toBe(invocations);
  } finally {
    other.kill('SIGKILL');
    await new Promise((resolve) => other.once('exit', resolve));
  }
  const after = await sluiceAfresh('redrive-consumer', '--data-dir', dataDir, '--json');
  expect(JSON.parse(after.stdout)).toMatchObject({ outcomes: { redriven: 1 } });
  expect(fs.existsSync(lock)).toBe(false);
}, 120_000);

test('a twin from an older Sluice, which runs its consumer for no one, is named and the table is not written from here', async () => {
  // Its Firehose endpoint takes Lambda's Invoke for a Firehose call with no X-Amz-Target.
  const older: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(400, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-ErrorType': 'UnknownOperationException' });
      res.end(JSON.stringify({ __type: 'UnknownOperationException', message: 'Got no X-Amz-Target header; expected Firehose_20150804.<Operation>.' }));
    });
  });
  await new Promise<void>((resolve) => older.listen(0, '127.0.0.1', resolve));
  const olderDir = tempDataDir();
  const olderUrl = `http://127.0.0.1:${(older.address() as AddressInfo).port}`;
  registerTwin(olderDir, { kinesis: kinesis.endpoint }, { endpoints: { firehose: olderUrl, kinesis: kinesis.endpoint, dynamo: dynamo.endpoint } });
  try {
    const { shardId, records, streamArn } = await shardRecords();
    const queue = new DlqFile({ dataDir: olderDir, queue: 'sluice-dev-consumer-dlq' });
    await queue.send([onFailure(shardId, streamArn, records.slice(5))]);
    const before = await tableState();
    const run = await sluiceAfresh('redrive-consumer', '--data-dir', olderDir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`sluice: the twin running on ${olderDir} (pid ${process.pid}) is from an older Sluice and cannot run its metadata consumer for redrive-consumer`);
    expect(run.stderr).toContain(`stop it (Ctrl-C where it runs, or kill ${process.pid}), then start the twin with \`npx sluice local up --data-dir ${olderDir}\``);
    expect(await tableState()).toEqual(before);
    expect(await queue.count()).toBe(1);
  } finally {
    await new Promise((resolve) => older.close(resolve));
  }
}, 120_000);
