/** Names the handlers' metrics are published under and the stack's alarms read: one place for both. */

/** CloudWatch namespace of every Sluice metric. */
export const METRICS_NAMESPACE = 'Sluice';

/** The failure router's service name: Powertools adds it to each of its metrics as the `service` dimension. */
export const FAILURE_ROUTER_SERVICE = 'failure-router';

/** Failure-router counts of records that stay in S3 only: error lines it cannot read, and objects damaged part-way. */
export const UNROUTED_METRICS = { unreadableLines: 'UnreadableErrorLines', damagedObjects: 'DamagedErrorObjects' } as const;
