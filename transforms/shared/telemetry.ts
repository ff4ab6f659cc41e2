/**
 * Structured logs and Embedded Metric Format metrics, the Powertools way: one JSON object per line,
 * metrics flushed once per batch as EMF (no CloudWatch API call per record).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';

export { Logger, Metrics, MetricUnit };

import { METRICS_NAMESPACE } from './metric-names';

export { METRICS_NAMESPACE };

export interface Telemetry {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Dimensions every metric of this handler carries (e.g. pipeline). */
  readonly dimensions: Readonly<Record<string, string>>;
}

/**
 * Logger and metrics of one handler. A given logger is used through a child that carries the
 * dimensions as keys; a given Metrics instance may be shared (the local twin runs many handlers in
 * one process), so dimensions are added per publication rather than as its defaults.
 */
export function createTelemetry(
  serviceName: string,
  dimensions: Readonly<Record<string, string>>,
  given: { readonly logger?: Logger; readonly metrics?: Metrics } = {},
): Telemetry {
  const logger = given.logger ? given.logger.createChild({ persistentKeys: { ...dimensions } }) : new Logger({ serviceName, persistentKeys: { ...dimensions } });
  const metrics = given.metrics ?? new Metrics({ namespace: METRICS_NAMESPACE, serviceName });
  return { logger, metrics, dimensions };
}

/** Publishes counts as one EMF line with the handler's dimensions. */
export function publishCounts(t: Telemetry, counts: Readonly<Record<string, number>>): void {
  for (const [name, value] of Object.entries(t.dimensions)) t.metrics.addDimension(name, value);
  for (const [metric, value] of Object.entries(counts)) t.metrics.addMetric(metric, MetricUnit.Count, value);
  t.metrics.publishStoredMetrics();
}

/** Publishes one count per value of a dimension (e.g. failures per reason), each as its own EMF line. */
export function publishCountsBy(t: Telemetry, metric: string, dimension: string, counts: ReadonlyMap<string, number>): void {
  for (const [value, count] of counts) {
    if (count === 0) continue;
    const single = t.metrics.singleMetric();
    for (const [name, v] of Object.entries(t.dimensions)) single.addDimension(name, v);
    single.addDimension(dimension, value);
    single.addMetric(metric, MetricUnit.Count, count);
  }
}

/** The message of anything thrown, for a log line. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
