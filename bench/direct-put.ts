/**
 * DirectPut end to end: records/s from Firehose PutRecordBatch (the AWS SDK, real HTTP to the
 * twin) to Parquet rows on disk, against a floor measured in the same run: DuckDB writing the same
 * (already transformed) records to one Snappy Parquet file straight from memory.
 *
 * The producer (the AWS SDK for JavaScript) runs in a worker thread, as producers are other
 * processes; the twin runs with its default local buffering (1 MiB / 2 s), then with 8 MiB buffers, and
 * its transform in its default runtimes (worker threads: one per core beyond the twin's, 1 to 4).
 * The clock starts at the first PutRecordBatch and stops when every record is a Parquet row
 * (`settle()` flushes the last buffer at once). Goal: ≥ 50,000 records/s on two cores and
 * ≥ 0.3 × the floor.
 *
 * Run: node bin/run-ts.js bench/direct-put.ts [--quick]. Prints a table; never fails on timing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { DuckDBInstance } from '@duckdb/node-api';
import { loadConfig, resourceNames } from '../lib/config';
import { firehoseClient } from '../lib/local/aws-clients';
import { startTwin } from '../lib/local/twin';
import { readSchema } from '../lib/schema';
import { firehosePutBatch, putConcurrently, TrafficGenerator } from '../test/load/traffic';
import { copyToParquet, createStaged, lakeLines } from './lake-parquet';
import { machine, median, perSecond, processCpuMs, QUICK, table, threadCpuMs } from './report';

const PIPELINE = 'app-events';
const BATCH = 500;
const CONCURRENCY = 4;

/** The floor: DuckDB appends the records (JSON text) to an in-memory table and COPYs them to Parquet with the lake's columns. */
async function duckDbFloorMs(records: readonly Buffer[], outFile: string): Promise<number> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    const times: number[] = [];
    for (let run = 0; run < (QUICK ? 2 : 3); run++) {
      await createStaged(connection);
      const started = performance.now();
      await copyToParquet(connection, PIPELINE, records, outFile);
      times.push(performance.now() - started);
    }
    return median(times);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

interface TwinRun {
  readonly bufferSizeMiB: number;
  readonly ms: number;
  readonly rows: number;
  readonly files: number;
  readonly retried: number;
  /** CPU ms while timed: the twin's event loop, the producer's thread, and every thread of the process. */
  readonly cpu: { readonly twinLoop?: number; readonly producer?: number; readonly all: number };
  /** Share of the time the twin's event loop was not idle (performance.eventLoopUtilization). */
  readonly loopUtilization: number;
}

interface ProducerOrder {
  readonly endpoint: string;
  readonly stream: string;
  readonly count: number;
}

interface ProducerStats {
  readonly retried: number;
  /** CPU ms the producer's thread used while sending. */
  readonly cpuMs?: number;
}

/**
 * The producer runs in a worker thread, as a producer is another process in life: its SDK work
 * (serializing, signing, base64) then does not share the twin's event loop. It generates its records
 * before it says "ready", so only sending is timed.
 */
function startProducer(order: ProducerOrder): { ready: Promise<void>; go: () => Promise<ProducerStats> } {
  const worker = new Worker(`require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(__filename)});`, { eval: true, workerData: order });
  let onReady: () => void;
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  let onDone: (stats: ProducerStats) => void;
  let onFailed: (error: unknown) => void;
  const done = new Promise<ProducerStats>((resolve, reject) => {
    onDone = resolve;
    onFailed = reject;
  });
  worker.on('message', (m: { ready?: true; retried?: number; cpuMs?: number; error?: string }) => {
    if (m.ready) onReady();
    else if (m.error !== undefined) onFailed(new Error(`producer: ${m.error}`));
    else onDone({ retried: m.retried ?? 0, cpuMs: m.cpuMs });
  });
  worker.on('error', (e) => onFailed(e));
  return {
    ready,
    go: async () => {
      worker.postMessage('go');
      try {
        return await done;
      } finally {
        await worker.terminate();
      }
    },
  };
}

async function producerThread(order: ProducerOrder): Promise<void> {
  const generator = new TrafficGenerator({ schema: readSchema(PIPELINE), mix: { badRate: 0, blankRate: 0 }, seed: 7 });
  const records = generator.chunk(0, order.count).map((r) => r.data);
  const client = firehoseClient(order.endpoint);
  const put = firehosePutBatch(client, order.stream);
  const go = new Promise((resolve) => parentPort!.once('message', resolve));
  parentPort!.postMessage({ ready: true });
  await go;
  const cpuBefore = threadCpuMs();
  try {
    const batches = function* () {
      for (let i = 0; i < records.length; i += BATCH) yield { records: records.slice(i, i + BATCH), firstIndex: i };
    };
    const stats = await putConcurrently(put, batches(), CONCURRENCY);
    const cpuAfter = threadCpuMs();
    parentPort!.postMessage({ retried: stats.retried, cpuMs: cpuAfter === undefined || cpuBefore === undefined ? undefined : cpuAfter - cpuBefore });
  } catch (error) {
    parentPort!.postMessage({ error: (error as Error).message });
  } finally {
    client.destroy();
  }
}

async function twinRun(count: number, bufferSizeMiB: number): Promise<TwinRun> {
  const config = loadConfig([`local.bufferSizeMiB=${bufferSizeMiB}`]);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-direct-put-'));
  const twin = await startTwin({ config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, log: () => undefined });
  try {
    const producer = startProducer({ endpoint: twin.endpoints.firehose, stream: resourceNames(config, PIPELINE).lakeDeliveryStream, count });
    await producer.ready;
    const [loopBefore, allBefore, eluBefore] = [threadCpuMs(), processCpuMs(), performance.eventLoopUtilization()];
    const started = performance.now();
    const stats = await producer.go();
    await twin.settle();
    const ms = performance.now() - started;
    const [loopAfter, allAfter, elu] = [threadCpuMs(), processCpuMs(), performance.eventLoopUtilization(eluBefore)];
    const lake = twin.summary().find((s) => s.pipeline === PIPELINE)!.lake!;
    const twinLoop = loopAfter === undefined || loopBefore === undefined ? undefined : loopAfter - loopBefore;
    return { bufferSizeMiB, ms, rows: lake.deliveredRows, files: lake.files, retried: stats.retried, cpu: { twinLoop, producer: stats.cpuMs, all: allAfter - allBefore }, loopUtilization: elu.utilization };
  } finally {
    await twin.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  const count = QUICK ? 50_000 : 200_000;
  const generator = new TrafficGenerator({ schema: readSchema(PIPELINE), mix: { badRate: 0, blankRate: 0 }, seed: 7 });
  const records = generator.chunk(0, count).map((r) => r.data);
  const bytes = records.reduce((a, r) => a + r.length, 0);

  // The twin's default buffers (1 MiB / 2 s), then larger ones: fewer, larger Parquet files per flush.
  const runs: TwinRun[] = [];
  for (const bufferSizeMiB of [1, 8]) runs.push(await twinRun(count, bufferSizeMiB));
  const ready = await lakeLines(PIPELINE, records);
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-floor-'));
  let floorMs: number;
  try {
    floorMs = await duckDbFloorMs(ready, path.join(outDir, 'floor.parquet'));
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }

  console.log(`\nDirectPut end to end: PutRecordBatch (SDK in a worker thread, HTTP, ${CONCURRENCY} calls in flight, ${BATCH} records each) → Parquet on disk — ${machine()}`);
  console.log(`${count.toLocaleString('en-US')} ${PIPELINE} records, ${(bytes / count).toFixed(0)} bytes each on average; floor = DuckDB appends the transformed records in memory and writes one Parquet file\n`);
  console.log(table(
    ['path', 'records', 'seconds', 'records/s', 'Parquet files', 'ratio to floor', '≥ 50k/s', '≥ 0.3 × floor'],
    [
      ...runs.map((r) => {
        const rate = count / (r.ms / 1000);
        const ratio = floorMs / r.ms;
        return [`twin, buffers ${r.bufferSizeMiB} MiB / 2 s${r.bufferSizeMiB === 1 ? ' (default)' : ''}`, r.rows, (r.ms / 1000).toFixed(2), perSecond(count, r.ms), r.files,
          ratio.toFixed(2), rate >= 50_000 ? 'yes' : 'no', ratio >= 0.3 ? 'yes' : 'no'];
      }),
      ['floor: DuckDB from memory', ready.length, (floorMs / 1000).toFixed(2), perSecond(ready.length, floorMs), 1, '1.00', '', ''],
    ],
  ));
  const perRecord = (ms: number | undefined): string => (ms === undefined ? 'n/a' : ((ms * 1000) / count).toFixed(1));
  console.log(`\nCPU per record (µs) while timed: 50,000 records/s on ${os.availableParallelism()} cores leaves ${((os.availableParallelism() * 1e6) / 50_000).toFixed(0)} µs of CPU per record for everything\n`);
  console.log(table(
    ['path', 'twin event loop', 'producer (SDK) thread', 'other threads (transform runtime, GC, file I/O, DuckDB)', 'all', 'cores busy', 'event loop utilization'],
    runs.map((r) => {
      const other = r.cpu.twinLoop === undefined || r.cpu.producer === undefined ? undefined : r.cpu.all - r.cpu.twinLoop - r.cpu.producer;
      return [`twin, buffers ${r.bufferSizeMiB} MiB / 2 s`, perRecord(r.cpu.twinLoop), perRecord(r.cpu.producer), perRecord(other), perRecord(r.cpu.all), (r.cpu.all / r.ms).toFixed(2), r.loopUtilization.toFixed(2)];
    }),
  ));
  for (const r of runs) {
    if (r.rows !== count) console.log(`\nnote: buffers ${r.bufferSizeMiB} MiB: ${count - r.rows} records did not become rows (expected all to)`);
    if (r.retried > 0) console.log(`\nbuffers ${r.bufferSizeMiB} MiB: ${r.retried} records were sent again after ServiceUnavailableException ("Slow down."), the twin's backpressure.`);
  }
}

if (!isMainThread) {
  producerThread(workerData as ProducerOrder).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
} else if (require.main === module || path.resolve(process.argv[1] ?? '') === __filename) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
