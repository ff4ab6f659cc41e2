/**
 * A month of the configured pipelines at a given event rate and size, line by line, each line with
 * its formula and the unit prices it used (lib/cli/prices.ts). Pure: configuration in, estimate out.
 * What the prices cannot say (how long a Lambda runs, how well Parquet compresses) is an explicit,
 * printed assumption in MODEL.
 */
import { MAX_PROVISIONED_SHARDS, ON_DEMAND_INITIAL_SHARDS, type PipelineConfig, type SluiceConfig } from '../config';
import { loadModel, TIME_PARTITIONS, type SchemaModel } from '../schema';
import { formatNumber } from './output';
import {
  FIREHOSE_BILLING_INCREMENT_BYTES,
  GB,
  HOURS_PER_MONTH,
  KINESIS_PUT_PAYLOAD_UNIT_BYTES,
  OPENSEARCH_INSTANCE_HOUR,
  PRICES,
  SECONDS_PER_MONTH,
  SHARD_WRITE_BYTES_PER_SECOND,
  SHARD_WRITE_RECORDS_PER_SECOND,
  type PriceName,
} from './prices';

/** Assumptions of the model beyond list prices; printed with every estimate. */
export const MODEL = {
  /**
   * Parquet (Snappy) bytes per byte of the JSON producers send. Measured: the schemas' sample records, through the
   * transform (which enriches them to 1.3–1.9 × their size), written by DuckDB with the lake's columns came to
   * 0.13–0.18 of the JSON in 500-row files (a flush at low rates) and 0.07–0.14 in 100,000-row files
   * (`npm run bench -- parquet-ratio`); real
   * events repeat more than random samples and compress better.
   */
  parquetRatio: 0.15,
  /**
   * Transform Lambda run time per invocation: fixed part plus a per-record part. The per-record part is the slow
   * end of `npm run bench -- transform` (53k–157k records/s in 1 MiB batches) on a whole core; a 512 MB function
   * has about 0.3 of a vCPU, so it may take up to 3 × as long, still a small line beside Firehose's.
   */
  transformBaseMs: 20,
  transformPerRecordMs: 0.02,
  /** Metadata consumer run time per invocation (it writes to DynamoDB): an assumption, not measured. */
  consumerBaseMs: 20,
  consumerPerRecordMs: 0.1,
  /** The metadata consumer's event item per record, kept for metadata.ttlDays. */
  metadataItemBytes: 300,
  /**
   * Write request units per record (transforms/metadata-consumer/store.ts): the event item in a
   * TransactWriteItems (2 units, transactional) and the entity's last-seen update (1). The per-minute
   * counters are summed per transaction (up to `metadataEventsPerTransaction` events): a line of their own.
   */
  metadataWriteUnitsPerRecord: 3,
  /** Events per metadata transaction (the consumer's eventsPerTransaction default); each also updates one counter per event type in it, 2 units each. */
  metadataEventsPerTransaction: 50,
  /**
   * Custom metrics the handlers publish on every invocation (EMF, zeros included): RecordsOk, RecordsDropped and
   * RecordsFailed per transform (each delivery stream's); EventsRecorded, DuplicateEvents, MalformedRecords,
   * RecordsReportedForRetry and WriteRetries per metadata consumer.
   */
  transformMetrics: 3,
  consumerMetrics: 5,
  /** A partition key without an enum (injected projection) is assumed to take this many values at once. */
  injectedPartitionValues: 10,
  /** An on-demand stream's shards, for per-shard behaviour (Lambda batching); AWS starts on-demand streams at 4. */
  onDemandShards: ON_DEMAND_INITIAL_SHARDS,
} as const;

/** S3 lifecycle transitions skip objects smaller than this (the data bucket's TransitionDefaultMinimumObjectSize, all_storage_classes_128K). */
export const LIFECYCLE_MIN_OBJECT_BYTES = 128 * 1024;

/**
 * The alarms lib/infra/pipeline-dashboard.ts creates for each thing it watches; the estimate counts the things from
 * the configuration as the stack does (test/cli/cost.test.ts checks the total against a synthesized template).
 */
export const ALARMS_PER = {
  /** Write throttles (its iterator age is the largest of its Firehose readers' lags, which kinesisReader counts). */
  stream: 1,
  /**
   * Data freshness, throttled records, delivery success, transform invocations failing, and the transform failing a large
   * share of records (every delivery stream runs the transform).
   */
  deliveryStream: 5,
  /** Of a delivery stream with a Kinesis source: how far it reads behind the stream's newest record, and reading nothing while the stream receives records. */
  kinesisReader: 2,
  /** Of the lake delivery stream only: partitions open near and over the quota, records not converted to Parquet. */
  lake: 3,
  /** Of the search delivery stream only: its S3 backup of refused documents and failed records failing. */
  searchBackup: 1,
  /** Of a pipeline with a delivery stream: its transforms, conversions or partition quota failing records while the failure router is never invoked. */
  routerNotInvoked: 1,
  /** Errors, throttles, duration near the timeout: each transform, consumer and the failure router (not the index-template function, which runs only in deploys). */
  function: 3,
  /**
   * The enhanced fan-out consumer's iterator age, records its handler reported for retry, batches it gave up on that did
   * not reach its dead-letter queue, and no invocation while the stream receives records.
   */
  metadataConsumer: 4,
  /** Writes DynamoDB throttled on the metadata table: the table is in every stack. */
  metadataTable: 1,
  /** New dead letters and the oldest one's age, depth and age of the router's failed-events queue, events undeliverable to it, records left unrouted. */
  failureRouter: 6,
  /** New messages in the consumer dead-letter queue: the queue is in every stack. */
  consumerDlq: 1,
  /** Its oldest message's age, against the retention of the streams with a consumer: with a metadata consumer only. */
  consumerDlqAge: 1,
  /**
   * Cluster red and yellow, writes blocked, free storage, JVM and old-generation memory pressure, CPU, nodes missing,
   * snapshot failed: of a domain the stack creates, not of an existing one.
   */
  createdDomain: 9,
} as const;

export interface CostInputs {
  /** Records per second, per pipeline. */
  readonly ratePerSecond: number;
  /** Average record size in bytes, as the producer sends it. */
  readonly recordBytes: number;
  /** Only these pipelines. @default every configured pipeline */
  readonly pipelines?: readonly string[];
}

export interface CostLine {
  /** The pipeline, or "(shared)" for what all pipelines share. */
  readonly pipeline: string;
  readonly service: string;
  readonly item: string;
  /** How the amount is computed, with the numbers. */
  readonly formula: string;
  /** USD per month; null when the model has no price for it (named in the formula). */
  readonly monthlyUsd: number | null;
  readonly prices: readonly PriceName[];
}

export interface ShardNeed {
  readonly pipeline: string;
  readonly configured: number | 'on-demand';
  readonly mibPerSecond: number;
  readonly forBytes: number;
  readonly forRecords: number;
  /** Shards the write rate needs: 1 MiB/s and 1,000 records/s per shard. */
  readonly needed: number;
  /** The configuration has enough (always true for on-demand, which scales itself). */
  readonly enough: boolean;
  /**
   * What the estimate prices, and the setting to use when the configuration has too few: the shards needed, or
   * "on-demand" when they are more than the configuration takes (MAX_PROVISIONED_SHARDS).
   */
  readonly priced: number | 'on-demand';
}

export interface CostEstimate {
  readonly inputs: CostInputs;
  readonly lines: CostLine[];
  readonly totalsByPipeline: Record<string, number>;
  readonly total: number;
  readonly shards: ShardNeed[];
  /** What is left out. */
  readonly notModelled: string[];
}

/** Shards for a write rate: 1 MiB/s and 1,000 records/s per shard (Kinesis Data Streams quotas). */
export function shardsNeeded(ratePerSecond: number, recordBytes: number): { forBytes: number; forRecords: number; needed: number } {
  const forBytes = Math.ceil((ratePerSecond * recordBytes) / SHARD_WRITE_BYTES_PER_SECOND);
  const forRecords = Math.ceil(ratePerSecond / SHARD_WRITE_RECORDS_PER_SECOND);
  return { forBytes, forRecords, needed: Math.max(1, forBytes, forRecords) };
}

const usd = (n: number) => (n > 0 && n < 0.01 ? `$${n.toPrecision(2)}` : `$${n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`);
/**
 * A USD amount rounded as the table prints it (usd above): to the cent, and to two significant digits
 * below a cent, so a small line is not 0. For --json, where 3.6792000000000002 is float noise, not a price.
 */
export const roundUsd = (n: number) => (n > 0 && n < 0.01 ? Number(n.toPrecision(2)) : Number(n.toFixed(2)));
const plural = (n: number, word: string) => `${formatNumber(n)} ${word}${n === 1 ? '' : 's'}`;
const unitUsd = (name: PriceName) => `$${PRICES[name].usd}`;
/** 1,234 · 12.35 · 0.0073 (two significant digits when rounding to hundredths would print 0). */
export const qty = (n: number) => (n >= 100 ? formatNumber(Math.round(n)) : n >= 0.01 || n === 0 ? formatNumber(Math.round(n * 100) / 100) : String(Number(n.toPrecision(2))));
const gb = (bytes: number) => bytes / GB;
const roundUp = (bytes: number, increment: number) => Math.ceil(bytes / increment) * increment;

export function estimateCost(config: SluiceConfig, inputs: CostInputs): CostEstimate {
  const names = inputs.pipelines ?? Object.keys(config.pipelines);
  const lines: CostLine[] = [];
  const shards: ShardNeed[] = [];
  const r = inputs.ratePerSecond;
  const size = inputs.recordBytes;
  const records = r * SECONDS_PER_MONTH;
  const rawBytes = records * size;
  const add = (pipeline: string, service: string, item: string, formula: string, monthlyUsd: number | null, prices: PriceName[]) =>
    lines.push({ pipeline, service, item, formula, monthlyUsd, prices });

  for (const name of names) {
    const p = config.pipelines[name];
    const needs = shardsNeeded(r, size);
    let shardCount: number = MODEL.onDemandShards;
    if (p.source === 'kinesis') {
      const priced = pricedCapacity(p.shards, needs.needed);
      // An on-demand stream has at least the shards its write rate needs.
      shardCount = priced === 'on-demand' ? Math.max(MODEL.onDemandShards, needs.needed) : priced;
      shards.push({
        pipeline: name,
        configured: p.shards,
        mibPerSecond: (r * size) / SHARD_WRITE_BYTES_PER_SECOND,
        ...needs,
        enough: p.shards === 'on-demand' || p.shards >= needs.needed,
        priced,
      });
      kinesisLines(name, p, priced, needs.needed, records, rawBytes, size, add);
    }

    const deliveryStreams = (['lake', 'search'] as const).filter((d) => p.destinations.includes(d));
    const model = loadModel(name);
    for (const d of deliveryStreams) {
      const billed = records * roundUp(size, FIREHOSE_BILLING_INCREMENT_BYTES);
      add(name, 'Firehose', `ingestion (${d})`,
        `${qty(records)} records × ${formatNumber(roundUp(size, FIREHOSE_BILLING_INCREMENT_BYTES) / 1024)} KiB (${formatNumber(size)} B rounded up to a multiple of 5 KiB) = ${qty(gb(billed))} GiB × ${unitUsd('firehoseIngestionGB')}`,
        gb(billed) * PRICES.firehoseIngestionGB.usd, ['firehoseIngestionGB']);
      // The transform runs in both delivery streams (search mode in the search one).
      const sources = p.source === 'kinesis' ? shardCount : 1;
      const bufferBytes = p.transform.processorBufferMiB * 1024 * 1024;
      const bySize = (r * size) / bufferBytes;
      // An interval of 0 sends what a read brings at once: about one read per second per shard (or stream).
      const interval = p.transform.processorIntervalSeconds > 0 ? p.transform.processorIntervalSeconds : 1;
      const byTime = sources / interval;
      const invocationsPerSecond = Math.min(r, Math.max(bySize, byTime));
      const invocations = invocationsPerSecond * SECONDS_PER_MONTH;
      const recordsPerInvocation = r / invocationsPerSecond;
      const seconds = (MODEL.transformBaseMs + MODEL.transformPerRecordMs * recordsPerInvocation) / 1000;
      const memoryGB = p.transform.memoryMiB / 1024;
      add(name, 'Lambda', `transform duration (${d})`,
        `${qty(invocations)} invocations × ${qty(seconds * 1000)} ms × ${qty(memoryGB)} GiB = ${qty(invocations * seconds * memoryGB)} GiB-s × ${unitUsd('lambdaArmGBSecond')}`,
        invocations * seconds * memoryGB * PRICES.lambdaArmGBSecond.usd, ['lambdaArmGBSecond']);
      add(name, 'Lambda', `transform requests (${d})`,
        `${qty(invocations)} invocations (one per ${p.transform.processorBufferMiB} MiB or ${p.transform.processorIntervalSeconds > 0 ? `${p.transform.processorIntervalSeconds} s` : '1 s (interval 0: each read)'} per ${p.source === 'kinesis' ? 'shard' : 'stream'}) ÷ 1M × ${unitUsd('lambdaRequestsPerMillion')}`,
        (invocations / 1e6) * PRICES.lambdaRequestsPerMillion.usd, ['lambdaRequestsPerMillion']);
      if (d === 'lake') lakeLines(name, p, model, config, r, size, records, rawBytes, add);
    }

    if (p.destinations.includes('metadata')) {
      const byBatch = r / p.consumer.batchSize;
      const byWindow = (shardCount * p.consumer.parallelization) / Math.max(1, p.consumer.batchWindowSeconds);
      const invocationsPerSecond = Math.min(r, Math.max(byBatch, byWindow));
      const invocations = invocationsPerSecond * SECONDS_PER_MONTH;
      const seconds = (MODEL.consumerBaseMs + MODEL.consumerPerRecordMs * (r / invocationsPerSecond)) / 1000;
      const memoryGB = p.consumer.memoryMiB / 1024;
      add(name, 'Lambda', 'metadata consumer duration',
        `${qty(invocations)} invocations × ${qty(seconds * 1000)} ms × ${qty(memoryGB)} GiB = ${qty(invocations * seconds * memoryGB)} GiB-s × ${unitUsd('lambdaArmGBSecond')}`,
        invocations * seconds * memoryGB * PRICES.lambdaArmGBSecond.usd, ['lambdaArmGBSecond']);
      add(name, 'Lambda', 'metadata consumer requests',
        `${qty(invocations)} invocations (batches of ≤ ${p.consumer.batchSize}, ${p.consumer.batchWindowSeconds} s window, ${plural(shardCount, 'shard')} × ${p.consumer.parallelization}) ÷ 1M × ${unitUsd('lambdaRequestsPerMillion')}`,
        (invocations / 1e6) * PRICES.lambdaRequestsPerMillion.usd, ['lambdaRequestsPerMillion']);
      const wru = records * MODEL.metadataWriteUnitsPerRecord;
      add(name, 'DynamoDB', 'metadata writes',
        `${qty(wru)} write request units (${MODEL.metadataWriteUnitsPerRecord} per record: transactional event item + entity last-seen) ÷ 1M × ${unitUsd('dynamoWriteRequestUnitsPerMillion')}`,
        (wru / 1e6) * PRICES.dynamoWriteRequestUnitsPerMillion.usd, ['dynamoWriteRequestUnitsPerMillion']);
      // Each transaction adds one to the counter of each event type (and minute) among its events.
      const perInvocation = r / invocationsPerSecond;
      const transactionsPerInvocation = Math.ceil(perInvocation / MODEL.metadataEventsPerTransaction);
      const perTransaction = perInvocation / transactionsPerInvocation;
      const types = eventTypeValues(model);
      // Expected distinct types among `perTransaction` events spread evenly over `types`.
      const counters = types * (1 - (1 - 1 / types) ** perTransaction);
      const transactions = invocations * transactionsPerInvocation;
      const counterWru = transactions * counters * 2;
      add(name, 'DynamoDB', 'metadata counter writes',
        `${qty(transactions)} transactions (≤ ${MODEL.metadataEventsPerTransaction} events each) × ${qty(counters)} per-minute counters (event types among ${qty(perTransaction)} events, of ${plural(types, 'type')}) × 2 units (transactional) = ${qty(counterWru)} write request units ÷ 1M × ${unitUsd('dynamoWriteRequestUnitsPerMillion')}`,
        (counterWru / 1e6) * PRICES.dynamoWriteRequestUnitsPerMillion.usd, ['dynamoWriteRequestUnitsPerMillion']);
      const stored = r * config.metadata.ttlDays * 86_400 * MODEL.metadataItemBytes;
      add(name, 'DynamoDB', 'metadata storage',
        `${qty(r * config.metadata.ttlDays * 86_400)} items (${config.metadata.ttlDays}-day TTL) × ${MODEL.metadataItemBytes} B = ${qty(gb(stored))} GiB × ${unitUsd('dynamoStorageGBMonth')}`,
        gb(stored) * PRICES.dynamoStorageGBMonth.usd, ['dynamoStorageGBMonth']);
      add(name, 'DynamoDB', 'point-in-time recovery',
        `${qty(gb(stored))} GiB of table (as stored above; the table has point-in-time recovery on) × ${unitUsd('dynamoPitrGBMonth')}`,
        gb(stored) * PRICES.dynamoPitrGBMonth.usd, ['dynamoPitrGBMonth']);
    }

    const watched: Array<[number, string]> = [
      [p.source === 'kinesis' ? ALARMS_PER.stream : 0, 'for the stream'],
      [deliveryStreams.length * (ALARMS_PER.deliveryStream + (p.source === 'kinesis' ? ALARMS_PER.kinesisReader : 0) + ALARMS_PER.function),
        deliveryStreams.length === 1 ? 'for the delivery stream and its transform' : `for ${deliveryStreams.length} delivery streams and their transforms`],
      [p.destinations.includes('lake') ? ALARMS_PER.lake : 0, 'for the lake\'s open partitions and failed conversions'],
      [p.destinations.includes('search') ? ALARMS_PER.searchBackup : 0, 'for the search stream\'s backup to S3'],
      [deliveryStreams.length > 0 ? ALARMS_PER.routerNotInvoked : 0, 'for its error objects not reaching the failure router'],
      [p.destinations.includes('metadata') ? ALARMS_PER.metadataConsumer + ALARMS_PER.function : 0, 'for the metadata consumer'],
    ];
    alarmLine(name, watched, add);
    const metrics = deliveryStreams.length * MODEL.transformMetrics + (p.destinations.includes('metadata') ? MODEL.consumerMetrics : 0);
    if (metrics > 0) {
      // A metric is billed for the hours it is published in: those with a record, when records arrive at random.
      const hoursWithRecords = 1 - Math.exp(-r * 3600);
      add(name, 'CloudWatch', 'custom metrics (EMF)',
        `${plural(metrics, 'metric')} (${[deliveryStreams.length > 0 ? `${MODEL.transformMetrics} per transform` : '', p.destinations.includes('metadata') ? `${MODEL.consumerMetrics} of the metadata consumer` : ''].filter((x) => x).join(', ')}) × ${formatNumber(Math.round(hoursWithRecords * 100))} % of the hours (those with a record) × ${unitUsd('cloudWatchMetricMonth')}`,
        metrics * hoursWithRecords * PRICES.cloudWatchMetricMonth.usd, ['cloudWatchMetricMonth']);
    }
  }

  const selected = names.map((n) => config.pipelines[n]);
  if (selected.some((p) => p.destinations.includes('search'))) {
    const os = config.opensearch;
    if (os.mode === 'existing') {
      add('(shared)', 'OpenSearch', 'existing domain', `opensearch.mode is "existing" (${os.endpoint ?? 'endpoint'}): its cost is outside this stack`, 0, []);
    } else {
      const hourly = OPENSEARCH_INSTANCE_HOUR[os.instanceType];
      add('(shared)', 'OpenSearch', `instances (${os.instanceType})`,
        hourly
          ? `${os.instanceCount} × ${HOURS_PER_MONTH} h × $${hourly.usd}/instance-hour`
          : `${os.instanceCount} × ${HOURS_PER_MONTH} h × (no price for ${os.instanceType} in lib/cli/prices.ts: look it up on ${PRICES.openSearchGp3GBMonth.source})`,
        hourly ? os.instanceCount * HOURS_PER_MONTH * hourly.usd : null, []);
      add('(shared)', 'OpenSearch', 'storage (gp3)',
        `${plural(os.instanceCount, 'node')} × ${os.volumeGiB} GiB × ${unitUsd('openSearchGp3GBMonth')}`,
        os.instanceCount * os.volumeGiB * PRICES.openSearchGp3GBMonth.usd, ['openSearchGp3GBMonth']);
    }
  }
  if (selected.length > 0) {
    add('(shared)', 'KMS', 'data key', `1 customer-managed key (bucket, queues, table, Athena results) × ${unitUsd('kmsKeyMonth')}`, PRICES.kmsKeyMonth.usd, ['kmsKeyMonth']);
    add('(shared)', 'KMS', 'alarm topic key', `1 customer-managed key (CloudWatch cannot publish to a topic under the AWS-managed SNS key) × ${unitUsd('kmsKeyMonth')}`, PRICES.kmsKeyMonth.usd, ['kmsKeyMonth']);
    const hashing = names.filter((n) => Object.values(loadModel(n).extensions.pii).includes('hash'));
    if (hashing.length > 0) {
      add('(shared)', 'Secrets Manager', 'PII hash key', `1 secret (key of the keyed hash of PII fields, for ${hashing.join(', ')}) × ${unitUsd('secretsManagerSecretMonth')}`,
        PRICES.secretsManagerSecretMonth.usd, ['secretsManagerSecretMonth']);
    }
    add('(shared)', 'CloudWatch', 'dashboard', `1 dashboard × ${unitUsd('cloudWatchDashboardMonth')} (free if the account has fewer than 3)`, PRICES.cloudWatchDashboardMonth.usd, ['cloudWatchDashboardMonth']);
    const search = selected.some((p) => p.destinations.includes('search'));
    alarmLine('(shared)', [
      [ALARMS_PER.failureRouter + ALARMS_PER.function, 'for the failure router'],
      [ALARMS_PER.metadataTable, 'for the metadata table'],
      [ALARMS_PER.consumerDlq + (selected.some((p) => p.destinations.includes('metadata')) ? ALARMS_PER.consumerDlqAge : 0), 'for the consumer dead-letter queue'],
      [search && config.opensearch.mode === 'create' ? ALARMS_PER.createdDomain : 0, 'for the OpenSearch domain'],
    ], add);
  }

  const totalsByPipeline: Record<string, number> = {};
  for (const l of lines) totalsByPipeline[l.pipeline] = (totalsByPipeline[l.pipeline] ?? 0) + (l.monthlyUsd ?? 0);
  const total = Object.values(totalsByPipeline).reduce((a, b) => a + b, 0);
  return {
    inputs,
    lines,
    totalsByPipeline,
    total,
    shards,
    notModelled: [
      `Athena queries: ${unitUsd('athenaPerTBScanned')} per TB scanned, 10 MB minimum per query (partition pruning keeps it small); the workgroup and saved queries cost nothing`,
      'CloudWatch Logs ingestion and storage of the log groups (Lambda, Firehose delivery errors, OpenSearch): they depend on log levels and failures; the custom metrics of failures by reason (one per reason a transform meets) and of the failure router (on failures only)',
      'The failure router (Lambda), SQS dead-letter queues and SNS alarm notifications: traffic only on failures and alarm changes',
      'S3 GET requests, the data bucket\'s server access logs (stored in the access-log bucket, expired after 90 days), Glue Data Catalog (free tier: 1M objects), DynamoDB reads',
      'KMS key rotation: every key of the stack rotates yearly, and each of a key\'s first two rotations adds $1 a month to it (from its second year on, $2, then $3)',
      'Data transfer out of AWS, KMS requests (the bucket key keeps those few) and Secrets Manager requests (the transform reads the PII hash key once per cold start)',
      'No charge of their own: IAM roles and policies, resource policies, Lambda event source mappings and permissions, log streams, and the custom resources that run only when the stack deploys',
      'Free tiers, Savings Plans and reserved OpenSearch instances',
    ],
  };
}

/** One line for the alarms of what is watched: [alarms, what] pairs, those with none left out. */
function alarmLine(pipeline: string, watched: ReadonlyArray<[number, string]>, add: Add): void {
  const parts = watched.filter(([n]) => n > 0);
  const count = parts.reduce((a, [n]) => a + n, 0);
  if (count === 0) return;
  const what = parts.length === 1 ? parts[0][1] : `(${parts.map(([n, w]) => `${n} ${w}`).join(', ')})`;
  add(pipeline, 'CloudWatch', 'alarms', `${plural(count, 'alarm')} ${what} × ${unitUsd('cloudWatchAlarmMonth')}`,
    count * PRICES.cloudWatchAlarmMonth.usd, ['cloudWatchAlarmMonth']);
}

/** The stream the estimate prices: as configured when that is enough, else what the rate needs, on-demand beyond what the configuration takes. */
export function pricedCapacity(configured: number | 'on-demand', needed: number): number | 'on-demand' {
  if (configured === 'on-demand') return 'on-demand';
  if (configured >= needed) return configured;
  return needed > MAX_PROVISIONED_SHARDS ? 'on-demand' : needed;
}

type Add = (pipeline: string, service: string, item: string, formula: string, monthlyUsd: number | null, prices: PriceName[]) => void;

function kinesisLines(name: string, p: PipelineConfig, priced: number | 'on-demand', needed: number, records: number, rawBytes: number, size: number, add: Add): void {
  const consumers = (['lake', 'search'] as const).filter((d) => p.destinations.includes(d)).length;
  const efo = p.destinations.includes('metadata');
  if (priced === 'on-demand') {
    const why = p.shards === 'on-demand' ? ''
      : ` (configured ${plural(p.shards, 'shard')}; the rate needs ${formatNumber(needed)} shards, more than the ${MAX_PROVISIONED_SHARDS} the configuration takes)`;
    add(name, 'Kinesis', 'on-demand stream', `${HOURS_PER_MONTH} stream-hours × ${unitUsd('kinesisOnDemandStreamHour')}${why}`,
      HOURS_PER_MONTH * PRICES.kinesisOnDemandStreamHour.usd, ['kinesisOnDemandStreamHour']);
    const written = records * roundUp(size, 1024);
    add(name, 'Kinesis', 'on-demand writes', `${qty(records)} records × ${roundUp(size, 1024) / 1024} KiB (rounded up to 1 KiB) = ${qty(gb(written))} GiB × ${unitUsd('kinesisOnDemandIngestGB')}`,
      gb(written) * PRICES.kinesisOnDemandIngestGB.usd, ['kinesisOnDemandIngestGB']);
    if (consumers > 0) {
      add(name, 'Kinesis', 'on-demand reads (Firehose)', `${qty(gb(rawBytes))} GiB × ${consumers} delivery stream${consumers > 1 ? 's' : ''} × ${unitUsd('kinesisOnDemandRetrievalGB')}`,
        gb(rawBytes) * consumers * PRICES.kinesisOnDemandRetrievalGB.usd, ['kinesisOnDemandRetrievalGB']);
    }
    if (efo) {
      add(name, 'Kinesis', 'on-demand enhanced fan-out reads (metadata consumer)', `${qty(gb(rawBytes))} GiB × ${unitUsd('kinesisOnDemandEfoRetrievalGB')}`,
        gb(rawBytes) * PRICES.kinesisOnDemandEfoRetrievalGB.usd, ['kinesisOnDemandEfoRetrievalGB']);
    }
    if (p.retentionHours > 24) add(name, 'Kinesis', 'extended retention', `${p.retentionHours} h retention on an on-demand stream: not modelled, see ${PRICES.kinesisShardHour.source}`, null, []);
  } else {
    const shards = priced;
    const sized = shards === p.shards ? plural(shards, 'shard') : `${plural(shards, 'shard')} (configured ${p.shards}; the rate needs ${needed})`;
    add(name, 'Kinesis', 'shard-hours', `${sized} × ${HOURS_PER_MONTH} h × ${unitUsd('kinesisShardHour')}`,
      shards * HOURS_PER_MONTH * PRICES.kinesisShardHour.usd, ['kinesisShardHour']);
    const units = records * Math.ceil(size / KINESIS_PUT_PAYLOAD_UNIT_BYTES);
    add(name, 'Kinesis', 'PUT payload units', `${qty(records)} records × ${Math.ceil(size / KINESIS_PUT_PAYLOAD_UNIT_BYTES)} unit (25 KiB each) ÷ 1M × ${unitUsd('kinesisPutPayloadUnitsPerMillion')}`,
      (units / 1e6) * PRICES.kinesisPutPayloadUnitsPerMillion.usd, ['kinesisPutPayloadUnitsPerMillion']);
    if (p.retentionHours > 24) {
      add(name, 'Kinesis', 'extended retention (to 7 days)', `${plural(shards, 'shard')} × ${HOURS_PER_MONTH} h × ${unitUsd('kinesisExtendedRetentionShardHour')} (retention ${p.retentionHours} h)`,
        shards * HOURS_PER_MONTH * PRICES.kinesisExtendedRetentionShardHour.usd, ['kinesisExtendedRetentionShardHour']);
    }
    if (p.retentionHours > 168) {
      const kept = (rawBytes / SECONDS_PER_MONTH) * (p.retentionHours - 168) * 3600;
      add(name, 'Kinesis', 'long-term retention (beyond 7 days)', `${qty(gb(kept))} GiB held for the ${p.retentionHours - 168} h beyond 7 days × ${unitUsd('kinesisLongTermRetentionGBMonth')}`,
        gb(kept) * PRICES.kinesisLongTermRetentionGBMonth.usd, ['kinesisLongTermRetentionGBMonth']);
    }
    if (efo) {
      add(name, 'Kinesis', 'enhanced fan-out consumer (metadata)', `${plural(shards, 'consumer-shard')} × ${HOURS_PER_MONTH} h × ${unitUsd('kinesisEfoConsumerShardHour')}`,
        shards * HOURS_PER_MONTH * PRICES.kinesisEfoConsumerShardHour.usd, ['kinesisEfoConsumerShardHour']);
      add(name, 'Kinesis', 'enhanced fan-out retrieval', `${qty(gb(rawBytes))} GiB × ${unitUsd('kinesisEfoRetrievalGB')}`,
        gb(rawBytes) * PRICES.kinesisEfoRetrievalGB.usd, ['kinesisEfoRetrievalGB']);
    }
  }
  if (p.streamEncryption === 'customer-managed') {
    add(name, 'KMS', 'stream key', `1 customer-managed key × ${unitUsd('kmsKeyMonth')}`, PRICES.kmsKeyMonth.usd, ['kmsKeyMonth']);
  }
}

/** The values a partition key takes at once: its enum's, or the assumed number for an injected one. */
function partitionValueCount(key: SchemaModel['partitionKeys'][number]): number {
  return key.projection.type === 'enum' ? key.projection.values.split(',').length : MODEL.injectedPartitionValues;
}

/** The partition keys other than the event time's year, month, day and hour. */
function valuePartitionKeys(model: SchemaModel): SchemaModel['partitionKeys'] {
  return model.partitionKeys.filter((k) => !(TIME_PARTITIONS as readonly string[]).includes(k.name));
}

/** The event types the metadata consumer counts by (its first partition field's values; 1 when it has none). */
function eventTypeValues(model: SchemaModel): number {
  const [typeKey] = valuePartitionKeys(model);
  return typeKey === undefined ? 1 : partitionValueCount(typeKey);
}

function lakeLines(name: string, p: PipelineConfig, model: SchemaModel, config: SluiceConfig, r: number, size: number, records: number, rawBytes: number, add: Add): void {
  const billed = records * roundUp(size, FIREHOSE_BILLING_INCREMENT_BYTES);
  add(name, 'Firehose', 'format conversion (Parquet)', `${qty(gb(billed))} GiB (5 KiB rounding) × ${unitUsd('firehoseFormatConversionGB')}`,
    gb(billed) * PRICES.firehoseFormatConversionGB.usd, ['firehoseFormatConversionGB']);
  add(name, 'Firehose', 'dynamic partitioning (data)', `${qty(gb(rawBytes))} GiB processed × ${unitUsd('firehoseDynamicPartitioningGB')}`,
    gb(rawBytes) * PRICES.firehoseDynamicPartitioningGB.usd, ['firehoseDynamicPartitioningGB']);

  // One object per active partition per buffer flush (interval or size, whichever comes first).
  const partitionValues = valuePartitionKeys(model).reduce((n, k) => n * partitionValueCount(k), 1);
  const perInterval = r * p.buffering.intervalSeconds;
  const active = Math.max(1, Math.min(partitionValues, perInterval));
  const bufferBytes = p.buffering.sizeMiB * 1024 * 1024;
  const flushesPerSecond = Math.max(1 / p.buffering.intervalSeconds, (r * size) / active / bufferBytes);
  // Firehose writes nothing for an empty buffer: never more objects than records.
  const objectsPerSecond = Math.min(r, active * flushesPerSecond);
  const objects = objectsPerSecond * SECONDS_PER_MONTH;
  const why = objectsPerSecond < active * flushesPerSecond
    ? 'at most one per record: fewer records than buffer flushes'
    : `${qty(active)} active partitions × one object per ${p.buffering.intervalSeconds} s or ${p.buffering.sizeMiB} MiB`;
  add(name, 'Firehose', 'dynamic partitioning (objects)', `${qty(objects)} objects (${why}) ÷ 1,000 × ${unitUsd('firehoseDynamicPartitioningObjectsPerThousand')}`,
    (objects / 1000) * PRICES.firehoseDynamicPartitioningObjectsPerThousand.usd, ['firehoseDynamicPartitioningObjectsPerThousand']);
  add(name, 'S3', 'PUT requests (Parquet objects)', `${qty(objects)} objects ÷ 1,000 × ${unitUsd('s3PutPerThousand')}`,
    (objects / 1000) * PRICES.s3PutPerThousand.usd, ['s3PutPerThousand']);

  const parquetPerDay = r * size * 86_400 * MODEL.parquetRatio;
  const lc = config.lifecycle;
  // S3 lifecycle rules move no object under 128 KB (the bucket's TransitionDefaultMinimumObjectSize): such objects stay in Standard.
  const objectBytes = parquetPerDay / (objects / (SECONDS_PER_MONTH / 86_400));
  if (objectBytes < LIFECYCLE_MIN_OBJECT_BYTES) {
    const why = `Parquet objects of ${qty(objectBytes / 1024)} KiB on average stay in Standard: lifecycle rules move none under 128 KiB`;
    const young = parquetPerDay * lc.glacierDays;
    add(name, 'S3', 'Standard storage (steady state)', `${qty(gb(young))} GiB (${lc.glacierDays} days of Parquet at ${MODEL.parquetRatio} × JSON size; ${why}) × ${unitUsd('s3StandardGBMonth')}`,
      gb(young) * PRICES.s3StandardGBMonth.usd, ['s3StandardGBMonth']);
    const month = parquetPerDay * (HOURS_PER_MONTH / 24);
    add(name, 'S3', 'Standard storage (per month kept)', `${qty(gb(month))} GiB per month of data older than ${lc.glacierDays} days × ${unitUsd('s3StandardGBMonth')} (grows by this each month)`,
      gb(month) * PRICES.s3StandardGBMonth.usd, ['s3StandardGBMonth']);
    return;
  }
  const standard = parquetPerDay * lc.infrequentAccessDays;
  add(name, 'S3', 'Standard storage (steady state)', `${qty(gb(standard))} GiB (${lc.infrequentAccessDays} days of Parquet at ${MODEL.parquetRatio} × JSON size) × ${unitUsd('s3StandardGBMonth')}`,
    gb(standard) * PRICES.s3StandardGBMonth.usd, ['s3StandardGBMonth']);
  const ia = parquetPerDay * (lc.glacierDays - lc.infrequentAccessDays);
  add(name, 'S3', 'Standard-IA storage (steady state)', `${qty(gb(ia))} GiB (days ${lc.infrequentAccessDays}–${lc.glacierDays}) × ${unitUsd('s3StandardIaGBMonth')}`,
    gb(ia) * PRICES.s3StandardIaGBMonth.usd, ['s3StandardIaGBMonth']);
  const monthOfData = parquetPerDay * (HOURS_PER_MONTH / 24);
  add(name, 'S3', 'Glacier Instant Retrieval (per month kept)', `${qty(gb(monthOfData))} GiB per month of data older than ${lc.glacierDays} days × ${unitUsd('s3GlacierInstantGBMonth')} (grows by this each month)`,
    gb(monthOfData) * PRICES.s3GlacierInstantGBMonth.usd, ['s3GlacierInstantGBMonth']);
  add(name, 'S3', 'lifecycle transitions', `${qty(objects)} objects ÷ 1,000 × (${unitUsd('s3TransitionToIaPerThousand')} + ${unitUsd('s3TransitionToGlacierInstantPerThousand')})`,
    (objects / 1000) * (PRICES.s3TransitionToIaPerThousand.usd + PRICES.s3TransitionToGlacierInstantPerThousand.usd),
    ['s3TransitionToIaPerThousand', 's3TransitionToGlacierInstantPerThousand']);
}

export { usd as formatUsd };
