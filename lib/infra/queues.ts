import { Duration, type RemovalPolicy } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { withGrant } from './grant-override';
import { grantKeyThrough } from './key-grants';
import { acknowledgeRule } from './nag';
import { SQS_MAX_MESSAGE_BYTES } from '../../transforms/shared/limits';
import { DLQ_RETENTION_DAYS } from './thresholds';

/** How long a dead-letter queue keeps a message: SQS's maximum. */
export const DLQ_RETENTION = Duration.days(DLQ_RETENTION_DAYS);

export interface DeadLetterQueueProps {
  readonly queueName: string;
  /** Encrypts the queue: dead letters carry raw, unmasked records or the events that name them. */
  readonly key: kms.IKey;
  readonly removalPolicy: RemovalPolicy;
  /** Why this queue has no dead-letter queue of its own, for cdk-nag's AwsSolutions-SQS3. */
  readonly whyNoDlq: string;
}

/** A dead-letter queue as the stack makes them all: KMS with the stack's key, TLS only, kept 14 days. */
export function deadLetterQueue(scope: Construct, id: string, props: DeadLetterQueueProps): sqs.Queue {
  const queue = new sqs.Queue(scope, id, {
    queueName: props.queueName,
    encryption: sqs.QueueEncryption.KMS,
    encryptionMasterKey: props.key,
    dataKeyReuse: Duration.hours(1),
    retentionPeriod: DLQ_RETENTION,
    // Said, not left to SQS's default: the failure router fits messages (and whole batches) to it.
    maxMessageSizeBytes: SQS_MAX_MESSAGE_BYTES,
    enforceSSL: true,
    removalPolicy: props.removalPolicy,
  });
  acknowledgeRule(queue, 'AwsSolutions-SQS3', props.whyNoDlq);
  return queue;
}

/**
 * Lets `grantee` send to `queue` (the actions of the queue's grantSendMessages) and use its key only through SQS, with
 * what a producer of an encrypted queue needs: kms:GenerateDataKey and kms:Decrypt (Amazon SQS developer guide, "Key
 * management", https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html).
 * grantSendMessages adds kms:Encrypt and kms:ReEncrypt*, from anywhere.
 */
export function grantSendThroughSqs(queue: sqs.IQueue, grantee: iam.IGrantable): iam.Grant {
  const grant = queue.grant(grantee, 'sqs:SendMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl');
  if (!queue.encryptionMasterKey) return grant;
  return grant.combine(grantKeyThrough(queue.encryptionMasterKey, grantee, 'sqs', ['kms:GenerateDataKey', 'kms:Decrypt']));
}

/**
 * `queue`, except that `grantSendMessages` is `grantSendThroughSqs`: the L2 on-failure destinations (SqsDlq,
 * SqsDestination) call it for the function's role, with which Lambda sends the failure record.
 */
export function withSendThroughSqs(queue: sqs.IQueue): sqs.IQueue {
  return withGrant(queue, 'grantSendMessages', (grantee) => grantSendThroughSqs(queue, grantee));
}
