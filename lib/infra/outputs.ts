import type { SluiceConfig } from '../config';
import { typeName } from '../schema/artifacts';

/**
 * CloudFormation outputs of the Sluice stack: what the CLI (`sluice --aws`) and users' scripts read, e.g.
 *   aws cloudformation describe-stacks --stack-name sluice-dev \
 *     --query "Stacks[0].Outputs[?OutputKey=='DataBucketName'].OutputValue" --output text
 * They are plain outputs, not exports, so no other stack can pin them and the stack can be replaced or deleted
 * freely. The keys are stable: renaming one is a breaking change for every script that reads it.
 */
export const OutputKeys = {
  /** S3 bucket: Parquet under data/<pipeline>/, Firehose error objects under errors/, refused documents under search-backup/. */
  DataBucketName: 'DataBucketName',
  /** Glue database of the lake: one table per pipeline, and <table>_errors over its error objects. */
  GlueDatabaseName: 'GlueDatabaseName',
  /** Athena workgroup to query in (encrypted results, enforced settings, bytes-scanned cutoff, saved queries). */
  AthenaWorkGroupName: 'AthenaWorkGroupName',
  /** SQS queue of failed records, one message per record; `sluice replay` redrives it. */
  DlqUrl: 'DlqUrl',
  /** SQS queue of S3 events the failure router gave up on after Lambda's retries (the event and the error, not the records). */
  RouterFailedEventsUrl: 'RouterFailedEventsUrl',
  /** SQS queue of batches the metadata consumers gave up on (shard and sequence range, not the records); `sluice redrive-consumer` redrives it. */
  ConsumerDlqUrl: 'ConsumerDlqUrl',
  /** DynamoDB table the metadata consumers write (and the failure router's dedupe ledger). */
  MetadataTableName: 'MetadataTableName',
  /** https:// endpoint of the OpenSearch domain; present when a pipeline delivers to search. */
  OpenSearchEndpoint: 'OpenSearchEndpoint',
  /** Role to assume for read-only queries against the OpenSearch domain; present when a pipeline delivers to search. */
  OpenSearchQueryRoleArn: 'OpenSearchQueryRoleArn',
  /** Console URL of the CloudWatch dashboard. */
  DashboardUrl: 'DashboardUrl',
  /** SNS topic the alarms notify: subscribe to it (e-mail, chat, paging) for alerts. */
  AlarmTopicArn: 'AlarmTopicArn',
  /**
   * JSON of pipeline → SHA-256 of the validator the deployed transform bundles: `sluice replay --aws` compares it with
   * the checkout's, so records are not replayed into a transform that still runs the schema that failed them.
   */
  SchemaFingerprints: 'SchemaFingerprints',
} as const;

/**
 * Per-pipeline outputs, keyed `<Pipeline><what>` with the pipeline name in PascalCase (see pipelineOutputKey):
 * - `StreamName`: the Kinesis data stream producers write to (Kinesis-sourced pipelines);
 * - `LakeDeliveryStreamName`: the Firehose stream to the lake (for DirectPut pipelines, the one applications write to);
 * - `SearchDeliveryStreamName`: the Firehose stream to OpenSearch (pipelines with the search destination);
 * - `GlueTableName`: the Glue table of the pipeline's Parquet data (pipelines with the lake destination);
 * - `ConsumerFunctionName`: the metadata consumer Lambda function (pipelines with the metadata destination), which
 *   `sluice redrive-consumer --aws` invokes with the records of the batches it gave up on.
 */
export type PipelineOutput = 'StreamName' | 'LakeDeliveryStreamName' | 'SearchDeliveryStreamName' | 'GlueTableName' | 'ConsumerFunctionName';

/** `pipelineOutputKey('app-events', 'StreamName')` → `AppEventsStreamName` (PascalCase, as in the generated record types). */
export function pipelineOutputKey(pipeline: string, what: PipelineOutput): string {
  return `${typeName(pipeline)}${what}`;
}

/** The stack `cdk deploy` creates for a configuration: `<prefix>-<env>`, e.g. sluice-dev. */
export function stackName(config: Pick<SluiceConfig, 'prefix' | 'env'>): string {
  return `${config.prefix}-${config.env}`;
}
