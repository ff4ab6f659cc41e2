import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { sluiceCount } from './sluice-metric';
import { grantItems, SENT_LEDGER_KEYS } from './metadata-store';
import { FAILURE_PREFIXES } from '../schema';
import { FAILURE_ROUTER_SERVICE, UNROUTED_METRICS } from '../../transforms/shared/metric-names';
import { SluiceFunction } from './function';
import { grantKeyThrough } from './key-grants';
import { deadLetterQueue, grantSendThroughSqs, withSendThroughSqs } from './queues';
import { acknowledgeRule, acknowledgeWildcards } from './nag';

export interface FailureRouterProps {
  /** The data bucket whose error objects and search backups are routed. */
  readonly bucket: s3.Bucket;
  /** Holds the failure router's ledger of sent messages (one item per dedupe key). */
  readonly table: dynamodb.ITable;
  /** Name of the dead-letter queue (from resourceNames). */
  readonly dlqName: string;
  /** Name of the queue of S3 events the router gave up on after Lambda's retries (from resourceNames). */
  readonly failedEventsQueueName: string;
  /** Days the ledger's items live. */
  readonly ledgerTtlDays: number;
  /** Encrypts the queues (failed records carry the raw, unmasked payload). */
  readonly key: kms.IKey;
  readonly removalPolicy: RemovalPolicy;
}

/**
 * The dead-letter queue of failed records and the function that fills it: every error object Firehose writes
 * (errors/) and every document backup OpenSearch refused (search-backup/) is read and its records are sent to the
 * queue, from which `sluice replay` redrives them. S3 events the router could not finish within Lambda's
 * asynchronous retries go to `failedEvents` instead of being dropped, so no error object is lost unnoticed.
 */
export class FailureRouter extends Construct {
  readonly dlq: sqs.Queue;
  /** S3 events the router gave up on (Lambda's on-failure destination records: the request payload and the error). */
  readonly failedEvents: sqs.Queue;
  readonly function: SluiceFunction;

  constructor(scope: Construct, id: string, props: FailureRouterProps) {
    super(scope, id);
    this.dlq = deadLetterQueue(this, 'Dlq', {
      queueName: props.dlqName,
      key: props.key,
      removalPolicy: props.removalPolicy,
      whyNoDlq: 'This queue is the dead-letter queue of failed records; it is drained by `sluice replay`, not by a consumer that could need its own DLQ.',
    });
    this.failedEvents = deadLetterQueue(this, 'FailedEvents', {
      queueName: props.failedEventsQueueName,
      key: props.key,
      removalPolicy: props.removalPolicy,
      whyNoDlq: 'This queue is itself a dead-letter queue: the on-failure destination of the failure router\'s asynchronous invocations, drained by an operator who re-invokes the router.',
    });

    this.function = new SluiceFunction(this, 'Router', {
      handler: 'failure-router',
      description: 'Sluice: sends the records of Firehose error objects and search backups to the dead-letter queue',
      // It reads an error object as it arrives and holds a window of messages (≤ 250, ≤ 1 MiB of bodies), a chunk and
      // the line in hand (≤ ~1.4 MB: a 1,000 KiB record in base64), whatever the object's size. The size is the one
      // chosen when it held whole objects (a 175 MB one peaked at 674 MiB): Lambda gives CPU in proportion to memory,
      // and the validation of each record has not been timed at less. It runs only on failures, so it costs little.
      memoryMiB: 1536,
      timeout: Duration.minutes(5),
      logRemovalPolicy: props.removalPolicy,
      environment: {
        SLUICE_DLQ_URL: this.dlq.queueUrl,
        SLUICE_METADATA_TABLE: props.table.tableName,
        SLUICE_METADATA_TTL_DAYS: String(props.ledgerTtlDays),
      },
    });
    // The handler throws when DynamoDB or SQS fails so that Lambda retries the S3 event (safe: records already sent
    // are skipped). Without an on-failure destination, Lambda would drop the event silently once its retries are spent.
    this.function.function.configureAsyncInvoke({
      onFailure: new SqsDestination(withSendThroughSqs(this.failedEvents)),
      retryAttempts: 2,
      maxEventAge: Duration.hours(6),
    });
    const role = this.function.role;
    grantSendThroughSqs(this.dlq, role);
    // The handler reads its sent marks with BatchGetItem and writes them with BatchWriteItem, on the ledger's items only.
    grantItems(props.table, role, ['dynamodb:BatchGetItem', 'dynamodb:BatchWriteItem'], SENT_LEDGER_KEYS);
    for (const prefix of FAILURE_PREFIXES) {
      props.bucket.addEventNotification(s3.EventType.OBJECT_CREATED, new s3n.LambdaDestination(this.function.function), { prefix });
    }
    // It reads the failure objects (a pinned version with GetObjectVersion) and nothing else; ListBucket, unconditioned
    // because S3 checks it without a prefix, makes a key deleted since its event read as NoSuchKey, not AccessDenied.
    iam.Grant.addToPrincipal({ grantee: role, actions: ['s3:GetObject', 's3:GetObjectVersion'], resourceArns: FAILURE_PREFIXES.map((prefix) => props.bucket.arnForObjects(`${prefix}*`)) });
    iam.Grant.addToPrincipal({ grantee: role, actions: ['s3:ListBucket'], resourceArns: [props.bucket.bucketArn] });
    if (props.bucket.encryptionKey) grantKeyThrough(props.bucket.encryptionKey, role, 's3', ['kms:Decrypt']);

    acknowledgeWildcards(role, [
      ...FAILURE_PREFIXES.map((prefix) => ({
        resource: `${props.bucket.bucketArn}/${prefix}*`,
        reason: `Reads the failure objects under ${prefix} only (object keys are evaluated by Firehose at delivery).`,
      })),
      { action: 'kms:GenerateDataKey*', reason: 'From the ledger\'s table grant on the stack\'s data key, used only through DynamoDB (kms:ViaService); the queues get GenerateDataKey through SQS only.' },
      { action: 'kms:ReEncrypt*', reason: 'From the ledger\'s table grant on the stack\'s data key (as DynamoDB\'s policy for a customer managed key lists), used only through DynamoDB (kms:ViaService).' },
    ]);
    this.acknowledgeNotificationsHandler();
  }

  /** Failed records waiting for `sluice replay`. */
  metricDlqDepth(): cloudwatch.Metric {
    return this.dlq.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(5) });
  }

  /**
   * Messages the router sent to the dead-letter queue, per 5 minutes: new failures, whatever the queue already holds
   * (SQS counts each entry of a SendMessageBatch; a redrive policy's moves are not counted, and the queue has none).
   */
  metricDlqMessagesSent(): cloudwatch.Metric {
    return this.dlq.metricNumberOfMessagesSent({ statistic: 'Sum', period: Duration.minutes(5) });
  }

  /** Age of the oldest failed record in the dead-letter queue, seconds (SQS deletes it at DLQ_RETENTION). */
  metricDlqAge(): cloudwatch.Metric {
    return this.dlq.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: Duration.minutes(5) });
  }

  /** Age of the oldest S3 event waiting in the failed-events queue, seconds (SQS deletes it at DLQ_RETENTION). */
  metricFailedEventsAge(): cloudwatch.Metric {
    return this.failedEvents.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: Duration.minutes(5) });
  }

  /** S3 events the router gave up on, waiting for an operator to redrive them. */
  metricFailedEventsDepth(): cloudwatch.Metric {
    return this.failedEvents.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: Duration.minutes(5) });
  }

  /**
   * Records the router could not send to the dead-letter queue, per 5 minutes: error lines it could not read and
   * error objects damaged part-way (their records stay in S3 only; the router's log lines name them).
   */
  metricUnroutedRecords(): cloudwatch.IMetric {
    const count = (metricName: string) => sluiceCount(metricName, { service: FAILURE_ROUTER_SERVICE });
    return new cloudwatch.MathExpression({
      expression: 'FILL(lines, 0) + FILL(damaged, 0)',
      usingMetrics: { lines: count(UNROUTED_METRICS.unreadableLines), damaged: count(UNROUTED_METRICS.damagedObjects) },
      label: 'error lines and objects not routed',
      period: Duration.minutes(5),
    });
  }

  /** The CDK's bucket-notifications function is a stack-level singleton that `addEventNotification` created. */
  private acknowledgeNotificationsHandler(): void {
    const handler = Stack.of(this).node.children.find((c) => c.node.id.startsWith('BucketNotificationsHandler'));
    if (!handler) return;
    acknowledgeRule(handler, 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      'The CDK\'s bucket-notifications custom resource; it runs only at deploy time to configure the data bucket\'s notifications.');
  }
}
