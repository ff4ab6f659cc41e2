import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import type { TransformConfig } from '../config';
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
  }
}
