import type { Command } from 'commander';
import { awaitCallerCredentials } from './credentials';
import { readFileOrStdin } from './errors';
import { addProgressOption, addTargetOptions, examples, formatDuration, parseCount, type TargetFlags } from './options';
import { PRICES } from './prices';
import { displayRows, escapeControlCharactersInLines, formatBytes, formatTable, rowsToJson, toCsv, toJson, UserError } from './output';
import { sluiceCommand } from './invocation';
import { io, Progress } from './progress';
import { findSavedQuery, sqlEngineFor, type SqlResult, type SqlStats } from './sql';
import { resolveTarget } from './target';
import { MAX_EVENT_YEAR, MIN_EVENT_YEAR } from '../schema/model';

interface QueryFlags extends TargetFlags {
  readonly saved?: string;
  readonly listSaved?: boolean;
  readonly file?: string;
  readonly json?: boolean;
  readonly csv?: boolean;
  readonly maxRows?: string;
  readonly progress?: boolean;
}

export function registerQueryCommand(program: Command): void {
  const command = program
    .command('query')
    .description('run Athena SQL: DuckDB over the twin\'s Parquet locally, Athena in the stack\'s workgroup with --aws')
    .argument('[sql]', 'the query; the Glue database and table names work in both places (e.g. FROM sluice_dev.iot, or FROM iot)')
    .option('--saved <name>', 'run one of the stack\'s saved (named) queries, by name or a unique part of it')
    .option('--list-saved', 'list the saved queries')
    .option('-f, --file <file.sql>', 'read the query from a file ("-" for standard input)')
    .option('--json', 'print the rows as a JSON array of objects (statistics go to stderr)')
    .option('--csv', 'print the rows as CSV with a header line (statistics go to stderr)')
    .option('--max-rows <n>', 'stop after this many rows', '10000');
  addTargetOptions(command, { dataDir: true });
  addProgressOption(command);
  command.addHelpText('after', [
    examples(
      'sluice query "SELECT event_type, count(*) AS events FROM iot WHERE year = 2026 GROUP BY 1"',
      'sluice query "SELECT * FROM sluice_dev.clickstream WHERE year = 2026 AND month = 11 AND day = 22 LIMIT 10" --json | jq \'.[].page\'',
      'sluice query --list-saved',
      'sluice query --saved "iot: events per event_type per hour" --csv > today.csv',
      'sluice query --aws --stack sluice-prod "SELECT count(*) FROM transactions WHERE year = 2026 AND month = 11"',
    ),
    `\nFilter on year, month, day (and hour): on AWS, Athena otherwise projects every partition the table allows (years ${MIN_EVENT_YEAR}–${MAX_EVENT_YEAR}).`,
    '\nStatistics: files read of the scanned tables\' files (DuckDB: partition pruning at work; "at most" when a LIMIT stopped early) or bytes scanned (Athena: what the query costs).',
    'Exit status: 0 ok · 1 the engine refused or failed the query · 2 usage, configuration or environment problem',
  ].join('\n'));
  command.action(async (sqlArg: string | undefined, flags: QueryFlags) => {
    if (flags.json && flags.csv) throw new UserError('choose one of --json and --csv');
    const maxRows = parseCount(flags.maxRows ?? '10000', '--max-rows');
    const given = [sqlArg !== undefined, flags.saved !== undefined, flags.file !== undefined, flags.listSaved === true].filter(Boolean).length;
    if (given === 0) throw new UserError(`give a query: ${sluiceCommand()} query "SELECT …", --file query.sql, --saved NAME or --list-saved (see ${sluiceCommand()} query --help)`);
    if (given > 1) throw new UserError('give one of: a SQL argument, --file, --saved, --list-saved');

    // The query's own problems first: they are the user's to fix whatever the engine.
    const sqlGiven = sqlArg ?? (flags.file !== undefined ? await readFileOrStdin('--file', flags.file) : undefined);
    if (sqlGiven !== undefined && sqlGiven.trim() === '') throw new UserError(flags.file !== undefined ? `--file ${flags.file} holds no query` : 'the query is empty');

    const target = resolveTarget(flags);
    // Athena's and CloudFormation's requests are signed with the caller's credentials: a source that hangs is named.
    if (target.kind === 'aws') await awaitCallerCredentials(target.credentials, { signing: 'every request of the query' });
    const engine = await sqlEngineFor(target);
    try {
      if (flags.listSaved) {
        const saved = await engine.savedQueries();
        if (flags.json) io.out(toJson(saved));
        else io.out(formatTable(['name', 'description'], saved.map((q) => [q.name, q.description ?? ''])));
        return;
      }
      let sql: string;
      let database: string | undefined;
      if (flags.saved !== undefined) {
        const query = findSavedQuery(await engine.savedQueries(), flags.saved);
        sql = query.sql;
        database = query.database;
        if (!flags.json && !flags.csv) io.err(`-- ${query.name}\n${sql}\n`);
      } else {
        // Checked above: not empty.
        sql = sqlGiven as string;
      }

      const progress = new Progress({ forced: flags.progress });
      let result: SqlResult;
      try {
        result = await engine.run(sql, { progress, maxRows, database });
      } finally {
        progress.done();
      }
      printResult(result, flags);
    } finally {
      engine.close();
    }
  });
}

function printResult(result: SqlResult, flags: QueryFlags): void {
  const footer = describeStats(result.rows.length, result.stats);
  if (flags.json) {
    io.out(rowsToJson(result.columns, result.rows));
    io.err(footer);
  } else if (flags.csv) {
    io.out(toCsv(result.columns, result.rows));
    io.err(footer);
  } else if (result.plan) {
    // DuckDB's drawing of the plan, line by line as it lays it out (a table cell would show its newlines as \u000a).
    io.out(result.rows.map((row) => escapeControlCharactersInLines(String(row[row.length - 1]).trimEnd())).join('\n\n'));
    io.out(`\n${footer}`);
  } else {
    if (result.columns.length > 0) io.out(formatTable(result.columns, displayRows(result.columnTypes, result.rows)));
    io.out(`\n${footer}`);
  }
}

/**
 * "3 rows · read 2 of 8 Parquet files · 41 ms" / "1 row · read at most 8 of 23 Parquet files (a LIMIT stops
 * reading early) · 12 ms" / "3 rows · scanned 1.2 MiB (≈ $0.000006) · 2.3 s".
 */
export function describeStats(rowCount: number, stats: SqlStats): string {
  // Locally DuckDB streams: a result cut off was not computed past its rows, so an error further on is not seen.
  const cut = stats.engine === 'duckdb' ? ' (stopped at --max-rows; the query did not run past them)' : ' (stopped at --max-rows)';
  const parts = [`${rowCount.toLocaleString('en-US')} row${rowCount === 1 ? '' : 's'}${stats.truncated ? cut : ''}`];
  // A query that scanned no table's Parquet (the _errors tables' JSON, SELECT 1, EXPLAIN) has no files to count.
  if (stats.engine === 'duckdb' && (stats.filesTotal ?? 0) > 0) {
    // DuckDB counts only the files a LIMIT let it read to the end, so then only a bound is true.
    parts.push(stats.filesReadAtMost !== undefined
      ? `read at most ${stats.filesReadAtMost} of ${stats.filesTotal ?? 0} Parquet files (a LIMIT stops reading early)`
      : `read ${stats.filesRead ?? 0} of ${stats.filesTotal ?? 0} Parquet files`);
  } else if (stats.engine === 'athena') {
    const bytes = stats.bytesScanned ?? 0;
    // Athena bills at least 10 MB per query.
    const billed = Math.max(bytes, 10 * 1000 * 1000);
    parts.push(`scanned ${formatBytes(bytes)} (≈ $${(billed / 1e12 * PRICES.athenaPerTBScanned.usd).toFixed(6)} at $${PRICES.athenaPerTBScanned.usd}/TB, 10 MB minimum)`);
    if (stats.queryExecutionId) parts.push(`query ${stats.queryExecutionId}`);
  }
  parts.push(formatDuration(stats.elapsedMs));
  return parts.join(' · ');
}
