import type { SchemaModel } from './model';

/**
 * The lake's S3 key layout, written once. The Firehose data prefix, the Athena partition-projection
 * `storage.location.template` and the twin's concrete paths are all rendered from `partitionSegments`,
 * so they cannot drift apart.
 */

export const DATA_ROOT = 'data';
export const ERRORS_ROOT = 'errors';
export const SEARCH_BACKUP_ROOT = 'search-backup';

/** The prefixes whose new objects are failures for the failure router (in AWS and in the twin). */
export const FAILURE_PREFIXES = [`${ERRORS_ROOT}/`, `${SEARCH_BACKUP_ROOT}/`] as const;

/** Suffix of the table over a pipeline's Firehose error objects (the stack's Glue table, the twin's view). */
export const ERRORS_TABLE_SUFFIX = '_errors';

/**
 * The fields of a Firehose error object line (processing-failed and format-conversion-failed; absent
 * fields read as NULL), as Firehose spells them, with their Glue type: the stack's error table has them
 * in lower case (its JSON SerDe matches keys ignoring case), the twin's view reads these keys.
 */
export const ERROR_OBJECT_FIELDS: ReadonlyArray<{ readonly key: string; readonly type: 'int' | 'bigint' | 'string'; readonly comment?: string }> = [
  { key: 'attemptsMade', type: 'int', comment: 'Delivery attempts before the record was given up' },
  { key: 'arrivalTimestamp', type: 'bigint', comment: 'When Firehose received the record, epoch milliseconds' },
  { key: 'errorCode', type: 'string', comment: 'processing-failed: why the transform failed the record' },
  { key: 'errorMessage', type: 'string' },
  { key: 'lastErrorCode', type: 'string', comment: 'format-conversion-failed: DataFormatConversion.ParseError / MalformedData' },
  { key: 'lastErrorMessage', type: 'string' },
  { key: 'attemptEndingTimestamp', type: 'bigint' },
  { key: 'rawData', type: 'string', comment: 'The record as received, base64' },
  { key: 'lambdaArn', type: 'string' },
  { key: 'sequenceNumber', type: 'string' },
  { key: 'subSequenceNumber', type: 'string' },
];

/** `data/<pipeline>/` */
export function dataRoot(pipeline: string): string {
  return `${DATA_ROOT}/${pipeline}/`;
}

/** Partition segments in path order: `event_type=…/year=…/month=…/day=…/hour=…/`. */
export function partitionSegments(model: SchemaModel, render: (partitionKey: string) => string): string {
  return model.partitionKeys.map((k) => `${k.name}=${render(k.name)}/`).join('');
}

/** The Firehose `Prefix` with dynamic partitioning: keys come from the transform's `metadata.partitionKeys`. */
export function firehoseDataPrefix(model: SchemaModel): string {
  return dataRoot(model.pipeline) + partitionSegments(model, (k) => `!{partitionKeyFromLambda:${k}}`);
}

/** What follows an error prefix's root: one folder per error type, then the arrival hour. */
const ERROR_OUTPUT_FOLDERS = '!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/';

/** The Firehose `ErrorOutputPrefix`: one folder per error type, then the arrival hour. */
export function firehoseErrorPrefix(pipeline: string): string {
  return `${ERRORS_ROOT}/${pipeline}/${ERROR_OUTPUT_FOLDERS}`;
}

/** Prefix under which the search delivery stream backs up documents OpenSearch refused. */
export function searchBackupPrefix(pipeline: string): string {
  return `${SEARCH_BACKUP_ROOT}/${pipeline}/`;
}

/**
 * The search delivery stream's `ErrorOutputPrefix` (records its transform failed), under the backup
 * prefix: set explicitly, so where they land (and what the stream's role and the failure router
 * cover) does not rest on an undocumented default.
 */
export function searchErrorPrefix(pipeline: string): string {
  return `${searchBackupPrefix(pipeline)}${ERROR_OUTPUT_FOLDERS}`;
}

/** Athena partition projection `storage.location.template` for the pipeline's table. */
export function projectionLocationTemplate(model: SchemaModel, bucketName: string): string {
  return `s3://${bucketName}/${dataRoot(model.pipeline)}${partitionSegments(model, (k) => `\${${k}}`)}`;
}

/** Table parameters that turn on partition projection (Glue `Parameters`). */
export function projectionParameters(model: SchemaModel, bucketName: string): Record<string, string> {
  const params: Record<string, string> = {
    'projection.enabled': 'true',
    'storage.location.template': projectionLocationTemplate(model, bucketName),
  };
  for (const key of model.partitionKeys) {
    for (const [setting, value] of Object.entries(key.projection)) params[`projection.${key.name}.${setting}`] = value;
  }
  return params;
}

/** A concrete partition path for given partition key values, e.g. for the twin and the metadata table. */
export function partitionPath(model: SchemaModel, values: Readonly<Record<string, string>>): string {
  return dataRoot(model.pipeline) + partitionSegments(model, (k) => {
    const v = values[k];
    if (v === undefined) throw new Error(`partition key "${k}" has no value for pipeline ${model.pipeline}`);
    return v;
  });
}
