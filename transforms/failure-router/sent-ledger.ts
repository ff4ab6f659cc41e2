/**
 * The failure router's ledger in the metadata table: one item per dedupe key whose dead-letter
 * message SQS accepted (`metadataKeys.dlqSent`), kept for the table's TTL. The router reads it with
 * BatchGetItem before sending and writes it with BatchWriteItem after; DynamoDB may leave part of a
 * batch unprocessed (throttling), which is retried with backoff and, past the attempts, thrown.
 */
import { BatchGetCommand, BatchWriteCommand, type BatchWriteCommandInput, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DYNAMO_MAX_BATCH_GET_KEYS, DYNAMO_MAX_BATCH_WRITE_ITEMS } from '../shared/limits';
import { METADATA_TABLE_KEYS, metadataKeys, ttlFrom } from '../shared/metadata-table';
import { backoffDelay, mapWithConcurrency, sleep, slices } from '../shared/retry';

export interface SentLedgerOptions {
  readonly dynamo: DynamoDBDocumentClient;
  readonly tableName: string;
  /** Days a sent mark lives (the table's TTL attribute). */
  readonly ttlDays: number;
  /** Calls per batch while DynamoDB leaves keys or items unprocessed. @default 8 */
  readonly attempts?: number;
  /** Batch calls in flight at once. @default 4 */
  readonly concurrency?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => Date;
}

export interface SentLedger {
  /** The dedupe keys among `dedupeKeys` that were marked sent. */
  alreadySent(dedupeKeys: readonly string[]): Promise<Set<string>>;
  /** Marks the dedupe keys sent; throws unless every mark was written. */
  markSent(dedupeKeys: readonly string[]): Promise<void>;
}

export function createSentLedger(options: SentLedgerOptions): SentLedger {
  const { dynamo, tableName, ttlDays } = options;
  const attempts = options.attempts ?? 8;
  const concurrency = options.concurrency ?? 4;
  const pause = options.sleep ?? sleep;
  const now = options.now ?? (() => new Date());
  const pk = METADATA_TABLE_KEYS.partitionKey;

  return {
    async alreadySent(dedupeKeys) {
      const sent = new Set<string>();
      // A BatchGetItem naming one key twice is refused as a whole.
      await mapWithConcurrency(slices([...new Set(dedupeKeys)], DYNAMO_MAX_BATCH_GET_KEYS), concurrency, async (batch) => {
        const dedupeKeyOf = new Map(batch.map((k) => [metadataKeys.dlqSent(k).pk, k]));
        let keys: Array<Record<string, unknown>> = batch.map((k) => metadataKeys.dlqSent(k));
        for (let attempt = 0; keys.length > 0; attempt++) {
          if (attempt > 0) await retryPause(attempt, `${keys.length} of ${batch.length} sent marks unread (BatchGetItem)`);
          const answer = await dynamo.send(new BatchGetCommand({
            // Strongly consistent: an eventually consistent read could miss marks written moments ago and send again.
            RequestItems: { [tableName]: { Keys: keys, ConsistentRead: true, ProjectionExpression: '#pk', ExpressionAttributeNames: { '#pk': pk } } },
          }));
          for (const item of answer.Responses?.[tableName] ?? []) {
            const key = dedupeKeyOf.get(String(item[pk]));
            if (key !== undefined) sent.add(key);
          }
          keys = answer.UnprocessedKeys?.[tableName]?.Keys ?? [];
        }
      });
      return sent;
    },

    async markSent(dedupeKeys) {
      const at = now();
      const attributes = { sent_at: at.toISOString(), ttl: ttlFrom(at, ttlDays) };
      // A BatchWriteItem naming one item twice is refused as a whole.
      await mapWithConcurrency(slices([...new Set(dedupeKeys)], DYNAMO_MAX_BATCH_WRITE_ITEMS), concurrency, async (batch) => {
        let requests: WriteRequests = batch.map((k) => ({ PutRequest: { Item: { ...metadataKeys.dlqSent(k), ...attributes } } }));
        for (let attempt = 0; requests.length > 0; attempt++) {
          if (attempt > 0) await retryPause(attempt, `${requests.length} of ${batch.length} sent marks unwritten (BatchWriteItem)`);
          const answer = await dynamo.send(new BatchWriteCommand({ RequestItems: { [tableName]: requests } }));
          requests = answer.UnprocessedItems?.[tableName] ?? [];
        }
      });
    },
  };

  /** Waits before retry `attempt` (1 for the first retry), or throws once the attempts are spent. */
  async function retryPause(attempt: number, left: string): Promise<void> {
    if (attempt >= attempts) throw new Error(`DynamoDB table ${tableName} left ${left} after ${attempts} attempts`);
    await pause(backoffDelay(attempt - 1));
  }
}

type WriteRequests = NonNullable<BatchWriteCommandInput['RequestItems']>[string];
