import type { Command } from 'commander';
import { MAX_PROVISIONED_SHARDS, unconfiguredSchemaWarnings } from '../config';
import { estimateCost, formatUsd, MODEL, qty, roundUsd, type CostEstimate } from './cost';
import { addConfigOption, configFrom, examples, parseRate, parseSize, requirePipeline } from './options';
import { formatNumber, formatTable, toJson } from './output';
import { GB, HOURS_PER_MONTH, OPENSEARCH_INSTANCE_HOUR, PRICES, PRICES_ASSUMED_ON, PRICES_REGION, SECONDS_PER_MONTH, type PriceName, type UnitPrice } from './prices';
import { FIREHOSE_API_LIMITS } from './record-sender';
import { io } from './progress';

interface CostFlags {
  readonly context?: string[];
  readonly rate: string;
  readonly size: string;
  readonly pipeline?: string[];
  readonly json?: boolean;
}

export function registerCostCommand(program: Command): void {
  const command = program
    .command('cost')
    .description('estimate the monthly AWS cost of the configured pipelines at an event rate and size, line by line, and the Kinesis shards the rate needs')
    .option('--rate <records/s>', 'events per second into each pipeline: 200, 200/s, 5k/s, 2M/h, 12000/min (k thousands, M millions)', '100/s')
    .option('--size <bytes>', 'average record size as sent: 800B, 1KB (1,000 B), 1KiB (1,024 B)', '1KB')
    .option('-p, --pipeline <name>', 'only this pipeline (repeatable; default: every configured pipeline)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--json', 'print the estimate, prices and assumptions as JSON');
  addConfigOption(command);
  command.addHelpText('after', [
    examples(
      'sluice cost --rate 500/s --size 1.2KB',
      'sluice cost --rate 5k/s --size 800B -p clickstream',
      'sluice cost -c env=prod --rate 2000 --json | jq .total',
    ),
    `\nPrices are AWS ${PRICES_REGION} list prices assumed on ${PRICES_ASSUMED_ON} (lib/cli/prices.ts names each one's pricing page): check them before you rely on them.`,
    'Exit status: 0 ok · 2 usage or configuration problem',
  ].join('\n'));
  command.action((flags: CostFlags) => {
    const config = configFrom(flags);
    const ratePerSecond = parseRate(flags.rate, '--rate');
    const recordBytes = parseSize(flags.size, '--size');
    // `-p iot -p iot` asks for iot once.
    const pipelines = flags.pipeline && flags.pipeline.length > 0 ? [...new Set(flags.pipeline)] : undefined;
    for (const p of pipelines ?? []) requirePipeline(config, p);
    const estimate = estimateCost(config, { ratePerSecond, recordBytes, pipelines });
    // The estimate prices the configured pipelines: a schema without an entry has no line, and says why.
    if (pipelines === undefined) for (const warning of unconfiguredSchemaWarnings(config)) io.err(`sluice: warning: ${warning}`);
    // On stderr, so --json stays one document; the estimate still prices the size given.
    if (recordBytes > FIREHOSE_API_LIMITS.maxRecordBytes) {
      io.err(`sluice: warning: --size ${flags.size} (${formatNumber(recordBytes)} B) is more than Firehose takes per record (1,000 KiB = ${formatNumber(FIREHOSE_API_LIMITS.maxRecordBytes)} B): such records are refused, so split them; the estimate prices them as given`);
    }
    if (flags.json) {
      io.out(toJson({ ...roundedAmounts(estimate), prices: usedPrices(estimate), pricesAssumedOn: PRICES_ASSUMED_ON, region: PRICES_REGION, model: MODEL }));
      return;
    }
    printEstimate(estimate, config.env);
  });
}

/** The estimate with its amounts in USD as the table shows them; each rounded from the exact sum, as there. */
function roundedAmounts(e: CostEstimate): CostEstimate {
  return {
    ...e,
    lines: e.lines.map((l) => ({ ...l, monthlyUsd: l.monthlyUsd === null ? null : roundUsd(l.monthlyUsd) })),
    totalsByPipeline: Object.fromEntries(Object.entries(e.totalsByPipeline).map(([p, t]) => [p, roundUsd(t)])),
    total: roundUsd(e.total),
  };
}

function usedPrices(estimate: CostEstimate): Record<string, unknown> {
  const names = new Set<PriceName>(estimate.lines.flatMap((l) => l.prices));
  const out: Record<string, unknown> = {};
  for (const name of names) out[name] = PRICES[name];
  // The instance-hour price is per instance type, outside PRICES: listed as the table lists it.
  const instances = openSearchInstancePrice(estimate);
  if (instances) out[`openSearchInstanceHour:${instances.type}`] = instances.price;
  return out;
}

/** The instance type the estimate prices a domain of, and its hourly price when lib/cli/prices.ts has one. */
function openSearchInstancePrice(e: CostEstimate): { type: string; price: UnitPrice } | undefined {
  const line = e.lines.find((l) => l.service === 'OpenSearch' && l.item.startsWith('instances'));
  const type = line ? /\((.+)\)/.exec(line.item)?.[1] ?? '' : '';
  const price = OPENSEARCH_INSTANCE_HOUR[type];
  return price ? { type, price } : undefined;
}

/** "100 records/s"; below one a second, also per hour: "0.00028 records/s (1 per hour)". */
export function describeRate(perSecond: number): string {
  if (perSecond >= 1) return `${formatNumber(perSecond)} records/s`;
  return `${qty(perSecond)} records/s (${qty(perSecond * 3600)} per hour)`;
}

function printEstimate(e: CostEstimate, env: string): void {
  const { ratePerSecond, recordBytes } = e.inputs;
  io.out(`Monthly cost estimate (env ${env}) at ${describeRate(ratePerSecond)} of ${formatNumber(recordBytes)} bytes per pipeline`);
  io.out(`= ${qty(ratePerSecond * SECONDS_PER_MONTH)} records and ${qty((ratePerSecond * recordBytes * SECONDS_PER_MONTH) / GB)} GiB per pipeline per month (${HOURS_PER_MONTH} h)\n`);
  io.out(formatTable(['pipeline', 'service', 'item', 'USD/month', 'formula'], e.lines.map((l) => [
    l.pipeline, l.service, l.item, l.monthlyUsd === null ? 'n/a' : formatUsd(l.monthlyUsd), l.formula,
  ])));
  io.out('');
  io.out(formatTable(['pipeline', 'USD/month'], [
    ...Object.entries(e.totalsByPipeline).map(([p, t]) => [p, formatUsd(t)]),
    ['total', formatUsd(e.total)],
  ]));
  if (e.lines.some((l) => l.monthlyUsd === null)) io.out('(lines marked n/a have no price in the table and are not in the total)');

  if (e.shards.length > 0) {
    io.out('\nKinesis shards the write rate needs (1 MiB/s and 1,000 records/s per shard)');
    io.out(formatTable(['pipeline', 'MiB/s', 'for bytes', 'for records', 'needed', 'configured', 'check'], e.shards.map((s) => [
      s.pipeline, Math.round(s.mibPerSecond * 1000) / 1000, s.forBytes, s.forRecords, s.needed, String(s.configured),
      s.enough ? 'ok' : `too few: set -c pipelines.${s.pipeline}.shards=${s.priced}${s.priced === 'on-demand' ? ` (the configuration takes at most ${MAX_PROVISIONED_SHARDS} shards)` : ''}`,
    ])));
  }

  const used = new Set<PriceName>(e.lines.flatMap((l) => l.prices));
  io.out(`\nUnit prices assumed (AWS ${PRICES_REGION} list prices as of ${PRICES_ASSUMED_ON}; assumptions to check on the pages named)`);
  const rows = [...used].map((name) => [PRICES[name].service, PRICES[name].unit, `$${PRICES[name].usd}`, PRICES[name].source]);
  const instances = openSearchInstancePrice(e);
  if (instances) rows.push([instances.price.service, `${instances.price.unit} (${instances.type})`, `$${instances.price.usd}`, instances.price.source]);
  io.out(formatTable(['service', 'unit', 'price', 'source'], rows));

  io.out('\nModel assumptions (lib/cli/cost.ts MODEL)');
  io.out([
    '  AWS prices data per GB of 1,024³ bytes and rounds Firehose records up to 5 KB of 5,120 bytes: quantities are shown in those units, as GiB and KiB',
    `  Parquet is ${MODEL.parquetRatio} × the JSON size; S3 storage is shown at steady state under the configured lifecycle`,
    `  transform Lambda: ${MODEL.transformBaseMs} ms + ${MODEL.transformPerRecordMs} ms per record per invocation; metadata consumer: ${MODEL.consumerBaseMs} ms + ${MODEL.consumerPerRecordMs} ms per record`,
    `  the metadata consumer uses ${MODEL.metadataWriteUnitsPerRecord} write units per record and 2 per event type counted in each transaction of up to ${MODEL.metadataEventsPerTransaction} events, and keeps one ${MODEL.metadataItemBytes}-byte item per record; Lambdas run on arm64`,
    `  provisioned streams are priced with enough shards for the rate (the configured count when it is larger), as on-demand when that is more than ${MAX_PROVISIONED_SHARDS} shards`,
    '  KMS keys, the PII hash key secret and the alarms are counted from the configuration as the stack creates them',
  ].join('\n'));
  io.out('\nNot included');
  io.out(e.notModelled.map((n) => `  ${n}`).join('\n'));
}
