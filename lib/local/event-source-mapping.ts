/**
 * Lambda's Kinesis event source mapping, for the local twin's metadata consumer: reads the stream
 * with a ShardReader (its own consumer name, so its own checkpoints), gathers batches per shard,
 * invokes the handler with the real `KinesisStreamEvent`, and handles failures as AWS does:
 *
 * - ReportBatchItemFailures: records before the lowest reported sequence number succeeded; the
 *   rest is retried. An empty, missing or unknown itemIdentifier fails the whole batch.
 * - BisectBatchOnFunctionError: a batch that failed as a whole is split in two and each half is
 *   retried in order; splitting does not count against MaximumRetryAttempts.
 * - MaximumRetryAttempts / MaximumRecordAgeInSeconds: a batch out of retries, or records older than
 *   the limit, go to the on-failure destination — like AWS's SQS destination, only the invocation
 *   record (shard, sequence range, counts), never the records — and the shard moves on.
 *
 * Records are processed in order per shard, one batch at a time. ParallelizationFactor above 1 is
 * accepted but run as 1: serial processing keeps every per-partition-key ordering guarantee AWS
 * gives, with less throughput (and batches are not grouped by key hash as AWS's are).
 *
 * Delivery is at-least-once: the shard's checkpoint advances after the whole delivered batch was
 * handled (succeeded, or sent to the destination), so a crash mid-batch invokes its records again.
 *
 * Records are counted as the function tallies them in its answer (Lambda reads no such thing): the mapping hands
 * KPL aggregates over whole, as Lambda's does, and the function that de-aggregates them knows their user records.
 */
import { randomUUID } from 'node:crypto';
import type { _Record, KinesisClient } from '@aws-sdk/client-kinesis';
import type { KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import type { RecordTally } from '../../transforms/metadata-consumer/handler';
import { localRegion } from './aws-clients';
import { ShardReader, type DeliveryContext, type KinesisReadApi, type ShardReaderOptions, type ShardReaderStats, type StartingPosition } from './shard-reader';

/** Why a batch went to the on-failure destination (the invocation record's `requestContext.condition`). */
export type FailureCondition = 'RetryAttemptsExhausted' | 'RecordAgeExceeded';

/** What Lambda sends an SQS or SNS on-failure destination for a Kinesis batch it gives up on. */
export interface KinesisInvocationRecord {
  readonly requestContext: {
    readonly requestId: string;
    readonly functionArn: string;
    readonly condition: FailureCondition;
    readonly approximateInvokeCount: number;
  };
  readonly responseContext: {
    readonly statusCode: number;
    readonly executedVersion: string;
    /** 'Unhandled' when the last invocation threw or timed out; absent when it returned. */
    readonly functionError?: string;
  };
  readonly version: '1.0';
  /** ISO 8601, milliseconds, UTC. */
  readonly timestamp: string;
  readonly KinesisBatchInfo: {
    readonly shardId: string;
    readonly startSequenceNumber: string;
    readonly endSequenceNumber: string;
    readonly approximateArrivalOfFirstRecord: string;
    readonly approximateArrivalOfLastRecord: string;
    readonly batchSize: number;
    readonly streamArn: string;
  };
}

/** A handler's answer: Lambda's partial batch response, with the twin's tally of each record for the mapping's counters. */
export interface KinesisHandlerResponse extends KinesisStreamBatchResponse {
  /** One per record of the event, in order. @default each record one user record, none skipped */
  readonly tallies?: readonly RecordTally[];
}

/** The part of Lambda's context the mapping gives a handler: the time left before the function timeout (Infinity without one). */
export interface KinesisInvocationContext {
  getRemainingTimeInMillis(): number;
}

export type KinesisHandler = (event: KinesisStreamEvent, context: KinesisInvocationContext) => Promise<KinesisHandlerResponse | void>;
export type OnFailureDestination = (record: KinesisInvocationRecord) => Promise<void>;

export interface EventSourceMappingOptions {
  readonly client: KinesisClient | KinesisReadApi;
  readonly streamName: string;
  /** The twin's data dir (checkpoints under `<dataDir>/kinesis-checkpoints/`). */
  readonly dataDir: string;
  /** The function's name, for its ARN in events and invocation records. */
  readonly functionName: string;
  readonly handler: KinesisHandler;
  /** The ShardReader consumer name (its checkpoints). @default `lambda-<functionName>` */
  readonly consumerName?: string;
  /** BatchSize, 1–10,000. @default 100 */
  readonly batchSize?: number;
  /** MaximumBatchingWindowInSeconds, 0–300. @default 0 */
  readonly batchWindowSeconds?: number;
  /** MaximumRetryAttempts, -1 (retry until the record expires) to 10,000. @default -1 */
  readonly maxRetryAttempts?: number;
  /** MaximumRecordAgeInSeconds, -1 (no limit) or 60–604,800. @default -1 */
  readonly maxRecordAgeSeconds?: number;
  /** BisectBatchOnFunctionError. @default false */
  readonly bisectBatchOnFunctionError?: boolean;
  /** FunctionResponseTypes includes ReportBatchItemFailures. @default false */
  readonly reportBatchItemFailures?: boolean;
  /** ParallelizationFactor, 1–10; run serially (see the file comment). @default 1 */
  readonly parallelizationFactor?: number;
  /** StartingPosition for shards without a checkpoint. @default 'TRIM_HORIZON' */
  readonly startingPosition?: StartingPosition;
  /** The function's timeout: an invocation still running after it counts as failed ('Unhandled'). @default none */
  readonly functionTimeoutSeconds?: number;
  /** The on-failure destination. @default none: failed batches are dropped (and counted), as AWS bypasses them */
  readonly onFailure?: OnFailureDestination;
  /** @default localRegion() */
  readonly region?: string;
  /** @default '000000000000' (kinesis-mock's account) */
  readonly accountId?: string;
  /** The execution role in each record's invokeIdentityArn. @default `arn:aws:iam::<account>:role/<functionName>-role` */
  readonly invokeIdentityArn?: string;
  /** Pause before retrying a failed batch, doubling per retry up to 10 s. @default 100 */
  readonly retryDelayMs?: number;
  /** Poll interval of a caught-up shard. @default 1000 (Lambda polls each shard once a second) */
  readonly pollIntervalMs?: number;
  /** Poll interval of a shard that has returned no record for 2 s (see ShardReaderOptions). @default pollIntervalMs */
  readonly idlePollIntervalMs?: number;
  /** Shortest gap between GetRecords calls on a shard. @default 200 */
  readonly minCallGapMs?: number;
  /** The clock records' ages and the batching window are measured with. @default Date.now for ages, a monotonic clock for the window */
  readonly now?: () => number;
  /** Told about every function error and destination failure. @default a JSON line on stderr */
  readonly onError?: (error: unknown, context: { shardId: string; operation: 'invoke' | 'onFailure'; startSequenceNumber: string }) => void;
  /** Told about the stream reader's failed calls (it retries regardless). @default a JSON line on stderr */
  readonly onReaderError?: ShardReaderOptions['onError'];
}

export interface EventSourceMappingStats {
  readonly invocations: number;
  /** Invocations that threw, timed out, or answered with a whole-batch failure. */
  readonly failedInvocations: number;
  /** Invocations that reported some batch item failures (and made progress or not). */
  readonly partialFailures: number;
  readonly retries: number;
  readonly bisections: number;
  /**
   * Records handled (written, or skipped as malformed), counted as the delivery streams count what they receive: a
   * KPL-aggregated Kinesis record once per user record in it, as the function's tallies say (the consumer
   * de-aggregates), so the summary's `metadata ok` and `received` count alike.
   */
  readonly recordsSucceeded: number;
  /** Of `recordsSucceeded`, those the function tallied as skipped (the consumer's malformed records). */
  readonly recordsSkipped: number;
  readonly batchesToOnFailure: number;
  /**
   * Records in the batches sent to the destination, counted as `recordsSucceeded` is by the last tally of each; one
   * never tallied (every invocation with it failed, or it expired before any) counts once.
   */
  readonly recordsToOnFailure: number;
  /** Failed batches dropped because no destination was configured. */
  readonly batchesDropped: number;
  readonly reader: ShardReaderStats;
}

/** Lambda's synchronous invocation payload limit (6 MB); a batch is cut before its event would exceed it. */
export const MAX_EVENT_BYTES = 6_291_456;
/** The event's bytes for one record beyond its base64 data: field names, ids and ARNs, generously. */
const RECORD_OVERHEAD_BYTES = 1024;

/** Each record's last tally from the function, by sequence number, while its delivered batch is handled. */
type Tallies = Map<string, RecordTally>;

interface Attempt {
  records: _Record[];
  /** Retries of these records so far (a bisection does not add one). */
  retries: number;
  /** Invocations these records were part of in their current batch, for approximateInvokeCount. */
  invokes: number;
  /** The last of those invocations: its request id, and 'Unhandled' if it threw or timed out. */
  lastRequestId?: string;
  lastFunctionError?: string;
}

type Outcome = { requestId: string } & (
  | { kind: 'ok' }
  | { kind: 'partial'; succeeded: number }
  | { kind: 'failed'; functionError?: string }
);

export class EventSourceMapping {
  readonly functionArn: string;
  private readonly options: EventSourceMappingOptions;
  private readonly reader: ShardReader;
  /** Per shard, an invocation that timed out and still runs: the shard's next one waits for it to end. */
  private readonly overruns = new Map<string, Promise<void>>();
  private readonly batchSize: number;
  private readonly maxRetryAttempts: number;
  private readonly maxRecordAgeMs: number;
  private readonly region: string;
  private readonly invokeIdentityArn: string;
  private readonly now: () => number;
  private readonly retryDelayMs: number;
  private readonly counters = {
    invocations: 0,
    failedInvocations: 0,
    partialFailures: 0,
    retries: 0,
    bisections: 0,
    recordsSucceeded: 0,
    recordsSkipped: 0,
    batchesToOnFailure: 0,
    recordsToOnFailure: 0,
    batchesDropped: 0,
  };

  constructor(options: EventSourceMappingOptions) {
    this.options = options;
    this.batchSize = integerIn('batchSize', options.batchSize ?? 100, 1, 10_000);
    const windowSeconds = numberIn('batchWindowSeconds', options.batchWindowSeconds ?? 0, 0, 300);
    this.maxRetryAttempts = integerIn('maxRetryAttempts', options.maxRetryAttempts ?? -1, -1, 10_000);
    const maxAge = options.maxRecordAgeSeconds ?? -1;
    if (maxAge !== -1) integerIn('maxRecordAgeSeconds', maxAge, 60, 604_800, ' (or -1 for no limit)');
    this.maxRecordAgeMs = maxAge === -1 ? Number.POSITIVE_INFINITY : maxAge * 1000;
    integerIn('parallelizationFactor', options.parallelizationFactor ?? 1, 1, 10);
    if (options.functionTimeoutSeconds !== undefined) numberIn('functionTimeoutSeconds', options.functionTimeoutSeconds, 0.001, 900);
    this.retryDelayMs = numberIn('retryDelayMs', options.retryDelayMs ?? 100, 0, 600_000);
    this.region = options.region ?? localRegion();
    const account = options.accountId ?? '000000000000';
    this.functionArn = `arn:aws:lambda:${this.region}:${account}:function:${options.functionName}`;
    this.invokeIdentityArn = options.invokeIdentityArn ?? `arn:aws:iam::${account}:role/${options.functionName}-role`;
    this.now = options.now ?? Date.now;
    this.reader = new ShardReader({
      client: options.client,
      streamName: options.streamName,
      consumerName: options.consumerName ?? `lambda-${options.functionName}`,
      dataDir: options.dataDir,
      startingPosition: options.startingPosition,
      pollIntervalMs: options.pollIntervalMs,
      idlePollIntervalMs: options.idlePollIntervalMs,
      minCallGapMs: options.minCallGapMs,
      onError: options.onReaderError,
      batching: {
        maxRecords: this.batchSize,
        maxBytes: MAX_EVENT_BYTES,
        recordBytes: (record) => Math.ceil(((record.Data?.length ?? 0) * 4) / 3) + RECORD_OVERHEAD_BYTES,
        windowMs: windowSeconds * 1000,
        // Ages are measured against arrival times, on the wall clock; the window, unless a test steps the clock, on the reader's monotonic one.
        now: options.now,
      },
      onRecords: (shardId, records, context) => this.processBatch(shardId, records, context),
    });
  }

  start(): Promise<void> {
    return this.reader.start();
  }

  /** Stops after the running invocation (and any that timed out but still runs); a batch still being retried is re-read on the next start. */
  async stop(): Promise<void> {
    await this.reader.stop();
    await this.overrunsSettled();
  }

  /** Resolves once every record in the stream so far was handled (succeeded or sent to the destination). */
  async drain(options?: { timeoutMs?: number }): Promise<void> {
    await this.reader.drain(options);
    await this.overrunsSettled();
  }

  /** Waits for invocations that timed out and still run, for one more function timeout at most (a handler may hang for ever). */
  private async overrunsSettled(): Promise<void> {
    if (this.overruns.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, (this.options.functionTimeoutSeconds ?? 30) * 1000);
    });
    try {
      await Promise.race([Promise.all(this.overruns.values()), limit]);
    } finally {
      clearTimeout(timer);
    }
  }

  stats(): EventSourceMappingStats {
    return { ...this.counters, reader: this.reader.stats() };
  }

  /** The KinesisStreamEvent Lambda would send for these records of `shardId`. */
  eventFor(shardId: string, records: readonly _Record[]): KinesisStreamEvent {
    return kinesisStreamEvent({ shardId, records, streamArn: this.reader.streamArn, region: this.region, invokeIdentityArn: this.invokeIdentityArn });
  }

  // ---- one delivered batch -------------------------------------------------------------------

  /**
   * Handles one batch of a shard to the end: every record either succeeds or goes to the destination.
   * Rejects only when the mapping is stopping (the reader then keeps the checkpoint where it was).
   */
  private async processBatch(shardId: string, records: _Record[], { signal, ancestorShardIds }: DeliveryContext): Promise<void> {
    // Bisected halves wait here, first half first, so records are handled in sequence order.
    const pending: Attempt[] = [{ records, retries: 0, invokes: 0 }];
    const tallies: Tallies = new Map();
    while (pending.length > 0) {
      const attempt = pending[0];
      if (signal.aborted) throw new Error('event source mapping stopped');

      const expired = this.expiredPrefix(attempt.records);
      if (expired > 0) {
        await this.toDestination(shardId, attempt.records.slice(0, expired), 'RecordAgeExceeded', attempt, tallies, signal);
        attempt.records = attempt.records.slice(expired);
        if (attempt.records.length === 0) {
          pending.shift();
          continue;
        }
      }

      const outcome = await this.invoke(shardId, attempt.records, tallies, ancestorShardIds);
      attempt.invokes++;
      attempt.lastRequestId = outcome.requestId;
      attempt.lastFunctionError = outcome.kind === 'failed' ? outcome.functionError : undefined;
      if (outcome.kind === 'ok') {
        this.countSucceeded(attempt.records, tallies);
        pending.shift();
        continue;
      }
      if (outcome.kind === 'partial') {
        this.counters.partialFailures++;
        this.countSucceeded(attempt.records.slice(0, outcome.succeeded), tallies);
        attempt.records = attempt.records.slice(outcome.succeeded);
      } else if (this.options.bisectBatchOnFunctionError && attempt.records.length > 1) {
        const middle = Math.ceil(attempt.records.length / 2);
        this.counters.bisections++;
        pending.splice(
          0,
          1,
          { records: attempt.records.slice(0, middle), retries: attempt.retries, invokes: 0 },
          { records: attempt.records.slice(middle), retries: attempt.retries, invokes: 0 },
        );
        continue;
      }
      if (this.maxRetryAttempts !== -1 && attempt.retries >= this.maxRetryAttempts) {
        await this.toDestination(shardId, attempt.records, 'RetryAttemptsExhausted', attempt, tallies, signal);
        pending.shift();
        continue;
      }
      attempt.retries++;
      this.counters.retries++;
      await sleep(Math.min(10_000, this.retryDelayMs * 2 ** Math.min(attempt.retries - 1, 20)), signal);
    }
  }

  /** How many records at the batch's head are older than MaximumRecordAgeInSeconds (arrivals only grow along a shard). */
  private expiredPrefix(records: readonly _Record[]): number {
    if (this.maxRecordAgeMs === Number.POSITIVE_INFINITY) return 0;
    const now = this.now();
    let count = 0;
    while (count < records.length && now - arrivalMs(records[count]) > this.maxRecordAgeMs) count++;
    return count;
  }

  private countSucceeded(records: readonly _Record[], tallies: Tallies): void {
    const { userRecords, skipped } = tallyOf(records, tallies);
    this.counters.recordsSucceeded += userRecords;
    this.counters.recordsSkipped += skipped;
  }

  /** Keeps the tallies of an answer that has one per record; without them, each record counts as one user record. */
  private keepTallies(records: readonly _Record[], response: unknown, tallies: Tallies): void {
    const answered = (response as KinesisHandlerResponse | null | undefined)?.tallies;
    if (!Array.isArray(answered) || answered.length !== records.length) return;
    records.forEach((record, i) => tallies.set(record.SequenceNumber as string, answered[i]));
  }

  private async invoke(shardId: string, records: _Record[], tallies: Tallies, ancestorShardIds: readonly string[]): Promise<Outcome> {
    // Lambda stops a function at its timeout; a handler in this process cannot be stopped, so the shard's next
    // invocation waits for one that timed out to end: one invocation per shard at a time, its writes in order. A shard
    // split or merged from others waits for theirs too: its keys were theirs, and on AWS the timeout ended those before it was read.
    await Promise.all([shardId, ...ancestorShardIds].map((id) => this.overruns.get(id)));
    this.counters.invocations++;
    const requestId = randomUUID();
    const event = this.eventFor(shardId, records);
    let response: unknown;
    try {
      // Called inside the try: a handler that throws synchronously fails like one that rejects.
      const timeoutSeconds = this.options.functionTimeoutSeconds;
      // On the monotonic clock, as the timeout's timer runs: a wall clock set back would promise the handler time it has not got.
      const endsAt = timeoutSeconds === undefined ? Infinity : performance.now() + timeoutSeconds * 1000;
      const context: KinesisInvocationContext = { getRemainingTimeInMillis: () => Math.max(0, endsAt - performance.now()) };
      const running = Promise.resolve().then(() => this.options.handler(event, context));
      response = await withTimeout(running, timeoutSeconds).catch((error: unknown) => {
        if (error instanceof FunctionTimedOut) {
          const ended = running.then(() => undefined, () => undefined).finally(() => this.overruns.delete(shardId));
          this.overruns.set(shardId, ended);
        }
        throw error;
      });
    } catch (error) {
      this.counters.failedInvocations++;
      this.reportError(error, shardId, 'invoke', records);
      return { requestId, kind: 'failed', functionError: 'Unhandled' };
    }
    this.keepTallies(records, response, tallies);
    if (!this.options.reportBatchItemFailures) return { requestId, kind: 'ok' };
    return { requestId, ...this.readBatchResponse(shardId, records, response) };
  }

  /** Lambda's rules for a partial batch response (see batchResponseOutcome); a whole-batch failure is counted and reported. */
  private readBatchResponse(shardId: string, records: readonly _Record[], response: unknown): DistributiveOmit<Outcome, 'requestId'> {
    const outcome = batchResponseOutcome(records.map((record) => record.SequenceNumber as string), response);
    if (outcome.kind !== 'failed') return outcome;
    this.counters.failedInvocations++;
    this.reportError(new Error(`batchItemFailures ${outcome.why}; Lambda treats this as a failure of the whole batch`), shardId, 'invoke', records);
    return { kind: 'failed' };
  }

  private async toDestination(
    shardId: string,
    records: readonly _Record[],
    condition: FailureCondition,
    attempt: Attempt,
    tallies: Tallies,
    signal: AbortSignal,
  ): Promise<void> {
    const record = this.invocationRecord(shardId, records, condition, attempt);
    const destination = this.options.onFailure;
    if (!destination) {
      this.counters.batchesDropped++;
      return;
    }
    // The destination must take it before the shard moves on; keep trying, as Lambda does.
    for (let attempt = 0; ; attempt++) {
      try {
        await destination(record);
        break;
      } catch (error) {
        this.reportError(error, shardId, 'onFailure', records);
        await sleep(Math.min(10_000, 100 * 2 ** Math.min(attempt, 20)), signal);
        if (signal.aborted) throw new Error('event source mapping stopped', { cause: error });
      }
    }
    this.counters.batchesToOnFailure++;
    this.counters.recordsToOnFailure += tallyOf(records, tallies).userRecords;
  }

  /**
   * The AWS invocation record. Records that expire before any invocation get approximateInvokeCount 0
   * and a fresh request id (the twin's choice; AWS does not document that case).
   */
  private invocationRecord(shardId: string, records: readonly _Record[], condition: FailureCondition, attempt: Attempt): KinesisInvocationRecord {
    const first = records[0];
    const last = records[records.length - 1];
    return {
      requestContext: {
        requestId: attempt.lastRequestId ?? randomUUID(),
        functionArn: this.functionArn,
        condition,
        approximateInvokeCount: attempt.invokes,
      },
      responseContext: {
        statusCode: 200,
        executedVersion: '$LATEST',
        ...(attempt.lastFunctionError ? { functionError: attempt.lastFunctionError } : {}),
      },
      version: '1.0',
      timestamp: new Date(this.now()).toISOString(),
      KinesisBatchInfo: {
        shardId,
        startSequenceNumber: first.SequenceNumber as string,
        endSequenceNumber: last.SequenceNumber as string,
        approximateArrivalOfFirstRecord: new Date(arrivalMs(first)).toISOString(),
        approximateArrivalOfLastRecord: new Date(arrivalMs(last)).toISOString(),
        batchSize: records.length,
        streamArn: this.reader.streamArn,
      },
    };
  }

  private reportError(error: unknown, shardId: string, operation: 'invoke' | 'onFailure', records: readonly _Record[]): void {
    const context = { shardId, operation, startSequenceNumber: records[0]?.SequenceNumber ?? '' };
    try {
      if (this.options.onError) {
        this.options.onError(error, context);
        return;
      }
      const err = error as { name?: string; message?: string };
      console.warn(
        JSON.stringify({
          level: 'WARN',
          component: 'event-source-mapping',
          functionArn: this.functionArn,
          message: operation === 'invoke' ? 'invocation failed' : 'on-failure destination failed',
          error: err?.name ?? 'Error',
          errorMessage: err?.message ?? String(error),
          ...context,
        }),
      );
    } catch {
      // A failing reporter must not stop the mapping.
    }
  }
}

/** What Lambda puts in a Kinesis event: the records of one shard, as `KinesisStreamRecord`s of the stream `streamArn`. */
export interface KinesisEventSource {
  readonly shardId: string;
  readonly records: readonly _Record[];
  readonly streamArn: string;
  readonly region: string;
  /** The identity Lambda invokes with (the function's execution role). */
  readonly invokeIdentityArn: string;
}

/** The KinesisStreamEvent Lambda's event source mapping sends for these records of one shard. */
export function kinesisStreamEvent(source: KinesisEventSource): KinesisStreamEvent {
  return {
    Records: source.records.map(
      (record): KinesisStreamRecord => ({
        kinesis: {
          kinesisSchemaVersion: '1.0',
          partitionKey: record.PartitionKey as string,
          sequenceNumber: record.SequenceNumber as string,
          data: Buffer.from(record.Data ?? new Uint8Array()).toString('base64'),
          approximateArrivalTimestamp: arrivalMs(record) / 1000,
        },
        eventSource: 'aws:kinesis',
        eventVersion: '1.0',
        eventID: `${source.shardId}:${record.SequenceNumber as string}`,
        eventName: 'aws:kinesis:record',
        invokeIdentityArn: source.invokeIdentityArn,
        awsRegion: source.region,
        eventSourceARN: source.streamArn,
      }),
    ),
  };
}

/** How Lambda reads a function's answer to a batch with ReportBatchItemFailures on. */
export type BatchResponseOutcome =
  | { readonly kind: 'ok' }
  /** The records before `succeeded` (the lowest reported position) succeeded; the rest is retried. */
  | { readonly kind: 'partial'; readonly succeeded: number }
  /** The answer fails the whole batch; `why` completes "batchItemFailures …". */
  | { readonly kind: 'failed'; readonly why: string };

/**
 * Lambda's rules for a partial batch response ("Configuring partial batch response"), for a batch whose records have
 * these sequence numbers, in order: no answer, no list or an empty one is success; a list that is not one, or an empty,
 * missing or unknown itemIdentifier, fails the whole batch; otherwise the lowest reported record and all after it fail.
 */
export function batchResponseOutcome(sequenceNumbers: readonly string[], response: unknown): BatchResponseOutcome {
  if (response === null || response === undefined || typeof response !== 'object') return { kind: 'ok' };
  const failures = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === null || failures === undefined) return { kind: 'ok' };
  if (!Array.isArray(failures)) return { kind: 'failed', why: 'is not an array' };
  if (failures.length === 0) return { kind: 'ok' };
  const index = new Map(sequenceNumbers.map((s, i) => [s, i]));
  let lowest = Number.POSITIVE_INFINITY;
  for (const failure of failures) {
    const id = (failure as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || id === '') return { kind: 'failed', why: 'has an empty or missing itemIdentifier' };
    const position = index.get(id);
    if (position === undefined) return { kind: 'failed', why: `names "${id}", which is not a sequence number in the batch` };
    lowest = Math.min(lowest, position);
  }
  return { kind: 'partial', succeeded: lowest };
}

/** An on-failure destination that sends each invocation record as one message body to a queue (e.g. a DlqFile). */
export function queueDestination(queue: { send(bodies: string[]): Promise<void> }): OnFailureDestination {
  return (record) => queue.send([JSON.stringify(record)]);
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** What `records` held, summed from their last tallies; a record never tallied is one user record, not skipped. */
function tallyOf(records: readonly _Record[], tallies: Tallies): RecordTally {
  let userRecords = 0;
  let skipped = 0;
  for (const record of records) {
    const tally = tallies.get(record.SequenceNumber as string);
    userRecords += tally?.userRecords ?? 1;
    skipped += tally?.skipped ?? 0;
  }
  return { userRecords, skipped };
}

function arrivalMs(record: _Record): number {
  const arrival = record.ApproximateArrivalTimestamp;
  return arrival instanceof Date ? arrival.getTime() : typeof arrival === 'number' ? arrival * 1000 : 0;
}

class FunctionTimedOut extends Error {}

async function withTimeout<T>(promise: Promise<T>, seconds: number | undefined): Promise<T> {
  if (seconds === undefined) return promise;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FunctionTimedOut(`Task timed out after ${seconds.toFixed(2)} seconds`)), seconds * 1000);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sleeps, cut short when `signal` aborts. Even a zero delay yields to the event loop: a batch retried
 * forever with no delay must not starve timers, I/O and the stop signal in a microtask loop.
 */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  if (ms <= 0) return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

function integerIn(key: string, value: number, min: number, max: number, extra = ''): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`EventSourceMapping: ${key} must be an integer ${min}–${max.toLocaleString('en-US')}${extra}, got ${value}.`);
  }
  return value;
}

function numberIn(key: string, value: number, min: number, max: number): number {
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new Error(`EventSourceMapping: ${key} must be ${min}–${max.toLocaleString('en-US')}, got ${value}.`);
  }
  return value;
}
