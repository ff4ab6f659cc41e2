/**
 * The soak test: many records through the local twin, a share of them bad or blank, with faults
 * switched on (transform invocations failing, storage writes failing, DynamoDB throttling), and at
 * the end every record accounted for exactly once:
 *   - sent = Parquet rows + failed (error objects, one DLQ message each) + dropped by rule, per pipeline;
 *   - no event id twice in the Parquet, and exactly the valid records' ids (DuckDB over the files, through LocalAthena);
 *   - memory flat: the live heap (after a full GC) and RSS, sampled as the records go out (each
 *     time with the twin settled), do not grow between the second quarter of the run and its end.
 *
 * Most records go through Firehose PutRecordBatch to the DirectPut pipeline (`app-events`); a share
 * (0.5 % by default) goes through Kinesis PutRecords to `iot`, read by the twin's Firehose reader and
 * by the metadata consumer. The metadata consumer's DynamoDB emulator (dynalite) takes far fewer records/s than
 * kinesis-mock (thousands since its source patches: README, Kinesis rows), so that share is sized for both producers to
 * finish at about the same time (README, note ¹: a run with 5 % went at about 400 records/s in all).
 *
 * `runSoak()` is the one program; test/load/soak.test.ts runs ≈ 50,000 records in `npm test`, and
 * `npm run soak` runs 1,000,000 from the command line:
 *   node bin/run-ts.js test/load/soak.ts [--records 1000000] [--kinesis 5000] [--no-faults] [--keep]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { loadConfig, resourceNames, type SluiceConfig } from '../../lib/config';
import { LocalAthena } from '../../lib/local/athena';
import { FaultInjector, TRANSFORM_FAULT_KINDS, type FaultPlan, type InjectedFaults } from '../../lib/local/faults';
import { startTwin } from '../../lib/local/twin';
import { readSchema } from '../../lib/schema';
import { EVENT_INDEX_SQL, firehosePutBatch, kinesisPutBatch, producerClients, putConcurrently, TrafficGenerator, type PutBatch, type RecordFate } from './traffic';

export interface SoakOptions {
  /** Records sent in all, both producers together. */
  readonly records: number;
  /** How many of them go through Kinesis (to `iot`); the rest through Firehose PutRecordBatch (to `app-events`). */
  readonly kinesisRecords: number;
  /** @default 0.05 */
  readonly badRate?: number;
  /** Blank records, dropped by the transform's rule. @default 0.01 */
  readonly blankRate?: number;
  /** The faults switched on; `false` for none. @default SOAK_FAULTS */
  readonly faults?: FaultPlan | false;
  /** @default 1 */
  readonly seed?: number;
  /** PutRecordBatch calls in flight. @default 4 */
  readonly concurrency?: number;
  /** Memory samples taken over the run (evenly, by records sent; each pauses the producers until the twin has settled). @default 40 */
  readonly samples?: number;
  /** @default a new temporary directory, removed at the end unless `keep` */
  readonly dataDir?: string;
  readonly keep?: boolean;
  /** Progress lines. @default none */
  readonly log?: (line: string) => void;
}

/**
 * The faults a soak runs with: every kind the twin can inject, met many times over a run, never so
 * often that a retry budget runs out, so the counts stay exact. One transform invocation in four
 * fails (throw, timeout, malformed response, fewer records, in turn); the next one, the retry, goes
 * through. 2 % of storage writes (write-ahead log, objects, DLQ) fail with ENOSPC; 2 % of the
 * metadata consumer's DynamoDB requests are throttled.
 */
export const SOAK_FAULTS: FaultPlan = {
  seed: 7,
  transform: {
    timeoutMs: 1000,
    decide: ({ index }) => (index % 4 === 1 ? TRANSFORM_FAULT_KINDS[((index - 1) / 4) % TRANSFORM_FAULT_KINDS.length] : undefined),
  },
  storage: { rate: 0.02, code: 'ENOSPC' },
  dynamo: { rate: 0.02 },
};

export interface PipelineOutcome {
  readonly pipeline: string;
  readonly entry: 'Firehose PutRecordBatch' | 'Kinesis PutRecords';
  readonly sent: number;
  /** What the sent records should become, known from how they were made. */
  readonly expected: Readonly<Record<RecordFate, number>>;
  readonly rows: number;
  readonly failed: number;
  readonly dropped: number;
  readonly parquetFiles: number;
  /** Parquet rows counted by DuckDB, distinct event ids among them, and whether they are exactly the valid records' ids. */
  readonly parquet: { readonly rows: number; readonly distinctIds: number; readonly idChecksum: bigint; readonly expectedIdChecksum: bigint };
  readonly retriedByProducer: number;
}

export interface MemorySample {
  /** Records sent when the sample was taken. */
  readonly sent: number;
  /** Live heap after a full garbage collection, bytes. */
  readonly heapUsed: number;
  readonly rss: number;
}

export interface SoakReport {
  readonly pipelines: readonly PipelineOutcome[];
  /** DLQ messages for failed records (every pipeline shares the queue). */
  readonly dlqMessages: number;
  readonly metadataRecords: number;
  readonly faults: InjectedFaults | undefined;
  readonly memory: readonly MemorySample[];
  readonly sendSeconds: number;
  readonly totalSeconds: number;
  readonly dataDir: string;
}

const DIRECT_PUT_PIPELINE = 'app-events';
const KINESIS_PIPELINE = 'iot';
const BATCH = 500;

/** A full garbage collection, so heap samples measure what is live rather than when the collector last ran. */
const collectGarbage: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
})();

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => undefined);
  const seed = options.seed ?? 1;
  const mix = { badRate: options.badRate ?? 0.05, blankRate: options.blankRate ?? 0.01 };
  const kinesisCount = Math.min(options.kinesisRecords, options.records);
  const directCount = options.records - kinesisCount;
  const sampleCount = options.samples ?? 40;
  const plan = options.faults === undefined ? SOAK_FAULTS : options.faults;
  const faults = plan ? new FaultInjector(plan) : undefined;
  const config: SluiceConfig = loadConfig(['local.bufferIntervalSeconds=1']);
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-soak-'));
  const started = performance.now();

  const twin = await startTwin({
    config, dataDir, faults, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, pollIntervalMs: 100,
    // Injected faults are retried inside the twin; each retry says so on this log. Counted, not printed.
    log: () => undefined,
  });
  try {
    // Event ids are unique across both producers: DirectPut records are [0, directCount), Kinesis ones follow.
    const now = new Date();
    const clients = producerClients(twin.endpoints);
    const producers = [
      {
        pipeline: DIRECT_PUT_PIPELINE, entry: 'Firehose PutRecordBatch' as const, from: 0, count: directCount, concurrency: options.concurrency ?? 4,
        generator: new TrafficGenerator({ schema: readSchema(DIRECT_PUT_PIPELINE), mix, seed, now }),
        put: firehosePutBatch(clients.firehose, resourceNames(config, DIRECT_PUT_PIPELINE).lakeDeliveryStream),
      },
      {
        pipeline: KINESIS_PIPELINE, entry: 'Kinesis PutRecords' as const, from: directCount, count: kinesisCount, concurrency: 2,
        generator: new TrafficGenerator({ schema: readSchema(KINESIS_PIPELINE), mix, seed: seed + 1, now }),
        put: kinesisPutBatch(clients.kinesis, resourceNames(config, KINESIS_PIPELINE).stream),
      },
    ];

    // Memory is sampled at fixed shares of the run (not at fixed times), each time in the same state:
    // producers paused and the twin settled (nothing buffered, readers and the metadata consumer
    // caught up). Under load the twin holds acknowledged records up to its backpressure limit and
    // the consumer reads ahead of what it has written; those backlogs are bounded, not leaks, and
    // comparing samples taken with backlogs of different sizes would say nothing.
    const memory: MemorySample[] = [];
    let acknowledged = 0;
    let callsInFlight = 0;
    let nextSample = 0;
    let gate: Promise<void> | undefined;
    const sampleEvery = Math.max(BATCH, Math.floor(options.records / sampleCount));
    const sample = async (): Promise<void> => {
      while (callsInFlight > 0) await new Promise((r) => setTimeout(r, 25));
      await twin.settle(600_000);
      collectGarbage();
      const usage = process.memoryUsage();
      memory.push({ sent: acknowledged, heapUsed: usage.heapUsed, rss: usage.rss });
      log(`sent ${acknowledged.toLocaleString('en-US')}/${options.records.toLocaleString('en-US')}  heap ${mib(usage.heapUsed)} MiB  rss ${mib(usage.rss)} MiB`);
    };
    const gated = (put: PutBatch): PutBatch => async (records, firstIndex) => {
      while (gate) await gate;
      callsInFlight++;
      let refused: number[];
      try {
        refused = await put(records, firstIndex);
      } finally {
        callsInFlight--;
      }
      acknowledged += records.length - refused.length;
      if (acknowledged >= nextSample && !gate) {
        nextSample = acknowledged + sampleEvery;
        gate = sample().finally(() => {
          gate = undefined;
        });
      }
      return refused;
    };

    const sendStarted = performance.now();
    const stats = await Promise.all(producers.map((p) => p.count === 0
      ? { calls: 0, retried: 0 }
      : putConcurrently(gated(p.put), batchesOf(p.generator, p.from, p.count), p.concurrency)));
    const sendSeconds = (performance.now() - sendStarted) / 1000;
    clients.firehose.destroy();
    clients.kinesis.destroy();
    log(`all ${options.records.toLocaleString('en-US')} records acknowledged in ${sendSeconds.toFixed(1)} s; waiting for delivery…`);
    // While delivery catches up: what is still pending where, every 5 s.
    const status = setInterval(() => {
      log(twin.summary().filter((s) => s.lake && (s.lake.received > 0 || s.metadata?.recordsSucceeded))
        .map((s) => `${s.pipeline}: ${s.lake!.pending} pending, ${s.lake!.deliveredRows} rows${s.metadata ? `, ${s.metadata.recordsSucceeded} metadata` : ''}`).join('; '));
    }, 5000);
    try {
      await twin.settle(600_000);
    } finally {
      clearInterval(status);
    }
    collectGarbage();
    const end = process.memoryUsage();
    memory.push({ sent: acknowledged, heapUsed: end.heapUsed, rss: end.rss });

    const summary = twin.summary();
    const athena = await LocalAthena.open(dataDir, config);
    const pipelines: PipelineOutcome[] = [];
    try {
      for (const [k, p] of producers.entries()) {
        const lake = summary.find((s) => s.pipeline === p.pipeline)!.lake!;
        const table = resourceNames(config, p.pipeline).glueTable;
        const result = await athena.query(`SELECT count(*), count(DISTINCT event_id), coalesce(sum(${EVENT_INDEX_SQL}), 0) FROM ${table}`);
        const [rows, distinct, checksum] = result.rows[0] as [bigint, bigint, bigint | number];
        const expected = { row: 0, failed: 0, dropped: 0 };
        let expectedIdChecksum = 0n;
        for (let i = p.from; i < p.from + p.count; i++) {
          const fate = p.generator.fate(i);
          expected[fate]++;
          if (fate === 'row') expectedIdChecksum += BigInt(i);
        }
        pipelines.push({
          pipeline: p.pipeline,
          entry: p.entry,
          sent: p.count,
          expected,
          rows: lake.deliveredRows,
          failed: lake.processingFailed + lake.formatConversionFailed + lake.partitioningFailed,
          dropped: lake.dropped,
          parquetFiles: lake.files,
          parquet: { rows: Number(rows), distinctIds: Number(distinct), idChecksum: BigInt(checksum), expectedIdChecksum },
          retriedByProducer: stats[k].retried,
        });
      }
    } finally {
      athena.close();
    }
    const dlq = await twin.dlqCount();
    const metadataRecords = summary.find((s) => s.pipeline === KINESIS_PIPELINE)?.metadata?.recordsSucceeded ?? 0;
    return {
      pipelines, dlqMessages: dlq.records, metadataRecords, faults: faults?.injected(), memory,
      sendSeconds, totalSeconds: (performance.now() - started) / 1000, dataDir,
    };
  } finally {
    await twin.stop();
    if (!options.keep && !options.dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Batches of records [from, from + count), generated as the producer asks for them: the run is never in memory whole. */
function* batchesOf(generator: TrafficGenerator, from: number, count: number): Generator<{ records: Buffer[]; firstIndex: number }> {
  for (let i = from; i < from + count; i += BATCH) {
    const chunk = generator.chunk(i, Math.min(i + BATCH, from + count));
    yield { records: chunk.map((r) => r.data), firstIndex: i };
  }
}

/**
 * Growth of the live heap and of RSS from the second quarter of the run (after start-up, caches
 * and buffers have filled) to its last quarter, each side the median of its samples so that one
 * sample taken mid-flush does not decide.
 */
export function memoryGrowth(samples: readonly MemorySample[]): { heapBytes: number; rssBytes: number; secondQuarter: MemorySample; lastQuarter: MemorySample } {
  const total = samples[samples.length - 1]?.sent ?? 0;
  const within = (lo: number, hi: number) => samples.filter((s) => s.sent > lo * total && s.sent <= hi * total);
  const second = within(0.25, 0.5);
  const last = within(0.75, 1);
  if (second.length === 0 || last.length === 0) throw new Error(`too few memory samples (${samples.length}) to compare quarters of the run`);
  const med = (xs: readonly MemorySample[], key: 'heapUsed' | 'rss') => {
    const sorted = xs.map((x) => x[key]).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  };
  const secondQuarter = { sent: second[second.length - 1].sent, heapUsed: med(second, 'heapUsed'), rss: med(second, 'rss') };
  const lastQuarter = { sent: last[last.length - 1].sent, heapUsed: med(last, 'heapUsed'), rss: med(last, 'rss') };
  return { heapBytes: lastQuarter.heapUsed - secondQuarter.heapUsed, rssBytes: lastQuarter.rss - secondQuarter.rss, secondQuarter, lastQuarter };
}

/** Limits on memory growth between the second and the last quarter of a run. */
export const MEMORY_LIMITS = {
  /** Live heap: a leak of 100 bytes per record over half of a 1M-record run is 48 MiB. */
  heapBytes: 24 * 1024 * 1024,
  /** RSS also holds DuckDB's native memory and the allocator's free lists, so it gets more room. */
  rssBytes: 128 * 1024 * 1024,
};

/** Everything that is wrong with a run; empty when every record is accounted for exactly once and memory stayed flat. */
export function soakProblems(report: SoakReport): string[] {
  const problems: string[] = [];
  let failedTotal = 0;
  for (const p of report.pipelines) {
    failedTotal += p.failed;
    const accounted = p.rows + p.failed + p.dropped;
    if (accounted !== p.sent) problems.push(`${p.pipeline}: sent ${p.sent} ≠ rows ${p.rows} + failed ${p.failed} + dropped ${p.dropped} (= ${accounted})`);
    if (p.parquet.rows !== p.rows) problems.push(`${p.pipeline}: the engine counted ${p.rows} rows, the Parquet files hold ${p.parquet.rows}`);
    if (p.parquet.distinctIds !== p.parquet.rows) problems.push(`${p.pipeline}: ${p.parquet.rows - p.parquet.distinctIds} duplicate event ids among ${p.parquet.rows} rows`);
    if (p.rows !== p.expected.row || p.parquet.idChecksum !== p.parquet.expectedIdChecksum) {
      problems.push(`${p.pipeline}: expected exactly the ${p.expected.row} valid records as rows, got ${p.rows} (id checksum ${p.parquet.idChecksum}, expected ${p.parquet.expectedIdChecksum})`);
    }
    if (p.failed !== p.expected.failed) problems.push(`${p.pipeline}: expected ${p.expected.failed} failed records, got ${p.failed}`);
    if (p.dropped !== p.expected.dropped) problems.push(`${p.pipeline}: expected ${p.expected.dropped} records dropped by rule, got ${p.dropped}`);
  }
  if (report.dlqMessages !== failedTotal) problems.push(`${failedTotal} failed records but ${report.dlqMessages} DLQ messages`);
  const growth = memoryGrowth(report.memory);
  if (growth.heapBytes > MEMORY_LIMITS.heapBytes) {
    problems.push(`live heap grew ${mib(growth.heapBytes)} MiB from the second quarter to the end (limit ${mib(MEMORY_LIMITS.heapBytes)} MiB)`);
  }
  if (growth.rssBytes > MEMORY_LIMITS.rssBytes) {
    problems.push(`RSS grew ${mib(growth.rssBytes)} MiB from the second quarter to the end (limit ${mib(MEMORY_LIMITS.rssBytes)} MiB)`);
  }
  return problems;
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/** The report as tables: per pipeline, faults injected, memory. */
function formatSoakReport(report: SoakReport): string {
  const lines: string[] = [];
  const cells = [
    ['pipeline', 'entry point', 'sent', 'Parquet rows', 'failed', 'dropped', 'rows+failed+dropped', 'distinct ids', 'files', 'producer retries'],
    ...report.pipelines.map((p) => [p.pipeline, p.entry, p.sent, p.rows, p.failed, p.dropped, p.rows + p.failed + p.dropped, p.parquet.distinctIds, p.parquetFiles, p.retriedByProducer]
      .map((v) => (typeof v === 'number' ? v.toLocaleString('en-US') : v))),
  ];
  const widths = cells[0].map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  const row = (r: string[]) => `| ${r.map((v, c) => (c < 2 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join(' | ')} |`;
  lines.push(row(cells[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.slice(1).map(row));
  lines.push('', `DLQ messages: ${report.dlqMessages.toLocaleString('en-US')}; metadata consumer records: ${report.metadataRecords.toLocaleString('en-US')}`);
  if (report.faults) {
    const t = report.faults.transform;
    lines.push(`Faults injected: transform ${Object.entries(t).map(([k, v]) => `${k} ${v}`).join(', ')}; storage writes ${report.faults.storage}; DynamoDB throttles ${report.faults.dynamo}`);
  } else {
    lines.push('Faults: none');
  }
  const g = memoryGrowth(report.memory);
  lines.push(`Memory (live heap after GC / RSS, median of the quarter): second quarter ${mib(g.secondQuarter.heapUsed)} / ${mib(g.secondQuarter.rss)} MiB, `
    + `last quarter ${mib(g.lastQuarter.heapUsed)} / ${mib(g.lastQuarter.rss)} MiB, growth ${mib(g.heapBytes)} / ${mib(g.rssBytes)} MiB`);
  const sent = report.pipelines.reduce((a, p) => a + p.sent, 0);
  lines.push(`Sent ${sent.toLocaleString('en-US')} records in ${report.sendSeconds.toFixed(1)} s (${Math.round(sent / report.sendSeconds).toLocaleString('en-US')} records/s); `
    + `${report.totalSeconds.toFixed(1)} s in all, start-up and the final checks included`);
  return lines.join('\n');
}

function argValue(args: readonly string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at >= 0 ? args[at + 1] : undefined;
}

async function main(args: readonly string[]): Promise<number> {
  // The transform logs a line per batch at INFO and prints its metrics: noise at this volume.
  process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  const records = Number(argValue(args, '--records') ?? 1_000_000);
  const kinesisRecords = Number(argValue(args, '--kinesis') ?? Math.round(records * 0.005));
  if (!Number.isInteger(records) || records < 1) throw new Error(`--records: expected a whole number ≥ 1, got ${argValue(args, '--records')}`);
  if (!Number.isInteger(kinesisRecords) || kinesisRecords < 0 || kinesisRecords > records) {
    throw new Error(`--kinesis: expected a whole number 0–${records}, got ${argValue(args, '--kinesis')}`);
  }
  const faults = args.includes('--no-faults') ? false : SOAK_FAULTS;
  console.log(`Soak: ${records.toLocaleString('en-US')} records (${(records - kinesisRecords).toLocaleString('en-US')} Firehose PutRecordBatch → ${DIRECT_PUT_PIPELINE}, `
    + `${kinesisRecords.toLocaleString('en-US')} Kinesis PutRecords → ${KINESIS_PIPELINE}), 5 % bad, 1 % blank, faults ${faults ? 'on' : 'off'}`);
  const report = await runSoak({
    records, kinesisRecords, faults, keep: args.includes('--keep'),
    log: (line) => process.stderr.write(`  ${line}\n`),
  });
  console.log(`\n${formatSoakReport(report)}`);
  if (args.includes('--keep')) console.log(`Data dir kept: ${report.dataDir}`);
  const problems = soakProblems(report);
  if (problems.length > 0) {
    console.error(`\nsoak FAILED:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    return 1;
  }
  console.log('\nEvery record accounted for exactly once (sent = Parquet rows + failed + dropped by rule, no duplicate event ids), memory flat.');
  return 0;
}

if (require.main === module || path.resolve(process.argv[1] ?? '') === __filename) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }, (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
