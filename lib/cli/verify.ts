/**
 * `put --verify`: waits until records are queryable where users look for them — Parquet rows through
 * Athena/DuckDB, documents through OpenSearch — counting the event ids that were sent, with partition
 * predicates so Athena scans only the partitions those records land in.
 *
 * Only rows and documents that arrived since the put started count (`sluice.arrival_time`, less a clock
 * tolerance): the same records put again (the same --seed, the same --file) have the same ids, and the earlier
 * put's rows must not pass for this one's.
 */
import * as path from 'node:path';
import { resourceNames, type SluiceConfig } from '../config';
import { openSearchDir } from '../local/paths';
import { ENRICHMENT_COLUMN } from '../schema/model';
import { athenaTimestamp, injectedPartitionKeys, quoteIdent, sqlString, type SchemaModel } from '../schema';
import type { Progress } from './progress';
import { bulkDocuments, type SearchBackend } from './search-backend';
import { sleep } from './sleep';
import type { SqlEngine } from './sql';

/** A record that should become queryable: its id and the partition values the transform gives it. */
export interface ExpectedRecord {
  readonly id: string;
  readonly partitionKeys: Readonly<Record<string, string>>;
}

export interface VerifyResult {
  readonly where: string;
  readonly expected: number;
  readonly found: number;
  /** Until the last record was found, or until giving up. */
  readonly elapsedMs: number;
  readonly passed: boolean;
  /** A few of the ids not found, for the message. */
  readonly missingSample: string[];
  /**
   * Of the ids not found, how many are there with an earlier arrival time only (an earlier put of the same records,
   * or a clock ahead of the pipeline's): counted once, when verifying failed.
   */
  readonly arrivedBefore?: number;
  /** Ctrl-C (`signal`) ended the wait before every record was found. */
  readonly interrupted?: boolean;
}

export interface WaitOptions {
  readonly timeoutMs: number;
  readonly pollMs: number;
  readonly progress: Progress;
  /** When the clock started (the first record sent), on the wall clock: what arrival times are compared with. */
  readonly startedAt: number;
  /**
   * The same instant on the monotonic clock (`performance.now()`), which the timeout and the time taken are counted
   * on: a wall clock set back an hour would make a wait that fails take that hour longer, and one set forward would
   * end it after one look. @default the wait's start less the wall clock's time since `startedAt`
   */
  readonly startedAtMonotonic?: number;
  /**
   * Rows and documents that arrived this long before `startedAt` count too: how far this machine's clock may run ahead
   * of the pipeline's (Firehose's or Kinesis's arrival time; the twin's is this machine's). @default 0
   */
  readonly clockToleranceMs?: number;
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Ends the wait when it aborts (Ctrl-C): the result says what was found until then. */
  readonly signal?: AbortSignal;
}

/**
 * How long `put --verify` waits by default. On AWS a record reaches a destination after the transform's processor
 * interval and that delivery's buffer interval (dynamic partitioning: up to ~1.5×), the longest of the pipeline's
 * lake and search deliveries, plus a few minutes of delivering. The twin flushes every `local.bufferIntervalSeconds`
 * and delivers in seconds: a minute, or longer for a longer interval.
 */
export function defaultVerifyTimeoutMs(
  where: 'local' | 'aws', config: SluiceConfig, pipeline: string,
  /** Locally, the interval the twin runs with (`local up --buffer-interval`, in its twin.json). */
  localIntervalSeconds = config.local.bufferIntervalSeconds,
): number {
  if (where === 'local') return Math.max(60_000, Math.round((1.5 * localIntervalSeconds + 30) * 1000));
  const p = config.pipelines[pipeline];
  const buffering = Math.max(0, ...(['lake', 'search'] as const).filter((d) => p.destinations.includes(d))
    .map((d) => (d === 'lake' ? p.buffering.intervalSeconds : p.search.bufferingIntervalSeconds)));
  return Math.round(1.5 * (buffering + p.transform.processorIntervalSeconds) * 1000) + 180_000;
}

/** Ids per query: keeps an Athena query string far below its 256 KB limit. */
const IDS_PER_QUERY = 1000;
/** More distinct partitions than this in one query: filter by the ids alone. */
const MAX_PARTITION_TERMS = 48;

/** Which arrival times count (epoch ms): at or after `from` (this put's), or before `until` (an earlier put's). */
export type ArrivalWindow = { readonly from: number } | { readonly until: number };

/**
 * Finds which of `missing` are there, counting only what arrived in `window` (without one, whatever arrived). Asked in
 * pieces (a query per 1,000 ids), it asks no more once `performance.now()` passes `stopAt` (the piece under way finishes):
 * `complete` says whether every id was asked about.
 */
type FindSome = (missing: ExpectedRecord[], window: ArrivalWindow | undefined, stopAt: number) => Promise<{ found: Set<string>; complete: boolean }>;

/** Polls `findSome` for the missing ids until all are found or the time is up. */
async function waitFor(label: string, unit: string, expected: readonly ExpectedRecord[], findSome: FindSome, options: WaitOptions): Promise<VerifyResult> {
  const missing = new Map(expected.map((e) => [e.id, e]));
  const began = options.startedAtMonotonic ?? performance.now() - (Date.now() - options.startedAt);
  const deadline = began + options.timeoutMs;
  const since = options.startedAt - (options.clockToleranceMs ?? 0);
  const wait = options.sleep ?? sleep;
  let lastFoundAt = performance.now();
  const { signal } = options;
  while (!signal?.aborted) {
    let found: Set<string>;
    try {
      // A round may run past the deadline by one poll interval (and the query under way), no more: a round of many
      // queries on a slow machine would otherwise hold the run long after --timeout. Ids not asked about count as missing.
      ({ found } = await findSome([...missing.values()], { from: since }, Math.max(deadline, performance.now()) + options.pollMs));
    } catch (err) {
      // The check in flight gives up when interrupted (DuckDB's query, OpenSearch's request): what was found stands.
      if (signal?.aborted) break;
      throw err;
    }
    if (found.size > 0) lastFoundAt = performance.now();
    for (const id of found) missing.delete(id);
    const done = expected.length - missing.size;
    options.progress.update(`verify ${label}: ${done.toLocaleString('en-US')}/${expected.length.toLocaleString('en-US')} ${unit} · ${Math.round((performance.now() - began) / 1000)} s`);
    const left = deadline - performance.now();
    if (missing.size === 0 || left <= 0) break;
    // The last wait ends at the deadline, for one more check then: records that land in the last poll interval count.
    await wait(Math.min(options.pollMs, left), signal);
  }
  const passed = missing.size === 0;
  const elapsedMs = (passed ? lastFoundAt : performance.now()) - began;
  // Said when it failed: ids that are there from before this put are the likeliest cause. Not asked after Ctrl-C, and
  // a Ctrl-C while it is asked leaves it unsaid.
  let arrivedBefore: number | undefined;
  if (!passed && !signal?.aborted) {
    try {
      // Said only when every missing id was asked about in one more poll interval: a part would undercount.
      const before = await findSome([...missing.values()], { until: since }, performance.now() + options.pollMs);
      if (before.complete) arrivedBefore = before.found.size;
    } catch (err) {
      if (!signal?.aborted) throw err;
    }
  }
  return {
    where: label,
    expected: expected.length,
    found: expected.length - missing.size,
    elapsedMs,
    passed,
    missingSample: [...missing.keys()].slice(0, 5),
    ...(arrivedBefore ? { arrivedBefore } : {}),
    ...(!passed && signal?.aborted ? { interrupted: true } : {}),
  };
}

/** Column names (and their Hive types) of the id and the partition keys in the Glue table. */
function lakeColumns(model: SchemaModel): { id: string; intKeys: Set<string> } {
  const id = model.tableColumns.find((c) => c.jsonKey === model.extensions.idField) ?? model.enrichedColumns.find((c) => c.jsonKey === model.extensions.idField);
  if (!id) throw new Error(`schemas/${model.pipeline}.schema.json: the idField has no column`);
  return { id: id.name, intKeys: new Set(model.partitionKeys.filter((k) => k.hiveType === 'int').map((k) => k.name)) };
}

/**
 * `SELECT DISTINCT id FROM db.table WHERE (partition = … OR …) AND sluice.arrival_time >= … AND id IN (…)`: the
 * partition terms let Athena's projection read only the partitions the records land in; the arrival time (a UTC
 * timestamp, as Athena and DuckDB both read it) keeps rows of this put (`window.from`) or of earlier ones (`window.until`).
 */
export function lakeVerifySql(model: SchemaModel, database: string, table: string, batch: readonly ExpectedRecord[], window?: ArrivalWindow): string {
  const { id, intKeys } = lakeColumns(model);
  const literal = (key: string, value: string) => (intKeys.has(key) ? String(Number(value)) : sqlString(value));
  const terms = new Set<string>();
  for (const e of batch) {
    const keys = model.partitionKeys.map((k) => k.name).filter((k) => e.partitionKeys[k] !== undefined);
    terms.add(`(${keys.map((k) => `${quoteIdent(k)} = ${literal(k, e.partitionKeys[k])}`).join(' AND ')})`);
  }
  const where = [`${quoteIdent(id)} IN (${batch.map((e) => sqlString(e.id)).join(', ')})`];
  // The long list of ids last, where a reader of the query looks for it.
  if (window !== undefined) {
    const [op, at] = 'from' in window ? ['>=', window.from] : ['<', window.until];
    where.unshift(`${quoteIdent(ENRICHMENT_COLUMN)}.${quoteIdent('arrival_time')} ${op} TIMESTAMP ${sqlString(athenaTimestamp(new Date(at)))}`);
  }
  if (terms.size > 0 && terms.size <= MAX_PARTITION_TERMS && !terms.has('()')) {
    where.unshift(`(${[...terms].sort().join(' OR ')})`);
  } else {
    // Athena refuses a query that does not name the values of a partition key without an enum (injected projection).
    for (const k of injectedPartitionKeys(model).reverse()) {
      const values = [...new Set(batch.map((e) => e.partitionKeys[k]).filter((v) => v !== undefined))].sort();
      if (values.length > 0) where.unshift(`${quoteIdent(k)} IN (${values.map((v) => literal(k, v)).join(', ')})`);
    }
  }
  return `SELECT DISTINCT ${quoteIdent(id)} AS id FROM ${quoteIdent(database)}.${quoteIdent(table)} WHERE ${where.join(' AND ')}`;
}


export async function verifyLake(engine: SqlEngine, config: SluiceConfig, model: SchemaModel, expected: readonly ExpectedRecord[], options: WaitOptions): Promise<VerifyResult> {
  const lake = lakeFinder(engine, config, model, options.progress);
  return waitFor(lake.label, 'rows', expected, lake.findSome, options);
}

/** Where a destination is looked in, and how. */
interface Finder {
  readonly label: string;
  readonly findSome: FindSome;
}

function lakeFinder(engine: SqlEngine, config: SluiceConfig, model: SchemaModel, progress: Progress): Finder {
  const names = resourceNames(config, model.pipeline);
  const database = engine.database || names.glueDatabase;
  return {
    label: `lake (${database}.${names.glueTable})`,
    async findSome(missing, window, stopAt) {
      const found = new Set<string>();
      for (let i = 0; i < missing.length; i += IDS_PER_QUERY) {
        if (i > 0 && performance.now() > stopAt) return { found, complete: false };
        const result = await engine.run(lakeVerifySql(model, database, names.glueTable, missing.slice(i, i + IDS_PER_QUERY), window), { progress });
        for (const row of result.rows) found.add(String(row[0]));
      }
      return { found, complete: true };
    },
  };
}

/**
 * Which of `records` (their ids) a destination holds, whenever they arrived: one look, no waiting. `sluice replay` asks
 * before re-putting a record that failed for one destination only, since the other would get it a second time.
 */
export type Presence = (records: readonly ExpectedRecord[]) => Promise<Set<string>>;

function presenceOf(finder: Finder): Presence {
  return async (records) => (await finder.findSome([...records], undefined, Number.POSITIVE_INFINITY)).found;
}

export function lakePresence(engine: SqlEngine, config: SluiceConfig, model: SchemaModel, progress: Progress): Presence {
  return presenceOf(lakeFinder(engine, config, model, progress));
}

export function searchPresence(backend: SearchBackend, config: SluiceConfig, model: SchemaModel): Presence {
  return presenceOf(searchFinder(backend, config, model));
}

export function bulkFilePresence(dataDir: string, config: SluiceConfig, model: SchemaModel): Presence {
  return presenceOf(bulkFileFinder(dataDir, config, model));
}

/** The mapped field a document's id is in (a keyword field), e.g. `event_id`. */
function idField(model: SchemaModel): string {
  return lakeColumns(model).id;
}

export async function verifySearch(backend: SearchBackend, config: SluiceConfig, model: SchemaModel, expected: readonly ExpectedRecord[], options: WaitOptions): Promise<VerifyResult> {
  const search = searchFinder(backend, config, model, options.signal);
  return waitFor(search.label, 'documents', expected, search.findSome, options);
}

function searchFinder(backend: SearchBackend, config: SluiceConfig, model: SchemaModel, signal?: AbortSignal): Finder {
  const index = `${resourceNames(config, model.pipeline).indexPrefix}-*`;
  const field = idField(model);
  return {
    label: `search (${index})`,
    async findSome(missing, window, stopAt) {
      const found = new Set<string>();
      for (let i = 0; i < missing.length; i += IDS_PER_QUERY) {
        if (i > 0 && performance.now() > stopAt) return { found, complete: false };
        const ids = missing.slice(i, i + IDS_PER_QUERY).map((e) => e.id);
        const filter: unknown[] = [{ terms: { [field]: ids } }];
        if (window !== undefined) {
          filter.push({ range: { [ARRIVAL_FIELD]: 'from' in window ? { gte: new Date(window.from).toISOString() } : { lt: new Date(window.until).toISOString() } } });
        }
        // A document per put of a record (Firehose gives each its own id): enough hits for every copy of the ids asked.
        const response = await backend.search(index, { size: Math.min(ids.length * 10, 10_000), _source: [field], query: { bool: { filter } } }, signal);
        for (const hit of response.hits.hits) {
          const value = hit._source?.[field];
          if (typeof value === 'string') found.add(value);
        }
      }
      return { found, complete: true };
    },
  };
}

/** The arrival time in a document: the enriched record's `sluice.arrival_time`. */
const ARRIVAL_FIELD = `${ENRICHMENT_COLUMN}.arrival_time`;

/** The twin without an OpenSearch: the documents are in its `_bulk` bodies. */
export async function verifyBulkFiles(dataDir: string, config: SluiceConfig, model: SchemaModel, expected: readonly ExpectedRecord[], options: WaitOptions): Promise<VerifyResult> {
  const bulk = bulkFileFinder(dataDir, config, model);
  return waitFor(bulk.label, 'documents', expected, bulk.findSome, options);
}

function bulkFileFinder(dataDir: string, config: SluiceConfig, model: SchemaModel): Finder {
  const prefix = `${resourceNames(config, model.pipeline).indexPrefix}-`;
  const field = idField(model);
  return {
    label: `search (_bulk bodies under ${path.join(openSearchDir(dataDir), model.pipeline)})`,
    async findSome(missing, window) {
      const wanted = new Set(missing.map((e) => e.id));
      const found = new Set<string>();
      for (const { index, doc } of bulkDocuments(dataDir, model.pipeline)) {
        const value = doc[field];
        if (!((index === '' || index.startsWith(prefix)) && typeof value === 'string' && wanted.has(value))) continue;
        if (window !== undefined) {
          const arrival = (doc[ENRICHMENT_COLUMN] as { arrival_time?: unknown } | undefined)?.arrival_time;
          const at = typeof arrival === 'string' ? Date.parse(arrival) : Number.NaN;
          if (!('from' in window ? at >= window.from : at < window.until)) continue;
        }
        found.add(value);
      }
      // One pass over the bodies: nothing to cut short.
      return { found, complete: true };
    },
  };
}
