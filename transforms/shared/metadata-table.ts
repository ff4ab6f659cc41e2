/**
 * The metadata table's single-table design. The CDK stack and the local twin create the table from
 * METADATA_TABLE_KEYS; the metadata consumer and the failure router write the items below. Every
 * item carries `ttl` (epoch seconds), the table's TTL attribute.
 *
 * | item                     | pk                                  | sk                  |
 * | ------------------------ | ----------------------------------- | ------------------- |
 * | event                    | `event#<pipeline>#<event id>`       | `event`             |
 * | per-minute counter       | `count#<pipeline>#<event type>`     | `YYYY-MM-DDTHH:mm`  |
 * | entity last seen         | `entity#<pipeline>#<entity id>`     | `last-seen`         |
 * | failure-router sent mark | `dlq#<dedupe key>`                  | `sent`              |
 *
 * A sent mark says the failure router's dead-letter message for that dedupe key was accepted by SQS. Its sort
 * key is `sent`, not the `claim` of the earlier claim-before-send router: a claim could belong to a message
 * that was never sent, so claims left in the table must not count as sent marks (they expire with the TTL).
 *
 * Counters are keyed by the event-time minute (UTC), so a Query on `count#<pipeline>#<type>` with
 * `sk BETWEEN` gives a time series. Their `<event type>` is the lake's partition value (`Add To Cart` →
 * `add_to_cart`, as in `event_type=` paths), while an event item's `event_type` attribute keeps the value as sent.
 * Event ids and entity ids longer than MAX_KEY_VALUE_CHARS are keyed by `keyValueOf`: their beginning, `~` and the
 * SHA-256 of the whole.
 */
import { createHash } from 'node:crypto';

export const METADATA_TABLE_KEYS = { partitionKey: 'pk', sortKey: 'sk', ttlAttribute: 'ttl' } as const;

export const metadataKeys = {
  event: (pipeline: string, eventId: string) => ({ pk: `event#${pipeline}#${eventId}`, sk: 'event' }),
  counter: (pipeline: string, eventType: string, minute: string) => ({ pk: `count#${pipeline}#${eventType}`, sk: minute }),
  entity: (pipeline: string, entityId: string) => ({ pk: `entity#${pipeline}#${entityId}`, sk: 'last-seen' }),
  dlqSent: (dedupeKey: string) => ({ pk: `dlq#${dedupeKey}`, sk: 'sent' }),
} as const;

/** `ttl` of an item written at `now` that should live `days`. */
export function ttlFrom(now: Date, days: number): number {
  return Math.floor(now.getTime() / 1000) + Math.round(days * 86_400);
}

/** DynamoDB keys are at most 2,048 bytes (partition) / 1,024 (sort); values from records are clipped to stay well within. */
export const MAX_KEY_VALUE_CHARS = 512;

/**
 * A value from a record as part of a key (an event id, an entity id): itself up to MAX_KEY_VALUE_CHARS UTF-16 units
 * (1,536 UTF-8 bytes at most); a longer one keeps its beginning and adds `~` and the SHA-256 of the whole, so two
 * long ids that begin alike stay two items (a plain cut made the second event a duplicate, its count lost).
 */
export function keyValueOf(value: string): string {
  if (value.length <= MAX_KEY_VALUE_CHARS) return value;
  const digest = createHash('sha256').update(value, 'utf8').digest('hex');
  return `${clipText(value, MAX_KEY_VALUE_CHARS - digest.length - 1)}~${digest}`;
}

/** The first `max` UTF-16 units of `text`, one fewer where the cut would split a surrogate pair (UTF-8 cannot hold half of one). */
export function clipText(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max).replace(/[\ud800-\udbff]$/, '');
}

/** How long the metadata consumer waits for one DynamoDB call when SLUICE_DYNAMO_TIMEOUT_MS does not say (the stack does). */
export const DEFAULT_DYNAMO_TIMEOUT_MS = 5_000;
