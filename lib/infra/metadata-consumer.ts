import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { KinesisConsumerEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import { Construct } from 'constructs';
import { sluiceCount } from './sluice-metric';
import type { ConsumerConfig } from '../config';
import { METADATA_CONSUMER_METRICS, METADATA_CONSUMER_SERVICE, RECORDS_REPORTED_FOR_RETRY } from '../../transforms/shared/metric-names';
import { DEFAULT_DYNAMO_TIMEOUT_MS } from '../../transforms/shared/metadata-table';
import { SluiceFunction } from './function';
import { withKeyThroughKinesis } from './kinesis-grants';
import { grantItems, pipelineItemKeys, type MetadataStore } from './metadata-store';
import { acknowledgeWildcards } from './nag';
import { withSendThroughSqs } from './queues';
import { assertValidProps } from './errors';

export interface MetadataConsumerProps {
  readonly pipeline: string;
  readonly stream: kinesis.IStream;
  readonly store: MetadataStore;
  /** Batching, retries and sizing of the consumer. */
  readonly consumer: ConsumerConfig;
  /** Days metadata items live before DynamoDB's TTL removes them. */
  readonly ttlDays: number;
  /** @default RemovalPolicy.DESTROY */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/**
 * How long the consumer waits for one DynamoDB call: the handler's default, cut to a tenth of the function timeout, so a
 * hung connection fails in time for the retries and the batch response (its retry budget is a third of what is left).
 */
export function dynamoTimeoutMs(functionTimeoutSeconds: number): number {
  return Math.max(100, Math.min(DEFAULT_DYNAMO_TIMEOUT_MS, Math.floor((functionTimeoutSeconds * 1000) / 10)));
}

/** Name of the enhanced fan-out consumer; unique per stream, so the same on every stream. */
export const METADATA_STREAM_CONSUMER_NAME = 'sluice-metadata-consumer';

/**
 * The metadata consumer Lambda reading a pipeline's stream through an enhanced fan-out consumer (its own 2 MiB/s per
 * shard, so it does not share read throughput with the Firehose streams), with bounded retries, bisection and
 * partial batch failures; batches it gives up on are reported to the on-failure queue.
 */
export class MetadataConsumer extends Construct {
  readonly function: SluiceFunction;
  readonly streamConsumer: kinesis.StreamConsumer;
  readonly eventSource: KinesisConsumerEventSource;
  /** Records older than this are not retried but sent to the consumer dead-letter queue. */
  readonly maxRecordAge: Duration;
  private readonly pipeline: string;

  constructor(scope: Construct, id: string, props: MetadataConsumerProps) {
    super(scope, id);
    const c = props.consumer;
    this.pipeline = props.pipeline;
    this.maxRecordAge = Duration.seconds(c.maxRecordAgeSeconds);
    const problems: string[] = [];
    const range = (key: string, value: number, min: number, max: number, why = '') => {
      if (!Number.isInteger(value) || value < min || value > max) problems.push(`consumer.${key} must be a whole number from ${min} to ${max}${why}, got ${value}`);
    };
    range('batchSize', c.batchSize, 1, 10000, ' (Lambda\'s Kinesis batch size)');
    range('batchWindowSeconds', c.batchWindowSeconds, 0, 300);
    range('maxRetries', c.maxRetries, 0, 10000, ' (bounded, so a poison record cannot block its shard)');
    range('maxRecordAgeSeconds', c.maxRecordAgeSeconds, 60, 604800);
    range('parallelization', c.parallelization, 1, 10);
    range('timeoutSeconds', c.timeoutSeconds, 1, 900);
    if (!Number.isInteger(props.ttlDays) || props.ttlDays < 1) problems.push(`ttlDays must be a whole number ≥ 1, got ${props.ttlDays}`);
    assertValidProps(this, problems);

    this.function = new SluiceFunction(this, 'Consumer', {
      handler: 'metadata-consumer',
      description: `Sluice ${props.pipeline}: writes record metadata to DynamoDB`,
      memoryMiB: c.memoryMiB,
      timeout: Duration.seconds(c.timeoutSeconds),
      logRemovalPolicy: props.logRemovalPolicy,
      environment: {
        SLUICE_PIPELINE: props.pipeline,
        SLUICE_METADATA_TABLE: props.store.table.tableName,
        SLUICE_METADATA_TTL_DAYS: String(props.ttlDays),
        SLUICE_DYNAMO_TIMEOUT_MS: String(dynamoTimeoutMs(c.timeoutSeconds)),
      },
    });
    // What the store sends in AWS, no more, on this pipeline's items only: PutItem and UpdateItem, alone and in
    // TransactWriteItems, which IAM checks action by action and item by item. (Its BatchGet/BatchWrite fallback is for
    // a DynamoDB without transactions, the twin's, which checks no IAM; a BatchWriteItem could delete, too.)
    grantItems(props.store.table, this.function.role, ['dynamodb:PutItem', 'dynamodb:UpdateItem'], pipelineItemKeys(props.pipeline));
    acknowledgeWildcards(this.function.role, [
      { action: 'kms:GenerateDataKey*', reason: 'From the table grant: the items are encrypted with the stack\'s data key (which also encrypts the bucket, the queues and the PII secret), used only through DynamoDB (kms:ViaService).' },
      { action: 'kms:ReEncrypt*', reason: 'From the table grant on the stack\'s data key (ReEncryptFrom/To, as DynamoDB\'s policy for a customer managed key lists), used only through DynamoDB (kms:ViaService).' },
    ]);

    this.streamConsumer = new kinesis.StreamConsumer(this, 'StreamConsumer', {
      streamConsumerName: METADATA_STREAM_CONSUMER_NAME,
      stream: props.stream,
    });
    // The mapping reads with the function's role: the stream's key only through Kinesis, as the delivery streams' roles.
    this.eventSource = new KinesisConsumerEventSource(withKeyThroughKinesis(this.streamConsumer), {
      // A new stream: start at its beginning so records written before the mapping exists are not skipped.
      startingPosition: lambda.StartingPosition.TRIM_HORIZON,
      batchSize: c.batchSize,
      maxBatchingWindow: Duration.seconds(c.batchWindowSeconds),
      bisectBatchOnError: true,
      retryAttempts: c.maxRetries,
      maxRecordAge: Duration.seconds(c.maxRecordAgeSeconds),
      parallelizationFactor: c.parallelization,
      reportBatchItemFailures: true,
      onFailure: new SqsDlq(withSendThroughSqs(props.store.consumerDlq)),
    });
    this.function.function.addEventSource(this.eventSource);
  }

  /**
   * Records the handler reported as failed (batchItemFailures: DynamoDB writes that failed), per 5 minutes. Lambda
   * retries them and in the end sends their range to the consumer dead-letter queue; the function's Errors never see them.
   */
  metricRecordsReportedForRetry(): cloudwatch.Metric {
    return this.emfCount(RECORDS_REPORTED_FOR_RETRY);
  }

  /**
   * The handler's other counts per 5 minutes (its EMF metrics): events written to the table, events already there
   * (a retried or re-read record), records it could not read, DynamoDB write retries.
   */
  metricOutcome(outcome: keyof typeof METADATA_CONSUMER_METRICS): cloudwatch.Metric {
    return this.emfCount(METADATA_CONSUMER_METRICS[outcome]);
  }

  /**
   * How far behind the stream's tip the consumer reads, milliseconds. Lambda publishes it when the function finishes a
   * batch: a consumer that is not invoked publishes none (metricInvocations tells).
   */
  metricIteratorAge(): cloudwatch.Metric {
    return this.function.function.metric('IteratorAge', { statistic: 'Maximum', period: Duration.minutes(5) });
  }

  private emfCount(metricName: string): cloudwatch.Metric {
    return sluiceCount(metricName, { service: METADATA_CONSUMER_SERVICE, pipeline: this.pipeline });
  }
}
