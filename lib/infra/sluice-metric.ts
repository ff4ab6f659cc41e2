import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { METRICS_NAMESPACE } from '../../transforms/shared/metric-names';

/**
 * A count a Sluice handler publishes in Embedded Metric Format, summed per 5 minutes. CloudWatch finds an EMF metric only
 * by the exact set of dimensions it was published with: Powertools' `service` and the handler's own, all given here.
 */
export function sluiceCount(metricName: string, dimensionsMap: Record<string, string>, label?: string): cloudwatch.Metric {
  return new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName, dimensionsMap, statistic: 'Sum', period: Duration.minutes(5), label });
}
