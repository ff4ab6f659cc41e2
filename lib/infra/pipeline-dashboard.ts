import { Aws, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { FAILURE_CATEGORIES } from '../../transforms/shared/record';
import type { FailureRouter } from './failure-router';
import type { SluiceFunction } from './function';
import type { LakeDelivery } from './lake-delivery';
import type { MetadataConsumer } from './metadata-consumer';
import type { MetadataStore } from './metadata-store';
import type { PipelineStream } from './pipeline-stream';
import { ALARM_THRESHOLDS } from './thresholds';
import { DLQ_RETENTION } from './queues';
import type { RecordTransform } from './record-transform';
import type { SearchDelivery } from './search-delivery';
import type { SearchDomain } from './search-domain';

/** What to watch of one pipeline. */
export interface MonitoredPipeline {
  readonly name: string;
  /** Its Kinesis stream. @default - none: a DirectPut pipeline, no stream widgets or alarms */
  readonly stream?: PipelineStream;
  /** Its lake delivery. @default - none: no lake widgets or alarms */
  readonly lake?: LakeDelivery;
  /** Its search delivery. @default - none: no search widgets or alarms */
  readonly search?: SearchDelivery;
  /** Transform functions, by the destination they serve. */
  readonly transforms: ReadonlyArray<{ readonly destination: 'lake' | 'search'; readonly function: RecordTransform }>;
  /** Its metadata consumer. @default - none: no consumer widgets or alarms */
  readonly consumer?: MetadataConsumer;
  /** How long Firehose buffers records for the transform (the Lambda processor's interval hint). @default 60 */
  readonly processorIntervalSeconds?: number;
}

export interface PipelineDashboardProps {
  readonly pipelines: readonly MonitoredPipeline[];
  readonly failureRouter: FailureRouter;
  readonly metadataStore: MetadataStore;
  /** The OpenSearch domain. @default - none: no domain widgets or alarms */
  readonly searchDomain?: SearchDomain;
  /** E-mail address subscribed to the alarm topic. @default - no subscription */
  readonly alarmEmail?: string;
}

/** Alarms one CloudWatch alarm status widget shows. */
const ALARMS_PER_WIDGET = 100;


/**
 * One CloudWatch dashboard of every pipeline and alarms that notify an SNS topic: Kinesis write throttling, and a reader
 * (a Firehose stream, a metadata consumer) behind or taking nothing from a stream that receives records; Firehose data
 * freshness, throttled records and delivery success, the lake's Parquet conversion failures and the search stream's S3
 * backup failing; transform invocations failing and transforms failing a large share of records; Lambda errors, throttles
 * and duration near the timeout; new dead letters and their age, S3 events the failure router gave up on, records failing
 * while the router is never invoked; OpenSearch cluster status (red and yellow), write
 * blocks, free storage, JVM and old-generation memory pressure, CPU, nodes missing and failed snapshots.
 */
export class PipelineDashboard extends Construct {
  readonly dashboard: cloudwatch.Dashboard;
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];
  private readonly action: actions.SnsAction;
  private readonly failureRouter: FailureRouter;

  constructor(scope: Construct, id: string, props: PipelineDashboardProps) {
    super(scope, id);
    // CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key, so the topic has its own key.
    // Deleted with the stack whatever `removalPolicy` says: it encrypts only the messages the topic holds for delivery, and
    // the topic goes with the stack, so a retained key would protect nothing and bill $1 a month for ever.
    const key = new kms.Key(this, 'TopicKey', {
      description: 'Encrypts the Sluice alarm topic',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    key.addToResourcePolicy(new iam.PolicyStatement({
      principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
      actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
      resources: ['*'],
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }));
    this.topic = new sns.Topic(this, 'AlarmTopic', { displayName: 'Sluice alarms', masterKey: key, enforceSSL: true });
    // enforceSSL gives the topic a policy of its own, which replaces SNS's default one (the only thing that
    // let this account's alarms publish): without this statement no alarm could notify anyone.
    this.topic.addToResourcePolicy(new iam.PolicyStatement({
      principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
      actions: ['sns:Publish'],
      resources: [this.topic.topicArn],
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }));
    if (props.alarmEmail) this.topic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    this.action = new actions.SnsAction(this.topic);

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
      periodOverride: cloudwatch.PeriodOverride.AUTO,
    });

    this.failureRouter = props.failureRouter;
    for (const p of props.pipelines) this.watchPipeline(p);
    // A consumer dead letter names a range of its stream, whose records may be maxRecordAge old when it arrives: it must be
    // re-read before the rest of the stream's retention runs out.
    const consumerWindows = props.pipelines.flatMap((p) => (p.consumer && p.stream ? [p.stream.retention.toSeconds() - p.consumer.maxRecordAge.toSeconds()] : []));
    this.watchFailures(props.failureRouter, props.metadataStore, consumerWindows.length > 0 ? Math.min(...consumerWindows) : undefined);
    if (props.searchDomain) this.watchDomain(props.searchDomain);
    // No alarms on the index-template function: it runs only inside CloudFormation deploys, whose failure the deployer sees.

    // An alarm status widget shows at most 100 alarms.
    for (let i = 0; i < this.alarms.length; i += ALARMS_PER_WIDGET) {
      const part = this.alarms.length > ALARMS_PER_WIDGET ? ` (${i / ALARMS_PER_WIDGET + 1})` : '';
      this.dashboard.addWidgets(new cloudwatch.AlarmStatusWidget({ title: `Alarms${part}`, alarms: this.alarms.slice(i, i + ALARMS_PER_WIDGET), width: 24 }));
    }
  }

  private watchPipeline(p: MonitoredPipeline): void {
    const widgets: cloudwatch.IWidget[] = [];
    widgets.push(new cloudwatch.TextWidget({ markdown: `## ${p.name}`, width: 24, height: 1 }));

    if (p.stream) {
      const s = p.stream;
      const readers = [
        ...(p.lake ? [p.lake.metricRecordsReadFromStream().with({ label: 'read by the lake stream' })] : []),
        ...(p.search ? [p.search.metricRecordsReadFromStream().with({ label: 'read by the search stream' })] : []),
      ];
      widgets.push(new cloudwatch.GraphWidget({
        title: `${p.name}: Kinesis`,
        left: [s.metricIncomingRecords(), s.metricWriteThrottles(), ...readers],
        right: [s.metricIteratorAge()],
        width: 8,
      }));
      // No alarm on the stream's iterator age: only the Firehose streams read it with GetRecords (the metadata consumer reads
      // through its enhanced fan-out consumer), so it is the largest of their lags, which each <kind>-reader-behind alarms on.
      this.alarm(`${p.name}-stream-write-throttles`, s.metricWriteThrottles(), {
        threshold: 1, evaluationPeriods: 3, datapointsToAlarm: 3,
        description: `${p.name}: producers' writes to the Kinesis stream have been throttled for 15 minutes (each shard takes 1 MiB/s and 1,000 records/s); `
          + 'the producers must send the records refused again. ' + (s.shards === 'on-demand'
          ? 'The stream is on demand: it takes at once up to twice its write peak of the previous 30 days, and scales beyond that in minutes, so either '
            + 'traffic more than doubled quickly (ramp it up, or switch to provisioned shards sized with `npx sluice cost --rate <records/s> --size <bytes>`) '
            + 'or a few partition keys are hot (their shard is full while the stream is not): spread the producers\' partition keys.'
          : `The stream has ${s.shards} provisioned shard${s.shards === 1 ? '' : 's'}: \`npx sluice cost --rate <records/s> --size <bytes> -p ${p.name}\` prints the shards `
            + `a rate needs; raise pipelines.${p.name}.shards and deploy (\`npx cdk deploy -c pipelines.${p.name}.shards=N\`). If the stream's total is well `
            + 'under its shards\' capacity, a few partition keys are hot: spread the producers\' partition keys.'),
      });
    }

    for (const delivery of [p.lake, p.search]) {
      if (!delivery) continue;
      const kind = delivery === p.lake ? 'lake' : 'search';
      const freshnessLimit = delivery.bufferingInterval.toSeconds() + ALARM_THRESHOLDS.freshnessSlackSeconds;
      // One unit per axis: a 0–1 share beside counts of records would be flattened against the axis.
      widgets.push(new cloudwatch.GraphWidget({
        title: `${p.name}: Firehose ${kind} latency`,
        left: [delivery.metricDataFreshness()],
        leftYAxis: { label: 'seconds', showUnits: false, min: 0 },
        right: p.stream ? [delivery.metricMillisBehindLatest()] : [],
        rightYAxis: { label: 'milliseconds', showUnits: false, min: 0 },
        width: 8,
      }));
      widgets.push(new cloudwatch.GraphWidget({
        title: `${p.name}: Firehose ${kind} success and failures`,
        left: [delivery.metricDeliverySuccess(), delivery.metricProcessingSuccess(), ...(delivery === p.search ? [p.search.metricBackupSuccess()] : [])],
        leftYAxis: { label: 'share succeeded', showUnits: false, min: 0, max: 1 },
        right: delivery === p.lake ? [p.lake.metricThrottledRecords(), p.lake.metricFailedConversions()] : [delivery.metricThrottledRecords()],
        rightYAxis: { label: 'records', showUnits: false, min: 0 },
        width: 8,
      }));
      this.alarm(`${p.name}-${kind}-freshness`, delivery.metricDataFreshness(), {
        threshold: freshnessLimit, evaluationPeriods: 2, datapointsToAlarm: 2,
        description: `${p.name}: the oldest record waiting for ${kind} delivery is older than the buffering interval + 15 minutes (${freshnessLimit} s).`,
      });
      this.alarm(`${p.name}-${kind}-throttled`, delivery.metricThrottledRecords(), {
        threshold: 1, evaluationPeriods: 3, datapointsToAlarm: 3,
        description: `${p.name}: the ${kind} delivery stream has been throttled for 15 minutes.`,
      });
      this.alarm(`${p.name}-${kind}-delivery-success`, delivery.metricDeliverySuccess(), {
        threshold: 1, comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD, evaluationPeriods: 3, datapointsToAlarm: 3,
        description: `${p.name}: ${kind} deliveries have been failing for 15 minutes; see the delivery log group ${delivery.logGroup.logGroupName}.`,
      });
      // What the search stream cannot index goes to its S3 backup; when that fails too, nothing reaches the backup or the
      // dead-letter queue, and Firehose holds the records (delivery-success may stay quiet: OpenSearch took the rest).
      if (delivery === p.search) {
        this.alarm(`${p.name}-search-backup-success`, p.search.metricBackupSuccess(), {
          threshold: 1, comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD, evaluationPeriods: 3, datapointsToAlarm: 3,
          description: `${p.name}: the search delivery stream has failed for 15 minutes to write to its S3 backup (DeliveryToS3.Success) the documents OpenSearch refused `
            + `and the records the transform failed: they reach neither search-backup/${p.name}/ nor the dead-letter queue, and Firehose holds them until its source's `
            + `retention ends. See the delivery log group ${delivery.logGroup.logGroupName} (S3 errors), and the delivery role's access to the bucket and the data key `
            + '(a bucket policy or a key policy changed, the key disabled). Once it writes again, the held records follow.',
        });
      }
      // Both streams always run the transform, so their invocations always have a success rate.
      const transform = p.transforms.find((t) => t.destination === kind);
      const other = delivery === p.lake ? p.search : p.lake;
      this.alarm(`${p.name}-${kind}-processing-success`, delivery.metricProcessingSuccess(), {
        threshold: 1, comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD, evaluationPeriods: 3, datapointsToAlarm: 3,
        description: `${p.name}: Firehose's invocations of the ${kind} transform have been failing for 15 minutes (errors, timeouts or throttles); after its retries their records `
          + `go under ${delivery === p.lake ? `errors/${p.name}` : `search-backup/${p.name}`}/processing-failed/ and to the dead-letter queue. `
          + `${transform ? `See the transform's log group ${transform.function.logGroup.logGroupName}; once` : 'Once'} fixed, run \`${this.replayCommand}\`. `
          + (other ? `The ${other === p.lake ? 'lake' : 'search'} stream reads the same records: replay keeps (not-replayable) each record it holds, as re-putting `
            + `it would add a second copy there; getting those into ${kind === 'lake' ? 'the lake' : 'OpenSearch'} is yours to do (docs/cli.md, replay).` : ''),
      });
      // The stream's iterator age is one value over all its readers: a stalled reader hides behind a healthy one.
      if (p.stream) {
        this.alarm(`${p.name}-${kind}-reader-behind`, delivery.metricMillisBehindLatest(), {
          threshold: ALARM_THRESHOLDS.iteratorAgeMs, evaluationPeriods: 3, datapointsToAlarm: 3,
          description: `${p.name}: the ${kind} delivery stream's last read record has been over 10 minutes behind the stream's newest for 15 minutes (records expire after the stream's retention).`,
        });
        // Its lag and freshness come from records it read, and the stream's iterator age from reads that succeed: a stream
        // that cannot read at all raises none of them.
        this.stallAlarm(`${p.name}-${kind}-reader-stalled`, p.stream, delivery.metricRecordsReadFromStream(), `records read by the ${kind} stream`,
          `${p.name}: the Kinesis stream received records for 30 minutes and the ${kind} delivery stream read none of them (DataReadFromKinesisStream.Records), `
          + 'so its lag and freshness alarms, which come from records it read, stay silent. Firehose cannot read its source: see the delivery stream\'s status '
          + `(aws firehose describe-delivery-stream --delivery-stream-name ${delivery.deliveryStreamName}) and its error log group ${delivery.logGroup.logGroupName}, and its role's permissions on the stream and the stream's key. Once it reads again it goes on `
          + 'from where it stopped; records older than the stream\'s retention are lost.');
      }
    }

    if (p.lake) {
      const quota = p.lake.activePartitionQuota;
      const nearQuota = Math.floor(quota * ALARM_THRESHOLDS.partitionQuotaShare);
      widgets.push(new cloudwatch.GraphWidget({
        title: `${p.name}: lake partitions open`,
        left: [p.lake.metricPartitionCount()],
        leftAnnotations: [{ value: quota, label: 'quota' }, { value: nearQuota, label: 'partitions-near-quota' }],
        width: 8,
      }));
      // A warning while records still fit: partitions-exceeded fires only once records are refused.
      this.alarm(`${p.name}-lake-partitions-near-quota`, p.lake.metricPartitionCount(), {
        threshold: nearQuota, evaluationPeriods: 1, datapointsToAlarm: 1,
        description: `${p.name}: the lake stream held ${nearQuota} or more partitions (event type × event hour) open at once, ${ALARM_THRESHOLDS.partitionQuotaShare * 100}% of `
          + `its quota (${quota}, buffering.activePartitionQuota): past it, records go to the error prefix as activePartitionExceeded. Late or replayed records spread over many `
          + `hours cause this: replay in smaller runs (\`${this.replayCommand} --max N\`) spaced by the buffering interval, or request a higher active-partition quota `
          + '(up to 5,000) through the Firehose limits form, then set buffering.activePartitionQuota to it. The dashboard\'s "lake partitions open" graph shows the count.',
      });
      this.alarm(`${p.name}-lake-partitions-exceeded`, p.lake.metricPartitionCountExceeded(), {
        threshold: 1, evaluationPeriods: 1, datapointsToAlarm: 1,
        description: `${p.name}: the lake stream has more partitions (event type × event hour) open than its quota (${quota}, buffering.activePartitionQuota; 500 unless raised, up to 5,000): `
          + 'the records past it go to the error prefix as activePartitionExceeded and on to the dead-letter queue, transformed (send them again from the source). '
          + 'Late or replayed records spread over many hours cause this; request a higher active-partition quota, or replay dead letters in smaller runs spaced by the buffering interval.',
      });
      this.alarm(`${p.name}-lake-conversion-failed`, p.lake.metricFailedConversions(), {
        threshold: 1, evaluationPeriods: 1, datapointsToAlarm: 1,
        description: `${p.name}: Firehose could not convert records to Parquet (they do not fit the Glue table's columns): they are under errors/${p.name}/format-conversion-failed/ `
          + 'and in the dead-letter queue, as transformed (not as sent). Fix the Glue schema or the transform, deploy, then send them again from the source.',
      });
    }
    for (const t of p.transforms) widgets.push(this.watchFunction(t.function, `${p.name}-${t.destination}-transform`, false));
    if (p.transforms.length > 0) {
      // What the transforms did with each record (their EMF metrics): every record ends Ok, Dropped or failed, and a failure
      // names its reason.
      widgets.push(new cloudwatch.GraphWidget({
        title: `${p.name}: records transformed`,
        left: p.transforms.flatMap((t) => (['ok', 'dropped', 'failed'] as const).map((result) => t.function.metricRecords(result))),
        leftYAxis: { label: 'records', showUnits: false, min: 0 },
        width: 8,
      }));
      widgets.push(new cloudwatch.GraphWidget({
        title: `${p.name}: records failed, by reason`,
        left: p.transforms.flatMap((t) => FAILURE_CATEGORIES.map((reason) => t.function.metricRecordsFailedFor(reason))),
        leftYAxis: { label: 'records', showUnits: false, min: 0 },
        width: 8,
      }));
    }
    for (const t of p.transforms) this.transformFailingAlarm(p.name, t.destination, t.function);
    if (p.transforms.length > 0 || p.lake) this.routerNotInvokedAlarm(p);
    if (p.consumer) {
      widgets.push(this.watchFunction(p.consumer.function, `${p.name}-consumer`, false));
      const c = p.consumer;
      widgets.push(new cloudwatch.GraphWidget({
        title: `${p.name}: metadata consumer`,
        left: [c.metricOutcome('recorded'), c.metricOutcome('duplicates'), c.metricOutcome('malformed'), c.metricRecordsReportedForRetry(), c.metricOutcome('writeRetries')],
        leftYAxis: { label: 'records', showUnits: false, min: 0 },
        right: [c.metricIteratorAge()],
        rightYAxis: { label: 'milliseconds', showUnits: false, min: 0 },
        width: 8,
      }));
      this.alarm(`${p.name}-consumer-iterator-age`, p.consumer.metricIteratorAge(), {
        threshold: ALARM_THRESHOLDS.iteratorAgeMs, evaluationPeriods: 3, datapointsToAlarm: 3,
        description: `${p.name}: the metadata consumer is more than 10 minutes behind the stream.`,
      });
      // The handler returns failed DynamoDB writes as batchItemFailures, so they never count as Lambda Errors.
      this.alarm(`${p.name}-consumer-records-retried`, p.consumer.metricRecordsReportedForRetry(), {
        threshold: 1, evaluationPeriods: 3, datapointsToAlarm: 2,
        description: `${p.name}: the metadata consumer reported records for retry (DynamoDB writes failing) in 2 of the last 3 five-minute periods; `
          + `Lambda retries them, then sends their range to the consumer dead-letter queue. Its log group ${p.consumer.function.logGroup.logGroupName} says why.`,
      });
      // Lambda publishes IteratorAge when the function finishes a batch: a mapping that invokes nothing raises no iterator-age alarm.
      const consumerFn = p.consumer.function.function;
      if (p.stream) {
        this.stallAlarm(`${p.name}-consumer-stalled`, p.stream, consumerFn.metricInvocations({ statistic: 'Sum' }), 'consumer invocations',
          `${p.name}: the Kinesis stream received records for 30 minutes and the metadata consumer was not invoked once: its event source mapping is not reading `
          + '(disabled, or its function cannot be invoked: deleted, misconfigured, no permission on the stream or its key). Lambda publishes no IteratorAge '
          + 'without invocations, so the iterator-age alarm stays silent. See the mapping\'s State and StateTransitionReason '
          + `(aws lambda list-event-source-mappings --function-name ${consumerFn.functionName}), fix it and enable it; records older than the stream's retention are lost.`);
      }
      // A batch the event source mapping gave up on reaches the consumer dead-letter queue only if that send works.
      this.alarm(`${p.name}-consumer-destination-failures`, consumerFn.metric('DestinationDeliveryFailures', { statistic: 'Sum', period: Duration.minutes(5) }), {
        threshold: 1, evaluationPeriods: 1,
        description: `${p.name}: Lambda could not send a batch the metadata consumer gave up on to the consumer dead-letter queue (permissions, KMS or queue trouble), `
          + `so not even its shard and sequence range is kept: fix the queue, then re-read the stream around the alarm within its retention as docs/deploy.md ("When the metadata consumer gives up") describes; \`npx sluice redrive-consumer --aws --stack ${Stack.of(this).stackName}\` redrives only the batches the queue holds.`,
      });
    }
    this.dashboard.addWidgets(...widgets);
  }

  private watchFunction(fn: SluiceFunction, name: string, addWidget = true): cloudwatch.IWidget {
    const f = fn.function;
    const duration = f.metricDuration({ statistic: 'Maximum', period: Duration.minutes(5) });
    const nearTimeout = Math.floor(fn.timeout.toMilliseconds() * ALARM_THRESHOLDS.durationShareOfTimeout);
    this.alarm(`${name}-errors`, f.metricErrors({ statistic: 'Sum', period: Duration.minutes(5) }), {
      threshold: 1, evaluationPeriods: 3, datapointsToAlarm: 2,
      description: `${name}: the function failed in 2 of the last 3 five-minute periods; see its log group ${fn.logGroup.logGroupName}.`,
    });
    this.alarm(`${name}-throttles`, f.metricThrottles({ statistic: 'Sum', period: Duration.minutes(5) }), {
      threshold: 1, evaluationPeriods: 3, datapointsToAlarm: 2,
      description: `${name}: invocations were throttled; raise the account's concurrency limit or reserve concurrency.`,
    });
    this.alarm(`${name}-duration`, duration, {
      threshold: nearTimeout, evaluationPeriods: 3, datapointsToAlarm: 2,
      description: `${name}: an invocation took over 80% of the ${fn.timeout.toSeconds()} s timeout in 2 of the last 3 five-minute periods.`,
    });
    // Throttles beside errors: the throttle alarms point here.
    const widget = new cloudwatch.GraphWidget({
      title: `${name}: Lambda`,
      left: [
        f.metricInvocations({ statistic: 'Sum', period: Duration.minutes(5) }),
        f.metricErrors({ statistic: 'Sum', period: Duration.minutes(5) }),
        f.metricThrottles({ statistic: 'Sum', period: Duration.minutes(5) }),
      ],
      right: [duration],
      width: 8,
    });
    if (addWidget) this.dashboard.addWidgets(widget);
    return widget;
  }

  /**
   * `consumerWindowSeconds`: the shortest time a consumer dead letter's range has left when it arrives (retention less
   * maximum record age); undefined without consumers.
   */
  private watchFailures(router: FailureRouter, store: MetadataStore, consumerWindowSeconds: number | undefined): void {
    this.watchFunction(router.function, 'failure-router');
    // New dead letters, not the queue's depth: replay keeps the messages it cannot replay, so a depth alarm would stay in
    // ALARM for days and notify no one of the failures that follow (CloudWatch notifies on changes of state only).
    this.alarm('dlq-new-messages', router.metricDlqMessagesSent(), {
      threshold: 1, evaluationPeriods: 1,
      description: 'The failure router sent new failed records to the dead-letter queue in the last 5 minutes (whatever the queue already holds: once it is OK again after '
        + 'a quiet 5 minutes, the next failures raise it anew). Their reasons: `' + this.replayCommand + ' --dry-run` from a checkout of the deployed commit; '
        + `then fix the cause and run it without --dry-run. The dashboard's "records failed, by reason" graphs say which pipeline.`,
    });
    const ageDays = ALARM_THRESHOLDS.deadLetterAgeSeconds / 86_400;
    const keptDays = DLQ_RETENTION.toDays();
    this.alarm('dlq-age', router.metricDlqAge(), {
      threshold: ALARM_THRESHOLDS.deadLetterAgeSeconds, evaluationPeriods: 1,
      description: `A failed record has waited over ${ageDays} days in the dead-letter queue, which deletes it after ${keptDays}: run \`${this.replayCommand}\` (or save the messages) before then. `
        + 'SQS\'s age metric leaves out a message received more than three times, as every replay run receives those it keeps: replay warns of kept messages this old itself.',
    });
    this.alarm('router-events-failed', router.metricFailedEventsDepth(), {
      threshold: 1, evaluationPeriods: 1,
      description: 'The failure router gave up on an error object after Lambda\'s retries: its records may be missing from the dead-letter queue. '
        + `Fix the cause (see the router's log group ${router.function.logGroup.logGroupName}), then re-invoke the router with each message of the RouterFailedEventsUrl queue as docs/deploy.md describes.`,
    });
    this.alarm('router-events-failed-age', router.metricFailedEventsAge(), {
      threshold: ALARM_THRESHOLDS.deadLetterAgeSeconds, evaluationPeriods: 1,
      description: `An S3 event the failure router gave up on has waited over ${ageDays} days in the RouterFailedEventsUrl queue, which deletes it after ${keptDays}: `
        + 're-invoke the router with it as docs/deploy.md describes before then (its error object stays in S3, but nothing else names it).',
    });
    this.alarm('router-records-unrouted', router.metricUnroutedRecords(), {
      threshold: 1, evaluationPeriods: 1,
      description: 'The failure router met error lines it could not read, or an error object damaged part-way: those records are in S3 only (errors/ or search-backup/), '
        + 'not in the dead-letter queue. The router\'s log lines "error line unreadable" and "error object damaged" name the objects and lines.',
    });
    // Only an event Lambda could not hand to the failed-events queue is gone. AsyncEventsDropped is not alarmed: Lambda
    // counts every event it stops retrying there, those it then puts in the queue too (router-events-failed covers them).
    const routerFn = router.function.function;
    this.alarm('router-destination-failures', routerFn.metric('DestinationDeliveryFailures', { statistic: 'Sum', period: Duration.minutes(5) }), {
      threshold: 1, evaluationPeriods: 1,
      description: 'Lambda could not put a failed failure-router event into the RouterFailedEventsUrl queue (permissions, KMS or queue trouble), so the event is gone: '
        + `fix the queue, then re-invoke the router (${routerFn.functionName}) synchronously for the error objects created around the alarm, as docs/deploy.md describes.`,
    });
    // New notices, not depth, as for the dead-letter queue: a notice is kept past its stream range's retention until someone
    // deletes it, and a depth alarm would stay in ALARM meanwhile.
    this.alarm('consumer-dlq-new-messages', store.metricConsumerDlqMessagesSent(), {
      threshold: 1, evaluationPeriods: 1,
      description: 'A metadata consumer gave up on a batch in the last 5 minutes (whatever the queue already holds: after a quiet 5 minutes the next batch raises it anew); '
        + `the consumer dead-letter queue (ConsumerDlqUrl) holds its shard and sequence range: within the stream's retention, run \`npx sluice redrive-consumer --aws --stack ${Stack.of(this).stackName} --dry-run\`, then without --dry-run.`,
    });
    if (consumerWindowSeconds !== undefined) {
      // At least a minute: a window of nothing (a maximum record age as long as the retention) alarms on any message.
      const limit = Math.max(60, Math.floor(consumerWindowSeconds * ALARM_THRESHOLDS.consumerDeadLetterShareOfWindow));
      this.alarm('consumer-dlq-age', store.metricConsumerDlqAge(), {
        threshold: limit, evaluationPeriods: 1,
        description: `A metadata consumer's failed batch has waited over ${(limit / 3600).toFixed(1)} hours in the consumer dead-letter queue: it names a sequence range `
          + `of its stream whose records had, when it arrived, at least ${(consumerWindowSeconds / 3600).toFixed(1)} hours left before the stream's retention removes them `
          + `(the shortest retention less the maximum record age, over the pipelines with a consumer). Redrive it now: \`npx sluice redrive-consumer --aws --stack ${Stack.of(this).stackName}\`.`,
      });
    }
    // Three periods running: one throttled write is retried and costs nothing; failures it causes alarm as records retried.
    this.alarm('metadata-write-throttles', store.metricWriteThrottles(), {
      threshold: 1, evaluationPeriods: 3, datapointsToAlarm: 3,
      description: 'DynamoDB has throttled writes to the metadata table for 15 minutes (the consumers and the failure router retry them); sustained, the consumers fall '
        + 'behind and report records for retry. On demand, this means traffic past twice its previous peak or a hot partition key.',
    });
    this.dashboard.addWidgets(new cloudwatch.GraphWidget({
      title: 'Metadata table',
      left: [store.metricWriteThrottles(), store.metricTransactionConflicts()],
      leftYAxis: { label: 'throttled writes, transaction conflicts', showUnits: false, min: 0 },
      right: [store.metricConsumedWriteCapacity()],
      rightYAxis: { label: 'write capacity units', showUnits: false, min: 0 },
      width: 8,
    }));
    this.dashboard.addWidgets(new cloudwatch.GraphWidget({
      title: 'Dead-letter queues',
      left: [
        router.metricDlqDepth().with({ label: 'dlq: messages' }),
        router.metricFailedEventsDepth().with({ label: 'router failed events: messages' }),
        store.metricConsumerDlqDepth().with({ label: 'consumer dlq: messages' }),
      ],
      leftYAxis: { label: 'messages', showUnits: false, min: 0 },
      right: [
        router.metricDlqAge().with({ label: 'dlq: oldest (s)' }),
        router.metricFailedEventsAge().with({ label: 'router failed events: oldest (s)' }),
        store.metricConsumerDlqAge().with({ label: 'consumer dlq: oldest (s)' }),
      ],
      rightYAxis: { label: 'seconds', showUnits: false, min: 0 },
      width: 8,
    }));
  }

  private watchDomain(domain: SearchDomain): void {
    const red = domain.metricClusterRed();
    const yellow = domain.metricClusterYellow();
    const blocked = domain.metricWritesBlocked();
    const jvm = domain.metricJvmMemoryPressure();
    const oldGen = domain.metricOldGenJvmMemoryPressure();
    const snapshot = domain.metricSnapshotFailure();
    const free = domain.metricFreeStorage();
    const cpu = domain.metricCpuUtilization();
    const nodes = domain.metricNodes();
    // Yellow, JVM and old-generation pressure, CPU, nodes and snapshots as AWS recommends (developerguide/cloudwatch-alarms.html),
    // at its periods and thresholds. A domain the stack did not create has no metrics here, so no alarms. No KMSKeyError/
    // KMSKeyInaccessible alarms: the domain is encrypted with the AWS-managed key, which cannot be disabled or deleted; with
    // a customer key, alarm on both. No CPUCreditBalance alarm for T3 nodes: AWS does not recommend one, and T3 domains do not
    // publish that metric (AWS documents it for T2 types), so it would never have data; the CPU alarm's description says
    // what spent credits mean.
    const burstable = domain.instanceType?.startsWith('t3.') ?? false;
    const domainAlarms: Array<[string, cloudwatch.Metric | undefined, {
      threshold: number; evaluationPeriods: number; datapointsToAlarm?: number; comparisonOperator?: cloudwatch.ComparisonOperator; description: string;
    }]> = [
      ['opensearch-cluster-red', red, {
        threshold: 1, evaluationPeriods: 1,
        description: 'OpenSearch cluster status is red: a primary shard is unassigned and some documents cannot be indexed or searched.',
      }],
      ['opensearch-writes-blocked', blocked, {
        threshold: 1, evaluationPeriods: 1,
        description: 'OpenSearch is blocking writes (storage or memory pressure); documents go to the search backup prefix.',
      }],
      ['opensearch-cluster-yellow', yellow, {
        threshold: 1, evaluationPeriods: 5, datapointsToAlarm: 5,
        description: 'OpenSearch cluster status has been yellow for 5 minutes: a replica shard is unassigned (a node is down or out of disk), so a node lost now loses data.',
      }],
      ['opensearch-jvm-memory-pressure', jvm, {
        threshold: 95, evaluationPeriods: 3, datapointsToAlarm: 3,
        description: 'OpenSearch: a data node has used over 95% of its JVM heap for 3 minutes; it may fail with out-of-memory errors. Use a larger instance type.',
      }],
      ['opensearch-old-gen-jvm-memory-pressure', oldGen, {
        threshold: 80, evaluationPeriods: 3, datapointsToAlarm: 3,
        description: 'OpenSearch: a data node\'s old-generation JVM heap has been over 80% full for 3 minutes, which garbage collection cannot free: JVM memory pressure '
          + '(opensearch-jvm-memory-pressure, at 95%), blocked writes and out-of-memory failures follow. Use a larger instance type '
          + '(npx cdk deploy -c env=<env> -c opensearch.instanceType=<type>); fewer, larger shards and lighter aggregations also help.',
      }],
      ['opensearch-cpu-utilization', cpu, {
        threshold: 80, evaluationPeriods: 3, datapointsToAlarm: 3,
        description: 'OpenSearch: a data node has used over 80% CPU in each of 3 fifteen-minute periods (45 minutes); sustained, indexing and searches slow and '
          + 'Firehose retries its deliveries. Use a larger instance type or more nodes (npx cdk deploy -c env=<env> -c opensearch.instanceType=<type>, '
          + 'or -c opensearch.instanceCount=N).' + (burstable
          ? ` The data nodes are ${domain.instanceType}, burstable: once their CPU credits are spent they are held to a fraction of a core, so sustained load needs a non-burstable type such as m6g.large.search or r6g.large.search.`
          : ''),
      }],
      // Nodes and dataNodes come together, from a domain the stack creates (it has no dedicated master nodes: Nodes counts data nodes).
      ['opensearch-nodes', nodes, {
        threshold: domain.dataNodes ?? 0, comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD, evaluationPeriods: 1,
        description: `OpenSearch: the cluster had fewer than its ${domain.dataNodes} node${domain.dataNodes === 1 ? '' : 's'} at some point of the last day (Nodes, minimum over 1 day): `
          + 'a node was unreachable or replaced. OpenSearch Service replaces failed nodes itself; if the count stays low, see the domain\'s health in the '
          + 'OpenSearch Service console and open a case with AWS Support. Meanwhile the cluster may be yellow or red (see those alarms). After a deploy that '
          + 'raised opensearch.instanceCount, the day\'s minimum holds the old count: the alarm stays for up to a day and nothing is wrong.',
      }],
      ['opensearch-snapshot-failed', snapshot, {
        threshold: 1, evaluationPeriods: 1,
        description: 'OpenSearch: an automated snapshot failed, most often because the cluster is red; the domain has no recent backup until one succeeds.',
      }],
    ];
    for (const [id, metric, options] of domainAlarms) if (metric) this.alarm(id, metric, options);
    if (free && domain.volumeGiB !== undefined) {
      const thresholdMiB = Math.floor(domain.volumeGiB * 1024 * ALARM_THRESHOLDS.freeStorageShare);
      this.alarm('opensearch-free-storage', free, {
        threshold: thresholdMiB, comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD, evaluationPeriods: 1,
        description: `OpenSearch: the fullest node has under 25% of its ${domain.volumeGiB} GiB left (${thresholdMiB} MiB). Indices are deleted after pipelines.<pipeline>.search.retentionDays (default 30; "forever" keeps them): `
          + `keep fewer days (npx cdk deploy -c env=<env> -c pipelines.<pipeline>.search.retentionDays=7) or grow the volume (npx cdk deploy -c env=<env> -c opensearch.volumeGiB=${domain.volumeGiB * 2}); `
          + 'to free space now, delete old <pipeline>-YYYY-MM-DD indices by hand (docs/deploy.md, "Index retention").',
      });
    }
    // 0/1 flags on one widget; free storage (MiB) and memory pressure (%) on another, each on its own axis.
    const flags = [red, yellow, blocked, snapshot].filter((m): m is cloudwatch.Metric => m !== undefined);
    if (flags.length > 0) {
      this.dashboard.addWidgets(new cloudwatch.GraphWidget({ title: 'OpenSearch: status flags', left: flags, leftYAxis: { label: '1 = raised', showUnits: false, min: 0, max: 1 }, width: 8 }));
    }
    if (free || jvm) {
      this.dashboard.addWidgets(new cloudwatch.GraphWidget({
        title: 'OpenSearch: free storage and JVM memory pressure',
        left: free ? [free] : [],
        leftYAxis: { label: 'MiB', showUnits: false, min: 0 },
        right: [jvm, oldGen].filter((m): m is cloudwatch.Metric => m !== undefined),
        rightYAxis: { label: '%', showUnits: false, min: 0, max: 100 },
        width: 8,
      }));
    }
    if (cpu && nodes) {
      this.dashboard.addWidgets(new cloudwatch.GraphWidget({
        title: 'OpenSearch: CPU and nodes',
        left: [cpu],
        leftYAxis: { label: '%', showUnits: false, min: 0, max: 100 },
        right: [nodes.with({ period: Duration.minutes(5) })],
        rightYAxis: { label: 'nodes', showUnits: false, min: 0 },
        width: 8,
      }));
    }
  }

  /**
   * Alarms when a transform fails (ProcessingFailed) over transformFailedPercent of the records it returns, in 2 of 3
   * periods: its invocations succeed, so processing-success stays quiet. The handler publishes both counts on every
   * invocation; a period without either (no traffic) is 0, so no traffic is no alarm.
   */
  private transformFailingAlarm(pipeline: string, destination: 'lake' | 'search', transform: RecordTransform): cloudwatch.Alarm {
    const percent = ALARM_THRESHOLDS.transformFailedPercent;
    const failedShare = new cloudwatch.MathExpression({
      expression: 'IF(FILL(ok, 0) + FILL(failed, 0) > 0, 100 * FILL(failed, 0) / (FILL(ok, 0) + FILL(failed, 0)), 0)',
      usingMetrics: { ok: transform.metricRecords('ok'), failed: transform.metricRecords('failed') },
      label: `${destination}: records failed, % of ok + failed`,
      period: Duration.minutes(5),
    });
    return this.alarm(`${pipeline}-${destination}-transform-records-failed`, failedShare, {
      threshold: percent, comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD, evaluationPeriods: 3, datapointsToAlarm: 2,
      description: `${pipeline}: the ${destination} transform failed over ${percent}% of the records it returned (RecordsFailed / (RecordsOk + RecordsFailed)) in 2 of the `
        + `last 3 five-minute periods: a schema that refuses what producers send, or producers sending a new format. The records go under `
        + `${destination === 'lake' ? `errors/${pipeline}` : `search-backup/${pipeline}`}/processing-failed/ and to the dead-letter queue. The dashboard's `
        + `"${pipeline}: records failed, by reason" graph says why (the transform's log group ${transform.logGroup.logGroupName} names each record); fix the schema or `
        + `the producers, deploy, then run \`${this.replayCommand}\`.`,
    });
  }

  /**
   * Alarms when a pipeline's transforms failed records, or its lake stream failed conversions or refused records past its
   * partition quota (each written by Firehose
   * as an error object under errors/ or search-backup/) for 30 minutes and the failure router was not invoked once: the
   * bucket's notifications to it, or its permission to be invoked by S3, are gone, and dlq-new-messages stays silent.
   * One alarm per pipeline: an alarm's metric math may read at most 10 metrics.
   */
  private routerNotInvokedAlarm(p: MonitoredPipeline): cloudwatch.Alarm {
    const router = this.failureRouter.function.function;
    const given: Record<string, cloudwatch.IMetric> = {};
    for (const t of p.transforms) given[`failed_${t.destination}`] = t.function.metricRecords('failed');
    if (p.lake) {
      given.failed_conversion = p.lake.metricFailedConversions();
      // Records past the active-partition quota are written as error objects too (activePartitionExceeded).
      given.partitions_exceeded = p.lake.metricPartitionCountExceeded();
    }
    const prefixes = [...(p.lake ? [`errors/${p.name}/`] : []), ...(p.search ? [`search-backup/${p.name}/`] : [])].join(' and ');
    // An error object, and the router's invocation for it, comes up to the processor's and the S3 buffering after the
    // failure (the lake stream's own; the search stream's backup's): periods of that much without an invocation are what a
    // working router shows, so they do not alarm alone.
    const s3Buffering = [p.lake?.bufferingInterval, p.search?.backupBufferingInterval].map((d) => d?.toSeconds() ?? 0);
    const bufferedSeconds = (p.processorIntervalSeconds ?? 60) + Math.max(...s3Buffering) + 60;
    const periods = Math.max(2, Math.ceil(bufferedSeconds / (ALARM_THRESHOLDS.readerStallPeriodMinutes * 60)) + 1);
    return this.idleWhileAlarm(`${p.name}-failure-router-not-invoked`, given, 'records failed', router.metricInvocations({ statistic: 'Sum' }), 'failure-router invocations',
      `${p.name}: for ${periods * ALARM_THRESHOLDS.readerStallPeriodMinutes} minutes the transforms failed records (RecordsFailed)${p.lake ? ', Firehose failed Parquet conversions (FailedConversion.Records) or refused records past the partition quota (PartitionCountExceeded)' : ''} and the `
      + `failure router was not invoked once: error objects under ${prefixes} reach neither the dead-letter queue nor dlq-new-messages. The data bucket's `
      + `event notifications to the router (${router.functionName}), or its permission to be invoked by S3, were removed or replaced: `
      + 'aws s3api get-bucket-notification-configuration --bucket <DataBucketName> should list it for errors/ and search-backup/. Deploy the stack again to '
      + `restore them, then invoke the router for the error objects written meanwhile as docs/deploy.md ("When the failure router gives up") describes, and run \`${this.replayCommand}\`.`, periods);
  }

  /** The replay command, against this deployed stack (without --aws and --stack it would target the local twin, or the default stack). */
  private get replayCommand(): string {
    return `npx sluice replay --aws --stack ${Stack.of(this).stackName}`;
  }

  /**
   * Alarms when `stream` received records and the reader's `read` count was nothing, in each of 2 periods running. A
   * reader that does not read publishes none of its metrics, so its missing data counts as 0 (FILL); a period in which the
   * stream received nothing is 0 too, so no traffic is no alarm.
   */
  private stallAlarm(id: string, stream: PipelineStream, read: cloudwatch.IMetric, readLabel: string, description: string): cloudwatch.Alarm {
    return this.idleWhileAlarm(id, { incoming: stream.metricIncomingRecords() }, 'stream received records', read, readLabel, description);
  }

  /**
   * Alarms when any of `given` counted something and `read` counted nothing, in each of `periods` periods of
   * readerStallPeriodMinutes running (2: 30 minutes). Missing data of either side is 0 (FILL): a reader that does not run
   * publishes nothing, and nothing given is no alarm. The keys of `given` are the expression's ids.
   */
  private idleWhileAlarm(
    id: string, given: Record<string, cloudwatch.IMetric>, givenLabel: string, read: cloudwatch.IMetric, readLabel: string, description: string, periods = 2,
  ): cloudwatch.Alarm {
    const anyGiven = Object.keys(given).map((k) => `FILL(${k}, 0)`).join(' + ');
    const idle = new cloudwatch.MathExpression({
      expression: `IF(${anyGiven} > 0 AND FILL(read, 0) == 0, 1, 0)`,
      usingMetrics: { ...given, read },
      label: `${givenLabel}, ${readLabel} none`,
      period: Duration.minutes(ALARM_THRESHOLDS.readerStallPeriodMinutes),
    });
    return this.alarm(id, idle, { threshold: 1, evaluationPeriods: periods, datapointsToAlarm: periods, description });
  }

  private alarm(id: string, metric: cloudwatch.IMetric, o: {
    threshold: number;
    evaluationPeriods: number;
    datapointsToAlarm?: number;
    comparisonOperator?: cloudwatch.ComparisonOperator;
    description: string;
  }): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(this, id, {
      // A name the docs and the runbook can give: `sluice-dev-iot-lake-partitions-exceeded`, not CloudFormation's generated one.
      alarmName: `${Stack.of(this).stackName}-${id}`,
      metric,
      threshold: o.threshold,
      evaluationPeriods: o.evaluationPeriods,
      datapointsToAlarm: o.datapointsToAlarm,
      comparisonOperator: o.comparisonOperator ?? cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      // No data means no traffic, not a failure.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: o.description,
    });
    alarm.addAlarmAction(this.action);
    alarm.addOkAction(this.action);
    this.alarms.push(alarm);
    return alarm;
  }

  /** Console URL of the dashboard. */
  get dashboardUrl(): string {
    return `https://${Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${this.dashboard.dashboardName}`;
  }
}
