import { execFile } from 'node:child_process';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Validations } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { PROJECT_ROOT, resourceNames } from '../../lib/config';
import { ACTIVE_PARTITION_QUOTA } from '../../lib/config/delivery';
import {
  ALARM_THRESHOLDS,
  ATHENA_RESULTS_ROOT,
  dynamoTimeoutMs,
  indexTemplateFor,
  METADATA_STREAM_CONSUMER_NAME,
  OutputKeys,
  pipelineOutputKey,
  savedQueries,
} from '../../lib/infra';
import {
  firehoseDataPrefix,
  firehoseErrorPrefix,
  glueColumns,
  loadModel,
  openSearchIndexTemplate,
  projectionParameters,
  searchBackupPrefix,
  searchErrorPrefix,
} from '../../lib/schema';
import type { FirehoseTransformationEvent, S3Event } from 'aws-lambda';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { METADATA_TABLE_KEYS } from '../../transforms/shared/metadata-table';
import { FAILURE_CATEGORIES } from '../../transforms/shared/record';
import { createTransformHandler } from '../../transforms/record-transform/handler';
import { createMetadataConsumer } from '../../transforms/metadata-consumer/handler';
import { capturedTelemetry, fixture } from '../transforms/helpers';
import { validatorFingerprint } from '../../lib/schema/fingerprint';
import { retentionPolicyFor } from '../../transforms/index-template/retention';
import { alarmKinds, runbookAlarmKinds } from './runbook';
import { flatten, iamStatements, resourcesOf, resourceWhere, synthesize, unacknowledgedNagFindings, type Synthesized } from './synth';
import { differenceFromPinned, statefulIds } from './stateful-resources';

// One synthesis of the default (dev) configuration, shared by every assertion below.
const execFileAsync = promisify(execFile);

let dev: Synthesized;
beforeAll(() => {
  dev = synthesize({}, { bundle: true }); // the deployed bundles are read and run below
}, 120_000);

const bucketRef = () => {
  const [id] = resourcesOf(dev.template, 'AWS::S3::Bucket').find(([, p]) => JSON.stringify(p).includes('aws:kms'))!;
  return id;
};
const lakePipelines = () => Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('lake'));

describe('cdk-nag AwsSolutions', () => {
  test('no unacknowledged findings', () => {
    expect(unacknowledgedNagFindings(dev.app)).toEqual([]);
  });

  test('no synth warnings: every default processor buffer fits its transform\'s 6 MB response', () => {
    expect(Annotations.fromStack(dev.stack).findWarning('*', Match.anyValue())).toEqual([]);
  });
});

describe('lake delivery', () => {
  test('the Firehose prefix and the Glue projection come from one layout and agree, for every lake pipeline', () => {
    expect(lakePipelines().length).toBeGreaterThan(0);
    for (const p of lakePipelines()) {
      const names = resourceNames(dev.config, p.name);
      const model = loadModel(p.name);
      const [, stream] = resourceWhere(dev.template, 'AWS::KinesisFirehose::DeliveryStream', { DeliveryStreamName: names.lakeDeliveryStream });
      const s3 = stream.ExtendedS3DestinationConfiguration as Record<string, unknown>;
      expect(s3.Prefix).toBe(firehoseDataPrefix(model));

      const tables = resourcesOf(dev.template, 'AWS::Glue::Table').filter(([, t]) => (t.TableInput as { Name: string }).Name === names.glueTable);
      expect(tables).toHaveLength(1);
      const input = tables[0][1].TableInput as { Parameters: Record<string, unknown>; PartitionKeys: Array<{ Name: string }> };
      const template = flatten(input.Parameters['storage.location.template']);
      // The projection template is the Firehose prefix with each !{partitionKeyFromLambda:k} as ${k}.
      const fromPrefix = `s3://<${bucketRef()}>/${(s3.Prefix as string).replace(/!\{partitionKeyFromLambda:([a-z0-9_]+)\}/g, '${$1}')}`;
      expect(template).toBe(fromPrefix);
      expect(template).toBe(flatten(projectionParameters(model, `<${bucketRef()}>`)['storage.location.template']));
      // Partition columns in prefix order, as the projection enumerates them.
      const prefixKeys = [...(s3.Prefix as string).matchAll(/!\{partitionKeyFromLambda:([a-z0-9_]+)\}/g)].map((m) => m[1]);
      expect(input.PartitionKeys.map((k) => k.Name)).toEqual(prefixKeys);
      expect(input.PartitionKeys.map((k) => k.Name)).toEqual(glueColumns(model).partitionKeys.map((k) => k.name));
    }
  });

  test('Parquet (Snappy) conversion through the pipeline table, dynamic partitioning, buffering from configuration', () => {
    for (const p of lakePipelines()) {
      const names = resourceNames(dev.config, p.name);
      dev.template.hasResourceProperties('AWS::KinesisFirehose::DeliveryStream', {
        DeliveryStreamName: names.lakeDeliveryStream,
        DeliveryStreamType: p.source === 'kinesis' ? 'KinesisStreamAsSource' : 'DirectPut',
        ExtendedS3DestinationConfiguration: {
          BufferingHints: { SizeInMBs: p.buffering.sizeMiB, IntervalInSeconds: p.buffering.intervalSeconds },
          CompressionFormat: Match.absent(),
          DataFormatConversionConfiguration: {
            Enabled: true,
            InputFormatConfiguration: { Deserializer: { OpenXJsonSerDe: {} } },
            OutputFormatConfiguration: { Serializer: { ParquetSerDe: { Compression: 'SNAPPY' } } },
            SchemaConfiguration: Match.objectLike({ DatabaseName: names.glueDatabase, VersionId: 'LATEST', Region: { Ref: 'AWS::Region' } }),
          },
          DynamicPartitioningConfiguration: { Enabled: true, RetryOptions: { DurationInSeconds: 300 } },
          ErrorOutputPrefix: firehoseErrorPrefix(p.name),
          CloudWatchLoggingOptions: Match.objectLike({ Enabled: true }),
          ProcessingConfiguration: {
            Enabled: true,
            Processors: [{
              Type: 'Lambda',
              Parameters: Match.arrayWith([
                { ParameterName: 'BufferSizeInMBs', ParameterValue: String(p.transform.processorBufferMiB) },
                { ParameterName: 'BufferIntervalInSeconds', ParameterValue: String(p.transform.processorIntervalSeconds) },
                { ParameterName: 'NumberOfRetries', ParameterValue: String(p.transform.retries) },
              ]),
            }],
          },
        },
      });
      expect(p.buffering.sizeMiB).toBeGreaterThanOrEqual(64);
    }
    expect(firehoseErrorPrefix('x')).toContain('!{firehose:error-output-type}');
  });

  test('DirectPut streams are encrypted; Kinesis-sourced ones rely on the stream\'s encryption', () => {
    dev.template.hasResourceProperties('AWS::KinesisFirehose::DeliveryStream', {
      DeliveryStreamType: 'DirectPut',
      DeliveryStreamEncryptionConfigurationInput: { KeyType: 'AWS_OWNED_CMK' },
    });
    for (const [, s] of resourcesOf(dev.template, 'AWS::KinesisFirehose::DeliveryStream')) {
      if (s.DeliveryStreamType === 'KinesisStreamAsSource') expect(s.DeliveryStreamEncryptionConfigurationInput).toBeUndefined();
    }
  });

  test('each transform runs in the mode of its destination, Node.js 22, bundled (not inline)', () => {
    const transforms = resourcesOf(dev.template, 'AWS::Lambda::Function').filter(([, f]) => JSON.stringify(f).includes('SLUICE_DESTINATION'));
    const modes = transforms.map(([, f]) => {
      const env = (f.Environment as { Variables: Record<string, string> }).Variables;
      return `${env.SLUICE_PIPELINE}:${env.SLUICE_DESTINATION}`;
    }).sort();
    const expected = Object.values(dev.config.pipelines).flatMap((p) => p.destinations.filter((d) => d !== 'metadata').map((d) => `${p.name}:${d}`)).sort();
    expect(modes).toEqual(expected);
    for (const [, f] of transforms) {
      expect(f).toMatchObject({ Runtime: 'nodejs22.x', Handler: 'index.handler', Architectures: ['arm64'] });
      expect((f.Code as Record<string, unknown>).ZipFile).toBeUndefined();
    }
  });

  test('each transform is deployed after its pipeline\'s Glue table and index template, so a new field has its column and mapping first', () => {
    const functions = dev.template.findResources('AWS::Lambda::Function') as Record<string, { DependsOn?: string[]; Properties: { Environment?: { Variables?: Record<string, string> } } }>;
    const tableOf = (pipeline: string) => resourcesOf(dev.template, 'AWS::Glue::Table')
      .find(([, t]) => (t.TableInput as { Name: string }).Name === resourceNames(dev.config, pipeline).glueTable)![0];
    const templateOf = (pipeline: string) => resourcesOf(dev.template, 'Custom::SluiceIndexTemplate').find(([, t]) => t.TemplateName === pipeline)![0];
    let checked = 0;
    for (const f of Object.values(functions)) {
      const pipeline = f.Properties.Environment?.Variables?.SLUICE_PIPELINE;
      if (!pipeline || !f.Properties.Environment?.Variables?.SLUICE_DESTINATION) continue;
      const p = dev.config.pipelines[pipeline];
      const expected = [
        ...(p.destinations.includes('lake') ? [tableOf(pipeline)] : []),
        ...(p.destinations.includes('search') ? [templateOf(pipeline)] : []),
      ];
      expect({ pipeline, dependsOn: f.DependsOn ?? [] }).toEqual({ pipeline, dependsOn: expect.arrayContaining(expected) });
      checked++;
    }
    // Every transform of the default configuration, the clickstream one for search among them.
    expect(checked).toBe(Object.values(dev.config.pipelines).flatMap((p) => p.destinations.filter((d) => d !== 'metadata')).length);
    expect(dev.config.pipelines.clickstream.destinations).toEqual(expect.arrayContaining(['lake', 'search']));
  });

  test('only transforms of pipelines that hash PII get the hash key secret', () => {
    const withSecret = resourcesOf(dev.template, 'AWS::Lambda::Function')
      .filter(([, f]) => JSON.stringify(f).includes('SLUICE_PII_HASH_KEY_SECRET_ARN'))
      .map(([, f]) => (f.Environment as { Variables: Record<string, string> }).Variables.SLUICE_PIPELINE);
    const hashing = Object.keys(dev.config.pipelines).filter((p) => Object.values(loadModel(p).extensions.pii).includes('hash'));
    expect(withSecret.sort()).toEqual(hashing.sort());
    expect(hashing).toContain('transactions');
  });
});

describe('catalog and Athena', () => {
  test('table columns come from the schema, partition keys are not repeated as columns', () => {
    for (const p of lakePipelines()) {
      const { columns, partitionKeys } = glueColumns(loadModel(p.name));
      const [, t] = resourcesOf(dev.template, 'AWS::Glue::Table').find(([, x]) => (x.TableInput as { Name: string }).Name === resourceNames(dev.config, p.name).glueTable)!;
      const input = t.TableInput as { StorageDescriptor: { Columns: Array<{ Name: string; Type: string }> }; TableType: string; Parameters: Record<string, string> };
      expect(input.StorageDescriptor.Columns.map((c) => [c.Name, c.Type])).toEqual(columns.map((c) => [c.name, c.type]));
      const partitionNames = new Set(partitionKeys.map((k) => k.name));
      expect(input.StorageDescriptor.Columns.some((c) => partitionNames.has(c.Name))).toBe(false);
      expect(input.TableType).toBe('EXTERNAL_TABLE');
      expect(input.Parameters['projection.enabled']).toBe('true');
    }
  });

  test('the workgroup enforces encrypted results and a bytes-scanned cutoff', () => {
    dev.template.hasResourceProperties('AWS::Athena::WorkGroup', {
      Name: resourceNames(dev.config, 'iot').athenaWorkGroup,
      WorkGroupConfiguration: {
        EnforceWorkGroupConfiguration: true,
        BytesScannedCutoffPerQuery: dev.config.athena.bytesScannedCutoffMiB * 1024 * 1024,
        ResultConfiguration: {
          EncryptionConfiguration: { EncryptionOption: 'SSE_KMS', KmsKey: Match.anyValue() },
          OutputLocation: Match.objectLike({ 'Fn::Join': ['', Match.arrayWith([`/${ATHENA_RESULTS_ROOT}/`])] }),
        },
      },
    });
  });

  test('saved queries answer the first questions for every lake pipeline', () => {
    const queries = resourcesOf(dev.template, 'AWS::Athena::NamedQuery').map(([, q]) => q);
    for (const p of lakePipelines()) {
      const names = resourceNames(dev.config, p.name);
      const mine = queries.filter((q) => String(q.Name).startsWith(`${p.name}:`));
      expect(mine.map((q) => q.Name)).toEqual(expect.arrayContaining([
        expect.stringContaining('events per'),
        expect.stringContaining('failed records by error code'),
        expect.stringMatching(/top .* by events/),
      ]));
      for (const q of mine) expect(q.Database).toBe(names.glueDatabase);
    }
  });

  test('the failed-records query reads the error type from the key segment Firehose writes it to', () => {
    const [q] = savedQueries('db', { model: loadModel('iot'), tableName: 'iot', errorTableName: 'iot_errors' }).filter((x) => x.name.includes('failed'));
    const segment = Number(/split_part\("\$path", '\/', (\d+)\)/.exec(q.sql)![1]);
    const key = `s3://bucket/${firehoseErrorPrefix('iot').replace('!{firehose:error-output-type}', 'processing-failed').replace('!{timestamp:yyyy/MM/dd/HH}', '2026/01/02/03')}file`;
    expect(key.split('/')[segment - 1]).toBe('processing-failed');
  });
});

describe('streams', () => {
  test('one Kinesis stream per Kinesis pipeline: shards, retention and encryption from configuration', () => {
    const kinesisPipelines = Object.values(dev.config.pipelines).filter((p) => p.source === 'kinesis');
    expect(resourcesOf(dev.template, 'AWS::Kinesis::Stream')).toHaveLength(kinesisPipelines.length);
    for (const p of kinesisPipelines) {
      dev.template.hasResourceProperties('AWS::Kinesis::Stream', {
        Name: resourceNames(dev.config, p.name).stream,
        RetentionPeriodHours: p.retentionHours,
        ...(p.shards === 'on-demand' ? { StreamModeDetails: { StreamMode: 'ON_DEMAND' } } : { ShardCount: p.shards }),
        StreamEncryption: p.streamEncryption === 'customer-managed'
          ? { EncryptionType: 'KMS', KeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp(`^${p.name}StreamKey`), 'Arn'] } }
          : { EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' },
      });
    }
    expect(dev.config.pipelines.transactions.streamEncryption).toBe('customer-managed');
  });
});

describe('metadata consumer', () => {
  test('reads through an enhanced fan-out consumer with bounded retries, bisection, partial failures and an SQS on-failure destination', () => {
    const [dlqId] = resourceWhere(dev.template, 'AWS::SQS::Queue', { QueueName: resourceNames(dev.config, 'iot').consumerDlq });
    const consumers = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('metadata'));
    expect(resourcesOf(dev.template, 'AWS::Lambda::EventSourceMapping')).toHaveLength(consumers.length);
    expect(resourcesOf(dev.template, 'AWS::Kinesis::StreamConsumer')).toHaveLength(consumers.length);
    for (const p of consumers) {
      dev.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        EventSourceArn: { 'Fn::GetAtt': [Match.stringLikeRegexp(`^${p.name}MetadataConsumerStreamConsumer`), 'ConsumerARN'] },
        BatchSize: p.consumer.batchSize,
        MaximumBatchingWindowInSeconds: p.consumer.batchWindowSeconds,
        BisectBatchOnFunctionError: true,
        MaximumRetryAttempts: p.consumer.maxRetries,
        MaximumRecordAgeInSeconds: p.consumer.maxRecordAgeSeconds,
        ParallelizationFactor: p.consumer.parallelization,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [dlqId, 'Arn'] } } },
      });
    }
    dev.template.hasResourceProperties('AWS::Kinesis::StreamConsumer', { ConsumerName: METADATA_STREAM_CONSUMER_NAME });
  });

  test('each consumer gives up on a DynamoDB call well within its function timeout (a hung connection fails, is retried, and the batch response goes out)', () => {
    const consumers = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('metadata'));
    expect(consumers.length).toBeGreaterThan(0);
    for (const p of consumers) {
      const [, fn] = resourcesOf(dev.template, 'AWS::Lambda::Function').find(([id]) => id.startsWith(`${p.name.replace(/[^A-Za-z0-9]/g, '')}MetadataConsumerFunction`))!;
      const timeoutMs = Number((fn.Environment as { Variables: Record<string, string> }).Variables.SLUICE_DYNAMO_TIMEOUT_MS);
      expect(fn.Timeout).toBe(p.consumer.timeoutSeconds);
      expect(timeoutMs).toBeGreaterThan(0);
      // Several attempts fit in the retry budget, a third of the time left.
      expect(timeoutMs).toBeLessThanOrEqual((p.consumer.timeoutSeconds * 1000) / 10);
    }
    expect(dynamoTimeoutMs(1)).toBe(100);
    expect(dynamoTimeoutMs(900)).toBe(5_000);
  });

  test('the table: on demand, point-in-time recovery, TTL, KMS, the key schema the writers use', () => {
    dev.template.hasResourceProperties('AWS::DynamoDB::Table', {
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [
        { AttributeName: METADATA_TABLE_KEYS.partitionKey, KeyType: 'HASH' },
        { AttributeName: METADATA_TABLE_KEYS.sortKey, KeyType: 'RANGE' },
      ],
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: METADATA_TABLE_KEYS.ttlAttribute, Enabled: true },
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: Match.anyValue() },
    });
  });
});

describe('failures and storage', () => {
  test('dead-letter queues are KMS-encrypted, keep messages 14 days, and take the message size the failure router fits messages to', () => {
    for (const name of [resourceNames(dev.config, 'iot').dlq, resourceNames(dev.config, 'iot').consumerDlq]) {
      dev.template.hasResourceProperties('AWS::SQS::Queue', {
        QueueName: name,
        MessageRetentionPeriod: 14 * 24 * 3600,
        MaximumMessageSize: 262_144,
        KmsMasterKeyId: Match.anyValue(),
      });
    }
  });

  test('S3 events the failure router gives up on go to an encrypted, TLS-only queue instead of being dropped', () => {
    const [queueId] = resourceWhere(dev.template, 'AWS::SQS::Queue', { QueueName: resourceNames(dev.config, 'iot').routerFailedEvents });
    dev.template.hasResourceProperties('AWS::SQS::Queue', {
      QueueName: resourceNames(dev.config, 'iot').routerFailedEvents,
      MessageRetentionPeriod: 14 * 24 * 3600,
      KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^StorageKey'), 'Arn'] },
    });
    dev.template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: queueId }],
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
    const [routerId] = resourcesOf(dev.template, 'AWS::Lambda::Function').find(([id]) => id.startsWith('FailuresRouter'))!;
    dev.template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: routerId },
      Qualifier: '$LATEST',
      MaximumRetryAttempts: 2,
      MaximumEventAgeInSeconds: 6 * 3600,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId, 'Arn'] } } },
    });
    // The destination sends with the router's role: it may send to the queue and use the queue's key. (The DLQ shares
    // that key, so the key check guards the role as a whole; the send check is this queue's own.)
    const statements = iamStatements(dev.template).filter((s) => s.policy.startsWith('FailuresRouterRole'));
    expect(statements.some((s) => s.Action.includes('sqs:SendMessage') && s.Resource.includes(`<${queueId}.Arn>`))).toBe(true);
    const keyActions = statements.filter((s) => s.Resource.some((r) => /^<StorageKey[A-Z0-9]+\.Arn>$/.test(r))).flatMap((s) => s.Action);
    expect(keyActions).toEqual(expect.arrayContaining(['kms:Encrypt', 'kms:GenerateDataKey*']));
  });

  test('the failure router is notified of new objects under errors/ and search-backup/', () => {
    const [, notifications] = resourcesOf(dev.template, 'Custom::S3BucketNotifications')[0];
    const configs = (notifications.NotificationConfiguration as { LambdaFunctionConfigurations: Array<{ Events: string[]; Filter: { Key: { FilterRules: Array<{ Name: string; Value: string }> } } }> }).LambdaFunctionConfigurations;
    expect(configs.map((c) => [c.Events, c.Filter.Key.FilterRules])).toEqual([
      [['s3:ObjectCreated:*'], [{ Name: 'prefix', Value: 'errors/' }]],
      [['s3:ObjectCreated:*'], [{ Name: 'prefix', Value: 'search-backup/' }]],
    ]);
  });

  test('the data bucket: public access blocked, TLS only, KMS, lifecycle from configuration, access logs', () => {
    const lc = dev.config.lifecycle;
    dev.template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ BucketKeyEnabled: true, ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: Match.anyValue() } }] },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      LoggingConfiguration: { DestinationBucketName: Match.anyValue(), LogFilePrefix: 'data-bucket/' },
      LifecycleConfiguration: {
        // Stated, not left to S3's default: `sluice cost` keeps objects under 128 KiB in Standard.
        TransitionDefaultMinimumObjectSize: 'all_storage_classes_128K',
        Rules: Match.arrayWith([
          Match.objectLike({ Prefix: 'data/', Transitions: [
            { StorageClass: 'STANDARD_IA', TransitionInDays: lc.infrequentAccessDays },
            { StorageClass: 'GLACIER_IR', TransitionInDays: lc.glacierDays },
          ] }),
          Match.objectLike({ Prefix: 'errors/', ExpirationInDays: lc.errorExpirationDays }),
          Match.objectLike({ Prefix: 'search-backup/', ExpirationInDays: lc.errorExpirationDays }),
        ]),
      },
    });
    dev.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: bucketRef() },
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  test('the data bucket refuses puts that ask for another KMS key, SSE-KMS naming none, SSE-S3, DSSE or SSE-C; the stack\'s writers ask for none or for the data key', () => {
    const [, policy] = resourceWhere(dev.template, 'AWS::S3::BucketPolicy', { Bucket: { Ref: bucketRef() } });
    const statements = (policy.PolicyDocument as { Statement: Array<Record<string, unknown>> }).Statement;
    const denied = Object.fromEntries(statements.filter((s) => typeof s.Sid === 'string' && s.Sid.startsWith('Deny')).map((s) => [s.Sid, s]));
    const dataKeyArn = { 'Fn::GetAtt': [expect.stringMatching(/^StorageKey/), 'Arn'] };
    const objects = { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucketRef(), 'Arn'] }, '/*']] };
    const deny = (Condition: unknown) => ({ Sid: expect.any(String), Effect: 'Deny', Principal: { AWS: '*' }, Action: 's3:PutObject', Resource: objects, Condition });
    expect(denied.DenyOtherKmsKeys).toEqual(deny({
      // Only when the header is there: a put without one gets the bucket's default, the data key.
      Null: { 's3:x-amz-server-side-encryption-aws-kms-key-id': 'false' },
      StringNotEquals: { 's3:x-amz-server-side-encryption-aws-kms-key-id': dataKeyArn },
    }));
    expect(denied.DenyOtherEncryption).toEqual(deny({
      Null: { 's3:x-amz-server-side-encryption': 'false' },
      StringNotEquals: { 's3:x-amz-server-side-encryption': 'aws:kms' },
    }));
    // SSE-KMS naming no key would get the AWS-managed aws/s3 key.
    expect(denied.DenyKmsWithoutKey).toEqual(deny({
      StringEquals: { 's3:x-amz-server-side-encryption': 'aws:kms' },
      Null: { 's3:x-amz-server-side-encryption-aws-kms-key-id': 'true' },
    }));
    expect(denied.DenyCustomerProvidedKeys).toEqual(deny({ Null: { 's3:x-amz-server-side-encryption-customer-algorithm': 'false' } }));
    // The writers: the delivery streams send no encryption headers (none configured on their S3 destination), so the
    // default applies; Athena writes its results with SSE-KMS and the data key's ARN.
    for (const [, stream] of resourcesOf(dev.template, 'AWS::KinesisFirehose::DeliveryStream')) {
      const s3 = (stream.ExtendedS3DestinationConfiguration ?? (stream.AmazonopensearchserviceDestinationConfiguration as Record<string, unknown>).S3Configuration) as Record<string, unknown>;
      expect(s3.EncryptionConfiguration).toBeUndefined();
    }
    dev.template.hasResourceProperties('AWS::Athena::WorkGroup', {
      WorkGroupConfiguration: { ResultConfiguration: { EncryptionConfiguration: { EncryptionOption: 'SSE_KMS', KmsKey: { 'Fn::GetAtt': [Match.stringLikeRegexp('^StorageKey'), 'Arn'] } } } },
    });
  });

  test('at rest and in transit, as docs/deploy.md\'s "What the stack secures by default" says', () => {
    const storageKey = { 'Fn::GetAtt': [expect.stringMatching(/^StorageKey/), 'Arn'] };
    const keys = resourcesOf(dev.template, 'AWS::KMS::Key');
    expect(keys.length).toBeGreaterThanOrEqual(2);
    for (const [id, key] of keys) expect({ id, rotation: key.EnableKeyRotation }).toEqual({ id, rotation: true });
    const [, table] = resourcesOf(dev.template, 'AWS::DynamoDB::Table')[0];
    expect((table.SSESpecification as Record<string, unknown>).KMSMasterKeyId).toEqual(storageKey);
    const queues = resourcesOf(dev.template, 'AWS::SQS::Queue');
    expect(queues.length).toBeGreaterThanOrEqual(3);
    const queuePolicies = resourcesOf(dev.template, 'AWS::SQS::QueuePolicy');
    for (const [id, queue] of queues) {
      expect({ id, key: queue.KmsMasterKeyId }).toEqual({ id, key: storageKey });
      const statements = queuePolicies.filter(([, p]) => JSON.stringify(p.Queues) === JSON.stringify([{ Ref: id }]))
        .flatMap(([, p]) => (p.PolicyDocument as { Statement: unknown[] }).Statement);
      expect({ id, statements }).toEqual({ id, statements: expect.arrayContaining([expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) });
    }
    for (const [, secret] of resourcesOf(dev.template, 'AWS::SecretsManager::Secret')) expect(secret.KmsKeyId).toEqual(storageKey);
    const [, workGroup] = resourcesOf(dev.template, 'AWS::Athena::WorkGroup')[0];
    expect(workGroup.WorkGroupConfiguration).toMatchObject({ ResultConfiguration: { EncryptionConfiguration: { EncryptionOption: 'SSE_KMS', KmsKey: storageKey } } });
    const [, topic] = resourcesOf(dev.template, 'AWS::SNS::Topic')[0];
    expect(topic.KmsMasterKeyId).toEqual({ 'Fn::GetAtt': [expect.not.stringMatching(/^StorageKey/), 'Arn'] });
    const accessLogs = resourcesOf(dev.template, 'AWS::S3::Bucket').filter(([id]) => id !== bucketRef());
    expect(accessLogs).toHaveLength(1);
    expect(accessLogs[0][1]).toMatchObject({
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
    });
  });

  test('every bucket (the access-log bucket too) refuses plain HTTP and TLS older than 1.2', () => {
    const buckets = Object.keys(dev.template.findResources('AWS::S3::Bucket'));
    const policies = Object.values(dev.template.findResources('AWS::S3::BucketPolicy')) as Array<{ Properties: { Bucket: { Ref: string }; PolicyDocument: { Statement: Array<Record<string, unknown>> } } }>;
    expect(buckets.length).toBeGreaterThanOrEqual(2);
    for (const bucket of buckets) {
      const statements = policies.filter((p) => p.Properties.Bucket.Ref === bucket).flatMap((p) => p.Properties.PolicyDocument.Statement);
      expect({ bucket, statements }).toEqual({ bucket, statements: expect.arrayContaining([
        expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        expect.objectContaining({ Effect: 'Deny', Action: 's3:*', Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } } }),
      ]) });
    }
  });
});

describe('search', () => {
  test('the domain: encryption at rest, node-to-node, HTTPS with TLS 1.2+, dev size from configuration', () => {
    const os = dev.config.opensearch;
    dev.template.hasResourceProperties('AWS::OpenSearchService::Domain', {
      EngineVersion: os.engineVersion,
      ClusterConfig: Match.objectLike({ InstanceType: os.instanceType, InstanceCount: os.instanceCount }),
      EBSOptions: { EBSEnabled: true, VolumeSize: os.volumeGiB, VolumeType: 'gp3' },
      EncryptionAtRestOptions: { Enabled: true },
      NodeToNodeEncryptionOptions: { Enabled: true },
      DomainEndpointOptions: { EnforceHTTPS: true, TLSSecurityPolicy: 'Policy-Min-TLS-1-2-PFS-2023-10' },
    });
  });

  test('the domain\'s log publishing policy: deleted with the stack; named after the stack and its id, so one an earlier stack of the same name kept does not block creation', () => {
    const policies = Object.values(dev.template.findResources('AWS::Logs::ResourcePolicy')) as Array<{ DeletionPolicy?: string; UpdateReplacePolicy?: string; Properties: { PolicyName: unknown } }>;
    expect(policies.map((p) => [p.DeletionPolicy, p.UpdateReplacePolicy])).toEqual([[undefined, undefined]]);
    const [policy] = policies;
    // The UUID in the stack id arn:aws:cloudformation:<region>:<account>:stack/<name>/<uuid>.
    expect(policy.Properties.PolicyName).toEqual({ 'Fn::Join': ['', [`${dev.stack.stackName}-opensearch-logs-`, { 'Fn::Select': [2, { 'Fn::Split': ['/', { Ref: 'AWS::StackId' }] }] }]] });
  });

  test('a new engine version upgrades the domain in place: CloudFormation would otherwise replace it, which its fixed name refuses', () => {
    const [, domain] = Object.entries(dev.template.findResources('AWS::OpenSearchService::Domain'))[0];
    expect((domain as { UpdatePolicy?: unknown }).UpdatePolicy).toEqual({ EnableVersionUpgrade: true });
  });

  test('the domain access policy names only our roles (no anonymous access), in the domain resource itself', () => {
    const [logicalId, domain] = resourcesOf(dev.template, 'AWS::OpenSearchService::Domain')[0];
    const policy = flatten(domain.AccessPolicies);
    expect(policy).not.toMatch(/"AWS":"\*"/);
    expect(policy).toMatch(/SearchQueryRole/);
    expect(policy).toMatch(/clickstreamSearchRole/);
    expect(policy).toMatch(/IndexTemplatesApplyRole/);
    // Not through the L2's custom resource, whose one UpdateDomainConfig call races IAM (aws/aws-cdk#37939).
    expect(resourcesOf(dev.template, 'Custom::OpenSearchAccessPolicy')).toEqual([]);
    // The policy names the domain by its name, not by a reference to itself (which CloudFormation refuses as a cycle).
    expect(domain.DomainName).toBe(resourceNames(dev.config, '').searchDomain);
    expect(policy).not.toContain(logicalId);
    expect(policy).toContain(`:domain/${domain.DomainName as string}/*`);
  });

  test('search delivery: daily indices, retry, failed-document backup, transform in search mode', () => {
    for (const p of Object.values(dev.config.pipelines).filter((x) => x.destinations.includes('search'))) {
      const names = resourceNames(dev.config, p.name);
      dev.template.hasResourceProperties('AWS::KinesisFirehose::DeliveryStream', {
        DeliveryStreamName: names.searchDeliveryStream,
        DeliveryStreamType: 'KinesisStreamAsSource',
        AmazonopensearchserviceDestinationConfiguration: Match.objectLike({
          IndexName: names.indexPrefix,
          IndexRotationPeriod: p.search.rotation,
          BufferingHints: { SizeInMBs: p.search.bufferingSizeMiB, IntervalInSeconds: p.search.bufferingIntervalSeconds },
          RetryOptions: { DurationInSeconds: p.search.retrySeconds },
          S3BackupMode: 'FailedDocumentsOnly',
          S3Configuration: Match.objectLike({ Prefix: searchBackupPrefix(p.name), ErrorOutputPrefix: searchErrorPrefix(p.name), CompressionFormat: 'UNCOMPRESSED' }),
          DocumentIdOptions: { DefaultDocumentIdFormat: 'FIREHOSE_DEFAULT' },
        }),
      });
    }
    expect(dev.config.pipelines.clickstream.search.rotation).toBe('OneDay');
  });

  test('the index template is the one derived from the schema, applied by the signing custom resource', () => {
    const [, cr] = resourcesOf(dev.template, 'Custom::SluiceIndexTemplate')[0];
    expect(cr.TemplateName).toBe('clickstream');
    const applied = JSON.parse(cr.TemplateBody as string) as { template: { settings: Record<string, unknown>; mappings: unknown } };
    const derived = openSearchIndexTemplate(loadModel('clickstream')) as { template: { settings: Record<string, unknown>; mappings: unknown } };
    expect(applied.template.mappings).toEqual(derived.template.mappings);
    expect(applied).toEqual(indexTemplateFor(loadModel('clickstream'), dev.config.opensearch.instanceCount));
    // The dev domain has one data node: no replicas, or every index would stay yellow.
    expect(dev.config.opensearch.instanceCount).toBe(1);
    expect(applied.template.settings.number_of_replicas).toBe(0);
    dev.template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Description: Match.stringLikeRegexp('index templates'),
    });
  });

  test('the index retention: an ISM policy for <index>-*, deleting an index once its last document is search.retentionDays old', () => {
    const [, cr] = resourcesOf(dev.template, 'Custom::SluiceIndexTemplate')[0];
    expect(dev.config.pipelines.clickstream.search.retentionDays).toBe(30);
    // Days and rotation, not a policy body: the function builds the policy itself and would PUT any body it was given.
    const retention = JSON.parse(cr.Retention as string) as Record<string, unknown>;
    expect(retention).toEqual({ PolicyId: 'clickstream-retention', IndexName: 'clickstream', RetentionDays: 30, Rotation: 'OneDay' });
    expect(retentionPolicyFor('clickstream', 30, 'OneDay').policy).toMatchObject({
      default_state: 'hot',
      states: [
        { name: 'hot', actions: [], transitions: [{ state_name: 'delete', conditions: { min_index_age: '31d' } }] },
        { name: 'delete', actions: [{ delete: {} }], transitions: [] },
      ],
      ism_template: [{ index_patterns: ['clickstream-*'], priority: 100 }],
    });
  });

  test('the index-template function is told the domain and the search pipelines, and refuses events for any other', () => {
    const search = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('search')).map((p) => p.name);
    const [, fn] = resourcesOf(dev.template, 'AWS::Lambda::Function').find(([, f]) => /index templates/.test(f.Description as string))!;
    const variables = (fn.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(JSON.parse(variables.SLUICE_PIPELINES as string)).toEqual(search);
    expect(variables.SLUICE_DOMAIN_ENDPOINT).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^SearchDomain/), 'DomainEndpoint'] });
    for (const [, cr] of resourcesOf(dev.template, 'Custom::SluiceIndexTemplate')) expect(cr.Endpoint).toEqual(variables.SLUICE_DOMAIN_ENDPOINT);
  });
});

describe('IAM', () => {
  test('the OpenSearch query role reads: GET and HEAD, and POST only to the search endpoints (no _bulk, _doc, _delete_by_query)', () => {
    const all = iamStatements(dev.template).filter((s) => s.policy.startsWith('SearchQueryRole'));
    const statements = all.filter((s) => s.Effect === 'Allow');
    // "*" matches "/" too: "*/_search" alone would let it POST to <index>/_doc/_search (a document write).
    const denied = all.filter((s) => s.Effect === 'Deny');
    expect(denied.flatMap((s) => s.Action).sort()).toEqual(['es:ESHttpDelete', 'es:ESHttpPost', 'es:ESHttpPut']);
    expect(denied.flatMap((s) => s.Resource).map((r) => r.replace(/^.*?\/(?=\*\/)/, '')).sort()).toEqual(['*/_create/*', '*/_doc/*', '*/_update/*']);
    const posts = statements.filter((s) => s.Action.includes('es:ESHttpPost'));
    expect(posts.length).toBeGreaterThan(0);
    for (const s of posts) {
      expect(s.Action).toEqual(['es:ESHttpPost']);
      for (const r of s.Resource) expect(r).toMatch(/\/(\*\/)?_(search|msearch|count)$/);
    }
    expect(statements.flatMap((s) => s.Action).sort()).toEqual(['es:ESHttpGet', 'es:ESHttpHead', 'es:ESHttpPost']);
    // The domain's access policy names the same actions and paths.
    const [, domain] = resourcesOf(dev.template, 'AWS::OpenSearchService::Domain')[0];
    const text = flatten(domain.AccessPolicies);
    for (const path of ['_search', '*/_search', '_msearch', '*/_msearch', '_count', '*/_count']) expect(text).toContain(`/${path}`);
  });

  test('each search delivery role sends the domain what AWS\'s policy for a Firehose OpenSearch role lists: POST and PUT to _bulk and its own indices, GET to the cluster\'s and its indices\' settings and stats', () => {
    const search = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('search'));
    expect(search.length).toBeGreaterThan(0);
    const [, domain] = resourcesOf(dev.template, 'AWS::OpenSearchService::Domain')[0];
    const domainPolicy = (domain.AccessPolicies as { Statement: Array<{ Principal: unknown; Action: string | string[]; Resource: unknown }> }).Statement;
    for (const p of search) {
      const role = `${p.name.replace(/[^A-Za-z0-9]/g, '')}SearchRole`;
      const http = iamStatements(dev.template).filter((s) => s.policy.startsWith(role) && s.Action.some((a) => a.startsWith('es:ESHttp')));
      const index = `${resourceNames(dev.config, p.name).indexPrefix}-*`;
      const paths = (action: string) => http.filter((s) => s.Action.includes(action)).flatMap((s) => s.Resource).map((r) => r.replace(/^.*:domain\/[^/]+\//, '')).sort();
      expect([...new Set(http.flatMap((s) => s.Action))].sort()).toEqual(['es:ESHttpGet', 'es:ESHttpPost', 'es:ESHttpPut']);
      expect(paths('es:ESHttpPost')).toEqual(['_bulk', index].sort());
      expect(paths('es:ESHttpPut')).toEqual(['_bulk', index].sort());
      expect(paths('es:ESHttpGet')).toEqual(['', '_all/_settings', '_cluster/stats', '_nodes', '_nodes/stats', '_nodes/*/stats', '_stats', `${index}/_mapping`, `${index}/_mapping/*`, `${index}/_stats`].sort());
      // The domain's access policy names the role for the same actions and paths, nothing more.
      const forRole = domainPolicy.filter((s) => flatten(s.Principal).includes(role));
      expect(forRole.length).toBeGreaterThan(0);
      const inPolicy = forRole.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).flatMap((a) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]).map((r) => `${a} ${flatten(r).replace(/^.*:domain\/[^/]+\//, '')}`)));
      const inRole = http.flatMap((s) => s.Action.flatMap((a) => s.Resource.map((r) => `${a} ${r.replace(/^.*:domain\/[^/]+\//, '')}`)));
      expect(inPolicy.sort()).toEqual(inRole.sort());
    }
  });

  test('the index-template role manages each search pipeline\'s retention policy by id and applies it to that pipeline\'s indices only; the domain policy names the same; no role may DELETE an index', () => {
    const search = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('search'));
    expect(search.length).toBeGreaterThan(0);
    const http = iamStatements(dev.template).filter((s) => s.policy.startsWith('IndexTemplatesApplyRole') && s.Action.some((a) => a.startsWith('es:ESHttp')));
    const pairs = (statements: Array<{ Action: string[]; Resource: string[] }>) => statements
      .flatMap((s) => s.Action.flatMap((a) => s.Resource.map((r) => `${a} ${r.replace(/^.*:domain\/[^/]+\//, '')}`)));
    const ism = pairs(http).filter((p) => p.includes('_plugins/'));
    const expected = search.flatMap((p) => {
      const index = `${resourceNames(dev.config, p.name).indexPrefix}-*`;
      return [
        `es:ESHttpGet _plugins/_ism/policies/${p.name}-retention`,
        `es:ESHttpPut _plugins/_ism/policies/${p.name}-retention`,
        `es:ESHttpDelete _plugins/_ism/policies/${p.name}-retention`,
        `es:ESHttpGet _plugins/_ism/explain/${index}`,
        `es:ESHttpPost _plugins/_ism/add/${index}`,
        `es:ESHttpPost _plugins/_ism/change_policy/${index}`,
        `es:ESHttpPost _plugins/_ism/remove/${index}`,
      ];
    });
    expect(ism.sort()).toEqual(expected.sort());
    // The domain's access policy allows the role exactly what its identity policy does (both must allow).
    const [, domain] = resourcesOf(dev.template, 'AWS::OpenSearchService::Domain')[0];
    const domainPolicy = (domain.AccessPolicies as { Statement: Array<{ Effect: string; Principal: unknown; Action: string | string[]; Resource: string | string[] }> }).Statement;
    const list = (v: string | string[]) => (Array.isArray(v) ? v : [v]).map((x) => flatten(x));
    const forRole = domainPolicy.filter((s) => flatten(s.Principal).includes('IndexTemplatesApplyRole'));
    expect(pairs(forRole.map((s) => ({ Action: list(s.Action), Resource: list(s.Resource) }))).sort()).toEqual(pairs(http).sort());
    // Deleting an index is ISM's, as the cluster: no role the stack creates may send DELETE anywhere but a template or its policy.
    const deletes = iamStatements(dev.template).filter((s) => s.Effect === 'Allow' && s.Action.includes('es:ESHttpDelete'))
      .flatMap((s) => s.Resource.map((r) => r.replace(/^.*:domain\/[^/]+\//, '')));
    expect(deletes.every((r) => /^_index_template\/[a-z0-9-]+$/.test(r) || /^_plugins\/_ism\/policies\/[a-z0-9-]+-retention$/.test(r))).toBe(true);
  });

  test('the index-template role is denied every path with a comma, in its policy and the domain\'s: `<pipeline>-*` would match `<pipeline>-x,<other index>`', () => {
    const denies = (statements: Array<{ Effect: string; Action: string[]; Resource: string[] }>) => statements.filter((s) => s.Effect === 'Deny')
      .flatMap((s) => s.Action.flatMap((a) => s.Resource.map((r) => `${a} ${r.replace(/^.*:domain\/[^/]+\//, '')}`)));
    const everyMethod = ['Delete', 'Get', 'Head', 'Patch', 'Post', 'Put'].map((m) => `es:ESHttp${m} *,*`);
    expect([...new Set(denies(iamStatements(dev.template).filter((s) => s.policy.startsWith('IndexTemplatesApplyRole'))))].sort()).toEqual(everyMethod);
    const [, domain] = resourcesOf(dev.template, 'AWS::OpenSearchService::Domain')[0];
    const list = (v: string | string[]) => (Array.isArray(v) ? v : [v]).map((x) => flatten(x));
    const forRole = (domain.AccessPolicies as { Statement: Array<{ Effect: string; Principal: unknown; Action: string | string[]; Resource: string | string[] }> }).Statement
      .filter((s) => flatten(s.Principal).includes('IndexTemplatesApplyRole')).map((s) => ({ Effect: s.Effect, Action: list(s.Action), Resource: list(s.Resource) }));
    expect([...new Set(denies(forRole))].sort()).toEqual(everyMethod);
  });

  test('the index-template role reaches each search pipeline\'s own template, no other; the domain policy names the same', () => {
    const search = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('search'));
    expect(search.length).toBeGreaterThan(0);
    const templates = iamStatements(dev.template).filter((s) => s.policy.startsWith('IndexTemplatesApplyRole'))
      .flatMap((s) => s.Action.flatMap((a) => s.Resource.map((r) => `${a} ${r.replace(/^.*:domain\/[^/]+\//, '')}`)))
      .filter((p) => p.includes('_index_template'));
    expect(templates.sort()).toEqual(search.flatMap((p) => ['Get', 'Head', 'Put', 'Delete'].map((verb) => `es:ESHttp${verb} _index_template/${p.name}`)).sort());
    const [, domain] = resourcesOf(dev.template, 'AWS::OpenSearchService::Domain')[0];
    expect(flatten(domain.AccessPolicies)).not.toContain('_index_template/*');
    expect(JSON.stringify(dev.template.findResources('AWS::IAM::Policy'))).not.toContain('_index_template/*');
    // No wildcard left, so no cdk-nag acknowledgement of one.
    const acknowledged = dev.app.node.findAll().flatMap((c) => c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY).flatMap((m) => Object.keys(m.data as object)));
    expect(acknowledged.length).toBeGreaterThan(0);
    expect(acknowledged.filter((id) => id.includes('_index_template'))).toEqual([]);
  });

  test('each OpenSearch wildcard is acknowledged with the reason of its kind: the query role reads the whole domain, _nodes/*/stats are node ids, the ISM paths amount to deleting the pipeline\'s indices', () => {
    const acknowledged = new Map<string, string>();
    for (const c of dev.app.node.findAll()) {
      for (const m of c.node.metadata.filter((x) => x.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)) {
        for (const [id, reason] of Object.entries(m.data as Record<string, string>)) if (id.includes(':domain/')) acknowledged.set(`${c.node.path} ${id}`, reason);
      }
    }
    const reasons = (match: RegExp) => [...acknowledged].filter(([key]) => match.test(key)).map(([, reason]) => reason);
    expect(reasons(/QueryRole.*domain\/[^/]+\/\*\]$/)).toEqual([expect.stringMatching(/Read-only on purpose: GET and HEAD anywhere on this domain/)]);
    const nodes = reasons(/\/Search\/Role .*_nodes\/\*\/stats\]$/);
    expect(nodes.length).toBeGreaterThan(0);
    for (const reason of nodes) expect(reason).toMatch(/node ids are the cluster's/);
    const ism = reasons(/IndexTemplates.*_plugins\/_ism\/(add|change_policy|remove|explain)\//);
    expect(ism.length).toBeGreaterThan(0);
    for (const reason of ism) expect(reason).toMatch(/amounts to deleting <pipeline>-\* indices/);
    // The query role's wildcards are the whole domain, not rotating indices.
    for (const reason of reasons(/QueryRole /)) expect(reason).not.toMatch(/rotation period/);
  });

  test('no statement grants every action of a service or every action', () => {
    const broad = iamStatements(dev.template).filter((s) => s.Effect === 'Allow' && s.Action.some((a) => a === '*' || a.endsWith(':*')));
    expect(broad).toEqual([]);
  });

  test('"*" resources only where AWS offers nothing narrower', () => {
    const star = iamStatements(dev.template).filter((s) => s.Effect === 'Allow' && s.Resource.includes('*'));
    // glue:GetSchemaVersion comes with the L2 conversion binding (Schema Registry, unused); the bucket-notifications
    // custom resource configures a bucket it cannot name at synth time.
    const allowed = new Set(['glue:GetSchemaVersion', 's3:PutBucketNotification']);
    for (const s of star) expect(s.Action.filter((a) => !allowed.has(a))).toEqual([]);
  });

  test('the metadata consumers write with PutItem and UpdateItem, on their own pipeline\'s items only (no Scan, Query, GetItem, DeleteItem or batch calls)', () => {
    const statements = iamStatements(dev.template).filter((s) => /^\w+MetadataConsumerRole/.test(s.policy));
    // One role per pipeline with the metadata destination, under the pipeline's construct (logical ids keep letters and digits).
    const pipelines = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('metadata'));
    const ids = pipelines.map((p) => p.name.replace(/[^A-Za-z0-9]/g, ''));
    expect([...new Set(statements.map((s) => s.policy.replace(/MetadataConsumerRole.*/, '')))].sort()).toEqual([...ids].sort());
    for (const p of pipelines) {
      const dynamo = statements.filter((s) => s.policy.startsWith(p.name.replace(/[^A-Za-z0-9]/g, '')) && s.Action.some((a) => a.startsWith('dynamodb:')));
      expect(dynamo.map((s) => ({ Action: [...s.Action].sort(), Resource: s.Resource, Condition: s.Condition }))).toEqual([{
        Action: ['dynamodb:PutItem', 'dynamodb:UpdateItem'],
        Resource: [expect.stringMatching(/^<MetadataTable[A-Z0-9]+\.Arn>$/)],
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`event#${p.name}#*`, `count#${p.name}#*`, `entity#${p.name}#*`] } },
      }]);
    }
    // The table's key, for the items.
    expect(statements.some((s) => s.Action.includes('kms:Decrypt') && s.Action.includes('kms:GenerateDataKey*'))).toBe(true);
  });

  test('the failure router checks and marks its sent messages with BatchGetItem and BatchWriteItem on the metadata table, nothing else', () => {
    const statements = iamStatements(dev.template).filter((s) => s.policy.startsWith('FailuresRouterRole'));
    expect(statements.length).toBeGreaterThan(0);
    const dynamo = statements.filter((s) => s.Action.some((a) => a.startsWith('dynamodb:')));
    expect(dynamo.flatMap((s) => s.Action).sort()).toEqual(['dynamodb:BatchGetItem', 'dynamodb:BatchWriteItem']);
    expect(dynamo.flatMap((s) => s.Resource)).toEqual([expect.stringMatching(/^<MetadataTable[A-Z0-9]+\.Arn>$/)]);
    // Its ledger's items only: not the pipelines' counts, nor the replay ledger.
    expect(dynamo.map((s) => s.Condition)).toEqual([{ 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['dlq#*'] } }]);
    // The table's key, for reading and writing its items, through DynamoDB (the same key encrypts the queues and the bucket).
    const kms = statements.filter((s) => s.Action.some((a) => a.startsWith('kms:')) && flatten((s.Condition as { StringEquals?: Record<string, unknown> } | undefined)?.StringEquals?.['kms:ViaService']).startsWith('dynamodb.'));
    expect(kms.flatMap((s) => s.Action).sort()).toEqual(['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey*', 'kms:ReEncrypt*']);
  });

  test('each lake Firehose role reaches only its own pipeline\'s data/ and errors/ objects of the bucket, and deletes nothing', () => {
    for (const p of lakePipelines()) {
      const s3 = iamStatements(dev.template).filter((s) => s.policy.startsWith(`${p.name.replace(/[^A-Za-z0-9]/g, '')}LakeRole`) && s.Action.some((a) => a.startsWith('s3:')));
      expect(s3.length).toBeGreaterThan(0);
      const objects = s3.flatMap((s) => s.Resource).filter((r) => r.includes('/'));
      expect([...new Set(objects)].sort()).toEqual([`<${bucketRef()}.Arn>/data/${p.name}/*`, `<${bucketRef()}.Arn>/errors/${p.name}/*`]);
      // What AWS lists for a Firehose S3 destination role (abort, location, get, list, put); never a delete.
      const actions = s3.flatMap((s) => s.Action);
      expect(actions.filter((a) => /Delete/.test(a))).toEqual([]);
      for (const needed of ['s3:AbortMultipartUpload', 's3:GetBucketLocation', 's3:GetObject', 's3:ListBucket', 's3:ListBucketMultipartUploads', 's3:PutObject']) expect(actions).toContain(needed);
      const kms = iamStatements(dev.template).filter((s) => s.policy.startsWith(`${p.name.replace(/[^A-Za-z0-9]/g, '')}LakeRole`)).flatMap((s) => s.Action).filter((a) => a.startsWith('kms:'));
      for (const needed of ['kms:Decrypt', 'kms:GenerateDataKey']) expect(kms).toContain(needed);
    }
    const search = iamStatements(dev.template).filter((s) => s.policy.startsWith('clickstreamSearchRole') && s.Action.some((a) => a.startsWith('s3:')));
    expect(search.length).toBeGreaterThan(0);
    expect(search.flatMap((s) => s.Action).filter((a) => /Delete/.test(a))).toEqual([]);
  });

  test('each Firehose role has of S3 the actions AWS lists for a Firehose destination, no wildcard: objects under its own prefixes, the rest on the bucket', () => {
    const firehoseRoles = /^\w+(Lake|Search)Role/;
    const s3 = iamStatements(dev.template).filter((s) => firehoseRoles.test(s.policy) && s.Action.some((a) => a.startsWith('s3:')));
    expect(s3.length).toBeGreaterThan(0);
    for (const s of s3) {
      const onBucket = s.Resource.every((r) => r === `<${bucketRef()}.Arn>`);
      expect([...s.Action].sort()).toEqual(onBucket
        ? ['s3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads']
        : ['s3:AbortMultipartUpload', 's3:GetObject', 's3:PutObject']);
      if (!onBucket) for (const r of s.Resource) expect(r).toMatch(new RegExp(`^<${bucketRef()}\\.Arn>/(data|errors|search-backup)/[a-z0-9-]+/\\*$`));
    }
    // The failure router reads the failure objects and lists (for NoSuchKey) only.
    const router = iamStatements(dev.template).filter((s) => s.policy.startsWith('FailuresRouterRole') && s.Action.some((a) => a.startsWith('s3:')));
    expect(router.flatMap((s) => s.Action).sort()).toEqual(['s3:GetObject', 's3:GetObjectVersion', 's3:ListBucket']);
  });

  test('each Firehose role may use the data key only through S3 for the data bucket, and a stream\'s own key only through Kinesis for that stream (AWS\'s policy for a Firehose role)', () => {
    const dataKey = /^<StorageKey[A-Z0-9]+\.Arn>$/;
    const render = (condition: unknown) => JSON.parse(JSON.stringify(condition ?? {}, (_k, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) && ('Fn::Join' in v || 'Fn::GetAtt' in v || 'Ref' in v) ? flatten(v) : v))) as Record<string, Record<string, unknown>>;
    let streamKeyStatements = 0;
    for (const p of Object.values(dev.config.pipelines)) {
      const id = p.name.replace(/[^A-Za-z0-9]/g, '');
      const kms = iamStatements(dev.template).filter((s) => new RegExp(`^${id}(Lake|Search)Role`).test(s.policy) && s.Action.some((a) => a.startsWith('kms:')));
      expect(kms.length).toBeGreaterThan(0);
      for (const s of kms) {
        const condition = render(s.Condition);
        if (s.Resource.every((r) => dataKey.test(r))) {
          expect([...s.Action].sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
          expect(condition.StringEquals).toEqual({ 'kms:ViaService': 's3.<AWS::Region>.amazonaws.com' });
          // The bucket's ARN (the context with an S3 Bucket Key) and the role's own object prefixes, nothing wider.
          const contexts = condition.StringLike['kms:EncryptionContext:aws:s3:arn'] as string[];
          expect(contexts).toContain(`<${bucketRef()}.Arn>`);
          for (const c of contexts.filter((x) => x !== `<${bucketRef()}.Arn>`)) expect(c).toMatch(new RegExp(`/(data|errors|search-backup)/${p.name}/\\*$`));
        } else {
          streamKeyStatements += 1;
          expect(s.Action).toEqual(['kms:Decrypt']);
          expect(s.Resource).toEqual([expect.stringMatching(new RegExp(`^<${id}StreamKey[A-Z0-9]+\\.Arn>$`))]);
          expect(condition.StringEquals).toEqual({
            'kms:ViaService': 'kinesis.<AWS::Region>.amazonaws.com',
            'kms:EncryptionContext:aws:kinesis:arn': expect.stringMatching(new RegExp(`^<${id}Stream[A-Z0-9]+\\.Arn>$`)),
          });
        }
      }
    }
    // transactions has a stream key of its own.
    expect(streamKeyStatements).toBeGreaterThan(0);
  });

  test('every role may decrypt with a stream\'s own key only through Kinesis for that stream: the metadata consumer\'s too', () => {
    const streamKey = iamStatements(dev.template).filter((s) => s.Action.some((a) => a.startsWith('kms:')) && s.Resource.some((r) => /StreamKey[A-Z0-9]+\.Arn>$/.test(r)));
    expect(streamKey.map((s) => s.policy.replace(/[A-Z0-9]{8}$/, '')).sort()).toEqual(['transactionsLakeRoleDefaultPolicy', 'transactionsMetadataConsumerRoleDefaultPolicy']);
    for (const s of streamKey) {
      expect(s.Action).toEqual(['kms:Decrypt']);
      const condition = s.Condition as { StringEquals: Record<string, unknown> };
      expect(Object.keys(condition)).toEqual(['StringEquals']);
      expect(flatten(condition.StringEquals['kms:ViaService'])).toBe('kinesis.<AWS::Region>.amazonaws.com');
      expect(flatten(condition.StringEquals['kms:EncryptionContext:aws:kinesis:arn'])).toMatch(/^<transactionsStream[A-Z0-9]+\.Arn>$/);
    }
    // The consumer keeps what its event source mapping reads with: the stream consumer's and the stream's read actions.
    const kinesis = iamStatements(dev.template).filter((s) => s.policy.startsWith('transactionsMetadataConsumerRole') && s.Action.some((a) => a.startsWith('kinesis:')));
    expect(kinesis.flatMap((s) => s.Action).sort()).toEqual([
      'kinesis:DescribeStream', 'kinesis:DescribeStreamConsumer', 'kinesis:DescribeStreamSummary', 'kinesis:GetRecords', 'kinesis:GetShardIterator', 'kinesis:ListShards', 'kinesis:SubscribeToShard', 'kinesis:SubscribeToShard',
    ]);
  });

  test('every role may use the stack\'s data key only through the service it goes through (kms:ViaService): the consumers and the router through DynamoDB, SQS and S3, with the actions each needs', () => {
    const dataKey = iamStatements(dev.template).filter((s) => s.Action.some((a) => a.startsWith('kms:')) && s.Resource.some((r) => /^<StorageKey[A-Z0-9]+\.Arn>$/.test(r)));
    const via = (s: { Condition?: unknown }) => flatten((s.Condition as { StringEquals?: Record<string, unknown> } | undefined)?.StringEquals?.['kms:ViaService']).replace(/\.<AWS::Region>\.amazonaws\.com$/, '');
    for (const s of dataKey) expect([s.policy, via(s)]).toEqual([s.policy, expect.stringMatching(/^(dynamodb|sqs|s3)$/)]);
    const byService = (role: RegExp) => {
      const out: Record<string, string[]> = {};
      for (const s of dataKey.filter((x) => role.test(x.policy))) out[via(s)] = [...new Set([...(out[via(s)] ?? []), ...s.Action])].sort();
      return out;
    };
    const dynamodb = ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey*', 'kms:ReEncrypt*'];
    const consumers = Object.values(dev.config.pipelines).filter((p) => p.source === 'kinesis').map((p) => p.name.replace(/[^A-Za-z0-9]/g, ''));
    expect(consumers.length).toBeGreaterThan(0);
    for (const id of consumers) {
      // Its items, and Lambda's on-failure notice to the consumer dead-letter queue, sent with the function's role.
      expect(byService(new RegExp(`^${id}MetadataConsumerRole`))).toEqual({ dynamodb, sqs: ['kms:Decrypt', 'kms:GenerateDataKey'] });
    }
    // Its ledger; the dead-letter queue and Lambda's on-failure record to the failed-events queue; the failure objects.
    expect(byService(/^FailuresRouterRole/)).toEqual({ dynamodb, sqs: ['kms:Decrypt', 'kms:GenerateDataKey'], s3: ['kms:Decrypt'] });
  });

  test('each Firehose role reads only its own stream, invokes only its own transform and reads its configuration (as AWS\'s policy lists)', () => {
    for (const p of Object.values(dev.config.pipelines).filter((x) => x.source === 'kinesis' && x.destinations.includes('lake'))) {
      const statements = iamStatements(dev.template).filter((s) => s.policy.startsWith(`${p.name}LakeRole`));
      const kinesis = statements.filter((s) => s.Action.some((a) => a.startsWith('kinesis:')));
      expect(kinesis.flatMap((s) => s.Resource)).toEqual([expect.stringMatching(new RegExp(`^<${p.name}Stream[A-Z0-9]+\\.Arn>$`))]);
      for (const action of ['lambda:InvokeFunction', 'lambda:GetFunctionConfiguration']) {
        const resources = statements.filter((s) => s.Action.includes(action)).flatMap((s) => s.Resource);
        expect(resources.length).toBeGreaterThan(0);
        expect(resources.every((r) => r.startsWith(`<${p.name}LakeTransformFunction`))).toBe(true);
      }
    }
    const search = iamStatements(dev.template).filter((s) => s.policy.startsWith('clickstreamSearchRole') && s.Action.includes('lambda:GetFunctionConfiguration'));
    expect(search.flatMap((s) => s.Resource).every((r) => r.startsWith('<clickstreamSearchTransformFunction'))).toBe(true);
    expect(search.length).toBeGreaterThan(0);
  });
});

/** A metric of a dashboard graph: [namespace, name, dimension, value, …, options] in the dashboard's JSON. */
interface GraphedMetric {
  readonly namespace: string;
  readonly metricName: string;
  readonly dimensions: Record<string, string>;
}

/** What a handler's EMF lines publish: each metric's namespace, name and its dimensions (the set it was published with, and their values). */
function publishedMetrics(lines: ReadonlyArray<Record<string, unknown>>): GraphedMetric[] {
  return lines.filter((l) => l._aws !== undefined).flatMap((l) => {
    const [directive] = (l._aws as { CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][]; Metrics: Array<{ Name: string }> }> }).CloudWatchMetrics;
    return directive.Dimensions.flatMap((set) => directive.Metrics.map((m) => ({
      namespace: directive.Namespace, metricName: m.Name, dimensions: Object.fromEntries(set.map((d) => [d, String(l[d])])),
    })));
  });
}

describe('monitoring', () => {
  const alarms = () => resourcesOf(dev.template, 'AWS::CloudWatch::Alarm').map(([, a]) => a);
  const alarmsOn = (metric: string) => alarms().filter((a) => a.MetricName === metric);
  const dashboardWidgets = () => {
    const [, dashboard] = resourcesOf(dev.template, 'AWS::CloudWatch::Dashboard')[0];
    return (JSON.parse(flatten(dashboard.DashboardBody)) as { widgets: Array<{ type: string; properties: { title?: string; metrics?: unknown[][] } }> }).widgets;
  };
  /** The metrics (not expressions) of the one graph with this title. */
  const graphed = (title: string): GraphedMetric[] => {
    const widgets = dashboardWidgets().filter((w) => w.properties.title === title);
    expect({ title, widgets: widgets.length }).toEqual({ title, widgets: 1 });
    return widgets[0].properties.metrics!.filter((m) => typeof m[0] === 'string').map((m) => {
      const [namespace, metricName, ...dims] = m.filter((x): x is string => typeof x === 'string');
      const dimensions: Record<string, string> = {};
      for (let i = 0; i < dims.length; i += 2) dimensions[dims[i]] = dims[i + 1];
      return { namespace, metricName, dimensions };
    });
  };
  const functionId = (description: string) => resourcesOf(dev.template, 'AWS::Lambda::Function').find(([, f]) => String(f.Description).includes(description))![0];

  test('every alarm notifies the topic, on alarm and on recovery', () => {
    const [topicId] = resourcesOf(dev.template, 'AWS::SNS::Topic')[0];
    expect(alarms().length).toBeGreaterThan(0);
    for (const a of alarms()) {
      expect(a.AlarmActions).toEqual([{ Ref: topicId }]);
      expect(a.OKActions).toEqual([{ Ref: topicId }]);
    }
  });

  test('alarms carry the names the docs give: <stack>-<what>, unique', () => {
    const names = alarms().map((a) => a.AlarmName as string);
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(name).toMatch(/^sluice-dev-[a-z0-9-]+$/);
    for (const named of ['sluice-dev-iot-lake-partitions-exceeded', 'sluice-dev-router-events-failed', 'sluice-dev-router-destination-failures']) {
      expect(names).toContain(named);
    }
  });

  test('every description fits CloudWatch\'s 1,024 characters, each resource name it gives counted at 128', () => {
    // A string's length; an intrinsic (Ref, GetAtt, Select of an ARN…) resolves to a name, counted at 128.
    const length = (value: unknown): number => {
      if (typeof value === 'string') return value.length;
      const join = (value as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
      return join ? join[1].reduce<number>((sum, part, i) => sum + (i === 0 ? 0 : join[0].length) + length(part), 0) : 128;
    };
    const longest = alarms().map((a) => ({ name: a.AlarmName, length: length(a.AlarmDescription) })).sort((a, b) => b.length - a.length)[0];
    expect(longest.length).toBeLessThanOrEqual(1024);
  });

  test('a sluice command in a description runs against the deployed stack: npx sluice replay --aws --stack <the stack>', () => {
    const commands = alarms().flatMap((a) => [...flatten(a.AlarmDescription).matchAll(/(\S*)\s?\bsluice (\w+)([^`]*)/g)].map(([, before, command, args]) => ({ alarm: a.AlarmName, before, command, args })));
    expect(commands.filter((c) => c.command === 'replay').length).toBeGreaterThan(5);
    for (const c of commands) {
      expect(c).toEqual(expect.objectContaining({ before: expect.stringMatching(/npx$/) }));
      if (c.command === 'replay') expect(c).toEqual(expect.objectContaining({ args: expect.stringMatching(/^ --aws --stack sluice-dev\b/) }));
    }
  });

  test('a description that sends you to a log group names it', () => {
    const mentions = alarms().flatMap((a) => [...flatten(a.AlarmDescription).matchAll(/log group(.{0,2})/g)].map(([, after]) => ({ alarm: a.AlarmName, after })));
    expect(mentions.length).toBeGreaterThan(20);
    for (const m of mentions) expect(m).toEqual({ alarm: m.alarm, after: ' <' });
    // The delivery stream's own log group, not the transform's.
    const [lakeLogs] = resourcesOf(dev.template, 'AWS::Logs::LogGroup').find(([id]) => id.startsWith('iotLakeDeliveryLogs'))!;
    expect(flatten(alarms().find((a) => a.AlarmName === 'sluice-dev-iot-lake-delivery-success')!.AlarmDescription)).toContain(`<${lakeLogs}>`);
  });

  test('every kind of alarm has an entry in docs/deploy.md\'s "Alarms", and every entry names an alarm the stack has', () => {
    // The default configuration creates every kind; others create a subset under the same ids (variants.test.ts checks
    // an existing domain and every pipeline with every destination).
    const kinds = alarmKinds(dev);
    expect(kinds.length).toBeGreaterThan(40);
    const runbook = runbookAlarmKinds();
    expect(kinds.filter((k) => !runbook.includes(k))).toEqual([]);
    expect(runbook.filter((k) => !kinds.includes(k))).toEqual([]);
  });

  test('new dead letters alarm each time, whatever the queues hold: NumberOfMessagesSent on the dead-letter and consumer dead-letter queues', () => {
    const names = resourceNames(dev.config, 'iot');
    const onQueue = (queueName: string) => {
      const [queueId] = resourceWhere(dev.template, 'AWS::SQS::Queue', { QueueName: queueName });
      return [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }];
    };
    const sent = { Namespace: 'AWS/SQS', Statistic: 'Sum', Period: 300, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 1, TreatMissingData: 'notBreaching' };
    expect(alarmsOn('NumberOfMessagesSent').sort((a, b) => String(a.AlarmName).localeCompare(String(b.AlarmName)))).toEqual([
      expect.objectContaining({ ...sent, AlarmName: 'sluice-dev-consumer-dlq-new-messages', Dimensions: onQueue(names.consumerDlq) }),
      expect.objectContaining({ ...sent, AlarmName: 'sluice-dev-dlq-new-messages', Dimensions: onQueue(names.dlq) }),
    ]);
    // No depth alarm on them: replay keeps what it cannot replay, and a depth alarm held in ALARM would notify no one of what follows.
    expect(alarmsOn('ApproximateNumberOfMessagesVisible').map((a) => a.Dimensions)).not.toContainEqual(onQueue(names.dlq));
    expect(alarmsOn('ApproximateNumberOfMessagesVisible').map((a) => a.Dimensions)).not.toContainEqual(onQueue(names.consumerDlq));
  });

  test('write throttles say what to do by stream mode: provisioned, raise the shards (sluice cost sizes them); on demand, hot keys or past twice the peak', () => {
    const description = (s: Synthesized, pipeline: string) => flatten(resourcesOf(s.template, 'AWS::CloudWatch::Alarm').map(([, a]) => a)
      .find((a) => a.AlarmName === `sluice-dev-${pipeline}-stream-write-throttles`)!.AlarmDescription);
    expect(dev.config.pipelines.iot.shards).toEqual(expect.any(Number));
    expect(description(dev, 'iot')).toContain('`npx sluice cost --rate <records/s> --size <bytes> -p iot`');
    expect(description(dev, 'iot')).toContain('`npx cdk deploy -c pipelines.iot.shards=N`');
    const onDemand = synthesize({ 'pipelines.iot.shards': 'on-demand' });
    expect(description(onDemand, 'iot')).toMatch(/on demand: it takes at once up to twice its write peak of the previous 30 days/);
    expect(description(onDemand, 'iot')).toContain('partition keys are hot');
    expect(description(onDemand, 'iot')).not.toContain('pipelines.iot.shards=N');
  }, 120_000);

  test('a pipeline delivering to the lake and to OpenSearch: its processing-success alarms say replay keeps the records the other destination holds', () => {
    const description = (name: string) => flatten(alarms().find((a) => a.AlarmName === name)!.AlarmDescription);
    expect(description('sluice-dev-clickstream-search-processing-success')).toMatch(/The lake stream reads the same records: replay keeps \(not-replayable\) each record it holds/);
    expect(description('sluice-dev-clickstream-lake-processing-success')).toMatch(/The search stream reads the same records: replay keeps \(not-replayable\)/);
    expect(description('sluice-dev-iot-lake-processing-success')).not.toContain('not-replayable');
  });

  test('a transform failing over 5 % of the records it returns alarms, per pipeline and destination, from its own RecordsOk and RecordsFailed; no traffic, no alarm', () => {
    const transforms = Object.values(dev.config.pipelines).flatMap((p) => (['lake', 'search'] as const).filter((d) => p.destinations.includes(d)).map((d) => ({ pipeline: p.name, destination: d })));
    const failing = alarms().filter((a) => String(a.AlarmName).endsWith('-transform-records-failed'));
    expect(failing.map((a) => a.AlarmName).sort()).toEqual(transforms.map((t) => `sluice-dev-${t.pipeline}-${t.destination}-transform-records-failed`).sort());
    for (const t of transforms) {
      const alarm = failing.find((a) => a.AlarmName === `sluice-dev-${t.pipeline}-${t.destination}-transform-records-failed`)!;
      expect(alarm).toMatchObject({ Threshold: ALARM_THRESHOLDS.transformFailedPercent, ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 3, DatapointsToAlarm: 2, TreatMissingData: 'notBreaching' });
      expect(ALARM_THRESHOLDS.transformFailedPercent).toBe(5);
      // The exact metrics the dashboard graphs, which the handler publishes (see the dashboard test below).
      const dimensions = [{ Name: 'destination', Value: t.destination }, { Name: 'pipeline', Value: t.pipeline }, { Name: 'service', Value: 'record-transform' }];
      const metric = (name: string) => ({ Namespace: 'Sluice', MetricName: name, Dimensions: dimensions });
      expect(alarm.Metrics).toEqual([
        expect.objectContaining({ Expression: 'IF(FILL(ok, 0) + FILL(failed, 0) > 0, 100 * FILL(failed, 0) / (FILL(ok, 0) + FILL(failed, 0)), 0)' }),
        expect.objectContaining({ Id: 'ok', MetricStat: { Metric: metric('RecordsOk'), Period: 300, Stat: 'Sum' }, ReturnData: false }),
        expect.objectContaining({ Id: 'failed', MetricStat: { Metric: metric('RecordsFailed'), Period: 300, Stat: 'Sum' }, ReturnData: false }),
      ]);
      const graphedDims = graphed(`${t.pipeline}: records transformed`).filter((m) => m.dimensions.destination === t.destination && ['RecordsOk', 'RecordsFailed'].includes(m.metricName));
      expect(graphedDims).toEqual(['RecordsOk', 'RecordsFailed'].map((metricName) => ({ namespace: 'Sluice', metricName, dimensions: Object.fromEntries(dimensions.map((d) => [d.Name, d.Value])) })));
    }
  });

  test('dashboard: the dead-letter queue graph labels each queue; every Lambda graph shows throttles', () => {
    const widgets = dashboardWidgets();
    const dlq = widgets.find((w) => w.properties.title === 'Dead-letter queues')!;
    const labels = dlq.properties.metrics!.map((m) => (m.at(-1) as { label?: string }).label);
    expect(labels).toEqual(['dlq: messages', 'router failed events: messages', 'consumer dlq: messages', 'dlq: oldest (s)', 'router failed events: oldest (s)', 'consumer dlq: oldest (s)']);
    const lambdaGraphs = widgets.filter((w) => String(w.properties.title).endsWith(': Lambda'));
    expect(lambdaGraphs.length).toBeGreaterThan(5);
    for (const w of lambdaGraphs) expect({ widget: w.properties.title, throttles: w.properties.metrics!.some((m) => m.includes('Throttles')) }).toEqual({ widget: w.properties.title, throttles: true });
  });

  test('thresholds: iterator age, throttling, freshness, delivery success, DLQ depth, Lambda, OpenSearch', () => {
    const kinesisPipelines = Object.values(dev.config.pipelines).filter((p) => p.source === 'kinesis');
    // The stream's iterator age is the largest lag of its GetRecords readers, the Firehose streams, each alarmed as
    // <kind>-reader-behind (the metadata consumer reads through its enhanced fan-out consumer): no second page for one fault.
    expect(alarmsOn('GetRecords.IteratorAgeMilliseconds')).toEqual([]);
    expect(alarmsOn('WriteProvisionedThroughputExceeded')).toHaveLength(kinesisPipelines.length);

    const lakes = lakePipelines();
    expect(alarmsOn('DeliveryToS3.DataFreshness')).toHaveLength(lakes.length);
    for (const p of lakes) {
      const [streamId] = resourceWhere(dev.template, 'AWS::KinesisFirehose::DeliveryStream', { DeliveryStreamName: resourceNames(dev.config, p.name).lakeDeliveryStream });
      const freshness = alarmsOn('DeliveryToS3.DataFreshness').find((a) => JSON.stringify(a.Dimensions).includes(`"${streamId}"`))!;
      expect(freshness.Threshold).toBe(p.buffering.intervalSeconds + ALARM_THRESHOLDS.freshnessSlackSeconds);
    }
    expect(alarmsOn('DeliveryToS3.Success').every((a) => a.Threshold === 1 && a.ComparisonOperator === 'LessThanThreshold')).toBe(true);
    // More partitions open than the stream's quota: records go to the error prefix; one 5-minute datapoint alarms.
    expect(alarmsOn('PartitionCountExceeded')).toHaveLength(lakes.length);
    for (const a of alarmsOn('PartitionCountExceeded')) {
      expect(a).toMatchObject({ Namespace: 'AWS/Firehose', Statistic: 'Maximum', Threshold: 1, EvaluationPeriods: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
    }
    expect(alarmsOn('ThrottledGetRecords').length + alarmsOn('ThrottledRecords').length).toBe(
      lakes.length + Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('search')).length,
    );

    // Depth only for the failed-events queue, which an operator empties by hand; the dead-letter queues alarm on new messages.
    const dlq = alarmsOn('ApproximateNumberOfMessagesVisible');
    const [failedEventsId] = resourceWhere(dev.template, 'AWS::SQS::Queue', { QueueName: resourceNames(dev.config, 'iot').routerFailedEvents });
    expect(dlq).toEqual([
      expect.objectContaining({ AlarmName: 'sluice-dev-router-events-failed', Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [failedEventsId, 'QueueName'] } }], Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 1 }),
    ]);
    expect(flatten(dlq[0].AlarmDescription)).toContain('RouterFailedEventsUrl');

    // An S3 event Lambda cannot hand to the failed-events queue, or a batch a consumer's event source mapping gave up on
    // that it cannot send to the consumer dead-letter queue, is counted only in the function's DestinationDeliveryFailures.
    const functionId = (description: string) => resourcesOf(dev.template, 'AWS::Lambda::Function').find(([, f]) => String(f.Description).includes(description))![0];
    const consumers = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('metadata')).map((p) => p.name);
    const byName = (a: { AlarmName?: unknown }, b: { AlarmName?: unknown }) => String(a.AlarmName).localeCompare(String(b.AlarmName));
    expect(alarmsOn('DestinationDeliveryFailures').sort(byName)).toEqual(['router', ...consumers.map((p) => `${p}-consumer`)].sort().map((what) => expect.objectContaining({
      AlarmName: `sluice-dev-${what}-destination-failures`, Namespace: 'AWS/Lambda',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionId(what === 'router' ? 'sends the records of Firehose error objects' : `Sluice ${what.replace(/-consumer$/, '')}: writes record metadata`) } }],
      Statistic: 'Sum', Period: 300, Threshold: 1, EvaluationPeriods: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching',
    })));

    // Every Sluice function but the index-template one, which runs only inside CloudFormation deploys (a failure fails the deploy).
    const functions = resourcesOf(dev.template, 'AWS::Lambda::Function').filter(([id, f]) => f.Runtime === 'nodejs22.x' && id !== functionId('index templates'));
    expect(resourcesOf(dev.template, 'AWS::Lambda::Function').filter(([, f]) => f.Runtime === 'nodejs22.x')).toHaveLength(functions.length + 1);
    expect(alarms().filter((a) => String(a.AlarmName).startsWith('sluice-dev-index-template'))).toEqual([]);
    expect(alarmsOn('Errors')).toHaveLength(functions.length);
    expect(alarmsOn('Throttles')).toHaveLength(functions.length);
    for (const [id, f] of functions) {
      const duration = alarmsOn('Duration').find((a) => JSON.stringify(a.Dimensions).includes(id))!;
      expect(duration.Threshold).toBe(Math.floor((f.Timeout as number) * 1000 * ALARM_THRESHOLDS.durationShareOfTimeout));
    }

    expect(alarmsOn('ClusterStatus.red')).toHaveLength(1);
    const free = alarmsOn('FreeStorageSpace')[0];
    expect(free).toMatchObject({ ComparisonOperator: 'LessThanThreshold', Threshold: Math.floor(dev.config.opensearch.volumeGiB * 1024 * ALARM_THRESHOLDS.freeStorageShare) });
  });

  test('each lake stream alarms on records it could not convert to Parquet; every delivery stream on its transform invocations failing', () => {
    const lakes = lakePipelines();
    // The lake's metrics come from the L2 stream (a Ref to it); the search stream is an L1 resource named in the metric.
    const onStream = (deliveryStreamName: string) => {
      const [streamId] = resourceWhere(dev.template, 'AWS::KinesisFirehose::DeliveryStream', { DeliveryStreamName: deliveryStreamName });
      const value = deliveryStreamName.endsWith('-search') ? deliveryStreamName : { Ref: streamId };
      return { Namespace: 'AWS/Firehose', Dimensions: [{ Name: 'DeliveryStreamName', Value: value }], Period: 300, TreatMissingData: 'notBreaching' };
    };
    expect(alarmsOn('FailedConversion.Records')).toHaveLength(lakes.length);
    for (const p of lakes) {
      expect(alarmsOn('FailedConversion.Records').filter((a) => a.AlarmName === `sluice-dev-${p.name}-lake-conversion-failed`)).toEqual([expect.objectContaining({
        ...onStream(resourceNames(dev.config, p.name).lakeDeliveryStream), Statistic: 'Sum', Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 1, DatapointsToAlarm: 1,
      })]);
    }
    // Both destinations' streams run the transform: a share of invocations, like the delivery-success alarms, below 1 in three periods running.
    const streams = Object.values(dev.config.pipelines).flatMap((p) => [
      ...(p.destinations.includes('lake') ? [{ alarm: `sluice-dev-${p.name}-lake-processing-success`, stream: resourceNames(dev.config, p.name).lakeDeliveryStream }] : []),
      ...(p.destinations.includes('search') ? [{ alarm: `sluice-dev-${p.name}-search-processing-success`, stream: resourceNames(dev.config, p.name).searchDeliveryStream }] : []),
    ]);
    expect(streams.some((s) => s.alarm.endsWith('-search-processing-success'))).toBe(true);
    expect(alarmsOn('ExecuteProcessing.Success')).toHaveLength(streams.length);
    for (const { alarm, stream } of streams) {
      expect(alarmsOn('ExecuteProcessing.Success').filter((a) => a.AlarmName === alarm)).toEqual([expect.objectContaining({
        ...onStream(stream), Statistic: 'Average', Threshold: 1, ComparisonOperator: 'LessThanThreshold', EvaluationPeriods: 3, DatapointsToAlarm: 3,
      })]);
    }
  });

  test('each search delivery stream alarms on its S3 backup failing (DeliveryToS3.Success below 1 for 15 minutes, as Firehose names an OpenSearch destination\'s backup); a lake stream has no backup to alarm on', () => {
    const searching = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('search'));
    expect(searching.length).toBeGreaterThan(0);
    const searchStreams = new Set(searching.map((p) => resourceNames(dev.config, p.name).searchDeliveryStream));
    const onSearch = alarmsOn('DeliveryToS3.Success').filter((a) => searchStreams.has(String((a.Dimensions as Array<{ Value: unknown }>)[0].Value)));
    expect(onSearch.map((a) => a.AlarmName).sort()).toEqual(searching.map((p) => `sluice-dev-${p.name}-search-backup-success`).sort());
    for (const p of searching) {
      expect(onSearch.find((a) => a.AlarmName === `sluice-dev-${p.name}-search-backup-success`)).toEqual(expect.objectContaining({
        Namespace: 'AWS/Firehose', Dimensions: [{ Name: 'DeliveryStreamName', Value: resourceNames(dev.config, p.name).searchDeliveryStream }],
        Statistic: 'Average', Period: 300, Threshold: 1, ComparisonOperator: 'LessThanThreshold', EvaluationPeriods: 3, DatapointsToAlarm: 3,
        TreatMissingData: 'notBreaching',
      }));
    }
    // BackupToS3.* is an S3 destination's source-record backup: no stream here publishes it.
    expect(alarmsOn('BackupToS3.Success')).toEqual([]);
    expect(alarms().map((a) => String(a.AlarmName)).filter((n) => n.endsWith('-lake-backup-success'))).toEqual([]);
    expect(graphed('clickstream: Firehose search success and failures').map((m) => m.metricName)).toContain('DeliveryToS3.Success');
  });

  test('each lake stream warns at 80 % of its active-partition quota (400 of 500 open, before records are refused), from the one setting the exceeded alarm and the graph use', () => {
    expect(ACTIVE_PARTITION_QUOTA).toBe(500);
    for (const p of lakePipelines()) expect(p.buffering.activePartitionQuota).toBe(ACTIVE_PARTITION_QUOTA);
    expect(ALARM_THRESHOLDS.partitionQuotaShare).toBe(0.8);
    const lakes = lakePipelines();
    expect(alarmsOn('PartitionCount').map((a) => a.AlarmName).sort()).toEqual(lakes.map((p) => `sluice-dev-${p.name}-lake-partitions-near-quota`).sort());
    for (const p of lakes) {
      const near = alarmsOn('PartitionCount').find((a) => a.AlarmName === `sluice-dev-${p.name}-lake-partitions-near-quota`)!;
      expect(near).toEqual(expect.objectContaining({
        Namespace: 'AWS/Firehose', Dimensions: [{ Name: 'DeliveryStreamName', Value: expect.anything() }], Statistic: 'Maximum', Period: 300,
        Threshold: 400, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 1, TreatMissingData: 'notBreaching',
      }));
      // The same stream as the exceeded alarm's.
      const exceeded = alarmsOn('PartitionCountExceeded').find((a) => a.AlarmName === `sluice-dev-${p.name}-lake-partitions-exceeded`)!;
      expect(near.Dimensions).toEqual(exceeded.Dimensions);
      expect(flatten(near.AlarmDescription)).toContain('its quota (500, buffering.activePartitionQuota)');
      expect(flatten(near.AlarmDescription)).toContain('`npx sluice replay --aws --stack sluice-dev --max N`');
      expect(flatten(exceeded.AlarmDescription)).toContain('its quota (500, buffering.activePartitionQuota; 500 unless raised, up to 5,000)');
    }
    const [, dashboard] = resourcesOf(dev.template, 'AWS::CloudWatch::Dashboard')[0];
    const widgets = (JSON.parse(flatten(dashboard.DashboardBody)) as { widgets: Array<{ properties: { title?: string; annotations?: { horizontal?: Array<{ value: number }> } } }> }).widgets;
    const graph = widgets.find((w) => w.properties.title === 'iot: lake partitions open')!;
    expect(graph.properties.annotations?.horizontal?.map((a) => a.value)).toEqual([500, 400]);
  });

  test('per pipeline, records failed (transforms, Parquet conversion) for 30 minutes while the failure router was never invoked alarm: error objects nothing routes', () => {
    const routerId = functionId('error objects and search backups to the dead-letter queue');
    const transformFailed = (pipeline: string, destination: string) => ({
      Namespace: 'Sluice', MetricName: 'RecordsFailed',
      Dimensions: [{ Name: 'destination', Value: destination }, { Name: 'pipeline', Value: pipeline }, { Name: 'service', Value: 'record-transform' }],
    });
    const withDelivery = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('lake') || p.destinations.includes('search'));
    const idle = alarms().filter((a) => String(a.AlarmName).endsWith('-failure-router-not-invoked'));
    expect(idle.map((a) => a.AlarmName).sort()).toEqual(withDelivery.map((p) => `sluice-dev-${p.name}-failure-router-not-invoked`).sort());
    for (const p of withDelivery) {
      const alarm = idle.find((a) => a.AlarmName === `sluice-dev-${p.name}-failure-router-not-invoked`)!;
      // As the stall alarms: 2 periods of 15 minutes running, missing data not breaching.
      expect(alarm).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 2, DatapointsToAlarm: 2, TreatMissingData: 'notBreaching' });
      const given = [
        ...(['lake', 'search'] as const).filter((d) => p.destinations.includes(d)).map((d) => ({ id: `failed_${d}`, metric: transformFailed(p.name, d) })),
        ...(p.destinations.includes('lake') ? [{
          id: 'failed_conversion',
          metric: { Namespace: 'AWS/Firehose', MetricName: 'FailedConversion.Records', Dimensions: [{ Name: 'DeliveryStreamName', Value: expect.anything() }] },
        }, {
          id: 'partitions_exceeded', stat: 'Maximum',
          metric: { Namespace: 'AWS/Firehose', MetricName: 'PartitionCountExceeded', Dimensions: [{ Name: 'DeliveryStreamName', Value: expect.anything() }] },
        }] : []),
      ] as Array<{ id: string; metric: unknown; stat?: string }>;
      expect(alarm.Metrics).toEqual(expect.arrayContaining([
        // Any failure given, and the router invoked zero times (no data: not invoked).
        expect.objectContaining({ Expression: `IF(${given.map((g) => `FILL(${g.id}, 0)`).join(' + ')} > 0 AND FILL(read, 0) == 0, 1, 0)`, ReturnData: true }),
        ...given.map((g) => expect.objectContaining({ Id: g.id, MetricStat: { Metric: g.metric, Period: 900, Stat: g.stat ?? 'Sum' }, ReturnData: false })),
        expect.objectContaining({
          Id: 'read', ReturnData: false,
          MetricStat: { Metric: { Namespace: 'AWS/Lambda', MetricName: 'Invocations', Dimensions: [{ Name: 'FunctionName', Value: { Ref: routerId } }] }, Period: 900, Stat: 'Sum' },
        }),
      ]));
      // At most 10 metrics in an alarm's math: one alarm per pipeline keeps each small.
      expect(alarm.Metrics).toHaveLength(given.length + 2);
      expect(flatten(alarm.AlarmDescription)).toContain('get-bucket-notification-configuration');
    }
    expect(idle.find((a) => a.AlarmName === 'sluice-dev-clickstream-failure-router-not-invoked')!.Metrics).toHaveLength(6);
  });

  test('dead letters alarm before they expire: the failure DLQ and failed-events queue at 10 of SQS\'s 14 days, the consumer DLQ at half the shortest retention of the streams with a consumer', () => {
    const ageOf = (queueName: string) => {
      const [queueId] = resourceWhere(dev.template, 'AWS::SQS::Queue', { QueueName: queueName });
      return alarmsOn('ApproximateAgeOfOldestMessage').filter((a) => JSON.stringify(a.Dimensions) === JSON.stringify([{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }]));
    };
    const names = resourceNames(dev.config, 'iot');
    const onQueue = { Namespace: 'AWS/SQS', Statistic: 'Maximum', Period: 300, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 1, TreatMissingData: 'notBreaching' };
    expect(ALARM_THRESHOLDS.deadLetterAgeSeconds).toBe(10 * 86_400);
    expect(ageOf(names.dlq)).toEqual([expect.objectContaining({ ...onQueue, AlarmName: 'sluice-dev-dlq-age', Threshold: 10 * 86_400 })]);
    expect(ageOf(names.routerFailedEvents)).toEqual([expect.objectContaining({ ...onQueue, AlarmName: 'sluice-dev-router-events-failed-age', Threshold: 10 * 86_400 })]);
    // clickstream and iot keep 24 h, transactions 720 h, and a consumer gives up on records an hour old: a range has at least
    // 23 h left when its dead letter arrives, so the alarm is at half of that.
    const windows = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('metadata')).map((p) => p.retentionHours * 3600 - p.consumer.maxRecordAgeSeconds);
    expect(Math.min(...windows)).toBe(23 * 3600);
    expect(ageOf(names.consumerDlq)).toEqual([expect.objectContaining({ ...onQueue, AlarmName: 'sluice-dev-consumer-dlq-age', Threshold: 11.5 * 3600 })]);
    expect(alarmsOn('ApproximateAgeOfOldestMessage')).toHaveLength(3);
  });

  test('failed metadata writes alarm: the consumer\'s own RecordsReportedForRetry per pipeline (Lambda Errors never count them), and the table\'s write throttles', () => {
    const withConsumer = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('metadata'));
    expect(alarmsOn('RecordsReportedForRetry')).toHaveLength(withConsumer.length);
    for (const p of withConsumer) {
      // The dimensions transforms/shared/telemetry.ts publishes (Powertools' service and the handler's pipeline), which
      // CloudWatch matches as a set; the template lists them sorted by name.
      expect(alarmsOn('RecordsReportedForRetry').filter((a) => a.AlarmName === `sluice-dev-${p.name}-consumer-records-retried`)).toEqual([expect.objectContaining({
        Namespace: 'Sluice', Dimensions: [{ Name: 'pipeline', Value: p.name }, { Name: 'service', Value: 'metadata-consumer' }],
        Statistic: 'Sum', Period: 300, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 3, DatapointsToAlarm: 2, TreatMissingData: 'notBreaching',
      })]);
    }
    const [tableId] = resourcesOf(dev.template, 'AWS::DynamoDB::Table')[0];
    expect(resourcesOf(dev.template, 'AWS::DynamoDB::Table')).toHaveLength(1);
    expect(alarmsOn('WriteThrottleEvents')).toEqual([expect.objectContaining({
      AlarmName: 'sluice-dev-metadata-write-throttles', Namespace: 'AWS/DynamoDB', Dimensions: [{ Name: 'TableName', Value: { Ref: tableId } }],
      // Three periods running: a throttled write is retried; one throttle is no page.
      Statistic: 'Sum', Period: 300, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 3, DatapointsToAlarm: 3, TreatMissingData: 'notBreaching',
    })]);
  });

  test('each delivery stream reading Kinesis alarms on its own lag (KinesisMillisBehindLatest), at the stream iterator-age threshold', () => {
    const readers = Object.values(dev.config.pipelines).filter((p) => p.source === 'kinesis').flatMap((p) => (['lake', 'search'] as const)
      .filter((d) => p.destinations.includes(d)).map((d) => ({ pipeline: p.name, kind: d, name: d === 'lake' ? resourceNames(dev.config, p.name).lakeDeliveryStream : resourceNames(dev.config, p.name).searchDeliveryStream })));
    expect(readers.filter((r) => r.pipeline === 'clickstream')).toHaveLength(2);
    expect(alarmsOn('KinesisMillisBehindLatest')).toHaveLength(readers.length);
    for (const r of readers) {
      const [streamId, stream] = resourceWhere(dev.template, 'AWS::KinesisFirehose::DeliveryStream', { DeliveryStreamName: r.name });
      // The L2 lake stream is named by Ref; the L1 search stream's name is a literal.
      const value = r.kind === 'lake' ? { Ref: streamId } : stream.DeliveryStreamName;
      expect(alarmsOn('KinesisMillisBehindLatest').filter((a) => a.AlarmName === `sluice-dev-${r.pipeline}-${r.kind}-reader-behind`)).toEqual([expect.objectContaining({
        Namespace: 'AWS/Firehose', Dimensions: [{ Name: 'DeliveryStreamName', Value: value }], Statistic: 'Maximum', Period: 300,
        Threshold: ALARM_THRESHOLDS.iteratorAgeMs, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 3, DatapointsToAlarm: 3, TreatMissingData: 'notBreaching',
      })]);
    }
  });

  test('a reader taking nothing from a stream that receives records alarms: each metadata consumer (not invoked) and each Firehose stream reading Kinesis (no records read), in two 15-minute periods running', () => {
    const idOf = (type: string, match: Record<string, unknown>) => resourceWhere(dev.template, type, match)[0];
    const kinesisPipelines = Object.values(dev.config.pipelines).filter((p) => p.source === 'kinesis');
    const expected = kinesisPipelines.flatMap((p) => {
      const names = resourceNames(dev.config, p.name);
      const stream = { Ref: idOf('AWS::Kinesis::Stream', { Name: names.stream }) };
      const recordsRead = (deliveryStreamName: unknown) => ({ Namespace: 'AWS/Firehose', MetricName: 'DataReadFromKinesisStream.Records', Dimensions: [{ Name: 'DeliveryStreamName', Value: deliveryStreamName }] });
      const readers: Array<{ what: string; read: unknown; todo: string }> = [
        ...(p.destinations.includes('lake')
          ? [{ what: 'lake-reader', read: recordsRead({ Ref: idOf('AWS::KinesisFirehose::DeliveryStream', { DeliveryStreamName: names.lakeDeliveryStream }) }), todo: 'aws firehose describe-delivery-stream' }]
          : []),
        // The search stream is an L1 resource: its metrics name it literally.
        ...(p.destinations.includes('search') ? [{ what: 'search-reader', read: recordsRead(names.searchDeliveryStream), todo: 'aws firehose describe-delivery-stream' }] : []),
        ...(p.destinations.includes('metadata')
          ? [{
            what: 'consumer',
            read: { Namespace: 'AWS/Lambda', MetricName: 'Invocations', Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionId(`Sluice ${p.name}: writes record metadata`) } }] },
            todo: 'aws lambda list-event-source-mappings',
          }]
          : []),
      ];
      // The Kinesis graph shows what each Firehose reader read beside what the stream received.
      const firehoseReads = readers.filter((r) => r.what !== 'consumer').map((r) => (r.read as { Dimensions: Array<{ Value: unknown }> }).Dimensions[0].Value);
      expect(graphed(`${p.name}: Kinesis`).filter((m) => m.metricName === 'DataReadFromKinesisStream.Records').map((m) => m.dimensions.DeliveryStreamName))
        .toEqual(firehoseReads.map((v) => flatten(v)));
      return readers.map((r) => ({ name: `sluice-dev-${p.name}-${r.what}-stalled`, stream, read: r.read, todo: r.todo }));
    });
    expect(expected.map((e) => e.name)).toEqual(expect.arrayContaining(['sluice-dev-clickstream-search-reader-stalled', 'sluice-dev-iot-consumer-stalled']));
    const stalled = alarms().filter((a) => String(a.AlarmName).endsWith('-stalled'));
    expect(stalled.map((a) => a.AlarmName).sort()).toEqual(expected.map((e) => e.name).sort());
    for (const e of expected) {
      const alarm = stalled.find((a) => a.AlarmName === e.name)!;
      expect(alarm).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 2, DatapointsToAlarm: 2, TreatMissingData: 'notBreaching' });
      expect(flatten(alarm.AlarmDescription)).toContain(e.todo);
      // Missing data of the reader is none read (a reader that does not read publishes nothing); no records in, no alarm.
      expect(alarm.Metrics).toEqual(expect.arrayContaining([
        expect.objectContaining({ Expression: 'IF(FILL(incoming, 0) > 0 AND FILL(read, 0) == 0, 1, 0)' }),
        expect.objectContaining({ Id: 'incoming', MetricStat: { Metric: { Namespace: 'AWS/Kinesis', MetricName: 'IncomingRecords', Dimensions: [{ Name: 'StreamName', Value: e.stream }] }, Period: 900, Stat: 'Sum' }, ReturnData: false }),
        expect.objectContaining({ Id: 'read', MetricStat: { Metric: e.read, Period: 900, Stat: 'Sum' }, ReturnData: false }),
      ]));
      expect(alarm.Metrics).toHaveLength(3);
    }
  });

  test('the domain the stack creates has AWS\'s recommended alarms: JVM memory pressure, yellow status, failed snapshots; none on its key, the AWS-managed one', () => {
    const [domainId] = resourcesOf(dev.template, 'AWS::OpenSearchService::Domain')[0];
    const red = alarmsOn('ClusterStatus.red');
    expect(red).toHaveLength(1);
    // As the red alarm: DomainName and ClientId (the account).
    const dimensions = [{ Name: 'ClientId', Value: { Ref: 'AWS::AccountId' } }, { Name: 'DomainName', Value: { Ref: domainId } }];
    expect(red[0].Dimensions).toEqual(dimensions);
    const onDomain = { Namespace: 'AWS/ES', Dimensions: dimensions, Statistic: 'Maximum', Period: 60, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching' };
    expect(alarmsOn('JVMMemoryPressure')).toEqual([expect.objectContaining({ ...onDomain, AlarmName: 'sluice-dev-opensearch-jvm-memory-pressure', Threshold: 95, EvaluationPeriods: 3, DatapointsToAlarm: 3 })]);
    expect(alarmsOn('ClusterStatus.yellow')).toEqual([expect.objectContaining({ ...onDomain, AlarmName: 'sluice-dev-opensearch-cluster-yellow', Threshold: 1, EvaluationPeriods: 5, DatapointsToAlarm: 5 })]);
    expect(alarmsOn('AutomatedSnapshotFailure')).toEqual([expect.objectContaining({ ...onDomain, AlarmName: 'sluice-dev-opensearch-snapshot-failed', Threshold: 1, EvaluationPeriods: 1 })]);
    // Encrypted at rest with the AWS-managed aws/es key (no KmsKeyId), which cannot be disabled or deleted: KMSKeyError and
    // KMSKeyInaccessible cannot be raised. A customer key would need both alarms.
    const [, domain] = resourcesOf(dev.template, 'AWS::OpenSearchService::Domain')[0];
    expect(domain.EncryptionAtRestOptions).toEqual({ Enabled: true });
    expect(alarms().filter((a) => /^KMSKey/.test(String(a.MetricName)))).toEqual([]);
  });

  test('the domain the stack creates also has AWS\'s CPU, old-generation JVM and node-count alarms, at AWS\'s statistics, periods and thresholds', () => {
    const [domainId] = resourcesOf(dev.template, 'AWS::OpenSearchService::Domain')[0];
    const onDomain = {
      Namespace: 'AWS/ES', Dimensions: [{ Name: 'ClientId', Value: { Ref: 'AWS::AccountId' } }, { Name: 'DomainName', Value: { Ref: domainId } }], TreatMissingData: 'notBreaching',
    };
    expect(alarmsOn('CPUUtilization').filter((a) => a.Namespace === 'AWS/ES')).toEqual([expect.objectContaining({
      ...onDomain, AlarmName: 'sluice-dev-opensearch-cpu-utilization', Statistic: 'Maximum', Period: 900, Threshold: 80,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 3, DatapointsToAlarm: 3,
    })]);
    // Beside, not instead of, JVMMemoryPressure at 95 %.
    expect(alarmsOn('OldGenJVMMemoryPressure')).toEqual([expect.objectContaining({
      ...onDomain, AlarmName: 'sluice-dev-opensearch-old-gen-jvm-memory-pressure', Statistic: 'Maximum', Period: 60, Threshold: 80,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 3, DatapointsToAlarm: 3,
    })]);
    expect(alarmsOn('JVMMemoryPressure')).toHaveLength(1);
    // The configured node count (dev: 1), as the fewest over one day.
    expect(dev.config.opensearch.instanceCount).toBe(1);
    expect(alarmsOn('Nodes')).toEqual([expect.objectContaining({
      ...onDomain, AlarmName: 'sluice-dev-opensearch-nodes', Statistic: 'Minimum', Period: 86_400, Threshold: 1,
      ComparisonOperator: 'LessThanThreshold', EvaluationPeriods: 1,
    })]);
    // dev's t3.small.search is burstable: the CPU alarm says what running out of credits means. No CPUCreditBalance alarm:
    // OpenSearch Service publishes it for T2 types only.
    expect(dev.config.opensearch.instanceType).toBe('t3.small.search');
    expect(flatten(alarmsOn('CPUUtilization').find((a) => a.Namespace === 'AWS/ES')!.AlarmDescription)).toMatch(/t3\.small\.search, burstable: once their CPU credits are spent/);
    expect(alarmsOn('CPUCreditBalance')).toEqual([]);
    expect(graphed('OpenSearch: CPU and nodes').map((m) => m.metricName)).toEqual(['CPUUtilization', 'Nodes']);
    expect(graphed('OpenSearch: free storage and JVM memory pressure').map((m) => m.metricName)).toEqual(['FreeStorageSpace', 'JVMMemoryPressure', 'OldGenJVMMemoryPressure']);
  });

  test('a domain of two non-burstable nodes: the node alarm wants 2, and the CPU alarm says nothing of credits', () => {
    const m6g = synthesize({ 'opensearch.instanceType': 'm6g.large.search', 'opensearch.instanceCount': '2', 'opensearch.volumeGiB': '20' });
    const alarm = (name: string) => resourcesOf(m6g.template, 'AWS::CloudWatch::Alarm').map(([, a]) => a).find((a) => a.AlarmName === `sluice-dev-${name}`)!;
    expect(alarm('opensearch-nodes')).toMatchObject({ MetricName: 'Nodes', Threshold: 2, ComparisonOperator: 'LessThanThreshold' });
    expect(flatten(alarm('opensearch-cpu-utilization').AlarmDescription)).not.toMatch(/burstable|credits/);
    expect(flatten(alarm('opensearch-cpu-utilization').AlarmDescription)).toContain('opensearch.instanceCount=N');
  }, 120_000);

  test('dashboard: no graph axis mixes 0–1 shares or flags with counts, seconds or MiB', () => {
    const [, dashboard] = resourcesOf(dev.template, 'AWS::CloudWatch::Dashboard')[0];
    const body = JSON.parse(flatten(dashboard.DashboardBody)) as { widgets: Array<{ type: string; properties: { title?: string; metrics?: unknown[][] } }> };
    const zeroToOne = /\.Success$|^ClusterStatus\.|^ClusterIndexWritesBlocked$|^AutomatedSnapshotFailure$|^KMSKeyInaccessible$/;
    const graphs = body.widgets.filter((w) => w.type === 'metric' && w.properties.metrics);
    expect(graphs.length).toBeGreaterThan(0);
    let shares = 0;
    for (const w of graphs) {
      for (const axis of ['left', 'right']) {
        const names = w.properties.metrics!
          .filter((m) => (((m.at(-1) ?? {}) as { yAxis?: string }).yAxis ?? 'left') === axis)
          .flatMap((m) => (typeof m[1] === 'string' ? [m[1]] : []));
        const flagged = names.filter((n) => zeroToOne.test(n));
        shares += flagged.length;
        expect({ widget: w.properties.title, axis, mixed: flagged.length > 0 && flagged.length < names.length ? names : [] }).toEqual({ widget: w.properties.title, axis, mixed: [] });
      }
    }
    expect(shares).toBeGreaterThan(0);
  });

  test('dashboard: the records each transform returned Ok, Dropped and failed, and failed by reason, per pipeline, as the handler publishes them', async () => {
    // The handler's own EMF (its Metrics made as in Lambda, so with Powertools' service dimension): an EMF metric is found
    // only by the exact dimension set it was published with.
    const t = capturedTelemetry();
    try {
      await createTransformHandler({ pipeline: 'app-events', destination: 'lake', piiHashKey: '', logger: t.logger })(fixture<FirehoseTransformationEvent>('firehose-direct-put.json'));
    } finally {
      t.restore();
    }
    const published = publishedMetrics(t.lines);
    const byResult = published.filter((m) => !('reason' in m.dimensions));
    const byReason = published.filter((m) => 'reason' in m.dimensions);
    expect(byResult.map((m) => m.metricName).sort()).toEqual(['RecordsDropped', 'RecordsFailed', 'RecordsOk']);
    expect(byReason.length).toBeGreaterThan(0);
    expect(graphed('app-events: records transformed')).toEqual(expect.arrayContaining(byResult));
    expect(graphed('app-events: records failed, by reason')).toEqual(expect.arrayContaining(byReason));

    for (const p of Object.values(dev.config.pipelines)) {
      const destinations = (['lake', 'search'] as const).filter((d) => p.destinations.includes(d));
      const on = { namespace: 'Sluice' };
      expect(graphed(`${p.name}: records transformed`)).toEqual(destinations.flatMap((destination) => ['RecordsOk', 'RecordsDropped', 'RecordsFailed'].map((metricName) => ({
        ...on, metricName, dimensions: { service: 'record-transform', pipeline: p.name, destination },
      }))));
      expect(graphed(`${p.name}: records failed, by reason`)).toEqual(destinations.flatMap((destination) => FAILURE_CATEGORIES.map((reason) => ({
        ...on, metricName: 'RecordsFailed', dimensions: { service: 'record-transform', pipeline: p.name, destination, reason },
      }))));
    }
  });

  test('dashboard: each metadata consumer\'s iterator age and record counts, as Lambda and the handler publish them', async () => {
    const t = capturedTelemetry();
    const noTable = { send: () => Promise.reject(new Error('an empty batch writes nothing')) } as unknown as DynamoDBDocumentClient;
    try {
      await createMetadataConsumer({ pipeline: 'iot', tableName: 'unused', ttlDays: 30, dynamo: noTable, logger: t.logger })({ Records: [] });
    } finally {
      t.restore();
    }
    const published = publishedMetrics(t.lines);
    expect(published.map((m) => m.metricName).sort()).toEqual(['DuplicateEvents', 'EventsRecorded', 'MalformedRecords', 'RecordsReportedForRetry', 'WriteRetries']);
    expect(graphed('iot: metadata consumer')).toEqual(expect.arrayContaining(published));

    const consumers = Object.values(dev.config.pipelines).filter((p) => p.destinations.includes('metadata'));
    expect(consumers.length).toBeGreaterThan(1);
    for (const p of consumers) {
      const counts = ['EventsRecorded', 'DuplicateEvents', 'MalformedRecords', 'RecordsReportedForRetry', 'WriteRetries'];
      expect(graphed(`${p.name}: metadata consumer`)).toEqual([
        ...counts.map((metricName) => ({ namespace: 'Sluice', metricName, dimensions: { service: 'metadata-consumer', pipeline: p.name } })),
        { namespace: 'AWS/Lambda', metricName: 'IteratorAge', dimensions: { FunctionName: `<${functionId(`Sluice ${p.name}: writes record metadata`)}>` } },
      ]);
    }
  });

  test('dashboard: the metadata table\'s write throttles, its transaction conflicts (hot counters; no throttles) and the write capacity it used', () => {
    const [tableId] = resourcesOf(dev.template, 'AWS::DynamoDB::Table')[0];
    expect(graphed('Metadata table')).toEqual(['WriteThrottleEvents', 'TransactionConflict', 'ConsumedWriteCapacityUnits'].map((metricName) => ({
      namespace: 'AWS/DynamoDB', metricName, dimensions: { TableName: `<${tableId}>` },
    })));
  });

  test('no alarm on the router\'s AsyncEventsDropped: Lambda counts there every event it stops retrying, those it then puts in the failed-events queue too', () => {
    expect(alarmsOn('AsyncEventsDropped')).toEqual([]);
    expect(alarms().map((a) => a.AlarmName)).not.toContain('sluice-dev-router-events-dropped');
  });

  test('every Lambda function, aws-cdk-lib\'s own handlers too, logs to a log group of the stack with a retention', () => {
    const functions = resourcesOf(dev.template, 'AWS::Lambda::Function');
    const logGroups = new Map(resourcesOf(dev.template, 'AWS::Logs::LogGroup'));
    expect(functions.map(([id]) => id)).toEqual(expect.arrayContaining([expect.stringMatching(/^BucketNotificationsHandler/), expect.stringMatching(/^CustomS3AutoDeleteObjects/)]));
    for (const [id, f] of functions) {
      const ref = (f.LoggingConfig as { LogGroup?: { Ref?: string } } | undefined)?.LogGroup?.Ref;
      expect({ id, retention: ref === undefined ? undefined : logGroups.get(ref)?.RetentionInDays }).toEqual({ id, retention: 30 });
    }
  });

  test('CloudWatch may publish to the alarm topic (its policy replaces SNS\'s default), over TLS only', () => {
    const [topicId] = resourcesOf(dev.template, 'AWS::SNS::Topic')[0];
    const policies = resourcesOf(dev.template, 'AWS::SNS::TopicPolicy').filter(([, p]) => JSON.stringify(p.Topics) === JSON.stringify([{ Ref: topicId }]));
    expect(policies).toHaveLength(1);
    const statements = (policies[0][1].PolicyDocument as { Statement: Array<Record<string, unknown>> }).Statement;
    expect(statements).toContainEqual(expect.objectContaining({
      Effect: 'Allow',
      Principal: { Service: 'cloudwatch.amazonaws.com' },
      Action: 'sns:Publish',
      Resource: { Ref: topicId },
      Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
    }));
    expect(statements).toContainEqual(expect.objectContaining({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }));
  });

  test('one dashboard', () => {
    expect(resourcesOf(dev.template, 'AWS::CloudWatch::Dashboard')).toHaveLength(1);
  });
});

describe('outputs', () => {
  test('stable, export-free keys for the CLI and scripts', () => {
    const outputs = dev.template.toJSON().Outputs as Record<string, { Value: unknown; Export?: unknown }>;
    for (const key of Object.values(OutputKeys)) expect(outputs).toHaveProperty([key]);
    for (const p of Object.values(dev.config.pipelines)) {
      if (p.source === 'kinesis') expect(outputs).toHaveProperty([pipelineOutputKey(p.name, 'StreamName')]);
      if (p.destinations.includes('lake')) expect(outputs).toHaveProperty([pipelineOutputKey(p.name, 'LakeDeliveryStreamName')]);
      if (p.destinations.includes('search')) expect(outputs).toHaveProperty([pipelineOutputKey(p.name, 'SearchDeliveryStreamName')]);
      if (p.destinations.includes('metadata')) expect(flatten(outputs[pipelineOutputKey(p.name, 'ConsumerFunctionName')]?.Value)).toMatch(new RegExp(`^<${p.name}MetadataConsumer[A-Za-z0-9]+>$`));
    }
    expect(pipelineOutputKey('app-events', 'StreamName')).toBe('AppEventsStreamName');
    expect(Object.values(outputs).filter((o) => o.Export !== undefined)).toEqual([]);
    expect(flatten(outputs.OpenSearchEndpoint.Value)).toMatch(/^https:\/\/<SearchDomain[A-Z0-9]+\.DomainEndpoint>$/);
    // What `sluice replay --aws` compares with the checkout: each pipeline's validator as bundled.
    expect(JSON.parse(outputs.SchemaFingerprints.Value as string)).toEqual(Object.fromEntries(Object.keys(dev.config.pipelines).map((p) => [p, validatorFingerprint(p)])));
  });
});

describe('upgrading a deployed stack', () => {
  // A changed logical id replaces the resource on the next deploy: why, and how to change one, in stateful-resources.ts.
  test('resources holding data, a key or a read position keep their logical ids', () => {
    expect(differenceFromPinned(statefulIds(dev.template))).toEqual({ removed: [], added: [] });
  });
});

describe('the deployed bundles', () => {
  /**
   * A function's bundle as `cdk deploy` uploads it: the asset folder its S3 key names, in the test's cloud assembly. The
   * function is the one whose environment has each of `env`'s variables, with its value unless that is undefined.
   */
  function bundleOf(env: Record<string, string | undefined>): string {
    const [, f] = resourcesOf(dev.template, 'AWS::Lambda::Function').find(([, p]) => {
      const vars = ((p.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {});
      return Object.entries(env).every(([k, v]) => (v === undefined ? k in vars : vars[k] === v));
    })!;
    const key = flatten((f.Code as { S3Key: unknown }).S3Key);
    return path.join(dev.app.outdir, `asset.${key.replace(/\.zip$/, '')}`, 'index.js');
  }

  /** Runs `bundle`'s handler on `event` in a folder of its own, as Lambda runs it (CommonJS, the SDK only on NODE_PATH); its answer. */
  async function runBundle(bundle: string, event: unknown, env: Record<string, string>): Promise<string> {
    // Outside the project, as /var/task is: packages resolve only through NODE_PATH, as the runtime's SDK does.
    const task = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bundle-'));
    try {
      fs.copyFileSync(bundle, path.join(task, 'index.js'));
      const script = 'require(process.argv[1]).handler(JSON.parse(process.env.EVENT), {}).then((r) => process.stdout.write(JSON.stringify(r)))';
      const major = Number(process.versions.node.split('.')[0]);
      const { stdout } = await execFileAsync(process.execPath, ['-e', script, path.join(task, 'index.js')], {
        cwd: task,
        env: {
          PATH: process.env.PATH,
          NODE_PATH: path.join(PROJECT_ROOT, 'node_modules'),
          // Lambda's nodejs22.x turns these off; Node 20 has neither on.
          ...(major >= 22 ? { NODE_OPTIONS: '--no-experimental-require-module --no-experimental-detect-module' } : {}),
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: 'test',
          AWS_SECRET_ACCESS_KEY: 'test',
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
          POWERTOOLS_LOG_LEVEL: 'ERROR',
          POWERTOOLS_METRICS_DISABLED: 'true',
          ...env,
          EVENT: JSON.stringify(event),
        },
      });
      return stdout;
    } finally {
      fs.rmSync(task, { recursive: true, force: true });
    }
  }

  test('the failure router, run from its bundle, reads the error object from S3 and sends its record to the SQS queue (its clients required when it is built)', async () => {
    const event = fixture<S3Event>('s3-error-objects.json');
    const { bucket, object } = event.Records[0].s3;
    const rawData = Buffer.from('{"event_id":"x"}').toString('base64');
    const errorObject = `${JSON.stringify({ attemptsMade: 4, arrivalTimestamp: 1_795_874_715_000, errorCode: 'Lambda.FunctionError', errorMessage: 'timeout', attemptEndingTimestamp: 1_795_874_716_000, rawData, lambdaArn: 'arn:aws:lambda:us-east-1:123456789012:function:t' })}\n`;
    const calls: string[] = [];
    const sentBodies: string[] = [];
    // S3 (REST, path style for an address), SQS and DynamoDB (JSON): what the router calls, answered as the services do.
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const target = String(req.headers['x-amz-target'] ?? '');
        const json = (answer: unknown) => {
          res.writeHead(200, { 'Content-Type': 'application/x-amz-json-1.0' });
          res.end(JSON.stringify(answer));
        };
        if (req.method === 'GET') {
          calls.push(`s3 GetObject ${decodeURIComponent((req.url ?? '').split('?')[0])}`);
          res.writeHead(200, { ETag: `"${object.eTag}"`, 'Content-Type': 'application/octet-stream', 'Content-Length': String(Buffer.byteLength(errorObject)) });
          res.end(errorObject);
        } else if (target === 'AmazonSQS.SendMessageBatch') {
          const { Entries } = JSON.parse(body) as { Entries: Array<{ Id: string; MessageBody: string }> };
          calls.push(`sqs SendMessageBatch ${Entries.length}`);
          sentBodies.push(...Entries.map((e) => e.MessageBody));
          json({ Successful: Entries.map((e) => ({ Id: e.Id, MessageId: randomUUID(), MD5OfMessageBody: createHash('md5').update(e.MessageBody).digest('hex') })), Failed: [] });
        } else if (target === 'DynamoDB_20120810.BatchGetItem') {
          calls.push('dynamodb BatchGetItem');
          json({ Responses: {}, UnprocessedKeys: {} });
        } else if (target === 'DynamoDB_20120810.BatchWriteItem') {
          calls.push('dynamodb BatchWriteItem');
          json({ UnprocessedItems: {} });
        } else {
          calls.push(`unexpected ${req.method ?? ''} ${req.url ?? ''} ${target}`);
          res.writeHead(400);
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const stdout = await runBundle(bundleOf({ SLUICE_DLQ_URL: undefined }), { Records: [event.Records[0]] }, {
        SLUICE_DLQ_URL: `${endpoint}/123456789012/sluice-dev-dlq`,
        SLUICE_METADATA_TABLE: 'sluice-dev-metadata',
        AWS_ENDPOINT_URL_S3: endpoint,
        AWS_ENDPOINT_URL_SQS: endpoint,
        AWS_ENDPOINT_URL_DYNAMODB: endpoint,
      });
      expect(JSON.parse(stdout)).toMatchObject({ sent: 1, duplicates: 0 });
      expect(calls).toEqual([`s3 GetObject /${bucket.name}/${object.key}`, 'dynamodb BatchGetItem', 'sqs SendMessageBatch 1', 'dynamodb BatchWriteItem']);
      expect(JSON.parse(sentBodies[0])).toMatchObject({ rawData });
    } finally {
      server.close();
    }
  });

  test('the PII pipeline\'s transform, run from its bundle as Lambda runs it (CommonJS, the SDK only on NODE_PATH), reads its hash key from Secrets Manager and masks with it', async () => {
    const secret = 'key-from-secrets-manager';
    const asked: string[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        asked.push(`${String(req.headers['x-amz-target'])} ${(JSON.parse(body) as { SecretId: string }).SecretId}`);
        res.writeHead(200, { 'Content-Type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify({ ARN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:pii-AbCdEf', Name: 'pii', SecretString: secret }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const stdout = await runBundle(bundleOf({ SLUICE_PIPELINE: 'transactions', SLUICE_DESTINATION: 'lake' }), fixture<FirehoseTransformationEvent>('firehose-kinesis.json'), {
        SLUICE_PIPELINE: 'transactions',
        SLUICE_DESTINATION: 'lake',
        SLUICE_PII_HASH_KEY_SECRET_ARN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:pii-AbCdEf',
        AWS_ENDPOINT_URL_SECRETS_MANAGER: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      });
      const first = (JSON.parse(stdout) as { records: Array<{ result: string; data: string }> }).records[0];
      expect(first.result).toBe('Ok');
      expect(JSON.parse(Buffer.from(first.data, 'base64').toString('utf8')).email).toBe(createHmac('sha256', secret).update('alice@example.com').digest('hex'));
      expect(asked).toEqual(['secretsmanager.GetSecretValue arn:aws:secretsmanager:us-east-1:123456789012:secret:pii-AbCdEf']);
    } finally {
      server.close();
    }
  });
});
