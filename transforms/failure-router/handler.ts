/**
 * Failure router: S3 ObjectCreated on the error prefixes → one SQS dead-letter message per failed
 * record, with the reason recomputed by the validator, sent in batches.
 *
 * The object is read as it arrives, a window of messages at a time: memory holds the window (at
 * most `markEvery` messages or `windowBytes` of bodies), a chunk and the line being read (at most
 * `maxLineBytes`: a longer line is skipped and sent as a pointer), never the object, which can be far
 * larger than the function's memory.
 *
 * At-least-once under redelivered S3 events, in the order check → send → mark, window by window:
 * the records' dedupe keys (from bucket, key and line) are looked up in a ledger, records not marked
 * there are sent, and only the keys SQS accepted are then marked. Whatever stops an invocation before
 * its marks are written (a message SQS keeps refusing, a ledger error, an object that cannot be read
 * to its end, a timeout or crash) leaves those records unmarked, and Lambda's retry of the event sends
 * them (S3 invokes the router asynchronously: Lambda retries twice, then hands the event to the stack's
 * RouterFailedEventsUrl queue for an operator to redrive, docs/deploy.md): no record is lost. The
 * price is a rare duplicate: a record whose message was accepted but not yet marked when the
 * invocation died or its marking failed is sent again (keys are marked after every window, so at
 * most `markEvery` per object). FIFO queues drop it (MessageDeduplicationId is the dedupe key, within
 * SQS's five-minute window); on a standard queue the `dedupeKey` in the body tells it apart, and
 * `sluice replay` re-puts a record once per dedupe key.
 */
import type { S3Event } from 'aws-lambda';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { SQS_MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES } from '../shared/limits';
import { pipelineSchema } from '../shared/pipeline';
import { failureReason } from '../shared/record';
import { backoffDelay, requestTimeouts, sizedSlices, sleep } from '../shared/retry';
import { createTelemetry, errorMessage, publishCounts, type Logger, type Metrics } from '../shared/telemetry';
import { FAILURE_ROUTER_SERVICE, UNROUTED_METRICS } from '../shared/metric-names';
import { toSqsBody } from '../shared/sqs-body';
import {
  decodeS3Key, locateErrorObject, MAX_ERROR_LINE_BYTES, ObjectChangedError, OPENSEARCH_FAILED, readPinnedErrorObject,
  type ErrorLine, type ErrorObjectLocation, type ErrorObjectReading, type ObjectReader, type OverlongLine,
} from './error-records';
import { dedupeKeyOf } from './dedupe-key';
import { createSentLedger } from './sent-ledger';

export { dedupeKeyOf } from './dedupe-key';
export {
  decodeS3Key, locateErrorObject, MAX_ERROR_LINE_BYTES, parseErrorLines,
  type ObjectBody, type ObjectPin, type ObjectRead, type ObjectReader,
} from './error-records';

/** The errorCode of a pointer message for an error line longer than the router reads (maxLineBytes). */
export const OVERLONG_LINE_ERROR_CODE = 'Sluice.ErrorLineTooLong';

export interface S3LineLocation {
  readonly bucket: string;
  readonly key: string;
  /** 1-based line of the error object. */
  readonly line: number;
}

/** The body of one dead-letter message (JSON). */
export interface DlqMessage {
  /** sha256 of `s3://<bucket>/<key>#<line>`, hex: the same failed record always gets the same key, so a message sent twice can be told apart. */
  readonly dedupeKey: string;
  readonly pipeline: string;
  /** processing-failed, format-conversion-failed, AmazonOpenSearchService-failed, … */
  readonly errorType: string;
  readonly errorCode: string;
  readonly errorMessage: string;
  /** Why the record failed, recomputed from its bytes where they are the producer's (processing-failed). */
  readonly reason: string;
  /** Base64 of the record as Firehose wrote it; absent when the message carries a pointer instead. */
  readonly rawData?: string;
  /** Where to read the record when it was too large for an SQS message. */
  readonly pointer?: S3LineLocation;
  readonly source: S3LineLocation;
  readonly attemptsMade: number;
  /** Epoch ms when Firehose first received the record. */
  readonly arrivalTimestamp: number;
}

export interface FailureRouterOptions {
  /**
   * The object's bytes, whole or in chunks as they arrive (an S3 GetObject body: never held whole), and its ETag; undefined
   * when it no longer exists (deleted since the event: nothing to route). Called a second time for a gzip object given in
   * chunks: its data is checked to its end before any of its lines is routed (error-records.ts, readErrorObject). Both
   * reads are pinned to the event's versionId when it has one; otherwise the second is pinned to the first's ETag, and
   * must throw S3's PreconditionFailed (HTTP 412) when the object no longer has it (replaced since).
   */
  readonly readObject: ObjectReader;
  /** Sends up to 10 messages (one SQS batch); answers the dedupe keys that were not accepted. */
  send(messages: DlqMessage[]): Promise<{ failedIds: string[] }>;
  /**
   * The dedupe keys among `dedupeKeys` (one window's) that `markSent` marked before: their messages are not sent again.
   * Throws when it cannot tell; nothing more of that object is sent then, and the invocation fails.
   */
  alreadySent(dedupeKeys: readonly string[]): Promise<Set<string>>;
  /**
   * Marks dedupe keys whose messages SQS accepted; called after every window is sent. Throws unless every
   * mark was written: the invocation then fails, and its retry sends the unmarked messages again.
   */
  markSent(dedupeKeys: readonly string[]): Promise<void>;
  /**
   * Told of each object routed whole — every line read, none unreadable, every message sent or found sent before —
   * with the version read (as its dedupe keys name it) and its last line: the twin marks it so that a start reads it
   * no more. A failure fails the invocation, as a failed send does.
   */
  routedWhole?(object: { readonly bucket: string; readonly key: string; readonly version: string; readonly lines: number }): Promise<void>;
  /**
   * Messages in a window: read, checked, sent and marked together before more of the object is read. At most this many
   * are sent twice when an invocation dies. @default 250
   */
  readonly markEvery?: number;
  /** Message bodies in a window, bytes: a window of large messages ends at this size. @default 4 × maxBatchBytes (1 MiB) */
  readonly windowBytes?: number;
  /**
   * Longest error line read, bytes. A longer one is never held whole: it is skipped as it streams and sent as a pointer
   * (errorCode OVERLONG_LINE_ERROR_CODE) for a person to look at. @default MAX_ERROR_LINE_BYTES (8 MiB)
   */
  readonly maxLineBytes?: number;
  /** Largest message body, bytes; a record that does not fit goes as a pointer. @default 262144 (SQS) */
  readonly maxMessageBytes?: number;
  /** Largest batch (sum of bodies), bytes. @default maxMessageBytes (SQS caps a SendMessageBatch at the message size) */
  readonly maxBatchBytes?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
}

export interface RouteResult {
  /** Messages sent (pointers included). */
  readonly sent: number;
  /** Records skipped because their dedupe key was already marked sent. */
  readonly duplicates: number;
  /** Messages sent as pointers. */
  readonly pointers: number;
  /** Lines that are not error records (not JSON, no rawData): not sent, they stay in S3 only. */
  readonly unreadableLines: number;
  /** Objects whose gzip data is damaged or cut off: what follows the damage stays in S3 only. */
  readonly damagedObjects: number;
}

export type FailureRouter = (event: S3Event) => Promise<RouteResult>;

/** Send attempts for a message before it counts as failed. */
const SEND_ATTEMPTS = 5;

export function createFailureRouter(options: FailureRouterOptions): FailureRouter {
  const maxMessageBytes = options.maxMessageBytes ?? SQS_MAX_MESSAGE_BYTES;
  const maxBatchBytes = options.maxBatchBytes ?? maxMessageBytes;
  const markEvery = options.markEvery ?? 250;
  if (!(Number.isInteger(markEvery) && markEvery > 0)) throw new Error(`markEvery must be a positive integer, got ${markEvery}`);
  const windowBytes = options.windowBytes ?? 4 * maxBatchBytes;
  if (!(windowBytes > 0)) throw new Error(`windowBytes must be positive, got ${windowBytes}`);
  const maxLineBytes = options.maxLineBytes ?? MAX_ERROR_LINE_BYTES;
  if (!(Number.isInteger(maxLineBytes) && maxLineBytes > 0)) throw new Error(`maxLineBytes must be a positive integer, got ${maxLineBytes}`);
  const pause = options.sleep ?? sleep;
  const telemetry = createTelemetry(FAILURE_ROUTER_SERVICE, {}, options);
  const { logger } = telemetry;

  return async (event) => {
    let sent = 0;
    let duplicates = 0;
    let pointers = 0;
    let unreadable = 0;
    let overlong = 0;
    let gone = 0;
    let damagedObjects = 0;
    let rejected = 0;
    let unsent = 0;
    let unmarked = 0;
    /** Why this invocation must fail so that Lambda retries the event, one entry per object. */
    const problems: string[] = [];
    let firstCause: unknown;
    for (const record of event.Records ?? []) {
      const bucket = record.s3?.bucket?.name;
      const rawKey = record.s3?.object?.key;
      if (!record.eventName?.startsWith('ObjectCreated') || typeof bucket !== 'string' || typeof rawKey !== 'string') {
        rejected++;
        logger.warn('not an ObjectCreated event for an S3 object; ignored', { eventName: record.eventName });
        continue;
      }
      const key = decodeS3Key(rawKey);
      const where = key === undefined ? { reason: 'the key is not valid URL encoding' } : locateErrorObject(key);
      if ('reason' in where) {
        rejected++;
        logger.warn('object is not a Firehose error object; ignored', { bucket, key: key ?? rawKey, reason: where.reason });
        continue;
      }
      const object = `s3://${bucket}/${key}`;
      let reading: ErrorObjectReading | undefined;
      let readFailure: { error: unknown } | undefined;
      try {
        // A versioned bucket's event names the version created: both reads ask for it.
        reading = await readPinnedErrorObject(options.readObject, bucket, key!, { versionId: record.s3.object.versionId || undefined, maxLineBytes });
      } catch (error) {
        readFailure = { error };
      }
      if (reading === undefined && readFailure === undefined) {
        gone++;
        logger.warn('error object no longer exists; nothing to route', { bucket, key });
        continue;
      }
      if (reading?.damaged !== undefined) {
        // Permanent: another read gives the same bytes, so the whole lines before the damage are routed and the rest logged.
        damagedObjects++;
        logger.error('error object damaged; its whole lines before the damage are routed, the rest stays in S3 only', { bucket, key, problem: reading.damaged });
      }
      // The version read names the lines (not the event's eTag): an old event retried after the object was put back
      // reads the new bytes, whose lines its own event routes under the same keys.
      const version = reading?.version || record.s3.object.eTag || undefined;
      const routed = { lines: 0, sent: 0, duplicates: 0, failed: 0 };
      const unreadableBefore = unreadable;
      let lastLine = 0;
      let window: DlqMessage[] = [];
      let bytesInWindow = 0;
      /** Checks, sends and marks the window; false when the ledger failed, so nothing more of the object may be sent. */
      const routeWindow = async (): Promise<boolean> => {
        const messages = window;
        window = [];
        bytesInWindow = 0;
        if (messages.length === 0) return true;
        let marked: Set<string>;
        try {
          marked = await options.alreadySent(messages.map((m) => m.dedupeKey));
        } catch (err) {
          firstCause ??= err;
          const none = routed.lines > messages.length ? `none from line ${messages[0].source.line} on` : 'none';
          problems.push(`checking which messages of ${object} were sent before failed, so ${none} was sent (${errorMessage(err)})`);
          logger.error('could not check which dead-letter messages were sent before; none sent', { bucket, key, fromLine: messages[0].source.line, error: errorMessage(err) });
          return false;
        }
        const fresh = messages.filter((m) => !marked.has(m.dedupeKey));
        routed.duplicates += messages.length - fresh.length;
        const refused = await sendAll(fresh);
        const accepted = fresh.filter((m) => !refused.has(m.dedupeKey));
        const failed = fresh.filter((m) => refused.has(m.dedupeKey));
        routed.sent += accepted.length;
        pointers += accepted.filter((m) => m.pointer).length;
        if (failed.length > 0) {
          routed.failed += failed.length;
          logger.error('dead-letter messages could not be sent; the retried event sends them', {
            bucket, key, unsent: failed.map((m) => ({ dedupeKey: m.dedupeKey, line: m.source.line })),
          });
        }
        if (accepted.length === 0) return true;
        try {
          await options.markSent(accepted.map((m) => m.dedupeKey));
        } catch (err) {
          // Sent but unmarked: the retry sends these again (a duplicate, never a loss). Sending more now would only add to that.
          firstCause ??= err;
          unmarked += accepted.length;
          problems.push(`${accepted.length} message(s) of ${object} were sent but could not be marked sent, so the retry sends them again (${errorMessage(err)})`);
          logger.error('sent dead-letter messages could not be marked sent; the retried event sends them again', { bucket, key, messages: accepted.length, error: errorMessage(err) });
          return false;
        }
        return true;
      };

      let ledgerFailed = false;
      if (reading !== undefined) {
        try {
          for await (const line of reading.lines) {
            lastLine = line.line;
            if ('problem' in line) {
              unreadable++;
              logger.error('error line unreadable; it stays in S3 only', { bucket, key, line: line.line, problem: line.problem });
              continue;
            }
            if ('overlongBytes' in line) {
              overlong++;
              logger.error('error line longer than the router reads; sent as a pointer, not read', { bucket, key, line: line.line, bytes: line.overlongBytes, maxLineBytes });
            }
            const message = fitted('overlongBytes' in line ? pointerToOverlongLine(where, bucket, key!, version, line, maxLineBytes) : messageFor(where, bucket, key!, version, line), maxMessageBytes);
            routed.lines++;
            window.push(message);
            bytesInWindow += bodyBytes(message);
            // Leaving the loop early closes the object's stream.
            if ((window.length >= markEvery || bytesInWindow >= windowBytes) && !(await routeWindow())) {
              ledgerFailed = true;
              break;
            }
          }
        } catch (error) {
          readFailure = { error };
        }
      }
      // The lines read whole before a read error are as good as any: they are sent, and the retry skips them.
      if (!ledgerFailed) await routeWindow();
      sent += routed.sent;
      duplicates += routed.duplicates;
      if (readFailure !== undefined) {
        firstCause ??= readFailure.error;
        const unsentPart = lastLine > 0 ? `failed after line ${lastLine}, so the rest of it was not sent` : 'failed, so none of it was sent';
        problems.push(`reading ${object} ${unsentPart} (${errorMessage(readFailure.error)})`);
        // Replaced between the gzip check and the read of its lines: nothing of either version was sent, and the retry
        // reads the object as it is then, from its first line.
        const logged = readFailure.error instanceof ObjectChangedError
          ? 'error object replaced while it was read; none of it was sent, and the retried event routes it as it is then'
          : 'error object could not be read to its end; the retried event sends the rest';
        logger.error(logged, { bucket, key, afterLine: lastLine, error: errorMessage(readFailure.error) });
      }
      if (routed.failed > 0) {
        unsent += routed.failed;
        problems.push(`${routed.failed} message(s) of ${object} could not be sent after ${SEND_ATTEMPTS} attempts`);
      }
      if (reading !== undefined && reading.damaged === undefined && readFailure === undefined && !ledgerFailed && routed.failed === 0
        && unreadable === unreadableBefore && version !== undefined) {
        await options.routedWhole?.({ bucket, key: key!, version, lines: lastLine });
      }
      logger.info('error object routed', { bucket, key, pipeline: where.pipeline, errorType: where.errorType, lines: routed.lines, sent: routed.sent, duplicates: routed.duplicates, failed: routed.failed });
    }

    publishCounts(telemetry, {
      DlqMessagesSent: sent,
      DlqPointersSent: pointers,
      DlqDuplicatesSkipped: duplicates,
      DlqSendFailures: unsent,
      DlqMarkFailures: unmarked,
      [UNROUTED_METRICS.unreadableLines]: unreadable,
      [UNROUTED_METRICS.damagedObjects]: damagedObjects,
      OverlongErrorLines: overlong,
      VanishedErrorObjects: gone,
      RejectedObjects: rejected,
    });

    if (problems.length > 0) {
      throw new Error(`failure router: ${problems.join('; ')}. Failing the invocation so that the event is retried (or, once Lambda's retries are spent, kept in the router's failed-events queue for a redrive); a retry sends every message not marked sent.`, { cause: firstCause });
    }
    return { sent, duplicates, pointers, unreadableLines: unreadable, damagedObjects };
  };

  /** Sends in SQS-sized batches, retrying rejected entries; answers the keys never accepted. */
  async function sendAll(messages: readonly DlqMessage[]): Promise<Set<string>> {
    let pending = [...messages];
    for (let attempt = 0; pending.length > 0 && attempt < SEND_ATTEMPTS; attempt++) {
      if (attempt > 0) await pause(backoffDelay(attempt - 1, { baseMs: 100, capMs: 5000 }));
      const failedNow: DlqMessage[] = [];
      for (const batch of sqsBatches(pending, maxBatchBytes)) {
        let failedIds: readonly string[];
        try {
          failedIds = (await options.send(batch)).failedIds;
        } catch (err) {
          logger.warn('SendMessageBatch failed; retrying its messages', { attempt: attempt + 1, messages: batch.length, error: errorMessage(err) });
          failedIds = batch.map((m) => m.dedupeKey);
        }
        const failedSet = new Set(failedIds);
        failedNow.push(...batch.filter((m) => failedSet.has(m.dedupeKey)));
      }
      pending = failedNow;
    }
    return new Set(pending.map((m) => m.dedupeKey));
  }
}

function messageFor(where: ErrorObjectLocation, bucket: string, key: string, version: string | undefined, line: ErrorLine): DlqMessage {
  return {
    dedupeKey: dedupeKeyOf(bucket, key, line.line, version),
    pipeline: where.pipeline,
    errorType: where.errorType,
    errorCode: line.errorCode,
    errorMessage: line.errorMessage,
    reason: reasonFor(where, line),
    rawData: line.rawData,
    source: { bucket, key, line: line.line },
    attemptsMade: line.attemptsMade,
    arrivalTimestamp: line.arrivalTimestamp,
  };
}

/**
 * A line too long to read: a pointer to it, saying why. No line Firehose writes is near the cap, so this is an object
 * that is not Firehose's or is damaged; the record (if it is one) is still accounted for, and a person can find it.
 */
function pointerToOverlongLine(where: ErrorObjectLocation, bucket: string, key: string, version: string | undefined, line: OverlongLine, maxLineBytes: number): DlqMessage {
  const source = { bucket, key, line: line.line };
  const tooLong = `line ${line.line} of s3://${bucket}/${key} is ${line.overlongBytes} bytes, longer than the ${maxLineBytes} bytes the failure router reads`;
  return {
    dedupeKey: dedupeKeyOf(bucket, key, line.line, version),
    pipeline: where.pipeline,
    errorType: where.errorType,
    errorCode: OVERLONG_LINE_ERROR_CODE,
    errorMessage: tooLong,
    reason: `${tooLong}: not read. No line Firehose writes is that long (a record is at most 1,000 KiB), so the object is damaged or not `
      + 'Firehose\'s; look at the line in S3 (the pointer)',
    pointer: source,
    source,
    attemptsMade: 0,
    arrivalTimestamp: 0,
  };
}

/**
 * processing-failed records are the producer's bytes: the validator says what is wrong with them.
 * Other error types hold what the transform produced (conversion, OpenSearch), so Firehose's own
 * error is the reason.
 */
export function reasonFor(where: ErrorObjectLocation, line: Pick<ErrorLine, 'errorCode' | 'errorMessage' | 'rawData' | 'esDocumentId' | 'esIndexName'>): string {
  const firehoseSays = `${line.errorCode || 'no error code'}: ${line.errorMessage || 'no message'}`;
  if (where.errorType === 'processing-failed') {
    let recomputed: string;
    try {
      recomputed = failureReason(where.pipeline, Buffer.from(line.rawData, 'base64'));
    } catch (err) {
      recomputed = `could not recompute the reason (${errorMessage(err)})`;
    }
    if (recomputed !== '') return recomputed;
    // The reason is recomputed with the schema deployed now, which may not be the one the transform had: a record sent
    // before a change that made it valid (a field added, a bound widened) reaches the router after the deploy.
    const passes = `the record passes the ${where.pipeline} schema (version ${pipelineSchema(where.pipeline).model.extensions.version}) and limits now`;
    // Otherwise the transform sets ProcessingFailed on a record that passes only when its response would outgrow Lambda's 6 MB.
    return /ProcessingFailed/.test(line.errorCode)
      ? `${passes}: the transform failed it under an earlier schema than this one (x-sluice.version is not checked, so that one may carry `
        + 'the same version), or for something outside its content, most likely its 6 MB response budget (too many records for one invocation: '
        + `its log line for the record says response-size); either way it is safe to replay. Firehose reported ${firehoseSays}`
      : `${passes}: the transform's invocation failed as a whole, so it is safe to replay. Firehose reported ${firehoseSays}`;
  }
  if (where.errorType === OPENSEARCH_FAILED || where.errorType === 'elasticsearch-failed') {
    return `OpenSearch refused document ${line.esDocumentId ?? '(no id)'} in index ${line.esIndexName ?? '(unknown)'}: ${firehoseSays}`;
  }
  if (where.errorType === 'format-conversion-failed') return `Parquet conversion failed: ${firehoseSays}`;
  return `Firehose ${where.errorType}: ${firehoseSays}`;
}

function bodyBytes(m: DlqMessage): number {
  return Buffer.byteLength(toSqsBody(m));
}

/** The message as sent: a pointer instead of the data when it would not fit, long texts clipped. */
export function fitted(m: DlqMessage, maxBytes: number): DlqMessage {
  if (bodyBytes(m) <= maxBytes) return m;
  const { rawData: _rawData, ...rest } = m;
  let pointed: DlqMessage = { ...rest, pointer: m.source };
  for (const limit of [8192, 1024, 128]) {
    if (bodyBytes(pointed) <= maxBytes) break;
    pointed = { ...pointed, errorMessage: clip(pointed.errorMessage, limit), reason: clip(pointed.reason, limit), errorCode: clip(pointed.errorCode, 256) };
  }
  return pointed;
}

function clip(s: string, limit: number): string {
  return s.length <= limit ? s : `${s.slice(0, limit)}… (${s.length - limit} more characters)`;
}

/** Splits messages into SendMessageBatch calls: at most 10 entries and `maxBatchBytes` of bodies each. */
export function sqsBatches(messages: readonly DlqMessage[], maxBatchBytes: number): DlqMessage[][] {
  return sizedSlices(messages, SQS_MAX_BATCH_ENTRIES, maxBatchBytes, bodyBytes);
}

/**
 * GetObject as the router (and `sluice replay`) reads error objects: the body as it arrives, and the ETag; a pin asks for
 * its version (VersionId) or its ETag (IfMatch: S3 answers 412 PreconditionFailed when the object no longer has it).
 * Undefined when the key, or the pinned version, no longer exists.
 */
export function s3ObjectReader(s3: S3Client): ObjectReader {
  const { GetObjectCommand, NoSuchKey } = requireS3();
  return async (bucket, key, pin) => {
    let response;
    try {
      response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, VersionId: pin?.versionId, IfMatch: pin?.etag }));
    } catch (err) {
      // NoSuchVersion: the version the event named was deleted since (a version cannot change, only go).
      if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchVersion') return undefined;
      throw err;
    }
    const { Body: body, ETag: etag } = response;
    if (!body) return { body: Buffer.alloc(0), etag };
    // In Lambda's Node.js runtime the body is an IncomingMessage: read as it arrives, it is never held whole.
    if (Symbol.asyncIterator in body) return { body: body as AsyncIterable<Uint8Array>, etag };
    const bytes = await body.transformToByteArray();
    return { body: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), etag }; // a view, not a second copy
  };
}

/**
 * The S3 and SQS clients, required when the Lambda entry point (or `replay --aws`) builds its router, not when the module
 * loads: the twin routes with its own object store and DLQ file, and loads this module at every start. In the bundle
 * the SDK is external (the runtime's, on NODE_PATH), so the require is the runtime's as an import's would be.
 */
function requireS3(): typeof import('@aws-sdk/client-s3') {
  return require('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');
}

function requireSqs(): typeof import('@aws-sdk/client-sqs') {
  return require('@aws-sdk/client-sqs') as typeof import('@aws-sdk/client-sqs');
}

let fromEnv: FailureRouter | undefined;

/** How long the router waits on one S3, SQS or DynamoDB call (or, reading an error object, between two pieces of it) when SLUICE_REQUEST_TIMEOUT_MS does not say. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** A connection the service has not accepted in this long is given up. */
const CONNECTION_TIMEOUT_MS = 3_000;

/** Every client's request handler options (requestTimeouts): an unanswered call fails in time for the SDK to retry it within the invocation. */
export function routerRequestHandler(timeoutMs: number): ReturnType<typeof requestTimeouts> {
  return requestTimeouts(timeoutMs, CONNECTION_TIMEOUT_MS);
}

/** The Lambda entry point: SLUICE_DLQ_URL (SQS), SLUICE_METADATA_TABLE (the ledger of sent messages), SLUICE_METADATA_TTL_DAYS, SLUICE_REQUEST_TIMEOUT_MS. */
export const handler: FailureRouter = (event) => {
  fromEnv ??= failureRouterFromEnv(process.env);
  return fromEnv(event);
};

export function failureRouterFromEnv(env: NodeJS.ProcessEnv): FailureRouter {
  const queueUrl = env.SLUICE_DLQ_URL;
  if (!queueUrl) throw new Error('SLUICE_DLQ_URL is not set: the URL of the dead-letter queue');
  const tableName = env.SLUICE_METADATA_TABLE;
  if (!tableName) throw new Error('SLUICE_METADATA_TABLE is not set: the table that holds the ledger of sent messages');
  const ttlDays = Number(env.SLUICE_METADATA_TTL_DAYS ?? '30');
  const timeoutMs = Number(env.SLUICE_REQUEST_TIMEOUT_MS ?? DEFAULT_REQUEST_TIMEOUT_MS);
  if (!(Number.isInteger(timeoutMs) && timeoutMs > 0)) throw new Error(`SLUICE_REQUEST_TIMEOUT_MS must be a positive whole number of milliseconds, got ${JSON.stringify(env.SLUICE_REQUEST_TIMEOUT_MS)}`);
  const requestHandler = routerRequestHandler(timeoutMs);
  const { SendMessageBatchCommand, SQSClient } = requireSqs();
  const s3 = new (requireS3().S3Client)({ requestHandler });
  const sqs = new SQSClient({ requestHandler });
  const dynamo = DynamoDBDocumentClient.from(new DynamoDBClient({ requestHandler }));
  const fifo = queueUrl.endsWith('.fifo');
  return createFailureRouter({
    readObject: s3ObjectReader(s3),
    async send(messages) {
      const answer = await sqs.send(new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: messages.map((m) => ({
          Id: m.dedupeKey,
          // Not JSON.stringify alone: a field name the record controls may hold U+FFFE/U+FFFF, which SQS refuses.
          MessageBody: toSqsBody(m),
          ...(fifo ? { MessageGroupId: m.pipeline, MessageDeduplicationId: m.dedupeKey } : {}),
        })),
      }));
      return { failedIds: (answer.Failed ?? []).map((f) => f.Id ?? '').filter((id) => id !== '') };
    },
    ...createSentLedger({ dynamo, tableName, ttlDays: ttlDays > 0 ? ttlDays : 30 }),
  });
}
