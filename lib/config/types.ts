/** The typed Sluice configuration, read by the CDK app, the local twin and the CLI alike. */

export const SOURCES = ['kinesis', 'direct-put'] as const;
export type SourceKind = (typeof SOURCES)[number];

export const DESTINATIONS = ['lake', 'search', 'metadata'] as const;
export type DestinationName = (typeof DESTINATIONS)[number];

export const INDEX_ROTATIONS = ['NoRotation', 'OneHour', 'OneDay', 'OneWeek', 'OneMonth'] as const;
export type IndexRotation = (typeof INDEX_ROTATIONS)[number];

export const REMOVAL_POLICIES = ['retain', 'destroy'] as const;
export type RemovalPolicyName = (typeof REMOVAL_POLICIES)[number];

export const STREAM_ENCRYPTION = ['aws-managed', 'customer-managed'] as const;
export type StreamEncryption = (typeof STREAM_ENCRYPTION)[number];

export const OPENSEARCH_MODES = ['create', 'existing'] as const;
export type OpenSearchMode = (typeof OPENSEARCH_MODES)[number];

export interface BufferingConfig {
  /** Firehose S3 buffer size in MiB (64–128 with Parquet conversion or dynamic partitioning). */
  readonly sizeMiB: number;
  /** Firehose buffer interval in seconds (60–900 with dynamic partitioning). */
  readonly intervalSeconds: number;
  /**
   * Partitions the lake stream may hold open at once: Firehose's quota per delivery stream, 500 unless AWS raised it on
   * request (up to 5,000). Firehose enforces its own; this tells the alarms (near quota at 80 %, exceeded) what it is.
   * Optional in cdk.json: 500.
   */
  readonly activePartitionQuota: number;
}

export interface TransformConfig {
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
  /** Firehose processor buffer hint for the transform Lambda, MiB (0.2–3). */
  readonly processorBufferMiB: number;
  /** Firehose processor buffer interval, seconds (0–900). */
  readonly processorIntervalSeconds: number;
  /** Retries of a failed invocation before its records become processing-failed (0–300). */
  readonly retries: number;
}

export interface ConsumerConfig {
  readonly batchSize: number;
  readonly batchWindowSeconds: number;
  readonly maxRetries: number;
  readonly maxRecordAgeSeconds: number;
  readonly parallelization: number;
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
}

export interface SearchConfig {
  readonly bufferingSizeMiB: number;
  readonly bufferingIntervalSeconds: number;
  readonly retrySeconds: number;
  readonly rotation: IndexRotation;
  /**
   * Days each document stays searchable before its index is deleted (an ISM policy the deploy applies), or 'forever':
   * no policy, and nothing deletes the indices.
   */
  readonly retentionDays: number | 'forever';
}

/** The longest buffer interval the twin takes (`local.bufferIntervalSeconds`, `local up --buffer-interval`): Firehose's longest. */
export const MAX_LOCAL_BUFFER_INTERVAL_SECONDS = 900;

/** The most shards `shards` takes; a rate that needs more is for an on-demand stream. */
export const MAX_PROVISIONED_SHARDS = 500;

/** Shards a new on-demand stream has in AWS: its 4 MB/s of writes at 1 MB/s a shard. */
export const ON_DEMAND_INITIAL_SHARDS = 4;

export interface PipelineConfig {
  readonly name: string;
  readonly source: SourceKind;
  /** Provisioned shard count, or 'on-demand'. Kinesis-sourced pipelines only. */
  readonly shards: number | 'on-demand';
  readonly retentionHours: number;
  readonly streamEncryption: StreamEncryption;
  readonly destinations: readonly DestinationName[];
  readonly buffering: BufferingConfig;
  readonly transform: TransformConfig;
  readonly consumer: ConsumerConfig;
  readonly search: SearchConfig;
}

export interface OpenSearchConfig {
  readonly mode: OpenSearchMode;
  /** Endpoint of an existing domain (mode 'existing'), e.g. https://search-x.eu-west-1.es.amazonaws.com */
  readonly endpoint?: string;
  /** ARN of an existing domain (mode 'existing'). */
  readonly domainArn?: string;
  readonly engineVersion: string;
  readonly instanceType: string;
  readonly instanceCount: number;
  readonly volumeGiB: number;
}

export interface LifecycleConfig {
  readonly infrequentAccessDays: number;
  readonly glacierDays: number;
  readonly errorExpirationDays: number;
}

export interface MetadataConfig {
  readonly ttlDays: number;
}

export interface AthenaConfig {
  /** Per-query bytes-scanned cutoff in MiB (Athena minimum 10 MiB). */
  readonly bytesScannedCutoffMiB: number;
}

export interface LocalConfig {
  readonly firehosePort: number;
  readonly kinesisPort: number;
  readonly dynamoPort: number;
  /** Local Firehose buffer hints: scaled down from AWS's so results show up in seconds. */
  readonly bufferSizeMiB: number;
  readonly bufferIntervalSeconds: number;
}

export interface SluiceConfig {
  /** Names prefix: resources are named <prefix>-<env>-<pipeline>. */
  readonly prefix: string;
  readonly env: string;
  readonly alarmEmail?: string;
  readonly removalPolicy: RemovalPolicyName;
  readonly lifecycle: LifecycleConfig;
  readonly metadata: MetadataConfig;
  readonly athena: AthenaConfig;
  readonly opensearch: OpenSearchConfig;
  readonly local: LocalConfig;
  readonly pipelines: Readonly<Record<string, PipelineConfig>>;
}
