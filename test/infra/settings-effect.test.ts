import type { Template } from 'aws-cdk-lib/assertions';
import { loadConfig } from '../../lib/config';
import { engineOptionsFromConfig } from '../../lib/local/delivery-stream';
import { consumerMappingSettings, searchSinkSettings, transformRuntimePools } from '../../lib/local/twin';
import { loadModel } from '../../lib/schema/registry';
import { flatten, resourcesOf, synthesize } from './synth';

/**
 * Every setting changes what it says it changes: the stack synthesized with cdk.json's values and with every setting
 * below at another legal value, and for each the template property it sets read from both. The stack's other tests
 * assert properties at cdk.json's values, which a construct that ignored its setting and wrote the same default
 * would still pass.
 */

type Json = Record<string, unknown>;

/** Changed values, all legal together; none equals cdk.json's, nor another's, so a setting read in place of another shows. */
const CHANGED: Readonly<Record<string, string>> = {
  removalPolicy: 'retain',
  alarmEmail: 'oncall@example.com',
  'lifecycle.infrequentAccessDays': '60',
  'lifecycle.glacierDays': '150',
  'lifecycle.errorExpirationDays': '7',
  'metadata.ttlDays': '90',
  'athena.bytesScannedCutoffMiB': '20',
  'opensearch.engineVersion': 'OpenSearch_2.17',
  'opensearch.instanceType': 'r6g.large.search',
  'opensearch.instanceCount': '2',
  'opensearch.volumeGiB': '20',
  'pipelines.iot.shards': '3',
  'pipelines.iot.retentionHours': '48',
  'pipelines.iot.streamEncryption': 'customer-managed',
  'pipelines.iot.buffering.sizeMiB': '64',
  'pipelines.iot.buffering.intervalSeconds': '120',
  'pipelines.iot.buffering.activePartitionQuota': '1000',
  'pipelines.iot.transform.memoryMiB': '1024',
  'pipelines.iot.transform.timeoutSeconds': '200',
  'pipelines.iot.transform.processorBufferMiB': '2',
  'pipelines.iot.transform.processorIntervalSeconds': '180',
  'pipelines.iot.transform.retries': '5',
  'pipelines.iot.consumer.batchSize': '100',
  'pipelines.iot.consumer.batchWindowSeconds': '10',
  'pipelines.iot.consumer.maxRetries': '7',
  'pipelines.iot.consumer.maxRecordAgeSeconds': '7200',
  'pipelines.iot.consumer.parallelization': '4',
  'pipelines.iot.consumer.memoryMiB': '384',
  'pipelines.iot.consumer.timeoutSeconds': '90',
  // A pipeline with two delivery streams: its transform settings reach both.
  'pipelines.clickstream.transform.memoryMiB': '768',
  'pipelines.clickstream.transform.retries': '1',
  'pipelines.clickstream.search.bufferingSizeMiB': '10',
  'pipelines.clickstream.search.bufferingIntervalSeconds': '240',
  'pipelines.clickstream.search.retrySeconds': '600',
  'pipelines.clickstream.search.rotation': 'OneWeek',
  'pipelines.clickstream.search.retentionDays': '14',
};

/** The one resource of a type whose logical id starts with `idPrefix`, with its DeletionPolicy beside its properties. */
function resource(template: Template, type: string, idPrefix: string): Json {
  const found = Object.entries(template.findResources(type)).filter(([id]) => id.startsWith(idPrefix));
  if (found.length !== 1) throw new Error(`expected one ${type} whose id starts with ${idPrefix}, found ${found.length}`);
  const r = found[0][1] as { Properties?: Json; DeletionPolicy?: string };
  return { ...r.Properties, DeletionPolicy: r.DeletionPolicy };
}

const at = (value: unknown, ...path: string[]): unknown => path.reduce<unknown>((v, k) => (v as Json | undefined)?.[k], value);

function processorParameter(template: Template, streamIdPrefix: string, name: string): string | undefined {
  const stream = resource(template, 'AWS::KinesisFirehose::DeliveryStream', streamIdPrefix);
  const destination = (stream.ExtendedS3DestinationConfiguration ?? stream.AmazonopensearchserviceDestinationConfiguration) as Json;
  const processors = at(destination, 'ProcessingConfiguration', 'Processors') as Array<{ Parameters: Array<{ ParameterName: string; ParameterValue: unknown }> }>;
  const value = processors[0].Parameters.find((p) => p.ParameterName === name)?.ParameterValue;
  return value === undefined ? undefined : flatten(value);
}

function lifecycleRule(template: Template, id: string): Json {
  const rules = at(resource(template, 'AWS::S3::Bucket', 'StorageData'), 'LifecycleConfiguration', 'Rules') as Json[];
  return rules.find((r) => r.Id === id)!;
}

function alarm(template: Template, name: string): Json {
  return resourcesOf(template, 'AWS::CloudWatch::Alarm').find(([, a]) => a.AlarmName === name)![1];
}

const fn = (t: Template, idPrefix: string) => resource(t, 'AWS::Lambda::Function', idPrefix);
const esm = (t: Template) => resource(t, 'AWS::Lambda::EventSourceMapping', 'iotMetadataConsumer');
const iotStream = (t: Template) => resource(t, 'AWS::Kinesis::Stream', 'iotStream');
const iotLake = (t: Template) => at(resource(t, 'AWS::KinesisFirehose::DeliveryStream', 'iotLakeDeliveryStream'), 'ExtendedS3DestinationConfiguration');
const search = (t: Template) => at(resource(t, 'AWS::KinesisFirehose::DeliveryStream', 'clickstreamSearchDeliveryStream'), 'AmazonopensearchserviceDestinationConfiguration');
const domain = (t: Template) => resource(t, 'AWS::OpenSearchService::Domain', 'SearchDomain');
const retention = (t: Template) => JSON.parse(String(resource(t, 'Custom::SluiceIndexTemplate', 'IndexTemplatesclickstream').Retention)) as Json;

/** Setting, what it sets in the template, its value with cdk.json's settings, its value with CHANGED's. */
const EFFECTS: ReadonlyArray<[setting: string, read: (t: Template) => unknown, atDefault: unknown, changed: unknown]> = [
  ['removalPolicy', (t) => resource(t, 'AWS::S3::Bucket', 'StorageData').DeletionPolicy, 'Delete', 'Retain'],
  ['alarmEmail', (t) => resourcesOf(t, 'AWS::SNS::Subscription').map(([, s]) => s.Endpoint), [], ['oncall@example.com']],
  ['lifecycle.infrequentAccessDays', (t) => at(lifecycleRule(t, 'tier-lake-data'), 'Transitions', '0', 'TransitionInDays'), 30, 60],
  ['lifecycle.glacierDays', (t) => at(lifecycleRule(t, 'tier-lake-data'), 'Transitions', '1', 'TransitionInDays'), 90, 150],
  ['lifecycle.errorExpirationDays', (t) => [lifecycleRule(t, 'expire-errors').ExpirationInDays, lifecycleRule(t, 'expire-search-backup').ExpirationInDays], [30, 30], [7, 7]],
  ['metadata.ttlDays', (t) => ['iotMetadataConsumerFunction', 'FailuresRouterFunction'].map((id) => at(fn(t, id), 'Environment', 'Variables', 'SLUICE_METADATA_TTL_DAYS')), ['30', '30'], ['90', '90']],
  ['athena.bytesScannedCutoffMiB', (t) => at(resource(t, 'AWS::Athena::WorkGroup', 'AthenaWorkGroup'), 'WorkGroupConfiguration', 'BytesScannedCutoffPerQuery'), 1024 * 1024 * 1024, 20 * 1024 * 1024],
  ['opensearch.engineVersion', (t) => domain(t).EngineVersion, 'OpenSearch_2.19', 'OpenSearch_2.17'],
  ['opensearch.instanceType', (t) => at(domain(t), 'ClusterConfig', 'InstanceType'), 't3.small.search', 'r6g.large.search'],
  ['opensearch.instanceCount', (t) => at(domain(t), 'ClusterConfig', 'InstanceCount'), 1, 2],
  ['opensearch.volumeGiB', (t) => at(domain(t), 'EBSOptions', 'VolumeSize'), 10, 20],
  ['pipelines.<p>.shards', (t) => iotStream(t).ShardCount, 1, 3],
  ['pipelines.<p>.retentionHours', (t) => iotStream(t).RetentionPeriodHours, 24, 48],
  ['pipelines.<p>.streamEncryption', (t) => flatten(at(iotStream(t), 'StreamEncryption', 'KeyId')), 'alias/aws/kinesis', expect.stringMatching(/^<iotStreamKey.*\.Arn>$/)],
  ['pipelines.<p>.buffering.sizeMiB', (t) => at(iotLake(t), 'BufferingHints', 'SizeInMBs'), 128, 64],
  ['pipelines.<p>.buffering.intervalSeconds', (t) => at(iotLake(t), 'BufferingHints', 'IntervalInSeconds'), 300, 120],
  ['pipelines.<p>.buffering.activePartitionQuota', (t) => alarm(t, 'sluice-dev-iot-lake-partitions-near-quota').Threshold, 400, 800],
  ['pipelines.<p>.transform.memoryMiB', (t) => ['iotLakeTransform', 'clickstreamLakeTransform', 'clickstreamSearchTransform'].map((id) => fn(t, id).MemorySize), [512, 512, 512], [1024, 768, 768]],
  ['pipelines.<p>.transform.timeoutSeconds', (t) => fn(t, 'iotLakeTransform').Timeout, 120, 200],
  ['pipelines.<p>.transform.processorBufferMiB', (t) => processorParameter(t, 'iotLakeDeliveryStream', 'BufferSizeInMBs'), '1', '2'],
  ['pipelines.<p>.transform.processorIntervalSeconds', (t) => processorParameter(t, 'iotLakeDeliveryStream', 'BufferIntervalInSeconds'), '60', '180'],
  ['pipelines.<p>.transform.retries', (t) => ['iotLakeDeliveryStream', 'clickstreamLakeDeliveryStream', 'clickstreamSearchDeliveryStream'].map((id) => processorParameter(t, id, 'NumberOfRetries')), ['3', '3', '3'], ['5', '1', '1']],
  ['pipelines.<p>.consumer.batchSize', (t) => esm(t).BatchSize, 500, 100],
  ['pipelines.<p>.consumer.batchWindowSeconds', (t) => esm(t).MaximumBatchingWindowInSeconds, 5, 10],
  ['pipelines.<p>.consumer.maxRetries', (t) => esm(t).MaximumRetryAttempts, 5, 7],
  ['pipelines.<p>.consumer.maxRecordAgeSeconds', (t) => esm(t).MaximumRecordAgeInSeconds, 3600, 7200],
  ['pipelines.<p>.consumer.parallelization', (t) => esm(t).ParallelizationFactor, 2, 4],
  ['pipelines.<p>.consumer.memoryMiB', (t) => fn(t, 'iotMetadataConsumerFunction').MemorySize, 256, 384],
  ['pipelines.<p>.consumer.timeoutSeconds', (t) => fn(t, 'iotMetadataConsumerFunction').Timeout, 60, 90],
  ['pipelines.<p>.search.bufferingSizeMiB', (t) => at(search(t), 'BufferingHints', 'SizeInMBs'), 5, 10],
  ['pipelines.<p>.search.bufferingIntervalSeconds', (t) => at(search(t), 'BufferingHints', 'IntervalInSeconds'), 60, 240],
  ['pipelines.<p>.search.retrySeconds', (t) => at(search(t), 'RetryOptions', 'DurationInSeconds'), 300, 600],
  ['pipelines.<p>.search.rotation', (t) => [at(search(t), 'IndexRotationPeriod'), retention(t).Rotation], ['OneDay', 'OneDay'], ['OneWeek', 'OneWeek']],
  ['pipelines.<p>.search.retentionDays', (t) => retention(t).RetentionDays, 30, 14],
];

let atDefaults: Template;
let changed: Template;
beforeAll(() => {
  atDefaults = synthesize().template;
  changed = synthesize(CHANGED).template;
}, 120_000);

test.each(EFFECTS)('%s sets what it says in the template', (_setting, read, atDefault, changedValue) => {
  expect(read(atDefaults)).toEqual(atDefault);
  expect(read(changed)).toEqual(changedValue);
});

test('every pipeline setting the stack reads has a row (a new setting needs one)', () => {
  const config = loadConfig();
  const p = config.pipelines.iot;
  const keys = (prefix: string, o: object) => Object.keys(o).map((k) => `${prefix}${k}`);
  const settings = [
    ...keys('lifecycle.', config.lifecycle), ...keys('metadata.', config.metadata), ...keys('athena.', config.athena),
    ...['engineVersion', 'instanceType', 'instanceCount', 'volumeGiB'].map((k) => `opensearch.${k}`),
    ...['shards', 'retentionHours', 'streamEncryption'].map((k) => `pipelines.<p>.${k}`),
    ...(['buffering', 'transform', 'consumer', 'search'] as const).flatMap((group) => keys(`pipelines.<p>.${group}.`, p[group])),
  ];
  expect(settings.filter((s) => !EFFECTS.some(([row]) => row === s))).toEqual([]);
});

describe('the twin takes what the docs say it takes from the configuration', () => {
  const model = loadModel('iot');
  const processor = async () => { throw new Error('not invoked'); };
  const twinOptions = (overrides: string[]) => engineOptionsFromConfig(loadConfig(overrides), 'iot', 'lake', { dataDir: '/nonexistent', model, processor });

  test.each<[string, string, (o: ReturnType<typeof twinOptions>) => unknown, unknown]>([
    ['local.bufferSizeMiB', '3', (o) => o.bufferSizeMiB, 3],
    ['local.bufferIntervalSeconds', '7', (o) => o.bufferIntervalSeconds, 7],
    ['pipelines.iot.transform.retries', '9', (o) => o.processor?.retries, 9],
    ['pipelines.iot.transform.processorBufferMiB', '0.5', (o) => o.processor?.bufferMiB, 0.5],
    ['pipelines.iot.transform.timeoutSeconds', '45', (o) => o.processor?.timeoutMs, 45_000],
  ])('%s=%s', (setting, value, read, expected) => {
    expect(read(twinOptions([]))).not.toEqual(expected);
    expect(read(twinOptions([`${setting}=${value}`]))).toEqual(expected);
  });

  test.each<[string, string, (overrides: string[]) => unknown, unknown]>([
    ['pipelines.iot.consumer.batchSize', '50', (o) => consumerMappingSettings(loadConfig(o), 'iot').batchSize, 50],
    ['pipelines.iot.consumer.batchWindowSeconds', '1', (o) => consumerMappingSettings(loadConfig(o), 'iot').batchWindowSeconds, 1],
    ['pipelines.iot.consumer.maxRetries', '9', (o) => consumerMappingSettings(loadConfig(o), 'iot').maxRetryAttempts, 9],
    ['pipelines.iot.consumer.maxRecordAgeSeconds', '600', (o) => consumerMappingSettings(loadConfig(o), 'iot').maxRecordAgeSeconds, 600],
    ['pipelines.iot.consumer.timeoutSeconds', '30', (o) => consumerMappingSettings(loadConfig(o), 'iot').functionTimeoutSeconds, 30],
    ['pipelines.clickstream.search.rotation', 'OneHour', (o) => searchSinkSettings(loadConfig(o), 'clickstream').rotation, 'OneHour'],
    ['pipelines.clickstream.search.retentionDays', '3', (o) => searchSinkSettings(loadConfig(o), 'clickstream').retentionDays, 3],
    // Shortened locally: at most 10 s.
    ['pipelines.clickstream.search.retrySeconds', '4', (o) => searchSinkSettings(loadConfig(o), 'clickstream').retrySeconds, 4],
  ])('%s=%s', (setting, value, read, expected) => {
    expect(read([])).not.toEqual(expected);
    expect(read([`${setting}=${value}`])).toEqual(expected);
  });

  test('pipelines.<p>.transform.memoryMiB: the transform runtimes\' heap', () => {
    const pools = transformRuntimePools(loadConfig(['pipelines.iot.transform.memoryMiB=1536']), 4);
    expect(pools.find((pool) => pool.memoryMiB === 1536)?.handlers).toEqual([{ pipeline: 'iot', destination: 'lake' }]);
  });
});
