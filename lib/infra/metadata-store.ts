import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
// The key schema the consumer and the failure router write: one definition for the table and its writers.
import { METADATA_TABLE_KEYS } from '../../transforms/shared/metadata-table';
import { deadLetterQueue } from './queues';


export interface MetadataStoreProps {
  /** Name of the consumers' on-failure queue (from resourceNames). */
  readonly consumerDlqName: string;
  /** Encrypts the table and the queue. */
  readonly key: kms.IKey;
  readonly removalPolicy: RemovalPolicy;
}

/**
 * The DynamoDB table the metadata consumers write (last-seen entities, counters; the failure router's dedupe
 * ledger too) and the queue that receives the batches the consumers give up on (shard and sequence range only).
 */
export class MetadataStore extends Construct {
  readonly table: dynamodb.Table;
  /** On-failure destination of every consumer's event source mapping. */
  readonly consumerDlq: sqs.Queue;

  constructor(scope: Construct, id: string, props: MetadataStoreProps) {
    super(scope, id);
    // Table, not TableV2: a TableV2 with a customer-managed key needs a concrete region, and the stack is
    // environment-agnostic.
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: METADATA_TABLE_KEYS.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: METADATA_TABLE_KEYS.sortKey, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: METADATA_TABLE_KEYS.ttlAttribute,
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: props.key,
      deletionProtection: props.removalPolicy === RemovalPolicy.RETAIN,
      removalPolicy: props.removalPolicy,
    });

    this.consumerDlq = deadLetterQueue(this, 'ConsumerDlq', {
      queueName: props.consumerDlqName,
      key: props.key,
      removalPolicy: props.removalPolicy,
      whyNoDlq: 'This queue is itself a dead-letter queue: the on-failure destination of the metadata consumers\' event source mappings, which cdk-nag does not recognise as one.',
    });
  }

  /**
   * Age of the oldest notice in the consumer dead-letter queue, seconds: a notice names a sequence range of a stream,
   * which can be read again only within the stream's retention.
   */
  metricConsumerDlqAge(): cloudwatch.Metric {
    return this.consumerDlq.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: Duration.minutes(5) });
  }

  /** Writes to the table DynamoDB throttled (consumers and the failure router retry them), per 5 minutes. */
  metricWriteThrottles(): cloudwatch.Metric {
    return this.table.metric('WriteThrottleEvents', { statistic: 'Sum', period: Duration.minutes(5) });
  }

  /** Notices of batches the consumers gave up on. */
  metricConsumerDlqDepth(): cloudwatch.Metric {
    return this.consumerDlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(5) });
  }
}
