/** Names the handlers' metrics are published under and the stack's alarms read: one place for both. */

/** CloudWatch namespace of every Sluice metric. */
export const METRICS_NAMESPACE = 'Sluice';

/** The failure router's service name: Powertools adds it to each of its metrics as the `service` dimension. */
export const FAILURE_ROUTER_SERVICE = 'failure-router';

/** The metadata consumer's service name: Powertools adds it to each of its metrics as the `service` dimension, beside `pipeline`. */
export const METADATA_CONSUMER_SERVICE = 'metadata-consumer';

/** Metadata-consumer count of the records of a batch it reported as failed (batchItemFailures), such as DynamoDB writes that failed. */
export const RECORDS_REPORTED_FOR_RETRY = 'RecordsReportedForRetry';

/** The metadata consumer's other counts per batch: events written, events already in the table, records it could not read, DynamoDB write retries. */
export const METADATA_CONSUMER_METRICS = {
  recorded: 'EventsRecorded',
  duplicates: 'DuplicateEvents',
  malformed: 'MalformedRecords',
  writeRetries: 'WriteRetries',
} as const;

/** The record transform's service name: Powertools adds it to each of its metrics as the `service` dimension, beside `pipeline` and `destination`. */
export const RECORD_TRANSFORM_SERVICE = 'record-transform';

/** Record-transform counts per batch of the records it returned Ok, Dropped (blank) and ProcessingFailed. */
export const TRANSFORM_RECORD_METRICS = { ok: 'RecordsOk', dropped: 'RecordsDropped', failed: 'RecordsFailed' } as const;

/** The dimension the record transform adds to a second RecordsFailed per batch, one per failure category: a metric of its own. */
export const FAILURE_REASON_DIMENSION = 'reason';

/** Failure-router counts of records that stay in S3 only: error lines it cannot read, and objects damaged part-way. */
export const UNROUTED_METRICS = { unreadableLines: 'UnreadableErrorLines', damagedObjects: 'DamagedErrorObjects' } as const;
