/**
 * DynamoDB's Time to Live for the twin's metadata table: dynalite keeps every item for ever, so the twin deletes the
 * expired ones itself, as DynamoDB's background process does. An item is expired when its TTL attribute is a Number
 * of epoch seconds before now and no more than five years before it (DynamoDB ignores older values); an item without
 * the attribute, or with another type there, is never touched.
 */
import { ConditionalCheckFailedException, DeleteItemCommand, ScanCommand, type AttributeValue, type DynamoDBClient, type ScanCommandOutput } from '@aws-sdk/client-dynamodb';

/** DynamoDB leaves an item whose TTL is more than five years in the past: such a value is taken for something else. */
const TTL_LOOKBACK_SECONDS = 5 * 365 * 86_400;
/**
 * DeleteItem calls in flight: DynamoDB has no conditional batch delete, and one at a time took about 10 ms each on a
 * loaded 2-core machine; 8 at once halved a sweep of 1,000 expired items (10.6 s to 5.3 s).
 */
const DELETES_AT_ONCE = 8;

export interface TtlSweepOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** The table's TTL attribute (METADATA_TABLE_KEYS.ttlAttribute, as the stack enables it). */
  readonly ttlAttribute: string;
  /** The table's key attributes: the Scan reads these and the TTL attribute only. */
  readonly keyAttributes: readonly string[];
  /** Items a Scan call reads. @default 500 */
  readonly pageSize?: number;
  /**
   * Pause after each page, at least as long as the page took, so a sweep uses at most half of dynalite's time (it runs
   * in the twin's process, beside delivery). @default 20
   */
  readonly pageGapMs?: number;
  /** Epoch milliseconds. @default Date.now */
  readonly now?: () => number;
}

export interface TtlSweepResult {
  /** Items the Scan read. */
  readonly scanned: number;
  /** Expired items deleted (those changed meanwhile to a later TTL are not). */
  readonly deleted: number;
  /** Whether the sweep stopped before the table's end because it was told to. */
  readonly stopped: boolean;
}

/**
 * One pass over the table: a paged Scan (pageSize items a call, only the keys and the TTL) and a DeleteItem per
 * expired item, conditional on its TTL still being expired, so an item the metadata consumer refreshed after the
 * page was read (a counter or a last-seen entity) stays. Ends early, between calls, once `signal` aborts.
 */
export async function sweepExpiredItems(options: TtlSweepOptions, signal?: AbortSignal): Promise<TtlSweepResult> {
  const { client, tableName, ttlAttribute, keyAttributes } = options;
  const pageSize = options.pageSize ?? 500;
  const pageGapMs = options.pageGapMs ?? 20;
  const now = options.now ?? Date.now;
  const names: Record<string, string> = { '#ttl': ttlAttribute };
  keyAttributes.forEach((k, i) => (names[`#k${i}`] = k));
  const projection = ['#ttl', ...keyAttributes.map((_, i) => `#k${i}`)].join(', ');
  let scanned = 0;
  let deleted = 0;
  let startKey: Record<string, AttributeValue> | undefined;
  do {
    if (signal?.aborted) return { scanned, deleted, stopped: true };
    const began = performance.now();
    const nowSeconds = Math.floor(now() / 1000);
    // DynamoDB compares only values of one type: a String or Binary TTL matches neither bound.
    const expired = { ':now': { N: String(nowSeconds) }, ':oldest': { N: String(nowSeconds - TTL_LOOKBACK_SECONDS) } };
    // A stop aborts the call in flight rather than wait for it (a stalled dynalite would hold the twin's stop for
    // the client's timeouts and retries).
    let page: ScanCommandOutput;
    try {
      page = await client.send(new ScanCommand({
        TableName: tableName,
        Limit: pageSize,
        ProjectionExpression: projection,
        FilterExpression: '#ttl < :now AND #ttl >= :oldest',
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: expired,
        ExclusiveStartKey: startKey,
      }), { abortSignal: signal });
    } catch (e) {
      if (signal?.aborted) return { scanned, deleted, stopped: true };
      throw e;
    }
    scanned += page.ScannedCount ?? 0;
    const expiredItems = (page.Items ?? []).filter((item) => item[ttlAttribute]?.N !== undefined);
    for (let i = 0; i < expiredItems.length; i += DELETES_AT_ONCE) {
      if (signal?.aborted) return { scanned, deleted, stopped: true };
      const deletes = expiredItems.slice(i, i + DELETES_AT_ONCE).map(async (item) => {
        try {
          await client.send(new DeleteItemCommand({
            TableName: tableName,
            Key: Object.fromEntries(keyAttributes.map((k) => [k, item[k]])),
            ConditionExpression: '#ttl < :now AND #ttl >= :oldest',
            ExpressionAttributeNames: { '#ttl': ttlAttribute },
            ExpressionAttributeValues: expired,
          }), { abortSignal: signal });
          return 1;
        } catch (e) {
          // Written again since the page was read, with a later TTL or none: it is no longer expired.
          if (e instanceof ConditionalCheckFailedException) return 0;
          // Aborted by a stop: whether it was applied is unknown, and the next sweep finds it if not.
          if (signal?.aborted) return 0;
          throw e;
        }
      });
      // Every call settles before the next chunk (or a stop): none is left running.
      const settled = await Promise.allSettled(deletes);
      for (const s of settled) if (s.status === 'fulfilled') deleted += s.value;
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw failed.reason;
      if (signal?.aborted) return { scanned, deleted, stopped: true };
    }
    startKey = page.LastEvaluatedKey;
    if (startKey !== undefined) await pause(Math.max(pageGapMs, performance.now() - began), signal);
  } while (startKey !== undefined);
  return { scanned, deleted, stopped: false };
}

export interface TtlSweeperOptions extends TtlSweepOptions {
  /** From the end of one sweep to the start of the next. @default TTL_SWEEP_INTERVAL_MS */
  readonly intervalMs?: number;
  readonly log: (line: string) => void;
}

/** How often the twin sweeps its metadata table: DynamoDB deletes within about two days of expiry; the twin within the hour. */
export const TTL_SWEEP_INTERVAL_MS = 60 * 60_000;

/**
 * Sweeps at start() and then intervalMs after each sweep ends, never two at once. A failed sweep (dynalite down or
 * refusing) is said once, not again until a sweep works, and tried again at the next interval. Its timers do not keep
 * the process alive; stop() ends the sweep in hand between two calls and waits for it.
 */
export class TtlSweeper {
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;

  constructor(private readonly options: TtlSweeperOptions) {}

  start(): void {
    this.sweep();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    clearTimeout(this.timer);
    await this.running;
  }

  private sweep(): void {
    if (this.stopping.signal.aborted) return;
    this.running = (async () => {
      const began = performance.now();
      try {
        const { scanned, deleted, stopped } = await sweepExpiredItems(this.options, this.stopping.signal);
        if (this.failing && !stopped) {
          this.options.log(`sluice: the metadata table's TTL sweep works again (${this.options.tableName})`);
          this.failing = false;
        }
        if (deleted > 0 && !stopped) {
          this.options.log(`sluice: deleted ${deleted.toLocaleString('en-US')} expired item${deleted === 1 ? '' : 's'} (TTL) of ${scanned.toLocaleString('en-US')} in the metadata table`
            + ` ${this.options.tableName}, in ${((performance.now() - began) / 1000).toFixed(1)} s`);
        }
      } catch (e) {
        if (!this.failing && !this.stopping.signal.aborted) {
          this.options.log(`sluice: the metadata table's TTL sweep failed (${(e as Error).message}): its expired items stay until`
            + ' a sweep works; it is tried again every interval, and this is not said again until one has worked');
        }
        this.failing = true;
      }
      if (this.stopping.signal.aborted) return;
      this.timer = setTimeout(() => this.sweep(), this.options.intervalMs ?? TTL_SWEEP_INTERVAL_MS).unref();
    })();
  }
}

/** Waits `ms`, or less once `signal` aborts; the timer does not keep the process alive. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms).unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}
