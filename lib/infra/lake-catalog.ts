import { Stack } from 'aws-cdk-lib';
import * as glue from 'aws-cdk-lib/aws-glue';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { cutTo, dataRoot, ERRORS_ROOT, glueColumns, projectionParameters, type SchemaModel } from '../schema';
import { ERROR_OBJECT_FIELDS, ERRORS_TABLE_SUFFIX } from '../schema/layout';
import { assertValidProps } from './errors';

/** A pipeline whose records the catalog describes. */
export interface CatalogPipeline {
  readonly model: SchemaModel;
  /** Glue table of the pipeline's Parquet data (from resourceNames). */
  readonly tableName: string;
}

export interface LakeCatalogProps {
  /** Glue database name (from resourceNames). */
  readonly databaseName: string;
  /** The data bucket the tables point at. */
  readonly bucket: s3.IBucket;
  readonly pipelines: readonly CatalogPipeline[];
}

/** Columns of the table over a pipeline's Firehose error objects. */
const ERROR_OBJECT_COLUMNS: glue.CfnTable.ColumnProperty[] = ERROR_OBJECT_FIELDS.map((f) => ({
  name: f.key.toLowerCase(),
  type: f.type,
  ...(f.comment ? { comment: f.comment } : {}),
}));

/**
 * The Glue database and, per pipeline, a Parquet table whose columns come from the schema and whose partitions
 * Athena projects from the same layout function that builds the Firehose prefix (lib/schema/layout.ts), plus a
 * JSON table over the pipeline's error objects.
 */
export class LakeCatalog extends Construct {
  readonly database: glue.CfnDatabase;
  readonly databaseName: string;
  private readonly tables = new Map<string, glue.CfnTable>();
  private readonly errorTables = new Map<string, glue.CfnTable>();

  constructor(scope: Construct, id: string, props: LakeCatalogProps) {
    super(scope, id);
    const problems: string[] = [];
    if (!/^[a-z0-9_]{1,255}$/.test(props.databaseName)) {
      problems.push(`Glue database name "${props.databaseName}" must be 1–255 lower-case letters, digits and "_" (Athena identifiers)`);
    }
    const names = new Set<string>();
    for (const p of props.pipelines) {
      for (const table of [p.tableName, p.tableName + ERRORS_TABLE_SUFFIX]) {
        if (!/^[a-z0-9_]{1,255}$/.test(table)) {
          problems.push(`Glue table name "${table}" (pipeline ${p.model.pipeline}) must be lower-case letters, digits and "_"`);
        }
        if (names.has(table)) problems.push(`two pipelines map to the Glue table "${table}"; rename one of them`);
        names.add(table);
      }
    }
    assertValidProps(this, problems);

    const account = Stack.of(this).account;
    this.databaseName = props.databaseName;
    this.database = new glue.CfnDatabase(this, 'Database', {
      catalogId: account,
      databaseInput: { name: props.databaseName, description: 'Sluice lake: one table per pipeline (Parquet) and one per pipeline\'s error objects' },
    });

    for (const p of props.pipelines) {
      const pipeline = p.model.pipeline;
      const { columns, partitionKeys } = glueColumns(p.model);
      const table = new glue.CfnTable(this, `${pipeline}-table`, {
        catalogId: account,
        databaseName: props.databaseName,
        tableInput: {
          name: p.tableName,
          description: tableDescription(p.model),
          tableType: 'EXTERNAL_TABLE',
          parameters: {
            EXTERNAL: 'TRUE',
            classification: 'parquet',
            'parquet.compression': 'SNAPPY',
            ...projectionParameters(p.model, props.bucket.bucketName),
          },
          partitionKeys: partitionKeys.map((k) => ({ name: k.name, type: k.type })),
          storageDescriptor: {
            location: `s3://${props.bucket.bucketName}/${dataRoot(pipeline)}`,
            columns: columns.map((c) => ({ name: c.name, type: c.type, comment: c.comment })),
            inputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat',
            outputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat',
            serdeInfo: { serializationLibrary: 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe', parameters: { 'serialization.format': '1' } },
          },
        },
      });
      table.node.addDependency(this.database);
      this.tables.set(pipeline, table);

      // Error objects are few and expire, so the table reads all of them (Athena reads a location's sub-folders);
      // the error type is in the object key, "$path" in queries.
      const errors = new glue.CfnTable(this, `${pipeline}-errors-table`, {
        catalogId: account,
        databaseName: props.databaseName,
        tableInput: {
          name: p.tableName + ERRORS_TABLE_SUFFIX,
          description: `Records of ${pipeline} that Firehose could not transform or convert (error objects under ${ERRORS_ROOT}/${pipeline}/)`,
          tableType: 'EXTERNAL_TABLE',
          parameters: { EXTERNAL: 'TRUE', classification: 'json' },
          storageDescriptor: {
            location: `s3://${props.bucket.bucketName}/${ERRORS_ROOT}/${pipeline}/`,
            columns: ERROR_OBJECT_COLUMNS,
            inputFormat: 'org.apache.hadoop.mapred.TextInputFormat',
            outputFormat: 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat',
            serdeInfo: { serializationLibrary: 'org.openx.data.jsonserde.JsonSerDe', parameters: { 'ignore.malformed.json': 'true' } },
          },
        },
      });
      errors.node.addDependency(this.database);
      this.errorTables.set(pipeline, errors);
    }
  }

  /** The Parquet table of a pipeline (Firehose's conversion schema). */
  table(pipeline: string): glue.CfnTable {
    const t = this.tables.get(pipeline);
    if (!t) throw new Error(`${this.node.path}: no table for pipeline "${pipeline}"`);
    return t;
  }

  /** The table over a pipeline's error objects. */
  errorTable(pipeline: string): glue.CfnTable {
    const t = this.errorTables.get(pipeline);
    if (!t) throw new Error(`${this.node.path}: no error table for pipeline "${pipeline}"`);
    return t;
  }
}

/** Longest Glue table description (TableInput.Description). */
const GLUE_TABLE_DESCRIPTION_MAX = 2048;

/** The schema's title and where it comes from, the title cut to fit Glue's limit: a schema's title is free text of any length. */
function tableDescription(model: SchemaModel): string {
  const source = ` (schemas/${model.pipeline}.schema.json v${model.extensions.version}), written by Firehose as Parquet`;
  return cutTo(model.title, GLUE_TABLE_DESCRIPTION_MAX - source.length) + source;
}
