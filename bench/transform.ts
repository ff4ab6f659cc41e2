/**
 * Benchmark of the Lambdas as they ship.
 *
 * 1. Throughput of the record transform (the minified esbuild bundle, as deployed) on realistic
 *    1 MiB and 3 MiB Firehose batches, against a floor measured in the same run on the same
 *    records: base64 decode + JSON.parse + JSON.stringify + base64 encode, no validation.
 *    Goal: ≥ 0.7 × the floor.
 * 2. Each handler's bundle as NodejsFunction builds it (esbuild: bundle, minify, target node22,
 *    cjs, sourcemap, `@aws-sdk/*` external since the Node.js runtime provides it) and the time to
 *    load it in a fresh Node process.
 *
 * Run: node bin/run-ts.js bench/transform.ts [--quick]. Prints tables; never fails on timing.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { build } from 'esbuild';
import type { FirehoseTransformationResult, FirehoseTransformationResultRecord } from 'aws-lambda';
import type { TransformationEvent } from '../transforms/shared/firehose-event';
import { loadConfig } from '../lib/config';
import { pipelineSchema } from '../transforms/shared/pipeline';
import { median, QUICK, table } from './report';

const ROOT = path.resolve(__dirname, '..');
const HANDLERS = ['record-transform', 'metadata-consumer', 'failure-router'] as const;

interface BundleInfo {
  readonly name: string;
  readonly file: string;
  readonly bytes: number;
  readonly mapBytes: number;
}

async function bundle(name: string, outdir: string): Promise<BundleInfo> {
  const file = path.join(outdir, name, 'index.js');
  await build({
    entryPoints: [path.join(ROOT, 'transforms', name, 'handler.ts')],
    outfile: file,
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    minify: true,
    sourcemap: true,
    external: ['@aws-sdk/*'],
    supported: { 'dynamic-import': false },
    logLevel: 'error',
  });
  return { name, file, bytes: fs.statSync(file).size, mapBytes: fs.statSync(`${file}.map`).size };
}

/** Median wall time of `require(bundle)` in fresh Node processes (resolving externals from this project). */
function loadTimeMs(file: string, runs: number): number {
  const script = `const t=process.hrtime.bigint();require(${JSON.stringify(file)});process.stdout.write(String(Number(process.hrtime.bigint()-t)/1e6))`;
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const out = execFileSync(process.execPath, ['-e', script], { env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') }, encoding: 'utf8' });
    times.push(Number(out));
  }
  return median(times);
}

// ---------------------------------------------------------------------------------------------
// Realistic records: mostly valid, about 2% failing validation, sizes as producers send them.

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uuid(r: () => number): string {
  const h = () => Math.floor(r() * 16).toString(16);
  const n = (k: number) => Array.from({ length: k }, h).join('');
  return `${n(8)}-${n(4)}-4${n(3)}-${'89ab'[Math.floor(r() * 4)]}${n(3)}-${n(12)}`;
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

function sampleRecord(pipeline: string, r: () => number, i: number): Record<string, unknown> {
  const at = new Date(Date.UTC(2026, 10, 22, 13, 0, 0) + Math.floor(r() * 3_600_000)).toISOString();
  switch (pipeline) {
    case 'clickstream':
      return {
        event_id: uuid(r), event_type: pick(r, ['page_view', 'click', 'scroll', 'add_to_cart']), event_time: at,
        user_id: `u-${Math.floor(r() * 10_000)}`, session_id: `s-${uuid(r)}`,
        page: { url: `https://shop.example.com/products/${i % 500}?ref=home&utm_source=newsletter`, path: `/products/${i % 500}`, title: 'Wireless noise-cancelling headphones — Example Shop', referrer: 'https://www.google.com/' },
        device: { type: pick(r, ['desktop', 'mobile', 'tablet']), os: 'iOS 18', browser: 'Safari', screen_width: 390, screen_height: 844 },
        geo: { country: 'US', city: 'Seattle', location: { lat: 47.61 + r() / 100, lon: -122.33 + r() / 100 } },
        ip_address: `203.0.113.${Math.floor(r() * 255)}`, duration_ms: Math.floor(r() * 60_000), utm_campaign: 'spring-sale',
      };
    case 'iot':
      return {
        event_id: uuid(r), event_type: pick(r, ['telemetry', 'telemetry', 'telemetry', 'heartbeat', 'alert']), event_time: at,
        device_id: `dev-${Math.floor(r() * 0xffffffff).toString(16).padStart(8, '0')}`, device_model: 'TH-300', firmware_version: '2.1.3',
        temperature_c: Math.round((15 + r() * 20) * 100) / 100, humidity_pct: Math.round(r() * 10_000) / 100, pressure_hpa: 1013.25,
        battery_pct: Math.floor(r() * 100), signal_rssi: -Math.floor(r() * 100), location: { lat: 52.52, lon: 13.405 },
        tags: ['warehouse', 'cold-chain'], uptime_s: Math.floor(r() * 10_000_000),
      };
    case 'transactions':
      return {
        event_id: uuid(r), event_type: pick(r, ['authorization', 'capture', 'refund']), event_time: at,
        transaction_id: `txn_${uuid(r).replace(/-/g, '').slice(0, 20)}`, customer_id: `cus_${Math.floor(r() * 100_000)}`,
        ...((currency) => ({ currency, amount: currency === 'JPY' ? Math.floor(r() * 100_000) : Math.floor(r() * 100_000) / 100 }))(pick(r, ['USD', 'EUR', 'GBP', 'JPY'])),
        status: 'approved',
        merchant: { id: `m_${i % 300}`, name: 'Corner Coffee', category_code: '5812', country: 'US' },
        payment_method: { type: 'card', card_brand: 'visa', card_number: '4111111111111111' },
        email: `customer${i}@example.com`, ip_address: '198.51.100.23', risk_score: Math.round(r() * 1000) / 1000,
      };
    default:
      return {
        event_id: uuid(r), user_id: `user-${i % 1000}`, event_type: pick(r, ['signup', 'login', 'purchase', 'logout']),
        amount: Math.floor(r() * 10_000) / 100, currency: 'USD', timestamp: at, app_version: '3.3.0',
        attributes: { plan: 'pro', locale: 'en-US', experiment: 'checkout-v2' },
      };
  }
}

/**
 * A Firehose transformation event as the pipeline's delivery stream sends it: records of a Kinesis-sourced
 * stream carry `kinesisRecordMetadata` (which the transform copies into `sluice`), DirectPut records do not.
 */
export function batchOf(pipeline: string, targetBytes: number, seed: number): TransformationEvent {
  const fromKinesis = loadConfig().pipelines[pipeline]?.source === 'kinesis';
  const r = rng(seed);
  const records: TransformationEvent['records'] = [];
  let bytes = 0;
  for (let i = 0; bytes < targetBytes; i++) {
    const rec = sampleRecord(pipeline, r, i);
    if (r() < 0.02) delete rec[Object.keys(rec)[1]]; // ~2% invalid: a required field missing
    const data = Buffer.from(JSON.stringify(rec));
    bytes += data.length;
    records.push({
      recordId: `49654218744930171232346185420183853094356263932735209474${String(i).padStart(6, '0')}`,
      approximateArrivalTimestamp: 1795874712345 + i,
      data: data.toString('base64'),
      ...(fromKinesis
        ? { kinesisRecordMetadata: { shardId: 'shardId-000000000000', partitionKey: 'k', approximateArrivalTimestamp: 1795874712000 + i, sequenceNumber: `4965421874493017123234618542${i}`, subsequenceNumber: 0 } }
        : {}),
    });
  }
  return { invocationId: 'bench', deliveryStreamArn: 'arn:aws:firehose:us-east-1:123456789012:deliverystream/bench', region: 'us-east-1', records };
}

/** The floor: what any JSON-in/JSON-out transform must do at least. */
function floor(event: TransformationEvent): FirehoseTransformationResult {
  const out: FirehoseTransformationResultRecord[] = new Array(event.records.length);
  for (let i = 0; i < event.records.length; i++) {
    const r = event.records[i];
    const parsed: unknown = JSON.parse(Buffer.from(r.data, 'base64').toString('utf8'));
    out[i] = { recordId: r.recordId, result: 'Ok', data: Buffer.from(`${JSON.stringify(parsed)}\n`, 'utf8').toString('base64') };
  }
  return { records: out };
}

/**
 * The floor for what this transform writes: the same decode and parse of every record, then the
 * transform's own output serialized and encoded (an enriched line for each Ok record, the original
 * data for the rest). Enrichment roughly doubles a small record, and the serializing half of the
 * floor grows with it; this says how much of the gap to the plain floor that growth explains.
 *
 * With `validate`, the required floor: the work the issue requires, written the floor's way with
 * nothing of ours around it, i.e. this plus the precompiled validator (the same generated code the
 * handler runs) on every parsed record; no enrichment, masking or partition keys computed. floor /
 * required floor says how near the plain floor that required work alone comes, done with the
 * floor's own primitives (the handler encodes its output more cheaply than per-record Buffer calls,
 * so it is no strict bound).
 */
function outputFloor(event: TransformationEvent, outputs: ReadonlyArray<unknown>, validate?: (value: unknown) => boolean): FirehoseTransformationResult {
  const out: FirehoseTransformationResultRecord[] = new Array(event.records.length);
  for (let i = 0; i < event.records.length; i++) {
    const r = event.records[i];
    const parsed: unknown = JSON.parse(Buffer.from(r.data, 'base64').toString('utf8'));
    const valid = validate === undefined || validate(parsed);
    const output = outputs[i];
    out[i] = { recordId: r.recordId, result: valid ? 'Ok' : 'ProcessingFailed', data: output === undefined ? r.data : Buffer.from(`${JSON.stringify(output)}\n`, 'utf8').toString('base64') };
  }
  return { records: out };
}

/** What the transform wrote for each record: the enriched object of an Ok record, undefined otherwise. */
function outputsOf(response: FirehoseTransformationResult): unknown[] {
  return response.records.map((r) => (r.result === 'Ok' && r.data !== undefined ? (JSON.parse(Buffer.from(r.data, 'base64').toString('utf8')) as unknown) : undefined));
}

interface PairTiming {
  /** Median wall time of each function, ms. */
  readonly a: number;
  readonly b: number;
  /** Median over the pairs of time(a) / time(b): each pair ran back to back, so drift of the machine cancels. */
  readonly ratio: number;
}

/**
 * Two functions timed in pairs, back to back, for at least `minMs` and `minPairs` pairs. Which one
 * runs first alternates, so neither always inherits the other's garbage (and the collection it triggers).
 */
async function timePair(a: () => unknown, b: () => unknown, minMs: number, minPairs: number): Promise<PairTiming> {
  for (let i = 0; i < 3; i++) {
    await a(); // warm-up: JIT, caches
    await b();
  }
  const time = async (f: () => unknown): Promise<number> => {
    const t = performance.now();
    await f();
    return performance.now() - t;
  };
  const ta: number[] = [];
  const tb: number[] = [];
  const ratios: number[] = [];
  const deadline = performance.now() + minMs;
  while (performance.now() < deadline || ta.length < minPairs) {
    const aFirst = ta.length % 2 === 0;
    const first = await time(aFirst ? a : b);
    const second = await time(aFirst ? b : a);
    ta.push(aFirst ? first : second);
    tb.push(aFirst ? second : first);
    ratios.push(ta[ta.length - 1] / tb[tb.length - 1]);
  }
  return { a: median(ta), b: median(tb), ratio: median(ratios) };
}

async function main(): Promise<void> {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  try {
    const bundles: BundleInfo[] = [];
    for (const name of HANDLERS) bundles.push(await bundle(name, outdir));
    const loads = bundles.map((b) => loadTimeMs(b.file, QUICK ? 3 : 7));

    process.env.POWERTOOLS_LOG_LEVEL = 'ERROR';
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    const transform = require(bundles[0].file) as typeof import('../transforms/record-transform/handler');
    const rows: Array<Array<string | number>> = [];
    for (const pipeline of ['clickstream', 'iot', 'transactions', 'app-events']) {
      for (const mib of [1, 3]) {
        const event = batchOf(pipeline, mib * 1024 * 1024, 42 + mib);
        const handle = transform.createTransformHandler({ pipeline, destination: 'lake', piiHashKey: 'bench-key' });
        const check = await handle(event);
        const ok = check.records.filter((r) => r.result === 'Ok').length;
        const responseBytes = Buffer.byteLength(JSON.stringify(check));
        const timing = await timePair(() => floor(event), () => handle(event), QUICK ? 500 : 5000, QUICK ? 8 : 30);
        const [tFloor, tTransform, ratio] = [timing.a, timing.b, timing.ratio];
        const outputs = outputsOf(check);
        let [bytesIn, bytesOut] = [0, 0];
        check.records.forEach((r, i) => {
          if (r.result !== 'Ok' || r.data === undefined) return;
          bytesIn += Buffer.byteLength(event.records[i].data, 'base64');
          bytesOut += Buffer.byteLength(r.data, 'base64');
        });
        const toOutputFloor = (await timePair(() => outputFloor(event, outputs), () => handle(event), QUICK ? 500 : 3000, QUICK ? 8 : 20)).ratio;
        const validate = pipelineSchema(pipeline).validate;
        const ceiling = (await timePair(() => floor(event), () => outputFloor(event, outputs, validate), QUICK ? 500 : 3000, QUICK ? 8 : 20)).ratio;
        const n = event.records.length;
        rows.push([
          `${pipeline} ${mib} MiB`, n, `${ok}/${n}`, `${Math.round(bytesIn / ok)} → ${Math.round(bytesOut / ok)}`, (responseBytes / 1024 / 1024).toFixed(2),
          Math.round(n / (tFloor / 1000)).toLocaleString('en-US'), Math.round(n / (tTransform / 1000)).toLocaleString('en-US'),
          ratio.toFixed(2), ratio >= 0.7 ? 'yes' : 'no', toOutputFloor.toFixed(2), ceiling.toFixed(2),
        ]);
      }
    }
    console.log(`\nRecord transform throughput (minified bundle, Node ${process.version}; rec/s from median times; transform/floor = median of per-pair ratios, floor and transform run back to back; floor = base64 + JSON.parse + JSON.stringify + base64)\n`);
    console.log(table(['batch', 'records', 'ok', 'bytes per Ok record, in → out', 'response MiB', 'floor rec/s', 'transform rec/s', 'transform/floor', '≥ 0.7', 'transform/output floor', 'floor/required floor'], rows));
    console.log('\noutput floor = the same decode + parse, then the transform\'s own output (enriched lines, original data for failed records) serialized and encoded: the gap that is left once output growth is accounted for.');
    console.log('required floor = the output floor plus the precompiled validator on each parsed record (no enrichment, masking or partition keys): floor/required floor is how near the floor the required work alone comes, done the floor\'s way.');
    console.log('\nHandler bundles (esbuild as NodejsFunction: minify, node22, cjs, sourcemap, @aws-sdk/* external)\n');
    console.log(table(
      ['handler', 'bundle KiB', 'sourcemap KiB', 'load ms (fresh process, median)'],
      bundles.map((b, i) => [b.name, (b.bytes / 1024).toFixed(1), (b.mapBytes / 1024).toFixed(1), loads[i].toFixed(1)]),
    ));
    console.log('\nLoad time includes the external AWS SDK modules each bundle requires at the top level (resolved from node_modules here, from the runtime in Lambda).');
  } finally {
    fs.rmSync(outdir, { recursive: true, force: true });
  }
}

if (require.main === module || path.resolve(process.argv[1] ?? '') === __filename) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
