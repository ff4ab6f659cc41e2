import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';

/**
 * `bucket.grantRead` and `grantPut` under each of `keyPatterns`: what a Firehose destination role needs of S3 (AWS lists
 * AbortMultipartUpload, GetBucketLocation, GetObject, ListBucket, ListBucketMultipartUploads and PutObject), and no delete.
 */
export function readAndPut(bucket: s3.IBucket, grantee: iam.IGrantable, keyPatterns: readonly string[]): iam.Grant {
  return keyPatterns.flatMap((pattern) => [bucket.grantRead(grantee, pattern), bucket.grantPut(grantee, pattern)]).reduce((a, b) => a.combine(b));
}
