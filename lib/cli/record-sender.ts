/**
 * Sends records through a pipeline's real entry point — Firehose PutRecord/PutRecordBatch for a
 * DirectPut pipeline, Kinesis PutRecords otherwise — within the APIs' limits, and retries the
 * records a call failed (throttling, service errors) with capped exponential backoff and full jitter.
 */
import { FirehoseClient, PutRecordBatchCommand, PutRecordCommand } from '@aws-sdk/client-firehose';
import { KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { explainFailure, networkErrorCode, type FailureContext } from './errors';
import { sleep } from './sleep';
import { backoffDelay, sizedSlices } from '../../transforms/shared/retry';

export interface OutgoingRecord {
  readonly data: Buffer;
  /** Kinesis partition key (ignored by Firehose). */
  readonly partitionKey: string;
}

export type RecordOutcome = { readonly ok: true } | { readonly ok: false; readonly errorCode: string; readonly errorMessage: string };

export interface ApiLimits {
  readonly maxRecords: number;
  readonly maxBatchBytes: number;
  readonly maxRecordBytes: number;
  /** Kinesis counts the partition key towards both record and batch size. */
  readonly countsPartitionKey: boolean;
}

/** Firehose API reference: 500 records, 4 MiB per PutRecordBatch, 1,000 KiB per record. */
export const FIREHOSE_API_LIMITS: ApiLimits = { maxRecords: 500, maxBatchBytes: 4 * 1024 * 1024, maxRecordBytes: 1_024_000, countsPartitionKey: false };
/** Kinesis API reference: 500 records, 5 MiB per PutRecords (partition keys included), 1 MiB per record. */
export const KINESIS_API_LIMITS: ApiLimits = { maxRecords: 500, maxBatchBytes: 5 * 1024 * 1024, maxRecordBytes: 1024 * 1024, countsPartitionKey: true };

/** One pipeline's entry point: one API call per batch, one outcome per record. */
export interface EntryPoint {
  readonly kind: 'firehose' | 'kinesis';
  /** Delivery stream or stream name. */
  readonly name: string;
  readonly limits: ApiLimits;
  /** For messages: "Firehose delivery stream sluice-dev-app-events-lake". */
  readonly description: string;
  /** How to reach and explain failures of the endpoint. */
  readonly failureContext: FailureContext;
  /** One API call; `attempt` is 1 for a record's first send. */
  putBatch(records: readonly OutgoingRecord[], attempt: number): Promise<RecordOutcome[]>;
  close(): void;
}

/**
 * The outcome of a record whose call was cut off after it was sent (the connection reset or timed out with no
 * answer): the stream may have taken it. Sent again after an outage (nothing is lost), reported as such otherwise.
 */
export const MAYBE_TAKEN = 'MaybeTaken';

/** The outcome of a record no call carried: the run stopped (a call failed for good) before its call went out. */
export const NOT_SENT = 'NotSent';

/** Connection failures that happen before a request is sent: its records surely did not arrive. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

interface SendContext {
  sluiceMaybeSent?: boolean;
}

/**
 * Whether an attempt that failed with `err` may have reached the stream: not when it never connected, nor when
 * the server answered with an error status (it refused). The deserializer gives what it throws the response's
 * status, a success's whose body was cut off too (that one may have been taken).
 */
export function attemptMaybeSent(err: unknown): boolean {
  const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 300) return false;
  if (NOT_SENT_CODES.has(networkErrorCode(err) ?? '')) return false;
  // The HTTP handler's connection timeout (TimeoutError without a socket code).
  return !/did not establish a connection/.test((err as { message?: unknown } | null)?.message as string ?? '');
}

/**
 * Marks the error of a call one of whose attempts was cut off after it was sent (`$maybeSent`): the SDK retries
 * such an attempt itself, and its last attempt's error (say ECONNREFUSED, the endpoint gone by then) would
 * otherwise say the records never arrived. An attempt the server answered with an error status is not cut off; one
 * answered with a success whose body was cut off is (the stream took the call).
 */
function trackCallsCutOff(client: FirehoseClient | KinesisClient): void {
  type Middleware = (next: (args: unknown) => Promise<unknown>, context: SendContext) => (args: unknown) => Promise<unknown>;
  const stack = client.middlewareStack as unknown as {
    add(middleware: Middleware, options: { step: string; name: string }): void;
    addRelativeTo(middleware: Middleware, options: { relation: 'before' | 'after'; toMiddleware: string; name: string }): void;
  };
  // Around each attempt (the retry middleware runs in finalizeRequest, around deserialize), and around its
  // deserializer: the errors of an answer (its status, or its body cut off) are thrown there, not by the request.
  stack.addRelativeTo((next, context) => async (args) => {
    try {
      return await next(args);
    } catch (err) {
      if (attemptMaybeSent(err)) context.sluiceMaybeSent = true;
      throw err;
    }
  }, { relation: 'before', toMiddleware: 'deserializerMiddleware', name: 'sluiceAttemptCutOff' });
  // Around the whole call, retries included.
  stack.add((next, context) => async (args) => {
    try {
      return await next(args);
    } catch (err) {
      if (context.sluiceMaybeSent && err !== null && typeof err === 'object') (err as { $maybeSent?: boolean }).$maybeSent = true;
      throw err;
    }
  }, { step: 'initialize', name: 'sluiceCallCutOff' });
}

export function firehoseEntryPoint(client: FirehoseClient, deliveryStream: string, failureContext: Omit<FailureContext, 'resource'>): EntryPoint {
  trackCallsCutOff(client);
  const description = `Firehose delivery stream ${deliveryStream}`;
  return {
    kind: 'firehose',
    name: deliveryStream,
    limits: FIREHOSE_API_LIMITS,
    description,
    failureContext: { ...failureContext, resource: description },
    async putBatch(records, attempt) {
      if (records.length === 1 && attempt === 1) {
        // PutRecord for a single record, as a producer sending one event would; it fails as a whole.
        // Retries go through PutRecordBatch, whose answer is per record.
        try {
          await client.send(new PutRecordCommand({ DeliveryStreamName: deliveryStream, Record: { Data: records[0].data } }));
          return [{ ok: true }];
        } catch (err) {
          const retryable = retryableCallError(err);
          if (retryable) return [retryable];
          throw err;
        }
      }
      const response = await client.send(new PutRecordBatchCommand({ DeliveryStreamName: deliveryStream, Records: records.map((r) => ({ Data: r.data })) }));
      return (response.RequestResponses ?? []).map((r): RecordOutcome =>
        r.ErrorCode ? { ok: false, errorCode: r.ErrorCode, errorMessage: r.ErrorMessage ?? '' } : { ok: true });
    },
    close: () => client.destroy(),
  };
}

export function kinesisEntryPoint(client: KinesisClient, stream: string, failureContext: Omit<FailureContext, 'resource'>): EntryPoint {
  trackCallsCutOff(client);
  const description = `Kinesis stream ${stream}`;
  return {
    kind: 'kinesis',
    name: stream,
    limits: KINESIS_API_LIMITS,
    description,
    failureContext: { ...failureContext, resource: description },
    async putBatch(records) {
      const response = await client.send(new PutRecordsCommand({
        StreamName: stream,
        Records: records.map((r) => ({ Data: r.data, PartitionKey: r.partitionKey })),
      }));
      return (response.Records ?? []).map((r): RecordOutcome =>
        r.ErrorCode ? { ok: false, errorCode: r.ErrorCode, errorMessage: r.ErrorMessage ?? '' } : { ok: true });
    },
    close: () => client.destroy(),
  };
}

/** Call-level errors that mean "slow down or try again", after the SDK's own retries gave up. */
const RETRYABLE_CALL_ERRORS = new Set([
  'ServiceUnavailableException', 'ThrottlingException', 'ProvisionedThroughputExceededException', 'LimitExceededException', 'KMSThrottlingException',
  'InternalFailure', 'InternalServerError', 'RequestTimeout', 'TimeoutError',
]);

/** Per-record codes that no retry fixes (the stream's KMS key is unusable, the record is too big). */
const PERMANENT_RECORD_ERRORS = new Set([
  'KMSDisabledException', 'KMSInvalidStateException', 'KMSAccessDeniedException', 'KMSNotFoundException',
  'KMSOptInRequired', 'InvalidKMSResourceException', 'RecordTooLarge',
]);

/** Whether a record that failed with this code was given up on at once (no retry fixes it). */
export function isPermanentRecordError(errorCode: string): boolean {
  return PERMANENT_RECORD_ERRORS.has(errorCode);
}

function retryableCallError(err: unknown): RecordOutcome | undefined {
  const e = err as { name?: string; message?: string; $retryable?: unknown };
  if (e && (RETRYABLE_CALL_ERRORS.has(e.name ?? '') || e.$retryable)) {
    return { ok: false, errorCode: e.name ?? 'Error', errorMessage: e.message ?? '' };
  }
  return undefined;
}

export interface RetryOptions {
  /** Attempts per record, the first included. @default 8 */
  readonly maxAttempts?: number;
  /** @default 100 */
  readonly baseDelayMs?: number;
  /** @default 5000 */
  readonly maxDelayMs?: number;
  /** Told before each backoff: how many records are retried, and why. */
  readonly onRetry?: (info: { attempt: number; records: number; errorCodes: Record<string, number>; delayMs: number }) => void;
  /**
   * Told, before the error is thrown, when a call fails in a way no retry fixes (the endpoint stopped
   * answering, access denied): the outcomes so far, records accepted before it included. Records not
   * settled carry that error (its socket code, such as ECONNREFUSED, when there is one).
   */
  readonly onStopped?: (settled: SendResult, error: unknown) => void;
  /** Replaced in tests. */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
}

export interface SendResult {
  /** One outcome per input record, in input order: the last attempt's. */
  readonly outcomes: RecordOutcome[];
  /** Records sent again after a failed attempt (a record retried twice counts twice). */
  readonly retries: number;
  readonly calls: number;
}

function recordBytes(record: OutgoingRecord, limits: ApiLimits): number {
  return record.data.length + (limits.countsPartitionKey ? Buffer.byteLength(record.partitionKey, 'utf8') : 0);
}

/** Splits record indexes into batches within the API's count and size limits, in order. */
export function planBatches(records: readonly OutgoingRecord[], indexes: readonly number[], limits: ApiLimits): number[][] {
  return sizedSlices(indexes, limits.maxRecords, limits.maxBatchBytes, (i) => recordBytes(records[i], limits));
}

/**
 * Sends every record, retrying the ones that fail until they are accepted or `maxAttempts` is spent.
 * A call-level error that is not "try again" (no such stream, access denied, nothing listening) is
 * thrown, explained for the user.
 */
export async function sendRecords(entry: EntryPoint, records: readonly OutgoingRecord[], options: RetryOptions = {}): Promise<SendResult> {
  const maxAttempts = options.maxAttempts ?? 8;
  const baseDelayMs = options.baseDelayMs ?? 100;
  const maxDelayMs = options.maxDelayMs ?? 5000;
  const wait = options.sleep ?? sleep;
  const random = options.random ?? Math.random;
  const outcomes: RecordOutcome[] = records.map(() => ({ ok: false, errorCode: NOT_SENT, errorMessage: 'no call carried it: the run stopped before its call went out' }));
  let pending: number[] = [];
  records.forEach((record, i) => {
    if (recordBytes(record, entry.limits) > entry.limits.maxRecordBytes) {
      outcomes[i] = {
        ok: false,
        errorCode: 'RecordTooLarge',
        errorMessage: `${record.data.length} bytes; ${entry.kind === 'firehose' ? 'Firehose' : 'Kinesis'} takes at most ${entry.limits.maxRecordBytes} per record`,
      };
    } else {
      pending.push(i);
    }
  });
  let retries = 0;
  let calls = 0;
  // Records of a call cut off after it was sent (a request timeout the run retries, too): the stream may have taken them.
  const cutOff = new Set<number>();
  // Records some call carried: the others, when a call fails for good, were never sent (NOT_SENT).
  const carried = new Set<number>();
  for (let attempt = 1; pending.length > 0; attempt++) {
    const failed: number[] = [];
    for (const batch of planBatches(records, pending, entry.limits)) {
      calls++;
      for (const i of batch) carried.add(i);
      let results: RecordOutcome[];
      try {
        results = await entry.putBatch(batch.map((i) => records[i]), attempt);
      } catch (err) {
        if ((err as { $maybeSent?: boolean }).$maybeSent) for (const i of batch) cutOff.add(i);
        const retryable = retryableCallError(err);
        if (!retryable) {
          if (options.onStopped) {
            const e = err as { name?: string; message?: string };
            const stopped: RecordOutcome = { ok: false, errorCode: networkErrorCode(err) ?? e.name ?? 'Error', errorMessage: e.message ?? String(err) };
            // This attempt's records not accepted would have been sent (again); they never will be now. Those of this
            // call, when it was cut off after it was sent, may have been taken; those no call carried stay NOT_SENT.
            const maybeTaken = maybeTakenOutcome(stopped.errorCode);
            for (const i of pending) {
              const o = outcomes[i];
              if (!o.ok && !isPermanentRecordError(o.errorCode) && carried.has(i)) outcomes[i] = cutOff.has(i) ? maybeTaken : stopped;
            }
            options.onStopped({ outcomes, retries, calls }, err);
          }
          throw explainFailure(err, entry.failureContext);
        }
        results = batch.map(() => retryable);
      }
      batch.forEach((recordIndex, k) => {
        const result = results[k] ?? { ok: false, errorCode: 'MissingResponse', errorMessage: 'the response had no entry for this record' };
        outcomes[recordIndex] = result;
        if (!result.ok && !isPermanentRecordError(result.errorCode)) failed.push(recordIndex);
      });
    }
    if (failed.length === 0 || attempt >= maxAttempts) break;
    const delayMs = backoffDelay(attempt - 1, { baseMs: baseDelayMs, capMs: maxDelayMs }, random);
    const errorCodes: Record<string, number> = {};
    for (const i of failed) {
      const o = outcomes[i];
      if (!o.ok) errorCodes[o.errorCode] = (errorCodes[o.errorCode] ?? 0) + 1;
    }
    options.onRetry?.({ attempt, records: failed.length, errorCodes, delayMs });
    await wait(delayMs);
    retries += failed.length;
    pending = failed;
  }
  // Attempts spent: a record whose call was cut off after it was sent may be in the stream, whatever came after.
  for (const i of cutOff) {
    const o = outcomes[i];
    if (!o.ok && !isPermanentRecordError(o.errorCode)) outcomes[i] = maybeTakenOutcome(`${o.errorCode} until the attempts ran out`);
  }
  return { outcomes, retries, calls };
}

/** The outcome of a record whose call was cut off after it was sent, `then` what the attempts after it met. */
function maybeTakenOutcome(then: string): RecordOutcome {
  return { ok: false, errorCode: MAYBE_TAKEN, errorMessage: `the call that carried it was cut off after it was sent (then ${then}): the stream may have taken it` };
}

/** "ProvisionedThroughputExceededException ×3, InternalFailure ×1" */
export function summarizeFailures(outcomes: readonly RecordOutcome[]): Record<string, number> {
  const byCode: Record<string, number> = {};
  for (const o of outcomes) if (!o.ok) byCode[o.errorCode] = (byCode[o.errorCode] ?? 0) + 1;
  return byCode;
}
