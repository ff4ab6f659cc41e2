import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DescribeDeliveryStreamCommand, ListDeliveryStreamsCommand, PutRecordBatchCommand, PutRecordCommand } from '@aws-sdk/client-firehose';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { GetCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { loadConfig, resourceNames } from '../../lib/config';
import { firehoseDataPrefix, firehoseErrorPrefix, loadModel, readSchema, searchBackupPrefix, searchErrorPrefix } from '../../lib/schema';
import { LAKE_RETRY_SECONDS } from '../../lib/config/delivery';
import { badRecordBytes, createRng, sampleRecord } from '../../lib/schema/sample';
import { dynamoDocumentClient, firehoseClient, kinesisClient } from '../../lib/local/aws-clients';
import { LocalAthena } from '../../lib/local/athena';
import { LOCAL_SEARCH_RETRY_SECONDS, startTwin, type Twin } from '../../lib/local/twin';
import { metadataKeys } from '../../transforms/shared/metadata-table';
import { aggregatedRecord } from '../kpl-encoder';

/**
 * The twin end to end, through its public surfaces only: the AWS SDK against its endpoints, files in
 * the data dir, SQL results. Each valid record is one Parquet row; each bad one an error object and a DLQ line.
 */
describe('local twin end to end', () => {
  const config = loadConfig(['local.bufferIntervalSeconds=1']);
  const names = (p: string) => resourceNames(config, p);
  let dataDir: string;
  let twin: Twin;

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-twin-'));
    twin = await startTwin({ config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, pollIntervalMs: 100, log: () => undefined });
  }, 60_000);

  afterAll(async () => {
    await twin?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  test('every record lands exactly once: rows, error objects and DLQ lines; metadata in DynamoDB', async () => {
    const firehose = firehoseClient(twin.endpoints.firehose, { maxAttempts: 1 });
    const kinesis = kinesisClient(twin.endpoints.kinesis);

    const appSchema = readSchema('app-events');
    const rng = createRng(11);
    const good = Array.from({ length: 120 }, () => sampleRecord(appSchema, rng));
    const bad = [badRecordBytes(appSchema, 'malformed-json', rng), badRecordBytes(appSchema, 'missing-required', rng), badRecordBytes(appSchema, 'unknown-enum', rng)];
    const batch = await firehose.send(new PutRecordBatchCommand({
      DeliveryStreamName: names('app-events').lakeDeliveryStream,
      Records: [...good.map((r) => ({ Data: Buffer.from(JSON.stringify(r)) })), ...bad.map((b) => ({ Data: b }))],
    }));
    expect(batch.FailedPutCount).toBe(0);

    const iotSchema = readSchema('iot');
    const iot = Array.from({ length: 80 }, () => sampleRecord(iotSchema, rng));
    // Records the metadata consumer skips as malformed (and the lake refuses): no DynamoDB item.
    const iotBad = [badRecordBytes(iotSchema, 'malformed-json', rng), badRecordBytes(iotSchema, 'missing-required', rng)];
    const put = await kinesis.send(new PutRecordsCommand({
      StreamName: names('iot').stream,
      Records: [
        ...iot.map((r) => ({ Data: Buffer.from(JSON.stringify(r)), PartitionKey: String(r.device_id) })),
        ...iotBad.map((b, i) => ({ Data: b, PartitionKey: `bad-${i}` })),
      ],
    }));
    expect(put.FailedRecordCount ?? 0).toBe(0);

    await twin.settle(30_000);

    const athena = await LocalAthena.open(dataDir, config);
    try {
      const apps = await athena.query('SELECT event_id, event_type, year, month FROM sluice_dev.app_events');
      expect(apps.rows.map((r) => r[0]).sort()).toEqual(good.map((r) => r.event_id).sort());
      const one = good[0];
      const row = apps.rows.find((r) => r[0] === one.event_id)!;
      const t = new Date(String(one.timestamp));
      expect(row.slice(1)).toEqual([one.event_type, t.getUTCFullYear(), t.getUTCMonth() + 1]);

      const iotRows = await athena.query('SELECT count(*), count(DISTINCT event_id) FROM iot');
      expect(iotRows.rows[0].map(Number)).toEqual([80, 80]);

      // Partition pruning: one event type reads fewer files than the whole table.
      const pruned = await athena.query(`SELECT count(*) FROM app_events WHERE event_type = '${one.event_type}'`);
      const all = await athena.query('SELECT count(*) FROM app_events');
      expect(pruned.filesRead).toBeLessThan(all.filesRead);
    } finally {
      athena.close();
    }

    // Parquet files sit under the Hive-partitioned key layout Firehose would write.
    const files = listFiles(path.join(dataDir, 's3', twin.bucket, 'data', 'app-events'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      expect(f).toMatch(/^event_type=[a-z_]+\/year=\d{4}\/month=\d{2}\/day=\d{2}\/hour=\d{2}\/sluice-dev-app-events-lake-1-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-f-]{36}\.parquet$/);
    }

    // Bad records: error objects in Firehose's error-record JSON, with the producer's bytes...
    const errorDir = path.join(dataDir, 's3', twin.bucket, 'errors', 'app-events', 'processing-failed');
    const errorLines = listFiles(errorDir).flatMap((f) => fs.readFileSync(path.join(errorDir, f), 'utf8').trim().split('\n')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(errorLines).toHaveLength(3);
    expect(errorLines.map((l) => Buffer.from(String(l.rawData), 'base64').toString()).sort()).toEqual(bad.map((b) => b.toString()).sort());
    for (const l of errorLines) expect(Object.keys(l)).toEqual(expect.arrayContaining(['attemptsMade', 'arrivalTimestamp', 'errorCode', 'errorMessage', 'attemptEndingTimestamp', 'rawData', 'lambdaArn']));

    // ...and one DLQ line each, with the reason the validator gives.
    const dlq = fs.readFileSync(path.join(dataDir, 'dlq', `${names('iot').dlq}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { pipeline: string; reason: string });
    const appDlq = dlq.filter((m) => m.pipeline === 'app-events');
    expect(appDlq).toHaveLength(3);
    expect(appDlq.map((m) => m.reason).join('\n')).toMatch(/\/event_type must be one of/);

    // The metadata consumer wrote an item per iot event.
    const doc = dynamoDocumentClient(twin.endpoints.dynamo);
    const item = await doc.send(new GetCommand({ TableName: twin.metadataTable, Key: metadataKeys.event('iot', String(iot[0].event_id)) }));
    expect(item.Item).toBeDefined();
    expect(item.Item?.pk).toBe(`event#iot#${iot[0].event_id}`);

    // The consumer's skipped records are counted apart from those it recorded, which are the items in the table.
    const iotSummary = twin.summary().find((s) => s.pipeline === 'iot')!;
    expect(iotSummary.metadata).toMatchObject({ recordsSucceeded: iot.length + iotBad.length, recordsSkipped: iotBad.length });
    expect(iotSummary.metadata!.recordsSucceeded).toBe(iotSummary.lake!.received);
    let items = 0;
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await doc.send(new ScanCommand({
        TableName: twin.metadataTable, FilterExpression: 'begins_with(pk, :p)', ExpressionAttributeValues: { ':p': 'event#iot#' }, ExclusiveStartKey: startKey,
      }));
      items += page.Items?.length ?? 0;
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    expect(items).toBe(iotSummary.metadata!.recordsSucceeded - iotSummary.metadata!.recordsSkipped);

    // Count invariant per pipeline: received = rows + failed + dropped.
    for (const s of twin.summary()) {
      const l = s.lake!;
      expect(l.received).toBe(l.deliveredRows + l.processingFailed + l.formatConversionFailed + l.partitioningFailed + l.dropped);
    }
  }, 90_000);

  test('a KPL-aggregated Kinesis record is de-aggregated as Firehose does: each user record a row or a DLQ line of its own, and a metadata item', async () => {
    const kinesis = kinesisClient(twin.endpoints.kinesis);
    const before = twin.summary().find((s) => s.pipeline === 'iot')!.lake!;
    const metadataBefore = twin.summary().find((s) => s.pipeline === 'iot')!.metadata!;
    const dlqFile = path.join(dataDir, 'dlq', `${names('iot').dlq}.jsonl`);
    const dlqBefore = fs.existsSync(dlqFile) ? fs.readFileSync(dlqFile, 'utf8').trim().split('\n').length : 0;

    const rng = createRng(21);
    const events = Array.from({ length: 3 }, () => sampleRecord(readSchema('iot'), rng));
    const bad = '{"event_id": "cut off';
    const put = await kinesis.send(new PutRecordsCommand({
      StreamName: names('iot').stream,
      Records: [{
        PartitionKey: 'kpl-1',
        Data: aggregatedRecord([...events.map((e) => ({ partitionKey: String(e.device_id), data: JSON.stringify(e) })), { partitionKey: 'bad', data: bad }]),
      }],
    }));
    expect(put.FailedRecordCount ?? 0).toBe(0);
    const sequenceNumber = put.Records![0].SequenceNumber!;

    await twin.settle(30_000);

    const athena = await LocalAthena.open(dataDir, config);
    try {
      const ids = events.map((e) => `'${String(e.event_id)}'`).join(', ');
      const rows = await athena.query(`SELECT event_id, sluice.sequence_number FROM iot WHERE event_id IN (${ids}) ORDER BY event_id`);
      // One row per user record; all three carry the aggregated Kinesis record's sequence number, as Firehose's event gives it.
      expect(rows.rows).toEqual(events.map((e) => [String(e.event_id), sequenceNumber]).sort((a, b) => a[0].localeCompare(b[0])));
    } finally {
      athena.close();
    }

    // The bad sibling failed alone: one DLQ line, with its own bytes.
    const added = fs.readFileSync(dlqFile, 'utf8').trim().split('\n').slice(dlqBefore).map((l) => JSON.parse(l) as { pipeline: string; rawData?: string });
    expect(added.map((m) => [m.pipeline, Buffer.from(String(m.rawData), 'base64').toString()])).toEqual([['iot', bad]]);

    // The summary counts user records: received grew by 4 = 3 rows + 1 failed.
    const after = twin.summary().find((s) => s.pipeline === 'iot')!.lake!;
    expect(after.received - before.received).toBe(4);
    expect(after.deliveredRows - before.deliveredRows).toBe(3);
    expect(after.processingFailed - before.processingFailed).toBe(1);
    expect(after.received).toBe(after.deliveredRows + after.processingFailed + after.formatConversionFailed + after.partitioningFailed + after.dropped);

    // The metadata consumer de-aggregates too (Lambda's event source mapping does not): an item per valid user record,
    // with the Kinesis record's sequence number; `metadata ok` counts the 4 user records (3 written, 1 skipped), as received does.
    const doc = dynamoDocumentClient(twin.endpoints.dynamo);
    for (const e of events) {
      const item = await doc.send(new GetCommand({ TableName: twin.metadataTable, Key: metadataKeys.event('iot', String(e.event_id)) }));
      expect(item.Item).toMatchObject({ event_id: String(e.event_id), sequence_number: sequenceNumber });
    }
    const metadataAfter = twin.summary().find((s) => s.pipeline === 'iot')!.metadata!;
    expect(metadataAfter.recordsSucceeded - metadataBefore.recordsSucceeded).toBe(4);
  }, 60_000);

  test('the Firehose API answers with AWS error codes', async () => {
    const firehose = firehoseClient(twin.endpoints.firehose, { maxAttempts: 1 });
    const list = await firehose.send(new ListDeliveryStreamsCommand({}));
    expect(list.DeliveryStreamNames).toEqual(expect.arrayContaining([names('app-events').lakeDeliveryStream, names('iot').lakeDeliveryStream]));
    const described = await firehose.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: names('iot').lakeDeliveryStream }));
    expect(described.DeliveryStreamDescription?.DeliveryStreamType).toBe('KinesisStreamAsSource');
    await expect(firehose.send(new PutRecordCommand({ DeliveryStreamName: names('iot').lakeDeliveryStream, Record: { Data: Buffer.from('{}') } })))
      .rejects.toMatchObject({ name: 'InvalidArgumentException', message: 'This operation is not permitted on KinesisStreamAsSource delivery stream type.' });
    await expect(firehose.send(new PutRecordCommand({ DeliveryStreamName: 'nope', Record: { Data: Buffer.from('{}') } })))
      .rejects.toMatchObject({ name: 'ResourceNotFoundException' });
    await expect(firehose.send(new PutRecordCommand({ DeliveryStreamName: names('app-events').lakeDeliveryStream, Record: { Data: Buffer.alloc(1_024_001, 0x61) } })))
      .rejects.toMatchObject({ name: 'ValidationException' });
    await expect(firehose.send(new PutRecordBatchCommand({
      DeliveryStreamName: names('app-events').lakeDeliveryStream, Records: Array.from({ length: 501 }, () => ({ Data: Buffer.from('{}') })),
    }))).rejects.toMatchObject({ name: 'ValidationException' });
  });

  test('DescribeDeliveryStream describes what the twin runs, with every member AWS marks required', async () => {
    const firehose = firehoseClient(twin.endpoints.firehose, { maxAttempts: 1 });
    const describe = async (name: string) => (await firehose.send(new DescribeDeliveryStreamCommand({ DeliveryStreamName: name }))).DeliveryStreamDescription!;
    const processing = (stream: string, p: string) => ({
      Enabled: true,
      Processors: [{
        Type: 'Lambda',
        Parameters: [
          { ParameterName: 'LambdaArn', ParameterValue: `arn:aws:lambda:us-east-1:000000000000:function:${stream}-transform` },
          { ParameterName: 'RoleArn', ParameterValue: `arn:aws:iam::000000000000:role/${stream}-role` },
          { ParameterName: 'BufferSizeInMBs', ParameterValue: String(config.pipelines[p].transform.processorBufferMiB) },
          // The twin invokes the transform as a buffer flushes: at the stream's buffer interval.
          { ParameterName: 'BufferIntervalInSeconds', ParameterValue: '1' },
          { ParameterName: 'NumberOfRetries', ParameterValue: String(config.pipelines[p].transform.retries) },
        ],
      }],
    });
    const notEncrypted = { NoEncryptionConfig: 'NoEncryption' };
    const buffering = { SizeInMBs: config.local.bufferSizeMiB, IntervalInSeconds: 1 };

    const lakeName = names('app-events').lakeDeliveryStream;
    const lake = await describe(lakeName);
    const s3 = lake.Destinations![0].ExtendedS3DestinationDescription!;
    // What threw a TypeError against the twin before: BufferingHints was missing.
    expect(s3.BufferingHints!.IntervalInSeconds).toBe(1);
    expect(s3.Prefix).toMatch(/^data\/app-events\/event_type=!\{partitionKeyFromLambda:event_type\}\/year=.*\/hour=!\{partitionKeyFromLambda:hour\}\/$/);
    expect(s3).toEqual({
      RoleARN: `arn:aws:iam::000000000000:role/${lakeName}-role`,
      BucketARN: `arn:aws:s3:::${twin.bucket}`,
      Prefix: firehoseDataPrefix(loadModel('app-events')),
      ErrorOutputPrefix: firehoseErrorPrefix('app-events'),
      BufferingHints: buffering,
      CompressionFormat: 'UNCOMPRESSED',
      EncryptionConfiguration: notEncrypted,
      CloudWatchLoggingOptions: { Enabled: false },
      ProcessingConfiguration: processing(lakeName, 'app-events'),
      S3BackupMode: 'Disabled',
      DataFormatConversionConfiguration: {
        SchemaConfiguration: {
          RoleARN: `arn:aws:iam::000000000000:role/${lakeName}-role`, CatalogId: '000000000000', DatabaseName: names('app-events').glueDatabase,
          TableName: names('app-events').glueTable, Region: 'us-east-1', VersionId: 'LATEST',
        },
        InputFormatConfiguration: { Deserializer: { OpenXJsonSerDe: {} } },
        OutputFormatConfiguration: { Serializer: { ParquetSerDe: { Compression: 'SNAPPY' } } },
        Enabled: true,
      },
      DynamicPartitioningConfiguration: { RetryOptions: { DurationInSeconds: LAKE_RETRY_SECONDS }, Enabled: true },
    });

    const searchName = names('clickstream').searchDeliveryStream;
    const search = await describe(searchName);
    const os = search.Destinations![0].AmazonopensearchserviceDestinationDescription!;
    expect(os).toEqual({
      RoleARN: `arn:aws:iam::000000000000:role/${searchName}-role`,
      // No OPENSEARCH_URL: the _bulk bodies go to files, and the stack's domain is named.
      DomainARN: `arn:aws:es:us-east-1:000000000000:domain/${resourceNames(config, '').searchDomain}`,
      IndexName: names('clickstream').indexPrefix,
      IndexRotationPeriod: config.pipelines.clickstream.search.rotation,
      BufferingHints: buffering,
      // The twin retries a failing OpenSearch for at most 10 s of the configured duration, and says that duration (README).
      RetryOptions: { DurationInSeconds: Math.min(config.pipelines.clickstream.search.retrySeconds, LOCAL_SEARCH_RETRY_SECONDS) },
      S3BackupMode: 'FailedDocumentsOnly',
      S3DestinationDescription: {
        RoleARN: `arn:aws:iam::000000000000:role/${searchName}-role`,
        BucketARN: `arn:aws:s3:::${twin.bucket}`,
        Prefix: searchBackupPrefix('clickstream'),
        ErrorOutputPrefix: searchErrorPrefix('clickstream'),
        BufferingHints: buffering,
        CompressionFormat: 'UNCOMPRESSED',
        EncryptionConfiguration: notEncrypted,
        CloudWatchLoggingOptions: { Enabled: false },
      },
      ProcessingConfiguration: processing(searchName, 'clickstream'),
      CloudWatchLoggingOptions: { Enabled: false },
      DocumentIdOptions: { DefaultDocumentIdFormat: 'FIREHOSE_DEFAULT' },
    });
    // The stream reads its Kinesis source with the same role, as the stack's does.
    expect(search.Source?.KinesisStreamSourceDescription).toMatchObject({
      KinesisStreamARN: `arn:aws:kinesis:us-east-1:000000000000:stream/${names('clickstream').stream}`,
      RoleARN: os.RoleARN,
    });
  });

  test('nothing is written outside the data dir', () => {
    const outside = fs.readdirSync(path.dirname(dataDir)).filter((f) => f.startsWith('event_type='));
    expect(outside).toEqual([]);
  });
});

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}
