import { Aws } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';

/** The AWS services whose requests for a principal may use a Sluice key (kms:ViaService `<service>.<region>.amazonaws.com`). */
export type KeyUsingService = 'dynamodb' | 'sqs' | 's3';

/**
 * Lets `grantee` use `key` only in the requests `service` makes to AWS KMS on its behalf: kms:ViaService, which "limits
 * use of a KMS key to requests from specified AWS services" (AWS KMS developer guide, "kms:ViaService",
 * https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service; DynamoDB,
 * Amazon SQS and Amazon S3 are in its table of services). The key's own grant* methods allow its use from anywhere:
 * with the stack-wide data key, a role could then decrypt any data key of the bucket, the queues or the table.
 */
export function grantKeyThrough(key: kms.IKey, grantee: iam.IGrantable, service: KeyUsingService, actions: readonly string[]): iam.Grant {
  return iam.Grant.addToPrincipal({
    grantee,
    actions: [...actions],
    resourceArns: [key.keyArn],
    conditions: { StringEquals: { 'kms:ViaService': `${service}.${Aws.REGION}.amazonaws.com` } },
  });
}
