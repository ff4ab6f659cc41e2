/**
 * Kinesis-sourced end to end: records/s from Kinesis PutRecords (kinesis-mock) through the twin's
 * Firehose reader and delivery engine to Parquet rows on disk, against a floor measured in the same
 * run: how fast kinesis-mock itself hands the same records back (GetRecords from TRIM_HORIZON with a
 * plain SDK client). The `iot` pipeline runs with the lake destination only, so the metadata
 * consumer (whose DynamoDB emulator is slower still) is not part of what is measured.
 *
 * Then kinesis-mock alone, as its stream grows: PutRecords rates for each successive slice of records
 * into a 4-shard stream, with the twin's source patches (KINESIS_SOURCE_PATCHES) and without them
 * (kinesis-mock as published), which is the floor this part compares with.
 *
 * Run: node bin/run-ts.js bench/kinesis.ts [--quick]. Prints a table; never fails on timing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateStreamCommand, DescribeStreamSummaryCommand, GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand } from '@aws-sdk/client-kinesis';
import { loadConfig, resourceNames } from '../lib/config';
import { kinesisClient } from '../lib/local/aws-clients';
import { KINESIS_SOURCE_PATCHES, startKinesis } from '../lib/local/emulators';
import { startTwin } from '../lib/local/twin';
import { readSchema } from '../lib/schema';
import { kinesisPutBatch, putConcurrently, TrafficGenerator } from '../test/load/traffic';
import { machine, median, perSecond, QUICK, table } from './report';

const PIPELINE = 'iot';
const BATCH = 500;

/** Reads every record of the stream from TRIM_HORIZON, as fast as kinesis-mock answers; returns the count. */
async function readAll(client: ReturnType<typeof kinesisClient>, stream: string, expected: number): Promise<number> {
  const shards = (await client.send(new ListShardsCommand({ StreamName: stream }))).Shards ?? [];
  let read = 0;
  for (const shard of shards) {
    let iterator = (await client.send(new GetShardIteratorCommand({ StreamName: stream, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON' }))).ShardIterator;
    while (iterator) {
      const out = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
      read += out.Records?.length ?? 0;
      if ((out.Records?.length ?? 0) === 0 || read >= expected) break;
      iterator = out.NextShardIterator;
    }
  }
  return read;
}

async function main(): Promise<void> {
  process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  const count = QUICK ? 3_000 : 10_000;
  const generator = new TrafficGenerator({ schema: readSchema(PIPELINE), mix: { badRate: 0, blankRate: 0 }, seed: 11 });
  const records = generator.chunk(0, count).map((r) => r.data);
  const bytes = records.reduce((a, r) => a + r.length, 0);
  const config = loadConfig([`pipelines.${PIPELINE}.destinations=lake`]);
  const stream = resourceNames(config, PIPELINE).stream;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-kinesis-'));
  const twin = await startTwin({ config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, pollIntervalMs: 100, log: () => undefined });
  let putMs: number;
  let endToEndMs: number;
  let rows: number;
  let files: number;
  const readMs: number[] = [];
  let read = 0;
  try {
    const client = kinesisClient(twin.endpoints.kinesis);
    const batches = function* () {
      for (let i = 0; i < records.length; i += BATCH) yield { records: records.slice(i, i + BATCH), firstIndex: i };
    };
    const started = performance.now();
    await putConcurrently(kinesisPutBatch(client, stream), batches(), 2);
    putMs = performance.now() - started;
    await twin.settle(600_000);
    endToEndMs = performance.now() - started;
    const lake = twin.summary().find((s) => s.pipeline === PIPELINE)!.lake!;
    rows = lake.deliveredRows;
    files = lake.files;
    // The floor: the same records read back from kinesis-mock, nothing else running against it.
    for (let run = 0; run < (QUICK ? 1 : 3); run++) {
      const t = performance.now();
      read = await readAll(client, stream, count);
      readMs.push(performance.now() - t);
    }
    client.destroy();
  } finally {
    await twin.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  const floorMs = median(readMs);
  const ratio = floorMs / endToEndMs;
  console.log(`\nKinesis-sourced end to end: PutRecords → kinesis-mock → the twin's reader → transform → Parquet on disk — ${machine()}`);
  console.log(`${count.toLocaleString('en-US')} ${PIPELINE} records (1 shard), ${(bytes / count).toFixed(0)} bytes each on average; lake destination only; floor = GetRecords of the same records from kinesis-mock\n`);
  console.log(table(
    ['path', 'records', 'seconds', 'records/s', 'Parquet files', 'ratio to floor'],
    [
      ['twin: PutRecords → Parquet', rows, (endToEndMs / 1000).toFixed(2), perSecond(count, endToEndMs), files, ratio.toFixed(2)],
      ['  of which PutRecords (2 calls in flight)', count, (putMs / 1000).toFixed(2), perSecond(count, putMs), '', ''],
      ['floor: GetRecords from kinesis-mock', read, (floorMs / 1000).toFixed(2), perSecond(read, floorMs), '', '1.00'],
    ],
  ));
  if (rows !== count) console.log(`\nnote: ${count - rows} records did not become rows (expected all to)`);

  const slice = QUICK ? 2_500 : 5_000;
  const slices = 4;
  const putRecords = new TrafficGenerator({ schema: readSchema(PIPELINE), mix: { badRate: 0, blankRate: 0 }, seed: 12 }).chunk(0, slice * slices).map((r) => r.data);
  const patched = await putRatesAsStreamGrows(putRecords, slice, true);
  const published = await putRatesAsStreamGrows(putRecords, slice, false);
  console.log(`\nkinesis-mock alone: PutRecords of ${PIPELINE} records into a 4-shard stream (${BATCH}-record requests, 2 in flight), records/s for each slice of ${slice.toLocaleString('en-US')} as the stream grows; with the twin's source patches (${KINESIS_SOURCE_PATCHES.map((p) => p.name).join(', ')}) and as published\n`);
  console.log(table(
    ['records already in the stream', 'patched records/s', 'as published records/s', 'patched / as published'],
    patched.map((rate, i) => [(i * slice).toLocaleString('en-US'), Math.round(rate).toLocaleString('en-US'), Math.round(published[i]).toLocaleString('en-US'), (rate / published[i]).toFixed(2)]),
  ));
}

/** PutRecords rates (records/s) into a fresh kinesis-mock's 4-shard stream, one for each successive `slice` of `records`. */
async function putRatesAsStreamGrows(records: Buffer[], slice: number, patched: boolean): Promise<number[]> {
  const mock = await startKinesis({ port: 0, ...(patched ? {} : { sourcePatches: [] }) });
  const client = kinesisClient(mock.endpoint);
  try {
    await client.send(new CreateStreamCommand({ StreamName: 'grows', ShardCount: 4 }));
    while ((await client.send(new DescribeStreamSummaryCommand({ StreamName: 'grows' }))).StreamDescriptionSummary?.StreamStatus !== 'ACTIVE') {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const rates: number[] = [];
    for (let from = 0; from < records.length; from += slice) {
      const part = records.slice(from, from + slice);
      const batches = function* () {
        for (let i = 0; i < part.length; i += BATCH) yield { records: part.slice(i, i + BATCH), firstIndex: from + i };
      };
      const started = performance.now();
      await putConcurrently(kinesisPutBatch(client, 'grows'), batches(), 2);
      rates.push(part.length / ((performance.now() - started) / 1000));
    }
    return rates;
  } finally {
    client.destroy();
    await mock.stop();
  }
}

if (require.main === module || path.resolve(process.argv[1] ?? '') === __filename) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
