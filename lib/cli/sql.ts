/**
 * Athena SQL in both places: DuckDB over the twin's Parquet (lib/local/athena.ts), or Athena in the
 * stack's workgroup — start, poll with progress, page through the results. The same SQL runs on both
 * for what the two dialects share, because the Glue database and table names exist in both.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  AthenaClient,
  BatchGetNamedQueryCommand,
  GetQueryExecutionCommand,
  GetQueryResultsCommand,
  ListNamedQueriesCommand,
  StartQueryExecutionCommand,
  StopQueryExecutionCommand,
  type ColumnInfo,
} from '@aws-sdk/client-athena';
import { resourceNames } from '../config';
import type { LocalAthena } from '../local/athena';
import { bucketDir, localBucketName } from '../local/paths';
import { explained, explainFailure } from './errors';
import { formatBytes, UserError } from './output';
import { io, type Progress } from './progress';
import { interruptionBy, takeInterrupts, type Interruption } from './interrupt';
import { OutputKeys } from './stack-outputs';
import { sleep } from './sleep';
import { checkTwinDataDir, type AwsTarget, type LocalTarget, type Target } from './target';

export interface SqlStats {
  readonly engine: 'duckdb' | 'athena';
  readonly elapsedMs: number;
  /** DuckDB: Parquet files read, and how many the tables the query scanned hold (partition pruning at work). */
  readonly filesRead?: number;
  readonly filesTotal?: number;
  /** DuckDB: a LIMIT may have stopped the scans early; the files read were at most this many. */
  readonly filesReadAtMost?: number;
  /** Athena: bytes scanned (what a query costs) and the query execution id. */
  readonly bytesScanned?: number;
  readonly queryExecutionId?: string;
  /** Rows left out because of --max-rows. */
  readonly truncated?: boolean;
}

export interface SqlResult {
  readonly columns: string[];
  /** Each column's SQL type as the engine names it: DuckDB's DOUBLE, DECIMAL(8,2); Athena's double, decimal(10,2). */
  readonly columnTypes: string[];
  readonly rows: unknown[][];
  /** DuckDB: the statement was an EXPLAIN; its last column holds the plan as lines of text. */
  readonly plan?: boolean;
  readonly stats: SqlStats;
}

export interface SavedQuery {
  readonly name: string;
  readonly description?: string;
  readonly sql: string;
  readonly database?: string;
}

export interface SqlEngine {
  /** "DuckDB over .sluice/s3/…", "Athena workgroup sluice-dev". */
  readonly description: string;
  readonly database: string;
  run(sql: string, options: { progress: Progress; maxRows?: number; database?: string }): Promise<SqlResult>;
  savedQueries(): Promise<SavedQuery[]>;
  close(): void;
}

/** A query the engine ran and refused or failed (bad SQL, a cutoff hit): exit 1, message only. */
export class QueryFailedError extends UserError {
  constructor(message: string) {
    super(message, 1);
    this.name = 'QueryFailedError';
  }
}

export interface SqlEngineOptions {
  /**
   * A SIGTERM stops the running query as a first Ctrl-C does (put --verify reports and ends as interrupted), rather
   * than ending the process at once (query). A SIGTERM repeated within 2 s is the same one (GNU `timeout` sends two).
   * @default false
   */
  readonly sigtermInterrupts?: boolean;
}

export async function sqlEngineFor(target: Target, options: SqlEngineOptions = {}): Promise<SqlEngine> {
  return target.kind === 'local' ? localSqlEngine(target, options) : athenaSqlEngine(target, new AthenaClient(target.clientConfig), {}, options);
}

// ---------------------------------------------------------------------------------------------
// Local: DuckDB

async function localSqlEngine(target: LocalTarget, options: SqlEngineOptions): Promise<SqlEngine> {
  // DuckDB takes ~0.2 s to load: put and replay load it only when they verify or read the lake.
  const { LocalAthena, QueryNotAllowedError } = require('../local/athena') as typeof import('../local/athena');
  const lake = bucketDir(target.dataDir, localBucketName(target.config));
  checkTwinDataDir(target.dataDir);
  // Another env or prefix (-c env=prod on a dev twin's data dir) names a bucket that is not there: every table
  // would read as empty, with nothing to say why.
  if (!fs.existsSync(lake)) {
    // Not the store's own work folders (.tmp): bucket names cannot start with a dot.
    const buckets = fs.existsSync(path.dirname(lake)) ? fs.readdirSync(path.dirname(lake)).filter((name) => !name.startsWith('.')).sort() : [];
    if (buckets.length > 0) {
      io.err(`sluice: note: ${target.dataDir} has no data bucket ${path.basename(lake)} (it has ${buckets.join(', ')}): `
        + 'the tables read as empty; was the twin run with other settings (-c env=…, prefix)?\n');
    }
  }
  // The engine's scratch folder (DuckDB's profile and spill files) lives from open() to close(), and no signal may end the
  // process in between with it left behind: a first Ctrl-C stops the running query (or the next one before it starts),
  // and the command ends as interrupted and closes the engine; a second Ctrl-C, or SIGTERM, ends the process at once, as
  // it would have, with the folder removed first. Taken from before open() makes the folder until close() removes it.
  let athena: LocalAthena | undefined;
  let interrupted: Interruption | undefined;
  let endOnceOpen: NodeJS.Signals | undefined;
  const endNow = (opened: LocalAthena, signal: NodeJS.Signals) => {
    opened.interrupt();
    fs.rmSync(opened.scratchDir, { recursive: true, force: true, maxRetries: 3 });
    // As bin/sluice.js ends a command that does not take the signal: its one line for a Ctrl-C, then by the signal,
    // which with no listener left ends the process before anything else runs.
    try {
      if (signal === 'SIGINT') fs.writeSync(2, 'sluice: interrupted (Ctrl-C)\n');
    } catch {
      // stderr's reader is gone: nothing to tell.
    }
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  };
  const end = (signal: NodeJS.Signals): void => {
    if (athena) endNow(athena, signal);
    else endOnceOpen = signal; // open() is making the folder: it ends once open() says where.
  };
  const stopTakingSignals = takeInterrupts((by) => {
    if (by.signal === 'SIGTERM' && !options.sigtermInterrupts) {
      end(by.signal);
      return;
    }
    interrupted = by;
    athena?.interrupt();
  }, end);
  try {
    athena = await LocalAthena.open(target.dataDir, target.config);
  } catch (err) {
    stopTakingSignals();
    throw err;
  }
  if (endOnceOpen) endNow(athena, endOnceOpen);
  const opened = athena;
  return {
    description: `DuckDB over ${lake}`,
    database: opened.database,
    async run(sql, { progress, maxRows }) {
      const started = performance.now();
      let result;
      const stopped = (by: Interruption) => new UserError(`interrupted (${by.label})`, by.exitCode);
      if (interrupted) throw stopped(interrupted);
      try {
        result = await progress.during(() => `DuckDB: running · ${Math.round((performance.now() - started) / 1000)} s`, opened.query(sql, { maxRows }));
        if (interrupted) throw stopped(interrupted);
      } catch (err) {
        if (interrupted) throw stopped(interrupted);
        const message = oneLine((err as Error).message);
        if (err instanceof QueryNotAllowedError) throw new QueryFailedError(message);
        // Athena reads S3 only; the twin's DuckDB reads the data bucket only (see LocalAthena).
        const outside = /^Permission Error:/.test(message) ? ` (queries read only the twin's lake under ${lake}: query its tables, e.g. FROM iot)` : '';
        throw new QueryFailedError(`DuckDB refused the query: ${message}${outside}`);
      }
      const truncated = maxRows !== undefined && result.rows.length > maxRows;
      return {
        columns: result.columns,
        columnTypes: result.columnTypes,
        rows: truncated ? result.rows.slice(0, maxRows) : result.rows,
        plan: result.plan,
        stats: {
          engine: 'duckdb',
          elapsedMs: result.elapsedMs,
          filesRead: result.filesRead,
          filesTotal: result.filesTotal,
          filesReadAtMost: result.filesReadAtMost,
          truncated,
        },
      };
    },
    async savedQueries() {
      return localSavedQueries(target);
    },
    close: () => {
      try {
        opened.close();
      } finally {
        stopTakingSignals();
      }
    },
  };
}

/**
 * DuckDB's message on one line, as every `sluice:` error is: `Parser Error: syntax error at or near
 * "SELEC" (LINE 1: SELEC 1)`. The caret line under the query text means nothing once joined.
 */
export function oneLine(message: string): string {
  const [first = '', ...rest] = message.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/^\^+$/.test(l));
  return rest.length > 0 ? `${first} (${rest.join('; ')})` : first;
}

/** The stack's saved queries, rendered from the same code that defines them in the stack. */
function localSavedQueries(target: LocalTarget): SavedQuery[] {
  // Loaded on demand: it brings in aws-cdk-lib, which other commands do not need.
  const { savedQueries } = require('../infra/athena-workspace') as typeof import('../infra/athena-workspace');
  const { loadModel } = require('../schema') as typeof import('../schema');
  const out: SavedQuery[] = [];
  for (const [pipeline, p] of Object.entries(target.config.pipelines)) {
    if (!p.destinations.includes('lake')) continue;
    const names = resourceNames(target.config, pipeline);
    const queries = savedQueries(names.glueDatabase, { model: loadModel(pipeline), tableName: names.glueTable, errorTableName: `${names.glueTable}_errors` });
    out.push(...queries.map((q) => ({ name: q.name, description: q.description, sql: q.sql, database: names.glueDatabase })));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// AWS: Athena

export interface AthenaPolling {
  /** First wait between GetQueryExecution calls; doubles up to maxMs. @default 300 */
  readonly initialMs?: number;
  /** @default 2000 */
  readonly maxMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Athena in the stack's workgroup. */
export async function athenaSqlEngine(target: AwsTarget, client: AthenaClient, polling: AthenaPolling = {}, options: SqlEngineOptions = {}): Promise<SqlEngine> {
  const outputs = await target.outputs();
  // Sluice names the workgroup and database itself (lib/config/names.ts); the stack's outputs, when present, win.
  const names = resourceNames(target.config, Object.keys(target.config.pipelines)[0]);
  const workGroup = outputs.get(OutputKeys.AthenaWorkGroupName) ?? names.athenaWorkGroup;
  const database = outputs.get(OutputKeys.GlueDatabaseName) ?? names.glueDatabase;
  const context = { service: 'Athena', resource: `workgroup ${workGroup}` };
  const pause = polling.sleep ?? sleep;
  return {
    description: `Athena workgroup ${workGroup} (${outputs.region})`,
    database,
    async run(sql, { progress, maxRows, database: db }) {
      const started = performance.now();
      let queryExecutionId: string | undefined;
      // Ctrl-C stops the query in Athena too, instead of leaving it to run (and bill) on its own, and ends the
      // command as interrupted (exit 130) at the next step: starting, polling or paging through results.
      let interrupted = false;
      // Whether Athena took the stop: waited for (a few seconds at most) before the command ends, so it says what happened.
      let stopping: Promise<boolean> | undefined;
      const stopQuery = (id: string) => {
        stopping ??= Promise.race([
          explained(context, () => client.send(new StopQueryExecutionCommand({ QueryExecutionId: id }))).then(() => true, () => false),
          new Promise<boolean>((resolve) => setTimeout(resolve, STOP_WAIT_MS, false).unref()),
        ]);
      };
      // Stops the query and says whether Athena took the stop.
      const stopAndSay = async (id: string): Promise<string> => {
        stopQuery(id);
        return (await stopping) ? `Athena query ${id} was stopped` : `Athena did not confirm stopping query ${id}; check it in the Athena console`;
      };
      let by = interruptionBy('SIGINT');
      const onInterrupt = (signal: NodeJS.Signals) => {
        if (!interrupted) by = interruptionBy(signal === 'SIGTERM' ? 'SIGTERM' : 'SIGINT');
        interrupted = true;
        if (queryExecutionId) stopQuery(queryExecutionId);
      };
      const endIfInterrupted = async () => {
        if (!interrupted) return;
        if (!queryExecutionId) throw new UserError(`interrupted (${by.label})`, by.exitCode);
        throw new UserError(`interrupted (${by.label}): ${await stopAndSay(queryExecutionId)}`, by.exitCode);
      };
      // Once: a second Ctrl-C ends the process at once, as Node does, should a call hang. SIGTERM stops the query as
      // Ctrl-C does when the command takes it so (put --verify).
      process.once('SIGINT', onInterrupt);
      if (options.sigtermInterrupts) process.once('SIGTERM', onInterrupt);
      try {
        let start;
        try {
          start = await client.send(new StartQueryExecutionCommand({
            QueryString: sql,
            WorkGroup: workGroup,
            QueryExecutionContext: { Database: db ?? database },
          }));
        } catch (err) {
          if ((err as { name?: string }).name === 'InvalidRequestException') throw new QueryFailedError(`Athena refused the query: ${(err as Error).message}`);
          throw explainFailure(err, context);
        }
        queryExecutionId = start.QueryExecutionId;
        if (!queryExecutionId) throw new Error('Athena StartQueryExecution returned no QueryExecutionId');
        // Ctrl-C while it was being started: it runs now, so it is stopped here.
        await endIfInterrupted();

        let wait = polling.initialMs ?? 300;
        let bytesScanned = 0;
        for (;;) {
          let q;
          try {
            ({ QueryExecution: q } = await explained(context, () => client.send(new GetQueryExecutionCommand({ QueryExecutionId: queryExecutionId }))));
          } catch (err) {
            // Polling failed for good (throttled past the retries, credentials expired): the query would run on in
            // Athena, scanning and billed, with nobody to read it. Stopped, and named either way.
            const why = err instanceof Error ? err : new Error(String(err));
            throw new UserError(`${why.message}; ${await stopAndSay(queryExecutionId)}`, why instanceof UserError ? why.exitCode : 1);
          }
          await endIfInterrupted();
          const state = q?.Status?.State ?? 'UNKNOWN';
          bytesScanned = q?.Statistics?.DataScannedInBytes ?? bytesScanned;
          if (state === 'SUCCEEDED') break;
          if (state === 'FAILED' || state === 'CANCELLED') {
            const reason = q?.Status?.AthenaError?.ErrorMessage ?? q?.Status?.StateChangeReason ?? 'no reason given';
            throw new QueryFailedError(`Athena query ${queryExecutionId} ${state.toLowerCase()}: ${reason}`);
          }
          progress.update(`Athena ${state.toLowerCase()} · ${Math.round((performance.now() - started) / 1000)} s · ${formatBytes(bytesScanned)} scanned · ${queryExecutionId}`);
          await pause(wait);
          await endIfInterrupted();
          wait = Math.min(wait * 2, polling.maxMs ?? 2000);
        }

        const columns: ColumnInfo[] = [];
        const rows: unknown[][] = [];
        let nextToken: string | undefined;
        let first = true;
        let truncated = false;
        do {
          const page = await explained(context, () => client.send(new GetQueryResultsCommand({ QueryExecutionId: queryExecutionId, NextToken: nextToken, MaxResults: 1000 })));
          await endIfInterrupted();
          if (first) columns.push(...(page.ResultSet?.ResultSetMetadata?.ColumnInfo ?? []));
          let data = page.ResultSet?.Rows ?? [];
          // For SELECT, Athena's first row repeats the column names.
          if (first && data.length > 0 && columns.length > 0 && data[0].Data?.every((d, i) => d.VarCharValue === columns[i]?.Name)) data = data.slice(1);
          first = false;
          for (const row of data) {
            if (maxRows !== undefined && rows.length >= maxRows) {
              truncated = true;
              break;
            }
            rows.push(columns.map((c, i) => athenaValue(row.Data?.[i]?.VarCharValue, c.Type)));
          }
          // Full at the page's end with more pages to come: those rows are past --max-rows, not worth a page to see.
          if (maxRows !== undefined && rows.length >= maxRows && page.NextToken) truncated = true;
          nextToken = truncated ? undefined : page.NextToken;
          progress.update(`Athena: fetched ${rows.length.toLocaleString('en-US')} rows`);
        } while (nextToken);
        return {
          columns: columns.map((c) => c.Name ?? ''),
          columnTypes: columns.map(athenaType),
          rows,
          stats: { engine: 'athena', elapsedMs: Math.round(performance.now() - started), bytesScanned, queryExecutionId, truncated },
        };
      } finally {
        process.removeListener('SIGINT', onInterrupt);
        process.removeListener('SIGTERM', onInterrupt);
      }
    },
    async savedQueries() {
      const ids: string[] = [];
      let nextToken: string | undefined;
      do {
        const page = await explained(context, () => client.send(new ListNamedQueriesCommand({ WorkGroup: workGroup, NextToken: nextToken, MaxResults: 50 })));
        ids.push(...(page.NamedQueryIds ?? []));
        nextToken = page.NextToken;
      } while (nextToken);
      const out: SavedQuery[] = [];
      for (let i = 0; i < ids.length; i += 50) {
        const batch = await explained(context, () => client.send(new BatchGetNamedQueryCommand({ NamedQueryIds: ids.slice(i, i + 50) })));
        for (const q of batch.NamedQueries ?? []) {
          if (q.Name && q.QueryString) out.push({ name: q.Name, description: q.Description, sql: q.QueryString, database: q.Database });
        }
      }
      return out.sort((a, b) => a.name.localeCompare(b.name));
    },
    close: () => client.destroy(),
  };
}

/** How long Ctrl-C waits for Athena to take the stop of a query before the command ends anyway. */
const STOP_WAIT_MS = 3000;

/** A result column's type as Athena names it in DDL: double, varchar, decimal(10,2) (its scale is a field of its own). */
function athenaType(column: ColumnInfo): string {
  const type = column.Type ?? '';
  return type.toLowerCase() === 'decimal' ? `${type}(${column.Precision ?? 38},${column.Scale ?? 0})` : type;
}

/** Athena returns every value as text; numbers and booleans become JSON numbers and booleans again. */
function athenaValue(text: string | undefined, type: string | undefined): unknown {
  if (text === undefined) return null;
  switch ((type ?? '').toLowerCase()) {
    case 'tinyint':
    case 'smallint':
    case 'integer':
    case 'int':
    case 'float':
    case 'real':
    case 'double':
    case 'decimal': {
      const n = Number(text);
      return Number.isFinite(n) ? n : text;
    }
    case 'bigint': {
      const n = Number(text);
      return Number.isSafeInteger(n) ? n : text;
    }
    case 'boolean':
      return text === 'true' ? true : text === 'false' ? false : text;
    default:
      return text;
  }
}

/** A saved query by name: exact, else case-insensitive, else the one name that contains the text. */
export function findSavedQuery(queries: readonly SavedQuery[], name: string): SavedQuery {
  const exact = queries.find((q) => q.name === name) ?? queries.find((q) => q.name.toLowerCase() === name.toLowerCase());
  if (exact) return exact;
  const partial = queries.filter((q) => q.name.toLowerCase().includes(name.toLowerCase()));
  if (partial.length === 1) return partial[0];
  const list = (partial.length > 1 ? partial : queries).map((q) => `  ${q.name}`).join('\n');
  if (queries.length === 0) throw new UserError('the stack has no saved queries');
  throw new UserError(`${partial.length > 1 ? `"${name}" matches ${partial.length} saved queries` : `no saved query named "${name}"`}; saved queries:\n${list}`);
}
