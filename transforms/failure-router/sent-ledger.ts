/**
 * The failure router's ledger in the metadata table: one item per dedupe key whose dead-letter
 * message SQS accepted (`metadataKeys.dlqSent`), kept for the table's TTL. The router reads it with
 * BatchGetItem before sending and writes it with BatchWriteItem after; DynamoDB may leave part of a
 * batch unprocessed (throttling), which is retried with backoff and, past the attempts, thrown.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { batchGetAll, batchWriteAll, type BatchOptions, type DynamoItem } from '../shared/dynamo-batch';
import { METADATA_TABLE_KEYS, metadataKeys, ttlFrom } from '../shared/metadata-table';
import { backoffDelay, sleep } from '../shared/retry';

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

  const batches: BatchOptions = {
    dynamo,
    tableName,
    concurrency,
    retry: {
      // Thrown errors are not retried here: they fail the invocation, and its retry starts over.
      async pause(attempt, what) {
        if (attempt + 1 >= attempts) throw new Error(`DynamoDB table ${tableName} left ${what} after ${attempts} attempts`);
        await pause(backoffDelay(attempt));
      },
    },
  };
  const dedupeKeyOf = (item: DynamoItem): string => String(item[pk]).slice(metadataKeys.dlqSent('').pk.length);

  return {
    async alreadySent(dedupeKeys) {
      const sent = new Set<string>();
      await batchGetAll(batches, dedupeKeys.map((k) => metadataKeys.dlqSent(k)), (key) => String(key[pk]), (item) => sent.add(dedupeKeyOf(item)), [pk]);
      return sent;
    },

    async markSent(dedupeKeys) {
      const at = now();
      const attributes = { sent_at: at.toISOString(), ttl: ttlFrom(at, ttlDays) };
      const items = dedupeKeys.map((k) => ({ ...metadataKeys.dlqSent(k), ...attributes }));
      await batchWriteAll(batches, items, (item) => String(item[pk]), () => undefined);
    },
  };
}
