/**
 * The local twin's Firehose delivery engine: what happens to records after the Firehose API (or a
 * Kinesis reader) accepted them. One DeliveryEngine per delivery stream.
 *
 * Flow, as Firehose documents it:
 *   ingest → write-ahead log (fsync) → acknowledge → buffer (size / interval hints)
 *   → transform Lambda in chunks (≤ processor buffer hint, ≤ 6 MB request), response validated,
 *     failed invocations retried, then the chunk's records become `processing-failed`
 *   → lake: Ok records grouped by `metadata.partitionKeys`, one Parquet object per group per flush
 *     under the evaluated data prefix; records that do not convert → `format-conversion-failed`;
 *     records whose partition keys are missing or unsafe → `partitioning-failed`
 *   → search: Ok documents to the SearchSink; documents it could not index → `AmazonOpenSearchService-failed`
 *   → error objects (newline-delimited JSON, Firehose's error-record shapes) under the error prefix.
 *
 * Durability. A record is acknowledged only after its write-ahead-log frame is fdatasync'ed; the
 * log lives at `<dataDir>/firehose/<stream>/wal/`. After a flush has written every object, a
 * "delivered through sequence N" mark is appended. A new engine on the same data dir re-delivers
 * every logged record above the mark. What a SIGKILL can do:
 *   - lose nothing that was acknowledged (a torn final frame was never acknowledged; it is cut off);
 *   - fail in-flight PutRecord(Batch) calls, which the caller sees as errors and retries;
 *   - duplicate the records of a flush that had written some objects but not yet its mark: they
 *     are delivered again on restart (Firehose is at-least-once too);
 *   - leave a Kinesis reader's checkpoint behind the log: the records it reads again are answered Ok
 *     and not logged twice (see `shardPositions`).
 * Objects are written atomically (temp file, fsync, rename), so no reader ever sees half an object.
 * When an object cannot be written (disk full, read-only, permissions) delivery is retried with
 * backoff for as long as the stream runs, as Firehose does; while stopping, it gives up after a
 * few attempts and `flush()`/`stop()` reject — the records stay in the log for the next start.
 *
 * Counters hold `received = deliveredRows + dropped + processingFailed + formatConversionFailed
 * + partitioningFailed + searchFailed + pending`, and `pending` is 0 once a flush has finished.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { FirehoseTransformationResult } from 'aws-lambda';
import type { FirehoseKinesisRecordMetadata, TransformationEvent, TransformationEventRecord } from '../../transforms/shared/firehose-event';
import type { DuckDBInstance } from '@duckdb/node-api';
import type { SluiceConfig } from '../config/types';
import { resourceNames } from '../config/names';
import { LAKE_RETRY_SECONDS, lambdaProcessorParameters } from '../config/delivery';
import type { SchemaModel } from '../schema/model';
import { firehoseDataPrefix, firehoseErrorPrefix, searchBackupPrefix, searchErrorPrefix } from '../schema/layout';
import { syncDirectory } from './atomic-file';
import { bucketNameProblem, objectKeyProblem, ObjectStore, syncFoldersMade } from './object-store';
import { ParquetWriter, type JsonDeserializer } from './parquet-writer';
import { localBucketName } from './paths';
import { EmulatorStateError } from './state-error';
import {
  checkTimeZone,
  evaluatePrefix,
  objectKey,
  parsePrefix,
  partitionValueProblem,
  PrefixEvaluationError,
  type ErrorOutputType,
  type PrefixTemplate,
} from './prefix';
import { failedDocumentRecord, type SearchDocument, type SearchSink } from './search-sink';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** The transform Lambda, called in-process with Firehose's event; may return a promise. */
export type TransformProcessor = (event: TransformationEvent) => Promise<FirehoseTransformationResult> | FirehoseTransformationResult;

/** Time source and timers; injectable so tests control buffering intervals. */
export interface Clock {
  now(): number;
  /** Calls back after `ms`; returns a function that cancels the timer. */
  setTimer(ms: number, callback: () => void): () => void;
}

/** Wall-clock time and unref'd Node timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, callback) {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

/** A Kinesis-sourced record's metadata as Firehose sends it: subsequenceNumber a number (0 for a plain record). */
export interface KinesisRecordMetadata extends FirehoseKinesisRecordMetadata {
  subsequenceNumber: number;
}

export interface IncomingRecord {
  /** Firehose's record id (PutRecordBatch answers with it). @default one is generated */
  readonly recordId?: string;
  readonly data: Uint8Array;
  /** Epoch ms. @default the engine clock's now */
  readonly arrivalTimestamp?: number;
  /** For records read from a Kinesis stream. */
  readonly kinesisRecordMetadata?: KinesisRecordMetadata;
}

/** Same shape as the Firehose API's per-record result. */
export type IngestResult = { ok: true } | { ok: false; errorCode: string; errorMessage: string };

export interface ProcessorSettings {
  readonly invoke: TransformProcessor;
  /** The ARN error records name. @default arn:aws:lambda:<region>:<account>:function:<stream>-transform */
  readonly functionArn?: string;
  /** Retries of a failed invocation (Firehose `NumberOfRetries`, 0–300). @default 3 */
  readonly retries?: number;
  /** Processor buffer hint: at most this much record data per invocation (Firehose: 0.2–3 MB). @default 1 */
  readonly bufferMiB?: number;
  /** An invocation that takes longer fails (Lambda's timeout). @default 300000 */
  readonly timeoutMs?: number;
  /** Invocations in flight at once (Firehose runs several per shard). @default 2 */
  readonly concurrency?: number;
  /** Delay before the first retry of a failed invocation; doubles per retry. @default 200 */
  readonly retryDelayMs?: number;
}

export interface GlueTableRef {
  readonly databaseName: string;
  readonly tableName: string;
  /** @default the account id */
  readonly catalogId?: string;
  /** @default 'LATEST' */
  readonly versionId?: string;
}

export interface LakeDestination {
  readonly kind: 'lake';
  readonly model: SchemaModel;
  readonly glueTable: GlueTableRef;
  /** @default firehoseDataPrefix(model) */
  readonly prefix?: string;
  /** @default firehoseErrorPrefix(model.pipeline) */
  readonly errorPrefix?: string;
  /** @default 'openx' */
  readonly deserializer?: JsonDeserializer;
  /** Share one DuckDB instance between engines. @default each engine opens its own */
  readonly duckdb?: DuckDBInstance;
}

export interface SearchDestination {
  readonly kind: 'search';
  readonly sink: SearchSink;
  /** Where processing failures and documents OpenSearch refused go. @default `search-backup/<pipeline>/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/` */
  readonly errorPrefix?: string;
  /** AllDocuments also copies every delivered document to `backupPrefix`. @default 'FailedDocumentsOnly' */
  readonly backupMode?: 'FailedDocumentsOnly' | 'AllDocuments';
  /** @default searchBackupPrefix(pipeline) */
  readonly backupPrefix?: string;
  /** The domain the stream is described with when the sink has no endpoint. @default arn:aws:es:<region>:<account>:domain/<pipeline> */
  readonly domainArn?: string;
}

export interface DeliveryEngineOptions {
  /** The delivery stream, e.g. sluice-dev-clickstream-lake. */
  readonly streamName: string;
  readonly dataDir: string;
  /** Bucket objects go to (`<dataDir>/s3/<bucket>/`). */
  readonly bucket: string;
  readonly destination: LakeDestination | SearchDestination;
  /** Without a processor every record passes through as Ok, with no partition keys. */
  readonly processor?: ProcessorSettings;
  /** Buffer size hint. @default 1 (the twin's scaled-down hint; AWS: 64–128 with conversion) */
  readonly bufferSizeMiB?: number;
  /** Buffer interval hint. @default 2 */
  readonly bufferIntervalSeconds?: number;
  /** @default 'us-east-1' */
  readonly region?: string;
  /** @default '000000000000' */
  readonly accountId?: string;
  /** @default arn:aws:firehose:<region>:<account>:deliverystream/<streamName> */
  readonly streamArn?: string;
  /** The role the stream is described with (it reads its source, invokes its transform, writes). @default arn:aws:iam::<account>:role/<streamName>-role */
  readonly roleArn?: string;
  /** Named in transformation events of Kinesis-sourced streams. */
  readonly sourceKinesisStreamArn?: string;
  /** IANA zone for `!{timestamp:…}` and object names (Firehose `CustomTimeZone`). @default 'UTC' */
  readonly timeZone?: string;
  /** Share one store (and its objectCreated subscribers) between engines. @default new ObjectStore(dataDir) */
  readonly store?: ObjectStore;
  /** @default systemClock */
  readonly clock?: Clock;
  /** Above this much acknowledged-but-undelivered data, ingest answers ServiceUnavailableException. @default max(64, 16 × bufferSizeMiB) */
  readonly maxPendingMiB?: number;
  /** First delay before retrying a failed object write; doubles up to `maxRetryDelayMs`. @default 100 */
  readonly retryDelayMs?: number;
  /** @default 5000 */
  readonly maxRetryDelayMs?: number;
  /** Told about every failure that is retried (disk errors, sink errors). @default ignore */
  readonly onError?: (error: unknown, context: string) => void;
  /**
   * Called before every write to the write-ahead log with its file; what it throws fails the write
   * as the file system would (fault injection, see faults.ts). Objects go through `store`. @default none
   */
  readonly beforeWrite?: (file: string) => void;
}

export interface DeliveryCounters {
  /** Records acknowledged by this engine, plus records recovered from the log at start. */
  readonly received: number;
  /** Records recovered from the write-ahead log at start (included in `received`). */
  readonly recovered: number;
  /** Parquet rows written (lake) or documents indexed (search). */
  readonly deliveredRows: number;
  /** Records the transform answered Dropped. */
  readonly dropped: number;
  readonly processingFailed: number;
  readonly formatConversionFailed: number;
  readonly partitioningFailed: number;
  /** Documents OpenSearch did not take (backed up as AmazonOpenSearchService-failed). */
  readonly searchFailed: number;
  /** Data objects written: Parquet files (lake) or bulk requests/files (search). */
  readonly files: number;
  /** Bytes of those data objects / bulk bodies. */
  readonly bytes: number;
  /** Error objects written. */
  readonly errorFiles: number;
  /** Transform invocations, retries included. */
  readonly invocations: number;
  /** Transform invocations that were retries of a failed one. */
  readonly retries: number;
  /** Records acknowledged but not yet in a final place. */
  readonly pending: number;
}

export interface FlushSummary {
  readonly records: number;
  /** Keys of the objects this flush wrote (data and error objects). */
  readonly keys: readonly string[];
  readonly counters: DeliveryCounters;
}

export interface DeliveryEngineEvents {
  flushed: [summary: FlushSummary];
}

/** Delivery could not finish while the stream was stopping; the records stay in the write-ahead log. */
export class DeliveryStalledError extends Error {
  constructor(readonly streamName: string, readonly records: number, readonly cause: unknown) {
    super(`${streamName}: ${records} records could not be delivered before stopping (${(cause as Error)?.message ?? String(cause)}); `
      + 'they stay in the write-ahead log and are delivered when the twin starts again on the same data dir');
    this.name = 'DeliveryStalledError';
  }
}

// Firehose's documented limits and messages.
const MiB = 1024 * 1024;
/** Lambda's synchronous invocation payload limit (request and response). */
export const LAMBDA_PAYLOAD_LIMIT = 6 * MiB;
const LAMBDA_MESSAGES = {
  'Lambda.FunctionError': 'The Lambda function was successfully invoked but it returned an error result.',
  'Lambda.FunctionTimedOut': 'The Lambda function invocation timed out. Increase the Timeout setting in the Lambda function.',
  'Lambda.JsonProcessingException': 'There was an error parsing returned records from the Lambda function. Ensure that the returned records follow the status model required by Kinesis Data Firehose.',
  'Lambda.MissingRecordId': 'One or more record Ids were not returned. Ensure that the Lambda function returns all received record Ids.',
  'Lambda.DuplicatedRecordId': 'Multiple records were returned with the same record Id. Ensure that the Lambda function returns unique record Ids for each record.',
} as const;
type LambdaErrorCode = keyof typeof LAMBDA_MESSAGES;
const PROCESSING_FAILED_STATUS = { code: 'Lambda.ProcessingFailedStatus', message: 'ProcessingFailed status set for record' };
/** Unverified against AWS: the codes Firehose puts on partitioning failures are not documented. */
const PARTITION_KEY_MISSING = 'DynamicPartitioning.MetadataExtractionFailed';
const PARTITION_KEY_INVALID = 'DynamicPartitioning.InvalidPartitionKey';
const SERVICE_UNAVAILABLE = 'ServiceUnavailableException';
/** Attempts at writing an object once the stream is stopping, before flush() gives up. */
const ATTEMPTS_WHILE_STOPPING = 3;

// ---------------------------------------------------------------------------------------------
// Internal record shapes
// ---------------------------------------------------------------------------------------------

interface BufferedRecord {
  readonly seq: number;
  readonly recordId: string;
  readonly data: Buffer;
  readonly arrivalTimestamp: number;
  readonly kinesis?: KinesisRecordMetadata;
}

type Outcome =
  | { readonly kind: 'ok'; readonly data: Buffer; readonly partitionKeys?: Readonly<Record<string, unknown>> }
  | { readonly kind: 'dropped' }
  | {
    readonly kind: 'processing-failed';
    readonly attemptsMade: number;
    readonly errorCode: string;
    readonly errorMessage: string;
    readonly attemptEndingTimestamp: number;
  };

type Counted = 'processingFailed' | 'formatConversionFailed' | 'partitioningFailed' | 'searchFailed';

/** Records bound for one lake prefix: the partition key values it is made of. */
interface LakeGroup {
  readonly partitionKeys: Record<string, string>;
  readonly items: Array<{ record: BufferedRecord; data: Buffer }>;
}

interface ErrorLine {
  readonly arrivalTimestamp: number;
  readonly json: string;
}

const ERROR_COUNTER: Readonly<Record<ErrorOutputType, Counted>> = {
  'processing-failed': 'processingFailed',
  'format-conversion-failed': 'formatConversionFailed',
  'partitioning-failed': 'partitioningFailed',
  'AmazonOpenSearchService-failed': 'searchFailed',
};

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

export class DeliveryEngine extends EventEmitter<DeliveryEngineEvents> {
  readonly streamName: string;
  readonly streamArn: string;
  readonly roleArn: string;
  readonly store: ObjectStore;
  private readonly options: DeliveryEngineOptions;
  private readonly clock: Clock;
  private readonly region: string;
  private readonly accountId: string;
  private readonly bufferBytesHint: number;
  private readonly bufferIntervalMs: number;
  private readonly maxPendingBytes: number;
  private readonly timeZone: string;
  private readonly dataPrefix: PrefixTemplate | undefined;
  private readonly errorPrefix: PrefixTemplate;
  private readonly backupPrefix: PrefixTemplate | undefined;
  private readonly lambdaArn: string | undefined;
  /** When this engine opened (ms since the epoch): the first digits of the transform's record ids. */
  private readonly openedAt = Date.now();
  private readonly counts = {
    received: 0, recovered: 0, deliveredRows: 0, dropped: 0, processingFailed: 0, formatConversionFailed: 0,
    partitioningFailed: 0, searchFailed: 0, files: 0, bytes: 0, errorFiles: 0, invocations: 0, retries: 0,
  };

  /**
   * Per Kinesis shard, the last record logged here (recovered or ingested). A reader killed after the log took a
   * batch but before its checkpoint did reads that batch again at the next start: those records are answered
   * Ok without a second copy. "Already logged" is the reader's own rule for re-read records (shard-reader.ts):
   * a sequence number at or before the last one AND an arrival no later, as kinesis-mock restarted from its
   * saved state numbers new records from there. The user records of a KPL-aggregated Kinesis record share its
   * sequence number and come in one ingest, logged in one frame: they are answered all alike (kinesis-source.ts).
   */
  private readonly shardPositions = new Map<string, { readonly sequenceNumber: string; readonly arrival: number }>();
  private buffer: BufferedRecord[] = [];
  private bufferedBytes = 0;
  /** Bytes acknowledged (or being logged) and not yet delivered: buffer, in-flight batch, appends. */
  private pendingBytes = 0;
  private nextSeq: number;
  private cancelTimer: (() => void) | undefined;
  private flushChain: Promise<void> = Promise.resolve();
  private flushQueued = false;
  private readonly appends = new Set<Promise<unknown>>();
  private stopping = false;
  private stopPromise: Promise<void> | undefined;
  /** Wakes retry delays early when the stream stops. */
  private readonly sleepers = new Set<() => void>();
  /** The first delivery failure while stopping: stop() reports it even if a later flush succeeds. */
  private stall: DeliveryStalledError | undefined;
  private failedFlushes = 0;

  private constructor(
    options: DeliveryEngineOptions,
    private readonly wal: WriteAheadLog,
    recovered: BufferedRecord[],
    nextSeq: number,
    private readonly writer: ParquetWriter | undefined,
  ) {
    super();
    this.options = options;
    this.streamName = options.streamName;
    this.clock = options.clock ?? systemClock;
    this.region = options.region ?? 'us-east-1';
    this.accountId = options.accountId ?? '000000000000';
    this.streamArn = options.streamArn ?? `arn:aws:firehose:${this.region}:${this.accountId}:deliverystream/${options.streamName}`;
    this.roleArn = options.roleArn ?? `arn:aws:iam::${this.accountId}:role/${options.streamName}-role`;
    this.store = options.store ?? new ObjectStore(options.dataDir);
    this.timeZone = options.timeZone ?? 'UTC';
    const sizeMiB = options.bufferSizeMiB ?? 1;
    this.bufferBytesHint = Math.max(1, Math.round(sizeMiB * MiB));
    this.bufferIntervalMs = Math.max(0, (options.bufferIntervalSeconds ?? 2) * 1000);
    this.maxPendingBytes = (options.maxPendingMiB ?? Math.max(64, 16 * sizeMiB)) * MiB;
    const destination = options.destination;
    if (destination.kind === 'lake') {
      this.dataPrefix = parsePrefix(destination.prefix ?? firehoseDataPrefix(destination.model), 'data');
      this.errorPrefix = parsePrefix(destination.errorPrefix ?? firehoseErrorPrefix(destination.model.pipeline), 'error');
    } else {
      const pipeline = destination.sink.pipeline;
      this.errorPrefix = parsePrefix(destination.errorPrefix ?? searchErrorPrefix(pipeline), 'error');
      if (destination.backupMode === 'AllDocuments') this.backupPrefix = parsePrefix(destination.backupPrefix ?? searchBackupPrefix(pipeline), 'data');
    }
    this.lambdaArn = options.processor
      ? options.processor.functionArn ?? `arn:aws:lambda:${this.region}:${this.accountId}:function:${options.streamName}-transform`
      : undefined;
    // Fail at start, not at the first error, when the error prefix cannot make a valid key.
    const sampleKey = objectKey(
      evaluatePrefix(this.errorPrefix, { arrivalTimestamp: 0, timeZone: this.timeZone, errorOutputType: 'format-conversion-failed' }),
      { streamName: this.streamName, timestamp: 0, timeZone: this.timeZone },
    );
    const keyProblem = objectKeyProblem(sampleKey);
    if (keyProblem) throw new Error(`delivery stream ${this.streamName}: the error prefix makes keys like ${JSON.stringify(sampleKey)}, which ${keyProblem}`);
    this.nextSeq = nextSeq;
    for (const record of recovered) {
      this.addToBuffer(record);
      this.pendingBytes += record.data.length;
      this.noteShardPosition(record.kinesis);
    }
    this.counts.recovered = recovered.length;
    this.counts.received = recovered.length;
    if (recovered.length > 0) this.scheduleFlush();
  }

  /** Opens the engine: validates the configuration, replays the write-ahead log, opens DuckDB for the lake. */
  static async open(options: DeliveryEngineOptions): Promise<DeliveryEngine> {
    validateOptions(options);
    const streamDir = path.resolve(options.dataDir, 'firehose', options.streamName);
    const workDir = path.join(streamDir, 'tmp');
    await fs.promises.rm(workDir, { recursive: true, force: true });
    const { wal, recovered, nextSeq } = await WriteAheadLog.open(
      path.join(streamDir, 'wal'),
      (message) => options.onError?.(new Error(message), 'write-ahead log'),
      options.beforeWrite,
    );
    let writer: ParquetWriter | undefined;
    try {
      const destination = options.destination;
      if (destination.kind === 'lake') {
        writer = await ParquetWriter.open(destination.model, { workDir, deserializer: destination.deserializer, instance: destination.duckdb });
      }
      return new DeliveryEngine(options, wal, recovered, nextSeq, writer);
    } catch (error) {
      await writer?.close();
      await wal.close();
      throw error;
    }
  }

  /**
   * The destination as DescribeDeliveryStream gives it, for what this engine runs (its buffer hints, prefixes,
   * transform and conversion), with every member AWS returns for such a stream: `ExtendedS3DestinationDescription`
   * or `AmazonopensearchserviceDestinationDescription`. Nothing is encrypted or logged to CloudWatch locally, and
   * the description says so.
   */
  describeDestination(): Record<string, unknown> {
    const o = this.options;
    const RoleARN = this.roleArn;
    const BucketARN = `arn:aws:s3:::${o.bucket}`;
    const BufferingHints = { SizeInMBs: o.bufferSizeMiB ?? 1, IntervalInSeconds: o.bufferIntervalSeconds ?? 2 };
    const EncryptionConfiguration = { NoEncryptionConfig: 'NoEncryption' };
    const CloudWatchLoggingOptions = { Enabled: false };
    const ProcessingConfiguration = o.processor && this.lambdaArn
      ? {
        Enabled: true,
        Processors: [{
          Type: 'Lambda',
          Parameters: lambdaProcessorParameters(this.lambdaArn, RoleARN, {
            bufferSizeMiB: o.processor.bufferMiB ?? 1,
            // The transform is invoked as the buffer flushes (in chunks of its buffer hint): at the stream's interval.
            bufferIntervalSeconds: BufferingHints.IntervalInSeconds,
            retries: o.processor.retries ?? 3,
          }).map(({ name, value }) => ({ ParameterName: name, ParameterValue: value })),
        }],
      }
      : { Enabled: false, Processors: [] };
    const destination = o.destination;
    if (destination.kind === 'lake') {
      const table = destination.glueTable;
      return {
        ExtendedS3DestinationDescription: {
          RoleARN, BucketARN, Prefix: this.dataPrefix!.source, ErrorOutputPrefix: this.errorPrefix.source, BufferingHints,
          // With Parquet conversion Firehose takes UNCOMPRESSED only: the serializer compresses.
          CompressionFormat: 'UNCOMPRESSED', EncryptionConfiguration, CloudWatchLoggingOptions, ProcessingConfiguration, S3BackupMode: 'Disabled',
          DataFormatConversionConfiguration: {
            SchemaConfiguration: {
              RoleARN, CatalogId: table.catalogId ?? this.accountId, DatabaseName: table.databaseName, TableName: table.tableName,
              Region: this.region, VersionId: table.versionId ?? 'LATEST',
            },
            InputFormatConfiguration: { Deserializer: (destination.deserializer ?? 'openx') === 'openx' ? { OpenXJsonSerDe: {} } : { HiveJsonSerDe: {} } },
            OutputFormatConfiguration: { Serializer: { ParquetSerDe: { Compression: 'SNAPPY' } } },
            Enabled: true,
          },
          // The twin retries a failed write until it stops; the stack's duration is what AWS would describe.
          DynamicPartitioningConfiguration: { RetryOptions: { DurationInSeconds: LAKE_RETRY_SECONDS }, Enabled: this.dataPrefix!.partitionKeys.length > 0 },
          ...(this.timeZone !== 'UTC' && { CustomTimeZone: this.timeZone }),
        },
      };
    }
    const sink = destination.sink;
    return {
      AmazonopensearchserviceDestinationDescription: {
        RoleARN,
        ...(sink.endpoint !== undefined
          ? { ClusterEndpoint: sink.endpoint.replace(/\/$/, '') }
          : { DomainARN: destination.domainArn ?? `arn:aws:es:${this.region}:${this.accountId}:domain/${sink.pipeline}` }),
        IndexName: sink.indexName,
        IndexRotationPeriod: sink.rotation,
        BufferingHints,
        RetryOptions: { DurationInSeconds: sink.retrySeconds },
        S3BackupMode: destination.backupMode ?? 'FailedDocumentsOnly',
        S3DestinationDescription: {
          RoleARN, BucketARN, Prefix: destination.backupPrefix ?? searchBackupPrefix(sink.pipeline), ErrorOutputPrefix: this.errorPrefix.source,
          // Backups and error objects are written as this stream flushes.
          BufferingHints, CompressionFormat: 'UNCOMPRESSED', EncryptionConfiguration, CloudWatchLoggingOptions,
        },
        ProcessingConfiguration,
        CloudWatchLoggingOptions,
        DocumentIdOptions: { DefaultDocumentIdFormat: 'FIREHOSE_DEFAULT' },
      },
    };
  }

  get counters(): DeliveryCounters {
    const c = this.counts;
    const settled = c.deliveredRows + c.dropped + c.processingFailed + c.formatConversionFailed + c.partitioningFailed + c.searchFailed;
    return { ...c, pending: c.received - settled };
  }

  /**
   * Accepts records: each is acknowledged (`{ok: true}`) once it is in the fsync'ed write-ahead log.
   * Answers ServiceUnavailableException per record while stopping, when too much is pending, or
   * when the log cannot be written — nothing is acknowledged that could be lost.
   */
  async ingest(records: readonly IncomingRecord[]): Promise<IngestResult[]> {
    if (records.length === 0) return [];
    if (this.stopping) return records.map(() => unavailable(`Delivery stream ${this.streamName} is shutting down; retry after the twin restarts.`));
    let bytes = 0;
    for (const r of records) bytes += r.data.byteLength;
    if (this.pendingBytes + bytes > this.maxPendingBytes) return records.map(() => unavailable('Slow down.'));
    const now = this.clock.now();
    const fresh = records.filter((r) => !this.alreadyLogged(r.kinesisRecordMetadata));
    if (fresh.length === 0) return records.map(() => ({ ok: true }));
    if (fresh.length < records.length) {
      bytes = 0;
      for (const r of fresh) bytes += r.data.byteLength;
    }
    const entries: BufferedRecord[] = fresh.map((r) => {
      const seq = this.nextSeq++;
      return {
        seq,
        recordId: r.recordId ?? generatedRecordId(seq),
        data: Buffer.isBuffer(r.data) ? r.data : Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength),
        arrivalTimestamp: r.arrivalTimestamp ?? now,
        kinesis: r.kinesisRecordMetadata,
      };
    });
    this.pendingBytes += bytes;
    const append = this.wal.append(entries);
    this.appends.add(append);
    try {
      await append;
    } catch (error) {
      this.pendingBytes -= bytes;
      this.options.onError?.(error, 'write-ahead log append');
      // Not AWS's "Slow down.": the cause is the local disk, which the user can fix.
      const message = `${this.streamName} could not write its write-ahead log (${(error as Error)?.message ?? String(error)}); `
        + 'these records were not accepted: retry them once the disk has room or is writable again.';
      return records.map(() => unavailable(message));
    } finally {
      this.appends.delete(append);
    }
    this.counts.received += entries.length;
    for (const entry of entries) {
      this.addToBuffer(entry);
      this.noteShardPosition(entry.kinesis);
    }
    // An interval of 0 is Firehose's zero buffering: deliver as soon as records arrive.
    if (this.bufferedBytes >= this.bufferBytesHint || this.bufferIntervalMs === 0) this.scheduleFlush();
    return records.map(() => ({ ok: true }));
  }

  private alreadyLogged(k: KinesisRecordMetadata | undefined): boolean {
    const last = k === undefined ? undefined : this.shardPositions.get(k.shardId);
    return last !== undefined && compareSequenceNumbers(k!.sequenceNumber, last.sequenceNumber) <= 0 && k!.approximateArrivalTimestamp <= last.arrival;
  }

  private noteShardPosition(k: KinesisRecordMetadata | undefined): void {
    if (k === undefined || k.sequenceNumber === '') return;
    const last = this.shardPositions.get(k.shardId);
    if (last === undefined || compareSequenceNumbers(k.sequenceNumber, last.sequenceNumber) > 0) {
      this.shardPositions.set(k.shardId, { sequenceNumber: k.sequenceNumber, arrival: k.approximateArrivalTimestamp });
    }
  }

  /** Delivers everything buffered now (and waits for a flush already under way). */
  flush(): Promise<void> {
    return this.enqueueFlush();
  }

  /**
   * Stops taking records, flushes, closes the log, DuckDB and the sink. Rejects with
   * DeliveryStalledError when the last flush could not write its objects; the records then stay in
   * the log for the next start.
   */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping = true;
      for (const wake of this.sleepers) wake();
      this.stopTimer();
      await Promise.allSettled([...this.appends]);
      let failure: unknown;
      try {
        await this.enqueueFlush();
      } catch (error) {
        failure = error;
      }
      await this.writer?.close();
      await this.wal.close();
      if (this.options.destination.kind === 'search') await this.options.destination.sink.close();
      if (failure !== undefined) throw failure;
      if (this.stall) throw this.stall;
    })();
    return this.stopPromise;
  }

  // -------------------------------------------------------------------------------------------
  // Buffering
  // -------------------------------------------------------------------------------------------

  private addToBuffer(record: BufferedRecord): void {
    if (this.buffer.length === 0 && !this.stopping && this.bufferIntervalMs > 0) this.startTimer(this.bufferIntervalMs);
    this.buffer.push(record);
    this.bufferedBytes += record.data.length;
    if (record.seq >= this.nextSeq) this.nextSeq = record.seq + 1;
  }

  /** (Re)starts the interval timer: when it fires, a flush is scheduled. */
  private startTimer(ms: number): void {
    this.stopTimer();
    this.cancelTimer = this.clock.setTimer(ms, () => {
      this.cancelTimer = undefined;
      this.scheduleFlush();
    });
  }

  private stopTimer(): void {
    const cancel = this.cancelTimer;
    this.cancelTimer = undefined;
    cancel?.();
  }

  /** A flush triggered by size or interval: at most one waits behind the one running. */
  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.enqueueFlush().catch((error) => this.options.onError?.(error, 'flush'));
  }

  private enqueueFlush(): Promise<void> {
    const run = this.flushChain.then(() => {
      this.flushQueued = false;
      return this.deliverBuffered();
    });
    this.flushChain = run.catch(() => undefined);
    return run;
  }

  private async deliverBuffered(): Promise<void> {
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    const batchBytes = this.bufferedBytes;
    this.buffer = [];
    this.bufferedBytes = 0;
    this.stopTimer();
    let keys: string[];
    try {
      keys = await this.deliverBatch(batch);
    } catch (error) {
      if (this.stopping) {
        // The records stay in the write-ahead log (no delivered mark covers them) for the next start.
        this.pendingBytes -= batchBytes;
        this.stall ??= new DeliveryStalledError(this.streamName, batch.length, error instanceof DeliveryStalledError ? error.cause : error);
        throw this.stall;
      }
      // Not expected (writes retry until they succeed): put the batch back in front and try again later,
      // rather than let a later delivered mark cover records that never arrived.
      this.options.onError?.(error, 'flush');
      this.buffer = batch.concat(this.buffer);
      this.bufferedBytes += batchBytes;
      this.startTimer(Math.min((this.options.retryDelayMs ?? 100) * 2 ** Math.min(this.failedFlushes++, 10), this.options.maxRetryDelayMs ?? 5000));
      return;
    }
    this.failedFlushes = 0;
    const through = batch[batch.length - 1].seq;
    await this.untilWritten('write-ahead log mark', () => this.wal.markDelivered(through)).catch((error) => {
      // Not fatal: the records are delivered; after a restart they would be delivered again.
      this.options.onError?.(error, 'write-ahead log mark');
    });
    this.pendingBytes -= batchBytes;
    this.emit('flushed', { records: batch.length, keys, counters: this.counters });
  }

  // -------------------------------------------------------------------------------------------
  // One flush
  // -------------------------------------------------------------------------------------------

  private async deliverBatch(batch: readonly BufferedRecord[]): Promise<string[]> {
    const outcomes = await this.transform(batch);
    const errors = new Map<ErrorOutputType, ErrorLine[]>();
    const addError = (type: ErrorOutputType, arrivalTimestamp: number, line: object): void => {
      const list = errors.get(type) ?? [];
      list.push({ arrivalTimestamp, json: JSON.stringify(line) });
      errors.set(type, list);
    };
    const ok: Array<{ record: BufferedRecord; data: Buffer; partitionKeys?: Readonly<Record<string, unknown>> }> = [];
    let dropped = 0;
    outcomes.forEach((outcome, i) => {
      const record = batch[i];
      if (outcome.kind === 'ok') {
        ok.push({ record, data: outcome.data, partitionKeys: outcome.partitionKeys });
      } else if (outcome.kind === 'dropped') {
        dropped++;
      } else {
        addError('processing-failed', record.arrivalTimestamp, {
          attemptsMade: outcome.attemptsMade,
          arrivalTimestamp: record.arrivalTimestamp,
          errorCode: outcome.errorCode,
          errorMessage: outcome.errorMessage,
          attemptEndingTimestamp: outcome.attemptEndingTimestamp,
          rawData: record.data.toString('base64'),
          lambdaArn: this.lambdaArn,
        });
      }
    });

    const keys: string[] = [];
    const destination = this.options.destination;
    if (destination.kind === 'lake') {
      await this.deliverToLake(destination, ok, addError, keys);
    } else {
      await this.deliverToSearch(destination, ok, addError, keys);
    }
    for (const [type, lines] of errors) {
      keys.push(await this.writeErrorObject(type, lines));
    }
    // Counted last, like every other outcome once it is final, so a retried batch is not counted twice.
    this.counts.dropped += dropped;
    return keys;
  }

  private async deliverToLake(
    destination: LakeDestination,
    ok: ReadonlyArray<{ record: BufferedRecord; data: Buffer; partitionKeys?: Readonly<Record<string, unknown>> }>,
    addError: (type: ErrorOutputType, arrivalTimestamp: number, line: object) => void,
    keys: string[],
  ): Promise<void> {
    const template = this.dataPrefix!;
    const partitioningFailed = (record: BufferedRecord, data: Buffer, code: string, message: string): void => {
      addError('partitioning-failed', record.arrivalTimestamp, {
        attemptsMade: 1,
        arrivalTimestamp: record.arrivalTimestamp,
        errorCode: code,
        errorMessage: message,
        attemptEndingTimestamp: this.clock.now(),
        rawData: data.toString('base64'),
        ...(this.lambdaArn ? { lambdaArn: this.lambdaArn } : {}),
      });
    };
    // Group by the values of the partition keys the prefix uses (validated before they can become a path).
    const groups = new Map<string, LakeGroup>();
    // A transform usually hands the records of one partition one keys object: checked once, then looked up.
    const checked = new Map<Readonly<Record<string, unknown>>, LakeGroup | { code: string; message: string }>();
    for (const item of ok) {
      const known = item.partitionKeys === undefined ? undefined : checked.get(item.partitionKeys);
      const found = known ?? partitionGroup(template.partitionKeys, item.partitionKeys, groups);
      if (known === undefined && item.partitionKeys !== undefined) checked.set(item.partitionKeys, found);
      if ('code' in found) partitioningFailed(item.record, item.data, found.code, found.message);
      else found.items.push(item);
    }

    for (const group of groups.values()) {
      const oldest = oldestArrival(group.items.map((i) => i.record));
      let prefix: string;
      try {
        prefix = evaluatePrefix(template, { arrivalTimestamp: oldest, timeZone: this.timeZone, partitionKeys: group.partitionKeys });
      } catch (error) {
        if (!(error instanceof PrefixEvaluationError)) throw error;
        for (const item of group.items) partitioningFailed(item.record, item.data, PARTITION_KEY_INVALID, `${error.message}.`);
        continue;
      }
      const key = objectKey(prefix, { streamName: this.streamName, timestamp: oldest, timeZone: this.timeZone, extension: '.parquet' });
      const conversion = await this.untilWritten(`convert to Parquet for s3://${this.options.bucket}/${key}`, async () => {
        const file = await this.store.newTempFile('.parquet');
        try {
          return { file, result: await this.writer!.convert(group.items.map((i) => i.data), file) };
        } catch (error) {
          await fs.promises.rm(file, { force: true });
          throw error;
        }
      });
      for (const failure of conversion.result.failures) {
        const { record, data } = group.items[failure.index];
        addError('format-conversion-failed', record.arrivalTimestamp, this.formatConversionLine(destination.glueTable, record, data, failure.errorCode, failure.errorMessage));
      }
      if (conversion.result.rows === 0) continue;
      try {
        await this.untilWritten(`write s3://${this.options.bucket}/${key}`, () => this.store.putObjectFromFile(this.options.bucket, key, conversion.file));
      } finally {
        // Gone after a successful put; left behind only when delivery gave up while stopping.
        await fs.promises.rm(conversion.file, { force: true });
      }
      this.counts.deliveredRows += conversion.result.rows;
      this.counts.files++;
      this.counts.bytes += conversion.result.bytes;
      keys.push(key);
    }
  }

  private async deliverToSearch(
    destination: SearchDestination,
    ok: ReadonlyArray<{ record: BufferedRecord; data: Buffer }>,
    addError: (type: ErrorOutputType, arrivalTimestamp: number, line: object) => void,
    keys: string[],
  ): Promise<void> {
    if (ok.length === 0) return;
    const documents: SearchDocument[] = ok.map(({ record, data }) => ({
      recordId: record.recordId, data, arrivalTimestamp: record.arrivalTimestamp, subsequenceNumber: record.kinesis?.subsequenceNumber ?? 0,
    }));
    const delivery = await this.untilWritten(`deliver to OpenSearch (${destination.sink.pipeline})`, () => destination.sink.deliver(documents));
    this.counts.deliveredRows += delivery.indexed;
    this.counts.files += delivery.requests;
    this.counts.bytes += delivery.bytes;
    for (const failure of delivery.failed) {
      addError('AmazonOpenSearchService-failed', failure.document.arrivalTimestamp, failedDocumentRecord(failure));
    }
    if (this.backupPrefix) {
      const oldest = oldestArrival(documents);
      const prefix = evaluatePrefix(this.backupPrefix, { arrivalTimestamp: oldest, timeZone: this.timeZone });
      const key = objectKey(prefix, { streamName: this.streamName, timestamp: oldest, timeZone: this.timeZone });
      // Firehose concatenates record bytes as they are.
      const body = Buffer.concat(documents.map((d) => d.data));
      await this.untilWritten(`write s3://${this.options.bucket}/${key}`, () => this.store.putObject(this.options.bucket, key, body));
      keys.push(key);
    }
  }

  private formatConversionLine(table: GlueTableRef, record: BufferedRecord, data: Buffer, code: string, message: string): object {
    const catalogId = table.catalogId ?? this.accountId;
    return {
      attemptsMade: 1,
      arrivalTimestamp: record.arrivalTimestamp,
      lastErrorCode: code,
      lastErrorMessage: message,
      attemptEndingTimestamp: this.clock.now(),
      rawData: data.toString('base64'),
      sequenceNumber: record.kinesis?.sequenceNumber ?? null,
      subSequenceNumber: record.kinesis ? record.kinesis.subsequenceNumber : null,
      dataCatalogTable: {
        catalogId,
        databaseName: table.databaseName,
        tableName: table.tableName,
        region: this.region,
        versionId: table.versionId ?? 'LATEST',
        catalogArn: `arn:aws:glue:${this.region}:${catalogId}:catalog`,
      },
    };
  }

  /** One object per error type per flush; retried until written, as Firehose does. */
  private async writeErrorObject(type: ErrorOutputType, lines: readonly ErrorLine[]): Promise<string> {
    const oldest = oldestArrival(lines);
    const prefix = evaluatePrefix(this.errorPrefix, { arrivalTimestamp: oldest, timeZone: this.timeZone, errorOutputType: type });
    const key = objectKey(prefix, { streamName: this.streamName, timestamp: oldest, timeZone: this.timeZone });
    const body = `${lines.map((l) => l.json).join('\n')}\n`;
    await this.untilWritten(`write s3://${this.options.bucket}/${key}`, () => this.store.putObject(this.options.bucket, key, body));
    this.counts[ERROR_COUNTER[type]] += lines.length;
    this.counts.errorFiles++;
    return key;
  }

  /** Retries with backoff for as long as the stream runs; once stopping, a few more attempts, then DeliveryStalledError. */
  private async untilWritten<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    let delay = this.options.retryDelayMs ?? 100;
    const maxDelay = this.options.maxRetryDelayMs ?? 5000;
    let attemptsWhileStopping = 0;
    for (;;) {
      try {
        return await attempt();
      } catch (error) {
        this.options.onError?.(error, what);
        if (this.stopping && ++attemptsWhileStopping >= ATTEMPTS_WHILE_STOPPING) throw new DeliveryStalledError(this.streamName, 0, error);
        await this.sleep(delay);
        delay = Math.min(delay * 2, maxDelay);
      }
    }
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        cancel();
        this.sleepers.delete(wake);
        resolve();
      };
      const cancel = this.clock.setTimer(ms, wake);
      this.sleepers.add(wake);
    });
  }

  // -------------------------------------------------------------------------------------------
  // The transform
  // -------------------------------------------------------------------------------------------

  private async transform(batch: readonly BufferedRecord[]): Promise<Outcome[]> {
    const processor = this.options.processor;
    if (!processor) return batch.map((r) => ({ kind: 'ok', data: r.data }));
    const chunks = invocationChunks(batch, Math.max(1, Math.round((processor.bufferMiB ?? 1) * MiB)));
    const outcomes: Outcome[][] = new Array(chunks.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const i = next++;
        outcomes[i] = await this.invokeWithRetries(processor, chunks[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(processor.concurrency ?? 2, chunks.length) }, worker));
    return outcomes.flat();
  }

  private async invokeWithRetries(processor: ProcessorSettings, chunk: readonly BufferedRecord[]): Promise<Outcome[]> {
    const attempts = 1 + (processor.retries ?? 3);
    const ids = invocationRecordIds(chunk, this.openedAt);
    let delay = processor.retryDelayMs ?? 200;
    let last: { code: LambdaErrorCode; detail: string } = { code: 'Lambda.FunctionError', detail: '' };
    for (let attempt = 1; attempt <= attempts; attempt++) {
      this.counts.invocations++;
      if (attempt > 1) this.counts.retries++;
      const event: TransformationEvent = {
        invocationId: randomUUID(),
        deliveryStreamArn: this.streamArn,
        ...(this.options.sourceKinesisStreamArn ? { sourceKinesisStreamArn: this.options.sourceKinesisStreamArn } : {}),
        region: this.region,
        records: chunk.map((r, i): TransformationEventRecord => ({
          recordId: ids[i],
          approximateArrivalTimestamp: r.arrivalTimestamp,
          data: r.data.toString('base64'),
          ...(r.kinesis ? { kinesisRecordMetadata: { ...r.kinesis } } : {}),
        })),
      };
      const answer = await this.invoke(processor, event);
      if ('failure' in answer) {
        last = answer.failure;
      } else {
        let checked: ReturnType<typeof validateResponse>;
        try {
          checked = validateResponse(answer.response, ids);
        } catch (error) {
          // A response so odd that reading it throws (getters, cycles): Firehose could not parse it either.
          checked = { failure: { code: 'Lambda.JsonProcessingException', detail: String((error as { message?: unknown })?.message ?? error) } };
        }
        if ('outcomes' in checked) {
          return checked.outcomes.map((o) => o.kind === 'processing-failed'
            ? { ...o, attemptsMade: attempt, attemptEndingTimestamp: this.clock.now() }
            : o);
        }
        last = checked.failure;
      }
      if (attempt < attempts) {
        await this.sleep(delay);
        delay *= 2;
      }
    }
    const message = LAMBDA_MESSAGES[last.code] + (last.detail ? ` (local twin: ${last.detail})` : '');
    const ending = this.clock.now();
    return chunk.map(() => ({ kind: 'processing-failed', attemptsMade: attempts, errorCode: last.code, errorMessage: message, attemptEndingTimestamp: ending }));
  }

  private async invoke(
    processor: ProcessorSettings,
    event: TransformationEvent,
  ): Promise<{ response: unknown } | { failure: { code: LambdaErrorCode; detail: string } }> {
    const timeoutMs = processor.timeoutMs ?? 300_000;
    let cancelTimeout: (() => void) | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      cancelTimeout = this.clock.setTimer(timeoutMs, () => resolve('timeout'));
    });
    try {
      const result = await Promise.race([Promise.resolve().then(() => processor.invoke(event)), timeout]);
      if (result === 'timeout') return { failure: { code: 'Lambda.FunctionTimedOut', detail: `no response within ${timeoutMs} ms` } };
      return { response: result };
    } catch (error) {
      const { name, message } = (error ?? {}) as { name?: unknown; message?: unknown };
      const detail = typeof message === 'string' ? `${typeof name === 'string' ? name : 'Error'}: ${message}` : String(error);
      return { failure: { code: 'Lambda.FunctionError', detail: detail.slice(0, 1000) } };
    } finally {
      cancelTimeout?.();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Transformation helpers
// ---------------------------------------------------------------------------------------------

/** Kinesis sequence numbers are decimal strings of any length: the longer is the later, then by digits. */
function compareSequenceNumbers(a: string, b: string): number {
  return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Splits a batch into invocations: at most `bufferBytes` of record data each (the processor buffer
 * hint) and an event under Lambda's 6 MB request limit. A record larger than the hint goes alone.
 */
export function invocationChunks<T extends { readonly data: Buffer; readonly kinesis?: KinesisRecordMetadata }>(batch: readonly T[], bufferBytes: number): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let raw = 0;
  let event = EVENT_ENVELOPE_BYTES;
  for (const record of batch) {
    const size = record.data.length;
    const encoded = eventRecordBytes(record);
    if (chunk.length > 0 && (raw + size > bufferBytes || event + encoded > LAMBDA_PAYLOAD_LIMIT)) {
      chunks.push(chunk);
      chunk = [];
      raw = 0;
      event = EVENT_ENVELOPE_BYTES;
    }
    chunk.push(record);
    raw += size;
    event += encoded;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

/** invocationId, the stream ARNs and region around the records (ARNs are at most a few hundred bytes). */
const EVENT_ENVELOPE_BYTES = 1024;
/** A record's entry in the event as JSON, its data aside: a 56-digit record id, a 13-digit arrival time, the keys and a comma. */
const EVENT_RECORD_BYTES = JSON.stringify({ recordId: '0'.repeat(56), approximateArrivalTimestamp: 1_000_000_000_000, data: '' }).length + 1;

/**
 * A record's size in the transformation event as JSON, as Lambda counts it against its 6 MB request limit:
 * exact, so invocations hold as many records as Firehose's would (a looser estimate made them smaller,
 * and hid responses that outgrow 6 MB in AWS).
 */
function eventRecordBytes(record: { readonly data: Buffer; readonly kinesis?: KinesisRecordMetadata }): number {
  const base64 = Math.ceil(record.data.length / 3) * 4;
  if (record.kinesis === undefined) return EVENT_RECORD_BYTES + base64;
  // {"key":value,…} counted field by field: cheaper than serializing it for every record of a flush.
  let metadata = 2 + ',"kinesisRecordMetadata":'.length;
  let fields = 0;
  for (const [key, value] of Object.entries(record.kinesis)) {
    if (value === undefined) continue;
    metadata += key.length + 3 + (typeof value === 'string' ? jsonStringBytes(value) : Buffer.byteLength(JSON.stringify(value), 'utf8'));
    fields++;
  }
  return EVENT_RECORD_BYTES + base64 + metadata + Math.max(0, fields - 1);
}

/** A string's size as JSON: its length and two quotes when it is printable ASCII without quotes or backslashes. */
function jsonStringBytes(s: string): number {
  return /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/.test(s) ? s.length + 2 : Buffer.byteLength(JSON.stringify(s), 'utf8');
}

/**
 * Record ids for one invocation. Firehose gives its transform record ids of its own, 56-digit numbers
 * in AWS's sample event, not the 224-character ids PutRecord answers with; these are as long: when
 * the engine opened (ms), then the record's place in the stream. So they are unique per stream, also
 * across restarts (a log whose records were all delivered starts counting again), and the same on a
 * retry. Their length matters: with many small records, ids take a good part of Lambda's 6 MB response.
 */
function invocationRecordIds(chunk: readonly BufferedRecord[], openedAt: number): string[] {
  const run = String(openedAt).padStart(13, '0');
  return chunk.map((r) => `49${run}${String(r.seq).padStart(41, '0')}`);
}

/**
 * Checks a transform response against Firehose's status model. Any problem fails the whole
 * invocation, with the error code Firehose uses for it.
 */
function validateResponse(
  response: unknown,
  recordIds: readonly string[],
): { outcomes: Outcome[] } | { failure: { code: LambdaErrorCode; detail: string } } {
  const malformed = (detail: string) => ({ failure: { code: 'Lambda.JsonProcessingException' as const, detail } });
  if (typeof response !== 'object' || response === null || Array.isArray(response)) {
    return malformed(`the response is ${response === null ? 'null' : Array.isArray(response) ? 'an array' : typeof response}, not {records: [...]}`);
  }
  const records = (response as { records?: unknown }).records;
  if (!Array.isArray(records)) return malformed('the response has no "records" array');
  // Lambda refuses an oversized response before Firehose reads it: measured as the JSON Lambda would send.
  const size = responseJsonBytes(response as Record<string, unknown>, records);
  if (size > LAMBDA_PAYLOAD_LIMIT) {
    return { failure: { code: 'Lambda.FunctionError', detail: `the response is ${size} bytes as JSON; Lambda's limit is ${LAMBDA_PAYLOAD_LIMIT}` } };
  }
  const position = new Map(recordIds.map((id, i) => [id, i]));
  const outcomes: Array<Outcome | undefined> = new Array(recordIds.length);
  for (let i = 0; i < records.length; i++) {
    const entry = records[i] as Record<string, unknown> | null;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return malformed(`records[${i}] is not an object`);
    const { recordId, result, data, metadata } = entry;
    if (typeof recordId !== 'string') return malformed(`records[${i}].recordId is not a string`);
    if (result !== 'Ok' && result !== 'Dropped' && result !== 'ProcessingFailed') {
      return malformed(`records[${i}].result is ${JSON.stringify(result)}; expected Ok, Dropped or ProcessingFailed`);
    }
    if (typeof data !== 'string') return malformed(`records[${i}].data is ${data === undefined ? 'missing' : typeof data}; every record needs base64 data`);
    const bytes = decodeBase64Strict(data);
    if (bytes === undefined) return malformed(`records[${i}].data is not valid base64`);
    let partitionKeys: Record<string, unknown> | undefined;
    if (metadata !== undefined && metadata !== null) {
      if (typeof metadata !== 'object' || Array.isArray(metadata)) return malformed(`records[${i}].metadata is not an object`);
      const keys = (metadata as { partitionKeys?: unknown }).partitionKeys;
      if (keys !== undefined && keys !== null) {
        if (typeof keys !== 'object' || Array.isArray(keys)) return malformed(`records[${i}].metadata.partitionKeys is not an object`);
        partitionKeys = keys as Record<string, unknown>;
      }
    }
    const at = position.get(recordId);
    if (at === undefined) {
      return { failure: { code: 'Lambda.MissingRecordId', detail: `records[${i}].recordId ${JSON.stringify(recordId.slice(0, 100))} was not in the invocation` } };
    }
    if (outcomes[at] !== undefined) {
      return { failure: { code: 'Lambda.DuplicatedRecordId', detail: `record id ${JSON.stringify(recordId.slice(0, 100))} is returned more than once` } };
    }
    outcomes[at] = result === 'Ok'
      ? { kind: 'ok', data: bytes, partitionKeys }
      : result === 'Dropped'
        ? { kind: 'dropped' }
        : { kind: 'processing-failed', attemptsMade: 1, ...PROCESSING_FAILED_STATUS_FIELDS, attemptEndingTimestamp: 0 };
  }
  const missing = outcomes.findIndex((o) => o === undefined);
  if (missing >= 0 || records.length < recordIds.length) {
    const index = missing >= 0 ? missing : records.length;
    return { failure: { code: 'Lambda.MissingRecordId', detail: `record id ${JSON.stringify(recordIds[index])} is missing from the response` } };
  }
  return { outcomes: outcomes as Outcome[] };
}

const PROCESSING_FAILED_STATUS_FIELDS = { errorCode: PROCESSING_FAILED_STATUS.code, errorMessage: PROCESSING_FAILED_STATUS.message };

/** The group of the records with these partition keys (made on first sight), or why the keys cannot make a prefix. */
function partitionGroup(
  names: readonly string[],
  partitionKeys: Readonly<Record<string, unknown>> | undefined,
  groups: Map<string, LakeGroup>,
): LakeGroup | { code: string; message: string } {
  const values: Record<string, string> = {};
  for (const key of names) {
    const value = partitionKeys && Object.prototype.hasOwnProperty.call(partitionKeys, key) ? partitionKeys[key] : undefined;
    if (value === undefined) {
      return { code: PARTITION_KEY_MISSING, message: `Partition key "${key}" is missing from the transform's metadata.partitionKeys.` };
    }
    const invalid = partitionValueProblem(value);
    if (invalid) {
      return { code: PARTITION_KEY_INVALID, message: `Partition key "${key}" ${invalid}; the local twin refuses values that are not safe in an S3 key.` };
    }
    values[key] = value as string;
  }
  const groupKey = names.map((k) => values[k]).join('\u0000');
  let group = groups.get(groupKey);
  if (!group) {
    group = { partitionKeys: values, items: [] };
    groups.set(groupKey, group);
  }
  return group;
}

/** A string JSON writes as is between its quotes: printable ASCII without `"` or `\\`. */
const PLAIN_JSON_STRING = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/;

/** Bytes of `value` as JSON.stringify writes it (0 for what it leaves out, e.g. undefined). */
function jsonBytes(value: unknown): number {
  if (typeof value === 'string' && PLAIN_JSON_STRING.test(value)) return value.length + 2;
  const text = JSON.stringify(value) as string | undefined;
  return text === undefined ? 0 : Buffer.byteLength(text, 'utf8');
}

/**
 * Members whose string values the checks after the size check require to be plain (a record id of the
 * invocation, one of three results, standard base64): counted as their length and quotes, which is
 * exact for every response those checks accept; a response they refuse fails the invocation anyway.
 * Scanning each ~600-character data string for escapes instead costs ~0.8 µs a record.
 */
const PLAIN_MEMBERS: ReadonlySet<string> = new Set(['recordId', 'result', 'data']);

/**
 * Bytes of the transform's response serialized as JSON, exactly, without building the string (which
 * would run to 6 MB per invocation): a response near the limit must be judged as Lambda judges it.
 * Entries are summed member by member; a keys object shared by many entries is serialized once.
 */
function responseJsonBytes(response: Record<string, unknown>, records: readonly unknown[]): number {
  const topKeys = Object.keys(response);
  if (topKeys.length !== 1) return jsonBytes(response);
  let total = '{"records":[]}'.length + Math.max(0, records.length - 1);
  let lastMetadata: unknown;
  let lastMetadataBytes = 0;
  for (const entry of records) {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      total += jsonBytes(entry) || 4; // undefined in an array is written as null
      continue;
    }
    let members = 0;
    let bytes = 2;
    for (const key of Object.keys(entry)) {
      const value = (entry as Record<string, unknown>)[key];
      let valueBytes: number;
      if (typeof value === 'string' && PLAIN_MEMBERS.has(key)) {
        valueBytes = value.length + 2;
      } else if (key === 'metadata' && typeof value === 'object' && value !== null) {
        if (value !== lastMetadata) {
          lastMetadata = value;
          lastMetadataBytes = jsonBytes(value);
        }
        valueBytes = lastMetadataBytes;
      } else {
        valueBytes = jsonBytes(value);
      }
      if (valueBytes === 0) continue;
      bytes += (PLAIN_MEMBERS.has(key) || key === 'metadata' ? key.length + 2 : jsonBytes(key)) + 1 + valueBytes;
      members++;
    }
    total += bytes + Math.max(0, members - 1);
  }
  return total;
}

/**
 * Decodes standard, padded base64 (what Lambda runtimes produce; Java's basic decoder on Firehose's
 * side refuses anything else). Node's decoder skips characters outside the alphabet, so a short
 * result means there were some; it also takes the URL-safe alphabet, which is refused up front.
 */
function decodeBase64Strict(text: string): Buffer | undefined {
  const n = text.length;
  if (n % 4 !== 0 || text.includes('-') || text.includes('_')) return undefined;
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const bytes = Buffer.from(text, 'base64');
  return bytes.length === (n / 4) * 3 - padding ? bytes : undefined;
}

/** Arrival time of the oldest record (a loop: spreading 100k values into Math.min overflows the stack). */
function oldestArrival(items: ReadonlyArray<{ readonly arrivalTimestamp: number }>): number {
  let oldest = Infinity;
  for (const item of items) if (item.arrivalTimestamp < oldest) oldest = item.arrivalTimestamp;
  return oldest;
}

function unavailable(message: string): IngestResult {
  return { ok: false, errorCode: SERVICE_UNAVAILABLE, errorMessage: message };
}

/** A Firehose-looking record id (they are long decimal strings) for records that arrived without one. */
function generatedRecordId(seq: number): string {
  return `${String(Date.now()).padStart(15, '0')}${String(seq).padStart(20, '0')}`;
}

function validateOptions(options: DeliveryEngineOptions): void {
  const problems: string[] = [];
  if (!/^[a-zA-Z0-9_.-]{1,64}$/.test(options.streamName)) problems.push(`streamName ${JSON.stringify(options.streamName)} must be 1–64 of [a-zA-Z0-9_.-]`);
  const size = options.bufferSizeMiB ?? 1;
  if (!(size > 0 && size <= 128)) problems.push(`bufferSizeMiB must be > 0 and ≤ 128, got ${size}`);
  const interval = options.bufferIntervalSeconds ?? 2;
  if (!(interval >= 0 && interval <= 900)) problems.push(`bufferIntervalSeconds must be 0–900, got ${interval}`);
  const processor = options.processor;
  if (processor) {
    const retries = processor.retries ?? 3;
    if (!(Number.isInteger(retries) && retries >= 0 && retries <= 300)) problems.push(`processor.retries must be an integer 0–300, got ${retries}`);
    const buffer = processor.bufferMiB ?? 1;
    if (!(buffer > 0 && buffer <= 6)) problems.push(`processor.bufferMiB must be > 0 and ≤ 6 (Lambda's payload limit), got ${buffer}`);
    const concurrency = processor.concurrency ?? 2;
    if (!(Number.isInteger(concurrency) && concurrency >= 1)) problems.push(`processor.concurrency must be a positive integer, got ${concurrency}`);
  }
  if (options.timeZone) {
    try {
      checkTimeZone(options.timeZone);
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  const bucketProblem = bucketNameProblem(options.bucket);
  if (bucketProblem) problems.push(`bucket ${JSON.stringify(options.bucket)} ${bucketProblem}`);
  if (problems.length > 0) throw new Error(`delivery stream ${options.streamName}: ${problems.join('; ')}`);
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

export interface EngineFromConfigOptions {
  readonly dataDir: string;
  /** @default localBucketName(config), the twin's data bucket */
  readonly bucket?: string;
  readonly model: SchemaModel;
  /** The transform; omit for a stream without one. */
  readonly processor?: TransformProcessor;
  /** Required for the search destination. */
  readonly sink?: SearchSink;
  readonly region?: string;
  readonly accountId?: string;
  readonly sourceKinesisStreamArn?: string;
  readonly store?: ObjectStore;
  readonly clock?: Clock;
  readonly timeZone?: string;
  readonly onError?: (error: unknown, context: string) => void;
  /** Overrides the transform timeout from the configuration (e.g. in tests). */
  readonly processorTimeoutMs?: number;
  /** See DeliveryEngineOptions.beforeWrite. */
  readonly beforeWrite?: (file: string) => void;
}

/**
 * Engine options for one of a pipeline's delivery streams, from the Sluice configuration: stream
 * names from `resourceNames`, the twin's buffer hints (`local.bufferSizeMiB/IntervalSeconds`),
 * the transform's retries, processor buffer and timeout, and the Glue names.
 */
export function engineOptionsFromConfig(
  config: SluiceConfig,
  pipelineName: string,
  destination: 'lake' | 'search',
  options: EngineFromConfigOptions,
): DeliveryEngineOptions {
  const pipeline = config.pipelines[pipelineName];
  if (!pipeline) throw new Error(`pipeline "${pipelineName}" is not configured; configured: ${Object.keys(config.pipelines).join(', ')}`);
  if (!pipeline.destinations.includes(destination)) {
    throw new Error(`pipeline "${pipelineName}" has no ${destination} destination (destinations: ${pipeline.destinations.join(', ')})`);
  }
  const names = resourceNames(config, pipelineName);
  let target: LakeDestination | SearchDestination;
  if (destination === 'lake') {
    target = { kind: 'lake', model: options.model, glueTable: { databaseName: names.glueDatabase, tableName: names.glueTable } };
  } else {
    if (!options.sink) throw new Error(`pipeline "${pipelineName}": the search delivery stream needs a SearchSink`);
    target = { kind: 'search', sink: options.sink, domainArn: `arn:aws:es:${options.region ?? 'us-east-1'}:${options.accountId ?? '000000000000'}:domain/${names.searchDomain}` };
  }
  return {
    streamName: destination === 'lake' ? names.lakeDeliveryStream : names.searchDeliveryStream,
    dataDir: options.dataDir,
    bucket: options.bucket ?? localBucketName(config),
    destination: target,
    processor: options.processor
      ? {
        invoke: options.processor,
        retries: pipeline.transform.retries,
        bufferMiB: pipeline.transform.processorBufferMiB,
        timeoutMs: options.processorTimeoutMs ?? pipeline.transform.timeoutSeconds * 1000,
      }
      : undefined,
    bufferSizeMiB: config.local.bufferSizeMiB,
    bufferIntervalSeconds: config.local.bufferIntervalSeconds,
    region: options.region,
    accountId: options.accountId,
    sourceKinesisStreamArn: pipeline.source === 'kinesis' ? options.sourceKinesisStreamArn : undefined,
    store: options.store,
    clock: options.clock,
    timeZone: options.timeZone,
    onError: options.onError,
    beforeWrite: options.beforeWrite,
  };
}

// ---------------------------------------------------------------------------------------------
// Write-ahead log
// ---------------------------------------------------------------------------------------------

const FRAME_HEADER_BYTES = 8;
const FRAME_RECORDS = 1;
const FRAME_DELIVERED = 2;
/**
 * Start a new segment once the active one is this large; older ones go once fully delivered. Small, because under a
 * steady load the active segment is never wholly delivered (records arrive while a flush runs): it is the older ones
 * that go, so the log holds about this much beyond what is not yet delivered.
 */
const SEGMENT_ROLL_BYTES = MiB;
const MAX_FRAME_BYTES = 1024 * MiB;

/** `kinesis` as logged: an older Sluice logged subsequenceNumber as a string ('' for a plain record). */
type LoggedRecord = [seq: number, recordId: string, arrivalTimestamp: number, length: number, kinesis: FirehoseKinesisRecordMetadata | null];

interface Segment {
  readonly file: string;
  /** Highest record sequence number in the segment (-1 when none). */
  maxSeq: number;
}

/**
 * Append-only log of accepted records and "delivered through N" marks, in segments
 * `wal/<first seq>.log`. Frames are `[u32 length][u32 crc32][payload]`; a frame that is short, fails its
 * checksum or does not read as a frame ends a segment (a torn write from a crash: never acknowledged), unless
 * whole frames follow it to the segment's end: that is damage, skipped to where they start. Appends are
 * group-committed: concurrent callers share one write and one fdatasync.
 */
class WriteAheadLog {
  private active: { segment: Segment; handle: fs.promises.FileHandle; size: number } | undefined;
  private queue: Array<{ frame: Buffer; maxSeq: number; resolve: () => void; reject: (error: unknown) => void }> = [];
  private writing: Promise<void> | undefined;
  private delivered: number;
  private closed = false;

  private constructor(
    private readonly dir: string,
    private readonly segments: Segment[],
    delivered: number,
    private nextSegmentNumber: number,
    private readonly beforeWrite: (file: string) => void,
  ) {
    this.delivered = delivered;
  }

  /** Opens (creating if needed) and replays the log: records above the delivered mark, in order. */
  static async open(
    dir: string,
    warn: (message: string) => void = () => undefined,
    beforeWrite: (file: string) => void = () => undefined,
  ): Promise<{ wal: WriteAheadLog; recovered: BufferedRecord[]; nextSeq: number }> {
    await syncFoldersMade(dir, await fs.promises.mkdir(dir, { recursive: true }));
    const files = (await fs.promises.readdir(dir)).filter((f) => /^\d{16}\.log$/.test(f)).sort();
    const segments: Segment[] = [];
    const log = emptyLogRead();
    for (let i = 0; i < files.length; i++) {
      const file = path.join(dir, files[i]);
      const bytes = await fs.promises.readFile(file);
      const segment: Segment = { file, maxSeq: -1 };
      for (const damage of readSegment(log, segment, bytes)) {
        if (damage.resume === undefined) {
          // Nothing whole follows: the end of a write a crash cut short, never acknowledged (the
          // acknowledgement waits for the fdatasync). The last segment is cut there, as appends would go on.
          if (i === files.length - 1) {
            await fs.promises.truncate(file, damage.offset);
            warn(`${file}: cut off ${bytes.length - damage.offset} bytes at byte ${damage.offset} that a crash left unfinished (never acknowledged)`);
          } else {
            warn(`${file}: corrupt frame at byte ${damage.offset} and nothing whole after it; the rest of this segment is skipped`);
          }
          continue;
        }
        // Whole frames after bad bytes, to the segment's end: damage (a bad sector, an edit), not a torn end, so the
        // records after it, acknowledged, are read on; the segment is kept as found for a look.
        const copy = `${file}.corrupt`;
        await fs.promises.copyFile(file, copy);
        warn(`${file}: ${damage.resume - damage.offset} corrupt bytes at byte ${damage.offset}, whole frames after them to the end: reading on from byte ${damage.resume} `
          + `(the records in the damaged part are lost; the segment as found is kept as ${copy})`);
      }
      segments.push(segment);
    }
    const { records, delivered, maxSeq } = log;
    const recovered = [...records.values()].filter((r) => r.seq > delivered).sort((a, b) => a.seq - b.seq);
    const nextSeq = Math.max(maxSeq, delivered) + 1;
    const lastNumber = files.length > 0 ? Number(files[files.length - 1].slice(0, 16)) : -1;
    const wal = new WriteAheadLog(dir, segments, delivered, lastNumber + 1, beforeWrite);
    await wal.removeDeliveredSegments();
    return { wal, recovered, nextSeq };
  }

  /** Resolves once the records are on disk (fdatasync). */
  append(records: readonly BufferedRecord[]): Promise<void> {
    const header: LoggedRecord[] = records.map((r) => [r.seq, r.recordId, r.arrivalTimestamp, r.data.length, r.kinesis ?? null]);
    const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
    const prefix = Buffer.alloc(5);
    prefix[0] = FRAME_RECORDS;
    prefix.writeUInt32BE(headerBytes.length, 1);
    const frame = encodeFrame(Buffer.concat([prefix, headerBytes, ...records.map((r) => r.data)]));
    return this.enqueue(frame, records.length > 0 ? records[records.length - 1].seq : -1);
  }

  /** Records every record up to `through` as delivered; segments wholly delivered are removed. */
  async markDelivered(through: number): Promise<void> {
    if (through <= this.delivered) return;
    await this.enqueue(deliveredFrame(through), -1);
    this.delivered = through;
    await this.removeDeliveredSegments();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.writing) await this.writing;
    await this.active?.handle.close();
    this.active = undefined;
  }

  private enqueue(frame: Buffer, maxSeq: number): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the write-ahead log is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ frame, maxSeq, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.writing) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      // Frames queued after the drain loop looked for the last time.
      if (this.queue.length > 0) this.kick();
    });
  }

  /** Writes everything queued in one write + one fdatasync per round (group commit). */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const group = this.queue;
      this.queue = [];
      const body = Buffer.concat(group.map((g) => g.frame));
      let active: NonNullable<WriteAheadLog['active']> | undefined;
      try {
        active = await this.activeSegment();
        this.beforeWrite(active.segment.file);
        await writeFully(active.handle, body, active.size);
        await active.handle.datasync();
        active.size += body.length;
        for (const g of group) active.segment.maxSeq = Math.max(active.segment.maxSeq, g.maxSeq);
        for (const g of group) g.resolve();
      } catch (error) {
        if (active) {
          // Take the partial frame back so later frames are not hidden behind it; if that fails, start a new segment.
          await active.handle.truncate(active.size).catch(async () => {
            await active!.handle.close().catch(() => undefined);
            this.active = undefined;
          });
        }
        for (const g of group) g.reject(error);
      }
    }
  }

  private async activeSegment(): Promise<NonNullable<WriteAheadLog['active']>> {
    const active = this.active;
    const roll = active && active.size >= SEGMENT_ROLL_BYTES;
    if (active && !roll) return active;
    if (active) {
      await active.handle.close();
      this.active = undefined;
    }
    let handle: fs.promises.FileHandle | undefined;
    let file = '';
    while (!handle) {
      file = path.join(this.dir, `${String(this.nextSegmentNumber++).padStart(16, '0')}.log`);
      this.beforeWrite(file);
      try {
        // Exclusive create: never append to (or overwrite) a segment an earlier run left.
        handle = await fs.promises.open(file, 'wx');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
    }
    // Every segment starts with the delivered mark, so removing older segments never loses it.
    const mark = deliveredFrame(this.delivered);
    try {
      await writeFully(handle, mark, 0);
      await handle.datasync();
      await syncDirectory(this.dir);
    } catch (error) {
      // A full or failing disk: the segment is not one (its mark is not on disk), and every append that
      // meets the disk so would leave another file and an open descriptor behind.
      await handle.close().catch(() => undefined);
      await fs.promises.rm(file, { force: true }).catch(() => undefined);
      throw error;
    }
    const segment: Segment = { file, maxSeq: -1 };
    this.segments.push(segment);
    this.active = { segment, handle, size: mark.length };
    return this.active;
  }

  private async removeDeliveredSegments(): Promise<void> {
    for (let i = 0; i < this.segments.length; i++) {
      const segment = this.segments[i];
      const isActive = this.active?.segment === segment;
      if (segment.maxSeq <= this.delivered && !isActive) {
        await fs.promises.rm(segment.file, { force: true });
        this.segments.splice(i, 1);
        i--;
      }
    }
  }
}

/**
 * Delivery streams under `<dataDir>/firehose/` that `configured` does not name and whose write-ahead log still holds
 * records not delivered, with their count: a pipeline removed or renamed, a destination removed, or another `prefix`
 * or `env`.
 */
export function undeliveredUnconfiguredStreams(dataDir: string, configured: ReadonlySet<string>): Array<{ stream: string; dir: string; records: number }> {
  const root = path.join(dataDir, 'firehose');
  if (!fs.existsSync(root)) return [];
  const found: Array<{ stream: string; dir: string; records: number }> = [];
  for (const stream of fs.readdirSync(root).sort()) {
    if (configured.has(stream)) continue;
    const records = undeliveredRecordCount(dataDir, stream);
    if (records > 0) found.push({ stream, dir: path.join(root, stream), records });
  }
  return found;
}

/**
 * Records in a delivery stream's write-ahead log (`<dataDir>/firehose/<stream>/wal/`) not yet delivered; 0 when it has
 * none: the records the next start would recover. Read only: nothing is cut, copied or removed.
 */
export function undeliveredRecordCount(dataDir: string, stream: string): number {
  const walDir = path.join(dataDir, 'firehose', stream, 'wal');
  if (!fs.existsSync(walDir)) return 0;
  const log = emptyLogRead();
  for (const name of fs.readdirSync(walDir).filter((f) => /^\d{16}\.log$/.test(f)).sort()) {
    const file = path.join(walDir, name);
    // Read past damage as WriteAheadLog.open reads past it, without its repairs: the damage met is not acted on.
    Array.from(readSegment(log, { file, maxSeq: -1 }, fs.readFileSync(file)));
  }
  return [...log.records.keys()].filter((seq) => seq > log.delivered).length;
}

/** What a write-ahead log's segments say, read in order: records by seq, the delivered mark, the highest seq. */
interface LogRead {
  readonly records: Map<number, BufferedRecord>;
  delivered: number;
  maxSeq: number;
  /** The highest seq read before the first damage, once damage was met. */
  damagedAt: number | undefined;
}

function emptyLogRead(): LogRead {
  return { records: new Map(), delivered: -1, maxSeq: -1, damagedAt: undefined };
}

/**
 * Reads one segment's frames into `log` (and its records' highest seq into `segment`), yielding each stretch of damage
 * as it is met: where it starts, and where whole frames resume (undefined: nothing whole follows, the segment's reading
 * ends there). The caller decides what to repair; the reading goes on either way.
 */
function* readSegment(log: LogRead, segment: Segment, bytes: Buffer): Generator<{ readonly offset: number; readonly resume: number | undefined }> {
  let offset = 0;
  while (offset < bytes.length) {
    const frame = readFrame(bytes, offset);
    const content = frame && decodeFrame(frame.payload);
    if (frame && !content && log.damagedAt === undefined && frame.payload[0] !== FRAME_RECORDS && frame.payload[0] !== FRAME_DELIVERED) {
      // Whole, its checksum holds, where a frame starts, and of a kind this Sluice does not know: a later Sluice's log,
      // not damage. Taken for a torn end, it would be cut off with the acknowledged records it and those after it hold.
      throw new EmulatorStateError(`${segment.file}: the frame at byte ${offset} is of a kind this Sluice does not read (type ${frame.payload[0]}): `
        + `the write-ahead log was written by a newer Sluice. Start the twin with that Sluice to deliver what it holds (a stop flushes it), `
        + `or move ${path.dirname(path.dirname(segment.file))} away to start without it; nothing in it was changed`);
    }
    if (!frame || !content) {
      const resume = resumeAfter(bytes, offset);
      yield { offset, resume };
      if (resume === undefined) return;
      // After damage, frames read on may have begun inside a record a producer sent (see resumeAfter): what they
      // say is taken only where taking it cannot lose a record, a duplicate being the worse case left.
      offset = resume;
      log.damagedAt ??= log.maxSeq;
      continue;
    }
    offset = frame.next;
    if (content.kind === 'delivered') {
      // A mark read after damage may say records are delivered that are not: it is not taken (what it names is
      // delivered again, perhaps twice).
      if (log.damagedAt === undefined) log.delivered = Math.max(log.delivered, content.through);
    } else {
      for (const record of content.records) {
        // Nor may a record read after damage take the place of one read before it.
        if (log.damagedAt !== undefined && (record.seq <= log.damagedAt || log.records.has(record.seq))) continue;
        log.records.set(record.seq, record);
        segment.maxSeq = Math.max(segment.maxSeq, record.seq);
        log.maxSeq = Math.max(log.maxSeq, record.seq);
      }
    }
  }
}

function encodeFrame(payload: Buffer): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt32BE(crc32(payload), 4);
  return Buffer.concat([header, payload]);
}

function deliveredFrame(through: number): Buffer {
  return encodeFrame(Buffer.concat([Buffer.from([FRAME_DELIVERED]), Buffer.from(JSON.stringify({ through }), 'utf8')]));
}

type FrameContent = { kind: 'delivered'; through: number } | { kind: 'records'; records: BufferedRecord[] };

/** A checked frame's payload read, or undefined when it does not read as one of the log's frames. */
function decodeFrame(payload: Buffer): FrameContent | undefined {
  try {
    if (payload[0] === FRAME_DELIVERED) {
      const { through } = JSON.parse(payload.subarray(1).toString('utf8')) as { through: unknown };
      return typeof through === 'number' && Number.isSafeInteger(through) && through >= -1 ? { kind: 'delivered', through } : undefined;
    }
    if (payload[0] !== FRAME_RECORDS) return undefined;
    const headerLength = payload.readUInt32BE(1);
    const header = JSON.parse(payload.subarray(5, 5 + headerLength).toString('utf8')) as LoggedRecord[];
    if (!Array.isArray(header)) return undefined;
    const records: BufferedRecord[] = [];
    let at = 5 + headerLength;
    for (const [seq, recordId, arrivalTimestamp, length, kinesis] of header) {
      if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(length) || length < 0 || at + length > payload.length) return undefined;
      const data = Buffer.from(payload.subarray(at, at + length));
      at += length;
      // Read as the number Firehose sends, whatever Sluice logged it.
      const logged = kinesis ? { kinesis: { ...kinesis, subsequenceNumber: Number(kinesis.subsequenceNumber) || 0 } } : {};
      records.push({ seq, recordId, arrivalTimestamp, data, ...logged });
    }
    return at === payload.length ? { kind: 'records', records } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Where reading goes on after the bad frame at `offset`: the first later offset from which whole frames follow one
 * another to the segment's end. Records are logged as the producer sent them, and a producer can send bytes shaped
 * like a frame: such a run inside a record is taken only if every byte after it also reads as frames to the end.
 * Offsets are looked at only when their bytes begin a frame as the log writes one (its type, a JSON start), before
 * any checksum is computed: records of binary data would otherwise cost a checksum at most offsets.
 */
function resumeAfter(bytes: Buffer, offset: number): number | undefined {
  for (let at = offset + 1; at + FRAME_HEADER_BYTES < bytes.length; at++) {
    if (beginsFrame(bytes, at) && framesToEnd(bytes, at)) return at;
  }
  return undefined;
}

const JSON_OBJECT_START = 0x7b; // {
const JSON_ARRAY_START = 0x5b; // [

function beginsFrame(bytes: Buffer, at: number): boolean {
  const length = bytes.readUInt32BE(at);
  const payload = at + FRAME_HEADER_BYTES;
  if (length < 2 || payload + length > bytes.length) return false;
  if (bytes[payload] === FRAME_DELIVERED) return length <= MAX_DELIVERED_FRAME_PAYLOAD && bytes[payload + 1] === JSON_OBJECT_START;
  if (bytes[payload] !== FRAME_RECORDS || length < 7) return false;
  const headerLength = bytes.readUInt32BE(payload + 1);
  return headerLength >= 2 && headerLength <= length - 5 && bytes[payload + 5] === JSON_ARRAY_START;
}

/** A delivered mark is `{"through":N}`: far less than this. */
const MAX_DELIVERED_FRAME_PAYLOAD = 64;

function framesToEnd(bytes: Buffer, at: number): boolean {
  for (let next = at; next < bytes.length;) {
    const frame = readFrame(bytes, next);
    if (!frame || !decodeFrame(frame.payload)) return false;
    next = frame.next;
  }
  return true;
}

function readFrame(bytes: Buffer, offset: number): { payload: Buffer; next: number } | undefined {
  if (offset + FRAME_HEADER_BYTES > bytes.length) return undefined;
  const length = bytes.readUInt32BE(offset);
  if (length === 0 || length > MAX_FRAME_BYTES || offset + FRAME_HEADER_BYTES + length > bytes.length) return undefined;
  const payload = bytes.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length);
  if (crc32(payload) !== bytes.readUInt32BE(offset + 4)) return undefined;
  return { payload, next: offset + FRAME_HEADER_BYTES + length };
}

async function writeFully(handle: fs.promises.FileHandle, body: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < body.length) {
    const { bytesWritten } = await handle.write(body, written, body.length - written, position + written);
    written += bytesWritten;
  }
}

