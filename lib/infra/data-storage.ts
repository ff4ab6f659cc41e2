import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { DATA_ROOT, ERRORS_ROOT, SEARCH_BACKUP_ROOT } from '../schema';
import { acknowledgeRule } from './nag';
import { assertValidProps } from './errors';

/** Prefix of Athena query results in the data bucket. */
export const ATHENA_RESULTS_ROOT = 'athena-results';
/** Athena results are re-creatable by re-running the query; they are kept this long. */
export const ATHENA_RESULTS_EXPIRATION_DAYS = 30;
/** Server access logs are kept this long. */
export const ACCESS_LOG_EXPIRATION_DAYS = 90;

export interface DataStorageProps {
  /** Days after which Parquet data moves to S3 Standard-IA (S3 requires ≥ 30). */
  readonly infrequentAccessDays: number;
  /** Days after which Parquet data moves to S3 Glacier Instant Retrieval (≥ infrequentAccessDays + 30, as S3 requires). */
  readonly glacierDays: number;
  /** Days after which error objects and search backups expire. */
  readonly errorExpirationDays: number;
  /** `DESTROY` also empties the bucket on stack deletion (so `cdk destroy` succeeds); `RETAIN` keeps bucket and key. */
  readonly removalPolicy: RemovalPolicy;
}

/**
 * The data bucket every pipeline writes to (Parquet under data/, Firehose error objects under errors/, documents
 * OpenSearch refused under search-backup/, Athena results under athena-results/), the customer-managed key that
 * encrypts it and the other data-bearing resources, and the bucket its server access logs go to.
 */
export class DataStorage extends Construct {
  /** Encrypts the data bucket, the dead-letter queues, the metadata table and Athena results. */
  readonly key: kms.Key;
  readonly bucket: s3.Bucket;
  /** Target of the data bucket's server access logs (S3 requires SSE-S3 there, so it cannot use `key`). */
  readonly accessLogsBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: DataStorageProps) {
    super(scope, id);
    assertValidProps(this, lifecycleProblems(props));
    const destroy = props.removalPolicy === RemovalPolicy.DESTROY;

    this.key = new kms.Key(this, 'Key', {
      description: 'Sluice data: lake bucket, dead-letter queues, metadata table, Athena results',
      enableKeyRotation: true,
      removalPolicy: props.removalPolicy,
      // A deleted key makes every object it encrypted unreadable: keep the longest waiting period unless tearing down a dev stack.
      pendingWindow: destroy ? Duration.days(7) : Duration.days(30),
    });

    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      // Object ownership left to CDK: with @aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy (cdk.json) S3 delivers
      // logs under a bucket policy and the bucket keeps S3's default (owner enforced); without it, CDK needs ACLs.
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(ACCESS_LOG_EXPIRATION_DAYS) }],
      removalPolicy: props.removalPolicy,
      autoDeleteObjects: destroy,
    });
    acknowledgeRule(this.accessLogsBucket, 'AwsSolutions-S1',
      'This bucket is the server-access-log target of the data bucket; logging it too would only log the log deliveries.');

    this.bucket = new s3.Bucket(this, 'Data', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.key,
      // One data key per bucket and hour instead of a KMS call per object: Firehose writes many objects.
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: false,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'data-bucket/',
      // S3's default since September 2024, stated so `sluice cost` can rely on it: objects under 128 KB never
      // transition (Standard-IA would bill them as 128 KB, and each transition is charged).
      transitionDefaultMinimumObjectSize: s3.TransitionDefaultMinimumObjectSize.ALL_STORAGE_CLASSES_128_K,
      lifecycleRules: [
        {
          id: 'tier-lake-data',
          prefix: `${DATA_ROOT}/`,
          transitions: [
            { storageClass: s3.StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(props.infrequentAccessDays) },
            // Instant Retrieval, not Flexible Retrieval: Athena can still read the objects without a restore.
            { storageClass: s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, transitionAfter: Duration.days(props.glacierDays) },
          ],
        },
        { id: 'expire-errors', prefix: `${ERRORS_ROOT}/`, expiration: Duration.days(props.errorExpirationDays) },
        { id: 'expire-search-backup', prefix: `${SEARCH_BACKUP_ROOT}/`, expiration: Duration.days(props.errorExpirationDays) },
        { id: 'expire-athena-results', prefix: `${ATHENA_RESULTS_ROOT}/`, expiration: Duration.days(ATHENA_RESULTS_EXPIRATION_DAYS) },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(7) },
      ],
      removalPolicy: props.removalPolicy,
      autoDeleteObjects: destroy,
    });
    denyOtherEncryption(this.bucket, this.key);
  }
}

/**
 * Refuses a put that asks for any encryption but SSE-KMS with `key`: another KMS key, SSE-KMS naming no key (S3 would
 * use the AWS-managed aws/s3 key), SSE-S3, DSSE-KMS or a key of the writer's own (SSE-C). A put that asks for none is let through, since S3 then applies the bucket's default, `key`;
 * and the stack's writers ask for none (the delivery streams: no EncryptionConfiguration on their S3 destination) or
 * for SSE-KMS with `key`'s ARN (Athena's query results, as the workgroup enforces). S3 compares the key header with
 * the key's ARN, so a writer naming the key by id or alias is refused too.
 */
function denyOtherEncryption(bucket: s3.Bucket, key: kms.IKey): void {
  const present = (header: string) => ({ Null: { [header]: 'false' } });
  const refuse = (sid: string, conditions: Record<string, Record<string, unknown>>) => bucket.addToResourcePolicy(new iam.PolicyStatement({
    sid,
    effect: iam.Effect.DENY,
    principals: [new iam.AnyPrincipal()],
    actions: ['s3:PutObject'],
    resources: [bucket.arnForObjects('*')],
    conditions,
  }));
  refuse('DenyOtherKmsKeys', {
    ...present('s3:x-amz-server-side-encryption-aws-kms-key-id'),
    StringNotEquals: { 's3:x-amz-server-side-encryption-aws-kms-key-id': key.keyArn },
  });
  refuse('DenyOtherEncryption', {
    ...present('s3:x-amz-server-side-encryption'),
    StringNotEquals: { 's3:x-amz-server-side-encryption': 'aws:kms' },
  });
  // SSE-KMS without a key named: S3 would use the AWS-managed aws/s3 key, not the bucket's default.
  refuse('DenyKmsWithoutKey', {
    StringEquals: { 's3:x-amz-server-side-encryption': 'aws:kms' },
    Null: { 's3:x-amz-server-side-encryption-aws-kms-key-id': 'true' },
  });
  refuse('DenyCustomerProvidedKeys', present('s3:x-amz-server-side-encryption-customer-algorithm'));
}

function lifecycleProblems(props: DataStorageProps): string[] {
  const problems: string[] = [];
  if (!Number.isInteger(props.infrequentAccessDays) || props.infrequentAccessDays < 30) {
    problems.push(`infrequentAccessDays must be a whole number ≥ 30 (S3 moves objects to Standard-IA no sooner), got ${props.infrequentAccessDays}`);
  }
  if (!Number.isInteger(props.glacierDays) || props.glacierDays < props.infrequentAccessDays + 30) {
    problems.push(`glacierDays must be ≥ infrequentAccessDays + 30 (${props.infrequentAccessDays + 30}), as S3 requires, got ${props.glacierDays}`);
  }
  if (!Number.isInteger(props.errorExpirationDays) || props.errorExpirationDays < 1) {
    problems.push(`errorExpirationDays must be a whole number ≥ 1, got ${props.errorExpirationDays}`);
  }
  return problems;
}
