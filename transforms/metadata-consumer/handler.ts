/**
 * Kinesis event source mapping consumer: records every event's metadata in DynamoDB (event item,
 * per-minute counters per event type, entity last-seen), exactly once in effect.
 *
 * Partial batch responses (`ReportBatchItemFailures`): a write that keeps failing reports its
 * record and every later one, so Lambda retries from there and nothing after it is skipped;
 * records already written are then recognised as duplicates. Malformed records are counted, logged
 * and skipped — never reported, so a poison record cannot block its shard.
 *
 * The event source mapping does not de-aggregate records the Kinesis Producer Library aggregated
 * (Firehose does): the consumer does, so each user record is an event of its own, checked and written
 * as a plain record is. Its siblings share the Kinesis sequence number, the only batch item identifier:
 * one that fails to write reports the whole Kinesis record, and the siblings already written are
 * recognised as duplicates when it comes again. Counts (events, duplicates, malformed) are of user records.
 */
import type { Context, KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { partitionPath } from '../../lib/schema/layout';
import { clipText, DEFAULT_DYNAMO_TIMEOUT_MS, keyValueOf, metadataKeys, METADATA_TABLE_KEYS, MAX_KEY_VALUE_CHARS, ttlFrom } from '../shared/metadata-table';
import { pipelineSchema, type PipelineSchema } from '../shared/pipeline';
import { deaggregate } from '../shared/kpl';
import { requestTimeouts } from '../shared/retry';
import { analyzeForLake, describeFailure } from '../shared/record';
import { createTelemetry, errorMessage, publishCounts, type Logger, type Metrics } from '../shared/telemetry';
import { METADATA_CONSUMER_METRICS, METADATA_CONSUMER_SERVICE, RECORDS_REPORTED_FOR_RETRY } from '../shared/metric-names';
import { MetadataStore, transactionChunks, WriteFailure, type EventFacts } from './store';

export { METADATA_TABLE_KEYS, metadataKeys };
export { minuteOf } from './store';

export interface MetadataConsumerOptions {
  readonly pipeline: string;
  readonly tableName: string;
  /** Days items live (the table's TTL attribute). */
  readonly ttlDays: number;
  readonly dynamo: DynamoDBDocumentClient;
  /** @default () => new Date() */
  readonly now?: () => Date;
  /**
   * How long one invocation keeps retrying throttled writes before reporting them. Never more than a
   * third of the time the invocation has left (Lambda's context), so the report always goes out.
   * @default 20000
   */
  readonly retryBudgetMs?: number;
  /** Events per DynamoDB transaction. @default 50 */
  readonly eventsPerTransaction?: number;
  /** @default setTimeout-based; tests pass one that does not wait */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
}

/** The part of Lambda's context the consumer reads. */
export type InvocationClock = Pick<Context, 'getRemainingTimeInMillis'>;

export type MetadataConsumer = (event: KinesisStreamEvent, context?: InvocationClock) => Promise<KinesisStreamBatchResponse>;

/** What one Kinesis record of a batch held: its user records (one for a plain record), and how many of them were skipped. */
export interface RecordTally {
  readonly userRecords: number;
  /** User records skipped as malformed (logged, counted, never reported). */
  readonly skipped: number;
}

/** The consumer's answer, and what each record of the batch held: for callers that count user records (the local twin). */
export interface MetadataBatchOutcome extends KinesisStreamBatchResponse {
  /** One per record of the event, in batch order. */
  readonly tallies: readonly RecordTally[];
}

export type MetadataRecorder = (event: KinesisStreamEvent, context?: InvocationClock) => Promise<MetadataBatchOutcome>;

export function createMetadataConsumer(options: MetadataConsumerOptions): MetadataConsumer {
  const record = createMetadataRecorder(options);
  return async (event, context) => ({ batchItemFailures: (await record(event, context)).batchItemFailures });
}

/** The consumer's work, with what each record held: for callers that count user records (the local twin's summary). */
export function createMetadataRecorder(options: MetadataConsumerOptions): MetadataRecorder {
  const schema = pipelineSchema(options.pipeline);
  if (!(options.ttlDays > 0)) throw new Error(`ttlDays must be a positive number of days, got ${options.ttlDays}`);
  if (!options.tableName) throw new Error('tableName is required: the metadata table the consumer writes to');
  const now = options.now ?? (() => new Date());
  const telemetry = createTelemetry(METADATA_CONSUMER_SERVICE, { pipeline: options.pipeline }, options);
  const { logger } = telemetry;
  let warnedFallback = false;

  return async (event, context) => {
    const started = performance.now();
    const budgetMs = retryBudgetFor(options.retryBudgetMs ?? 20_000, context);
    const at = now();
    const records = event.Records ?? [];
    const events: EventFacts[] = [];
    const seenIds = new Set<string>();
    const tallies: RecordTally[] = [];
    let malformed = 0;
    let repeatedInBatch = 0;
    let userRecords = 0;
    for (const r of records) {
      const checked = eventFacts(schema, r);
      // Nothing is lost: the producer aggregated no user record into it. Said, because it is odd.
      if (checked.length === 0) logger.warn('KPL-aggregated record holds no user records', { sequenceNumber: r.kinesis?.sequenceNumber, eventID: r.eventID });
      userRecords += checked.length;
      let skipped = 0;
      for (const facts of checked) {
        if ('reason' in facts) {
          malformed++;
          skipped++;
          logger.warn('malformed record skipped', {
            sequenceNumber: r.kinesis?.sequenceNumber,
            ...(facts.subsequenceNumber !== undefined ? { subsequenceNumber: facts.subsequenceNumber } : {}),
            eventID: r.eventID,
            reason: facts.reason,
          });
          continue;
        }
        // The same event id twice in one batch is one event: the first occurrence counts.
        if (seenIds.has(facts.eventId)) {
          repeatedInBatch++;
          continue;
        }
        seenIds.add(facts.eventId);
        events.push(facts);
      }
      tallies.push({ userRecords: checked.length, skipped });
    }

    let retries = 0;
    const store = new MetadataStore({
      pipeline: options.pipeline,
      tableName: options.tableName,
      dynamo: options.dynamo,
      ttl: ttlFrom(at, options.ttlDays),
      writtenAt: at.toISOString(),
      deadline: started + budgetMs,
      sleep: options.sleep,
      onRetry: () => {
        retries++;
      },
    });
    let recorded = 0;
    let duplicates = repeatedInBatch;
    const done: EventFacts[] = [];
    let failedFrom: EventFacts | undefined;
    for (const chunk of transactionChunks(events, options.eventsPerTransaction ?? 50)) {
      try {
        const result = await store.recordChunk(chunk);
        recorded += result.recorded;
        duplicates += result.duplicates;
        done.push(...chunk);
      } catch (err) {
        failedFrom = chunk[0];
        logger.error('metadata write failed; reporting the rest of the batch for retry', {
          sequenceNumber: chunk[0].sequenceNumber,
          records: events.length - done.length,
          retryable: err instanceof WriteFailure ? err.retryable : undefined,
          error: errorMessage(err),
        });
        break;
      }
    }
    if (store.usesSequentialFallback && !warnedFallback) {
      warnedFallback = true;
      logger.warn('DynamoDB endpoint has no TransactWriteItems (e.g. dynalite); writing in batches, one chunk at a time per pipeline and table in this process');
    }

    const failedEntities = new Set<string>();
    for (const f of await store.updateEntities(done)) {
      failedEntities.add(f.entity);
      logger.error('entity last-seen update failed', { entity: f.entity, error: errorMessage(f.error) }); // keyValueOf bounds it
    }

    const failedIds = new Set<string>();
    let reporting = false;
    for (const e of events) {
      if (e === failedFrom) reporting = true;
      if (reporting || (e.entity !== undefined && failedEntities.has(e.entity))) failedIds.add(e.sequenceNumber);
    }
    // In batch order, so the lowest sequence number (where Lambda resumes) comes first.
    const batchItemFailures = records
      .map((r) => r.kinesis?.sequenceNumber)
      .filter((s): s is string => s !== undefined && failedIds.has(s))
      .map((itemIdentifier) => ({ itemIdentifier }));

    logger.info('batch recorded', {
      records: records.length,
      userRecords,
      recorded,
      duplicates,
      malformed,
      failed: batchItemFailures.length,
      retries,
      firstSequenceNumber: records[0]?.kinesis?.sequenceNumber,
      durationMs: Math.round(performance.now() - started),
    });
    publishCounts(telemetry, {
      [METADATA_CONSUMER_METRICS.recorded]: recorded,
      [METADATA_CONSUMER_METRICS.duplicates]: duplicates,
      [METADATA_CONSUMER_METRICS.malformed]: malformed,
      [RECORDS_REPORTED_FOR_RETRY]: batchItemFailures.length,
      [METADATA_CONSUMER_METRICS.writeRetries]: retries,
    });
    return { batchItemFailures, tallies };
  };
}

/** Why a user record cannot be recorded; `subsequenceNumber` is its index in a KPL-aggregated record. */
export interface UnrecordableRecord {
  readonly reason: string;
  readonly subsequenceNumber?: number;
}

/**
 * What the table records about the user records of one Kinesis record, or why one cannot be recorded: the
 * record itself, or, for a KPL-aggregated record, each user record in it, in order (none for an aggregate of
 * none). A record with the KPL's magic whose MD5 or protobuf is wrong is no aggregate: it is checked as any other.
 */
export function eventFacts(schema: PipelineSchema, r: KinesisStreamRecord): Array<EventFacts | UnrecordableRecord> {
  const k = r.kinesis;
  if (!k || typeof k.data !== 'string' || typeof k.sequenceNumber !== 'string') return [{ reason: 'not a Kinesis record: kinesis.data or sequenceNumber missing' }];
  const bytes = Buffer.from(k.data, 'base64');
  const users = deaggregate(bytes);
  if (users === undefined) return [userRecordFacts(schema, r, bytes)];
  // The index is for the log line of a user record that cannot be recorded; its siblings share the sequence number.
  return users.map((u, subsequenceNumber) => {
    const facts = userRecordFacts(schema, r, u.data);
    return 'reason' in facts ? { ...facts, subsequenceNumber } : facts;
  });
}

function userRecordFacts(schema: PipelineSchema, r: KinesisStreamRecord, bytes: Buffer): EventFacts | UnrecordableRecord {
  const k = r.kinesis;
  // The lake transform's own checks: an event the lake refuses is not recorded either.
  const arrivalMs = Math.round(Number(k.approximateArrivalTimestamp) * 1000);
  const analysis = analyzeForLake(schema, bytes, { arrivalMs, kinesis: { shardId: shardIdOf(r.eventID), sequenceNumber: k.sequenceNumber, arrivalMs } });
  if (analysis.kind === 'empty') return { reason: 'empty record' };
  if (analysis.kind === 'failed') return { reason: describeFailure(analysis.failure) };
  const x = schema.model.extensions;
  const typeField = x.partitionFields[0];
  const typeColumn = schema.model.inputColumns.find((c) => c.jsonKey === typeField);
  const eventType = typeField !== undefined ? String(analysis.record[typeField]) : 'all';
  const eventTypeKey = typeColumn ? analysis.partitionKeys[typeColumn.name] : 'all';
  return {
    sequenceNumber: k.sequenceNumber,
    eventId: keyValueOf(analysis.id),
    eventType: clipText(eventType, MAX_KEY_VALUE_CHARS),
    eventTypeKey,
    eventTime: analysis.eventTime.iso,
    arrivalTime: kinesisArrivalIso(k.approximateArrivalTimestamp),
    shardId: shardIdOf(r.eventID),
    sizeBytes: bytes.length,
    partitionPath: partitionPath(schema.model, analysis.partitionKeys),
    entity: analysis.entity !== undefined ? keyValueOf(analysis.entity) : undefined,
  };
}

/**
 * The retry budget of one invocation: the configured one, cut to a third of the remaining time when
 * Lambda says how much is left — a short function timeout must not end the invocation mid-retry,
 * after some writes and before the batch response that reports the rest.
 */
export function retryBudgetFor(configuredMs: number, context?: InvocationClock): number {
  const remaining = context?.getRemainingTimeInMillis();
  if (remaining === undefined || !Number.isFinite(remaining)) return configuredMs;
  return Math.max(0, Math.min(configuredMs, Math.floor(remaining / 3)));
}

/** The ESM's eventID is `<shardId>:<sequenceNumber>`. */
export function shardIdOf(eventID: string | undefined): string {
  if (!eventID) return 'unknown';
  const colon = eventID.indexOf(':');
  return colon === -1 ? eventID : eventID.slice(0, colon);
}

/** The ESM gives arrival as epoch seconds with a fraction. */
function kinesisArrivalIso(seconds: number): string {
  const d = new Date(Math.round(seconds * 1000));
  return Number.isNaN(d.getTime()) ? new Date(0).toISOString() : d.toISOString();
}

/** A connection DynamoDB has not accepted in this long is given up (and retried, within the retry budget). */
const DYNAMO_CONNECTION_TIMEOUT_MS = 1_000;

/**
 * The table's client, failing a call with TimeoutError when it goes unanswered for `timeoutMs` (the SDK's default
 * waits without end, so one hung connection held the invocation to the function's timeout and lost the batch response;
 * without throwOnRequestTimeout the handler only logs a warning).
 */
export function metadataTableClient(timeoutMs: number, config: DynamoDBClientConfig = {}): DynamoDBClient {
  return new DynamoDBClient({
    ...config,
    // Options, not a NodeHttpHandler (requestTimeouts): a NodeHttpHandler would bring 125 KiB and 44 ms more to load.
    requestHandler: requestTimeouts(timeoutMs, DYNAMO_CONNECTION_TIMEOUT_MS),
  });
}

let fromEnv: MetadataConsumer | undefined;

/** The Lambda entry point, configured by SLUICE_PIPELINE, SLUICE_METADATA_TABLE, SLUICE_METADATA_TTL_DAYS and SLUICE_DYNAMO_TIMEOUT_MS. */
export const handler: MetadataConsumer = (event, context) => {
  fromEnv ??= metadataConsumerFromEnv(process.env);
  return fromEnv(event, context);
};

export function metadataConsumerFromEnv(env: NodeJS.ProcessEnv): MetadataConsumer {
  const pipeline = env.SLUICE_PIPELINE;
  if (!pipeline) throw new Error('SLUICE_PIPELINE is not set: name the pipeline this consumer serves');
  const tableName = env.SLUICE_METADATA_TABLE;
  if (!tableName) throw new Error('SLUICE_METADATA_TABLE is not set: name the metadata table');
  const ttlDays = Number(env.SLUICE_METADATA_TTL_DAYS ?? '30');
  if (!(ttlDays > 0)) throw new Error(`SLUICE_METADATA_TTL_DAYS must be a positive number, got ${JSON.stringify(env.SLUICE_METADATA_TTL_DAYS)}`);
  const timeoutMs = Number(env.SLUICE_DYNAMO_TIMEOUT_MS ?? DEFAULT_DYNAMO_TIMEOUT_MS);
  if (!(Number.isInteger(timeoutMs) && timeoutMs > 0)) throw new Error(`SLUICE_DYNAMO_TIMEOUT_MS must be a positive whole number of milliseconds, got ${JSON.stringify(env.SLUICE_DYNAMO_TIMEOUT_MS)}`);
  const dynamo = DynamoDBDocumentClient.from(metadataTableClient(timeoutMs), { marshallOptions: { removeUndefinedValues: true } });
  return createMetadataConsumer({ pipeline, tableName, ttlDays, dynamo });
}
