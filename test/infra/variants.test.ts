import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { alarmKinds, runbookAlarmKinds } from './runbook';
import { flatten, iamStatements, resourcesOf, synthesize, unacknowledgedNagFindings, type Synthesized } from './synth';
import { differenceFromPinned, PINNED_STATEFUL_IDS, statefulIds } from './stateful-resources';

// The configurations users deploy besides the default: prod (`-c env=prod`) and an existing OpenSearch domain.
// A schema whose cdk.json entry was forgotten synthesizes nothing: synth says so (the default configuration has every schema, and no warning).
test('a schema without a pipelines entry is a synth warning naming it and the entry to add', () => {
  const some = synthesize({ pipelines: '{"app-events":{}}' });
  const warnings = Annotations.fromStack(some.stack).findWarning('*', Match.stringLikeRegexp('has no entry under "pipelines"'));
  expect(warnings.map((w) => w.entry.data)).toEqual(['clickstream', 'iot', 'transactions'].map((p) => expect.stringMatching(
    new RegExp(`^schemas/${p}\\.schema\\.json has no entry under "pipelines" in cdk\\.json, so nothing deploys or runs it: add "${p}": \\{\\} there .*\\[ack: @sluice/schema-not-configured\\]$`))));
}, 120_000);

describe('env=prod', () => {
  let prod: Synthesized;
  beforeAll(() => {
    prod = synthesize({ env: 'prod' });
  }, 120_000);

  test('no unacknowledged cdk-nag findings', () => {
    expect(unacknowledgedNagFindings(prod.app)).toEqual([]);
  });

  test('alarms nobody is subscribed to are a synth warning (dev\'s are not), naming the setting', () => {
    const warnings = Annotations.fromStack(prod.stack).findWarning('*', Match.stringLikeRegexp('alarmEmail'));
    expect(warnings.map((w) => w.entry.data)).toEqual([
      expect.stringMatching(/^alarmEmail is not set: the \d+ alarms of sluice-prod notify the topic in the AlarmTopicArn output, .*`-c alarmEmail=oncall@example\.com` \(or "alarmEmail" under environments\.prod in cdk\.json\).*\[ack: @sluice\/alarms-unsubscribed\]$/),
    ]);
    const subscribed = synthesize({ env: 'prod', alarmEmail: 'oncall@example.com' });
    expect(Annotations.fromStack(subscribed.stack).findWarning('*', Match.stringLikeRegexp('alarmEmail'))).toEqual([]);
  }, 120_000);

  test('resources holding data, a key or a read position keep their logical ids', () => {
    // dev's pinned ids (stateful-resources.ts), less the function emptying the buckets, which `retain` has not, and with
    // the event source mappings' ids, which CDK derives from the stack's name, as prod has them.
    const prodMappings = [
      'clickstreamMetadataConsumerFunctionKinesisConsumerEventSourcesluiceprodclickstreamMetadataConsumerStreamConsumerB628A81EA813E496',
      'iotMetadataConsumerFunctionKinesisConsumerEventSourcesluiceprodiotMetadataConsumerStreamConsumer471279A6FCA803AC',
      'transactionsMetadataConsumerFunctionKinesisConsumerEventSourcesluiceprodtransactionsMetadataConsumerStreamConsumerFACAAB91AA84C3C5',
    ].map((id) => `AWS::Lambda::EventSourceMapping ${id}`);
    const pinned = [
      ...PINNED_STATEFUL_IDS.filter((id) => !id.startsWith('AWS::Lambda::EventSourceMapping ') && !id.includes('CustomS3AutoDeleteObjects')),
      ...prodMappings,
    ];
    expect(differenceFromPinned(statefulIds(prod.template), pinned)).toEqual({ removed: [], added: [] });
  });

  test('data is retained on stack deletion and the domain spreads over zones', () => {
    // With the policies that protect the buckets (TLS only, the data key only, S3's log deliveries).
    for (const type of ['AWS::S3::Bucket', 'AWS::S3::BucketPolicy', 'AWS::DynamoDB::Table', 'AWS::KMS::Key', 'AWS::SecretsManager::Secret', 'AWS::Logs::LogGroup']) {
      const resources = Object.entries(prod.template.findResources(type)) as Array<[string, { DeletionPolicy?: string; UpdateReplacePolicy?: string }]>;
      expect(resources.length).toBeGreaterThan(0);
      // The alarm topic's key is no data's: it goes with the topic (below).
      for (const [id, r] of resources) if (!id.startsWith('MonitoringTopicKey')) expect([id, r.DeletionPolicy, r.UpdateReplacePolicy]).toEqual([id, 'Retain', 'Retain']);
    }
    // Named resources (and the queues' TLS-only policies): not kept when the stack's own creation rolls back, or they would block the next attempt.
    for (const type of ['AWS::Kinesis::Stream', 'AWS::OpenSearchService::Domain', 'AWS::SQS::Queue', 'AWS::SQS::QueuePolicy']) {
      const resources = Object.values(prod.template.findResources(type)) as Array<{ DeletionPolicy?: string; UpdateReplacePolicy?: string }>;
      expect(resources.length).toBeGreaterThan(0);
      for (const r of resources) expect([r.DeletionPolicy, r.UpdateReplacePolicy]).toEqual(['RetainExceptOnCreate', 'Retain']);
    }
    // The domain's log publishing policy stays with it, or the kept domain could no longer log to its kept groups; it holds
    // nothing, so a replacement (which writes a new one) deletes the old one.
    const logPolicies = Object.values(prod.template.findResources('AWS::Logs::ResourcePolicy')) as Array<{ DeletionPolicy?: string; UpdateReplacePolicy?: string }>;
    expect(logPolicies.map((r) => [r.DeletionPolicy, r.UpdateReplacePolicy])).toEqual([['RetainExceptOnCreate', 'Delete']]);
    expect(resourcesOf(prod.template, 'Custom::S3AutoDeleteObjects')).toHaveLength(0);
    // The alarm topic is deleted with the stack, so its key is too (a retained one would protect nothing, and bill).
    expect(prod.template.findResources('AWS::SNS::Topic', { DeletionPolicy: Match.anyValue() })).toEqual({});
    const topicKey = Object.entries(prod.template.findResources('AWS::KMS::Key')).filter(([id]) => id.startsWith('MonitoringTopicKey'));
    expect(topicKey.map(([, r]) => [r.DeletionPolicy, r.Properties.PendingWindowInDays])).toEqual([['Delete', 7]]);
    prod.template.hasResourceProperties('AWS::DynamoDB::Table', { DeletionProtectionEnabled: true });
    const os = prod.config.opensearch;
    prod.template.hasResourceProperties('AWS::OpenSearchService::Domain', {
      ClusterConfig: Match.objectLike({
        InstanceType: os.instanceType,
        InstanceCount: os.instanceCount,
        ZoneAwarenessEnabled: true,
        ZoneAwarenessConfig: { AvailabilityZoneCount: 2 },
      }),
      EBSOptions: Match.objectLike({ VolumeSize: os.volumeGiB }),
    });
    const [, template] = resourcesOf(prod.template, 'Custom::SluiceIndexTemplate')[0];
    expect(JSON.parse(template.TemplateBody as string).template.settings.number_of_replicas).toBe(1);
  });
});

describe('opensearch.mode=existing', () => {
  const endpoint = 'https://search-logs-abc123.eu-west-1.es.amazonaws.com';
  const domainArn = 'arn:aws:es:eu-west-1:123456789012:domain/logs';
  let existing: Synthesized;
  beforeAll(() => {
    existing = synthesize({
      'opensearch.mode': 'existing', 'opensearch.endpoint': endpoint, 'opensearch.domainArn': domainArn, alarmEmail: 'ops@example.com',
      // And a processor buffer larger than app-events' transform can answer.
      'pipelines.app-events.transform.processorBufferMiB': '3',
      // And indices kept forever.
      'pipelines.clickstream.search.retentionDays': 'forever',
    });
  }, 120_000);

  test('no domain is created; delivery, templates and grants target the configured one', () => {
    expect(unacknowledgedNagFindings(existing.app)).toEqual([]);
    expect(resourcesOf(existing.template, 'AWS::OpenSearchService::Domain')).toHaveLength(0);
    existing.template.hasResourceProperties('AWS::KinesisFirehose::DeliveryStream', {
      AmazonopensearchserviceDestinationConfiguration: Match.objectLike({ DomainARN: domainArn }),
    });
    existing.template.hasResourceProperties('Custom::SluiceIndexTemplate', { Endpoint: 'search-logs-abc123.eu-west-1.es.amazonaws.com' });
    existing.template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: Match.arrayWith(['es:ESHttpPut']), Resource: `${domainArn}/_index_template/clickstream` })]) },
    });
    // The template's fields go to the pipeline's existing indices too, and only to those.
    existing.template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'es:ESHttpPut', Resource: `${domainArn}/clickstream-*/_mapping` })]) },
    });
    expect(existing.template.toJSON().Outputs.OpenSearchEndpoint.Value).toBe(endpoint);
  });

  test('retention on a domain the stack did not create: the same ISM grants on its ARN; kept forever, no policy (one made before is detached and deleted)', () => {
    const [, template] = resourcesOf(existing.template, 'Custom::SluiceIndexTemplate')[0];
    expect(JSON.parse(template.Retention as string)).toEqual({ PolicyId: 'clickstream-retention', IndexName: 'clickstream', RetentionDays: 'forever', Rotation: 'OneDay' });
    for (const [action, resource] of [
      ['es:ESHttpDelete', `${domainArn}/_plugins/_ism/policies/clickstream-retention`],
      ['es:ESHttpGet', `${domainArn}/_plugins/_ism/explain/clickstream-*`],
      ['es:ESHttpPost', `${domainArn}/_plugins/_ism/remove/clickstream-*`],
    ]) {
      const statements = iamStatements(existing.template).filter((s) => s.Resource.includes(resource));
      expect(statements.some((s) => s.Action.includes(action))).toBe(true);
    }
  });

  test('a processor buffer the transform cannot answer within 6 MB is a synth warning on that pipeline', () => {
    const warnings = Annotations.fromStack(existing.stack).findWarning('*', Match.stringLikeRegexp('processorBufferMiB'));
    expect(warnings.map((w) => [w.id, String(w.entry.data)])).toEqual([
      ['/sluice-dev/app-events', expect.stringMatching(/^pipelines\.app-events\.transform\.processorBufferMiB is 3, .* At most \d\.\d fits.*\[ack: @sluice\/processor-buffer-response\]$/)],
    ]);
  });

  test('its alarms, without the domain\'s, each have an entry in docs/deploy.md\'s "Alarms"', () => {
    const kinds = alarmKinds(existing);
    expect(kinds.filter((k) => k.startsWith('opensearch-'))).toEqual([]);
    expect(kinds.filter((k) => !runbookAlarmKinds().includes(k))).toEqual([]);
  });

  test('the alarm e-mail from configuration subscribes to the alarm topic', () => {
    existing.template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
  });
});

test('every alarm is on the dashboard, in alarm status widgets of at most 100 (CloudWatch\'s limit), also when there are more', () => {
  // Every pipeline Kinesis-sourced with every destination: over 100 alarms.
  const all = synthesize({
    'pipelines.iot.destinations': 'lake,search,metadata',
    'pipelines.transactions.destinations': 'lake,search,metadata',
    'pipelines.app-events.source': 'kinesis',
    'pipelines.app-events.destinations': 'lake,search,metadata',
  });
  const alarms = resourcesOf(all.template, 'AWS::CloudWatch::Alarm');
  expect(alarms.length).toBeGreaterThan(100);
  const [, dashboard] = resourcesOf(all.template, 'AWS::CloudWatch::Dashboard')[0];
  const body = JSON.parse(flatten(dashboard.DashboardBody)) as { widgets: Array<{ type: string; properties: { alarms?: unknown[] } }> };
  const widgets = body.widgets.filter((w) => w.type === 'alarm');
  expect(widgets.length).toBe(Math.ceil(alarms.length / 100));
  for (const w of widgets) expect(w.properties.alarms!.length).toBeLessThanOrEqual(100);
  expect(widgets.reduce((n, w) => n + w.properties.alarms!.length, 0)).toBe(alarms.length);
  // Kinesis-sourced app-events and search transforms on every pipeline: the same kinds, each with a runbook entry.
  expect(alarmKinds(all).filter((k) => !runbookAlarmKinds().includes(k))).toEqual([]);
}, 120_000);

test('a consumer whose maximum record age is as long as its stream\'s retention leaves its dead letters no time: the age alarm fires on any message a minute old', () => {
  const tight = synthesize({ 'pipelines.iot.consumer.maxRecordAgeSeconds': '86400' });
  const [, alarm] = resourcesOf(tight.template, 'AWS::CloudWatch::Alarm').find(([, a]) => a.AlarmName === 'sluice-dev-consumer-dlq-age')!;
  expect(alarm).toMatchObject({ MetricName: 'ApproximateAgeOfOldestMessage', Threshold: 60 });
}, 120_000);

test('with long buffering the failure-router alarm waits longer than an error object takes to come (processor interval + buffering): 4 periods of 15 minutes for 900 s + 900 s, 2 by default', () => {
  const slow = synthesize({
    'pipelines.iot.buffering.intervalSeconds': '900', 'pipelines.iot.transform.processorIntervalSeconds': '900',
    // The search stream's failed records reach search-backup/ after its S3 backup's 300 s, whatever the lake's buffering.
    'pipelines.clickstream.buffering.intervalSeconds': '60', 'pipelines.clickstream.transform.processorIntervalSeconds': '600',
  });
  const idle = (pipeline: string) => resourcesOf(slow.template, 'AWS::CloudWatch::Alarm').find(([, a]) => a.AlarmName === `sluice-dev-${pipeline}-failure-router-not-invoked`)![1];
  expect(idle('iot')).toMatchObject({ EvaluationPeriods: 4, DatapointsToAlarm: 4 });
  expect(flatten(idle('iot').AlarmDescription)).toMatch(/^iot: for 60 minutes the transforms failed records/);
  expect(idle('app-events')).toMatchObject({ EvaluationPeriods: 2, DatapointsToAlarm: 2 });
  expect(idle('clickstream')).toMatchObject({ EvaluationPeriods: 3, DatapointsToAlarm: 3 }); // 600 + 300 + 60 s
  expect(flatten(idle('app-events').AlarmDescription)).toMatch(/^app-events: for 30 minutes/);
}, 120_000);

test('a raised active-partition quota (buffering.activePartitionQuota) moves the near-quota warning and the graph\'s lines with it', () => {
  const raised = synthesize({ 'pipelines.iot.buffering.activePartitionQuota': '2000' });
  const alarm = (name: string) => resourcesOf(raised.template, 'AWS::CloudWatch::Alarm').find(([, a]) => a.AlarmName === name)![1];
  expect(alarm('sluice-dev-iot-lake-partitions-near-quota')).toMatchObject({ MetricName: 'PartitionCount', Threshold: 1600 });
  expect(flatten(alarm('sluice-dev-iot-lake-partitions-exceeded').AlarmDescription)).toContain('its quota (2000, buffering.activePartitionQuota;');
  expect(alarm('sluice-dev-app-events-lake-partitions-near-quota')).toMatchObject({ Threshold: 400 });
  const [, dashboard] = resourcesOf(raised.template, 'AWS::CloudWatch::Dashboard')[0];
  const widgets = (JSON.parse(flatten(dashboard.DashboardBody)) as { widgets: Array<{ properties: { title?: string; annotations?: { horizontal?: Array<{ value: number }> } } }> }).widgets;
  expect(widgets.find((w) => w.properties.title === 'iot: lake partitions open')!.properties.annotations?.horizontal?.map((a) => a.value)).toEqual([2000, 1600]);
}, 120_000);
