/**
 * CloudFormation declares at most 500 resources in one template, and CDK refuses to synthesize a stack with more
 * (`@aws-cdk/core:stackResourceLimit` sets the number it checks). Every pipeline adds its own resources (stream,
 * functions, roles, delivery streams, Glue tables, saved queries and about twenty alarms), so a configuration with
 * enough pipelines would stop there, with CDK's error naming resource types only. This check runs first and says what
 * each pipeline costs and how to split the pipelines over two stacks.
 */
import { CfnResource, Stack, STACK_RESOURCE_LIMIT_CONTEXT } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import type { SluiceConfig } from '../config';

/** CloudFormation's quota of resources per template (and CDK's default check). */
export const CLOUDFORMATION_RESOURCE_LIMIT = 500;

/** How many resources a stack may hold: CDK's own setting when the app sets one (0 turns the check off), else 500. */
function resourceLimit(stack: Stack): number {
  const setting = stack.node.tryGetContext(STACK_RESOURCE_LIMIT_CONTEXT) as unknown;
  return setting === undefined ? CLOUDFORMATION_RESOURCE_LIMIT : parseInt(String(setting), 10);
}

/**
 * The pipeline a resource belongs to: the one whose name is a segment of its construct path, or begins one followed by
 * "-" (`Monitoring/iot-lake-freshness`, `Catalog/iot-table`); the longest such name, so `iot-eu` is not `iot`'s.
 */
function ownerOf(resource: IConstruct, stack: Stack, pipelines: readonly string[]): string | undefined {
  let owner: string | undefined;
  for (const scope of resource.node.scopes.slice(resource.node.scopes.indexOf(stack) + 1)) {
    const id = scope.node.id;
    for (const name of pipelines) {
      if ((id === name || id.startsWith(`${name}-`)) && name.length > (owner?.length ?? 0)) owner = name;
    }
  }
  return owner;
}

/**
 * Why `stack` cannot be deployed as one CloudFormation stack, or undefined when its resources fit. Run it as a
 * validation (`node.addValidation`): CDK has added every resource, its metadata one included, by then.
 */
export function resourceBudgetProblem(stack: Stack, config: Pick<SluiceConfig, 'prefix' | 'env' | 'pipelines'>): string | undefined {
  const pipelines = Object.keys(config.pipelines);
  const limit = resourceLimit(stack);
  const resources = stack.node.findAll().filter((c) => CfnResource.isCfnResource(c) && Stack.of(c) === stack);
  if (!(limit > 0) || resources.length <= limit) return undefined;
  const perPipeline = new Map(pipelines.map((p) => [p, 0]));
  let shared = 0;
  for (const resource of resources) {
    const owner = ownerOf(resource, stack, pipelines);
    if (owner === undefined) shared++;
    else perPipeline.set(owner, perPipeline.get(owner)! + 1);
  }
  // The pipelines that fit, taken in configuration order; the rest go to a second stack.
  let used = shared;
  const moved: string[] = [];
  for (const [name, count] of perPipeline) {
    if (used + count <= limit) used += count;
    else moved.push(name);
  }
  const counts = [...perPipeline].map(([name, count]) => `${name} ${count}`).join(', ');
  // A prefix the configuration accepts (at most 20 characters).
  const otherPrefix = `${config.prefix.slice(0, 19)}2`;
  const one = moved.length === 1;
  return `${stack.stackName} would declare ${resources.length} CloudFormation resources; one stack may declare at most ${limit}. `
    + `The stack itself takes ${shared} (bucket, keys, queues, failure router, dashboard, shared alarms) and each pipeline its own: ${counts}. `
    + `Deploy ${one ? 'the pipeline that does not fit' : 'the pipelines that do not fit'} (${moved.join(', ')}) as a second Sluice stack `
    + `with a prefix of its own, e.g. \`npx cdk deploy -c prefix=${otherPrefix} -c 'pipelines={"${moved[0]}":{…}}'\` with ${one ? 'its' : 'their'} settings `
    + `(the stack ${otherPrefix}-${config.env}, with its own bucket, Glue database and alarms), and remove ${one ? 'it' : 'them'} from this configuration's pipelines.`;
}
