/**
 * The unit prices `sluice cost` assumes, in one table: AWS us-east-1 (N. Virginia) on-demand list
 * prices in USD, as published on each service's pricing page (named per entry). They are ASSUMPTIONS
 * TO CHECK: written down on PRICES_ASSUMED_ON from the pricing pages as the authors knew them, not
 * fetched live (this tool makes no network calls to price anything), and prices change. Other regions
 * cost more or less; Savings Plans, reserved instances and free tiers are not applied.
 */

export const PRICES_ASSUMED_ON = '2026-11-22';
export const PRICES_REGION = 'us-east-1';

export interface UnitPrice {
  readonly usd: number;
  /** What one unit is: "shard-hour", "GB ingested". */
  readonly unit: string;
  readonly service: string;
  /** The pricing page the price is read from. */
  readonly source: string;
  readonly note?: string;
}

const KINESIS = 'https://aws.amazon.com/kinesis/data-streams/pricing/';
const FIREHOSE = 'https://aws.amazon.com/firehose/pricing/';
const LAMBDA = 'https://aws.amazon.com/lambda/pricing/';
const S3 = 'https://aws.amazon.com/s3/pricing/';
const DYNAMODB = 'https://aws.amazon.com/dynamodb/pricing/on-demand/';
const OPENSEARCH = 'https://aws.amazon.com/opensearch-service/pricing/';
const KMS = 'https://aws.amazon.com/kms/pricing/';
const ATHENA = 'https://aws.amazon.com/athena/pricing/';
const CLOUDWATCH = 'https://aws.amazon.com/cloudwatch/pricing/';
const SECRETS_MANAGER = 'https://aws.amazon.com/secrets-manager/pricing/';

const price = (usd: number, unit: string, service: string, source: string, note?: string): UnitPrice => ({ usd, unit, service, source, note });

export const PRICES = {
  kinesisShardHour: price(0.015, 'shard-hour', 'Kinesis Data Streams (provisioned)', KINESIS),
  kinesisPutPayloadUnitsPerMillion: price(0.014, '1M PUT payload units (25 KB each)', 'Kinesis Data Streams (provisioned)', KINESIS),
  kinesisExtendedRetentionShardHour: price(0.02, 'shard-hour of retention beyond 24 h (up to 7 days)', 'Kinesis Data Streams (provisioned)', KINESIS),
  kinesisLongTermRetentionGBMonth: price(0.023, 'GB-month retained beyond 7 days', 'Kinesis Data Streams', KINESIS),
  kinesisEfoConsumerShardHour: price(0.015, 'consumer-shard-hour (enhanced fan-out)', 'Kinesis Data Streams (provisioned)', KINESIS),
  kinesisEfoRetrievalGB: price(0.013, 'GB retrieved by enhanced fan-out', 'Kinesis Data Streams (provisioned)', KINESIS),
  kinesisOnDemandStreamHour: price(0.04, 'stream-hour', 'Kinesis Data Streams (on-demand)', KINESIS),
  kinesisOnDemandIngestGB: price(0.08, 'GB written (records rounded up to 1 KB)', 'Kinesis Data Streams (on-demand)', KINESIS),
  kinesisOnDemandRetrievalGB: price(0.04, 'GB read (per consumer)', 'Kinesis Data Streams (on-demand)', KINESIS),
  kinesisOnDemandEfoRetrievalGB: price(0.05, 'GB read by enhanced fan-out', 'Kinesis Data Streams (on-demand)', KINESIS),
  firehoseIngestionGB: price(0.029, 'GB ingested (each record rounded up to 5 KB), first 500 TB/month', 'Amazon Data Firehose', FIREHOSE),
  firehoseFormatConversionGB: price(0.018, 'GB converted to Parquet (5 KB rounding, as ingestion)', 'Amazon Data Firehose', FIREHOSE),
  firehoseDynamicPartitioningGB: price(0.02, 'GB processed by dynamic partitioning', 'Amazon Data Firehose', FIREHOSE),
  firehoseDynamicPartitioningObjectsPerThousand: price(0.005, '1,000 S3 objects delivered with dynamic partitioning', 'Amazon Data Firehose', FIREHOSE),
  lambdaArmGBSecond: price(0.0000133334, 'GB-second (arm64)', 'AWS Lambda', LAMBDA),
  lambdaRequestsPerMillion: price(0.2, '1M requests', 'AWS Lambda', LAMBDA),
  s3StandardGBMonth: price(0.023, 'GB-month, S3 Standard (first 50 TB)', 'Amazon S3', S3),
  s3StandardIaGBMonth: price(0.0125, 'GB-month, S3 Standard-IA', 'Amazon S3', S3),
  s3GlacierInstantGBMonth: price(0.004, 'GB-month, S3 Glacier Instant Retrieval', 'Amazon S3', S3),
  s3PutPerThousand: price(0.005, '1,000 PUT/COPY/POST/LIST requests (Standard)', 'Amazon S3', S3),
  s3TransitionToIaPerThousand: price(0.01, '1,000 lifecycle transitions to Standard-IA', 'Amazon S3', S3),
  s3TransitionToGlacierInstantPerThousand: price(0.02, '1,000 lifecycle transitions to Glacier Instant Retrieval', 'Amazon S3', S3),
  dynamoWriteRequestUnitsPerMillion: price(0.625, '1M write request units (on-demand)', 'Amazon DynamoDB', DYNAMODB),
  dynamoStorageGBMonth: price(0.25, 'GB-month, Standard table class', 'Amazon DynamoDB', DYNAMODB),
  dynamoPitrGBMonth: price(0.2, 'GB-month of continuous backups (point-in-time recovery), by table size', 'Amazon DynamoDB', DYNAMODB),
  openSearchGp3GBMonth: price(0.122, 'GB-month of gp3 EBS storage per data node', 'Amazon OpenSearch Service', OPENSEARCH),
  kmsKeyMonth: price(1, 'customer-managed key-month', 'AWS KMS', KMS),
  secretsManagerSecretMonth: price(0.4, 'secret-month', 'AWS Secrets Manager', SECRETS_MANAGER),
  athenaPerTBScanned: price(5, 'TB scanned (10 MB minimum per query)', 'Amazon Athena', ATHENA),
  cloudWatchDashboardMonth: price(3, 'dashboard-month (beyond the free 3)', 'Amazon CloudWatch', CLOUDWATCH),
  cloudWatchAlarmMonth: price(0.1, 'standard-resolution alarm-month', 'Amazon CloudWatch', CLOUDWATCH),
  cloudWatchMetricMonth: price(0.3, 'custom metric-month, first 10,000 (prorated by the hour a metric is published in)', 'Amazon CloudWatch', CLOUDWATCH),
} as const satisfies Record<string, UnitPrice>;

export type PriceName = keyof typeof PRICES;

/** OpenSearch on-demand instance-hours for the instance types Sluice's configuration names most often. */
export const OPENSEARCH_INSTANCE_HOUR: Readonly<Record<string, UnitPrice>> = {
  't3.small.search': price(0.036, 'instance-hour', 'Amazon OpenSearch Service', OPENSEARCH),
  't3.medium.search': price(0.073, 'instance-hour', 'Amazon OpenSearch Service', OPENSEARCH),
  'm6g.large.search': price(0.128, 'instance-hour', 'Amazon OpenSearch Service', OPENSEARCH),
  'm6g.xlarge.search': price(0.256, 'instance-hour', 'Amazon OpenSearch Service', OPENSEARCH),
  'r6g.large.search': price(0.167, 'instance-hour', 'Amazon OpenSearch Service', OPENSEARCH),
  'r6g.xlarge.search': price(0.335, 'instance-hour', 'Amazon OpenSearch Service', OPENSEARCH),
  'r7g.large.search': price(0.167, 'instance-hour', 'Amazon OpenSearch Service', OPENSEARCH),
};

/** AWS bills a month as 730 hours. */
export const HOURS_PER_MONTH = 730;
export const SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600;
/** AWS prices data in binary gigabytes. */
export const GB = 1024 ** 3;
/** Kinesis shard write limits (Kinesis Data Streams quotas). */
export const SHARD_WRITE_BYTES_PER_SECOND = 1024 * 1024;
export const SHARD_WRITE_RECORDS_PER_SECOND = 1000;
/** Firehose bills each record in 5 KB (5,120-byte) increments; a Kinesis PUT payload unit is 25 KB. */
export const FIREHOSE_BILLING_INCREMENT_BYTES = 5 * 1024;
export const KINESIS_PUT_PAYLOAD_UNIT_BYTES = 25 * 1024;
