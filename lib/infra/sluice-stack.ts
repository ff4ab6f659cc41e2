import { Annotations, CfnOutput, CfnResource, Duration, RemovalPolicy, Size, Stack, Tags, type StackProps } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { resourceNames, unconfiguredSchemaWarnings, type PipelineConfig, type SluiceConfig } from '../config';
import { loadModel, type SchemaModel } from '../schema';
import { AthenaWorkspace } from './athena-workspace';
import { DataStorage } from './data-storage';
import { assertValidProps } from './errors';
import { FailureRouter } from './failure-router';
import { retainHandlerLogs } from './function';
import { IndexTemplates } from './index-templates';
import { ERRORS_TABLE_SUFFIX } from '../schema/layout';
import { validatorFingerprint } from '../schema/fingerprint';
import { LakeCatalog } from './lake-catalog';
import { LakeDelivery } from './lake-delivery';
import { MetadataConsumer } from './metadata-consumer';
import { MetadataStore } from './metadata-store';
import { OutputKeys, pipelineOutputKey, type PipelineOutput } from './outputs';
import { PiiHashKey } from './pii-hash-key';
import { PipelineDashboard, type MonitoredPipeline } from './pipeline-dashboard';
import { PipelineStream } from './pipeline-stream';
import { RecordTransform } from './record-transform';
import { resourceBudgetProblem } from './resource-budget';
import { SearchDelivery } from './search-delivery';
import { SearchDomain } from './search-domain';
import { processorBufferWarnings } from '../../transforms/record-transform/response-budget';

export interface SluiceStackProps extends StackProps {
  readonly config: SluiceConfig;
  /** Schema models by pipeline name. @default - read from schemas/<pipeline>.schema.json */
  readonly models?: Readonly<Record<string, SchemaModel>>;
}

/**
 * The deployable Sluice pipeline: composes one construct per concern for every configured pipeline and publishes
 * the outputs the CLI reads (lib/infra/outputs.ts). Physical names come from the configuration (resourceNames).
 */
export class SluiceStack extends Stack {
  constructor(scope: Construct, id: string, props: SluiceStackProps) {
    super(scope, id, props);
    const { config } = props;
    const removalPolicy = config.removalPolicy === 'retain' ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;
    const pipelines = Object.values(config.pipelines);
    assertValidProps(this, pipelines.length === 0 ? ['the configuration has no pipelines'] : outputKeyClashes(pipelines));
    // At synth, once every resource is in the tree: more than one stack may hold is an error that says how to split.
    this.node.addValidation({ validate: () => [resourceBudgetProblem(this, config)].filter((p): p is string => p !== undefined) });
    const models = new Map(pipelines.map((p) => [p.name, props.models?.[p.name] ?? loadModel(p.name)]));
    const model = (p: PipelineConfig): SchemaModel => models.get(p.name)!;
    // Stack-wide names do not depend on the pipeline.
    const shared = resourceNames(config, pipelines[0].name);
    const has = (p: PipelineConfig, d: 'lake' | 'search' | 'metadata') => p.destinations.includes(d);
    // For cost allocation. Not on dashboards: their Tags property is newer than some regions' CloudFormation schema.
    Tags.of(this).add('sluice:stack', id, { excludeResourceTypes: ['AWS::CloudWatch::Dashboard'] });

    const storage = new DataStorage(this, 'Storage', { ...config.lifecycle, removalPolicy });
    const hashesPii = (p: PipelineConfig) => Object.values(model(p).extensions.pii).includes('hash');
    const piiKey = pipelines.some(hashesPii) ? new PiiHashKey(this, 'PiiHashKey', { key: storage.key, removalPolicy }) : undefined;

    const lakePipelines = pipelines.filter((p) => has(p, 'lake'));
    const catalog = new LakeCatalog(this, 'Catalog', {
      databaseName: shared.glueDatabase,
      bucket: storage.bucket,
      pipelines: lakePipelines.map((p) => ({ model: model(p), tableName: resourceNames(config, p.name).glueTable })),
    });
    const athena = new AthenaWorkspace(this, 'Athena', {
      workGroupName: shared.athenaWorkGroup,
      databaseName: shared.glueDatabase,
      bucket: storage.bucket,
      key: storage.key,
      bytesScannedCutoffMiB: config.athena.bytesScannedCutoffMiB,
      // Query history and saved queries are not data (results stay in the bucket); never let them block `cdk destroy`.
      deleteWithContents: true,
      pipelines: lakePipelines.map((p) => {
        const table = resourceNames(config, p.name).glueTable;
        return { model: model(p), tableName: table, errorTableName: table + ERRORS_TABLE_SUFFIX };
      }),
    });

    const metadata = new MetadataStore(this, 'Metadata', { consumerDlqName: shared.consumerDlq, key: storage.key, removalPolicy });
    const failures = new FailureRouter(this, 'Failures', {
      bucket: storage.bucket,
      table: metadata.table,
      dlqName: shared.dlq,
      failedEventsQueueName: shared.routerFailedEvents,
      key: storage.key,
      ledgerTtlDays: config.metadata.ttlDays,
      removalPolicy,
    });

    const searchPipelines = pipelines.filter((p) => has(p, 'search'));
    let searchDomain: SearchDomain | undefined;
    let indexTemplates: IndexTemplates | undefined;
    if (searchPipelines.length > 0) {
      const os = config.opensearch;
      searchDomain = new SearchDomain(this, 'Search', os.mode === 'existing'
        ? { existing: { endpoint: os.endpoint ?? '', domainArn: os.domainArn ?? '' } }
        : { create: { domainName: resourceNames(config, '').searchDomain, engineVersion: os.engineVersion, instanceType: os.instanceType, instanceCount: os.instanceCount, volumeGiB: os.volumeGiB, removalPolicy } });
      indexTemplates = new IndexTemplates(this, 'IndexTemplates', { domain: searchDomain, logRemovalPolicy: removalPolicy });
    }

    const monitored: MonitoredPipeline[] = [];
    const outputs: Array<[string, string, string]> = [];
    for (const p of pipelines) {
      const names = resourceNames(config, p.name);
      const scope = new Construct(this, p.name);
      for (const warning of processorBufferWarnings({ pipelines: { [p.name]: p } })) Annotations.of(scope).addWarningV2('@sluice/processor-buffer-response', warning);
      // What the schema becomes outside the code: the Glue table Firehose converts by, and the index template and
      // mapping. A deploy updates them before the transform code that may emit a new field, or Firehose's conversion
      // would drop the column the table lacks and the strict mapping would refuse the documents.
      const schemaArtifacts: Construct[] = [];
      if (has(p, 'lake')) schemaArtifacts.push(catalog.table(p.name));
      const template = has(p, 'search') ? indexTemplates!.add(model(p), { retentionDays: p.search.retentionDays, rotation: p.search.rotation }) : undefined;
      if (template) schemaArtifacts.push(template);
      const transformFor = (destination: 'lake' | 'search') => {
        const transform = new RecordTransform(scope, destination === 'lake' ? 'LakeTransform' : 'SearchTransform', {
          pipeline: p.name,
          destination,
          transform: p.transform,
          piiHashKey: hashesPii(p) ? piiKey : undefined,
          logRemovalPolicy: removalPolicy,
        });
        for (const artifact of schemaArtifacts) transform.function.node.defaultChild!.node.addDependency(artifact);
        return transform;
      };
      const invocation = {
        bufferSizeMiB: p.transform.processorBufferMiB,
        bufferIntervalSeconds: p.transform.processorIntervalSeconds,
        retries: p.transform.retries,
      };
      let stream: PipelineStream | undefined;
      let lake: LakeDelivery | undefined;
      let search: SearchDelivery | undefined;
      let consumer: MetadataConsumer | undefined;
      const transforms: Array<MonitoredPipeline['transforms'][number]> = [];

      if (p.source === 'kinesis') {
        stream = new PipelineStream(scope, 'Stream', {
          streamName: names.stream,
          shards: p.shards,
          retentionHours: p.retentionHours,
          encryption: p.streamEncryption,
          removalPolicy,
        });
        outputs.push([pipelineOutputKey(p.name, 'StreamName'), stream.stream.streamName, `Kinesis stream producers of ${p.name} write to`]);
      }

      if (has(p, 'lake')) {
        const transform = transformFor('lake');
        transforms.push({ destination: 'lake', function: transform });
        lake = new LakeDelivery(scope, 'Lake', {
          deliveryStreamName: names.lakeDeliveryStream,
          model: model(p),
          bucket: storage.bucket,
          table: catalog.table(p.name),
          source: stream?.stream,
          transform: transform.function,
          transformInvocation: invocation,
          bufferingSize: Size.mebibytes(p.buffering.sizeMiB),
          bufferingInterval: Duration.seconds(p.buffering.intervalSeconds),
          activePartitionQuota: p.buffering.activePartitionQuota,
          logRemovalPolicy: removalPolicy,
        });
        outputs.push([pipelineOutputKey(p.name, 'LakeDeliveryStreamName'), lake.deliveryStreamName, `Firehose stream delivering ${p.name} to the lake`]);
        outputs.push([pipelineOutputKey(p.name, 'GlueTableName'), names.glueTable, `Glue table of ${p.name}'s Parquet data`]);
      }

      if (has(p, 'search')) {
        assertValidProps(scope, stream ? [] : [`pipeline ${p.name} delivers to search, which reads a Kinesis stream; set its source to "kinesis"`]);
        const transform = transformFor('search');
        transforms.push({ destination: 'search', function: transform });
        search = new SearchDelivery(scope, 'Search', {
          deliveryStreamName: names.searchDeliveryStream,
          model: model(p),
          indexName: names.indexPrefix,
          domain: searchDomain!,
          source: stream!.stream,
          bucket: storage.bucket,
          transform: transform.function,
          transformInvocation: invocation,
          bufferingSizeMiB: p.search.bufferingSizeMiB,
          bufferingIntervalSeconds: p.search.bufferingIntervalSeconds,
          retrySeconds: p.search.retrySeconds,
          rotation: p.search.rotation,
          logRemovalPolicy: removalPolicy,
        });
        // Documents arriving before the template would get dynamic mappings that the template cannot fix later.
        search.deliveryStream.node.addDependency(template!);
        outputs.push([pipelineOutputKey(p.name, 'SearchDeliveryStreamName'), search.deliveryStreamName, `Firehose stream delivering ${p.name} to OpenSearch`]);
      }

      if (has(p, 'metadata')) {
        assertValidProps(scope, stream ? [] : [`pipeline ${p.name} has the metadata destination, which reads a Kinesis stream; set its source to "kinesis"`]);
        consumer = new MetadataConsumer(scope, 'MetadataConsumer', {
          pipeline: p.name,
          stream: stream!.stream,
          store: metadata,
          consumer: p.consumer,
          ttlDays: config.metadata.ttlDays,
          logRemovalPolicy: removalPolicy,
        });
        outputs.push([pipelineOutputKey(p.name, 'ConsumerFunctionName'), consumer.function.function.functionName, `Lambda function writing ${p.name}'s metadata (sluice redrive-consumer invokes it)`]);
      }
      monitored.push({ name: p.name, stream, lake, search, consumer, transforms, processorIntervalSeconds: p.transform.processorIntervalSeconds });
    }

    const dashboard = new PipelineDashboard(this, 'Monitoring', {
      pipelines: monitored,
      failureRouter: failures,
      metadataStore: metadata,
      searchDomain,
      alarmEmail: config.alarmEmail,
    });
    // A schema whose cdk.json entry was forgotten would otherwise synthesize nothing for it, without a word.
    for (const warning of unconfiguredSchemaWarnings(config)) Annotations.of(this).addWarningV2('@sluice/schema-not-configured', warning);
    // dev's alarms may go unheard; another environment's (prod) deserve someone, unless the topic is subscribed elsewhere.
    if (!config.alarmEmail && config.env !== 'dev') {
      Annotations.of(this).addWarningV2('@sluice/alarms-unsubscribed', `alarmEmail is not set: the ${dashboard.alarms.length} alarms of ${id} notify the topic `
        + `in the AlarmTopicArn output, and nothing in this stack subscribes to it. Set \`-c alarmEmail=oncall@example.com\` (or "alarmEmail" under `
        + `environments.${config.env} in cdk.json), or subscribe the topic to your paging or chat yourself.`);
    }

    const output = (key: string, value: string, description: string) => {
      new CfnOutput(this, key, { value, description }).overrideLogicalId(key);
    };
    output(OutputKeys.DataBucketName, storage.bucket.bucketName, 'S3 bucket of the lake (data/), error objects (errors/) and search backups (search-backup/)');
    output(OutputKeys.GlueDatabaseName, catalog.databaseName, 'Glue database of the pipeline tables');
    output(OutputKeys.AthenaWorkGroupName, athena.workGroupName, 'Athena workgroup to query the lake in');
    output(OutputKeys.DlqUrl, failures.dlq.queueUrl, 'SQS queue of failed records (sluice replay)');
    output(OutputKeys.RouterFailedEventsUrl, failures.failedEvents.queueUrl, 'SQS queue of S3 events the failure router gave up on (redrive by invoking the router)');
    output(OutputKeys.ConsumerDlqUrl, metadata.consumerDlq.queueUrl, 'SQS queue of metadata-consumer batches that failed (shard and sequence range; sluice redrive-consumer)');
    output(OutputKeys.MetadataTableName, metadata.table.tableName, 'DynamoDB metadata table');
    output(OutputKeys.DashboardUrl, dashboard.dashboardUrl, 'CloudWatch dashboard');
    output(OutputKeys.AlarmTopicArn, dashboard.topic.topicArn, 'SNS topic the alarms notify');
    output(OutputKeys.SchemaFingerprints, JSON.stringify(Object.fromEntries(Object.keys(config.pipelines).map((p) => [p, validatorFingerprint(p)]))),
      'SHA-256 of each pipeline\'s validator as deployed (sluice replay --aws compares it with the checkout\'s)');
    if (searchDomain) {
      output(OutputKeys.OpenSearchEndpoint, `https://${searchDomain.endpointHostname}`, 'OpenSearch domain endpoint');
      output(OutputKeys.OpenSearchQueryRoleArn, searchDomain.queryRole.roleArn, 'IAM role to assume for OpenSearch queries');
    }
    for (const [key, value, description] of outputs) output(key, value, description);
    retainHandlerLogs(this, removalPolicy);
    if (removalPolicy === RemovalPolicy.RETAIN) {
      retainNamedExceptOnCreate(this);
      retainResourcePolicies(this);
    }
  }
}

/** Pipelines whose output keys would collide once PascalCased (e.g. "a-1" and "a1"). */
function outputKeyClashes(pipelines: readonly PipelineConfig[]): string[] {
  const seen = new Map<string, string>();
  const problems: string[] = [];
  const probe: PipelineOutput = 'StreamName';
  for (const p of pipelines) {
    const key = pipelineOutputKey(p.name, probe);
    const other = seen.get(key);
    if (other !== undefined) problems.push(`pipelines "${other}" and "${p.name}" would share the output key ${key}; rename one of them`);
    seen.set(key, p.name);
  }
  return problems;
}

/** Resource types the stack gives physical names (from resourceNames), whose leftovers block a stack of the same names. */
const NAMED_RETAINED_TYPES: ReadonlySet<string> = new Set(['AWS::Kinesis::Stream', 'AWS::SQS::Queue', 'AWS::OpenSearchService::Domain']);

/**
 * Named resources are retained on update and delete, but not when the stack's own creation rolls back
 * (`RetainExceptOnCreate`): with plain `Retain`, a failed first deployment leaves its streams, queues
 * and domain outside any stack, and the next deployment fails on "already exists". Unnamed data
 * stores (bucket, table, keys) keep `Retain`: a leftover cannot collide, and deleting them on a
 * rollback can itself fail (a bucket with access logs in it, a table with deletion protection).
 */
function retainNamedExceptOnCreate(stack: Stack): void {
  for (const c of stack.node.findAll()) {
    if (c instanceof CfnResource && NAMED_RETAINED_TYPES.has(c.cfnResourceType)) c.applyRemovalPolicy(RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE);
  }
}

/**
 * The policies of retained buckets and queues stay with them. Deleted, they would leave the data bucket taking
 * requests without TLS and puts under other keys, the access-log bucket refusing S3's log deliveries (the data bucket
 * still sends them), and the dead-letter queues taking plain HTTP; none of them names a role the stack deletes.
 */
function retainResourcePolicies(stack: Stack): void {
  for (const c of stack.node.findAll()) {
    if (c instanceof s3.CfnBucketPolicy) c.applyRemovalPolicy(RemovalPolicy.RETAIN);
    // As their queues: not kept when the stack's own creation rolls back.
    if (c instanceof sqs.CfnQueuePolicy) c.applyRemovalPolicy(RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE);
  }
}
