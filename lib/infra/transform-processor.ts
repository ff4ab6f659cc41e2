import * as iam from 'aws-cdk-lib/aws-iam';
import type * as firehose from 'aws-cdk-lib/aws-kinesisfirehose';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { InvalidPropsError } from './errors';
import { acknowledgeWildcards } from './nag';
import { lambdaProcessorParameters, type TransformInvocation } from '../config/delivery';

export type { TransformInvocation };

/** Checks invocation settings against Firehose's ranges; returns the problems (empty when valid). */
export function transformInvocationProblems(s: TransformInvocation): string[] {
  const problems: string[] = [];
  if (!(s.bufferSizeMiB >= 0.2 && s.bufferSizeMiB <= 3)) {
    problems.push(`transform bufferSizeMiB must be 0.2–3 (Firehose's Lambda buffer hint), got ${s.bufferSizeMiB}`);
  }
  if (!Number.isInteger(s.bufferIntervalSeconds) || s.bufferIntervalSeconds < 0 || s.bufferIntervalSeconds > 900) {
    problems.push(`transform bufferIntervalSeconds must be a whole number from 0 to 900, got ${s.bufferIntervalSeconds}`);
  }
  if (!Number.isInteger(s.retries) || s.retries < 0 || s.retries > 300) {
    problems.push(`transform retries must be a whole number from 0 to 300, got ${s.retries}`);
  }
  return problems;
}

/** The Lambda processor parameters (lambdaProcessorParameters) in CloudFormation's shape. */
export function transformProcessorParameters(fn: lambda.IFunction, role: iam.IRole, s: TransformInvocation): firehose.CfnDeliveryStream.ProcessorParameterProperty[] {
  return lambdaProcessorParameters(fn.functionArn, role.roleArn, s).map(({ name, value }) => ({ parameterName: name, parameterValue: value }));
}

/**
 * Lets the delivery stream's role invoke the transform and read its configuration (both are in AWS's policy for a
 * Firehose role with a Lambda transform), and says why the grant ends in `:*`.
 */
export function grantTransformInvoke(fn: lambda.IFunction, role: iam.IRole): void {
  fn.grantInvoke(role);
  iam.Grant.addToPrincipal({ grantee: role, actions: ['lambda:GetFunctionConfiguration'], resourceArns: [fn.functionArn, `${fn.functionArn}:*`] });
  acknowledgeWildcards(role, [{
    resource: `${fn.functionArn}:*`,
    reason: 'Added by grantInvoke (and the configuration read beside it): the transform function\'s own versions and aliases, nothing else.',
  }]);
}

/** The record-transform Lambda as a Firehose processor for the L2 `S3Bucket` destination. */
export class TransformProcessor implements firehose.IDataProcessor {
  readonly props: firehose.DataProcessorProps = {};

  constructor(private readonly fn: lambda.IFunction, private readonly invocation: TransformInvocation) {
    const problems = transformInvocationProblems(invocation);
    if (problems.length > 0) throw new InvalidPropsError('TransformProcessor', problems);
  }

  bind(_scope: Construct, options: firehose.DataProcessorBindOptions): firehose.DataProcessorConfig {
    grantTransformInvoke(this.fn, options.role);
    return {
      processorType: 'Lambda',
      processorIdentifier: { parameterName: 'LambdaArn', parameterValue: this.fn.functionArn },
      parameters: transformProcessorParameters(this.fn, options.role, this.invocation),
    };
  }
}
