/**
 * Writes of the metadata consumer, with exactly-once effect under at-least-once delivery.
 *
 * The event item is put only if absent, in the same TransactWriteItems call as the counter
 * increments its events contribute: either both happen or neither, so a redelivered record finds
 * its event item, is recognised as a duplicate, and adds nothing. Counters of a chunk are summed
 * per item first (a transaction may touch an item once). The entity's last-seen item is a
 * conditional "newer wins" update: idempotent by itself, so it stays outside the transaction and is
 * re-applied for duplicates too.
 *
 * Endpoints without TransactWriteItems (dynalite, the local twin's DynamoDB) get the same items
 * another way, one chunk at a time per pipeline and table in this process: read which events are recorded
 * (BatchGetItem, strongly consistent), write the others (BatchWriteItem), then add their counter
 * increments; last-seen items likewise (read, compare, write the newer). The queue makes each
 * read-then-write atomic against the other consumers of the process (the twin runs them all in one),
 * which keeps exactly-once effect under redelivery and concurrent shards. A write that fails is read
 * back, since it may have been applied: what exists is counted. Each increment also writes its chunk's
 * token on the counter item, on the condition that the token is not there yet: sent again after its
 * answer was lost (by the SDK's retries or ours), it is refused instead of added twice. An increment
 * that meets a broken connection, a timeout or a server error is waited out, never given up. One that
 * gives up (throttled past its retries, or an error not worth retrying) deletes the event items it did
 * not count (its counter without the chunk's token) before the records are reported, so their
 * redelivery counts them. Only a crash between a chunk's event items and its counters, or a failed
 * write whose read-back or delete fails too, could lose those counts, up to one chunk (50 events).
 * A few dozen calls per 50 events instead of two calls per event: dynalite costs milliseconds of CPU per call.
 */
import { randomUUID } from 'node:crypto';
import { TransactWriteCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { batchDeleteAll, batchGetAll, batchWriteAll, type BatchOptions } from '../shared/dynamo-batch';
import { DYNAMO_MAX_TRANSACTION_ITEMS } from '../shared/limits';
import { metadataKeys } from '../shared/metadata-table';
import { backoffDelay, mapWithConcurrency, sleep } from '../shared/retry';

/** One valid event, as the table records it. */
export interface EventFacts {
  /** Kinesis sequence number: the batch item identifier. */
  readonly sequenceNumber: string;
  readonly eventId: string;
  /** The event type as sent. */
  readonly eventType: string;
  /** The event type as its partition value (lower case, S3-safe): the counter key. */
  readonly eventTypeKey: string;
  /** UTC ISO-8601 with milliseconds. */
  readonly eventTime: string;
  readonly arrivalTime: string;
  readonly shardId: string;
  readonly sizeBytes: number;
  readonly partitionPath: string;
  readonly entity?: string;
}

export interface StoreOptions {
  readonly pipeline: string;
  readonly tableName: string;
  readonly dynamo: DynamoDBDocumentClient;
  /** `ttl` (epoch seconds) for items written now. */
  readonly ttl: number;
  readonly writtenAt: string;
  /**
   * Give up retrying throttled or conflicting writes at this time, on performance.now()'s clock: monotonic, so a wall
   * clock set back or forward while the writes retry neither stretches nor ends the wait.
   */
  readonly deadline: number;
  readonly sleep?: (ms: number) => Promise<void>;
  /** Called once per write retry, with the reason. */
  readonly onRetry?: (reason: string) => void;
}

export interface ChunkResult {
  /** Events whose item and counter contribution were written now. */
  readonly recorded: number;
  /** Events already recorded (redelivered, or repeated in the batch). */
  readonly duplicates: number;
}

/** A write that still failed when retries ran out; `retryable` says whether a later invocation may succeed. */
export class WriteFailure extends Error {
  constructor(message: string, readonly retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WriteFailure';
  }
}

const RETRYABLE_ERRORS = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'InternalServerError',
  'ServiceUnavailable',
  'TransactionInProgressException',
  'TransactionConflictException',
  'LimitExceededException',
]);
/** Batch calls in flight at once on the path without transactions. */
const BATCH_CONCURRENCY = 4;
/** Attempts per write before it counts as failed (the deadline may end it sooner). */
const MAX_WRITE_ATTEMPTS = 10;

/** Clients whose endpoint answered TransactWriteItems with UnknownOperationException: later invocations skip the attempt. */
const clientsWithoutTransactions = new WeakSet<object>();

/**
 * Writes without transactions under way in this process, by table and pipeline, and the end of the
 * queue behind them: a read-then-write is atomic only if no other consumer writes the same items in
 * between. Every item a consumer writes carries its pipeline in the key, so pipelines need not wait
 * for each other.
 */
const writeQueues = new Map<string, Promise<void>>();

async function exclusively<T>(tableName: string, pipeline: string, work: () => Promise<T>): Promise<T> {
  const queue = `${tableName}\n${pipeline}`;
  const before = writeQueues.get(queue) ?? Promise.resolve();
  let release!: () => void;
  const tail = before.then(() => new Promise<void>((resolve) => {
    release = resolve;
  }));
  writeQueues.set(queue, tail);
  await before;
  try {
    return await work();
  } finally {
    release();
    if (writeQueues.get(queue) === tail) writeQueues.delete(queue);
  }
}

type Key = { readonly pk: string; readonly sk: string };
type Item = Record<string, unknown>;

const keyText = (key: Key): string => `${key.pk}\n${key.sk}`;
const RETRYABLE_CANCELLATIONS = new Set(['TransactionConflict', 'ThrottlingError', 'ProvisionedThroughputExceeded', 'RequestLimitExceeded']);

/** On counter items written without transactions: the token of the chunk whose increment was applied last. */
const COUNTER_CHUNK_ATTRIBUTE = 'last_chunk';

/** Node's codes for a connection that failed or broke. */
const TRANSPORT_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN']);

interface AwsError {
  readonly name?: string;
  readonly code?: string;
  readonly $fault?: string;
  readonly message?: string;
  readonly CancellationReasons?: ReadonlyArray<{ readonly Code?: string; readonly Message?: string }>;
  readonly $retryable?: unknown;
}

function asAwsError(err: unknown): AwsError {
  return typeof err === 'object' && err !== null ? (err as AwsError) : { message: String(err) };
}

/** Splits events, in order, into chunks that fit one transaction (events + distinct counters ≤ 100). */
export function transactionChunks(events: readonly EventFacts[], eventsPerTransaction: number): EventFacts[][] {
  const chunks: EventFacts[][] = [];
  let current: EventFacts[] = [];
  let counters = new Set<string>();
  for (const e of events) {
    const key = counterKey(e);
    const nextCounters = counters.has(key) ? counters.size : counters.size + 1;
    if (current.length > 0 && (current.length + 1 > eventsPerTransaction || current.length + 1 + nextCounters > DYNAMO_MAX_TRANSACTION_ITEMS)) {
      chunks.push(current);
      current = [];
      counters = new Set();
    }
    current.push(e);
    counters.add(key);
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

function counterKey(e: EventFacts): string {
  return counterKeyOf(e.eventTypeKey, minuteOf(e.eventTime));
}

function counterKeyOf(eventTypeKey: string, minute: string): string {
  return `${eventTypeKey}\n${minute}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** `YYYY-MM-DDTHH:mm` of an ISO timestamp. */
export function minuteOf(iso: string): string {
  return iso.slice(0, 16);
}

export class MetadataStore {
  private transactions: 'unknown' | 'supported' | 'unsupported';
  private readonly pause: (ms: number) => Promise<void>;
  /** The batch calls of the path without transactions: retryable errors and unprocessed keys or items back off alike. */
  private readonly batches: BatchOptions;

  constructor(private readonly options: StoreOptions) {
    this.pause = options.sleep ?? sleep;
    this.batches = {
      dynamo: options.dynamo,
      tableName: options.tableName,
      concurrency: BATCH_CONCURRENCY,
      retry: { pause: (attempt, what, cause) => this.backoff(attempt, what, cause), retryable: (err) => this.isRetryable(asAwsError(err)) },
    };
    this.transactions = clientsWithoutTransactions.has(options.dynamo) ? 'unsupported' : 'unknown';
  }

  /** Whether the endpoint has no TransactWriteItems (it answered UnknownOperationException). */
  get usesSequentialFallback(): boolean {
    return this.transactions === 'unsupported';
  }

  /** Records a chunk of events (at most one per event id) and their counter contributions. */
  async recordChunk(events: readonly EventFacts[]): Promise<ChunkResult> {
    if (this.transactions !== 'unsupported') {
      try {
        return await this.recordTransactionally(events);
      } catch (err) {
        if (asAwsError(err).name !== 'UnknownOperationException') throw err;
        this.transactions = 'unsupported';
        clientsWithoutTransactions.add(this.options.dynamo);
      }
    }
    return exclusively(this.options.tableName, this.options.pipeline, () => this.recordWithoutTransactions(events));
  }

  private async recordTransactionally(events: readonly EventFacts[]): Promise<ChunkResult> {
    let pending = [...events];
    let duplicates = 0;
    let attempt = 0;
    while (pending.length > 0) {
      const counters = summedCounters(pending);
      try {
        await this.options.dynamo.send(new TransactWriteCommand({
          TransactItems: [
            ...pending.map((e) => ({ Put: this.eventPut(e) })),
            ...counters.map((c) => ({ Update: this.counterUpdate(c) })),
          ],
        }));
        this.transactions = 'supported';
        return { recorded: pending.length, duplicates };
      } catch (err) {
        const e = asAwsError(err);
        if (e.name === 'TransactionCanceledException' && e.CancellationReasons) {
          const reasons = e.CancellationReasons;
          const seen = pending.filter((_, i) => reasons[i]?.Code === 'ConditionalCheckFailed');
          if (seen.length > 0) {
            // Those events were recorded by an earlier delivery: drop them and retry the rest at once.
            duplicates += seen.length;
            pending = pending.filter((_, i) => reasons[i]?.Code !== 'ConditionalCheckFailed');
            continue;
          }
          const codes = reasons.map((r) => r.Code ?? 'None').filter((c) => c !== 'None');
          if (codes.length > 0 && codes.every((c) => RETRYABLE_CANCELLATIONS.has(c))) {
            await this.backoff(attempt++, `transaction cancelled: ${[...new Set(codes)].join(', ')}`, err);
            continue;
          }
          throw new WriteFailure(`transaction cancelled: ${reasons.map((r) => `${r.Code ?? 'None'}${r.Message ? ` (${r.Message})` : ''}`).join(', ')}`, false, { cause: err });
        }
        if (this.isRetryable(e)) {
          await this.backoff(attempt++, e.name ?? 'retryable error', err);
          continue;
        }
        throw err;
      }
    }
    return { recorded: 0, duplicates };
  }

  /**
   * Without transactions (dynalite), in the pipeline's queue for the table: the events not recorded yet
   * are written with BatchWriteItem, then the counters get the increments of those written. When a
   * write gives up, the increments of the items it did write are still added before it throws: a
   * redelivery will find those items and not count them again.
   */
  private async recordWithoutTransactions(events: readonly EventFacts[]): Promise<ChunkResult> {
    const { pipeline } = this.options;
    const keys = new Map(events.map((e) => [e, metadataKeys.event(pipeline, e.eventId)]));
    const recorded = await this.readItems([...keys.values()]);
    const fresh = events.filter((e) => !recorded.has(keyText(keys.get(e)!)));
    const { written, failure } = await this.writeItems(fresh.map((e) => this.eventPut(e).Item));
    if (failure !== undefined) {
      // A call that failed may still have been applied (an answer lost after the write): under the queue, any of
      // these items that exists now was written by this chunk, and must be counted before a redelivery calls it seen.
      const unsure = fresh.map((e) => keys.get(e)!).filter((k) => !written.has(keyText(k)));
      const found = await this.readItems(unsure).catch(() => new Map<string, Item>());
      for (const key of found.keys()) written.add(key);
    }
    const writtenEvents = fresh.filter((e) => written.has(keyText(keys.get(e)!)));
    // Every increment settles before the queue moves on (a chunk has at most one per event type and minute).
    const chunk = randomUUID();
    const counters = summedCounters(writtenEvents);
    const increments = await Promise.allSettled(counters.map((counter) => this.incrementOnce(counter, chunk)));
    const refused = increments.flatMap((r, i) => (r.status === 'rejected' ? [{ counter: counters[i], reason: r.reason as unknown }] : []));
    if (refused.length > 0) {
      const { reason } = refused[0];
      const lost = await this.takeBack(refused.map((r) => r.counter), writtenEvents, chunk).then(() => undefined, (error: unknown) => error);
      if (lost === undefined) throw reason;
      throw new WriteFailure(`${messageOf(reason)}; taking back the event items it did not count failed too (${messageOf(lost)}): those events' counts are lost`,
        reason instanceof WriteFailure ? reason.retryable : this.isRetryable(asAwsError(reason)), { cause: new AggregateError([reason, lost]) });
    }
    if (failure !== undefined) throw failure.error;
    return { recorded: writtenEvents.length, duplicates: events.length - fresh.length };
  }

  /**
   * After increments gave up: deletes the event items of those counters the increment did not reach, so the redelivery
   * the caller asks for (by reporting the records) finds them new and counts them, instead of calling them seen. An
   * increment whose answer was lost may have been applied: the counter then carries this chunk's token, and its events
   * stay. Should the read or the delete fail too, it throws: the events stay recorded and those counts are lost.
   */
  private async takeBack(counters: readonly SummedCounter[], events: readonly EventFacts[], chunk: string): Promise<void> {
    const { pipeline } = this.options;
    const keyOf = (c: SummedCounter) => metadataKeys.counter(pipeline, c.eventTypeKey, c.minute);
    const found = await this.readItems(counters.map(keyOf));
    const missed = new Set(counters.filter((c) => found.get(keyText(keyOf(c)))?.[COUNTER_CHUNK_ATTRIBUTE] !== chunk).map((c) => counterKeyOf(c.eventTypeKey, c.minute)));
    const uncounted = events.filter((e) => missed.has(counterKey(e))).map((e) => metadataKeys.event(pipeline, e.eventId));
    await batchDeleteAll(this.batches, uncounted, (k) => keyText(k as Key));
  }

  /**
   * A counter increment without transactions, applied once however its calls fail: the update also sets the
   * chunk's token on the item, on the condition that the item does not carry it yet. An attempt sent again
   * after an answer was lost (by the SDK's own retries or by these) is refused by that condition, which
   * means an earlier one was applied. Under the queue no other write reaches this counter in between, and
   * the token is new for every chunk.
   */
  private async incrementOnce(counter: SummedCounter, chunk: string): Promise<void> {
    const update = this.counterUpdate(counter, chunk);
    // A connection that broke or an endpoint that is gone is waited out: the take-back that giving up leads to would
    // meet the same endpoint, and an attempt cut off may still land after it. Throttling and errors the endpoint
    // answers with give up (MAX_WRITE_ATTEMPTS, the deadline): the endpoint is there to take the event items back.
    await this.withRetries(async () => {
      try {
        await this.options.dynamo.send(new UpdateCommand(update));
      } catch (err) {
        if (asAwsError(err).name !== 'ConditionalCheckFailedException') throw err;
      }
    }, (e) => !this.isUnreachable(e));
  }

  /** The items among `keys` that exist, by key (BatchGetItem, strongly consistent; unprocessed keys retried). */
  private async readItems(keys: readonly Key[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>();
    await batchGetAll(this.batches, keys, (k) => keyText(k as Key), (item) => found.set(keyText(item as Key), item));
    return found;
  }

  /**
   * Puts the items (BatchWriteItem; unprocessed items retried). Returns the keys written, and the
   * first failure when some could not be written before the retries ran out.
   */
  private async writeItems(items: readonly Item[]): Promise<{ written: Set<string>; failure?: { error: unknown } }> {
    const written = new Set<string>();
    try {
      await batchWriteAll(this.batches, items, (item) => keyText(item as Key), (item) => written.add(keyText(item as Key)));
      return { written };
    } catch (error) {
      return { written, failure: { error } };
    }
  }

  /**
   * Moves each entity's last-seen item forward to its newest event among `events` ("newer wins",
   * ties broken by event id), so replays and out-of-order batches never move it back.
   * Returns the entities whose update failed for good.
   */
  async updateEntities(events: readonly EventFacts[], concurrency = 8): Promise<Array<{ entity: string; error: unknown }>> {
    const newest = new Map<string, EventFacts>();
    for (const e of events) {
      if (e.entity === undefined) continue;
      const seen = newest.get(e.entity);
      if (!seen || isNewer(e, seen.eventTime, seen.eventId)) newest.set(e.entity, e);
    }
    if (this.transactions === 'unsupported') {
      return exclusively(this.options.tableName, this.options.pipeline, () => this.updateEntitiesWithoutConditions([...newest.values()]));
    }
    const failures: Array<{ entity: string; error: unknown }> = [];
    await mapWithConcurrency([...newest.values()], concurrency, async (e) => {
      try {
        await this.withRetries(async () => {
          try {
            await this.options.dynamo.send(new UpdateCommand(this.entityUpdate(e)));
          } catch (err) {
            if (asAwsError(err).name !== 'ConditionalCheckFailedException') throw err;
            // A newer event already set it: nothing to do.
          }
        });
      } catch (error) {
        failures.push({ entity: e.entity!, error });
      }
    });
    return failures;
  }

  /**
   * `updateEntities` on an endpoint without transactions, in the pipeline's queue for the table: reads
   * the last-seen items, and puts the whole item (the attributes the update sets) where the event is
   * newer, as the update's condition would decide.
   */
  private async updateEntitiesWithoutConditions(newest: readonly EventFacts[]): Promise<Array<{ entity: string; error: unknown }>> {
    const { pipeline } = this.options;
    const keyOf = (e: EventFacts) => metadataKeys.entity(pipeline, e.entity!);
    let current: Map<string, Item>;
    try {
      current = await this.readItems(newest.map(keyOf));
    } catch (error) {
      return newest.map((e) => ({ entity: e.entity!, error }));
    }
    const winners = newest.filter((e) => {
      const item = current.get(keyText(keyOf(e)));
      return item === undefined || item.last_event_time === undefined || isNewer(e, String(item.last_event_time), String(item.last_event_id));
    });
    const { written, failure } = await this.writeItems(winners.map((e) => this.entityItem(e)));
    return winners.filter((e) => !written.has(keyText(keyOf(e)))).map((e) => ({ entity: e.entity!, error: failure?.error }));
  }

  private entityItem(e: EventFacts): Item {
    const o = this.options;
    return {
      ...metadataKeys.entity(o.pipeline, e.entity!),
      pipeline: o.pipeline,
      entity: e.entity!,
      last_event_id: e.eventId,
      last_event_type: e.eventType,
      last_event_time: e.eventTime,
      last_arrival_time: e.arrivalTime,
      ttl: o.ttl,
    };
  }

  private eventPut(e: EventFacts) {
    const o = this.options;
    return {
      TableName: o.tableName,
      Item: {
        ...metadataKeys.event(o.pipeline, e.eventId),
        pipeline: o.pipeline,
        event_id: e.eventId,
        event_type: e.eventType,
        event_time: e.eventTime,
        arrival_time: e.arrivalTime,
        shard_id: e.shardId,
        sequence_number: e.sequenceNumber,
        size_bytes: e.sizeBytes,
        partition_path: e.partitionPath,
        ...(e.entity !== undefined ? { entity: e.entity } : {}),
        written_at: o.writtenAt,
        ttl: o.ttl,
      },
      ConditionExpression: 'attribute_not_exists(pk)',
    };
  }

  /** The increment of one counter item; with `chunk` (no transactions) it also records the chunk, once (`incrementOnce`). */
  private counterUpdate(c: SummedCounter, chunk?: string) {
    const o = this.options;
    const update = {
      TableName: o.tableName,
      Key: metadataKeys.counter(o.pipeline, c.eventTypeKey, c.minute),
      UpdateExpression: 'ADD #events :events, #bytes :bytes SET #pipeline = :pipeline, #eventType = :eventType, #minute = :minute, #ttl = :ttl',
      ExpressionAttributeNames: { '#events': 'events', '#bytes': 'bytes', '#pipeline': 'pipeline', '#eventType': 'event_type', '#minute': 'minute', '#ttl': 'ttl' } as Record<string, string>,
      ExpressionAttributeValues: { ':events': c.events, ':bytes': c.bytes, ':pipeline': o.pipeline, ':eventType': c.eventTypeKey, ':minute': c.minute, ':ttl': o.ttl } as Record<string, unknown>,
    };
    if (chunk === undefined) return update;
    return {
      ...update,
      UpdateExpression: `${update.UpdateExpression}, #chunk = :chunk`,
      ConditionExpression: 'attribute_not_exists(#chunk) OR #chunk <> :chunk',
      ExpressionAttributeNames: { ...update.ExpressionAttributeNames, '#chunk': COUNTER_CHUNK_ATTRIBUTE },
      ExpressionAttributeValues: { ...update.ExpressionAttributeValues, ':chunk': chunk },
    };
  }

  private entityUpdate(e: EventFacts) {
    const o = this.options;
    return {
      TableName: o.tableName,
      Key: metadataKeys.entity(o.pipeline, e.entity!),
      UpdateExpression:
        'SET #pipeline = :pipeline, #entity = :entity, #eventId = :eventId, #eventType = :eventType, #eventTime = :eventTime, #arrival = :arrival, #ttl = :ttl',
      ConditionExpression: 'attribute_not_exists(#eventTime) OR #eventTime < :eventTime OR (#eventTime = :eventTime AND #eventId <= :eventId)',
      ExpressionAttributeNames: {
        '#pipeline': 'pipeline', '#entity': 'entity', '#eventId': 'last_event_id', '#eventType': 'last_event_type',
        '#eventTime': 'last_event_time', '#arrival': 'last_arrival_time', '#ttl': 'ttl',
      },
      ExpressionAttributeValues: {
        ':pipeline': o.pipeline, ':entity': e.entity!, ':eventId': e.eventId, ':eventType': e.eventType,
        ':eventTime': e.eventTime, ':arrival': e.arrivalTime, ':ttl': o.ttl,
      },
    };
  }

  /**
   * Throttling and server errors, and the connection failing or timing out: the call may have been applied
   * (except throttling), so only calls that are safe to repeat come here, or a counter increment whose
   * condition refuses a second application (`incrementOnce`).
   */
  private isRetryable(e: AwsError): boolean {
    return RETRYABLE_ERRORS.has(e.name ?? '') || (typeof e.$retryable === 'object' && e.$retryable !== null)
      || e.$fault === 'server' || e.name === 'TimeoutError' || TRANSPORT_ERRORS.has(e.code ?? '');
  }

  /** Retries retryable errors, within MAX_WRITE_ATTEMPTS and the deadline unless `givesUp` says otherwise for the error. */
  private async withRetries<T>(work: () => Promise<T>, givesUp: (e: AwsError) => boolean = () => true): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await work();
      } catch (err) {
        const e = asAwsError(err);
        if (!this.isRetryable(e)) throw err;
        await this.backoff(attempt, e.name ?? e.code ?? 'retryable error', err, givesUp(e));
      }
    }
  }

  /** No answer from the endpoint: a broken or refused connection, a timeout, a server error. */
  private isUnreachable(e: AwsError): boolean {
    return e.name === 'TimeoutError' || TRANSPORT_ERRORS.has(e.code ?? '') || e.$fault === 'server';
  }

  /** Waits before the next attempt, or gives up (WriteFailure, retryable) when the deadline would pass. */
  private async backoff(attempt: number, reason: string, cause: unknown, givesUp = true): Promise<void> {
    const delay = backoffDelay(attempt);
    if (givesUp && (attempt + 1 >= MAX_WRITE_ATTEMPTS || performance.now() + delay >= this.options.deadline)) {
      throw new WriteFailure(`gave up after ${attempt + 1} attempt${attempt === 0 ? '' : 's'}: ${reason}`, true, { cause });
    }
    this.options.onRetry?.(reason);
    await this.pause(delay);
  }
}

interface SummedCounter {
  readonly eventTypeKey: string;
  readonly minute: string;
  readonly events: number;
  readonly bytes: number;
}

function summedCounters(events: readonly EventFacts[]): SummedCounter[] {
  const sums = new Map<string, { eventTypeKey: string; minute: string; events: number; bytes: number }>();
  for (const e of events) {
    const key = counterKey(e);
    const s = sums.get(key);
    if (s) {
      s.events++;
      s.bytes += e.sizeBytes;
    } else {
      sums.set(key, { eventTypeKey: e.eventTypeKey, minute: minuteOf(e.eventTime), events: 1, bytes: e.sizeBytes });
    }
  }
  return [...sums.values()];
}

/**
 * "Newer wins" of the last-seen item: a later event time, or the same time and an event id not lower, in
 * DynamoDB's order for strings (their UTF-8 bytes; JavaScript's `<` compares UTF-16 units, which differs
 * for characters from U+E000 up against those beyond U+FFFF).
 */
function isNewer(e: EventFacts, eventTime: string, eventId: string): boolean {
  const time = utf8Compare(eventTime, e.eventTime);
  return time < 0 || (time === 0 && utf8Compare(eventId, e.eventId) <= 0);
}

function utf8Compare(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
