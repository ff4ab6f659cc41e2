/**
 * The dead-letter queue `sluice replay` drains, in both places: SQS on AWS, the twin's JSONL file
 * (lib/local/dlq-file.ts) locally; the replay ledger that keeps a second run from re-putting a record
 * whose message outlived its replay; and reading the records that messages point at in S3.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resourceNames } from '../config';
import { DlqFile } from '../local/dlq-file';
import { makeDirectories } from '../local/paths';
import { takePidLock } from '../local/pid-lock';
import { bucketNameProblem, InvalidObjectKeyError, objectKeyProblem, ObjectStore } from '../local/object-store';
import { ttlFrom } from '../../transforms/shared';
import { batchGetAll, batchWriteAll, type BatchOptions, type DynamoItem } from '../../transforms/shared/dynamo-batch';
import { backoffDelay } from '../../transforms/shared/retry';
import {
  MAX_ERROR_LINE_BYTES, ObjectChangedError, readPinnedErrorObject, type ErrorObjectReading, type ObjectReader, type ParsedLine,
} from '../../transforms/failure-router/error-records';
import { s3ObjectReader } from '../../transforms/failure-router/handler';
import { explained, explainFailure } from './errors';
import { io } from './progress';
import { sleep } from './sleep';
import { UserError } from './output';
import { OutputKeys } from './stack-outputs';
import type { AwsTarget, LocalTarget, Target } from './target';

export interface ReceivedMessage {
  /** Names the message to people (SQS MessageId, the line locally). */
  readonly id: string;
  /**
   * Tells the messages of one run apart where `id` cannot: locally the receipt handle, since the file
   * renumbers its lines when it compacts deleted ones away. @default id
   */
  readonly key?: string;
  /** Pass to delete/release. */
  readonly handle: string;
  readonly body: string;
  /** When the message was sent to the queue (epoch ms; SQS's SentTimestamp), where the queue says. */
  readonly sentAt?: number;
}

export interface DeadLetterQueue {
  /** "SQS queue https://…/sluice-dev-dlq", "sluice-dev-dlq.jsonl in .sluice/dlq". */
  readonly description: string;
  /** Up to 10 messages; they stay hidden from other receivers until deleted or released. */
  receive(max: number): Promise<ReceivedMessage[]>;
  delete(messages: readonly ReceivedMessage[]): Promise<void>;
  /** Makes messages visible again at once (they were not replayed). */
  release(messages: readonly ReceivedMessage[]): Promise<void>;
  /** Messages in the queue, received or not; undefined where no exact count exists (SQS's are approximate). */
  messagesLeft(): Promise<number | undefined>;
  /**
   * Messages received and hidden (by another replay, or a reader of the queue) that come back when their visibility
   * timeout ends: "nothing to replay" is only for now then. SQS's approximate count; 0 locally (one replay at a time).
   */
  messagesInFlight(): Promise<number | undefined>;
  close(): void;
}

/** Remembers which dead-letter messages (by dedupe key) were re-put, so a retried delete never re-puts twice. */
export interface ReplayLedger {
  /**
   * What the ledger holds for a batch of messages, read together (on AWS strongly consistent BatchGetItem calls, not a
   * GetItem per key): which of `dedupeKeys` were replayed, and when each of `recordKeys` (records by content) last was.
   */
  lookup(dedupeKeys: readonly string[], recordKeys: readonly string[]): Promise<LedgerEntries>;
  mark(dedupeKey: string): Promise<void>;
  /**
   * Records that each record (by its content key) was replayed by a put that began at `at` (epoch ms), and marks its
   * message's dedupe key; on disk (or in the table) when this returns, each record's entry before its message's (a
   * message marked replayed whose record is not would let the record's other message re-put it). Batched: one append
   * locally, BatchWriteItem calls on AWS.
   */
  markReplayed(replays: ReadonlyArray<{ readonly dedupeKey: string; readonly recordKey: string; readonly at: number }>): Promise<void>;
}

export interface LedgerEntries {
  /** The dedupe keys asked about that a run replayed (or deleted as duplicates). */
  readonly replayed: ReadonlySet<string>;
  /** When the records asked about were last replayed, epoch ms; a record never replayed is absent. */
  readonly recordReplayedAt: ReadonlyMap<string, number>;
}

export interface DeadLetterAccess {
  readonly queue: DeadLetterQueue;
  readonly ledger: ReplayLedger;
  /** Reads a pointer message's error object: as it arrives, never whole. */
  readonly readObject: ObjectReader;
}

/** How long received messages stay hidden while a replay works on them. */
export const VISIBILITY_SECONDS = 300;
/** The same for the twin's dead-letter file, whose visibility only this process sees: a whole run (SQS's longest, 12 h). */
const LOCAL_VISIBILITY_SECONDS = 43_200;
/** Ledger entries outlive any message: SQS keeps messages at most 14 days. */
const LEDGER_TTL_DAYS = 15;

/** The ledger's key in the twin's DLQ dedupe set and in the metadata table, apart from the failure router's sent marks. */
export function replayLedgerKey(dedupeKey: string): string {
  return `replayed#${dedupeKey}`;
}

export async function deadLettersFor(target: Target): Promise<DeadLetterAccess> {
  return target.kind === 'local' ? localDeadLetters(target) : awsDeadLetters(target);
}

function localDeadLetters(target: LocalTarget): DeadLetterAccess {
  const queueName = resourceNames(target.config, Object.keys(target.config.pipelines)[0]).dlq;
  // The file's visibility lives in this process only, so nothing is hidden from anyone else: a kept message
  // stays hidden for the whole run rather than coming back while a long replay goes on.
  const file = new DlqFile({ dataDir: target.dataDir, queue: queueName, visibilityTimeoutSeconds: LOCAL_VISIBILITY_SECONDS });
  const store = new ObjectStore(target.dataDir);
  noteOtherQueues(file.path, queueName);
  // No queue file (the twin has failed no record yet): nothing to read, and nothing made for it, neither its folder nor
  // the lock; a dry run makes nothing. A first dead letter written meanwhile is the next run's.
  const queued = fs.existsSync(file.path);
  const releaseLock = queued ? takeQueueRunLock(file, 'replay', 'put the same records twice') : () => undefined;
  let recordTimesOfRun: Promise<Map<string, number>> | undefined;
  const recordTimes = (): Promise<Map<string, number>> => {
    recordTimesOfRun ??= file.dedupeKeysStartingWith(replayLedgerKey('record#')).then((keys) => {
      const times = new Map<string, number>();
      for (const k of keys) {
        const at = k.lastIndexOf('@');
        if (at !== -1) laterOf(times, k.slice(0, at), Number(k.slice(at + 1)));
      }
      return times;
    });
    return recordTimesOfRun;
  };
  return {
    queue: { ...dlqFileQueue(file, queueName, queued), close: releaseLock },
    ledger: {
      // The dedupe set holds keys only: a record's replay time rides in its key, `replayed#record#…@<epoch ms>`. They
      // are read once per run into a map (this run is the only replay of the file: its lock), then kept up to date.
      async lookup(dedupeKeys, recordKeys) {
        const replayed = new Set<string>();
        for (const key of new Set(dedupeKeys)) if (await file.hasDedupeKey(replayLedgerKey(key))) replayed.add(key);
        const times = await recordTimes();
        const recordReplayedAt = new Map<string, number>();
        for (const key of recordKeys) {
          const at = times.get(replayLedgerKey(key));
          if (at !== undefined) recordReplayedAt.set(key, at);
        }
        return { replayed, recordReplayedAt };
      },
      mark: async (key) => {
        await file.claim(replayLedgerKey(key));
      },
      // One append and one fsync for a batch, instead of two per record.
      markReplayed: async (replays) => {
        await file.claimAll(replays.flatMap((r) => [`${replayLedgerKey(r.recordKey)}@${r.at}`, replayLedgerKey(r.dedupeKey)]));
        const times = await recordTimes();
        for (const r of replays) laterOf(times, replayLedgerKey(r.recordKey), r.at);
      },
    },
    readObject: (bucket, key, pin) => store.readObject(bucket, key, pin),
  };
}

/**
 * Replay reads the queue of the configuration's env and prefix: when the data dir holds only others (a twin
 * started with `-c env=…`), "nothing to replay" would be wrong. Says so, as `query` does for the bucket.
 */
function noteOtherQueues(file: string, queueName: string): void {
  if (fs.existsSync(file)) return;
  const dir = path.dirname(file);
  // The records' queues only: the consumer's are named <prefix>-<env>-consumer-dlq (lib/config/names.ts).
  const others = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('-dlq.jsonl') && !f.endsWith('-consumer-dlq.jsonl')).sort() : [];
  if (others.length > 0) {
    io.err(`sluice: note: ${dir} has no ${queueName}.jsonl (it has ${others.join(', ')}): was the twin run with other settings (-c env=…, prefix)?\n`);
  }
}

/**
 * One run of `command` at a time per dead-letter file (`<queue>.<command>.pid` beside it): what a message's visibility
 * does on SQS. Two runs would each see every message (the file's visibility lives in one process) and `twice` what
 * the other does. A lock whose process is gone is taken over (lib/local/pid-lock.ts). Returns the release.
 */
export function takeQueueRunLock(file: DlqFile, command: 'replay' | 'redrive-consumer', twice: string): () => void {
  const queueName = path.basename(file.path, '.jsonl');
  const lockFile = path.join(path.dirname(file.path), `${queueName}.${command}.pid`);
  makeDirectories(path.dirname(lockFile));
  return takePidLock(lockFile, {
    inUse: (holder) => new UserError(`another sluice ${command} (pid ${holder}) is ${command === 'replay' ? 'replaying' : 'redriving'} ${queueName}; wait for it to finish, or stop it: two at once would ${twice} (${lockFile})`),
    cannot: (what, cause) => new UserError(`cannot ${what} the ${command} lock ${lockFile}: ${cause.message}`),
    contended: () => new UserError(`could not take the ${command} lock ${lockFile} (other runs kept changing it); try again`),
  });
}

async function awsDeadLetters(target: AwsTarget): Promise<DeadLetterAccess> {
  const outputs = await target.outputs();
  const queueUrl = outputs.require(OutputKeys.DlqUrl, 'sluice replay');
  const tableName = outputs.require(OutputKeys.MetadataTableName, 'the replay ledger');
  const sqs = new SQSClient(target.clientConfig);
  const dynamo = new DynamoDBClient(target.clientConfig);
  const s3 = new S3Client(target.clientConfig);
  const readS3Object = s3ObjectReader(s3);
  const ledger = awsReplayLedger(DynamoDBDocumentClient.from(dynamo), tableName);
  return {
    queue: {
      ...sqsDeadLetterQueue(sqs, queueUrl, (n, why) =>
        new UserError(`SQS could not delete ${n} replayed message${n === 1 ? '' : 's'} (${why}); the ledger keeps the next run from re-putting them`, 1)),
      close() {
        sqs.destroy();
        dynamo.destroy();
        s3.destroy();
      },
    },
    ledger,
    // S3 refusing the object (a client fault) is explained here. A dropped connection or a fault on S3's side, after the
    // SDK's retries, goes to rawDataAt as it is: it keeps the message for the next run (retry-later), as locally.
    async readObject(bucket, key, pin) {
      try {
        return await readS3Object(bucket, key, pin);
      } catch (err) {
        throw (err as { $fault?: string } | null)?.$fault === 'client' ? explainFailure(err, { service: 'S3', resource: `s3://${bucket}/${key}` }) : err;
      }
    },
  };
}

/**
 * The twin's dead-letter file `file` as a queue (without close: the caller's). A file not there (`queued` false: the twin
 * has sent it nothing yet) reads as empty, and nothing is made for it.
 */
export function dlqFileQueue(file: DlqFile, queueName: string, queued: boolean): Omit<DeadLetterQueue, 'close'> {
  return {
    description: `${queueName} (${file.path})`,
    async receive(max) {
      if (!queued) return [];
      const messages = await file.receive(max);
      return messages.map((m) => ({ id: `line ${m.line}`, key: m.receiptHandle, handle: m.receiptHandle, body: m.body }));
    },
    async delete(messages) {
      if (messages.length > 0) await file.delete(messages.map((m) => m.handle));
    },
    // The file's visibility lives in this process only: the next run sees every undeleted message.
    async release() {},
    messagesLeft: async () => (queued ? file.count() : 0),
    messagesInFlight: async () => 0,
  };
}

/**
 * An SQS queue as a dead-letter queue (without close: the caller destroys its client). `notDeleted` says what a failed
 * delete of `n` messages means for the command, `why` being SQS's reason.
 */
export function sqsDeadLetterQueue(sqs: SQSClient, queueUrl: string, notDeleted: (n: number, why: string) => UserError): Omit<DeadLetterQueue, 'close'> {
  const sqsContext = { service: 'SQS', resource: `queue ${queueUrl}` };
  const entries = (messages: readonly ReceivedMessage[]) => messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.handle }));
  return {
    description: `SQS queue ${queueUrl}`,
    async receive(max) {
      const response = await explained(sqsContext, () => sqs.send(new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: max,
        VisibilityTimeout: VISIBILITY_SECONDS,
        // Long polling asks every SQS server, so an empty answer means an empty queue.
        WaitTimeSeconds: 2,
        // The queue deletes a message DLQ_RETENTION after it was sent: replay says when kept ones near that.
        MessageSystemAttributeNames: ['SentTimestamp'],
      })));
      return (response.Messages ?? []).map((m) => {
        const sentAt = Number(m.Attributes?.SentTimestamp);
        return { id: m.MessageId ?? '', handle: m.ReceiptHandle ?? '', body: m.Body ?? '', ...(Number.isFinite(sentAt) && sentAt > 0 ? { sentAt } : {}) };
      });
    },
    async delete(messages) {
      for (let i = 0; i < messages.length; i += 10) {
        const batch = messages.slice(i, i + 10);
        let response;
        try {
          response = await explained(sqsContext, () => sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries(batch) })));
        } catch (err) {
          // Explained when the user can act on it (access denied, credentials); otherwise said as a failed delete.
          if (err instanceof UserError) throw err;
          const e = err as { name?: string; message?: string };
          throw notDeleted(batch.length, `${e.name ?? 'Error'}: ${e.message ?? String(err)}`);
        }
        if ((response.Failed ?? []).length > 0) {
          const f = response.Failed![0];
          throw notDeleted(response.Failed!.length, `${f.Code}: ${f.Message}`);
        }
      }
    },
    async release(messages) {
      for (let i = 0; i < messages.length; i += 10) {
        const batch = messages.slice(i, i + 10);
        try {
          await sqs.send(new ChangeMessageVisibilityBatchCommand({
            QueueUrl: queueUrl,
            Entries: entries(batch).map((e) => ({ ...e, VisibilityTimeout: 0 })),
          }));
        } catch {
          // They become visible on their own when the visibility timeout passes.
        }
      }
    },
    async messagesLeft() {
      return undefined;
    },
    async messagesInFlight() {
      const response = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessagesNotVisible'] }));
      const n = Number(response.Attributes?.ApproximateNumberOfMessagesNotVisible);
      return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
    },
  };
}

/** Calls per ledger batch while DynamoDB throttles or leaves keys or items unprocessed. */
const LEDGER_ATTEMPTS = 8;
/** DynamoDB's answers to slow down, after the SDK's own retries of them gave up. */
const THROTTLING_ERRORS = new Set(['ProvisionedThroughputExceededException', 'ThrottlingException', 'RequestLimitExceeded']);

/**
 * The replay ledger in the stack's metadata table: an item `pk = replayed#<key>, sk = replayed` per replayed message (by
 * dedupe key) and per replayed record (`record#…`, with `replayed_at`), kept LEDGER_TTL_DAYS. Read a batch at a time with
 * BatchGetItem (≤ 100 keys a call, strongly consistent: a mark written moments ago by the last batch must be seen), written
 * with BatchWriteItem (plain puts, as before: nothing is conditional). Throttling and what DynamoDB leaves unprocessed are
 * called again with backoff, LEDGER_ATTEMPTS calls per batch, then the run stops with the reason.
 */
export function awsReplayLedger(dynamo: DynamoDBDocumentClient, tableName: string, options: { sleep?: (ms: number) => Promise<void> } = {}): ReplayLedger {
  const pause = options.sleep ?? sleep;
  const batches: BatchOptions = {
    dynamo,
    tableName,
    retry: {
      retryable: (error) => THROTTLING_ERRORS.has((error as { name?: string } | null)?.name ?? ''),
      async pause(attempt, what, cause) {
        if (attempt + 1 >= LEDGER_ATTEMPTS) {
          throw new Error(`DynamoDB table ${tableName} (the replay ledger) left ${what} after ${LEDGER_ATTEMPTS} attempts; run replay again later`, { cause });
        }
        await pause(backoffDelay(attempt));
      },
    },
  };
  const context = { service: 'DynamoDB', resource: `table ${tableName}` };
  const keyOf = (item: DynamoItem) => String(item.pk);
  const ledgerItem = (key: string, at: Date) => ({ pk: replayLedgerKey(key), sk: 'replayed', replayed_at: at.toISOString(), ttl: ttlFrom(new Date(), LEDGER_TTL_DAYS) });
  const write = (items: DynamoItem[]) => explained(context, () => batchWriteAll(batches, items, keyOf, () => undefined));
  return {
    async lookup(dedupeKeys, recordKeys) {
      const asked = [...dedupeKeys, ...recordKeys];
      const found = new Map<string, string | undefined>();
      if (asked.length > 0) {
        await explained(context, () => batchGetAll(batches, asked.map((k) => ({ pk: replayLedgerKey(k), sk: 'replayed' })), keyOf,
          (item) => found.set(String(item.pk), typeof item.replayed_at === 'string' ? item.replayed_at : undefined), ['pk', 'replayed_at']));
      }
      const replayed = new Set(dedupeKeys.filter((k) => found.has(replayLedgerKey(k))));
      const recordReplayedAt = new Map<string, number>();
      for (const k of recordKeys) {
        const at = Date.parse(found.get(replayLedgerKey(k)) ?? '');
        if (Number.isFinite(at)) recordReplayedAt.set(k, at);
      }
      return { replayed, recordReplayedAt };
    },
    mark: (dedupeKey) => write([ledgerItem(dedupeKey, new Date())]),
    async markReplayed(replays) {
      if (replays.length === 0) return;
      // The records first, then their messages: never a message marked whose record is not.
      await write(replays.map((r) => ledgerItem(r.recordKey, new Date(r.at))));
      const now = new Date();
      await write(replays.map((r) => ledgerItem(r.dedupeKey, now)));
    },
  };
}

/**
 * A pointer's error object could not be read this time, for a reason a later read need not meet again (replaced while it was
 * read, the connection dropped, S3 failing on its side): its message stays for the next run, and is not counted with the ones no run can replay.
 */
export class ReadLaterError extends UserError {}

/** The connection dropped (or the disk failed) while a pointer's object streamed: this message stays, the others may still be replayed. */
function unreadableTo(pointer: { bucket: string; key: string; line: number }, err: unknown): ReadLaterError {
  const why = explainFailure(err, { service: 'S3', resource: `s3://${pointer.bucket}/${pointer.key}` });
  return new ReadLaterError(`s3://${pointer.bucket}/${pointer.key} could not be read to line ${pointer.line}: ${why.message}`, 1);
}

/** The base64 record of one line of an error object (a pointer message's target). */
export async function rawDataAt(readObject: ObjectReader, pointer: { bucket: string; key: string; line: number }): Promise<string> {
  // A message names what it names: a bucket or key S3 could not hold is this message's problem, not the run's.
  const bucketProblem = bucketNameProblem(pointer.bucket);
  if (bucketProblem !== undefined) throw new UserError(`the pointer's bucket ${JSON.stringify(pointer.bucket.slice(0, 70))} ${bucketProblem}`, 1);
  const keyProblem = objectKeyProblem(pointer.key);
  if (keyProblem !== undefined) throw new UserError(`the pointer names no error object: ${keyProblem}`, 1);
  let reading: ErrorObjectReading | undefined;
  try {
    // Read as it arrives, up to the pointer's line: an object far larger than memory, or a line over the cap, is never held.
    reading = await readPinnedErrorObject(readObject, pointer.bucket, pointer.key);
  } catch (err) {
    const e = err as { name?: string; $fault?: string; message?: string };
    const notRead = `s3://${pointer.bucket}/${pointer.key} could not be read: ${e.name ?? 'Error'}: ${e.message ?? ''}`.trim();
    // Replaced between the gzip check and the read of its lines: the next run reads it as it is then.
    if (err instanceof ObjectChangedError) throw new ReadLaterError(notRead, 1);
    // S3 refusing this object (no such bucket, access denied): the other messages may still be replayed.
    if (e.$fault === 'client' || err instanceof InvalidObjectKeyError) throw new UserError(notRead, 1);
    if (err instanceof UserError) throw err;
    // The connection dropped (or S3 failed) on the first read, or while a gzip object was read through to check it: as while its lines stream, below.
    throw unreadableTo(pointer, err);
  }
  if (reading === undefined) throw new UserError(`s3://${pointer.bucket}/${pointer.key} is gone (error objects expire after lifecycle.errorExpirationDays)`, 1);
  let line: ParsedLine | undefined;
  try {
    for await (const l of reading.lines) {
      if (l.line < pointer.line) continue;
      if (l.line === pointer.line) line = l;
      break;
    }
  } catch (err) {
    throw unreadableTo(pointer, err);
  }
  const damaged = reading.damaged;
  if (!line) throw new UserError(`s3://${pointer.bucket}/${pointer.key} has no line ${pointer.line}${damaged ? `: ${damaged}` : ''}`, 1);
  if ('problem' in line) throw new UserError(`s3://${pointer.bucket}/${pointer.key} line ${pointer.line}: ${line.problem}`, 1);
  // Not read whole: no line Firehose writes is near the cap (the failure router sent such a line as a pointer, saying so).
  if ('overlongBytes' in line) {
    throw new UserError(`s3://${pointer.bucket}/${pointer.key} line ${pointer.line} is ${line.overlongBytes} bytes, longer than the ${MAX_ERROR_LINE_BYTES} bytes `
      + 'an error line is read to: not a Firehose error record (a record is at most 1,000 KiB); look at it in S3', 1);
  }
  return line.rawData;
}

/** Keeps the later of a record's replay times (a finite one). */
function laterOf(times: Map<string, number>, key: string, ms: number): void {
  if (Number.isFinite(ms)) times.set(key, Math.max(ms, times.get(key) ?? ms));
}
