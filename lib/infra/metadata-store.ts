import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
// The key schema the consumer and the failure router write: one definition for the table and its writers.
import { METADATA_TABLE_KEYS, metadataKeys } from '../../transforms/shared/metadata-table';
import { grantKeyThrough } from './key-grants';
import { deadLetterQueue } from './queues';

export interface MetadataStoreProps {
  /** Name of the consumers' on-failure queue (from resourceNames). */
  readonly consumerDlqName: string;
  /** Encrypts the table and the queue. */
  readonly key: kms.IKey;
  readonly removalPolicy: RemovalPolicy;
}

/**
 * Grants `actions` on the table's items whose partition key is one of `leadingKeys` (IAM's `dynamodb:LeadingKeys`, with
 * `*` matching any text), and the key's use for them. One table holds every pipeline's items and the failure router's
 * ledger: a writer reaches its own only, so a consumer cannot change another pipeline's counts or mark dead letters sent.
 */
export function grantItems(table: dynamodb.ITable, grantee: iam.IGrantable, actions: string[], leadingKeys: string[]): void {
  iam.Grant.addToPrincipal({
    grantee,
    actions,
    resourceArns: [table.tableArn],
    conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': leadingKeys } },
  });
  // What grantReadWriteData would add of the key for the items (grantEncryptDecrypt and DescribeKey, the actions of
  // DynamoDB's own policy for a table's customer managed key), through DynamoDB only.
  if (table.encryptionKey) {
    grantKeyThrough(table.encryptionKey, grantee, 'dynamodb', ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey*', 'kms:ReEncrypt*']);
  }
}

/** The partition keys of a pipeline's metadata items: its events, counters and entities. */
export function pipelineItemKeys(pipeline: string): string[] {
  return [metadataKeys.event(pipeline, '*').pk, metadataKeys.counter(pipeline, '*', '').pk, metadataKeys.entity(pipeline, '*').pk];
}

/** The partition keys of the failure router's ledger of sent dead letters. */
export const SENT_LEDGER_KEYS = [metadataKeys.dlqSent('*').pk];

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

  /**
   * Item writes DynamoDB refused because a concurrent transaction held the item, per 5 minutes: on this table, shards
   * writing one event type's counter for the same minute at once. The consumers retry them (WriteRetries); they are no
   * throttles, so WriteThrottleEvents does not show them.
   */
  metricTransactionConflicts(): cloudwatch.Metric {
    return this.table.metric('TransactionConflict', { statistic: 'Sum', period: Duration.minutes(5) });
  }

  /** Write capacity units the consumers and the failure router used on the table, per 5 minutes (on demand, what is billed). */
  metricConsumedWriteCapacity(): cloudwatch.Metric {
    return this.table.metricConsumedWriteCapacityUnits({ statistic: 'Sum', period: Duration.minutes(5) });
  }

  /**
   * Notices Lambda sent to the consumer dead-letter queue (the event source mappings' on-failure destination), per 5
   * minutes: batches newly given up on, whatever the queue already holds.
   */
  metricConsumerDlqMessagesSent(): cloudwatch.Metric {
    return this.consumerDlq.metricNumberOfMessagesSent({ statistic: 'Sum', period: Duration.minutes(5) });
  }

  /** Notices of batches the consumers gave up on. */
  metricConsumerDlqDepth(): cloudwatch.Metric {
    return this.consumerDlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(5) });
  }
}
