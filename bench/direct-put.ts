/**
 * DirectPut end to end: records/s from Firehose PutRecordBatch (the AWS SDK, real HTTP to the
 * twin) to Parquet rows on disk, against a floor measured in the same run: DuckDB writing the same
 * (already transformed) records to one Snappy Parquet file straight from memory.
 *
 * The producer (the AWS SDK for JavaScript; then, as a third run, the same requests written by hand, to
 * show what the twin does when the producer costs little) runs in a worker thread, as producers are other
 * processes; the twin runs with its default local buffering (1 MiB / 2 s), then with 8 MiB buffers, and
 * its transform in its default runtimes (worker threads: one per core beyond the twin's, 1 to 4).
 * The clock starts at the first PutRecordBatch and stops when every record is a Parquet row
 * (`settle()` flushes the last buffer at once). Goal: ≥ 50,000 records/s on two cores and
 * ≥ 0.3 × the floor.
 *
 * Run: node bin/run-ts.js bench/direct-put.ts [--quick]. Prints a table; never fails on timing.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { DuckDBInstance } from '@duckdb/node-api';
import { loadConfig, resourceNames } from '../lib/config';
import { firehoseClient } from '../lib/local/aws-clients';
import { startTwin } from '../lib/local/twin';
import { readSchema } from '../lib/schema';
import { firehosePutBatch, putConcurrently, TrafficGenerator, type PutBatch } from '../test/load/traffic';
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

/**
 * How the producer thread sends: `sdk` is the AWS SDK's FirehoseClient, as users' producers do; `lean` writes the same
 * PutRecordBatch requests itself (JSON body, base64 data, no signing, keep-alive HTTP/1.1), so what remains is
 * mostly the twin's own work. The twin accepts unsigned requests.
 */
type ProducerKind = 'sdk' | 'lean';

interface TwinRun {
  readonly producer: ProducerKind;
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
  readonly kind: ProducerKind;
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
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const put = order.kind === 'sdk' ? firehosePutBatch(client, order.stream) : leanPutBatch(order.endpoint, order.stream, agent);
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
    agent.destroy();
  }
}

/** PutRecordBatch written by hand (see ProducerKind): answers the indexes of the records the twin refused. */
function leanPutBatch(endpoint: string, stream: string, agent: http.Agent): PutBatch {
  const url = new URL(endpoint);
  const head = `{"DeliveryStreamName":${JSON.stringify(stream)},"Records":[`;
  return (records) => {
    let body = head;
    for (let i = 0; i < records.length; i++) body += `${i === 0 ? '' : ','}{"Data":"${records[i].toString('base64')}"}`;
    body += ']}';
    return new Promise<number[]>((resolve, reject) => {
      const request = http.request({
        host: url.hostname, port: url.port, path: '/', method: 'POST', agent,
        headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'Firehose_20150804.PutRecordBatch', 'Content-Length': Buffer.byteLength(body) },
      }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (response.statusCode === 200) {
            const answer = JSON.parse(text) as { RequestResponses: Array<{ ErrorCode?: string }> };
            resolve(answer.RequestResponses.flatMap((r, j) => (r.ErrorCode ? [j] : [])));
          } else if (response.statusCode === 503) {
            resolve(records.map((_, j) => j)); // ServiceUnavailableException: the whole call refused, as firehosePutBatch treats it
          } else {
            reject(new Error(`PutRecordBatch answered ${response.statusCode}: ${text.slice(0, 300)}`));
          }
        });
        response.on('error', reject);
      });
      request.on('error', reject);
      request.end(body);
    });
  };
}

async function twinRun(count: number, bufferSizeMiB: number, producerKind: ProducerKind): Promise<TwinRun> {
  const config = loadConfig([`local.bufferSizeMiB=${bufferSizeMiB}`]);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-direct-put-'));
  const twin = await startTwin({ config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, log: () => undefined });
  try {
    const producer = startProducer({ endpoint: twin.endpoints.firehose, stream: resourceNames(config, PIPELINE).lakeDeliveryStream, count, kind: producerKind });
    await producer.ready;
    const [loopBefore, allBefore, eluBefore] = [threadCpuMs(), processCpuMs(), performance.eventLoopUtilization()];
    const started = performance.now();
    const stats = await producer.go();
    await twin.settle();
    const ms = performance.now() - started;
    const [loopAfter, allAfter, elu] = [threadCpuMs(), processCpuMs(), performance.eventLoopUtilization(eluBefore)];
    const lake = twin.summary().find((s) => s.pipeline === PIPELINE)!.lake!;
    const twinLoop = loopAfter === undefined || loopBefore === undefined ? undefined : loopAfter - loopBefore;
    return { producer: producerKind, bufferSizeMiB, ms, rows: lake.deliveredRows, files: lake.files, retried: stats.retried, cpu: { twinLoop, producer: stats.cpuMs, all: allAfter - allBefore }, loopUtilization: elu.utilization };
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
  for (const [bufferSizeMiB, producer] of [[1, 'sdk'], [8, 'sdk'], [1, 'lean']] as const) runs.push(await twinRun(count, bufferSizeMiB, producer));
  const label = (r: TwinRun): string => `twin, buffers ${r.bufferSizeMiB} MiB / 2 s${r.bufferSizeMiB === 1 ? ' (default)' : ''}${r.producer === 'lean' ? ', lean producer' : ''}`;
  const ready = await lakeLines(PIPELINE, records);
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-floor-'));
  let floorMs: number;
  try {
    floorMs = await duckDbFloorMs(ready, path.join(outDir, 'floor.parquet'));
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }

  console.log(`\nDirectPut end to end: PutRecordBatch (from a worker thread: the AWS SDK, or the same requests written by hand ("lean"), HTTP, ${CONCURRENCY} calls in flight, ${BATCH} records each) → Parquet on disk — ${machine()}`);
  console.log(`${count.toLocaleString('en-US')} ${PIPELINE} records, ${(bytes / count).toFixed(0)} bytes each on average; floor = DuckDB appends the transformed records in memory and writes one Parquet file\n`);
  console.log(table(
    ['path', 'records', 'seconds', 'records/s', 'Parquet files', 'ratio to floor', '≥ 50k/s', '≥ 0.3 × floor'],
    [
      ...runs.map((r) => {
        const rate = count / (r.ms / 1000);
        const ratio = floorMs / r.ms;
        return [label(r), r.rows, (r.ms / 1000).toFixed(2), perSecond(count, r.ms), r.files,
          ratio.toFixed(2), rate >= 50_000 ? 'yes' : 'no', ratio >= 0.3 ? 'yes' : 'no'];
      }),
      ['floor: DuckDB from memory', ready.length, (floorMs / 1000).toFixed(2), perSecond(ready.length, floorMs), 1, '1.00', '', ''],
    ],
  ));
  const perRecord = (ms: number | undefined): string => (ms === undefined ? 'n/a' : ((ms * 1000) / count).toFixed(1));
  console.log(`\nCPU per record (µs) while timed: 50,000 records/s on ${os.availableParallelism()} cores leaves ${((os.availableParallelism() * 1e6) / 50_000).toFixed(0)} µs of CPU per record for everything\n`);
  console.log(table(
    ['path', 'twin event loop', 'producer thread', 'other threads (transform runtime, GC, file I/O, DuckDB)', 'all', 'cores busy', 'event loop utilization'],
    runs.map((r) => {
      const other = r.cpu.twinLoop === undefined || r.cpu.producer === undefined ? undefined : r.cpu.all - r.cpu.twinLoop - r.cpu.producer;
      return [label(r), perRecord(r.cpu.twinLoop), perRecord(r.cpu.producer), perRecord(other), perRecord(r.cpu.all), (r.cpu.all / r.ms).toFixed(2), r.loopUtilization.toFixed(2)];
    }),
  ));
  for (const r of runs) {
    if (r.rows !== count) console.log(`\nnote: ${label(r)}: ${count - r.rows} records did not become rows (expected all to)`);
    if (r.retried > 0) console.log(`\n${label(r)}: ${r.retried} records were sent again after ServiceUnavailableException ("Slow down."), the twin's backpressure.`);
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
