/**
 * What `sluice redrive-consumer` does with one message of the consumer dead-letter queue: Lambda's on-failure record
 * for a Kinesis batch the metadata consumer gave up on (its shard and sequence range, never the records, see
 * AWS-FACTS.md), read back from the stream while its retention still holds it, and handed to the consumer again as the
 * event source mapping would. The consumer is idempotent (transforms/metadata-consumer/store.ts: an event item already
 * there adds nothing to the counters), so a range redriven twice records each event once.
 */
import { GetRecordsCommand, GetShardIteratorCommand, type _Record, type KinesisClient } from '@aws-sdk/client-kinesis';
import type { KinesisStreamEvent } from 'aws-lambda';
import { backoffDelay, sizedSlices } from '../../transforms/shared/retry';
import { batchResponseOutcome, kinesisStreamEvent, MAX_EVENT_BYTES, type KinesisInvocationRecord } from '../local/event-source-mapping';
import { explainFailure, type FailureContext } from './errors';
import { sleep as defaultSleep } from './sleep';

/** The batch an on-failure record names, checked. */
export interface FailedBatch {
  readonly shardId: string;
  readonly startSequenceNumber: string;
  readonly endSequenceNumber: string;
  /** Records in the batch Lambda gave up on. */
  readonly batchSize: number;
  readonly streamArn: string;
  /** The stream's name, from its ARN (a stream consumer's ARN names its stream too). */
  readonly streamName: string;
  /** RetryAttemptsExhausted, RecordAgeExceeded, … when the record says. */
  readonly condition?: string;
  /** The function Lambda invoked, as the record names it (for messages only: the stack's output names the one invoked). */
  readonly functionArn?: string;
  readonly approximateArrivalOfFirstRecord?: string;
}

/** Kinesis sequence numbers are decimal integers of up to 128 digits. */
const SEQUENCE_NUMBER = /^\d{1,128}$/;
/** `shardId-000000000000`, as Kinesis names shards. */
const SHARD_ID = /^shardId-\d{1,20}$/;
/** arn:aws:kinesis:<region>:<account>:stream/<name>[/consumer/<consumer>:<created>] */
const STREAM_ARN = /^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream\/([A-Za-z0-9_.-]{1,128})(?:\/consumer\/.+)?$/;

/**
 * Lambda's on-failure record from a message body (the twin's `KinesisInvocationRecord`, AWS's own shape), or why it is
 * not one. Nothing in it is trusted: each field the redrive uses is checked, so a hand-sent or damaged message is kept
 * and named rather than read as a range.
 */
export function parseFailedBatch(body: string): FailedBatch | string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return 'the message body is not JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'the message body is not a JSON object';
  const record = value as Partial<KinesisInvocationRecord>;
  const info = record.KinesisBatchInfo as Partial<KinesisInvocationRecord['KinesisBatchInfo']> | undefined;
  if (typeof info !== 'object' || info === null) return 'not a Lambda on-failure record of a Kinesis batch (no KinesisBatchInfo)';
  const { shardId, startSequenceNumber: start, endSequenceNumber: end, batchSize, streamArn } = info;
  if (typeof shardId !== 'string' || !SHARD_ID.test(shardId)) return `KinesisBatchInfo.shardId ${describe(shardId)} is not a Kinesis shard id (shardId-000000000000)`;
  if (typeof start !== 'string' || !SEQUENCE_NUMBER.test(start)) return `KinesisBatchInfo.startSequenceNumber ${describe(start)} is not a Kinesis sequence number`;
  if (typeof end !== 'string' || !SEQUENCE_NUMBER.test(end)) return `KinesisBatchInfo.endSequenceNumber ${describe(end)} is not a Kinesis sequence number`;
  if (BigInt(start) > BigInt(end)) return `KinesisBatchInfo.startSequenceNumber ${start} is after its endSequenceNumber ${end}`;
  if (typeof batchSize !== 'number' || !Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
    return `KinesisBatchInfo.batchSize ${describe(batchSize)} is not a batch size (1 to 10,000)`;
  }
  const streamName = typeof streamArn === 'string' ? STREAM_ARN.exec(streamArn)?.[1] : undefined;
  if (typeof streamArn !== 'string' || streamName === undefined) return `KinesisBatchInfo.streamArn ${describe(streamArn)} is not a Kinesis stream ARN`;
  const context = typeof record.requestContext === 'object' && record.requestContext !== null ? record.requestContext : undefined;
  const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  return {
    shardId,
    startSequenceNumber: start,
    endSequenceNumber: end,
    batchSize,
    streamArn,
    streamName,
    ...(text(context?.condition) !== undefined ? { condition: text(context?.condition) } : {}),
    ...(text(context?.functionArn) !== undefined ? { functionArn: text(context?.functionArn) } : {}),
    ...(text(info.approximateArrivalOfFirstRecord) !== undefined ? { approximateArrivalOfFirstRecord: text(info.approximateArrivalOfFirstRecord) } : {}),
  };
}

/** A value of a message, for a reason: short, and JSON so that what it is shows (a number, a string, missing). */
function describe(value: unknown): string {
  if (value === undefined) return 'is missing:';
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 60 ? `${json.slice(0, 57)}…` : json;
}

/** What the stream still holds of a batch's range. */
export type RangeRead =
  /** Every record from the start to the end sequence number. */
  | { readonly kind: 'complete'; readonly records: _Record[] }
  /**
   * The stream's retention removed the start of the range (or the whole of it, or the shard): `records` is what is left,
   * and `lost` how many of the batch's Kinesis records are gone (batchSize less those found; with KPL aggregation one
   * record can hold several events).
   */
  | { readonly kind: 'trimmed'; readonly records: _Record[]; readonly lost: number; readonly why: string }
  /** The range is not where the record says (the shard ends, or the stream's tip is reached, before its end). */
  | { readonly kind: 'incomplete'; readonly records: _Record[]; readonly why: string };

export interface RangeReadOptions {
  /** Names the stream and its endpoint in errors (errors.ts). */
  readonly context: FailureContext;
  /** Calls per GetShardIterator or GetRecords while Kinesis throttles (past the SDK's own retries). @default 6 */
  readonly attempts?: number;
  /** Called before the first call and every 20 GetRecords calls (the command keeps its message hidden). */
  readonly heartbeat?: () => Promise<void>;
  /** @default the CLI's sleep */
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * Least time between two GetRecords calls: a shard serves five a second to every reader together, and the pipeline's
 * Firehose streams read it too, so the redrive takes one.
 */
const READ_CALL_GAP_MS = 1000;
/** GetRecords calls per range before it counts as not found. */
const MAX_READ_CALLS = 1000;
/** Consecutive empty pages before the range's first record that send the read to the shard's trim horizon. */
const EMPTY_PAGES_BEFORE_TRIM_CHECK = 5;

/**
 * After a read over 2 MiB Kinesis throttles the shard's next calls for about five seconds: a throttled GetRecords waits
 * at least that long before it is made again.
 */
const READ_THROTTLE_PAUSE_MS = 5_000;

/** Kinesis's answers to slow down (GetRecords: 5 calls and 2 MiB a second per shard; GetShardIterator: 5 a second). */
const KINESIS_THROTTLING = new Set(['ProvisionedThroughputExceededException', 'LimitExceededException', 'ThrottlingException', 'KMSThrottlingException']);

/**
 * Reads a batch's range from its shard: GetShardIterator AT_SEQUENCE_NUMBER its start, then GetRecords until past its
 * end sequence number. What Kinesis does with a start its retention removed is not documented for AT_SEQUENCE_NUMBER
 * (readers report InvalidArgumentException, or empty pages far behind the tip), so either sends the read to a
 * TRIM_HORIZON iterator, which is documented to start at the shard's oldest record: a first record after the start then
 * means the start is gone. Throttling is waited out (backoff, at least five seconds for a throttled read, then the
 * reason as errors.ts says it); any other failure of the calls is thrown explained.
 */
export async function readBatchRange(kinesis: KinesisClient, batch: FailedBatch, options: RangeReadOptions): Promise<RangeRead> {
  const pause = options.sleep ?? defaultSleep;
  const attempts = options.attempts ?? 6;
  const heartbeat = options.heartbeat ?? (async () => undefined);
  const start = BigInt(batch.startSequenceNumber);
  const end = BigInt(batch.endSequenceNumber);
  const context = { ...options.context, resource: `${batch.shardId} of stream ${batch.streamName}` };
  const call = async <T>(send: () => Promise<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await send();
      } catch (err) {
        const name = (err as { name?: string } | null)?.name ?? '';
        if (!KINESIS_THROTTLING.has(name) || attempt + 1 >= attempts) throw err;
        await pause(name === 'ProvisionedThroughputExceededException' ? READ_THROTTLE_PAUSE_MS + backoffDelay(attempt) : backoffDelay(attempt));
      }
    }
  };
  const trimmedBefore = (found: _Record[], why: string): RangeRead => ({ kind: 'trimmed', records: found, lost: Math.max(0, batch.batchSize - found.length), why });

  /** An iterator at the shard's oldest record, at the range's start, or after `sequenceNumber` (throttling waited out). */
  const shardIterator = async (position: 'TRIM_HORIZON' | 'AT_SEQUENCE_NUMBER' | 'AFTER_SEQUENCE_NUMBER', sequenceNumber = batch.startSequenceNumber) =>
    (await call(() => kinesis.send(new GetShardIteratorCommand({
      StreamName: batch.streamName, ShardId: batch.shardId, ShardIteratorType: position,
      ...(position === 'TRIM_HORIZON' ? {} : { StartingSequenceNumber: sequenceNumber }),
    })))).ShardIterator;
  /** The same, any failure thrown explained. */
  const iteratorAt = async (position: 'TRIM_HORIZON' | 'AT_SEQUENCE_NUMBER' | 'AFTER_SEQUENCE_NUMBER', sequenceNumber?: string): Promise<string | undefined> => {
    try {
      return await shardIterator(position, sequenceNumber);
    } catch (err) {
      throw explainFailure(err, context);
    }
  };
  await heartbeat();
  let iterator: string | undefined;
  /** Why Kinesis refused the start, while the trim horizon tells whether the retention is the cause. */
  let refused: string | undefined;
  /** Reading from the shard's oldest record (TRIM_HORIZON) rather than from the range's start. */
  let fromTrimHorizon = false;
  /** The trim horizon was looked at once: it is not looked at again. */
  let trimChecked = false;
  try {
    iterator = await shardIterator('AT_SEQUENCE_NUMBER');
  } catch (err) {
    const e = err as { name?: string; message?: string };
    // A shard past the retention after a reshard is gone with its records; a stream itself missing is the run's problem.
    if (e.name === 'ResourceNotFoundException' && /shard/i.test(e.message ?? '') && !/stream .* not found/i.test(e.message ?? '')) {
      return trimmedBefore([], `the stream no longer has ${batch.shardId} (${e.message ?? e.name}): its records are past the stream's retention`);
    }
    if (e.name !== 'InvalidArgumentException') throw explainFailure(err, context);
    refused = `Kinesis refused the range's start on ${batch.shardId} (${e.name}: ${e.message ?? ''})`;
    fromTrimHorizon = trimChecked = true;
    iterator = await iteratorAt('TRIM_HORIZON');
  }
  const found: _Record[] = [];
  let first = true;
  /** Why the range's first records are gone, once the stream's oldest record is found to come after its start. */
  let trimmed: string | undefined;
  const ended = (): RangeRead => (trimmed !== undefined ? trimmedBefore(found, trimmed) : { kind: 'complete', records: found });
  let emptyPages = 0;
  for (let calls = 0; calls < MAX_READ_CALLS; calls++) {
    if (calls > 0 && calls % 20 === 0) await heartbeat();
    if (iterator === undefined) {
      return first ? trimmedBefore(found, `${batch.shardId} is closed and holds none of the range any more: it is past the stream's retention`)
        : { kind: 'incomplete', records: found, why: `${batch.shardId} ends before the range's end sequence number ${batch.endSequenceNumber}` };
    }
    if (calls > 0) await pause(READ_CALL_GAP_MS);
    let answer;
    try {
      const current: string = iterator;
      // The range holds batchSize records: a larger page only spends the shard's 2 MiB a second.
      answer = await call(() => kinesis.send(new GetRecordsCommand({ ShardIterator: current, Limit: Math.min(10_000, batch.batchSize) })));
    } catch (err) {
      if ((err as { name?: string } | null)?.name !== 'ExpiredIteratorException') throw explainFailure(err, context);
      // Five minutes passed between calls (throttled a long time): on from the last record read.
      const last = found.at(-1)?.SequenceNumber;
      iterator = await (last !== undefined ? iteratorAt('AFTER_SEQUENCE_NUMBER', last) : iteratorAt(fromTrimHorizon ? 'TRIM_HORIZON' : 'AT_SEQUENCE_NUMBER'));
      continue;
    }
    const records = answer.Records ?? [];
    /** The trim horizon came before the start after empty pages: the start is there, and is read from again. */
    let backToStart = false;
    for (const record of records) {
      const at = BigInt(record.SequenceNumber ?? '0');
      if (first) {
        if (refused !== undefined && at <= start) return { kind: 'incomplete', records: [], why: refused };
        if (fromTrimHorizon && at < start) {
          backToStart = true;
          break;
        }
        first = false;
        if (at > end) return trimmedBefore(found, `the stream's oldest record on ${batch.shardId} comes after the range: the range is past the stream's retention`);
        // What is left of the range is still read (and redriven); the outcome says what is lost.
        if (at > start) trimmed = `the stream's oldest record on ${batch.shardId} comes after the range's start: its first records are past the stream's retention`;
      }
      if (at > end) return ended();
      if (at >= start) found.push(record);
      if (at === end) return ended();
    }
    if (backToStart) {
      // Rather than read the shard from its oldest record up to the start.
      fromTrimHorizon = false;
      iterator = await iteratorAt('AT_SEQUENCE_NUMBER');
      continue;
    }
    iterator = answer.NextShardIterator ?? undefined;
    emptyPages = records.length === 0 && first ? emptyPages + 1 : 0;
    if (!trimChecked && emptyPages >= EMPTY_PAGES_BEFORE_TRIM_CHECK && (answer.MillisBehindLatest ?? 0) > 0) {
      // Empty pages behind the tip where the range's start should be: the start may be gone; the oldest record tells.
      fromTrimHorizon = trimChecked = true;
      iterator = await iteratorAt('TRIM_HORIZON');
      continue;
    }
    // At the tip with the end not seen: no later record will bring it.
    if (records.length === 0 && answer.MillisBehindLatest === 0) {
      return first ? trimmedBefore(found, `${batch.shardId} holds none of the range any more: it is past the stream's retention`)
        : { kind: 'incomplete', records: found, why: `${batch.shardId} holds no record ${batch.endSequenceNumber} (the range's end): read to the stream's tip` };
    }
  }
  return { kind: 'incomplete', records: found, why: `the range's end was not reached in ${MAX_READ_CALLS} GetRecords calls` };
}

/** A function's answer to one invocation: `functionError` as Lambda's X-Amz-Function-Error says it (Unhandled, Handled). */
export interface InvocationAnswer {
  readonly functionError?: string;
  /** The parsed response payload (a batch response, or the error Lambda reports). */
  readonly payload: unknown;
}

export type ConsumerInvoker = (event: KinesisStreamEvent) => Promise<InvocationAnswer>;

/** What redriving a range's records came to. */
export type RedriveResult =
  | { readonly ok: true; readonly invocations: number }
  | { readonly ok: false; readonly invocations: number; readonly why: string; /** Records of the range the consumer took. */ readonly recorded: number };

/**
 * Consecutive records in events under Lambda's 6 MB payload limit (a range Lambda read fitted one). Each record counts
 * as the bytes it adds to the serialized event `eventOf` builds (partition keys, ARNs and escapes vary too much for an
 * estimate), so no slice's event is over `maxBytes`.
 */
export function eventSlices(records: readonly _Record[], eventOf: (records: _Record[]) => KinesisStreamEvent, maxBytes = MAX_EVENT_BYTES): _Record[][] {
  const serializedBytes = (rs: _Record[]) => Buffer.byteLength(JSON.stringify(eventOf(rs)), 'utf8');
  const envelope = serializedBytes([]);
  // A record's own bytes, and the comma that separates it from the one before.
  return sizedSlices(records, Number.POSITIVE_INFINITY, maxBytes - envelope, (record) => serializedBytes([record]) - envelope + 1);
}

export interface RedriveOptions {
  readonly region: string;
  /** Invocations per slice of records before the consumer counts as failing still. */
  readonly attempts: number;
  /** Pause before invoking again (for backoffDelay(attempt) ms). @default the CLI's sleep */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Called before each invocation (the command keeps its message hidden for as long as one can take). */
  readonly heartbeat?: () => Promise<void>;
}

/**
 * Invokes the consumer with the range's records in the event source mapping's shape, slice by slice in sequence order,
 * honouring its partial batch response as Lambda does: the records before the lowest one it reports are done, and the
 * invocation is made again from there; a function error (or an answer Lambda would read as one) retries the slice.
 */
export async function redriveRecords(invoke: ConsumerInvoker, batch: FailedBatch, records: readonly _Record[], options: RedriveOptions): Promise<RedriveResult> {
  const pause = options.sleep ?? defaultSleep;
  let invocations = 0;
  let recorded = 0;
  let lastWhy = '';
  const eventOf = (rs: _Record[]) => kinesisStreamEvent({
    shardId: batch.shardId,
    records: rs,
    streamArn: batch.streamArn,
    region: options.region,
    // Lambda names the function's execution role, which the redrive does not know; the consumer reads neither.
    invokeIdentityArn: batch.functionArn ?? '',
  });
  for (const slice of eventSlices(records, eventOf)) {
    let left = slice;
    for (let attempt = 0; left.length > 0; attempt++) {
      if (attempt >= options.attempts) {
        return { ok: false, invocations, recorded, why: lastWhy };
      }
      if (attempt > 0) await pause(backoffDelay(attempt - 1));
      const event = eventOf(left);
      await options.heartbeat?.();
      invocations++;
      const answer = await invoke(event);
      if (answer.functionError !== undefined) {
        lastWhy = `the consumer failed (${answer.functionError}${errorMessageOf(answer.payload)})`;
        continue;
      }
      const outcome = batchResponseOutcome(left.map((r) => r.SequenceNumber as string), answer.payload);
      if (outcome.kind === 'ok') {
        recorded += left.length;
        left = [];
      } else if (outcome.kind === 'partial') {
        recorded += outcome.succeeded;
        lastWhy = `the consumer reported ${left.length - outcome.succeeded} of ${left.length} records for retry (from ${left[outcome.succeeded].SequenceNumber as string})`;
        left = left.slice(outcome.succeeded);
        // Progress made: the attempts start again only when none is.
        if (outcome.succeeded > 0) attempt = -1;
      } else {
        lastWhy = `the consumer's batchItemFailures ${outcome.why}, which Lambda reads as a failure of the whole batch`;
      }
    }
  }
  return { ok: true, invocations };
}

/** ": <errorMessage>" of the error payload Lambda returns for a function error, when it has one. */
function errorMessageOf(payload: unknown): string {
  const p = payload as { errorType?: unknown; errorMessage?: unknown } | null;
  if (typeof p !== 'object' || p === null) return '';
  const type = typeof p.errorType === 'string' ? `${p.errorType}: ` : '';
  return typeof p.errorMessage === 'string' ? `: ${type}${p.errorMessage.slice(0, 300)}` : '';
}
