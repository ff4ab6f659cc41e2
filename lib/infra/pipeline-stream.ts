import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { acknowledgeRule } from './nag';
import { assertValidProps } from './errors';

export interface PipelineStreamProps {
  readonly streamName: string;
  /** Provisioned shard count, or 'on-demand'. */
  readonly shards: number | 'on-demand';
  /** Retention, 24–8760 hours. */
  readonly retentionHours: number;
  /**
   * 'aws-managed' uses the aws/kinesis key; 'customer-managed' creates a key for this stream alone, so that access to
   * its records can be granted, audited and revoked through the key policy (the transactions pipeline carries PII).
   */
  readonly encryption: 'aws-managed' | 'customer-managed';
  readonly removalPolicy: RemovalPolicy;
}

/** The Kinesis data stream producers write to; Firehose streams and the metadata consumer read it. */
export class PipelineStream extends Construct {
  readonly stream: kinesis.Stream;
  /** The stream's own key, when `encryption` is 'customer-managed'. */
  readonly key?: kms.Key;
  /** How long the stream keeps records: past it, a sequence range a dead letter names can no longer be read. */
  readonly retention: Duration;
  /** Its provisioned shard count, or 'on-demand'. */
  readonly shards: number | 'on-demand';

  constructor(scope: Construct, id: string, props: PipelineStreamProps) {
    super(scope, id);
    const problems: string[] = [];
    if (props.shards !== 'on-demand' && (!Number.isInteger(props.shards) || props.shards < 1 || props.shards > 500)) {
      problems.push(`shards must be "on-demand" or a whole number from 1 to 500, got ${props.shards}`);
    }
    if (!Number.isInteger(props.retentionHours) || props.retentionHours < 24 || props.retentionHours > 8760) {
      problems.push(`retentionHours must be a whole number from 24 to 8760 (Kinesis allows 1 to 365 days), got ${props.retentionHours}`);
    }
    assertValidProps(this, problems);
    this.retention = Duration.hours(props.retentionHours);
    this.shards = props.shards;

    if (props.encryption === 'customer-managed') {
      this.key = new kms.Key(this, 'Key', {
        description: `Encrypts the Kinesis stream ${props.streamName}`,
        enableKeyRotation: true,
        removalPolicy: props.removalPolicy,
      });
    }
    const onDemand = props.shards === 'on-demand';
    this.stream = new kinesis.Stream(this, 'Stream', {
      streamName: props.streamName,
      streamMode: onDemand ? kinesis.StreamMode.ON_DEMAND : kinesis.StreamMode.PROVISIONED,
      shardCount: onDemand ? undefined : (props.shards as number),
      retentionPeriod: this.retention,
      encryption: this.key ? kinesis.StreamEncryption.KMS : kinesis.StreamEncryption.MANAGED,
      encryptionKey: this.key,
      removalPolicy: props.removalPolicy,
    });
    if (this.key) {
      acknowledgeRule(this.stream, 'AwsSolutions-KDS3',
        'Encrypted with a customer-managed key on purpose: the pipeline carries PII, and the stream has a key of its own, whose every use CloudTrail logs and whose grants (the roles that read or write this stream, through IAM: the key policy delegates to the account) can be revoked for this stream alone.');
    }
  }

  /** Age of the oldest record not yet read by the polling consumers (the Firehose streams), in milliseconds. */
  metricIteratorAge(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stream.metricGetRecordsIteratorAgeMilliseconds({ statistic: 'Maximum', period: Duration.minutes(5), ...props });
  }

  /** Records producers put to the stream, per 5 minutes. */
  metricIncomingRecords(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stream.metricIncomingRecords({ statistic: 'Sum', period: Duration.minutes(5), ...props });
  }

  /** Records rejected because the stream had no write capacity left. */
  metricWriteThrottles(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.stream.metricWriteProvisionedThroughputExceeded({ statistic: 'Sum', period: Duration.minutes(5), ...props });
  }
}
