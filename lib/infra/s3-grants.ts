import { Aws } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';

/** The object actions AWS lists for a Firehose S3 destination role: no delete, no tagging, no object lock. */
export const FIREHOSE_OBJECT_ACTIONS: readonly string[] = ['s3:AbortMultipartUpload', 's3:GetObject', 's3:PutObject'];
/** The bucket actions AWS lists for a Firehose S3 destination role. */
export const FIREHOSE_BUCKET_ACTIONS: readonly string[] = ['s3:GetBucketLocation', 's3:ListBucket', 's3:ListBucketMultipartUploads'];

/**
 * What a Firehose destination role needs of S3 under `keyPatterns`, as AWS's policy for a Firehose S3 destination lists
 * it (AbortMultipartUpload, GetBucketLocation, GetObject, ListBucket, ListBucketMultipartUploads, PutObject; no delete),
 * and of the bucket's key only through S3 for this bucket (kms:ViaService and kms:EncryptionContext:aws:s3:arn). The
 * bucket's own grantRead/grantPut would add `*` actions and the key's use from anywhere (kms:Encrypt, ReEncrypt*).
 */
export function readAndPut(bucket: s3.IBucket, grantee: iam.IGrantable, keyPatterns: readonly string[]): iam.Grant {
  const objects = keyPatterns.map((pattern) => bucket.arnForObjects(pattern));
  let grant = iam.Grant.addToPrincipal({ grantee, actions: [...FIREHOSE_OBJECT_ACTIONS], resourceArns: objects })
    .combine(iam.Grant.addToPrincipal({ grantee, actions: [...FIREHOSE_BUCKET_ACTIONS], resourceArns: [bucket.bucketArn] }));
  if (bucket.encryptionKey) {
    grant = grant.combine(iam.Grant.addToPrincipal({
      grantee,
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      resourceArns: [bucket.encryptionKey.keyArn],
      conditions: {
        StringEquals: { 'kms:ViaService': `s3.${Aws.REGION}.amazonaws.com` },
        // With an S3 Bucket Key the context is the bucket's ARN (one data key per bucket, not per object); the object
        // patterns keep the grant working for objects encrypted without one.
        StringLike: { 'kms:EncryptionContext:aws:s3:arn': [bucket.bucketArn, ...objects] },
      },
    }));
  }
  return grant;
}
