import { CustomResource, Duration, Lazy, RemovalPolicy } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { mappingUpdateOf } from '../../transforms/index-template/existing-indices';
import type { RetentionProperty } from '../../transforms/index-template/handler';
import { deleteAfter, retentionPolicyId } from '../../transforms/index-template/retention';
import type { IndexRotation } from '../config/types';
import { openSearchIndexTemplate, type SchemaModel } from '../schema';
import { SluiceFunction } from './function';
import { acknowledgeRule, acknowledgeWildcards } from './nag';
import type { SearchDomain } from './search-domain';

/** How long a pipeline's indices are kept. */
export interface IndexRetention {
  /** Days every document stays searchable, or 'forever' (no policy: nothing deletes the indices). */
  readonly retentionDays: number | 'forever';
  /** The delivery stream's index rotation: an index is deleted once its last document is retentionDays old. */
  readonly rotation: IndexRotation;
}

export interface IndexTemplatesProps {
  readonly domain: SearchDomain;
  /** @default RemovalPolicy.DESTROY */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/**
 * Applies each search pipeline's index template (derived from its schema) and index retention (an ISM policy that
 * deletes its indices past `search.retentionDays`) to the domain at deploy time, through a custom resource whose
 * function signs its requests with SigV4 (transforms/index-template).
 */
export class IndexTemplates extends Construct {
  /** The function that applies templates (for alarms). */
  readonly function: SluiceFunction;
  private readonly provider: cr.Provider;
  private readonly domain: SearchDomain;
  private readonly pipelines: string[] = [];

  constructor(scope: Construct, id: string, props: IndexTemplatesProps) {
    super(scope, id);
    this.domain = props.domain;
    const fn = this.function = new SluiceFunction(this, 'Apply', {
      handler: 'index-template',
      description: 'Applies Sluice index templates to the OpenSearch domain (CloudFormation custom resource)',
      memoryMiB: 256,
      timeout: Duration.minutes(5),
      logRemovalPolicy: props.logRemovalPolicy,
      // Bundle the SigV4 signer rather than rely on the copy inside the runtime's AWS SDK.
      externalModules: [],
      // The function refuses events for another domain or pipeline: invoking it must not reach beyond what the stack set.
      environment: {
        SLUICE_DOMAIN_ENDPOINT: props.domain.endpointHostname,
        SLUICE_PIPELINES: Lazy.string({ produce: () => JSON.stringify(this.pipelines) }),
      },
    });

    this.provider = new cr.Provider(this, 'Provider', {
      onEventHandler: fn.function,
      logGroup: new logs.LogGroup(this, 'ProviderLogs', {
        retention: SluiceFunction.LOG_RETENTION,
        removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.DESTROY,
      }),
    });
    acknowledgeRule(this.provider, 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      'The CDK Provider framework\'s own function role; it only invokes the index-template function and writes its logs.');
    acknowledgeRule(this.provider, 'AwsSolutions-L1',
      'The CDK Provider framework picks its own function runtime; the runtime moves with aws-cdk-lib upgrades.');
    acknowledgeWildcards(this.provider, [{
      resource: `${fn.function.functionArn}:*`,
      reason: 'The Provider framework may invoke any version of the index-template function, and only that function.',
    }]);
  }

  /**
   * Applies the pipeline's index template: `index_patterns` <pipeline>-*, mappings from the schema; and puts its
   * fields to the indices that already match, so a field the schema gained is taken before the next rotation. Then
   * its retention: the ISM policy `<pipeline>-retention` for <pipeline>-* (the indices that exist included), or, kept
   * forever, no such policy (one an earlier deploy made is detached and deleted).
   */
  add(model: SchemaModel, retention: IndexRetention): CustomResource {
    const template = indexTemplateFor(model, this.domain.dataNodes);
    // Its own template only: on a shared domain, `_index_template/*` would reach every other application's templates.
    this.domain.grant(this.function.role, 'manage-templates', [`_index_template/${model.pipeline}`]);
    const mappingUpdate = mappingUpdateOf(template);
    if (mappingUpdate) this.domain.grant(this.function.role, 'update-mappings', [mappingUpdate.path]);
    const indexName = model.pipeline;
    const policyId = retentionPolicyId(indexName);
    // Also when kept forever: the function then detaches and deletes the policy an earlier deploy made.
    this.domain.grant(this.function.role, 'manage-retention-policies', [policyId]);
    this.domain.grant(this.function.role, 'apply-retention-policies', [`${indexName}-*`]);
    // Fails synth, not the deployment, on days or a rotation the function could not build a policy from.
    if (retention.retentionDays !== 'forever') deleteAfter(retention.retentionDays, retention.rotation);
    this.pipelines.push(model.pipeline);
    // What the function builds the policy from (retention.ts), not the body: it would PUT any body it was given.
    const retentionProperty: RetentionProperty = { PolicyId: policyId, IndexName: indexName, RetentionDays: retention.retentionDays, Rotation: retention.rotation };
    const resource = new CustomResource(this, `${model.pipeline}-template`, {
      serviceToken: this.provider.serviceToken,
      resourceType: 'Custom::SluiceIndexTemplate',
      properties: {
        Endpoint: this.domain.endpointHostname,
        TemplateName: model.pipeline,
        // JSON text, so numbers and booleans in the template are not turned into strings by CloudFormation.
        TemplateBody: JSON.stringify(template),
        Retention: JSON.stringify(retentionProperty),
      },
    });
    // Apply the template only once the domain's access policy names our role.
    if (this.domain.domain) resource.node.addDependency(this.domain.domain);
    return resource;
  }
}

/**
 * The schema's index template, with replicas capped at what the domain can place: a replica never shares a node
 * with its primary, so on a single-node domain (the dev size) a replica would stay unassigned and every index yellow.
 */
export function indexTemplateFor(model: SchemaModel, dataNodes: number | undefined): Record<string, unknown> {
  const template = openSearchIndexTemplate(model);
  const settings = (template.template as { settings?: Record<string, unknown> } | undefined)?.settings;
  const replicas = settings?.number_of_replicas;
  if (settings && dataNodes !== undefined && typeof replicas === 'number' && replicas > dataNodes - 1) {
    settings.number_of_replicas = Math.max(0, dataNodes - 1);
  }
  return template;
}
