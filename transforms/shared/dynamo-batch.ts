/**
 * BatchGetItem and BatchWriteItem over any number of keys or items: split at DynamoDB's limits,
 * a few calls in flight, and what DynamoDB leaves unprocessed (throttling) called again after a
 * pause until nothing is left. Callers decide how long to wait and when to give up (`BatchRetry`),
 * and whether an error a call throws is retried too.
 */
import { BatchGetCommand, BatchWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DYNAMO_MAX_BATCH_GET_KEYS, DYNAMO_MAX_BATCH_WRITE_ITEMS } from './limits';
import { mapWithConcurrency, slices } from './retry';

export type DynamoItem = Record<string, unknown>;

export interface BatchRetry {
  /**
   * Waits before retry number `attempt` of one batch (0 for its first retry), or throws to give up.
   * `what` says what is left, e.g. "3 of 25 keys unprocessed (BatchGetItem)"; `cause` is the error
   * the call threw, when it threw.
   */
  pause(attempt: number, what: string, cause?: unknown): Promise<void>;
  /** Whether an error a call threw is retried (after `pause`) rather than thrown. @default none is */
  retryable?(error: unknown): boolean;
}

export interface BatchOptions {
  readonly dynamo: DynamoDBDocumentClient;
  readonly tableName: string;
  readonly retry: BatchRetry;
  /** Batch calls in flight at once. @default 4 */
  readonly concurrency?: number;
}

/**
 * Reads the items of `keys` that exist, strongly consistent (an eventually consistent read can miss
 * an item written moments ago), calling `found` for each. Keys that `keyOf` names alike are read
 * once (a BatchGetItem naming a key twice is refused as a whole). `attributes` limits what is read.
 */
export async function batchGetAll(
  options: BatchOptions,
  keys: readonly DynamoItem[],
  keyOf: (key: DynamoItem) => string,
  found: (item: DynamoItem) => void,
  attributes?: readonly string[],
): Promise<void> {
  const { dynamo, tableName } = options;
  const projection = attributes && attributes.length > 0
    ? { ProjectionExpression: attributes.map((_, i) => `#a${i}`).join(', '), ExpressionAttributeNames: Object.fromEntries(attributes.map((a, i) => [`#a${i}`, a])) }
    : {};
  await mapWithConcurrency(slices([...new Map(keys.map((k) => [keyOf(k), k])).values()], DYNAMO_MAX_BATCH_GET_KEYS), options.concurrency ?? 4, (batch) =>
    untilProcessed(options.retry, batch, 'keys unprocessed (BatchGetItem)', async (pending) => {
      const answer = await dynamo.send(new BatchGetCommand({ RequestItems: { [tableName]: { Keys: pending, ConsistentRead: true, ...projection } } }));
      for (const item of answer.Responses?.[tableName] ?? []) found(item);
      return (answer.UnprocessedKeys?.[tableName]?.Keys ?? []) as DynamoItem[];
    }));
}

/**
 * Puts `items`, calling `written` for each item DynamoDB processed. Items `keyOf` names alike are put once
 * (a BatchWriteItem naming one item twice is refused as a whole). Every batch is tried; the first
 * error any batch gave up with is then thrown.
 */
export function batchWriteAll(
  options: BatchOptions,
  items: readonly DynamoItem[],
  keyOf: (item: DynamoItem) => string,
  written: (item: DynamoItem) => void,
): Promise<void> {
  return batchWrite(options, 'PutRequest', items, keyOf, written);
}

/** Deletes the items of `keys` (BatchWriteItem's DeleteRequest), as batchWriteAll puts items. */
export function batchDeleteAll(options: BatchOptions, keys: readonly DynamoItem[], keyOf: (key: DynamoItem) => string): Promise<void> {
  return batchWrite(options, 'DeleteRequest', keys, keyOf, () => undefined);
}

async function batchWrite(
  options: BatchOptions,
  request: 'PutRequest' | 'DeleteRequest',
  items: readonly DynamoItem[],
  keyOf: (item: DynamoItem) => string,
  written: (item: DynamoItem) => void,
): Promise<void> {
  const { dynamo, tableName } = options;
  const byKey = new Map(items.map((item) => [keyOf(item), item]));
  const asRequest = (item: DynamoItem) => (request === 'PutRequest' ? { PutRequest: { Item: item } } : { DeleteRequest: { Key: item } });
  let failure: { error: unknown } | undefined;
  await mapWithConcurrency(slices([...byKey.values()], DYNAMO_MAX_BATCH_WRITE_ITEMS), options.concurrency ?? 4, async (batch) => {
    try {
      await untilProcessed(options.retry, batch, request === 'PutRequest' ? 'items unprocessed (BatchWriteItem)' : 'keys unprocessed (BatchWriteItem, delete)', async (pending) => {
        const answer = await dynamo.send(new BatchWriteCommand({ RequestItems: { [tableName]: pending.map(asRequest) } }));
        const unprocessed = (answer.UnprocessedItems?.[tableName] ?? [])
          .map((r) => (request === 'PutRequest' ? r.PutRequest?.Item : r.DeleteRequest?.Key))
          .filter((i): i is DynamoItem => i !== undefined);
        const left = new Set(unprocessed.map(keyOf));
        for (const item of pending) if (!left.has(keyOf(item))) written(item);
        return unprocessed;
      });
    } catch (error) {
      failure ??= { error };
    }
  });
  if (failure) throw failure.error;
}

/** Calls `call` with what is pending until it returns nothing left, pausing before each retry. */
async function untilProcessed(retry: BatchRetry, batch: DynamoItem[], unprocessed: string, call: (pending: DynamoItem[]) => Promise<DynamoItem[]>): Promise<void> {
  let pending = batch;
  for (let attempt = 0; pending.length > 0;) {
    try {
      pending = await call(pending);
    } catch (error) {
      if (!retry.retryable?.(error)) throw error;
      await retry.pause(attempt++, errorName(error), error);
      continue;
    }
    if (pending.length > 0) await retry.pause(attempt++, `${pending.length} of ${batch.length} ${unprocessed}`);
  }
}

function errorName(error: unknown): string {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : 'retryable error';
}
