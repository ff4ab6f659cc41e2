import { Aws, Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as glue from 'aws-cdk-lib/aws-glue';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { dataRoot, ERRORS_ROOT, firehoseDataPrefix, firehoseErrorPrefix, type SchemaModel } from '../schema';
import { withGrant } from './grant-override';
import { readAndPut } from './s3-grants';
import { FirehoseKinesisSource } from './kinesis-grants';
import { acknowledgeRule, acknowledgeWildcards } from './nag';
import { TransformProcessor, transformInvocationProblems, type TransformInvocation } from './transform-processor';
import { assertValidProps } from './errors';
import { ACTIVE_PARTITION_QUOTA, LAKE_RETRY_SECONDS } from '../config/delivery';

export interface LakeDeliveryProps {
  readonly deliveryStreamName: string;
  /** The pipeline's schema: the prefix's partition keys come from it. */
  readonly model: SchemaModel;
  /** Where Parquet lands (data/<pipeline>/…) and error objects go (errors/<pipeline>/…). */
  readonly bucket: s3.IBucket;
  /** The Glue table whose columns are the Parquet schema. */
  readonly table: glue.CfnTable;
  /** The Kinesis stream to read. @default - DirectPut: applications write to the delivery stream */
  readonly source?: kinesis.IStream;
  /** The record-transform Lambda in lake mode: validates, enriches, returns partition keys. */
  readonly transform: lambda.IFunction;
  readonly transformInvocation: TransformInvocation;
  /** Flush after this much data (Firehose: 64–128 MiB with Parquet conversion). @default Size.mebibytes(128) */
  readonly bufferingSize?: Size;
  /** Flush after this long (Firehose: 60–900 s with dynamic partitioning). @default Duration.seconds(300) */
  readonly bufferingInterval?: Duration;
  /** How long Firehose retries delivering a partition before it becomes an error object. @default Duration.seconds(LAKE_RETRY_SECONDS), 300 */
  readonly retryDuration?: Duration;
  /** The stream's active-partition quota, for the alarms (Firehose enforces its own). @default ACTIVE_PARTITION_QUOTA, 500 */
  readonly activePartitionQuota?: number;
  /** @default RemovalPolicy.DESTROY */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** Delivery log retention. */
const DELIVERY_LOG_RETENTION = logs.RetentionDays.ONE_MONTH;

/** Longest `Prefix` a Firehose S3 destination takes (CreateDeliveryStream, ExtendedS3DestinationConfiguration.Prefix). */
const FIREHOSE_PREFIX_MAX_LENGTH = 1024;

/**
 * A Firehose stream that writes a pipeline's records to the lake: the transform Lambda validates and enriches
 * each record and returns its partition keys, Firehose converts to Parquet (Snappy) through the pipeline's
 * Glue table and writes data/<pipeline>/<partition>=…/; failures land under errors/<pipeline>/<error type>/.
 */
export class LakeDelivery extends Construct {
  readonly deliveryStream: firehose.DeliveryStream;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  /** The buffering interval, for freshness alarms. */
  readonly bufferingInterval: Duration;
  /** True when the source is a Kinesis stream. */
  readonly kinesisSource: boolean;
  /** Partitions the stream may hold open at once (its quota: 500 unless raised on request, up to 5,000). */
  readonly activePartitionQuota: number;

  /** The delivery stream's name, as SearchDelivery gives its own. */
  get deliveryStreamName(): string {
    return this.deliveryStream.deliveryStreamName;
  }

  constructor(scope: Construct, id: string, props: LakeDeliveryProps) {
    super(scope, id);
    const size = props.bufferingSize ?? Size.mebibytes(128);
    this.bufferingInterval = props.bufferingInterval ?? Duration.seconds(300);
    this.activePartitionQuota = props.activePartitionQuota ?? ACTIVE_PARTITION_QUOTA;
    const retry = props.retryDuration ?? Duration.seconds(LAKE_RETRY_SECONDS);
    const problems = transformInvocationProblems(props.transformInvocation);
    const mib = size.toKibibytes() / 1024;
    if (mib < 64 || mib > 128) {
      problems.push(`bufferingSize must be 64–128 MiB (Firehose's range with Parquet conversion and dynamic partitioning), got ${mib} MiB`);
    }
    const interval = this.bufferingInterval.toSeconds();
    if (interval < 60 || interval > 900) {
      problems.push(`bufferingInterval must be 60–900 s (Firehose's range with dynamic partitioning), got ${interval} s`);
    }
    if (!Number.isInteger(this.activePartitionQuota) || this.activePartitionQuota < ACTIVE_PARTITION_QUOTA || this.activePartitionQuota > 5000) {
      problems.push(`activePartitionQuota must be a whole number from ${ACTIVE_PARTITION_QUOTA} to 5,000 (Firehose's quota, raised on request up to 5,000), got ${this.activePartitionQuota}`);
    }
    if (retry.toSeconds() < 0 || retry.toSeconds() > 7200) {
      problems.push(`retryDuration must be 0–7200 s, got ${retry.toSeconds()} s`);
    }
    if (!/^[a-zA-Z0-9_.-]{1,64}$/.test(props.deliveryStreamName)) {
      problems.push(`deliveryStreamName "${props.deliveryStreamName}" must be 1–64 letters, digits, "_", "." or "-"`);
    }
    // Each partition field is in the prefix twice (`<name>=!{partitionKeyFromLambda:<name>}/`), and a Glue column may have 255 characters.
    const dataPrefix = firehoseDataPrefix(props.model);
    if (dataPrefix.length > FIREHOSE_PREFIX_MAX_LENGTH) {
      const fields = props.model.extensions.partitionFields;
      problems.push(`the data prefix of pipeline "${props.model.pipeline}" would be ${dataPrefix.length} characters (each partition field's name is in it twice); `
        + `Firehose allows ${FIREHOSE_PREFIX_MAX_LENGTH}: shorten or drop some of x-sluice.partitionFields (${fields.map((f) => `"${f}"`).join(', ')}) in schemas/${props.model.pipeline}.schema.json, or rename their columns with x-sluice.columns`);
    }
    assertValidProps(this, problems);
    this.kinesisSource = props.source !== undefined;

    this.role = new iam.Role(this, 'Role', {
      description: `Firehose ${props.deliveryStreamName}: reads the source, invokes the transform, writes the lake`,
      assumedBy: new iam.ServicePrincipal('firehose.amazonaws.com', {
        conditions: { StringEquals: { 'sts:ExternalId': Aws.ACCOUNT_ID } },
      }),
    });
    this.logGroup = new logs.LogGroup(this, 'DeliveryLogs', {
      retention: DELIVERY_LOG_RETENTION,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.DESTROY,
    });

    // The L2 destination grants read/write on the whole bucket; this stream gets read and put under its own two prefixes only.
    const destination = new firehose.S3Bucket(withGrantsUnder(props.bucket, [`${dataRoot(props.model.pipeline)}*`, `${ERRORS_ROOT}/${props.model.pipeline}/*`]), {
      role: this.role,
      dataOutputPrefix: dataPrefix,
      errorOutputPrefix: firehoseErrorPrefix(props.model.pipeline),
      bufferingSize: size,
      bufferingInterval: this.bufferingInterval,
      processors: [new TransformProcessor(props.transform, props.transformInvocation)],
      dataFormatConversion: {
        schemaConfiguration: firehose.SchemaConfiguration.fromCfnTable(props.table),
        // The transform writes column names already, so no key mapping is needed.
        inputFormat: firehose.InputFormat.OPENX_JSON,
        outputFormat: new firehose.ParquetOutputFormat({ compression: firehose.ParquetCompression.SNAPPY }),
      },
      dynamicPartitioning: { enabled: true, retryDuration: retry },
      loggingConfig: new firehose.EnableLogging(this.logGroup),
    });

    this.deliveryStream = new firehose.DeliveryStream(this, 'DeliveryStream', {
      deliveryStreamName: props.deliveryStreamName,
      destination,
      role: this.role,
      source: props.source ? new FirehoseKinesisSource(props.source) : undefined,
      // Server-side encryption applies to DirectPut only; a Kinesis source is encrypted on the stream itself.
      encryption: props.source ? undefined : firehose.StreamEncryption.awsOwnedKey(),
    });

    // The L2 adds a region → Firehose CIDR mapping to every stack it is in (for Redshift and Splunk security groups);
    // with an S3 destination nothing looks it up.
    acknowledgeRule(Stack.of(this), 'CloudFormation-Validate::W7001',
      'The unreferenced mapping is the Firehose CIDR table the DeliveryStream L2 always adds; unused with an S3 destination.');
    if (props.source) {
      acknowledgeRule(this.deliveryStream, 'AwsSolutions-KDF1',
        'Firehose rejects server-side encryption on a stream with a Kinesis source; the source Kinesis stream is KMS-encrypted and Firehose keeps records encrypted in transit.');
    }
    acknowledgeWildcards(this.role, [
      { resource: `${props.bucket.bucketArn}/${dataRoot(props.model.pipeline)}*`, reason: 'Firehose writes this pipeline\'s Parquet objects under data/<pipeline>/ (partition prefixes evaluated at delivery).' },
      { resource: `${props.bucket.bucketArn}/${ERRORS_ROOT}/${props.model.pipeline}/*`, reason: 'Firehose writes this pipeline\'s error objects under errors/<pipeline>/ (error type and hour evaluated at delivery).' },
      { resource: '*', reason: 'glue:GetSchemaVersion on "*" is added by the L2 SchemaConfiguration.fromCfnTable (for the Glue Schema Registry, which this stack does not use) and cannot be removed from it; the Glue table actions themselves are scoped to the table.' },
    ]);
  }

  /** Age of the oldest record not yet delivered to S3, seconds. */
  metricDataFreshness(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deliveryStream.metric('DeliveryToS3.DataFreshness', { statistic: 'Maximum', period: Duration.minutes(5), ...props });
  }

  /** Share of successful S3 puts (1 = all succeeded). */
  metricDeliverySuccess(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deliveryStream.metric('DeliveryToS3.Success', { statistic: 'Average', period: Duration.minutes(5), ...props });
  }

  /** Records throttled: PutRecord(Batch) for DirectPut, reads from the stream for a Kinesis source. */
  metricThrottledRecords(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    const name = this.kinesisSource ? 'ThrottledGetRecords' : 'ThrottledRecords';
    return this.deliveryStream.metric(name, { statistic: 'Sum', period: Duration.minutes(5), ...props });
  }

  /**
   * 1 while more partitions are open in the delivery buffer than the stream's quota (activePartitionQuota; ACTIVE_PARTITION_QUOTA in
   * lib/config/delivery.ts; up to 5,000 on request): the records past it go to the error prefix as activePartitionExceeded.
   */
  metricPartitionCountExceeded(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deliveryStream.metric('PartitionCountExceeded', { statistic: 'Maximum', period: Duration.minutes(5), ...props });
  }

  /** Partitions open in the delivery buffer (dynamic partitioning). */
  metricPartitionCount(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deliveryStream.metric('PartitionCount', { statistic: 'Maximum', period: Duration.minutes(5), ...props });
  }

  /**
   * Share of the transform's invocations that succeeded (1 = all). Firehose retries a failed invocation, then writes
   * its records under errors/<pipeline>/processing-failed/.
   */
  metricProcessingSuccess(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deliveryStream.metric('ExecuteProcessing.Success', { statistic: 'Average', period: Duration.minutes(5), ...props });
  }

  /**
   * How far the last record this stream read is behind the newest of its Kinesis source, milliseconds: this reader's own
   * lag, which the stream's GetRecords.IteratorAgeMilliseconds (one value over all its readers) can hide.
   */
  metricMillisBehindLatest(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deliveryStream.metric('KinesisMillisBehindLatest', { statistic: 'Maximum', period: Duration.minutes(5), ...props });
  }

  /**
   * Records this stream read from its Kinesis source, per 5 minutes. Its lag (metricMillisBehindLatest) and freshness come
   * from records it has read: a stream that cannot read its source shows only here, as none read.
   */
  metricRecordsReadFromStream(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deliveryStream.metric('DataReadFromKinesisStream.Records', { statistic: 'Sum', period: Duration.minutes(5), ...props });
  }

  /** Records Firehose could not convert to Parquet (written under errors/<pipeline>/format-conversion-failed/). */
  metricFailedConversions(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deliveryStream.metric('FailedConversion.Records', { statistic: 'Sum', period: Duration.minutes(5), ...props });
  }

  /** Records that reached the delivery stream. */
  metricIncomingRecords(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.deliveryStream.metricIncomingRecords({ statistic: 'Sum', period: Duration.minutes(5), ...props });
  }
}

/**
 * `bucket`, except that `grantReadWrite` grants what `readAndPut` does under `keyPatterns` only (the
 * bucket-level actions, such as listing multipart uploads, stay on the bucket). The L2 S3Bucket
 * destination calls `grantReadWrite(role)` with no pattern, which would let every pipeline's stream
 * overwrite or delete every other pipeline's data, the Athena results and the search backups, and use
 * the data key outside S3; and Firehose deletes nothing (AWS lists AbortMultipartUpload,
 * GetBucketLocation, GetObject, ListBucket, ListBucketMultipartUploads and PutObject for its role).
 */
function withGrantsUnder(bucket: s3.IBucket, keyPatterns: readonly string[]): s3.IBucket {
  return withGrant(bucket, 'grantReadWrite', (grantee) => readAndPut(bucket, grantee, keyPatterns));
}
