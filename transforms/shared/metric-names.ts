/** Names the handlers' metrics are published under and the stack's alarms read: one place for both. */

/** CloudWatch namespace of every Sluice metric. */
export const METRICS_NAMESPACE = 'Sluice';

/** The failure router's service name: Powertools adds it to each of its metrics as the `service` dimension. */
export const FAILURE_ROUTER_SERVICE = 'failure-router';

/** The metadata consumer's service name: Powertools adds it to each of its metrics as the `service` dimension, beside `pipeline`. */
export const METADATA_CONSUMER_SERVICE = 'metadata-consumer';

/** Metadata-consumer count of the records of a batch it reported as failed (batchItemFailures), such as DynamoDB writes that failed. */
export const RECORDS_REPORTED_FOR_RETRY = 'RecordsReportedForRetry';

/** Failure-router counts of records that stay in S3 only: error lines it cannot read, and objects damaged part-way. */
export const UNROUTED_METRICS = { unreadableLines: 'UnreadableErrorLines', damagedObjects: 'DamagedErrorObjects' } as const;
