/**
 * Delivery stream settings the stack writes and the local twin describes alike (DescribeDeliveryStream), with no
 * CDK in them, so the twin can read them without loading aws-cdk-lib.
 */

/** How Firehose calls the transform Lambda. */
export interface TransformInvocation {
  /** Buffer hint before invoking the function, MiB (Firehose: 0.2–3). */
  readonly bufferSizeMiB: number;
  /** Buffer interval before invoking the function, seconds (Firehose: 0–900). */
  readonly bufferIntervalSeconds: number;
  /** Retries of a failed invocation before its records become processing-failed (Firehose: 0–300). */
  readonly retries: number;
}

export type LambdaProcessorParameterName = 'LambdaArn' | 'RoleArn' | 'BufferSizeInMBs' | 'BufferIntervalInSeconds' | 'NumberOfRetries';

/**
 * The Lambda processor's parameters, every one written out, in the order the stack writes them. (The L2
 * `LambdaFunctionProcessor` leaves out `retries: 0` and cannot express a buffer hint below 1 MiB, so a configured
 * value could silently become the service default.)
 */
export function lambdaProcessorParameters(
  functionArn: string,
  roleArn: string,
  s: TransformInvocation,
): Array<{ readonly name: LambdaProcessorParameterName; readonly value: string }> {
  return [
    { name: 'LambdaArn', value: functionArn },
    { name: 'RoleArn', value: roleArn },
    { name: 'BufferSizeInMBs', value: String(s.bufferSizeMiB) },
    { name: 'BufferIntervalInSeconds', value: String(s.bufferIntervalSeconds) },
    { name: 'NumberOfRetries', value: String(s.retries) },
  ];
}

/**
 * Partitions a delivery stream with dynamic partitioning may hold open at once: Firehose's default quota per stream,
 * raised on request up to 5,000. Records past it go to the error prefix as activePartitionExceeded.
 */
export const ACTIVE_PARTITION_QUOTA = 500;

/** How long the lake's delivery stream retries a partition before its records become error objects, seconds. */
export const LAKE_RETRY_SECONDS = 300;
