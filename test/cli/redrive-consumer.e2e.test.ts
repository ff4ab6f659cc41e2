/**
 * `sluice redrive-consumer` against the twin's own emulators (kinesis-mock, dynalite): records put with `sluice put`, a
 * consumer dead-letter message in the twin's file as its event source mapping writes it, then the redrive: the records
 * land in the metadata table, the message goes, and a second redrive of the same range changes no counter.
 */
import * as fs from 'node:fs';
import { CreateTableCommand, DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { CreateStreamCommand, DescribeStreamSummaryCommand, GetRecordsCommand, GetShardIteratorCommand, KinesisClient, ListShardsCommand, type _Record } from '@aws-sdk/client-kinesis';
import { dynamoClient, kinesisClient } from '../../lib/local/aws-clients';
import { DlqFile } from '../../lib/local/dlq-file';
import { startDynamo, startKinesis, type RunningService } from '../../lib/local/emulators';
import { freePort } from '../../lib/local/ports';
import type { KinesisInvocationRecord } from '../../lib/local/event-source-mapping';
import { METADATA_TABLE_KEYS } from '../../transforms/shared/metadata-table';
import { registerTwin, sluice, sluiceAfresh, tempDataDir } from './helpers';

const STREAM = 'sluice-dev-iot';
const TABLE = 'sluice-dev-metadata';
let kinesis: RunningService;
let dynamo: RunningService;
let kc: KinesisClient;
let dc: DynamoDBClient;
let dataDir: string;

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
  dataDir = tempDataDir();
  registerTwin(dataDir, { kinesis: kinesis.endpoint }, { endpoints: { firehose: 'http://127.0.0.1:9', kinesis: kinesis.endpoint, dynamo: dynamo.endpoint } });
}, 120_000);
afterAll(async () => {
  kc?.destroy();
  dc?.destroy();
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
  const put = await sluice('put', 'iot', '--count', '6', '--data-dir', dataDir, '--endpoint-kinesis', kinesis.endpoint);
  expect(put.code).toBe(0);
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
