import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CreateStreamCommand, DescribeStreamSummaryCommand, ResourceInUseException, UpdateShardCountCommand } from '@aws-sdk/client-kinesis';
import { CreateTableCommand, DescribeTableCommand, ResourceNotFoundException, UpdateTimeToLiveCommand } from '@aws-sdk/client-dynamodb';
import type { S3Event } from 'aws-lambda';
import { ON_DEMAND_INITIAL_SHARDS, resourceNames, unconfiguredSchemaWarnings, type SluiceConfig } from '../config';
import { loadModel } from '../schema';
import { checkLakeLayouts, LAKE_LAYOUT_FILE } from './lake-layout';
import { validatorFile, validatorFingerprint } from '../schema/fingerprint';
import { FAILURE_PREFIXES } from '../schema/layout';
import { defaultTransformWorkers, TransformWorkers } from './transform-workers';
import { processorBufferWarnings } from '../../transforms/record-transform/response-budget';
import { createMetadataRecorder, type InvocationClock, type MetadataRecorder } from '../../transforms/metadata-consumer/handler';
import { createFailureRouter, locateErrorObject, OVERLONG_LINE_ERROR_CODE } from '../../transforms/failure-router/handler';
import { versionOfEtag } from '../../transforms/failure-router/dedupe-key';
import { METADATA_TABLE_KEYS } from '../../transforms/shared/metadata-table';
import { METADATA_CONSUMER_SERVICE } from '../../transforms/shared/metric-names';
import { pipelineSchema } from '../../transforms/shared/pipeline';
import { backoffDelay, sleep } from '../../transforms/shared/retry';
import { dynamoClient, dynamoDocumentClient, kinesisClient, localRegion } from './aws-clients';
import { DeliveryEngine, engineOptionsFromConfig, undeliveredRecordCount, undeliveredUnconfiguredStreams, type DeliveryCounters } from './delivery-stream';
import { toSqsBody } from '../../transforms/shared/sqs-body';
import { DlqFile, isQueueName, routedObjectName } from './dlq-file';
import { kinesisStateWatch, startDynamo, startKinesis, type RunningService } from './emulators';
import { freePort } from './ports';
import { EventSourceMapping, queueDestination } from './event-source-mapping';
import { FaultInjector } from './faults';
import { EmulatorStateError } from './state-error';
import { checkDataFormat, stampDataFormat } from './data-format';
import { firehoseRecordsOf } from './kinesis-source';
import { startFirehoseApi, type FirehoseBackend, type FunctionAnswer, type InvocationContext, type LocalDeliveryStream, type RunningFirehoseApi } from './firehose-api';
import { InvocationLogger, withInvocationLog } from './invocation-log';
import { ObjectStore } from './object-store';
import { ownProcessStart } from './process-alive';
import { throttledLog } from './log-throttle';
import { TtlSweeper } from './ttl-sweep';
import { bucketDir, localBucketName, localPiiHashKey, makeDataDir } from './paths';
import { SearchSink } from './search-sink';
import { ShardReader } from './shard-reader';
import { consumerFunctionName, openSearchOrigin, removeTwinRecord, schemaFingerprint, TWIN_DATA_DIR_HEADER, TWIN_ID_HEADER, twinRecordPath, writeTwinRecord } from './twin-record';

const ACCOUNT = '000000000000';
/** How often a running twin looks at the size of kinesis-mock's saved state (kinesisStateWatch). */
const KINESIS_STATE_CHECK_MS = 60_000;

/**
 * The twin retries OpenSearch for at most this long (Firehose: pipelines.<name>.search.retrySeconds, 300 by default),
 * so a local OpenSearch that is down fails documents to the backup in seconds and does not hold a stop for minutes.
 * DescribeDeliveryStream says the duration the twin uses, as it says the twin's buffering hints; README says so.
 */
export const LOCAL_SEARCH_RETRY_SECONDS = 10;

export interface TwinOptions {
  readonly config: SluiceConfig;
  readonly dataDir: string;
  /** Address every server binds. @default 127.0.0.1 (loopback only) */
  readonly host?: string;
  /** Ports; 0 picks a free one. @default config.local.* */
  readonly ports?: { readonly firehose?: number; readonly kinesis?: number; readonly dynamo?: number };
  /** Bulk requests go here when set; otherwise the bodies are written under <dataDir>/opensearch/. */
  readonly openSearchUrl?: string;
  /** Key of the `hash` PII mask. @default SLUICE_PII_HASH_KEY or a fixed local key */
  readonly piiHashKey?: string;
  /** How often the readers poll a caught-up shard while records flow. @default 250 */
  readonly pollIntervalMs?: number;
  /**
   * How often they poll a shard that has returned nothing for 2 s: once a second, as Firehose and Lambda
   * do. Polling kinesis-mock four times a second per shard and reader kept an idle twin and its
   * kinesis-mock busy. @default max(1000, pollIntervalMs)
   */
  readonly idlePollIntervalMs?: number;
  /** Told about retried failures inside the twin (one line each). @default stderr */
  readonly log?: (line: string) => void;
  /** How the user runs the CLI, for the commands the twin's messages suggest (the CLI's sluiceCommand). @default 'sluice' */
  readonly sluiceCommand?: string;
  /**
   * Injects transform, DynamoDB and storage faults (tests, soak runs); see lib/local/faults.ts.
   * @default FaultInjector.fromEnv(): the plan in SLUICE_FAULTS, or none
   */
  readonly faults?: FaultInjector;
  /**
   * Runtimes (worker threads) the transform Lambda runs in, shared out among the pools of different memory sizes (at
   * least one each). @default defaultTransformWorkers(): one per core beyond the twin's, 1–4
   */
  readonly transformWorkers?: number;
  /** From the end of one sweep of the metadata table's expired items (DynamoDB's TTL) to the start of the next. @default TTL_SWEEP_INTERVAL_MS (1 h) */
  readonly ttlSweepIntervalMs?: number;
}

export interface PipelineSummary {
  readonly pipeline: string;
  readonly lake?: DeliveryCounters;
  readonly search?: DeliveryCounters;
  readonly metadata?: {
    readonly invocations: number;
    /** Records the consumer is done with: written to DynamoDB (or found there already), or skipped. */
    readonly recordsSucceeded: number;
    /**
     * Of those, records the consumer skipped as malformed (it logs "malformed record skipped" for each): the lake
     * transform's checks refuse them, so they have no item. Those recorded are `recordsSucceeded - recordsSkipped`.
     */
    readonly recordsSkipped: number;
    readonly batchesToDestination: number;
    /** Invocations that threw, timed out or failed the whole batch. */
    readonly failedInvocations: number;
    /** Invocations that reported some batch item failures. */
    readonly partialFailures: number;
    readonly bisections: number;
  };
}

/** DLQ messages in the data dir's DLQ files, by what they stand for. */
export interface DlqCounts {
  /** Messages for failed records (each with the record's bytes, or a pointer to a record too large for a message). */
  readonly records: number;
  /**
   * Pointers to error lines longer than the failure router reads (errorCode Sluice.ErrorLineTooLong): no line Firehose
   * writes is that long, so each is a damaged or foreign line that may hold no record at all.
   */
  readonly overlongLinePointers: number;
  /** Metadata-consumer batches (shard and sequence range) sent to its on-failure destination. */
  readonly consumer: number;
}

/**
 * What the failure router could not send to the DLQ: it stays in S3 only. Apart from it, the error objects it had not
 * finished routing when the twin stopped: the next start routes them.
 */
export interface LeftInS3 {
  /** Lines that are not error records (not JSON, not a JSON object, no rawData). */
  readonly unreadableLines: number;
  /** gzip objects damaged or cut off: what follows the damage is not read. */
  readonly damagedObjects: number;
  /** The files (`<data-dir>/s3/<bucket>/<key>`) holding them, sorted. */
  readonly files: string[];
  /**
   * The files of error objects the router gave up on while the twin stopped (it tries each three times then, e.g. while
   * the DLQ cannot be written), sorted. Their records may be missing from the DLQ until the next start on this data dir,
   * which routes every error object not marked wholly routed (those of its messages already sent are skipped by their
   * dedupe keys). Empty while running.
   */
  readonly notYetRouted: string[];
}

export interface Twin {
  readonly dataDir: string;
  readonly bucket: string;
  readonly endpoints: { readonly firehose: string; readonly kinesis: string; readonly dynamo: string };
  readonly metadataTable: string;
  /** Waits until every record put so far is delivered: readers caught up, buffers flushed, error objects routed. */
  settle(timeoutMs?: number): Promise<void>;
  summary(): PipelineSummary[];
  dlqCount(): Promise<DlqCounts>;
  /**
   * Lines and objects the failure router read since the start (it reads at the start every error object not marked wholly
   * routed, which one with lines it could not route never is, and each one written since) but could not route. Its ERROR
   * log lines name each one, with the line number and why.
   */
  leftInS3(): LeftInS3;
  /**
   * dlqCount() and the DLQ's messages by the pipeline each names, from one read of the DLQ file (every body is parsed:
   * for summaries, not for hot paths).
   */
  dlqCountByPipeline(): Promise<DlqCounts & { readonly byPipeline: ReadonlyMap<string, number> }>;
  /**
   * Stops taking records, flushes every buffer, routes the last error objects (one it cannot route after three attempts
   * is named in `leftInS3().notYetRouted`), stops the emulators.
   */
  stop(): Promise<void>;
}

/**
 * The metadata consumer's event source mapping as the twin runs it: the pipeline's `consumer` settings, with the batch
 * window scaled down like the Firehose buffers (at most `local.bufferIntervalSeconds`), so local results show up in seconds.
 */
export function consumerMappingSettings(config: Pick<SluiceConfig, 'pipelines' | 'local'>, pipeline: string) {
  const c = config.pipelines[pipeline].consumer;
  return {
    batchSize: c.batchSize,
    batchWindowSeconds: Math.min(c.batchWindowSeconds, config.local.bufferIntervalSeconds),
    maxRetryAttempts: c.maxRetries,
    maxRecordAgeSeconds: c.maxRecordAgeSeconds,
    functionTimeoutSeconds: c.timeoutSeconds,
  };
}

/** A search delivery's index settings as the twin runs them: the pipeline's, with retries shortened to {@link LOCAL_SEARCH_RETRY_SECONDS}. */
export function searchSinkSettings(config: Pick<SluiceConfig, 'pipelines'>, pipeline: string) {
  const s = config.pipelines[pipeline].search;
  return { rotation: s.rotation, retentionDays: s.retentionDays, retrySeconds: Math.min(s.retrySeconds, LOCAL_SEARCH_RETRY_SECONDS) };
}

/**
 * The transform's runtime pools: one per function memory size (`transform.memoryMiB`), each making the handlers of
 * the pipelines whose function has that memory (the lake and search transforms; a metadata-only pipeline has none),
 * with its share of `runtimes`.
 */
export function transformRuntimePools(
  config: Pick<SluiceConfig, 'pipelines'>,
  runtimes = defaultTransformWorkers(),
): Array<{ readonly memoryMiB: number; readonly handlers: Array<{ pipeline: string; destination: 'lake' | 'search' }>; readonly runtimes: number }> {
  const pools = new Map<number, Array<{ pipeline: string; destination: 'lake' | 'search' }>>();
  for (const [pipeline, p] of Object.entries(config.pipelines)) {
    for (const destination of ['lake', 'search'] as const) {
      if (!p.destinations.includes(destination)) continue;
      const handlers = pools.get(p.transform.memoryMiB) ?? [];
      handlers.push({ pipeline, destination });
      pools.set(p.transform.memoryMiB, handlers);
    }
  }
  // The runtimes are shared out among the pools (at least one each): other memory sizes start no more threads.
  const each = Math.max(1, Math.floor(runtimes / Math.max(1, pools.size)));
  return [...pools].map(([memoryMiB, handlers]) => ({ memoryMiB, handlers, runtimes: each }));
}

/** Names the twin gives what the stack would name through CloudFormation. */
export function metadataTableName(config: Pick<SluiceConfig, 'prefix' | 'env'>): string {
  return `${config.prefix}-${config.env}-metadata`;
}

/**
 * Refuses, before a twin starts anything, a folder where it writes a file again at every start (a file there is
 * replaced, whatever it holds): said as a state file to move away, not as a raw EISDIR once everything runs.
 */
function refuseFoldersForStateFiles(dataDir: string): void {
  const written: ReadonlyArray<readonly [string, string]> = [
    [twinRecordPath(dataDir), 'its record: its pid, endpoints and schemas, which the other commands read; removed when it stops'],
    [path.join(dataDir, LAKE_LAYOUT_FILE), 'the lake\'s partition layout, from what its files show'],
  ];
  for (const [file, what] of written) {
    if (fs.lstatSync(file, { throwIfNoEntry: false })?.isDirectory()) {
      throw new EmulatorStateError(`${file} is a folder: a twin writes a file there at every start (${what}), and none of its data is in it. Move the folder away, then start again`);
    }
  }
}

/**
 * The consumer as the twin's Lambda Invoke runs it (`sluice redrive-consumer`): in the twin's process, so its writes
 * queue behind the event source mapping's (without transactions, as on dynalite, the consumer keeps exactly-once only
 * within one process). The answer is Lambda's: the batch item failures, or a function error for one that threw; with
 * the invocation's execution log (START, what the consumer's logger printed if it is an InvocationLogger, END, REPORT)
 * when the caller asked for it (`logTail`), and only then kept.
 */
export function consumerInvocation(record: MetadataRecorder, timeoutSeconds: number, memoryMiB?: number): LocalFunction {
  const run = async (payload: unknown): Promise<FunctionAnswer> => {
    const endsAt = performance.now() + timeoutSeconds * 1000;
    const clock: InvocationClock = { getRemainingTimeInMillis: () => Math.max(0, endsAt - performance.now()) };
    try {
      const { batchItemFailures } = await record(payload as Parameters<MetadataRecorder>[0], clock);
      return { payload: { batchItemFailures } };
    } catch (err) {
      return { functionError: 'Unhandled', payload: { errorType: (err as Error).name, errorMessage: (err as Error).message } };
    }
  };
  return async (payload, invocation) => {
    if (invocation?.logTail !== true) return run(payload);
    const { result, log } = await withInvocationLog(invocation.requestId, () => run(payload), memoryMiB);
    return { ...result, log };
  };
}

/** One of the twin's functions as its Firehose endpoint's Invoke runs it. */
export type LocalFunction = (payload: unknown, invocation?: InvocationContext) => Promise<FunctionAnswer>;

/**
 * Starts the local twin: kinesis-mock and dynalite as children it owns, the Firehose endpoint, one
 * delivery engine per delivery stream (the real transform handler as processor), Kinesis readers for
 * Kinesis-sourced streams, the metadata consumer under a local event source mapping, and the failure
 * router on every error object not yet wholly routed. What exists on the data dir is kept.
 */
export async function startTwin(options: TwinOptions): Promise<Twin> {
  const { config, dataDir } = options;
  const host = options.host ?? '127.0.0.1';
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const sluice = options.sluiceCommand ?? 'sluice';
  const pollIntervalMs = options.pollIntervalMs ?? 250;
  const idlePollIntervalMs = options.idlePollIntervalMs ?? Math.max(1000, pollIntervalMs);
  const faults = options.faults ?? FaultInjector.fromEnv();
  if (faults && !options.faults) log(`sluice: injecting faults (SLUICE_FAULTS=${process.env.SLUICE_FAULTS})`);
  // A schema to fix (a file no longer JSON since `npm run generate`) is said as such here, before anything starts, rather
  // than as a transform runtime that could not start.
  for (const pipeline of Object.keys(config.pipelines)) pipelineSchema(pipeline);
  for (const warning of processorBufferWarnings(config)) log(`sluice: warning: ${warning}`);
  for (const warning of unconfiguredSchemaWarnings(config)) log(`sluice: warning: ${warning}`);
  // A data dir a newer Sluice wrote is refused before anything in it changes (its mode included).
  const format = checkDataFormat(dataDir);
  // The data dir holds raw records (streams, the write-ahead log, error objects, dead letters): its owner's alone.
  const dataDirNotice = makeDataDir(dataDir);
  if (dataDirNotice !== undefined) log(`sluice: ${dataDirNotice}`);
  refuseFoldersForStateFiles(dataDir);
  await stampDataFormat(dataDir, format);
  const lakeModels = Object.values(config.pipelines).filter((p) => p.destinations.includes('lake')).map((p) => loadModel(p.name));
  const lakeLog = (pipeline: string) => {
    const stream = resourceNames(config, pipeline).lakeDeliveryStream;
    return { records: undeliveredRecordCount(dataDir, stream), dir: path.resolve(dataDir, 'firehose', stream) };
  };
  for (const warning of await checkLakeLayouts(dataDir, bucketDir(dataDir, localBucketName(config)), lakeModels, lakeLog)) log(`sluice: warning: ${warning}`);
  for (const left of undeliveredUnconfiguredStreams(dataDir, configuredDeliveryStreams(config))) {
    log(`sluice: warning: ${left.dir} holds ${left.records} record${left.records === 1 ? '' : 's'} not yet delivered, of delivery stream ${left.stream},`
      + ' which this configuration does not run (a pipeline or destination removed or renamed, or another prefix or env): they stay there, undelivered.'
      + ' To deliver them, start once more with the configuration that had it, and stop (a stop flushes); to discard them, delete that folder.'
      + ' (On AWS, the deploy that removes a delivery stream deletes the records it holds.)');
  }
  for (const left of await deadLettersOfOtherQueues(dataDir, config)) {
    log(`sluice: warning: ${left.file} holds ${left.messages} dead-letter message${left.messages === 1 ? '' : 's'} of queue ${left.queue}, which this`
      + ` configuration does not use (another prefix or env): this run's summary and \`${sluice} replay\` read ${left.current}.jsonl. They stay there;`
      + ` to replay them, run \`${sluice} replay\` with the settings that wrote them (-c prefix=…, -c env=…)`);
  }
  // As it starts, and each minute after: a twin left running grows the state past the ceiling within hours.
  const kinesisState = kinesisStateWatch(dataDir);
  const checkKinesisState = () => {
    const warning = kinesisState();
    if (warning !== undefined) log(`sluice: warning: ${warning}`);
  };
  checkKinesisState();
  const piiHashKey = options.piiHashKey ?? process.env.SLUICE_PII_HASH_KEY ?? localPiiHashKey(dataDir);
  const bucket = localBucketName(config);
  const region = localRegion();
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch((e: unknown) => log(`sluice: while stopping: ${(e as Error).message}`));
  };

  try {
    // The transform's runtimes start while kinesis-mock does (a worker loads the handler in ~0.5 s).
    // One started again later loads the generated validators anew: not once `npm run generate` changed them,
    // or it would validate with another schema than the one the twin started with (its Glue model, twin.json).
    const validatorsAtStart = validatorFingerprints(Object.keys(config.pipelines));
    let validatorsChangedLogged = false;
    const codeChanged = (): string | undefined => {
      const now = validatorFingerprints(Object.keys(config.pipelines));
      const changed = [...now.keys()].filter((p) => now.get(p) !== validatorsAtStart.get(p));
      if (changed.length === 0) return undefined;
      const what = `${changed.map((p) => path.relative(process.cwd(), validatorFile(p))).join(', ')} changed since the twin started (\`npm run generate\`?)`;
      if (!validatorsChangedLogged) {
        validatorsChangedLogged = true;
        log(`sluice: the transform's runtime is not started again: ${what}; its invocations fail until the twin is restarted`);
      }
      return `${what}: restart the twin (\`${sluice} local up\`) to run the schemas as they are now; \`${sluice} replay\` then sends these records again`;
    };
    const onRuntimeEnd = (reason: string): void => log(`sluice: the transform's runtime ended (${reason}): the invocations it held are retried`);
    // One pool of runtimes per function memory size (`transform.memoryMiB`), as each Lambda function has its own:
    // a pipeline's runtime may not use more heap than its own function could. The default configuration has one size.
    const transformPools = new Map<number, Promise<TransformWorkers>>();
    for (const { memoryMiB, handlers, runtimes } of transformRuntimePools(config, options.transformWorkers)) {
      const starting = TransformWorkers.start({ handlers, piiHashKey, size: runtimes, memoryMiB, codeChanged, onRuntimeEnd });
      starting.catch(() => undefined);
      stops.push(async () => (await starting.catch(() => undefined))?.close());
      transformPools.set(memoryMiB, starting);
    }
    const portOrFree = async (port: number) => (port === 0 ? freePort(host) : port);
    // Port 0: startKinesis picks one (again, should another process bind it first); a restart keeps it.
    let kinesisPort = options.ports?.kinesis ?? config.local.kinesisPort;
    const startOnPort = async () => {
      const started = await startKinesis({ host, port: kinesisPort, dataDir, onSaveProblem: (line) => log(`sluice: ${line}`) });
      kinesisPort = started.port;
      const missing = started.sourcePatches?.missing ?? [];
      if (missing.length > 0) {
        log(`sluice: kinesis-mock runs without its source patches ${missing.join(', ')} (lib/local/emulators.ts, KINESIS_SOURCE_PATCHES, written for kinesis-local 0.6.2's main.js): each found no single place in its main.js, or the patched file did not compile; what it stores and answers is the same, only slower`);
      }
      return started;
    };
    const kinesis = await superviseKinesis(startOnPort, {
      log,
      // Without a save to load, kinesis-mock comes back without the streams: they are created again.
      afterRestart: async () => {
        for (const [pipeline, p] of Object.entries(config.pipelines)) if (p.source === 'kinesis') await ensureStream(kc, names(pipeline).stream, localShardCount(p));
      },
    });
    stops.push(() => kinesis.stop());
    const kinesisStateTimer = setInterval(checkKinesisState, KINESIS_STATE_CHECK_MS).unref();
    stops.push(async () => clearInterval(kinesisStateTimer));
    // Before anything else is awaited: afterRestart above uses them.
    const kc = kinesisClient(kinesis.endpoint);
    const names = (p: string) => resourceNames(config, p);
    // While kinesis-mock is down every call fails, over and over: its own notice says so once. Other failures that
    // repeat every poll (a read-only disk under the checkpoints) are said once per reader and error code every 10 s.
    const repeatedLog = throttledLog(log, 10_000);
    const readerError = (what: string) => (e: unknown) => {
      if (kinesis.available()) repeatedLog(`${what} ${(e as NodeJS.ErrnoException).code ?? (e as Error).name}`, `sluice: reading ${what}: ${(e as Error).message}`);
    };
    const dynamo: RunningService = await startDynamo({ host, port: await portOrFree(options.ports?.dynamo ?? config.local.dynamoPort), dataDir });
    stops.push(() => dynamo.stop());
    // The consumer's own client, so injected throttling reaches it and nothing else.
    const doc = faults ? faults.instrumentDynamo(dynamoDocumentClient(dynamo.endpoint)) : dynamoDocumentClient(dynamo.endpoint);
    const tableName = metadataTableName(config);
    await ensureMetadataTable(dynamoClient(dynamo.endpoint), tableName);
    // DynamoDB's TTL, which dynalite lacks: expired items are deleted now and every interval after, paced beside delivery.
    const sweepClient = dynamoClient(dynamo.endpoint);
    const ttlSweeper = new TtlSweeper({
      client: sweepClient, tableName, ttlAttribute: METADATA_TABLE_KEYS.ttlAttribute,
      keyAttributes: [METADATA_TABLE_KEYS.partitionKey, METADATA_TABLE_KEYS.sortKey],
      intervalMs: options.ttlSweepIntervalMs, log,
    });
    ttlSweeper.start();
    stops.push(async () => {
      await ttlSweeper.stop();
      sweepClient.destroy();
    });

    const anyName = Object.keys(config.pipelines)[0];
    const dlq = new DlqFile({ dataDir, queue: names(anyName).dlq });
    const consumerDlq = new DlqFile({ dataDir, queue: names(anyName).consumerDlq });

    const store = new ObjectStore(dataDir, { beforeWrite: faults?.beforeWrite });
    // A twin killed while it wrote left its temp files; no delivery has started yet to have new ones.
    await store.removeLeftovers();
    const router = createFailureRouter({
      // The same reading as in Lambda: in chunks, never the whole object, a second read pinned to the first's ETag.
      readObject: (b, k, pin) => store.readObject(b, k, pin),
      // The DLQ file is its own sent ledger: sendOnceEach appends a message and then its dedupe key, and
      // skips keys already there, so every message is offered to it and there is nothing to mark after it
      // (an object routed whole is marked: routedWhole).
      alreadySent: async () => new Set(),
      send: async (messages) => {
        faults?.beforeDlqSend(names(anyName).dlq, messages.length);
        await dlq.sendOnceEach(messages.map((m) => ({ dedupeKey: m.dedupeKey, body: toSqsBody(m) })));
        return { failedIds: [] };
      },
      markSent: async () => undefined,
      // Every message of it is on disk with its key: a start no longer reads it (a crash before this reads it again).
      routedWhole: (object) => dlq.markRouted(object),
    });
    const routing = new Set<Promise<unknown>>();
    let stopping = false;
    /** Objects with lines the router could not route, by file: an object routed again (a retry) replaces its count. */
    const unrouted = new Map<string, { unreadableLines: number; damagedObjects: number }>();
    /** Files of the error objects given up on while stopping: leftInS3() names them, as the summary must. */
    const notYetRouted = new Set<string>();
    /** Routes one error object, retrying like S3 event delivery; gives up only while stopping (the next start routes it). */
    const route = (b: string, key: string, size: number): void => {
      const file = path.join(bucketDir(dataDir, b), key);
      const p = (async () => {
        // Failures since the stop began: however often the object failed before, it gets three tries then.
        let failedWhileStopping = 0;
        for (let attempt = 0; ; attempt++) {
          try {
            const { unreadableLines, damagedObjects } = await router(s3Event(b, key, size, region));
            if (unreadableLines > 0 || damagedObjects > 0) {
              // Not marked: each start reads it again, and names what of it stays in S3 only (leftInS3).
              unrouted.set(file, { unreadableLines, damagedObjects });
            } else {
              unrouted.delete(file);
            }
            notYetRouted.delete(file);
            return;
          } catch (e) {
            log(`sluice: failure router on s3://${b}/${key}: ${(e as Error).message}`);
            if (stopping && ++failedWhileStopping >= 3) {
              // Nothing else holds the event: the object itself, which the next start's scan of every error object routes.
              notYetRouted.add(file);
              log(`sluice: s3://${b}/${key} is routed to the DLQ when the twin starts again on this data dir`);
              return;
            }
            await sleep(backoffDelay(attempt, { baseMs: 100, capMs: 5000 }));
          }
        }
      })();
      routing.add(p);
      void p.finally(() => routing.delete(p));
    };
    // locateErrorObject knows the error and search-backup layouts; any other key is not the router's.
    const routable = (key: string) => !('reason' in locateErrorObject(key));
    store.on('objectCreated', ({ bucket: b, key, size }) => {
      if (routable(key)) route(b, key, size);
    });
    // Error objects written before a crash may not have reached the DLQ: route those not marked wholly routed as they are
    // now (the dedupe keys make that a no-op for the messages that did reach it).
    const routed = await dlq.routedVersions();
    for (const prefix of FAILURE_PREFIXES) {
      for (const object of await store.listObjects(bucket, prefix)) {
        if (routable(object.key) && routed.get(routedObjectName(bucket, object.key)) !== versionOfEtag(object.etag)) route(bucket, object.key, object.size);
      }
    }

    const engines = new Map<string, { engine: DeliveryEngine; pipeline: string; kind: 'lake' | 'search' }>();
    const readers: ShardReader[] = [];
    const mappings = new Map<string, EventSourceMapping>();
    /** The twin's functions its Firehose endpoint's Lambda Invoke runs, by name. */
    const functions = new Map<string, LocalFunction>();
    const descriptions: LocalDeliveryStream[] = [];
    const createdAt = new Date();

    const pools = new Map<number, TransformWorkers>();
    for (const [memoryMiB, starting] of transformPools) pools.set(memoryMiB, await starting);
    for (const [pipeline, p] of Object.entries(config.pipelines)) {
      const transforms = pools.get(p.transform.memoryMiB);
      const model = loadModel(pipeline);
      // The engine's and the runtime's: a runtime holding an invocation is ended just after the engine gave up on it.
      const transformTimeoutMs = faults?.hasTransformFaults ? faults.transformTimeoutMs : p.transform.timeoutSeconds * 1000;
      const streamArn = `arn:aws:kinesis:${region}:${ACCOUNT}:stream/${names(pipeline).stream}`;
      if (p.source === 'kinesis') {
        const open = await ensureStream(kc, names(pipeline).stream, localShardCount(p));
        await reshardToConfigured(kc, names(pipeline).stream, open, localShardCount(p), `pipelines.${pipeline}.shards`, log);
      }
      for (const kind of ['lake', 'search'] as const) {
        if (!p.destinations.includes(kind)) continue;
        const sink = kind === 'search'
          ? new SearchSink({ model, dataDir, url: options.openSearchUrl ?? null, ...searchSinkSettings(config, pipeline), warn: log })
          : undefined;
        if (!transforms) throw new Error(`no transform runtimes were started for ${pipeline}`);
        const engine = await DeliveryEngine.open(engineOptionsFromConfig(config, pipeline, kind, {
          dataDir, model, store, sink, region, accountId: ACCOUNT,
          sourceKinesisStreamArn: p.source === 'kinesis' ? streamArn : undefined,
          processor: faults
            ? faults.wrapTransform(transforms.processor(pipeline, kind, transformTimeoutMs), { pipeline, destination: kind })
            : transforms.processor(pipeline, kind, transformTimeoutMs),
          processorTimeoutMs: transformTimeoutMs,
          beforeWrite: faults?.beforeWrite,
          // A delivery retried against a disk that refuses it fails the same way each attempt: said once per step and error code every 10 s.
          onError: (e, context) => repeatedLog(`${pipeline} ${kind} ${context} ${(e as NodeJS.ErrnoException).code ?? (e as Error).name}`, `sluice: ${pipeline} ${kind}: ${context}: ${(e as Error).message}`),
        }));
        stops.push(() => engine.stop());
        const streamName = kind === 'lake' ? names(pipeline).lakeDeliveryStream : names(pipeline).searchDeliveryStream;
        engines.set(streamName, { engine, pipeline, kind });
        descriptions.push({
          name: streamName,
          arn: engine.streamArn,
          type: p.source === 'kinesis' ? 'KinesisStreamAsSource' : 'DirectPut',
          sourceStreamArn: p.source === 'kinesis' ? streamArn : undefined,
          sourceRoleArn: p.source === 'kinesis' ? engine.roleArn : undefined,
          createdAt,
          destinations: [{ DestinationId: 'destinationId-000000000001', ...engine.describeDestination() }],
        });
        if (p.source === 'kinesis') {
          const reader = new ShardReader({
            client: kc, streamName: names(pipeline).stream, consumerName: streamName, dataDir, pollIntervalMs, idlePollIntervalMs,
            onRecords: async (shardId, records) => {
              const results = await engine.ingest(records.flatMap((r) => {
                const incoming = firehoseRecordsOf(shardId, r);
                // Nothing is lost: the producer aggregated no user record into it. Said, because it is odd.
                if (incoming.length === 0) log(`sluice: ${streamName}: ${shardId} record ${r.SequenceNumber} is a KPL-aggregated record that holds no user records; nothing to deliver`);
                return incoming;
              }));
              const refused = results.find((r) => !r.ok);
              // Not checkpointed: the reader offers the batch again, as Firehose retries its source reads.
              if (refused && !refused.ok) throw new Error(`${streamName} refused records: ${refused.errorCode}: ${refused.errorMessage}`);
            },
            onError: readerError(`${names(pipeline).stream} for ${streamName}`),
          });
          await reader.start();
          stops.push(() => reader.stop());
          readers.push(reader);
        }
      }
      if (p.source === 'kinesis' && p.destinations.includes('metadata')) {
        const functionName = consumerFunctionName(config, pipeline);
        const recordBatch = createMetadataRecorder({
          pipeline, tableName, ttlDays: config.metadata.ttlDays, dynamo: doc,
          // Give up on throttled writes (and report them for retry) well inside the function's timeout,
          // as the defaults do (20 s of 60 s): a timeout would cut an invocation off between its writes.
          retryBudgetMs: Math.min(20_000, Math.round((p.consumer.timeoutSeconds * 1000) / 3)),
          // What it prints during an Invoke is that invocation's log too (X-Amz-Log-Type: Tail).
          logger: new InvocationLogger({ serviceName: METADATA_CONSUMER_SERVICE }),
        });
        functions.set(functionName, consumerInvocation(recordBatch, p.consumer.timeoutSeconds, p.consumer.memoryMiB));
        const mapping = new EventSourceMapping({
          client: kc, streamName: names(pipeline).stream, dataDir, functionName,
          // The recorder's answer carries, besides the batchItemFailures Lambda reads, its tallies for the mapping's counters.
          handler: recordBatch,
          ...consumerMappingSettings(config, pipeline),
          bisectBatchOnFunctionError: true,
          reportBatchItemFailures: true,
          onFailure: queueDestination(consumerDlq),
          pollIntervalMs,
          idlePollIntervalMs,
          region,
          onError: (e, c) => log(`sluice: ${functionName} ${c.operation} on ${c.shardId}: ${(e as Error).message}`),
          onReaderError: readerError(`${names(pipeline).stream} for ${functionName}`),
        });
        await mapping.start();
        stops.push(() => mapping.stop());
        mappings.set(pipeline, mapping);
      }
    }

    const backend: FirehoseBackend = {
      listDeliveryStreams: () => descriptions,
      findDeliveryStream: (name) => descriptions.find((d) => d.name === name),
      ingest: async (name, records) => {
        const target = engines.get(name);
        if (!target) throw new Error(`no engine for ${name}`);
        return target.engine.ingest(records);
      },
      invokeFunction: async (name, payload, invocation) => functions.get(name)?.(payload, invocation),
      hasFunction: (name) => functions.has(name),
    };
    // Named in twin.json and in every answer of the Firehose endpoint: commands match the two.
    const twinId = randomUUID();
    const api: RunningFirehoseApi = await startFirehoseApi({
      host, port: options.ports?.firehose ?? config.local.firehosePort, backend, region,
      onBackendError: (e: unknown) => log(`sluice: firehose endpoint: ${(e as Error).message}`),
      headers: { [TWIN_DATA_DIR_HEADER]: encodeURIComponent(path.resolve(dataDir)), [TWIN_ID_HEADER]: twinId },
    });
    stops.push(() => api.close());
    // Who runs on this data dir, where, and with which schemas: `put` and `replay` check it before they send.
    const startedAt = new Date().toISOString();
    writeTwinRecord({
      pid: process.pid, processStart: ownProcessStart(), startedAt, twinId, dataDir: path.resolve(dataDir),
      endpoints: { firehose: api.url, kinesis: kinesis.endpoint, dynamo: dynamo.endpoint, openSearch: options.openSearchUrl ? openSearchOrigin(options.openSearchUrl) : null },
      names: { prefix: config.prefix, env: config.env },
      // The validators as the transform's runtimes loaded them (hashed at start), not as they may be by now.
      schemas: Object.fromEntries(Object.keys(config.pipelines).map((p) => [p, schemaFingerprint(p, validatorsAtStart.get(p))])),
      sources: Object.fromEntries(Object.entries(config.pipelines).map(([p, c]) => [p, c.source])),
      bufferIntervalSeconds: config.local.bufferIntervalSeconds,
      region,
    });
    stops.push(async () => removeTwinRecord(dataDir, process.pid, startedAt));

    /** Waits until the readers and the consumer have handled every record in the streams. */
    const drainStreams = async (timeoutMs: number) => {
      await Promise.all(readers.map((r) => r.drain({ timeoutMs })));
      await Promise.all([...mappings.values()].map((m) => m.drain({ timeoutMs })));
    };
    const settle = async (timeoutMs = 60_000) => {
      await drainStreams(timeoutMs);
      await Promise.all([...engines.values()].map(({ engine }) => engine.flush()));
      while (routing.size > 0) await Promise.all([...routing]);
    };

    return {
      dataDir,
      bucket,
      endpoints: { firehose: api.url, kinesis: kinesis.endpoint, dynamo: dynamo.endpoint },
      metadataTable: tableName,
      settle,
      summary: () => Object.keys(config.pipelines).map((pipeline) => {
        const lake = engines.get(names(pipeline).lakeDeliveryStream)?.engine.counters;
        const search = engines.get(names(pipeline).searchDeliveryStream)?.engine.counters;
        const m = mappings.get(pipeline)?.stats();
        return {
          pipeline, lake, search,
          metadata: m
            ? {
              invocations: m.invocations, recordsSucceeded: m.recordsSucceeded, recordsSkipped: m.recordsSkipped,
              batchesToDestination: m.batchesToOnFailure,
              failedInvocations: m.failedInvocations, partialFailures: m.partialFailures, bisections: m.bisections,
            }
            : undefined,
        };
      }),
      dlqCount: async () => ({ ...await dlqMessageKinds(dlq), consumer: await consumerDlq.count() }),
      leftInS3: () => ({
        unreadableLines: [...unrouted.values()].reduce((n, u) => n + u.unreadableLines, 0),
        damagedObjects: [...unrouted.values()].reduce((n, u) => n + u.damagedObjects, 0),
        files: [...unrouted.keys()].sort(),
        notYetRouted: [...notYetRouted].sort(),
      }),
      dlqCountByPipeline: async () => ({ ...await dlqMessageKindsByPipeline(dlq), consumer: await consumerDlq.count() }),
      stop: async () => {
        // Take no more records, read what the streams hold, deliver what was acknowledged, then route
        // the last error objects. Each engine flushes as it stops: unlike flush(), that gives up after a
        // few attempts when the disk stays full or read-only (the records stay in its write-ahead log
        // for the next start), so a stop always ends.
        await api.close();
        stopping = true;
        // Not while the last records are read and delivered: what expired waits for the next start.
        await ttlSweeper.stop();
        if (kinesis.available()) {
          await drainStreams(60_000).catch((e: unknown) => log(`sluice: while reading the streams: ${(e as Error).message}`));
        } else {
          log('sluice: kinesis-mock is not running, so the streams are not read to their end: what they hold is read at the next start.');
        }
        await stopAll();
        while (routing.size > 0) await Promise.all([...routing]);
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * Dead-letter files under `<dataDir>/dlq/` of queues the configuration does not name (written with another `prefix` or
 * `env`) that hold messages not deleted: the summary and `replay` read only the configuration's own.
 */
async function deadLettersOfOtherQueues(dataDir: string, config: SluiceConfig): Promise<Array<{ file: string; queue: string; messages: number; current: string }>> {
  const dir = path.join(dataDir, 'dlq');
  // The queues are the stack's, not a pipeline's.
  const names = resourceNames(config, '');
  const ours = new Set([names.dlq, names.consumerDlq]);
  const found: Array<{ file: string; queue: string; messages: number; current: string }> = [];
  if (!fs.existsSync(dir)) return found;
  for (const entry of fs.readdirSync(dir).filter((f) => f.endsWith('-dlq.jsonl')).sort()) {
    const queue = entry.slice(0, -'.jsonl'.length);
    // A file a queue cannot have written (`my notes-dlq.jsonl`) is nobody's dead letters: left alone, and no reason to refuse the start.
    if (ours.has(queue) || !isQueueName(queue)) continue;
    const messages = await new DlqFile({ dataDir, queue }).count();
    const current = queue.endsWith('-consumer-dlq') ? names.consumerDlq : names.dlq;
    if (messages > 0) found.push({ file: path.join(dir, entry), queue, messages, current });
  }
  return found;
}

/** The delivery streams the configuration runs: each pipeline's lake and search streams, by their names. */
function configuredDeliveryStreams(config: SluiceConfig): Set<string> {
  const streams = new Set<string>();
  for (const [pipeline, p] of Object.entries(config.pipelines)) {
    const names = resourceNames(config, pipeline);
    if (p.destinations.includes('lake')) streams.add(names.lakeDeliveryStream);
    if (p.destinations.includes('search')) streams.add(names.searchDeliveryStream);
  }
  return streams;
}

/** Each pipeline's generated validator as it is on disk now; undefined for one without (the twin's start then fails, naming it). */
function validatorFingerprints(pipelines: readonly string[]): Map<string, string | undefined> {
  return new Map(pipelines.map((p) => {
    try {
      return [p, validatorFingerprint(p)];
    } catch {
      return [p, undefined];
    }
  }));
}

function s3Event(bucket: string, key: string, size: number, region: string): S3Event {
  return {
    Records: [{
      eventVersion: '2.1', eventSource: 'aws:s3', awsRegion: region, eventTime: new Date().toISOString(), eventName: 'ObjectCreated:Put',
      userIdentity: { principalId: 'sluice-local' }, requestParameters: { sourceIPAddress: '127.0.0.1' },
      responseElements: { 'x-amz-request-id': 'local', 'x-amz-id-2': 'local' },
      s3: {
        s3SchemaVersion: '1.0', configurationId: 'failure-router',
        bucket: { name: bucket, ownerIdentity: { principalId: 'sluice-local' }, arn: `arn:aws:s3:::${bucket}` },
        // S3 events carry URL-encoded keys (spaces as +); the router decodes them.
        object: { key: encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+'), size, eTag: '', sequencer: Date.now().toString(16) },
      },
    }],
  };
}

/**
 * Shards of a pipeline's local stream: an on-demand stream starts with 4, as in AWS (4 MB/s of writes at 1 MB/s a
 * shard; `sluice cost` prices the same 4).
 */
function localShardCount(p: SluiceConfig['pipelines'][string]): number {
  return p.shards === 'on-demand' ? ON_DEMAND_INITIAL_SHARDS : p.shards;
}

/** How many times in a row the twin tries to start kinesis-mock again after it exited, and the pause between tries. */
const KINESIS_RESTART_ATTEMPTS = 5;
const KINESIS_RESTART_PAUSE_MS = 1000;

/**
 * kinesis-mock under watch: should it exit while the twin runs (killed, out of memory), the twin says
 * so and starts it again on the same port and data dir. It comes back with the streams of its last
 * save (every 5 s): records put after that are gone. Readers then resume from their checkpoints, or
 * from the start of a shard whose checkpoint went with them (see shard-reader.ts).
 */
export async function superviseKinesis(
  start: () => Promise<RunningService>,
  options: { readonly log: (line: string) => void; readonly afterRestart: () => Promise<void> },
): Promise<{ readonly endpoint: string; available(): boolean; stop(): Promise<void> }> {
  let current: RunningService | undefined = await start();
  let stopped = false;
  let restarting: Promise<void> | undefined;
  const restart = async (dead: RunningService, how: string): Promise<void> => {
    // kinesis-mock saves its streams when it is asked to stop (SIGTERM, SIGINT): then nothing is lost.
    const saved = /^(signal SIG(TERM|INT)|exit code (0|130|143))\./.test(how);
    options.log(`sluice: kinesis-mock (pid ${dead.pid}) exited while the twin ran; starting it again on ${dead.endpoint}. `
      + `${saved ? 'It saved its streams on the way out' : 'Records put to a stream in its last 5 s may be lost (it saves every 5 s)'}; `
      + `readers go on from their checkpoints. It ended with ${how}`);
    let next: RunningService | undefined;
    for (let attempt = 1; next === undefined; attempt++) {
      if (stopped) return;
      try {
        next = await start();
      } catch (error) {
        if (stopped) return;
        if (attempt >= KINESIS_RESTART_ATTEMPTS) {
          options.log(`sluice: kinesis-mock did not start again (${(error as Error).message}); Kinesis-sourced pipelines are stalled until the twin is restarted.`);
          return;
        }
        await sleep(KINESIS_RESTART_PAUSE_MS);
      }
    }
    current = next;
    if (stopped) return;
    watch(next);
    let problem: string | undefined;
    try {
      await options.afterRestart();
    } catch (error) {
      problem = (error as Error).message;
    }
    // Said only of the kinesis-mock still running: one that died meanwhile is being started again.
    if (current !== next) return;
    options.log(problem === undefined
      ? `sluice: kinesis-mock is back on ${next.endpoint} (pid ${next.pid}).`
      : `sluice: kinesis-mock is back on ${next.endpoint} (pid ${next.pid}), but its streams could not be created again: ${problem}`);
  };
  const watch = (service: RunningService): void => {
    void service.exited?.then((how) => {
      if (stopped || current !== service) return;
      current = undefined;
      restarting = restart(service, how);
    });
  };
  const { endpoint } = current;
  watch(current);
  return {
    endpoint,
    available: () => current !== undefined,
    stop: async () => {
      stopped = true;
      await restarting;
      await current?.stop();
    },
  };
}

/** Makes the stream unless it exists, and waits until it is ACTIVE: its open shards then (a stream made earlier keeps its own count). */
async function ensureStream(client: ReturnType<typeof kinesisClient>, streamName: string, shards: number): Promise<number | undefined> {
  // Looked up first: kinesis-mock logs a stack trace for each CreateStream of a stream it has.
  const exists = await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName })).then(() => true, (e: unknown) => {
    if ((e as { name?: string }).name === 'ResourceNotFoundException') return false;
    throw e;
  });
  if (!exists) {
    try {
      await client.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: shards }));
    } catch (e) {
      if (!(e instanceof ResourceInUseException)) throw e;
    }
  }
  return untilActive(client, streamName, '');
}

/** Waits up to 30 s until the stream is ACTIVE; its open shards then. */
async function untilActive(client: ReturnType<typeof kinesisClient>, streamName: string, after: string): Promise<number | undefined> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    const d = await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
    if (d.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return d.StreamDescriptionSummary.OpenShardCount;
    if (performance.now() > deadline) throw new Error(`Kinesis stream ${streamName} did not become ACTIVE within 30 s${after}`);
    await sleep(50);
  }
}

/**
 * A stream made on an earlier start keeps the shards it was made with: when `shards` changed since, it is resharded to
 * the configured count (UpdateShardCount, uniform scaling), as a deploy does in place. The readers follow the split or
 * merge as they do any reshard: parents to their end first. One kinesis-mock refuses keeps its shards, and that is said.
 */
async function reshardToConfigured(
  client: ReturnType<typeof kinesisClient>, streamName: string, open: number | undefined, shards: number, setting: string, log: (line: string) => void,
): Promise<void> {
  if (open === undefined || open === shards) return;
  try {
    await client.send(new UpdateShardCountCommand({ StreamName: streamName, TargetShardCount: shards, ScalingType: 'UNIFORM_SCALING' }));
  } catch (e) {
    // kinesis-mock refuses what Kinesis does: more than double or less than half the open shards in one step.
    log(`sluice: warning: Kinesis stream ${streamName} has ${open} open shard${open === 1 ? '' : 's'} and ${setting} is ${shards}, but resharding it failed`
      + ` (${(e as Error).message}): it runs with ${open}. Change the count in steps of at most double or half, a start each, as on AWS a deploy`
      + ` each, or start on a new --data-dir once what was sent is delivered`);
    return;
  }
  log(`sluice: Kinesis stream ${streamName} resharded from ${open} to ${shards} open shard${shards === 1 ? '' : 's'}, as ${setting} now says (UpdateShardCount, as a deploy does;`
    + ' on AWS one deploy may at most double or halve the count)');
  await untilActive(client, streamName, ' of resharding');
}

/** The metadata table as the stack defines its keys and TTL, created when missing and waited for until ACTIVE. */
export async function ensureMetadataTable(client: ReturnType<typeof dynamoClient>, tableName: string): Promise<void> {
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }));
    return;
  } catch (e) {
    if (!(e instanceof ResourceNotFoundException)) throw e;
  }
  const { partitionKey, sortKey, ttlAttribute } = METADATA_TABLE_KEYS;
  await client.send(new CreateTableCommand({
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [{ AttributeName: partitionKey, AttributeType: 'S' }, { AttributeName: sortKey, AttributeType: 'S' }],
    KeySchema: [{ AttributeName: partitionKey, KeyType: 'HASH' }, { AttributeName: sortKey, KeyType: 'RANGE' }],
  }));
  for (let i = 0; i < 200; i++) {
    const d = await client.send(new DescribeTableCommand({ TableName: tableName }));
    if (d.Table?.TableStatus === 'ACTIVE') break;
    await sleep(25);
  }
  await client.send(new UpdateTimeToLiveCommand({ TableName: tableName, TimeToLiveSpecification: { Enabled: true, AttributeName: ttlAttribute } }))
    .catch(() => undefined); // dynalite does not implement TTL: the twin's TtlSweeper applies it
}

/**
 * The messages in `queue` not yet deleted: those for failed records, and the router's pointers to over-long error lines.
 * A body that is not the router's message counts as a record, as the queue's total always has.
 */
export async function dlqMessageKinds(queue: DlqFile): Promise<Pick<DlqCounts, 'records' | 'overlongLinePointers'>> {
  const kinds = messageKindsCounter();
  await queue.forEachBody(kinds.visit);
  return kinds.counts();
}

/**
 * dlqMessageKinds, and the DLQ messages per pipeline, from one read of `queue`: the messages not yet deleted, by the
 * pipeline each failure-router body names. A body that names none (not JSON, or not the router's message) counts for no
 * pipeline, and a pipeline with none has no entry.
 */
export async function dlqMessageKindsByPipeline(queue: DlqFile): Promise<Pick<DlqCounts, 'records' | 'overlongLinePointers'> & { byPipeline: Map<string, number> }> {
  const kinds = messageKindsCounter();
  const byPipeline = new Map<string, number>();
  await queue.forEachBody((body) => {
    kinds.visit(body);
    let pipeline: unknown;
    try {
      pipeline = (JSON.parse(body) as { pipeline?: unknown } | null)?.pipeline;
    } catch {
      return;
    }
    if (typeof pipeline === 'string') byPipeline.set(pipeline, (byPipeline.get(pipeline) ?? 0) + 1);
  });
  return { ...kinds.counts(), byPipeline };
}

function messageKindsCounter(): { visit: (body: string) => void; counts: () => Pick<DlqCounts, 'records' | 'overlongLinePointers'> } {
  let messages = 0;
  let overlongLinePointers = 0;
  return {
    visit: (body) => {
      messages++;
      // Parsed only when it may be one: most bodies are records.
      if (!body.includes(OVERLONG_LINE_ERROR_CODE)) return;
      try {
        if ((JSON.parse(body) as { errorCode?: unknown } | null)?.errorCode === OVERLONG_LINE_ERROR_CODE) overlongLinePointers++;
      } catch {
        // Not JSON: not the router's message.
      }
    },
    counts: () => ({ records: messages - overlongLinePointers, overlongLinePointers }),
  };
}
