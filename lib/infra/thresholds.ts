// Numbers the stack and the CLI share, in a module that loads no CDK (the CLI's replay quotes them).

/** How long a dead-letter queue keeps a message, days: SQS's maximum. */
export const DLQ_RETENTION_DAYS = 14;

/**
 * Thresholds, in one place so the docs and tests can quote them. Periods are 5 minutes unless noted.
 */
export const ALARM_THRESHOLDS = {
  /** Kinesis: oldest unread record of the polling (Firehose) readers, and of the EFO consumer. */
  iteratorAgeMs: 10 * 60 * 1000,
  /** Fraction of a function's timeout that its longest invocation may reach. */
  durationShareOfTimeout: 0.8,
  /** Free storage of the fullest OpenSearch node, as a share of its volume. */
  freeStorageShare: 0.25,
  /** Data freshness may exceed the buffering interval by this much before it alarms (conversion and partitioning add latency). */
  freshnessSlackSeconds: 900,
  /** Oldest message of the dead-letter and failed-events queues: 4 days before SQS deletes it (DLQ_RETENTION, 14 days), time to act. */
  deadLetterAgeSeconds: (DLQ_RETENTION_DAYS - 4) * 24 * 3600,
  /**
   * Oldest consumer dead letter, as a share of the time its range has left when it arrives: the stream's retention less the
   * consumer's maximum record age (records may be that old when given up), the shortest over the pipelines with a consumer.
   */
  consumerDeadLetterShareOfWindow: 0.5,
  /**
   * A reader of a stream is stalled when the stream received records and the reader took none, in each of 2 periods of
   * this many minutes running (30 minutes): longer than a consumer's batching window and Firehose's 5-minute metrics.
   */
  readerStallPeriodMinutes: 15,
  /** Share of the records a transform returned that it failed (ProcessingFailed), percent, in 2 of 3 periods. */
  transformFailedPercent: 5,
  /** Share of its active-partition quota (buffering.activePartitionQuota) a lake stream may hold open before it warns. */
  partitionQuotaShare: 0.8,
} as const;
