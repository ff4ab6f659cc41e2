/**
 * Parquet size per byte of JSON producers send: the ratio `sluice cost` prices S3 storage with
 * (`MODEL.parquetRatio` in lib/cli/cost.ts). Each pipeline's sample records go through the transform
 * (lake mode) and are written as Snappy Parquet with the lake's columns, as the twin writes them: in
 * 500-row files (a flush at low rates) and in one 100,000-row file (a full buffer at high rates).
 * Not a speed benchmark: it measures sizes, so there is no floor.
 *
 * Run: node bin/run-ts.js bench/parquet-ratio.ts [--quick]. Prints a table.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { MODEL } from '../lib/cli/cost';
import { readSchema } from '../lib/schema';
import { TrafficGenerator } from '../test/load/traffic';
import { copyToParquet, createStaged, lakeLines } from './lake-parquet';
import { machine, QUICK, table } from './report';

const PIPELINES = ['clickstream', 'iot', 'transactions', 'app-events'];
const SMALL_FILE_ROWS = 500;

/** Bytes of one Snappy Parquet file of `lines` with the pipeline's lake columns. */
async function parquetBytes(instance: DuckDBInstance, pipeline: string, lines: readonly Buffer[], file: string): Promise<number> {
  const connection = await instance.connect();
  try {
    await createStaged(connection);
    await copyToParquet(connection, pipeline, lines, file);
  } finally {
    connection.closeSync();
  }
  return fs.statSync(file).size;
}

async function main(): Promise<void> {
  process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  const count = QUICK ? 20_000 : 100_000;
  const smallFiles = 20;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-parquet-ratio-'));
  const instance = await DuckDBInstance.create(':memory:');
  const rows: Array<Array<string | number>> = [];
  try {
    for (const pipeline of PIPELINES) {
      const generator = new TrafficGenerator({ schema: readSchema(pipeline), mix: { badRate: 0, blankRate: 0 }, seed: 11 });
      const records = generator.chunk(0, count).map((r) => r.data);
      const json = records.reduce((s, r) => s + r.length, 0);
      const lines = await lakeLines(pipeline, records);
      const whole = await parquetBytes(instance, pipeline, lines, path.join(dir, `${pipeline}.parquet`));
      let small = 0;
      for (let i = 0; i < smallFiles; i++) {
        small += await parquetBytes(instance, pipeline, lines.slice(i * SMALL_FILE_ROWS, (i + 1) * SMALL_FILE_ROWS), path.join(dir, `${pipeline}-${i}.parquet`));
      }
      const smallJson = records.slice(0, smallFiles * SMALL_FILE_ROWS).reduce((s, r) => s + r.length, 0);
      rows.push([pipeline, Math.round(json / count), (lines.reduce((s, r) => s + r.length, 0) / json).toFixed(2), (small / smallJson).toFixed(3), (whole / json).toFixed(3)]);
    }
  } finally {
    instance.closeSync();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\nParquet (Snappy, the lake's columns) per byte of JSON sent — ${machine()}`);
  console.log(`${count.toLocaleString('en-US')} sample records per pipeline; sluice cost assumes ${MODEL.parquetRatio}\n`);
  console.log(table(['pipeline', 'JSON bytes/record', 'enriched / sent', `Parquet / JSON, ${SMALL_FILE_ROWS}-row files`, `Parquet / JSON, one ${count.toLocaleString('en-US')}-row file`], rows));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
