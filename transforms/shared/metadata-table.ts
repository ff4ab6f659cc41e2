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
 */

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

/** How long the metadata consumer waits for one DynamoDB call when SLUICE_DYNAMO_TIMEOUT_MS does not say (the stack does). */
export const DEFAULT_DYNAMO_TIMEOUT_MS = 5_000;
