/**
 * What the benchmarks that write the lake's Parquet without the twin share: the transform's lake output for
 * sample records, and DuckDB writing JSON lines as one Snappy Parquet file with the lake's columns.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import type { FirehoseTransformationEvent } from 'aws-lambda';
import { loadModel, parquetColumns } from '../lib/schema';
import { createTransformHandler } from '../transforms/record-transform/handler';

/** The transform's lake output for `records`: the lines the twin's Parquet writer receives. */
export async function lakeLines(pipeline: string, records: readonly Buffer[]): Promise<Buffer[]> {
  const handle = createTransformHandler({ pipeline, destination: 'lake', piiHashKey: 'bench-key' });
  const out: Buffer[] = [];
  for (let i = 0; i < records.length; i += 2000) {
    const event: FirehoseTransformationEvent = {
      invocationId: 'bench', deliveryStreamArn: 'arn:aws:firehose:us-east-1:000000000000:deliverystream/bench', region: 'us-east-1',
      records: records.slice(i, i + 2000).map((r, j) => ({ recordId: String(i + j), approximateArrivalTimestamp: Date.now(), data: r.toString('base64') })),
    };
    const result = await handle(event);
    for (const r of result.records) if (r.result === 'Ok' && r.data) out.push(Buffer.from(r.data, 'base64'));
  }
  return out;
}

/** An empty `staged` table for `copyToParquet` (outside what a caller times). */
export async function createStaged(connection: DuckDBConnection): Promise<void> {
  await connection.run('CREATE OR REPLACE TABLE staged (j VARCHAR)');
}

/** Appends `lines` (JSON text) to the empty `staged` table and COPYs them to `file` as Parquet with the lake's columns. */
export async function copyToParquet(connection: DuckDBConnection, pipeline: string, lines: readonly Buffer[], file: string): Promise<void> {
  const columns = parquetColumns(loadModel(pipeline));
  const structure = JSON.stringify(Object.fromEntries(columns.map((c) => [c.name, c.type])));
  const appender = await connection.createAppender('staged');
  for (const line of lines) {
    appender.appendVarchar(line.toString('utf8'));
    appender.endRow();
  }
  appender.closeSync();
  await connection.run(`COPY (SELECT s.* FROM (SELECT from_json(j, '${structure.replace(/'/g, "''")}') AS s FROM staged)) TO '${file}' (FORMAT parquet, COMPRESSION snappy)`);
}
