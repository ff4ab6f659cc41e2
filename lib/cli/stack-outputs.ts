/**
 * A deployed stack's CloudFormation outputs: how `--aws` finds what CloudFormation named (the data
 * bucket, the queues, the workgroup, the OpenSearch endpoint). Names Sluice decides itself (streams,
 * delivery streams, Glue database and tables) come from the configuration, as the stack's do.
 */
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import type { SluiceConfig } from '../config';
import { explainFailure } from './errors';
import { UserError } from './output';
import { io } from './progress';
import { untilAborted } from './sleep';
import { OutputKeys, pipelineOutputKey, stackName } from '../infra/outputs';

export { OutputKeys, pipelineOutputKey };

/** The stack `cdk deploy` creates for a configuration (lib/infra/outputs.ts), unless --stack or SLUICE_STACK says otherwise. */
export function defaultStackName(config: Pick<SluiceConfig, 'prefix' | 'env'>): string {
  return process.env.SLUICE_STACK || stackName(config);
}

export class StackOutputs {
  private constructor(readonly stackName: string, readonly region: string, private readonly values: ReadonlyMap<string, string>) {}

  /**
   * Reads the outputs of a stack; a stack that is missing or not deployed is a UserError. When `signal` aborts, the
   * CloudFormation call is abandoned and the read rejects with `signal.reason`, for the caller to say what timed out.
   */
  static async load(client: CloudFormationClient, stackName: string, signal?: AbortSignal): Promise<StackOutputs> {
    signal?.throwIfAborted();
    const region = await client.config.region().catch((err: unknown) => {
      throw explainFailure(err, { service: 'CloudFormation' });
    });
    let response;
    try {
      response = await untilAborted(client.send(new DescribeStacksCommand({ StackName: stackName }), { abortSignal: signal }), signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const e = err as { name?: string; message?: string };
      if (e.name === 'ValidationError' && /does not exist/i.test(e.message ?? '')) {
        throw new UserError(`stack "${stackName}" does not exist in ${region}: deploy it with \`npx cdk deploy\`, or name yours with --stack NAME (or --region)`);
      }
      throw explainFailure(err, { service: 'CloudFormation', resource: `stack ${stackName}` });
    }
    const stack = response.Stacks?.[0];
    if (!stack) throw new UserError(`stack "${stackName}" does not exist in ${region}: deploy it with \`npx cdk deploy\``);
    // Outputs of a stack being created, rolled back or deleted name nothing usable; an update keeps them.
    const status = stack.StackStatus ?? '';
    // A change set created the stack and none was executed: nothing of it is deployed.
    if (status === 'REVIEW_IN_PROGRESS') {
      throw new UserError(`stack "${stackName}" was never deployed (REVIEW_IN_PROGRESS: a change set created it and none was executed): deploy it with \`npx cdk deploy\``);
    }
    if (/^(CREATE_IN_PROGRESS|CREATE_FAILED|ROLLBACK_|DELETE_)/.test(status)) {
      throw new UserError(`stack "${stackName}" is ${status}; wait for (or redo) a successful \`npx cdk deploy\``);
    }
    // Its outputs are used, but its resources may be half of one update and half of another.
    if (status === 'UPDATE_ROLLBACK_FAILED') {
      io.err(`sluice: warning: stack "${stackName}" is UPDATE_ROLLBACK_FAILED: its resources may not match its outputs. Continue the rollback `
        + `(aws cloudformation continue-update-rollback --stack-name ${stackName}) and deploy again`);
    }
    const values = new Map<string, string>();
    for (const o of stack.Outputs ?? []) {
      if (o.OutputKey && o.OutputValue !== undefined) values.set(o.OutputKey, o.OutputValue);
    }
    return new StackOutputs(stackName, region, values);
  }

  get(key: string): string | undefined {
    return this.values.get(key);
  }

  /** The output, or a UserError naming the stack, the key and what needs it. */
  require(key: string, neededFor: string): string {
    const value = this.values.get(key);
    if (value === undefined || value === '') {
      throw new UserError(`stack "${this.stackName}" has no output ${key}, which ${neededFor} needs: redeploy with this version of Sluice (\`npx cdk deploy\`)`);
    }
    return value;
  }
}
