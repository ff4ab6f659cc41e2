import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct } from 'constructs';
import { sluiceCount } from './sluice-metric';
import type { TransformConfig } from '../config';
import { FAILURE_REASON_DIMENSION, RECORD_TRANSFORM_SERVICE, TRANSFORM_RECORD_METRICS } from '../../transforms/shared/metric-names';
import type { FailureCategory } from '../../transforms/shared/record';
import { SluiceFunction } from './function';
import type { PiiHashKey } from './pii-hash-key';

export interface RecordTransformProps {
  readonly pipeline: string;
  /** Which delivery the function serves: the handler shapes records and partition keys for it. */
  readonly destination: 'lake' | 'search';
  /** Memory and timeout. */
  readonly transform: Pick<TransformConfig, 'memoryMiB' | 'timeoutSeconds'>;
  /** The keyed-hash key, for pipelines whose schema masks PII with "hash". @default - the pipeline hashes no PII */
  readonly piiHashKey?: PiiHashKey;
  /** @default RemovalPolicy.DESTROY */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/** The record-transform Lambda (transforms/record-transform) of one pipeline and destination, invoked by Firehose. */
export class RecordTransform extends SluiceFunction {
  readonly pipeline: string;
  readonly destination: 'lake' | 'search';

  constructor(scope: Construct, id: string, props: RecordTransformProps) {
    super(scope, id, {
      handler: 'record-transform',
      description: `Sluice ${props.pipeline}: validates, masks and enriches records for ${props.destination === 'lake' ? 'the lake' : 'OpenSearch'}`,
      memoryMiB: props.transform.memoryMiB,
      timeout: Duration.seconds(props.transform.timeoutSeconds),
      logRemovalPolicy: props.logRemovalPolicy,
      environment: {
        SLUICE_PIPELINE: props.pipeline,
        SLUICE_DESTINATION: props.destination,
        ...(props.piiHashKey ? { SLUICE_PII_HASH_KEY_SECRET_ARN: props.piiHashKey.secret.secretArn } : {}),
      },
    });
    props.piiHashKey?.grantRead(this.role);
    this.pipeline = props.pipeline;
    this.destination = props.destination;
  }

  /**
   * Records of its batches by the result it returned, per 5 minutes (its EMF metrics): Ok, Dropped (blank records) or
   * ProcessingFailed, which Firehose writes to the error prefix and the failure router sends to the dead-letter queue.
   */
  metricRecords(result: keyof typeof TRANSFORM_RECORD_METRICS): cloudwatch.Metric {
    return this.emfCount(TRANSFORM_RECORD_METRICS[result], {}, result);
  }

  /** Records it failed for one reason (a failure category), per 5 minutes: published only when some did. */
  metricRecordsFailedFor(reason: FailureCategory): cloudwatch.Metric {
    return this.emfCount(TRANSFORM_RECORD_METRICS.failed, { [FAILURE_REASON_DIMENSION]: reason }, reason);
  }

  private emfCount(metricName: string, extra: Record<string, string>, label: string): cloudwatch.Metric {
    return sluiceCount(metricName, { service: RECORD_TRANSFORM_SERVICE, pipeline: this.pipeline, destination: this.destination, ...extra }, `${this.destination}: ${label}`);
  }
}
