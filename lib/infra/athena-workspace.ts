import * as athena from 'aws-cdk-lib/aws-athena';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { cutTo, firehoseErrorPrefix, injectedPartitionKeys, TIME_PARTITIONS, type SchemaModel } from '../schema';
import { ATHENA_RESULTS_ROOT } from './data-storage';
import { assertValidProps } from './errors';

export interface AthenaPipeline {
  readonly model: SchemaModel;
  readonly tableName: string;
  readonly errorTableName: string;
}

export interface AthenaWorkspaceProps {
  /** Workgroup name (from resourceNames). */
  readonly workGroupName: string;
  readonly databaseName: string;
  /** Results go to s3://<bucket>/athena-results/, encrypted with `key`. */
  readonly bucket: s3.IBucket;
  readonly key: kms.IKey;
  /** Per-query bytes-scanned cutoff, MiB (Athena's minimum is 10 MB). */
  readonly bytesScannedCutoffMiB: number;
  readonly pipelines: readonly AthenaPipeline[];
  /** Delete the workgroup with its saved queries and history when the stack is deleted. @default false */
  readonly deleteWithContents?: boolean;
}

/** A saved query. */
export interface SavedQuery {
  readonly name: string;
  readonly description: string;
  readonly sql: string;
}

const ATHENA_MIN_CUTOFF_BYTES = 10_000_000;

/** Athena's longest saved query name and description (CreateNamedQuery: Name 1–128, Description 1–1,024 characters). */
const NAMED_QUERY_MAX_NAME = 128;
const NAMED_QUERY_MAX_DESCRIPTION = 1024;

/**
 * The Athena workgroup users query the lake in — encrypted results, settings enforced on every query, a
 * bytes-scanned cutoff — and the saved queries that answer the first questions about each pipeline.
 */
export class AthenaWorkspace extends Construct {
  readonly workGroup: athena.CfnWorkGroup;
  readonly workGroupName: string;

  constructor(scope: Construct, id: string, props: AthenaWorkspaceProps) {
    super(scope, id);
    const cutoffBytes = props.bytesScannedCutoffMiB * 1024 * 1024;
    const problems: string[] = [];
    if (!Number.isInteger(props.bytesScannedCutoffMiB) || cutoffBytes < ATHENA_MIN_CUTOFF_BYTES) {
      problems.push(`bytesScannedCutoffMiB must be a whole number ≥ 10 (Athena's minimum cutoff is 10 MB), got ${props.bytesScannedCutoffMiB}`);
    }
    if (!/^[a-zA-Z0-9._-]{1,128}$/.test(props.workGroupName)) {
      problems.push(`workgroup name "${props.workGroupName}" must be 1–128 letters, digits, ".", "_" or "-"`);
    }
    assertValidProps(this, problems);

    this.workGroupName = props.workGroupName;
    this.workGroup = new athena.CfnWorkGroup(this, 'WorkGroup', {
      name: props.workGroupName,
      description: 'Sluice: queries over the pipelines\' Parquet tables and error objects',
      state: 'ENABLED',
      recursiveDeleteOption: props.deleteWithContents ?? false,
      workGroupConfiguration: {
        enforceWorkGroupConfiguration: true,
        publishCloudWatchMetricsEnabled: true,
        bytesScannedCutoffPerQuery: cutoffBytes,
        engineVersion: { selectedEngineVersion: 'Athena engine version 3' },
        resultConfiguration: {
          outputLocation: `s3://${props.bucket.bucketName}/${ATHENA_RESULTS_ROOT}/`,
          encryptionConfiguration: { encryptionOption: 'SSE_KMS', kmsKey: props.key.keyArn },
        },
      },
    });

    for (const p of props.pipelines) {
      savedQueries(props.databaseName, p).forEach((q, i) => {
        const query = new athena.CfnNamedQuery(this, `${p.model.pipeline}-query-${i}`, {
          name: q.name,
          description: q.description,
          database: props.databaseName,
          workGroup: this.workGroup.ref,
          queryString: q.sql,
        });
        query.node.addDependency(this.workGroup);
      });
    }
  }
}

/**
 * The saved queries of a pipeline: events per type per hour, failed records by error code, most active devices/users.
 * A table with a partition field without an enum (`injected` projection) gets the failed-records query only: Athena
 * refuses a query on it that does not name that field's values, and these span every value.
 */
export function savedQueries(databaseName: string, p: AthenaPipeline): SavedQuery[] {
  const { model } = p;
  const queriesMaySpanAllValues = injectedPartitionKeys(model).length === 0;
  const table = `${quote(databaseName)}.${quote(p.tableName)}`;
  const timeKeys: readonly string[] = TIME_PARTITIONS;
  const valueKeys = model.partitionKeys.map((k) => k.name).filter((k) => !timeKeys.includes(k));
  // Equality on the projected partition columns, so Athena reads today's partitions only.
  const today = 'year = year(current_date) AND month = month(current_date) AND day = day(current_date)';
  const queries: SavedQuery[] = [];

  const groupBy = [...valueKeys, 'hour'].map(quote);
  if (queriesMaySpanAllValues) queries.push({
    name: `${model.pipeline}: events per ${valueKeys.length > 0 ? `${valueKeys.join(', ')} per ` : ''}hour (today, UTC)`,
    description: `Record counts of ${model.pipeline} per hour of event time today (UTC, the hour partition), by ${valueKeys.join(', ') || 'hour'}`,
    sql: [
      `SELECT ${groupBy.join(', ')}, count(*) AS events`,
      `FROM ${table}`,
      `WHERE ${today}`,
      `GROUP BY ${groupBy.join(', ')}`,
      `ORDER BY ${quote('hour')} DESC, events DESC`,
    ].join('\n'),
  });

  // Error objects are keyed errors/<pipeline>/<error-output-type>/…: the type is a path segment, counted from the
  // prefix the delivery stream writes (s3:, '', bucket, then the prefix's segments).
  const typeSegment = 3 + firehoseErrorPrefix(model.pipeline).split('/').indexOf('!{firehose:error-output-type}') + 1;
  queries.push({
    // Firehose's error objects carry its own code (Lambda.ProcessingFailedStatus for every record the transform failed),
    // not the transform's reason: that is in the record's dead-letter message (sluice replay --dry-run).
    name: `${model.pipeline}: failed records by error code`,
    description: `Records of ${model.pipeline} that Firehose could not transform or convert, by error type and Firehose's error code (each record's own reason is in its dead-letter message)`,
    sql: [
      `SELECT split_part("$path", '/', ${typeSegment}) AS error_type,`,
      '  coalesce(errorcode, lasterrorcode) AS error_code,',
      '  count(*) AS records,',
      '  min(from_unixtime(arrivaltimestamp / 1000)) AS first_arrival,',
      '  max(from_unixtime(arrivaltimestamp / 1000)) AS last_arrival,',
      '  arbitrary(coalesce(errormessage, lasterrormessage)) AS example_message',
      `FROM ${quote(databaseName)}.${quote(p.errorTableName)}`,
      'GROUP BY 1, 2',
      'ORDER BY records DESC',
    ].join('\n'),
  });

  const entityKey = model.extensions.entityField;
  const entity = entityKey === undefined ? undefined : model.tableColumns.find((c) => c.jsonKey === entityKey);
  const eventTime = model.tableColumns.find((c) => c.jsonKey === model.extensions.eventTimeField);
  if (entity && eventTime && queriesMaySpanAllValues) {
    queries.push({
      name: `${model.pipeline}: top ${entity.name} by events (today, UTC)`,
      description: `The ${entity.name} values with the most ${model.pipeline} records today`,
      sql: [
        `SELECT ${quote(entity.name)}, count(*) AS events, max(${quote(eventTime.name)}) AS last_event`,
        `FROM ${table}`,
        `WHERE ${today}`,
        `GROUP BY ${quote(entity.name)}`,
        'ORDER BY events DESC',
        'LIMIT 20',
      ].join('\n'),
    });
  }
  // Names and descriptions carry the schema's field names, which Glue takes up to 255 characters long: a label cut to
  // Athena's limit, rather than a deploy that fails on it.
  return queries.map((q) => ({ ...q, name: cutTo(q.name, NAMED_QUERY_MAX_NAME), description: cutTo(q.description, NAMED_QUERY_MAX_DESCRIPTION) }));
}

function quote(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}
