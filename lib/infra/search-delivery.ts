import { Aws, Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { IndexRotation } from '../config';
import { searchBackupPrefix, searchErrorPrefix, type SchemaModel } from '../schema';
import { readAndPut } from './s3-grants';
import { grantFirehoseRead } from './kinesis-grants';
import { acknowledgeRule, acknowledgeWildcards } from './nag';
import { firehoseMonitorPaths, type SearchDomain } from './search-domain';
import { grantTransformInvoke, transformInvocationProblems, transformProcessorParameters, type TransformInvocation } from './transform-processor';
import { assertValidProps } from './errors';

export interface SearchDeliveryProps {
  readonly deliveryStreamName: string;
  readonly model: SchemaModel;
  /** Index name; Firehose appends the rotation suffix (-YYYY-MM-DD for OneDay). */
  readonly indexName: string;
  readonly domain: SearchDomain;
  /** The pipeline's Kinesis stream. */
  readonly source: kinesis.IStream;
  /** Documents OpenSearch refuses are backed up under search-backup/<pipeline>/ in this bucket. */
  readonly bucket: s3.IBucket;
  /** The record-transform Lambda in search mode. */
  readonly transform: lambda.IFunction;
  readonly transformInvocation: TransformInvocation;
  /** Firehose: 1–100 MiB. @default 5 */
  readonly bufferingSizeMiB?: number;
  /** Firehose: 0–900 s. @default 60 */
  readonly bufferingIntervalSeconds?: number;
  /** How long Firehose retries a failed bulk request before backing the documents up, 0–7200 s. @default 300 */
  readonly retrySeconds?: number;
  /** Index rotation; the index template matches <indexName>-*, so a rotation is required. @default 'OneDay' */
  readonly rotation?: IndexRotation;
  /** @default RemovalPolicy.DESTROY */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** The search stream's S3 backup buffers this long (Firehose's default). */
const BACKUP_BUFFERING_SECONDS = 300;

/**
 * A Firehose stream from the pipeline's Kinesis stream to OpenSearch (the L1 destination, which the L2 module does
 * not offer), through the same transform Lambda in search mode; documents OpenSearch refuses go to S3.
 */
export class SearchDelivery extends Construct {
  readonly deliveryStream: firehose.CfnDeliveryStream;
  readonly deliveryStreamName: string;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  readonly bufferingInterval: Duration;
  /** The S3 backup's buffering interval: how long the records the transform failed and the documents OpenSearch refused wait before search-backup/ gets them. */
  readonly backupBufferingInterval = Duration.seconds(BACKUP_BUFFERING_SECONDS);

  constructor(scope: Construct, id: string, props: SearchDeliveryProps) {
    super(scope, id);
    const size = props.bufferingSizeMiB ?? 5;
    const interval = props.bufferingIntervalSeconds ?? 60;
    const retry = props.retrySeconds ?? 300;
    const rotation = props.rotation ?? 'OneDay';
    const problems = transformInvocationProblems(props.transformInvocation);
    if (!Number.isInteger(size) || size < 1 || size > 100) problems.push(`bufferingSizeMiB must be a whole number from 1 to 100 (Firehose's range for OpenSearch), got ${size}`);
    if (!Number.isInteger(interval) || interval < 0 || interval > 900) problems.push(`bufferingIntervalSeconds must be a whole number from 0 to 900, got ${interval}`);
    if (!Number.isInteger(retry) || retry < 0 || retry > 7200) problems.push(`retrySeconds must be a whole number from 0 to 7200, got ${retry}`);
    if (rotation === 'NoRotation') {
      problems.push(`rotation "NoRotation" writes to the index "${props.indexName}", which the index template pattern "${props.indexName}-*" does not match; use OneHour, OneDay, OneWeek or OneMonth`);
    }
    if (!/^[a-z0-9][a-z0-9_-]*$/.test(props.indexName) || props.indexName.length > 80) {
      problems.push(`indexName "${props.indexName}" must be at most 80 lower-case letters, digits, "_" and "-" (Firehose and OpenSearch index rules)`);
    }
    if (!/^[a-zA-Z0-9_.-]{1,64}$/.test(props.deliveryStreamName)) {
      problems.push(`deliveryStreamName "${props.deliveryStreamName}" must be 1–64 letters, digits, "_", "." or "-"`);
    }
    assertValidProps(this, problems);
    this.deliveryStreamName = props.deliveryStreamName;
    this.bufferingInterval = Duration.seconds(interval);

    this.role = new iam.Role(this, 'Role', {
      description: `Firehose ${props.deliveryStreamName}: reads the stream, invokes the transform, writes to OpenSearch`,
      assumedBy: new iam.ServicePrincipal('firehose.amazonaws.com', {
        conditions: { StringEquals: { 'sts:ExternalId': Aws.ACCOUNT_ID } },
      }),
    });
    this.logGroup = new logs.LogGroup(this, 'DeliveryLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.DESTROY,
    });
    const deliveryLogStream = this.logGroup.addStream('DestinationDelivery');
    const backupLogStream = this.logGroup.addStream('BackupDelivery');

    grantFirehoseRead(props.source, this.role);
    const backupPrefix = searchBackupPrefix(props.model.pipeline);
    readAndPut(props.bucket, this.role, [`${backupPrefix}*`]);
    this.logGroup.grantWrite(this.role);
    grantTransformInvoke(props.transform, this.role);
    // Firehose describes the domain when it starts, writes with _bulk to this stream's indices (<index>-<rotation suffix>),
    // and reads the cluster's and the index's settings and stats: the paths AWS's policy for the role lists, no others.
    const indices = `${props.indexName}-*`;
    props.domain.grant(this.role, 'deliver', ['_bulk', indices]);
    props.domain.grant(this.role, 'monitor', firehoseMonitorPaths(indices));
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({
      actions: ['es:DescribeDomain', 'es:DescribeDomains', 'es:DescribeDomainConfig'],
      resources: [props.domain.domainArn],
    }));

    this.deliveryStream = new firehose.CfnDeliveryStream(this, 'DeliveryStream', {
      deliveryStreamName: props.deliveryStreamName,
      deliveryStreamType: 'KinesisStreamAsSource',
      kinesisStreamSourceConfiguration: { kinesisStreamArn: props.source.streamArn, roleArn: this.role.roleArn },
      amazonopensearchserviceDestinationConfiguration: {
        domainArn: props.domain.domainArn,
        indexName: props.indexName,
        indexRotationPeriod: rotation,
        roleArn: this.role.roleArn,
        bufferingHints: { intervalInSeconds: interval, sizeInMBs: size },
        retryOptions: { durationInSeconds: retry },
        // Firehose assigns each record a document id, so its own retries overwrite instead of duplicating.
        documentIdOptions: { defaultDocumentIdFormat: 'FIREHOSE_DEFAULT' },
        s3BackupMode: 'FailedDocumentsOnly',
        s3Configuration: {
          bucketArn: props.bucket.bucketArn,
          roleArn: this.role.roleArn,
          prefix: backupPrefix,
          errorOutputPrefix: searchErrorPrefix(props.model.pipeline),
          // Uncompressed, so the failure router reads backups the way it reads error objects.
          compressionFormat: 'UNCOMPRESSED',
          bufferingHints: { intervalInSeconds: BACKUP_BUFFERING_SECONDS, sizeInMBs: 5 },
          cloudWatchLoggingOptions: { enabled: true, logGroupName: this.logGroup.logGroupName, logStreamName: backupLogStream.logStreamName },
        },
        processingConfiguration: {
          enabled: true,
          processors: [{ type: 'Lambda', parameters: transformProcessorParameters(props.transform, this.role, props.transformInvocation) }],
        },
        cloudWatchLoggingOptions: { enabled: true, logGroupName: this.logGroup.logGroupName, logStreamName: deliveryLogStream.logStreamName },
      },
    });
    // Firehose checks its permissions when the stream is created: the role's policy must exist first.
    this.deliveryStream.node.addDependency(this.role);
    if (props.domain.domain) this.deliveryStream.node.addDependency(props.domain.domain);

    acknowledgeRule(this.deliveryStream, 'AwsSolutions-KDF1',
      'Firehose rejects server-side encryption on a stream with a Kinesis source; the source Kinesis stream is KMS-encrypted.');
    acknowledgeWildcards(this.role, [
      { resource: `${props.bucket.bucketArn}/${backupPrefix}*`, reason: 'Backups of refused documents, under this pipeline\'s search-backup prefix only.' },
    ]);
  }

  private metric(name: string, statistic: string): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: 'AWS/Firehose',
      metricName: name,
      dimensionsMap: { DeliveryStreamName: this.deliveryStreamName },
      statistic,
      period: Duration.minutes(5),
    });
  }

  /** Age of the oldest record not yet indexed, seconds. */
  metricDataFreshness(): cloudwatch.Metric {
    return this.metric('DeliveryToAmazonOpenSearchService.DataFreshness', 'Maximum');
  }

  /** Share of documents indexed successfully. */
  metricDeliverySuccess(): cloudwatch.Metric {
    return this.metric('DeliveryToAmazonOpenSearchService.Success', 'Average');
  }

  /**
   * Share of the S3 puts of the backup that succeeded (1 = all): documents OpenSearch refused and records the transform
   * failed, written under search-backup/<pipeline>/. For an OpenSearch destination Firehose names its backup's metrics
   * DeliveryToS3.* (BackupToS3.* is an S3 destination's backup of its source records, which this stream has not); the
   * Firehose metrics reference says it is published whatever the backup mode.
   */
  metricBackupSuccess(): cloudwatch.Metric {
    return this.metric('DeliveryToS3.Success', 'Average');
  }

  /** How far the last record this stream read is behind the newest of the Kinesis stream, milliseconds (this reader's own lag). */
  metricMillisBehindLatest(): cloudwatch.Metric {
    return this.metric('KinesisMillisBehindLatest', 'Maximum');
  }

  /**
   * Records this stream read from the Kinesis stream, per 5 minutes. Its lag and freshness come from records it has
   * read: a stream that cannot read its source shows only here, as none read.
   */
  metricRecordsReadFromStream(): cloudwatch.Metric {
    return this.metric('DataReadFromKinesisStream.Records', 'Sum');
  }

  /**
   * Share of the transform's invocations that succeeded (1 = all). Firehose retries a failed invocation, then writes
   * its records under search-backup/<pipeline>/processing-failed/.
   */
  metricProcessingSuccess(): cloudwatch.Metric {
    return this.metric('ExecuteProcessing.Success', 'Average');
  }

  /** Reads from the Kinesis stream that were throttled. */
  metricThrottledRecords(): cloudwatch.Metric {
    return this.metric('ThrottledGetRecords', 'Sum');
  }
}
