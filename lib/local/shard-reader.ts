/**
 * Reads a Kinesis data stream through the Kinesis API, the way Firehose's Kinesis source and Lambda's
 * stream poller do: ListShards, GetShardIterator, then GetRecords in a loop per shard. Used by the
 * local twin for every consumer of a stream (the lake and search delivery streams, the metadata
 * consumer's event source mapping), each under its own consumer name with its own checkpoints.
 *
 * Delivery is at-least-once and in order per shard: a shard's checkpoint — the last sequence number
 * handed to `onRecords` — advances only after the callback for that batch resolved, and is written
 * atomically to `<dataDir>/kinesis-checkpoints/<consumer>/<stream>.json`. A crash, or a failed
 * callback, re-delivers from the checkpoint; a clean stop re-delivers nothing that was acknowledged.
 *
 * Resharding: a child shard (from a split or a merge) is read only after every parent it names has
 * been read to its end, so records of one partition key stay in order across a reshard.
 *
 * A checkpoint the stream no longer holds: kinesis-mock saves its streams every few seconds, so when it
 * dies without saving (a SIGKILL of the process tree) it comes back without the records of its last
 * seconds, which a reader may already have delivered and checkpointed. GetShardIterator
 * AFTER_SEQUENCE_NUMBER then fails for good ("Unable to find record with provided SequenceNumber").
 * The reader reads that shard again from TRIM_HORIZON and skips what it delivered before: a record
 * at or before the checkpoint's sequence number that arrived no later than the checkpointed record.
 * Both are needed: kinesis-mock numbers the records put after such a restart from where its saved
 * state ended, so a new record can sort before the lost checkpoint, but it arrived after it.
 * (For a checkpoint file from before arrival times were kept, the time the file was written stands in.)
 * A reshard made in those seconds is lost with them: kinesis-mock comes back with the parent open again
 * and without the children. The reader then lets go of the children that are no longer listed, checkpoints
 * and all, and reads on in the parent from its checkpoint, as the records put since land there — once the
 * children have delivered what they had read, as those records were put first. A shard is known by its id
 * and where it starts: kinesis-mock gives the shards of a later reshard the lost ones' ids (they count from
 * 0), and such a shard is a new one, read from its start after its parents. So are the shards of a stream the
 * twin makes again under its name when kinesis-mock came back without a save: a read position found lost is read
 * again from TRIM_HORIZON only once a listing made then shows the same shard, and the new shard under its id takes
 * the lost one's place as its worker stops, so that a drain never finds the id with nothing left to read. That
 * listing also tells a lost reshard made again before the reader listed: the parent, open again in between, is
 * listed closed, but a child of it lost (or listed as another shard) tells it was, and it is read on as above. A reader
 * started only after the reshard was made again tells it the same way: the checkpoint file keeps a child's parents
 * from when its reading begins, before it has a checkpoint.
 *
 * Starting position: a shard with no checkpoint is read from TRIM_HORIZON by default. In AWS,
 * Firehose starts a Kinesis-sourced delivery stream at LATEST (and Lambda at whatever the mapping
 * says); the twin differs on purpose: its streams are created by `local up` moments before the
 * consumers attach, and a producer that starts first must not lose its first records. Pass
 * `startingPosition: 'LATEST'` for AWS's behaviour. Either way, a checkpoint wins over the setting, and
 * child shards discovered later are read from their start (TRIM_HORIZON), as Firehose and KCL do.
 */
import { mkdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  KinesisClient,
  ListShardsCommand,
  type ChildShard,
  type Shard,
  type ShardIteratorType,
  type _Record,
} from '@aws-sdk/client-kinesis';
import { writeFileAtomic } from './atomic-file';

/** The Kinesis calls a reader makes; `kinesisReadApi(client)` adapts an SDK client, tests may fake it. */
export interface KinesisReadApi {
  describeStream(streamName: string, signal?: AbortSignal): Promise<{ streamArn: string; status: string }>;
  /** Every shard the stream still holds (all pages), closed ones included. */
  listShards(streamName: string, signal?: AbortSignal): Promise<Shard[]>;
  getShardIterator(request: ShardIteratorRequest, signal?: AbortSignal): Promise<string>;
  getRecords(shardIterator: string, limit: number, signal?: AbortSignal): Promise<RecordsPage>;
}

export interface ShardIteratorRequest {
  readonly streamName: string;
  readonly shardId: string;
  readonly type: Extract<ShardIteratorType, 'TRIM_HORIZON' | 'LATEST' | 'AFTER_SEQUENCE_NUMBER'>;
  /** With AFTER_SEQUENCE_NUMBER. */
  readonly sequenceNumber?: string;
}

export interface RecordsPage {
  readonly records: _Record[];
  /** Absent once a closed shard has been read to its end. */
  readonly nextShardIterator?: string;
  readonly millisBehindLatest?: number;
  readonly childShards?: ChildShard[];
}

/** Adapts an AWS SDK Kinesis client (for the twin: `kinesisClient(endpoint)`, HTTP/1.1). */
export function kinesisReadApi(client: KinesisClient): KinesisReadApi {
  return {
    async describeStream(streamName, signal) {
      const out = await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }), { abortSignal: signal });
      const summary = out.StreamDescriptionSummary;
      return { streamArn: summary?.StreamARN ?? '', status: summary?.StreamStatus ?? 'UNKNOWN' };
    },
    async listShards(streamName, signal) {
      const shards: Shard[] = [];
      let nextToken: string | undefined;
      do {
        // ListShards takes either the stream name or a NextToken, never both.
        const out = await client.send(
          new ListShardsCommand(nextToken ? { NextToken: nextToken } : { StreamName: streamName }),
          { abortSignal: signal },
        );
        shards.push(...(out.Shards ?? []));
        nextToken = out.NextToken;
      } while (nextToken);
      return shards;
    },
    async getShardIterator(request, signal) {
      const out = await client.send(
        new GetShardIteratorCommand({
          StreamName: request.streamName,
          ShardId: request.shardId,
          ShardIteratorType: request.type,
          StartingSequenceNumber: request.sequenceNumber,
        }),
        { abortSignal: signal },
      );
      if (!out.ShardIterator) throw new Error(`GetShardIterator returned no iterator for ${request.shardId}`);
      return out.ShardIterator;
    },
    async getRecords(shardIterator, limit, signal) {
      const out = await client.send(new GetRecordsCommand({ ShardIterator: shardIterator, Limit: limit }), { abortSignal: signal });
      return {
        records: out.Records ?? [],
        nextShardIterator: out.NextShardIterator ?? undefined,
        millisBehindLatest: out.MillisBehindLatest,
        childShards: out.ChildShards,
      };
    },
  };
}

export type StartingPosition = 'TRIM_HORIZON' | 'LATEST';

/** Context handed to `onRecords` with each batch. */
export interface DeliveryContext {
  /** Aborted when `stop()` is called: a callback that retries on its own should give up then. */
  readonly signal: AbortSignal;
  /**
   * The shards this one came from by splits and merges (its parents, theirs, …, as far as the reader knows them), each
   * read to its end before this shard's first batch: work a callback left running for one (a Lambda past its timeout)
   * is for keys of this shard too.
   */
  readonly ancestorShardIds: readonly string[];
}

export interface BatchingOptions {
  /** Most records per `onRecords` call. */
  readonly maxRecords: number;
  /** Most bytes per call, as measured by `recordBytes`; a single larger record still goes alone. @default no limit */
  readonly maxBytes?: number;
  /** How a record counts against `maxBytes`. @default its data length */
  readonly recordBytes?: (record: _Record) => number;
  /**
   * Wait up to this long, from the first record buffered, for a full batch (Lambda's
   * MaximumBatchingWindowInSeconds). 0 delivers whatever each GetRecords call returned. @default 0
   */
  readonly windowMs?: number;
  /**
   * The clock the window is measured with (a test steps it). @default a monotonic clock (`performance.now`), so the
   * wall clock set back (NTP, a resumed laptop) does not hold buffered records for as long as it went back
   */
  readonly now?: () => number;
}

export interface ShardReaderOptions {
  /** An SDK client pointed at the stream's endpoint, or any KinesisReadApi. */
  readonly client: KinesisClient | KinesisReadApi;
  readonly streamName: string;
  /** Who reads; checkpoints are per consumer, so two consumers each see every record. */
  readonly consumerName: string;
  /** The twin's data dir; checkpoints go to `<dataDir>/kinesis-checkpoints/<consumer>/<stream>.json`. */
  readonly dataDir: string;
  /**
   * Called with each batch, in sequence order per shard, one batch at a time per shard. The shard's
   * checkpoint advances once the promise resolves; a rejection re-delivers the same batch after a
   * backoff (until `stop()`).
   */
  readonly onRecords: (shardId: string, records: _Record[], context: DeliveryContext) => Promise<void>;
  /** Where a shard without a checkpoint starts (see the file comment). @default 'TRIM_HORIZON' */
  readonly startingPosition?: StartingPosition;
  /** Pause between GetRecords calls on a shard that is caught up: Firehose and Lambda poll once a second. @default 1000 */
  readonly pollIntervalMs?: number;
  /**
   * Pause between GetRecords calls on a shard that has returned no record for `idleAfterMs`: a quicker
   * `pollIntervalMs` then only applies while records flow, and an idle reader costs what AWS's once a
   * second does. @default pollIntervalMs (no slowing down)
   */
  readonly idlePollIntervalMs?: number;
  /** How long a shard returns no record before it polls at `idlePollIntervalMs`. @default 2000 */
  readonly idleAfterMs?: number;
  /**
   * Shortest gap between two GetRecords calls on one shard, even when behind: Kinesis allows five
   * calls per second per shard, shared by every non-EFO consumer. @default 200
   */
  readonly minCallGapMs?: number;
  /** GetRecords Limit, 1–10,000 (the API's maximum; a call also returns at most 10 MiB). @default 10_000 */
  readonly maxRecordsPerCall?: number;
  /** Group records into batches across GetRecords calls (Lambda's batching). @default each call's records, as returned */
  readonly batching?: BatchingOptions;
  /** Exponential backoff after a failed call or callback: first delay and cap. @default { baseMs: 100, maxMs: 10_000 } */
  readonly backoff?: { readonly baseMs?: number; readonly maxMs?: number };
  /** How often to list shards to notice resharding (a shard reaching its end also triggers it). @default 10_000 */
  readonly shardSyncIntervalMs?: number;
  /** How long `start()` waits for the stream to become ACTIVE. @default 30_000 */
  readonly streamReadyTimeoutMs?: number;
  /** Told about every failed call, callback or checkpoint write; the reader retries regardless. @default a JSON line on stderr */
  readonly onError?: (error: unknown, context: ReaderErrorContext) => void;
}

export interface ReaderErrorContext {
  readonly streamName: string;
  readonly consumerName: string;
  readonly operation: 'ListShards' | 'GetShardIterator' | 'GetRecords' | 'onRecords' | 'checkpoint';
  readonly shardId?: string;
  /** What the reader does next. */
  readonly action: 'retry' | 'retry-after-backoff' | 'new-iterator' | 'read-from-trim-horizon' | 'read-reopened-shard';
}

export type ShardPhase = 'waiting-for-parents' | 'reading' | 'ended';

export interface ShardStats {
  readonly shardId: string;
  readonly phase: ShardPhase;
  /** Last sequence number acknowledged by the callback (and written to the checkpoint file). */
  readonly checkpoint?: string;
  readonly recordsDelivered: number;
  readonly batchesDelivered: number;
  readonly getRecordsCalls: number;
  /** From the last GetRecords answer: how far the shard's tip is ahead of what was read. */
  readonly millisBehindLatest?: number;
  /** Arrival time of the last delivered record. */
  readonly lastArrival?: Date;
  /** Records read but waiting for their batch to fill. */
  readonly buffered: number;
}

export interface ShardReaderStats {
  readonly streamName: string;
  readonly consumerName: string;
  readonly recordsDelivered: number;
  readonly batchesDelivered: number;
  readonly getRecordsCalls: number;
  /** Calls answered ProvisionedThroughputExceeded / LimitExceeded (after the SDK's own retries). */
  readonly throttled: number;
  /** Other failed calls (network, expired iterators, server errors). */
  readonly failedCalls: number;
  readonly callbackFailures: number;
  /** Largest MillisBehindLatest over the shards still being read. */
  readonly millisBehindLatest: number;
  /**
   * Like Lambda's IteratorAge: now minus the arrival of the last delivered record, largest over shards
   * that are not caught up (0 when every shard is).
   */
  readonly iteratorAgeMs: number;
  readonly shards: ShardStats[];
}

/**
 * Bytes a GetRecords call aims at. Kinesis answers up to 10 MiB a call; kinesis-mock takes about a second per MiB
 * (a 9.7 MiB page of 900 KiB records: 9.6 s on an idle 2-core machine), and answers one call at a time, so a reader
 * asking for 10 MiB holds every other reader of every stream back that long, and a busier machine pushes it past the
 * client's 30 s request timeout, the same call again each time. Pages of small records (10,000 × 200 B) are under it.
 */
const PAGE_BYTES_TARGET = 2 * 1024 * 1024;

/**
 * The Limit of the next call, from the page a call with Limit `asked` returned: fewer records when that page's records
 * were large (so a page stays near PAGE_BYTES_TARGET), twice as many (up to `max`) when it was full of small ones.
 */
export function nextLimit(asked: number, records: ReadonlyArray<{ readonly Data?: Uint8Array }>, max: number): number {
  let bytes = 0;
  for (const r of records) bytes += r.Data?.length ?? 0;
  if (bytes > PAGE_BYTES_TARGET) return Math.max(1, Math.min(asked, Math.floor((records.length * PAGE_BYTES_TARGET) / bytes)));
  if (records.length >= asked) return Math.min(max, asked * 2);
  return asked;
}

/** The SDK's request timeout (NodeHttpHandler's requestTimeout), as it names it. */
function isTimeout(err: unknown): boolean {
  const name = errorName(err);
  return name === 'TimeoutError' || name === 'RequestTimeout' || (err as { code?: unknown })?.code === 'ETIMEDOUT';
}

/**
 * Milliseconds on a clock that only goes forward: call gaps, idle polls, windows and timeouts are measured on it, as the
 * wall clock set back (NTP, a resumed laptop) would otherwise stall every shard's reading for as long as it went back.
 */
const monotonicNow = (): number => performance.now();

const THROTTLING_ERRORS = new Set(['ProvisionedThroughputExceededException', 'LimitExceededException', 'KMSThrottlingException']);
const NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/** Where a consumer's checkpoints for a stream live. */
export function checkpointPath(dataDir: string, consumerName: string, streamName: string): string {
  return path.join(dataDir, 'kinesis-checkpoints', consumerName, `${streamName}.json`);
}

/**
 * The checkpoint file: per shard the last acknowledged sequence number, when that record arrived in
 * the stream (ISO 8601), whether the shard was read to its end, where it starts (its StartingSequenceNumber),
 * and its parents. A child is kept from when its reading begins, before it has a checkpoint: a restarted reader
 * that finds it lost knows its parent was open again (see the file comment). Files written before lack parents.
 */
interface CheckpointDocument {
  readonly version: 1;
  readonly streamName: string;
  readonly consumerName: string;
  readonly updatedAt: string;
  readonly shards: Record<
    string,
    { sequenceNumber?: string; arrivalTimestamp?: string; ended?: boolean; startingSequenceNumber?: string; parents?: string[] }
  >;
}

/** A read position the stream no longer holds, and what to skip when the shard is read again from its start. */
interface SkipThrough {
  readonly sequenceNumber: bigint;
  /** Arrival of the record at that position; unknown for a checkpoint written before arrivals were kept. */
  readonly arrivalMs?: number;
}

interface ShardState {
  readonly shardId: string;
  readonly parents: readonly string[];
  /** The listing's StartingSequenceNumber: with the id, what tells this shard from one made later under its id. */
  readonly startingSequenceNumber?: string;
  /** Lost shards whose workers deliver what they read before this one is read (a parent open again after a lost reshard). */
  readonly follows: readonly ShardState[];
  /** Open when listed at first start (no EndingSequenceNumber): where LATEST applies. */
  readonly openAtFirstStart: boolean;
  phase: ShardPhase;
  checkpoint?: string;
  recordsDelivered: number;
  batchesDelivered: number;
  getRecordsCalls: number;
  millisBehindLatest?: number;
  lastArrival?: Date;
  buffered: number;
  /** Set when a GetRecords call that started in drain generation N found nothing more: N. */
  caughtUpGeneration: number;
  readonly alarm: Alarm;
  worker?: Promise<void>;
  /** No longer listed while its worker ran (the stream lost it): the worker stops. */
  gone: boolean;
  /** Of a gone shard: the shard listed under its id since, which takes its place once the worker stops. */
  replacedBy?: Shard;
}

/** Readers running in this process, by checkpoint file: two readers must not share one. */
const activeCheckpoints = new Set<string>();

export class ShardReader {
  readonly streamName: string;
  readonly consumerName: string;
  /** `<dataDir>/kinesis-checkpoints/<consumer>/<stream>.json` */
  readonly checkpointFile: string;
  private readonly api: KinesisReadApi;
  private readonly onRecords: ShardReaderOptions['onRecords'];
  private readonly startingPosition: StartingPosition;
  private readonly pollIntervalMs: number;
  private readonly idlePollIntervalMs: number;
  private readonly idleAfterMs: number;
  private readonly minCallGapMs: number;
  private readonly maxRecordsPerCall: number;
  private readonly maxBatchRecords: number;
  private readonly maxBatchBytes: number;
  private readonly recordBytes: (record: _Record) => number;
  private readonly windowMs: number;
  private readonly windowClock: () => number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly shardSyncIntervalMs: number;
  private readonly streamReadyTimeoutMs: number;
  private readonly reportError: NonNullable<ShardReaderOptions['onError']>;

  private readonly shards = new Map<string, ShardState>();
  private ended = new Set<string>();
  private phase: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private readonly abort = new AbortController();
  private arn: string | undefined;
  private firstStart = false;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  /** Listings begun, and the number of the latest that answered: whether a listing made after a moment answered. */
  private listingsBegun = 0;
  private lastAnsweredListing = 0;
  private drainGeneration = 0;
  private draining = 0;
  /** When the latest drain began: records that arrived later are not waited for (a producer may never stop). */
  private drainStartedAt = 0;
  private readonly progress = new Alarm();
  private pendingWrite: Promise<void> | undefined;
  private lastWrite: Promise<void> = Promise.resolve();
  private throttled = 0;
  private failedCalls = 0;
  private callbackFailures = 0;

  constructor(options: ShardReaderOptions) {
    for (const [key, value] of [
      ['streamName', options.streamName],
      ['consumerName', options.consumerName],
    ] as const) {
      if (!NAME.test(value) || value === '.' || value === '..') {
        throw new Error(`ShardReader: ${key} "${value}" must be 1–128 characters of A-Z, a-z, 0-9, "_", "." and "-" (as Kinesis names are).`);
      }
    }
    this.streamName = options.streamName;
    this.consumerName = options.consumerName;
    this.checkpointFile = path.resolve(checkpointPath(options.dataDir, options.consumerName, options.streamName));
    this.api = options.client instanceof KinesisClient ? kinesisReadApi(options.client) : options.client;
    this.onRecords = options.onRecords;
    this.startingPosition = options.startingPosition ?? 'TRIM_HORIZON';
    this.pollIntervalMs = nonNegative('pollIntervalMs', options.pollIntervalMs ?? 1000);
    this.idlePollIntervalMs = nonNegative('idlePollIntervalMs', options.idlePollIntervalMs ?? this.pollIntervalMs);
    this.idleAfterMs = nonNegative('idleAfterMs', options.idleAfterMs ?? 2000);
    this.minCallGapMs = nonNegative('minCallGapMs', options.minCallGapMs ?? 200);
    this.maxRecordsPerCall = options.maxRecordsPerCall ?? 10_000;
    if (!Number.isInteger(this.maxRecordsPerCall) || this.maxRecordsPerCall < 1 || this.maxRecordsPerCall > 10_000) {
      throw new Error(`ShardReader: maxRecordsPerCall must be an integer 1–10,000 (GetRecords' Limit), got ${this.maxRecordsPerCall}.`);
    }
    const batching = options.batching;
    this.maxBatchRecords = batching?.maxRecords ?? Number.POSITIVE_INFINITY;
    if (batching && (!Number.isInteger(batching.maxRecords) || batching.maxRecords < 1)) {
      throw new Error(`ShardReader: batching.maxRecords must be a positive integer, got ${batching.maxRecords}.`);
    }
    this.maxBatchBytes = batching?.maxBytes ?? Number.POSITIVE_INFINITY;
    this.recordBytes = batching?.recordBytes ?? ((record) => record.Data?.length ?? 0);
    this.windowMs = nonNegative('batching.windowMs', batching?.windowMs ?? 0);
    this.windowClock = batching?.now ?? monotonicNow;
    this.backoffBaseMs = nonNegative('backoff.baseMs', options.backoff?.baseMs ?? 100);
    this.backoffMaxMs = nonNegative('backoff.maxMs', options.backoff?.maxMs ?? 10_000);
    this.shardSyncIntervalMs = nonNegative('shardSyncIntervalMs', options.shardSyncIntervalMs ?? 10_000);
    this.streamReadyTimeoutMs = nonNegative('streamReadyTimeoutMs', options.streamReadyTimeoutMs ?? 30_000);
    this.reportError = options.onError ?? defaultErrorReporter;
  }

  /** The stream's ARN, known once `start()` resolved. */
  get streamArn(): string {
    if (this.arn === undefined) throw new Error(`ShardReader(${this.consumerName}/${this.streamName}): streamArn is known only after start().`);
    return this.arn;
  }

  /**
   * Loads the checkpoints, waits for the stream to be ACTIVE, lists its shards and starts reading.
   * Resolves once reading has started; fails if the stream does not exist or the checkpoint file is unreadable.
   */
  async start(): Promise<void> {
    if (this.phase !== 'new') throw new Error(`ShardReader(${this.consumerName}/${this.streamName}) was already started; create a new reader to read again.`);
    if (activeCheckpoints.has(this.checkpointFile)) {
      throw new Error(
        `ShardReader: consumer "${this.consumerName}" is already reading stream "${this.streamName}" in this process (checkpoints ${this.checkpointFile}); give each reader its own consumer name.`,
      );
    }
    activeCheckpoints.add(this.checkpointFile);
    this.phase = 'running';
    try {
      await this.loadCheckpoints();
      await this.waitForStream();
      await this.syncShards();
    } catch (err) {
      this.phase = 'stopped';
      activeCheckpoints.delete(this.checkpointFile);
      this.abort.abort();
      throw err;
    }
    this.scheduleSync();
  }

  /**
   * Stops polling: an in-flight GetRecords is abandoned, an in-flight callback is awaited (and its
   * batch checkpointed if it succeeds), records buffered for a batch are dropped (they are re-read
   * next time, as they were never acknowledged). Resolves once the checkpoint file is written.
   */
  async stop(): Promise<void> {
    if (this.phase === 'new') {
      this.phase = 'stopped';
      return;
    }
    if (this.phase === 'stopped') return;
    if (this.phase === 'stopping') {
      await this.settled();
      return;
    }
    this.phase = 'stopping';
    clearTimeout(this.syncTimer);
    this.abort.abort();
    for (const shard of this.shards.values()) shard.alarm.wake(true);
    this.progress.wake(true);
    await this.settled();
    this.phase = 'stopped';
    activeCheckpoints.delete(this.checkpointFile);
  }

  /**
   * Reads until every shard is caught up: each open shard has answered a GetRecords call made after
   * drain() was called with no records and MillisBehindLatest 0, or with a record that arrived after
   * drain() was called (records a producer keeps sending are not waited for); every shard that ended
   * had its children read the same way, and every record read was delivered (partial batches are
   * flushed at once). Polling then goes on as before. Rejects after `timeoutMs`, naming the shards
   * still behind.
   */
  async drain(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.phase !== 'running') throw new Error(`ShardReader(${this.consumerName}/${this.streamName}): drain() needs a started reader (it is ${this.phase}).`);
    const generation = ++this.drainGeneration;
    this.drainStartedAt = Date.now();
    this.draining++;
    const deadline = options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : monotonicNow() + options.timeoutMs;
    try {
      for (const shard of this.shards.values()) shard.alarm.wake();
      await this.syncShards();
      for (;;) {
        const behind = this.shardsBehind(generation);
        if (behind.length === 0) return;
        if (this.phase !== 'running') throw new Error(`ShardReader(${this.consumerName}/${this.streamName}) stopped while draining.`);
        const left = deadline - monotonicNow();
        if (left <= 0) {
          throw new Error(
            `ShardReader(${this.consumerName}/${this.streamName}): not caught up after ${options.timeoutMs} ms; still behind: ${behind.join(', ')}.`,
          );
        }
        await this.progress.sleep(Math.min(left, 1000));
      }
    } finally {
      this.draining--;
    }
  }

  stats(): ShardReaderStats {
    const shards = [...this.shards.values()].map(
      (s): ShardStats => ({
        shardId: s.shardId,
        phase: s.phase,
        checkpoint: s.checkpoint,
        recordsDelivered: s.recordsDelivered,
        batchesDelivered: s.batchesDelivered,
        getRecordsCalls: s.getRecordsCalls,
        millisBehindLatest: s.millisBehindLatest,
        lastArrival: s.lastArrival,
        buffered: s.buffered,
      }),
    );
    const reading = shards.filter((s) => s.phase === 'reading');
    const now = Date.now();
    return {
      streamName: this.streamName,
      consumerName: this.consumerName,
      recordsDelivered: sum(shards.map((s) => s.recordsDelivered)),
      batchesDelivered: sum(shards.map((s) => s.batchesDelivered)),
      getRecordsCalls: sum(shards.map((s) => s.getRecordsCalls)),
      throttled: this.throttled,
      failedCalls: this.failedCalls,
      callbackFailures: this.callbackFailures,
      millisBehindLatest: Math.max(0, ...reading.map((s) => s.millisBehindLatest ?? 0)),
      iteratorAgeMs: Math.max(
        0,
        ...reading
          .filter((s) => (s.millisBehindLatest ?? 0) > 0 || s.buffered > 0)
          .map((s) => (s.lastArrival ? now - s.lastArrival.getTime() : 0)),
      ),
      shards,
    };
  }

  // ---- shards ------------------------------------------------------------------------------

  private async loadCheckpoints(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.checkpointFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.firstStart = true;
      return;
    }
    const unreadable = (why: string): Error =>
      new Error(
        `Kinesis checkpoint file ${this.checkpointFile} is unreadable (${why}). Delete it to re-read stream "${this.streamName}" from the start for consumer "${this.consumerName}".`,
      );
    let doc: CheckpointDocument;
    try {
      doc = JSON.parse(text) as CheckpointDocument;
    } catch (err) {
      throw unreadable((err as Error).message);
    }
    if (doc === null || typeof doc !== 'object' || doc.version !== 1 || typeof doc.shards !== 'object' || doc.shards === null) {
      throw unreadable('expected {"version": 1, "shards": {...}}');
    }
    for (const [shardId, entry] of Object.entries(doc.shards)) {
      if (entry.ended) this.ended.add(shardId);
      const parents = Array.isArray(entry.parents) ? entry.parents.filter((id): id is string => typeof id === 'string') : [];
      if (entry.sequenceNumber !== undefined || entry.ended || parents.length > 0) {
        const state = this.newShardState(shardId, {
          checkpoint: entry.sequenceNumber,
          parents,
          phase: entry.ended ? 'ended' : 'waiting-for-parents',
          startingSequenceNumber: typeof entry.startingSequenceNumber === 'string' ? entry.startingSequenceNumber : undefined,
        });
        // A file from before arrivals were kept: when it was written bounds the checkpointed record's arrival.
        const when = typeof entry.arrivalTimestamp === 'string' ? entry.arrivalTimestamp : doc.updatedAt;
        const arrival = typeof when === 'string' ? new Date(when) : undefined;
        if (entry.sequenceNumber !== undefined && arrival !== undefined && !Number.isNaN(arrival.getTime())) state.lastArrival = arrival;
        this.shards.set(shardId, state);
      }
    }
  }

  private newShardState(
    shardId: string,
    fields: Pick<ShardState, 'phase'> & Partial<Pick<ShardState, 'parents' | 'openAtFirstStart' | 'checkpoint' | 'startingSequenceNumber'>>,
  ): ShardState {
    return {
      shardId,
      parents: [],
      openAtFirstStart: false,
      follows: [],
      ...fields,
      recordsDelivered: 0,
      batchesDelivered: 0,
      getRecordsCalls: 0,
      buffered: 0,
      caughtUpGeneration: 0,
      alarm: new Alarm(),
      gone: false,
    };
  }

  private async waitForStream(): Promise<void> {
    const deadline = monotonicNow() + this.streamReadyTimeoutMs;
    for (;;) {
      let status: string;
      try {
        const description = await this.api.describeStream(this.streamName, this.abort.signal);
        this.arn = description.streamArn;
        status = description.status;
      } catch (err) {
        if (errorName(err) === 'ResourceNotFoundException') {
          throw new Error(`ShardReader(${this.consumerName}): Kinesis stream "${this.streamName}" does not exist. Create it before starting its consumers.`, {
            cause: err,
          });
        }
        throw err;
      }
      if (status === 'ACTIVE' || status === 'UPDATING') return;
      if (monotonicNow() > deadline) {
        throw new Error(`ShardReader(${this.consumerName}): Kinesis stream "${this.streamName}" is still ${status} after ${this.streamReadyTimeoutMs} ms.`);
      }
      await delay(50);
    }
  }

  /** Lists shards and starts a worker for every shard whose parents are all read; one listing at a time. */
  private syncShards(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.syncAgain = false;
          await this.syncShardsOnce();
        } while (this.syncAgain && this.phase === 'running');
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  private async syncShardsOnce(): Promise<void> {
    if (this.phase !== 'running') return;
    // A shard read to its end while the listing was on its way may be listed open: the listing predates its close.
    const endedBeforeListing = new Set(this.ended);
    const listing = ++this.listingsBegun;
    let listed: Shard[];
    try {
      listed = await this.api.listShards(this.streamName, this.abort.signal);
    } catch (err) {
      if (this.phase !== 'running') return;
      this.failedCalls++;
      this.report(err, 'ListShards', undefined, 'retry');
      return;
    }
    this.lastAnsweredListing = listing;
    const present = new Map(listed.map((s) => [s.ShardId as string, s]));
    const parentsOfLost = this.letGoOfLostShards(present);
    for (const shard of listed) {
      const shardId = shard.ShardId as string;
      const parents = [shard.ParentShardId, shard.AdjacentParentShardId].filter((id): id is string => id !== undefined);
      const open = shard.SequenceNumberRange?.EndingSequenceNumber === undefined;
      const startingSequenceNumber = shard.SequenceNumberRange?.StartingSequenceNumber;
      const known = this.shards.get(shardId);
      // A lost shard still delivering what it read: the shard listed under its id (its replacedBy) is taken up once it is done.
      if (known?.gone) continue;
      if (!known) {
        this.shards.set(shardId, this.listedShardState(shard));
      } else if (known.phase === 'ended' && (open || parentsOfLost.has(shardId)) && endedBeforeListing.has(shardId)) {
        // A closed shard never opens again in Kinesis, but kinesis-mock's does when it comes back from a save made
        // before the reshard: the records put since are in it, after the checkpoint, and after those of the lost children.
        // Listed closed, with a child lost, it was open again and closed by a reshard made since: read on all the same.
        this.ended.delete(shardId);
        // The shards lost with the reshard (its children among them) deliver what they read first.
        const follows = [...this.shards.values()].filter((s) => s.gone);
        this.shards.set(shardId, { ...known, parents, follows, phase: 'waiting-for-parents', worker: undefined });
        const error = new Error(`${shardId} of ${this.streamName} was read to its end, and ${open ? 'is open again' : 'was open again (a child of it is lost)'}: `
          + `the emulator lost the reshard that closed it (it died without saving); reading on in it from its checkpoint.`);
        error.name = 'ReopenedShardError';
        this.report(error, 'ListShards', shardId, 'read-reopened-shard');
      } else if (known.worker === undefined && ((known.parents.length === 0 && parents.length > 0) || (known.startingSequenceNumber === undefined && startingSequenceNumber !== undefined))) {
        // Loaded from a checkpoint file written before lineage (or where shards start) was kept: take them from the
        // listing, before a worker holds the shard's state.
        this.shards.set(shardId, { ...known, parents, startingSequenceNumber });
      }
    }
    this.firstStart = false;
    for (const shard of this.shards.values()) {
      if (shard.phase === 'waiting-for-parents' && this.mayStart(shard, present)) {
        shard.phase = 'reading';
        // Its parents go to the file now, not with its first checkpoint: the emulator may lose it before it has one.
        if (shard.checkpoint === undefined && shard.parents.length > 0) void this.persist();
        shard.worker = this.readShard(shard).catch((err: unknown) => {
          // Only a bug gets here (every expected failure is retried inside); keep the reader's state honest.
          shard.phase = 'waiting-for-parents';
          shard.worker = undefined;
          this.report(err, 'GetRecords', shard.shardId, 'retry');
        });
      }
    }
    this.progress.wake();
  }

  /** The state of a shard first seen in a listing, waiting for its parents. */
  private listedShardState(shard: Shard): ShardState {
    const shardId = shard.ShardId as string;
    const parents = [shard.ParentShardId, shard.AdjacentParentShardId].filter((id): id is string => id !== undefined);
    const open = shard.SequenceNumberRange?.EndingSequenceNumber === undefined;
    // With LATEST at the very first start, closed shards hold nothing new: count them as read.
    const skip = this.firstStart && this.startingPosition === 'LATEST' && !open;
    if (skip) this.ended.add(shardId);
    return this.newShardState(shardId, {
      parents,
      openAtFirstStart: this.firstStart && open,
      phase: skip ? 'ended' : 'waiting-for-parents',
      startingSequenceNumber: shard.SequenceNumberRange?.StartingSequenceNumber,
    });
  }

  /** Lists the shards now (or right after the listing under way); whether that listing answered. */
  private async listShardsNow(): Promise<boolean> {
    const before = this.listingsBegun;
    await this.syncShards();
    return this.lastAnsweredListing > before;
  }

  /**
   * Lets go of the shards the listing no longer shows: trimmed past retention, or lost by the emulator with a
   * reshard (see the file comment), also when a shard it made later is listed under the same id. One being read
   * stops its worker, which delivers what it read first, and the shard listed under its id then takes its place; any
   * other is forgotten, its checkpoint with it. Returns the parents of the shards let go: one still listed was open
   * again after the reshard was lost.
   */
  private letGoOfLostShards(listed: ReadonlyMap<string, Shard>): Set<string> {
    const parentsOfLost = new Set<string>();
    for (const [shardId, shard] of this.shards) {
      if (isSameShard(shard, listed.get(shardId))) continue;
      // A shard trimmed past retention went after its parents: a parent still listed means the reshard was lost.
      for (const parent of shard.parents) parentsOfLost.add(parent);
      if (shard.phase === 'reading' && shard.worker !== undefined) {
        shard.gone = true;
        shard.replacedBy = listed.get(shardId);
        // Not wake(true): that stops the alarm for good, and the delivery of what was read would retry without a pause.
        shard.alarm.interrupt();
      } else {
        this.shards.delete(shardId);
        this.ended.delete(shardId);
      }
    }
    return parentsOfLost;
  }

  /**
   * Whether the records before a shard's are delivered: its parents were read to their end (one no longer listed
   * was trimmed past retention: nothing of it is left), and the lost shards it follows have stopped.
   */
  private mayStart(shard: ShardState, listed: ReadonlyMap<string, Shard>): boolean {
    return shard.parents.every((parent) => this.ended.has(parent) || !listed.has(parent))
      && shard.follows.every((lost) => this.shards.get(lost.shardId) !== lost);
  }

  private scheduleSync(): void {
    if (this.phase !== 'running' || this.shardSyncIntervalMs === 0) return;
    this.syncTimer = setTimeout(() => {
      void this.syncShards().finally(() => this.scheduleSync());
    }, this.shardSyncIntervalMs);
    this.syncTimer.unref();
  }

  private shardsBehind(generation: number): string[] {
    const behind: string[] = [];
    for (const shard of this.shards.values()) {
      if (shard.phase === 'ended') continue;
      if (shard.gone) {
        // Still delivering what it read; then what comes after it is read: the shard listed under its id, or its parent open again.
        behind.push(`${shard.shardId} (lost)`);
        continue;
      }
      if (shard.phase === 'waiting-for-parents') {
        // Waiting on a parent that is itself behind is covered by the parent; one whose parents all
        // ended is about to start.
        if (shard.parents.every((parent) => this.ended.has(parent))) behind.push(`${shard.shardId} (starting)`);
        continue;
      }
      if (shard.caughtUpGeneration < generation || shard.buffered > 0) behind.push(shard.shardId);
    }
    if (this.syncing) behind.push('(listing shards)');
    return behind;
  }

  // ---- reading one shard -------------------------------------------------------------------

  private async readShard(shard: ShardState): Promise<void> {
    const signal = this.abort.signal;
    // The last sequence number taken from the stream (delivered or buffered): where a new iterator starts.
    let readPosition = shard.checkpoint;
    let readArrival = shard.lastArrival;
    // Set when the stream lost the record at readPosition: the shard is read from TRIM_HORIZON, skipping this far.
    let skip: SkipThrough | undefined;
    let fromTrimHorizon = false;
    let iterator: string | undefined;
    let failures = 0;
    let lastCallAt = 0;
    // The Limit of the next GetRecords: lowered after a large page or a call that timed out (see nextLimit).
    let limit = this.maxRecordsPerCall;
    let askedFor: number;
    // When the shard last returned records (or its reading started): past idleAfterMs it polls at the idle interval.
    let lastRecordsAt = monotonicNow();
    const buffer: _Record[] = [];
    let bufferedSince = 0;

    while (this.phase === 'running' && !shard.gone) {
      let page: RecordsPage;
      const generation = this.drainGeneration;
      try {
        if (iterator === undefined) {
          const request: ShardIteratorRequest = fromTrimHorizon
            ? { streamName: this.streamName, shardId: shard.shardId, type: 'TRIM_HORIZON' }
            : this.iteratorRequest(shard, readPosition);
          iterator = await this.api.getShardIterator(request, signal);
          fromTrimHorizon = false;
        }
        const gap = lastCallAt + this.minCallGapMs - monotonicNow();
        if (gap > 0) await shard.alarm.sleep(gap, { onlyStop: true });
        if (this.phase !== 'running') break;
        lastCallAt = monotonicNow();
        askedFor = limit;
        page = await this.api.getRecords(iterator, limit, signal);
      } catch (err) {
        if (this.phase !== 'running') break;
        const name = errorName(err);
        // A call too slow to be answered in time (large records, a busy emulator) would time out again as it is.
        if (iterator !== undefined && isTimeout(err)) limit = Math.max(1, Math.floor(limit / 2));
        const operation = iterator === undefined ? 'GetShardIterator' : 'GetRecords';
        if (operation === 'GetShardIterator' && !fromTrimHorizon && readPosition !== undefined && isLostPosition(err, readPosition)) {
          // The stream may have been made again under its name (kinesis-mock came back without a save), or a lost reshard made
          // again, a new shard under this id with it: only a listing made now tells. A new shard is read from its start as one,
          // by the state that replaces this (after its parent, open again in between, is read on).
          if (!(await this.listShardsNow())) {
            if (!shard.gone) await shard.alarm.sleep(this.backoff(failures++), { onlyStop: true });
            continue;
          }
          if (shard.gone) continue;
          skip = { sequenceNumber: BigInt(readPosition), arrivalMs: readArrival?.getTime() };
          fromTrimHorizon = true;
          this.failedCalls++;
          const error = new Error(`Sequence number ${readPosition} is no longer in ${shard.shardId} of ${this.streamName} (${errorName(err)}: `
            + `${(err as { message?: unknown })?.message}). The emulator lost records it had acknowledged, e.g. after a SIGKILL; `
            + `reading the shard again from TRIM_HORIZON, skipping the records delivered before.`);
          error.name = 'LostReadPositionError';
          this.report(error, operation, shard.shardId, 'read-from-trim-horizon');
          continue;
        }
        if (name === 'ExpiredIteratorException' && failures === 0) {
          this.failedCalls++;
          this.report(err, operation, shard.shardId, 'new-iterator');
          iterator = undefined;
          failures++;
          continue;
        }
        // The shard itself may be gone (a reshard the emulator lost): a listing tells.
        if (name === 'ResourceNotFoundException') void this.syncShards();
        if (THROTTLING_ERRORS.has(name)) {
          // The iterator stays valid: the same call is simply made again, later.
          this.throttled++;
        } else {
          this.failedCalls++;
          iterator = undefined;
        }
        this.report(err, operation, shard.shardId, 'retry-after-backoff');
        if (!shard.gone) await shard.alarm.sleep(this.backoff(failures++), { onlyStop: true });
        continue;
      }
      failures = 0;
      limit = nextLimit(askedFor, page.records, this.maxRecordsPerCall);
      shard.getRecordsCalls++;
      shard.millisBehindLatest = page.millisBehindLatest;
      let taken = page.records;
      if (skip !== undefined && taken.length > 0) {
        const through = skip;
        const first = taken.findIndex((r) => !deliveredBefore(r, through));
        taken = first === -1 ? [] : taken.slice(first);
        // Records after the first new one are new as well: the shard is in sequence order.
        if (first !== -1) skip = undefined;
      }
      const last = page.records.at(-1);
      if (last !== undefined) {
        lastRecordsAt = monotonicNow();
        readPosition = last.SequenceNumber;
        readArrival = last.ApproximateArrivalTimestamp;
      }
      if (taken.length > 0) {
        if (buffer.length === 0) bufferedSince = this.windowClock();
        buffer.push(...taken);
      } else if (last !== undefined && buffer.length === 0 && (page.millisBehindLatest ?? 0) === 0) {
        // Every record read again up to the shard's tip was delivered before: the checkpoint moves past them, off
        // the lost position. Not sooner: the skip bound lives only in memory, so a stop part-way through the
        // re-read would leave a checkpoint that skips nothing, and the rest would be delivered a second time.
        shard.checkpoint = last.SequenceNumber;
        shard.lastArrival = last.ApproximateArrivalTimestamp;
        await this.persist();
      }
      shard.buffered = buffer.length;
      iterator = page.nextShardIterator;
      const atEnd = iterator === undefined;

      // Deliver full batches at once; the rest when the window closes, the shard ends or a drain asks.
      while (buffer.length > 0) {
        const { count, full } = this.nextBatch(buffer);
        const flush = full || atEnd || this.draining > 0 || this.windowClock() - bufferedSince >= this.windowMs;
        if (!flush) break;
        const batch = buffer.splice(0, count);
        shard.buffered = buffer.length;
        if (!(await this.deliver(shard, batch, signal))) return;
        bufferedSince = this.windowClock();
      }

      if (atEnd) {
        shard.phase = 'ended';
        this.ended.add(shard.shardId);
        await this.persist();
        this.progress.wake();
        // Its children (a split or a merge) can start now.
        void this.syncShards();
        return;
      }
      // Caught up: nothing more to read, or (while a drain waits) read past what had arrived when it began,
      // so a producer that keeps sending cannot hold a drain, or a shutdown, forever.
      const lastArrival = page.records.length > 0 ? page.records[page.records.length - 1].ApproximateArrivalTimestamp : undefined;
      const pastDrainStart = this.draining > 0 && lastArrival !== undefined && lastArrival.getTime() > this.drainStartedAt;
      if (((page.records.length === 0 && (page.millisBehindLatest ?? 0) === 0) || pastDrainStart) && buffer.length === 0) {
        shard.caughtUpGeneration = generation;
        this.progress.wake();
      }

      const behind = page.records.length >= askedFor || (page.millisBehindLatest ?? 0) > 0;
      // A caught-up shard polls again soon while a drain waits, but never in a tight loop: an in-process
      // API answers in a microtask, and a loop of those would starve timers and file I/O (checkpoints).
      const caughtUpWait = monotonicNow() - lastRecordsAt >= this.idleAfterMs ? this.idlePollIntervalMs : this.pollIntervalMs;
      let wait = behind ? 0 : this.draining > 0 ? Math.min(this.pollIntervalMs, 20) : caughtUpWait;
      if (buffer.length > 0) wait = Math.min(wait, Math.max(0, bufferedSince + this.windowMs - this.windowClock()));
      if (shard.gone) continue;
      if (wait > 0) await shard.alarm.sleep(wait);
      else await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (shard.gone) {
      // Records read before the shard was lost are still delivered, as those a reader already took are.
      while (buffer.length > 0 && (await this.deliver(shard, buffer.splice(0, this.nextBatch(buffer).count), signal)));
      if (this.shards.get(shard.shardId) === shard) {
        // The shard listed under its id since takes its place at once: a drain meanwhile waits for it, never finding the id unread.
        if (shard.replacedBy) this.shards.set(shard.shardId, this.listedShardState(shard.replacedBy));
        else this.shards.delete(shard.shardId);
      }
      await this.persist();
      this.progress.wake();
      // A parent open again (and a shard listed under this one's id) can start now.
      void this.syncShards();
    }
  }

  private iteratorRequest(shard: ShardState, readPosition: string | undefined): ShardIteratorRequest {
    if (readPosition !== undefined) {
      return { streamName: this.streamName, shardId: shard.shardId, type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: readPosition };
    }
    const type = this.startingPosition === 'LATEST' && shard.openAtFirstStart ? 'LATEST' : 'TRIM_HORIZON';
    return { streamName: this.streamName, shardId: shard.shardId, type };
  }

  /** How many buffered records form the next batch, and whether a limit (not the buffer's end) cut it. */
  private nextBatch(buffer: readonly _Record[]): { count: number; full: boolean } {
    let bytes = 0;
    let count = 0;
    while (count < buffer.length && count < this.maxBatchRecords) {
      const size = this.recordBytes(buffer[count]);
      if (count > 0 && bytes + size > this.maxBatchBytes) return { count, full: true };
      bytes += size;
      count++;
    }
    return { count, full: count === this.maxBatchRecords || bytes >= this.maxBatchBytes };
  }

  /** Hands a batch to the callback until it succeeds; false when the reader stopped first. */
  private async deliver(shard: ShardState, records: _Record[], signal: AbortSignal): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (this.phase !== 'running') return false;
      try {
        await this.onRecords(shard.shardId, records, { signal, ancestorShardIds: this.ancestorsOf(shard) });
        break;
      } catch (err) {
        if (this.phase !== 'running') return false;
        this.callbackFailures++;
        this.report(err, 'onRecords', shard.shardId, 'retry-after-backoff');
        await shard.alarm.sleep(this.backoff(attempt), { onlyStop: true });
      }
    }
    // The callback resolved — even if stop() was called meanwhile, this batch is done: checkpoint it.
    const last = records[records.length - 1];
    shard.checkpoint = last.SequenceNumber;
    shard.lastArrival = last.ApproximateArrivalTimestamp;
    shard.recordsDelivered += records.length;
    shard.batchesDelivered++;
    await this.persist();
    this.progress.wake();
    return this.phase === 'running';
  }

  /** The shard's parents, theirs and so on, of those the reader still holds. */
  private ancestorsOf(shard: ShardState): string[] {
    const ancestors: string[] = [];
    const next = [...shard.parents];
    for (let id = next.shift(); id !== undefined; id = next.shift()) {
      if (ancestors.includes(id)) continue;
      ancestors.push(id);
      next.push(...(this.shards.get(id)?.parents ?? []));
    }
    return ancestors;
  }

  private backoff(attempt: number): number {
    const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** Math.min(attempt, 30));
    // Equal jitter: never less than half the ceiling, so a failing endpoint is not hammered.
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  // ---- checkpoints -------------------------------------------------------------------------

  /** Writes the checkpoint file; calls made while a write is queued share the next write. */
  private persist(): Promise<void> {
    if (this.pendingWrite) return this.pendingWrite;
    const write = this.lastWrite
      .then(async () => {
        this.pendingWrite = undefined;
        await this.writeCheckpoints();
      })
      .catch((err: unknown) => {
        // The position in memory still advanced; only a crash before the next successful write re-delivers.
        this.report(err, 'checkpoint', undefined, 'retry');
      });
    this.pendingWrite = write;
    this.lastWrite = write;
    return write;
  }

  private async writeCheckpoints(): Promise<void> {
    const shards: CheckpointDocument['shards'] = {};
    for (const shard of [...this.shards.values()].sort((a, b) => a.shardId.localeCompare(b.shardId))) {
      const begunChild = shard.phase === 'reading' && shard.parents.length > 0;
      if (shard.checkpoint === undefined && shard.phase !== 'ended' && !begunChild) continue;
      const arrivalTimestamp = shard.checkpoint === undefined ? undefined : shard.lastArrival?.toISOString();
      shards[shard.shardId] = {
        sequenceNumber: shard.checkpoint,
        ...(arrivalTimestamp ? { arrivalTimestamp } : {}),
        ...(shard.phase === 'ended' ? { ended: true } : {}),
        ...(shard.startingSequenceNumber ? { startingSequenceNumber: shard.startingSequenceNumber } : {}),
        ...(shard.parents.length > 0 ? { parents: [...shard.parents] } : {}),
      };
    }
    const doc: CheckpointDocument = {
      version: 1,
      streamName: this.streamName,
      consumerName: this.consumerName,
      updatedAt: new Date().toISOString(),
      shards,
    };
    await mkdir(path.dirname(this.checkpointFile), { recursive: true });
    await writeFileAtomic(this.checkpointFile, `${JSON.stringify(doc, null, 2)}\n`);
  }

  /** Resolves when every worker, listing and checkpoint write has finished. */
  private async settled(): Promise<void> {
    for (;;) {
      const workers = [...this.shards.values()].map((s) => s.worker).filter((w): w is Promise<void> => w !== undefined);
      await Promise.allSettled(workers);
      if (this.syncing) await this.syncing.catch(() => undefined);
      await this.lastWrite;
      const again = [...this.shards.values()].some((s) => s.worker !== undefined && !workers.includes(s.worker));
      if (!again && !this.syncing && !this.pendingWrite) return;
    }
  }

  private report(error: unknown, operation: ReaderErrorContext['operation'], shardId: string | undefined, action: ReaderErrorContext['action']): void {
    try {
      this.reportError(error, { streamName: this.streamName, consumerName: this.consumerName, operation, shardId, action });
    } catch {
      // A failing error reporter must not stop the reader.
    }
  }
}

function defaultErrorReporter(error: unknown, context: ReaderErrorContext): void {
  const err = error as { name?: string; message?: string };
  console.warn(
    JSON.stringify({
      level: 'WARN',
      component: 'shard-reader',
      message: `${context.operation} failed`,
      error: err?.name ?? 'Error',
      errorMessage: err?.message ?? String(error),
      ...context,
    }),
  );
}

/** A sleep that `wake()` cuts short: woken by drain and progress (unless `onlyStop`), always by stop. */
class Alarm {
  private waiters = new Set<{ resolve: () => void; onlyStop: boolean }>();
  private stopped = false;

  sleep(ms: number, options: { onlyStop?: boolean } = {}): Promise<void> {
    if (this.stopped || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = {
        onlyStop: options.onlyStop ?? false,
        resolve: () => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.resolve, ms);
      this.waiters.add(waiter);
    });
  }

  /** Wakes sleepers; `stop` wakes every sleeper for good. */
  wake(stop = false): void {
    if (stop) this.stopped = true;
    for (const waiter of [...this.waiters]) if (stop || !waiter.onlyStop) waiter.resolve();
  }

  /** Wakes every sleeper this once, those waiting only for a stop too; later sleeps last as long as asked. */
  interrupt(): void {
    for (const waiter of [...this.waiters]) waiter.resolve();
  }
}

function errorName(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { name?: unknown; code?: unknown };
    if (typeof e.name === 'string' && e.name !== 'Error') return e.name;
    if (typeof e.code === 'string') return e.code;
    if (typeof e.name === 'string') return e.name;
  }
  return 'Error';
}

/**
 * GetShardIterator refused AFTER_SEQUENCE_NUMBER because the stream does not hold that record:
 * kinesis-mock answers ResourceNotFoundException "Unable to find record with provided SequenceNumber".
 */
function isLostPosition(err: unknown, position: string): boolean {
  const message = (err as { message?: unknown } | null)?.message;
  return /^\d+$/.test(position)
    && ['ResourceNotFoundException', 'InvalidArgumentException'].includes(errorName(err))
    && typeof message === 'string' && /unable to find record/i.test(message);
}

/** Whether a listed shard is the one a state was kept for: the same id, and where it starts when both are known. */
function isSameShard(state: ShardState, listed: Shard | undefined): boolean {
  const starting = listed?.SequenceNumberRange?.StartingSequenceNumber;
  return listed !== undefined && (state.startingSequenceNumber === undefined || starting === undefined || starting === state.startingSequenceNumber);
}

/** Whether a record read again after a lost read position was delivered before (see the file comment). */
function deliveredBefore(record: _Record, skip: SkipThrough): boolean {
  if (record.SequenceNumber === undefined || !/^\d+$/.test(record.SequenceNumber) || BigInt(record.SequenceNumber) > skip.sequenceNumber) return false;
  if (skip.arrivalMs === undefined) return true;
  const arrival = record.ApproximateArrivalTimestamp?.getTime();
  return arrival !== undefined && arrival <= skip.arrivalMs;
}

function nonNegative(key: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new Error(`ShardReader: ${key} must be a number ≥ 0, got ${value}.`);
  return value;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}


// ---- an in-memory stream, for fast tests of stream consumers ----------------------------------

type MemoryOperation = 'DescribeStreamSummary' | 'ListShards' | 'GetShardIterator' | 'GetRecords';

interface MemoryShard {
  readonly shard: Shard;
  readonly records: _Record[];
  closed: boolean;
  childShards?: ChildShard[];
}

/**
 * A Kinesis stream in memory behind KinesisReadApi: put records, split and merge shards, and make
 * calls fail, without an emulator. The real thing (kinesis-mock) is for integration tests; this is
 * for testing what a consumer does with records, failures and resharding in milliseconds.
 */
export class MemoryKinesis implements KinesisReadApi {
  /** Calls made, by operation. */
  readonly calls: Record<MemoryOperation, number> = { DescribeStreamSummary: 0, ListShards: 0, GetShardIterator: 0, GetRecords: 0 };
  private readonly streams = new Map<string, MemoryShard[]>();
  private readonly failures: Array<{ operation: MemoryOperation; name: string; times: number }> = [];
  private sequence = 0;
  /** Bumped by `restore` and by `createStream` over a stream: the low digits of later sequence numbers, as kinesis-mock's differ after a restart. */
  private generation = 0;

  constructor(private readonly accountId = '000000000000', private readonly region = 'us-east-1') {}

  /**
   * Over a stream that exists, makes it again under its name, as the twin does when kinesis-mock came back
   * without a save: its shards are new ones, numbered from 0, and the old ones' iterators are of no use.
   */
  createStream(streamName: string, shardCount: number): void {
    if (this.streams.has(streamName)) this.generation++;
    const shards: MemoryShard[] = [];
    for (let i = 0; i < shardCount; i++) shards.push(this.newShard(shards.length, {}));
    this.streams.set(streamName, shards);
  }

  /** Appends a record to the shard its partition key maps to (or to `shardId`); returns where it went. */
  putRecord(
    streamName: string,
    partitionKey: string,
    data: Uint8Array | string,
    options: { shardId?: string; arrival?: Date } = {},
  ): { shardId: string; sequenceNumber: string } {
    const open = this.stream(streamName).filter((s) => !s.closed);
    const target = options.shardId
      ? open.find((s) => s.shard.ShardId === options.shardId)
      : open[[...partitionKey].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7) % open.length];
    if (!target) throw new Error(`MemoryKinesis: no open shard ${options.shardId ?? ''} in ${streamName}`);
    const sequenceNumber = this.sequenceNumber(++this.sequence);
    target.records.push({
      SequenceNumber: sequenceNumber,
      PartitionKey: partitionKey,
      Data: typeof data === 'string' ? Buffer.from(data) : data,
      ApproximateArrivalTimestamp: options.arrival ?? new Date(),
    });
    return { shardId: target.shard.ShardId as string, sequenceNumber };
  }

  /** Closes a shard and opens two children, as SplitShard does. */
  splitShard(streamName: string, shardId: string): string[] {
    const parent = this.openShard(streamName, shardId);
    parent.closed = true;
    const shards = this.stream(streamName);
    const children = [0, 1].map((i) => this.newShard(shards.length + i, { ParentShardId: shardId }));
    shards.push(...children);
    parent.childShards = children.map((c) => ({ ShardId: c.shard.ShardId, ParentShards: [shardId], HashKeyRange: c.shard.HashKeyRange }));
    return children.map((c) => c.shard.ShardId as string);
  }

  /** Closes two shards and opens one child, as MergeShards does. */
  mergeShards(streamName: string, shardId: string, adjacentShardId: string): string {
    const parents = [this.openShard(streamName, shardId), this.openShard(streamName, adjacentShardId)];
    const shards = this.stream(streamName);
    const child = this.newShard(shards.length, { ParentShardId: shardId, AdjacentParentShardId: adjacentShardId });
    shards.push(child);
    for (const parent of parents) {
      parent.closed = true;
      parent.childShards = [{ ShardId: child.shard.ShardId, ParentShards: [shardId, adjacentShardId], HashKeyRange: child.shard.HashKeyRange }];
    }
    return child.shard.ShardId as string;
  }

  /** What `restore` returns to: every shard's records, and which shards exist and are open, as they are now. */
  save(): MemorySave {
    const shards = new Map<string, Array<{ records: number; closed: boolean }>>();
    for (const [name, streamShards] of this.streams) shards.set(name, streamShards.map((s) => ({ records: s.records.length, closed: s.closed })));
    return { sequence: this.sequence, shards };
  }

  /**
   * Loses every record put since `save`, and every reshard made since (its children are gone, its parents
   * open again), as kinesis-mock does when it dies without saving. Records put afterwards are numbered from
   * the saved state on, so one can sort before a lost record, as with kinesis-mock; a lost sequence number
   * is then unknown to GetShardIterator.
   */
  restore(saved: MemorySave): void {
    for (const [name, savedShards] of saved.shards) {
      const shards = this.stream(name);
      shards.length = Math.min(shards.length, savedShards.length);
      shards.forEach((shard, i) => {
        shard.records.length = Math.min(shard.records.length, savedShards[i].records);
        if (!savedShards[i].closed) {
          shard.closed = false;
          shard.childShards = undefined;
        }
      });
    }
    this.sequence = saved.sequence;
    this.generation++;
  }

  /** The next `times` calls of `operation` fail with an error named `name` (e.g. ProvisionedThroughputExceededException). */
  failNext(operation: MemoryOperation, name: string, times = 1): void {
    this.failures.push({ operation, name, times });
  }

  async describeStream(streamName: string): Promise<{ streamArn: string; status: string }> {
    this.enter('DescribeStreamSummary');
    this.stream(streamName);
    return { streamArn: `arn:aws:kinesis:${this.region}:${this.accountId}:stream/${streamName}`, status: 'ACTIVE' };
  }

  async listShards(streamName: string): Promise<Shard[]> {
    this.enter('ListShards');
    return this.stream(streamName).map((s) => s.shard);
  }

  async getShardIterator(request: ShardIteratorRequest): Promise<string> {
    this.enter('GetShardIterator');
    const shard = this.stream(request.streamName).find((s) => s.shard.ShardId === request.shardId);
    if (!shard) throw named('ResourceNotFoundException', `Shard ${request.shardId} in stream ${request.streamName} not found`);
    let index = 0;
    if (request.type === 'LATEST') index = shard.records.length;
    if (request.type === 'AFTER_SEQUENCE_NUMBER') {
      const at = shard.records.findIndex((r) => r.SequenceNumber === request.sequenceNumber);
      // kinesis-mock's answer for a record it does not hold (the reader's lost-position case).
      if (at === -1) throw named('ResourceNotFoundException', `Unable to find record with provided SequenceNumber SequenceNumber(${request.sequenceNumber}) in stream Some(${request.streamName})`);
      index = at + 1;
    }
    return JSON.stringify({ stream: request.streamName, shard: request.shardId, index, generation: this.generation });
  }

  async getRecords(shardIterator: string, limit: number): Promise<RecordsPage> {
    this.enter('GetRecords');
    const { stream, shard: shardId, index, generation } = JSON.parse(shardIterator) as { stream: string; shard: string; index: number; generation: number };
    if (generation !== this.generation) throw named('ExpiredIteratorException', 'Iterator from before the stream was restored or made again');
    const shard = this.stream(stream).find((s) => s.shard.ShardId === shardId) as MemoryShard;
    const records = shard.records.slice(index, index + limit);
    const next = index + records.length;
    const remaining = shard.records[next];
    if (shard.closed && !remaining) return { records, millisBehindLatest: 0, childShards: shard.childShards };
    return {
      records,
      nextShardIterator: JSON.stringify({ stream, shard: shardId, index: next, generation }),
      millisBehindLatest: remaining ? Math.max(1, Date.now() - (remaining.ApproximateArrivalTimestamp as Date).getTime()) : 0,
    };
  }

  private enter(operation: MemoryOperation): void {
    this.calls[operation]++;
    const failure = this.failures.find((f) => f.operation === operation);
    if (!failure) return;
    if (--failure.times <= 0) this.failures.splice(this.failures.indexOf(failure), 1);
    throw named(failure.name, `${operation} failed (injected by MemoryKinesis)`);
  }

  private stream(streamName: string): MemoryShard[] {
    const shards = this.streams.get(streamName);
    if (!shards) throw named('ResourceNotFoundException', `Stream ${streamName} under account ${this.accountId} not found.`);
    return shards;
  }

  /** 56 digits, like Kinesis's: the counter, then the generation (the same counter sorts later after a restore). */
  private sequenceNumber(counter: number): string {
    return `49${String(counter).padStart(44, '0')}${String(this.generation).padStart(10, '0')}`;
  }

  private openShard(streamName: string, shardId: string): MemoryShard {
    const shard = this.stream(streamName).find((s) => s.shard.ShardId === shardId && !s.closed);
    if (!shard) throw new Error(`MemoryKinesis: ${shardId} is not an open shard of ${streamName}`);
    return shard;
  }

  private newShard(index: number, lineage: Pick<Shard, 'ParentShardId' | 'AdjacentParentShardId'>): MemoryShard {
    const starting = this.sequenceNumber(this.sequence + 1);
    const shard: Shard = {
      ShardId: `shardId-${String(index).padStart(12, '0')}`,
      ...lineage,
      HashKeyRange: { StartingHashKey: '0', EndingHashKey: '0' },
      SequenceNumberRange: { StartingSequenceNumber: starting },
    };
    const memory: MemoryShard = {
      get shard(): Shard {
        // A closed shard has an ending sequence number, as ListShards reports it.
        const ending = memory.records.at(-1)?.SequenceNumber ?? starting;
        return memory.closed ? { ...shard, SequenceNumberRange: { StartingSequenceNumber: starting, EndingSequenceNumber: ending } } : shard;
      },
      records: [],
      closed: false,
    };
    return memory;
  }
}

/** What MemoryKinesis.save returns: each stream's shards (their record counts, whether closed), and the sequence counter. */
export interface MemorySave {
  readonly sequence: number;
  readonly shards: ReadonlyMap<string, ReadonlyArray<{ readonly records: number; readonly closed: boolean }>>;
}

function named(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}
