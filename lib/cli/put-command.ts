import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tty from 'node:tty';
import type { Command } from 'commander';
import { resourceNames } from '../config';
import { openSearchOrigin, sameOpenSearchOrigin } from '../local/twin-record';
import { readSchema } from '../schema';
import { createRng, sampleRecord, type Rng } from '../schema/sample';
import { analyzeRecord, describeFailure, failureReason, pipelineSchema, type PipelineSchema } from '../../transforms/shared';
import { addProgressOption, addTargetOptions, drawSample, examples, formatDuration, parseCount, parseDuration, parseRate, requireGeneratedCode, requirePipeline, type TargetFlags } from './options';
import { escapeControlCharacters, formatNumber, INTERRUPTED_EXIT_CODE, toJson, UserError } from './output';
import { STOPPING_NOTE_MS, takeInterrupts, type Interruption } from './interrupt';
import { sluiceCommand } from './invocation';
import { io, Progress } from './progress';
import { awaitCallerCredentials } from './credentials';
import { networkErrorCode, unreadableFile } from './errors';
import { isPermanentRecordError, MAYBE_TAKEN, NOT_SENT, sendRecords, summarizeFailures, type EntryPoint, type OutgoingRecord, type RecordOutcome, type SendResult } from './record-sender';
import { searchBackendFor } from './search-backend';
import { sqlEngineFor } from './sql';
import { checkTwinTakesRecords, displayPath, entryPointFor, localUpCommand, resolveTarget, sameTargetFlags, staleTwinSchemas, twinAt, twinBufferIntervalSeconds, type LocalTarget, type Target } from './target';
import { commandDeadline, sleep, untilAborted } from './sleep';
import { defaultVerifyTimeoutMs, verifyBulkFiles, verifyLake, verifySearch, type ExpectedRecord, type VerifyResult, type WaitOptions } from './verify';

interface PutFlags extends TargetFlags {
  readonly count?: string;
  readonly duration?: string;
  readonly rate?: string;
  readonly file?: string;
  readonly seed?: string;
  readonly batchSize: string;
  readonly maxAttempts: string;
  readonly outageWait?: string;
  readonly verify?: boolean;
  readonly timeout?: string;
  readonly poll?: string;
  readonly json?: boolean;
  readonly progress?: boolean;
}

/** A record ready to send, with what the transform will make of it. */
interface PreparedRecord extends OutgoingRecord {
  /** Set when the record passes the schema: it should become a Parquet row (and a document). */
  readonly expected?: ExpectedRecord;
  /** Why the transform will fail it, when it will. */
  readonly failure?: string;
  /** The --file line it was read from (1-based, blank lines counted): what the summary names for a record to fix or send again. */
  readonly line?: number;
}

const DEFAULT_COUNT = 10;
/** Reasons a file's records will fail the transform, listed on the terminal (the most frequent first). */
const MAX_REASONS_SHOWN = 5;
/** Characters of an entry point's error message shown after its code. */
const MAX_MESSAGE_SHOWN = 300;
/** --file line numbers listed on the terminal under each code and reason (--json lists them all). */
const MAX_LINES_SHOWN = 10;
const DEFAULT_DURATION_RATE = 100;

export function registerPutCommand(program: Command): void {
  const command = program
    .command('put')
    .description('send records through a pipeline\'s real entry point (the smoke test; with --rate/--duration a steady load), then optionally wait until they are queryable')
    .argument('<pipeline>', 'a configured pipeline (cdk.json context "pipelines")')
    .option('-n, --count <n>', `records to send (default ${DEFAULT_COUNT}; all lines with --file; unlimited with --duration)`)
    .option('-d, --duration <time>', 'keep sending for this long: 30s, 5m, 1h')
    .option('-r, --rate <records/s>', `send at this steady rate: 50, 50/s, 2k/s, 600/min (default: as fast as accepted; ${DEFAULT_DURATION_RATE}/s with --duration)`)
    .option('-f, --file <records.ndjson>', 'send these records, one JSON object per line ("-" for standard input), instead of generated ones')
    .option('--seed <n>', 'seed for generated records (same seed, same records apart from their times)')
    .option('--batch-size <n>', 'records per API call, 1–500 (PutRecord when a call carries one record to Firehose)', '500')
    .option('--max-attempts <n>', 'attempts per record before giving up on it (backoff with jitter between)', '8')
    .option('--outage-wait <time>', `once records were accepted, how long to wait for an endpoint that stops answering to answer again (the twin restarts kinesis-mock in seconds) before stopping (default ${DEFAULT_OUTAGE_WAIT_MS / 1000}s; 0 stops at once)`)
    .option('--verify', 'wait until the records are queryable: Parquet rows through Athena/DuckDB, documents through OpenSearch')
    .option('--timeout <time>', 'with --verify, how long to wait (default 60s locally, more for a local.bufferIntervalSeconds over 20 s; on AWS 1.5 × (the longest buffer interval of its deliveries + the transform\'s processor interval) + 3m); with --aws, also for your AWS credentials before the first record')
    .option('--poll <time>', 'with --verify, time between checks (default 1s locally, 20s on AWS)')
    .option('--json', 'print the outcome as JSON');
  addTargetOptions(command, { dataDir: true, firehose: true, kinesis: true, opensearch: true });
  addProgressOption(command);
  command.addHelpText('after', [
    examples(
      'sluice put app-events --verify',
      'sluice put iot --count 1000 --verify --timeout 2m',
      'sluice put clickstream --rate 200/s --duration 10m --progress',
      'sluice put transactions --file payments.ndjson --verify --json',
      'sluice put app-events --aws --stack sluice-prod --count 5 --verify',
    ),
    '\nDirectPut pipelines receive Firehose PutRecord/PutRecordBatch; Kinesis-sourced ones Kinesis PutRecords (partition key: the',
    'record\'s entity, else its id). Records a call fails are retried with exponential backoff; --verify counts the event ids sent, in rows and documents that arrived since the put started.',
    'Exit status: 0 all accepted (and queryable with --verify) · 1 records not accepted, or not queryable in time · 2 usage, configuration or environment problem',
    '  · 130 interrupted (Ctrl-C; 143 for SIGTERM): sending stopped; what was sent is reported (and verified; Ctrl-C while verifying ends the wait, unverified)',
  ].join('\n'));
  command.action(async (pipeline: string, flags: PutFlags) => {
    await put(pipeline, flags);
  });
}

async function put(pipeline: string, flags: PutFlags): Promise<void> {
  const batchSize = parseCount(flags.batchSize, '--batch-size', 1, 500);
  const maxAttempts = parseCount(flags.maxAttempts, '--max-attempts', 1, 100);
  const outageWaitMs = flags.outageWait !== undefined ? parseDuration(flags.outageWait, '--outage-wait', { zero: true }) : DEFAULT_OUTAGE_WAIT_MS;
  const durationMs = flags.duration !== undefined ? parseDuration(flags.duration, '--duration') : undefined;
  if (flags.file !== undefined && durationMs !== undefined) throw new UserError('--duration generates records; with --file, pace the file with --rate instead');
  const rate = flags.rate !== undefined ? parseRate(flags.rate, '--rate') : durationMs !== undefined ? DEFAULT_DURATION_RATE : undefined;
  const count = flags.count !== undefined ? parseCount(flags.count, '--count') : flags.file !== undefined || durationMs !== undefined ? Number.POSITIVE_INFINITY : DEFAULT_COUNT;
  if (!flags.verify && (flags.timeout !== undefined || flags.poll !== undefined)) throw new UserError('--timeout and --poll apply to --verify');

  const target = resolveTarget(flags);
  const pipelineConfig = requirePipeline(target.config, pipeline);
  // The records are drawn, and judged before they are sent, with the generated validator: one of an older schema would
  // leave out what the schema has added since. They are drawn from the schema file as this check read it.
  const jsonSchema = requireGeneratedCode([pipeline]).get(pipeline);
  if (target.kind === 'local') checkTwinSchema(target, pipeline);
  let schema: PipelineSchema;
  try {
    schema = pipelineSchema(pipeline);
  } catch (err) {
    throw new UserError((err as Error).message);
  }
  const timeoutMs = flags.timeout !== undefined ? parseDuration(flags.timeout, '--timeout')
    // Locally, the interval the twin delivers with: `local up --buffer-interval` may have set another than the configuration's.
    : defaultVerifyTimeoutMs(target.kind, target.config, pipeline, target.kind === 'local' ? twinBufferIntervalSeconds(target) : undefined);
  const pollMs = flags.poll !== undefined ? parseDuration(flags.poll, '--poll') : target.kind === 'local' ? 1000 : 20_000;
  const source = flags.file !== undefined ? await fileSource(flags.file, schema) : generatedSource(schema, flags.seed !== undefined ? parseCount(flags.seed, '--seed', 0) : Date.now(), jsonSchema);

  let entry: EntryPoint;
  try {
    // Every request of the put (CloudFormation's, the entry point's, the verify's) is signed with the caller's
    // credentials: a source that hangs is named. With --verify the command has a deadline, --timeout, and it bounds this
    // wait too; without, the wait goes on as the user lets it (see awaitCallerCredentials).
    if (target.kind === 'aws') {
      await awaitCallerCredentials(target.credentials, { signing: 'every request of the put', deadline: flags.verify ? commandDeadline(timeoutMs) : undefined });
    }
    entry = await entryPointFor(target, pipeline);
  } catch (err) {
    source.close();
    throw err;
  }
  const progress = new Progress({ forced: flags.progress });
  let report: SendReport;
  try {
    if (target.kind === 'local') await checkTwinTakesRecords(target, entry, pipeline);
    if (flags.verify && target.kind === 'local' && pipelineConfig.destinations.includes('search')) await checkSearchVerifiable(target, pipeline, timeoutMs);
    report = await sendAll(entry, source, { count, rate, durationMs, batchSize, maxAttempts, outageWaitMs, progress });
  } finally {
    progress.done();
    entry.close();
    source.close();
  }

  const stopped = report.stopped ?? report.unreadable?.message;
  const blankLines = source.blankLines();
  const summary: Record<string, unknown> = {
    pipeline,
    target: target.label,
    entryPoint: { kind: entry.kind, name: entry.name },
    sent: report.sent,
    accepted: report.accepted,
    failed: report.sent - report.accepted,
    failedByCode: report.failedByCode,
    firstMessageByCode: report.firstMessageByCode,
    // Every line number of a --file: a number per record sent, small beside the records themselves.
    ...(flags.file !== undefined ? { failedLinesByCode: report.failedLinesByCode } : {}),
    retried: report.retries,
    willFailValidation: report.invalid,
    willFailValidationByReason: report.invalidByReason,
    ...(flags.file !== undefined ? { willFailValidationLinesByReason: report.invalidLinesByReason } : {}),
    elapsedMs: report.elapsedMs,
    ...(blankLines !== undefined ? { blankLinesSkipped: blankLines } : {}),
    ...(stopped ? { stopped } : {}),
    ...(report.neverSent !== undefined ? { neverSent: report.neverSent } : {}),
    ...(report.interrupted ? { interrupted: true } : {}),
    ...(report.expectedRecords > report.expected.size ? { distinctIds: report.expected.size } : {}),
    recordsPerSecond: Math.round((report.accepted / Math.max(report.elapsedMs, 1)) * 1000 * 10) / 10,
  };
  if (!flags.json) {
    io.out(`${pipeline}: ${formatNumber(report.sent)} record${report.sent === 1 ? '' : 's'} → ${entry.description} (${escapeControlCharacters(target.label)})`);
    if (blankLines) {
      const from = flags.file === '-' ? 'standard input' : `--file ${escapeControlCharacters(flags.file ?? '')}`;
      io.out(`  skipped ${formatNumber(blankLines)} blank line${blankLines === 1 ? '' : 's'} of ${from} (whitespace only, not sent)`);
    }
    io.out(`  accepted ${formatNumber(report.accepted)} · failed ${formatNumber(report.sent - report.accepted)} · retried ${formatNumber(report.retries)} · ${formatDuration(report.elapsedMs)} (${formatNumber(summary.recordsPerSecond as number)} records/s)`);
    if (report.expectedRecords > report.expected.size) {
      // A generated id drawn from the field's examples, or a file that repeats ids: each id is one record to verify.
      const idField = escapeControlCharacters(schema.model.extensions.idField);
      io.out(`  note: the ${formatNumber(report.expectedRecords)} records that pass the schema carry ${formatNumber(report.expected.size)} distinct ${idField} values `
        + `(from the field's examples, or repeated in the input)${flags.verify ? '; --verify looks for each once' : ''}`);
    }
    for (const [code, n] of Object.entries(report.failedByCode)) {
      const said = report.firstMessageByCode[code] ?? '';
      const first = said === '' ? '' : ` (first: ${escapeControlCharacters(said.length > MAX_MESSAGE_SHOWN ? `${said.slice(0, MAX_MESSAGE_SHOWN)}…` : said)})`;
      io.out(`  not accepted: ${escapeControlCharacters(code)} ×${formatNumber(n)}${first}`);
      const lines = report.failedLinesByCode[code];
      if (lines) io.out(`    ${linesClause(lines)}`);
    }
    if (report.invalid > 0) {
      io.out(`  ${formatNumber(report.invalid)} record${report.invalid === 1 ? '' : 's'} will fail the transform and go to the dead-letter queue (\`${escapeControlCharacters(`${sluiceCommand()} replay${sameTargetFlags(target, flags)}`)}\`):`);
      const reasons = Object.entries(report.invalidByReason).sort((a, b) => b[1] - a[1]);
      for (const [reason, n] of reasons.slice(0, MAX_REASONS_SHOWN)) {
        io.out(`    ×${n}  ${escapeControlCharacters(reason)}`);
        const lines = report.invalidLinesByReason[reason];
        // Under the reason, not after it: a reason can be long, and the numbers are what the reader looks for.
        if (lines) io.out(`${' '.repeat(`    ×${n}  `.length)}${linesClause(lines)}`);
      }
      const hidden = reasons.slice(MAX_REASONS_SHOWN);
      if (hidden.length > 0) {
        const records = hidden.reduce((sum, [, n]) => sum + n, 0);
        io.out(`    … and ${formatNumber(records)} more record${records === 1 ? '' : 's'} for ${formatNumber(hidden.length)} other reason${hidden.length === 1 ? '' : 's'} (--json lists every reason)`);
      }
    }
  }

  let verification: VerifyResult[] = [];
  let verifyInterruption: Interruption | undefined;
  if (stopped) {
    // Sending ended early: the pipeline's endpoint is gone (verifying would only wait out the timeout), or the input
    // could not be read on (the run fails for it all the same). The summary says what was sent until then.
    if (flags.json) io.out(toJson(summary));
    throw report.unreadable ?? stoppedError(report, count, flags.file, target);
  }
  // Verifying itself failing (Athena failing the query, OpenSearch refusing it): the records were sent all the same, and
  // the summary (with --json, the JSON) says so before the reason.
  let verifyError: Error | undefined;
  if (flags.verify && report.accepted > 0) {
    try {
      // A Ctrl-C during the last call found nothing left to send: it ends the wait before it starts, as it would a moment later.
      ({ results: verification, interruption: verifyInterruption } = report.interruptedLastCall && report.expected.size > 0
        ? { results: [], interruption: report.interruption }
        : await verifyAll(target, pipeline, schema, [...report.expected.values()], {
          timeoutMs, pollMs, progress: new Progress({ forced: flags.progress }), startedAt: report.startedAt, startedAtMonotonic: report.startedAtMonotonic, json: flags.json === true,
          clockToleranceMs: target.kind === 'local' ? LOCAL_CLOCK_TOLERANCE_MS : AWS_CLOCK_TOLERANCE_MS,
        }));
    } catch (err) {
      // A destination verified before the one that failed keeps its result.
      const cause = err instanceof VerifyCutShort ? err.cause : err;
      if (err instanceof VerifyCutShort) verification = err.results;
      verifyError = cause instanceof Error ? cause : new Error(String(cause));
    }
  }
  if (verifyError !== undefined) {
    summary.verify = { passed: false, error: verifyError.message, timeoutMs, results: verification };
    if (flags.json) io.out(toJson(summary));
    else printVerifyLines(verification, undefined);
    const refused = report.sent > report.accepted ? ` (${formatNumber(report.sent - report.accepted)} not accepted)` : '';
    // What was verified before verifying failed, passed or not: `verify lake (…): 3/5; `.
    const before = verification.map((v) => `verify ${v.where}: ${formatNumber(v.found)}/${formatNumber(v.expected)}; `).join('');
    const accepted = `${formatNumber(report.accepted)} of ${formatNumber(report.sent)} records accepted${refused}; ${before}verify could not run: ${verifyError.message}`;
    // Interrupted first, the run's status is the signal's, as without --verify, and the message says both.
    if (report.interrupted) throw interruptedError(report, count, durationMs, accepted);
    throw new UserError(accepted, verifyError instanceof UserError ? verifyError.exitCode : 1);
  }
  const verified = verification.every((v) => v.passed);
  // Records sent and none to verify (refused, or every one failing the transform) is no pass; when none was refused,
  // it is what fails the run: no record can become queryable.
  const nothingToVerify = report.sent > 0 && report.expected.size === 0;
  const nothingQueryable = nothingToVerify && report.sent === report.accepted;
  // Ctrl-C while verifying ends the run with exit 130 (SIGTERM 143), whatever else it found: what was sent, and that it was not verified.
  const verifyInterrupted = verifyInterruption
    ? new UserError(verifyInterruptedMessage(report, count, durationMs, verification, verifyInterruption), verifyInterruption.exitCode)
    : undefined;
  if (flags.verify) summary.verify = { passed: verified && !nothingToVerify && !verifyInterrupted, ...(verifyInterrupted ? { interrupted: true } : {}), timeoutMs, results: verification };

  if (flags.json) io.out(toJson(summary));
  else if (flags.verify) {
    printVerifyLines(verification, verifyInterruption);
    const expectedCount = report.expected.size;
    // Not a PASS when records were refused (the run fails for them just below), nor for an interrupted run.
    const pass = report.sent === report.accepted && !report.interrupted;
    // Interrupted while verifying: neither PASS nor FAIL; the message below says what was sent and that it was not verified.
    if (verifyInterrupted) throw verifyInterrupted;
    if (expectedCount === 0) io.out(`${nothingQueryable ? 'FAIL:' : 'verify:'} nothing to verify (no record accepted that passes the schema)`);
    else if (verified && report.interrupted) io.out(`verified: ${formatNumber(expectedCount)} of ${formatNumber(expectedCount)} records sent before ${report.interruption?.label ?? 'Ctrl-C'} queryable after ${formatDuration(verifyElapsedMs(verification))}`);
    else if (verified && !pass) io.out(`verified: ${formatNumber(expectedCount)} of ${formatNumber(expectedCount)} accepted records queryable after ${formatDuration(verifyElapsedMs(verification))}; ${formatNumber(report.sent - report.accepted)} of ${formatNumber(report.sent)} records not accepted`);
    else if (verified) io.out(`PASS: ${formatNumber(expectedCount)} of ${formatNumber(expectedCount)} records queryable after ${formatDuration(verifyElapsedMs(verification))}`);
    else io.out(`FAIL: not every record became queryable after ${formatDuration(verifyElapsedMs(verification))} (--timeout ${formatDuration(timeoutMs)})`);
  }

  if (verifyInterrupted) throw verifyInterrupted;
  const notAccepted = report.sent - report.accepted;
  if (notAccepted > 0) {
    const refused = `${formatNumber(notAccepted)} of ${formatNumber(report.sent)} records ${whyNotAccepted(report.failedByCode, maxAttempts)}`;
    // Interrupted, the run's status is the signal's (a script tells a stop it asked for from a failure), and the message says both.
    if (report.interrupted) throw interruptedError(report, count, durationMs, refused);
    throw new UserError(refused, 1);
  }
  if (flags.verify && nothingQueryable) {
    const records = report.sent === 1 ? 'the one record sent, which goes' : `all ${formatNumber(report.sent)} records sent, which go`;
    throw new UserError(`--verify has nothing to wait for: the transform will fail ${records} to the dead-letter queue (the summary says why)`, 1);
  }
  if (!verified) {
    const failed = verification.filter((v) => !v.passed).map((v) => `${v.where}: ${v.found}/${v.expected}`).join('; ');
    const before = verification.some((v) => v.arrivedBefore) ? ` Some missing ids are there from before this put: ${ARRIVED_BEFORE_HINT}.` : '';
    throw new UserError(`verify failed after ${formatDuration(verifyElapsedMs(verification))} (--timeout ${formatDuration(timeoutMs)}): ${failed}. Records may still be buffered (raise --timeout), or failed in the pipeline: see \`${escapeControlCharacters(`${sluiceCommand()} replay --dry-run${sameTargetFlags(target, flags)}`)}\`.${before}`, 1);
  }
  if (report.interrupted) throw interruptedError(report, count, durationMs);
}

/** How long `put --verify` waits for an OpenSearch to answer its probe before it sends (less when --timeout is shorter). */
const SEARCH_PROBE_TIMEOUT_MS = 10_000;

/**
 * Before a local `put --verify` sends anything: the search documents are looked for where the twin puts them. A twin
 * started without OPENSEARCH_URL writes its _bulk bodies under <data-dir>/opensearch/, one started with it indexes
 * there: an OPENSEARCH_URL (or --endpoint-opensearch) here that says otherwise would wait out --timeout on documents
 * that never come (http://localhost:9200 and http://127.0.0.1:9200 say the same). An OpenSearch to ask is asked once
 * (a search that matches nothing) so that one that does not answer fails the put with nothing sent, as a Firehose
 * endpoint that does not answer does.
 */
async function checkSearchVerifiable(target: LocalTarget, pipeline: string, timeoutMs: number): Promise<void> {
  const record = target.runningTwin();
  const here = target.endpoints.openSearch !== undefined ? openSearchOrigin(target.endpoints.openSearch) : undefined;
  const twins = record?.endpoints.openSearch;
  if (twins !== undefined) {
    const dir = displayPath(target.dataDir);
    if (twins === null && here !== undefined) {
      throw new UserError(`the twin on data dir ${dir} writes ${pipeline}'s search documents to _bulk files under ${displayPath(path.join(target.dataDir, 'opensearch'))} (it was started without OPENSEARCH_URL), so --verify would not find them at ${here}: nothing was sent. `
        + `Unset OPENSEARCH_URL and --endpoint-opensearch to verify from those files, or restart the twin with OPENSEARCH_URL=${here}`);
    }
    if (twins !== null && (here === undefined || !sameOpenSearchOrigin(twins, here))) {
      throw new UserError(`the twin on data dir ${dir} indexes ${pipeline}'s search documents into OpenSearch at ${twins}${here !== undefined ? `, not ${here}` : ''}: nothing was sent. `
        + `Pass OPENSEARCH_URL=${twins} (or --endpoint-opensearch ${twins}) so --verify looks there`);
    }
  }
  if (here === undefined) return;
  const backend = await searchBackendFor(target);
  if (!backend) return;
  const probeMs = Math.min(timeoutMs, SEARCH_PROBE_TIMEOUT_MS);
  const probe = AbortSignal.timeout(probeMs);
  try {
    await backend.search(`${resourceNames(target.config, pipeline).indexPrefix}-*`, { size: 0, query: { match_none: {} } }, probe);
  } catch (err) {
    if (probe.aborted && err === probe.reason) throw new UserError(`${backend.description} did not answer within ${formatDuration(probeMs)}: nothing was sent; is it running there?`);
    if (err instanceof UserError) throw new UserError(`${err.message}: nothing was sent`, err.exitCode);
    throw err;
  } finally {
    await backend.close();
  }
}

/**
 * The twin runs the pipelines configured when it started, and validates with the generated code it loaded then: a
 * pipeline added to cdk.json since has no stream there, and after `npm run generate` it still judges records
 * by the schema before, so records of the schema now (a new field) would go to its dead-letter queue. Refused, nothing
 * sent, as `sluice replay` refuses.
 */
function checkTwinSchema(target: LocalTarget, pipeline: string): void {
  const twin = target.runningTwin();
  if (twin && !twin.schemas[pipeline]) {
    throw new UserError(`${twinAt(target, twin)} was started without ${pipeline} (its pipelines: ${Object.keys(twin.schemas).join(', ')}): nothing was sent. `
      + `Restart it (\`${escapeControlCharacters(localUpCommand(target.dataDir))}\`) to run the configuration as it is now`);
  }
  const stale = staleTwinSchemas(target, [pipeline]);
  if (stale !== undefined) {
    throw new UserError(`${stale}, so records of the schema now could fail there: nothing was sent. Restart the twin (\`${escapeControlCharacters(localUpCommand(target.dataDir))}\`) to run the schema as it is now`);
  }
}

/**
 * The error that ends a run whose endpoint stopped answering, after the summary: what was never sent, and what the
 * stream may hold all the same.
 */
function stoppedError(report: SendReport, count: number, file: string | undefined, target: Target): UserError {
  const maybeTaken = report.failedByCode[MAYBE_TAKEN] ?? 0;
  const unsure = maybeTaken > 0
    ? ` ${formatNumber(maybeTaken)} of the records not accepted (${MAYBE_TAKEN}) were in calls cut off after they were sent: the stream may have taken them, so sending them again may duplicate them (event ids tell copies apart).`
    : '';
  // The twin is the usual endpoint to go away; on AWS the reason (credentials, access) says what to fix.
  const check = target.kind === 'local' ? 'check the endpoint (is the twin still running?) and send again' : 'fix what stopped it and send again';
  return new UserError(`${report.stopped}${neverSentClause(report.neverSent, count, file)}. The summary counts what was sent until then; ${check}.${unsure}`, 1);
}

/**
 * "; 4,000 of the 5,000 records were never sent"; for a --file, "; 600 more records of --file a.ndjson were never
 * sent", or, from a pipe not read to its end, that how many is not known; nothing when none were left.
 */
function neverSentClause(neverSent: number | undefined, count: number, file: string | undefined): string {
  const from = file === '-' ? 'standard input' : `--file ${file}`;
  if (file !== undefined && neverSent === undefined) return `; the rest of ${from} was never sent (how many records, if any, is not known without reading it to its end)`;
  if (!neverSent) return '';
  if (file === undefined) return `; ${formatNumber(neverSent)} of the ${formatNumber(count)} records were never sent`;
  return `; ${formatNumber(neverSent)} more ${neverSent === 1 ? 'record' : 'records'} of ${from} ${neverSent === 1 ? 'was' : 'were'} never sent`;
}

/** The error of an interrupted run: its status the signal's (130, 143 for SIGTERM), the interruption said first, then `also`. */
function interruptedError(report: SendReport, count: number, durationMs: number | undefined, also?: string): UserError {
  const message = interruptedMessage(report, count, durationMs);
  return new UserError(also === undefined ? message : `${message}; ${also}`, report.interruption?.exitCode ?? INTERRUPTED_EXIT_CODE);
}

/** "interrupted (Ctrl-C) after 3.3 s of 30 s: 164 records sent"; "… after 3.3 s: 164 of 1,000 records sent" */
function interruptedMessage(report: SendReport, count: number, durationMs: number | undefined): string {
  const of = durationMs !== undefined ? ` of ${formatDuration(durationMs)}` : '';
  const sent = Number.isFinite(count) ? `${formatNumber(report.sent)} of ${formatNumber(count)}` : formatNumber(report.sent);
  return `interrupted (${report.interruption?.label ?? 'Ctrl-C'}) after ${formatDuration(report.elapsedMs)}${of}: ${sent} record${report.sent === 1 && !Number.isFinite(count) ? '' : 's'} sent`;
}

/**
 * "interrupted (Ctrl-C) while verifying, after 2.1 s: 5 records sent, 5 accepted, not verified (queryable so far: 3/5 in
 * lake (sluice_dev.iot))"; "… during the last call, …" for a Ctrl-C that came with nothing left to send (no check was
 * made); after a run Ctrl-C interrupted already, its own message first. The time is the verify lines'
 * (from the first record sent to when Ctrl-C stopped the wait), so the two say one number.
 */
function verifyInterruptedMessage(report: SendReport, count: number, durationMs: number | undefined, verification: readonly VerifyResult[], by: Interruption): string {
  const verifyingMs = verification.length > 0 ? verifyElapsedMs(verification) : performance.now() - report.startedAtMonotonic;
  const found = verification.map((v) => `${formatNumber(v.found)}/${formatNumber(v.expected)} in ${v.where}`).join('; ');
  const notVerified = `not verified${found ? ` (queryable so far: ${found})` : ''}`;
  if (report.interrupted) {
    const again = by.signal === report.interruption?.signal ? ' again' : '';
    return `${interruptedMessage(report, count, durationMs)}, ${formatNumber(report.accepted)} accepted; ${by.label}${again} while verifying them, after ${formatDuration(verifyingMs)}: ${notVerified}`;
  }
  const when = report.interruptedLastCall ? 'during the last call' : 'while verifying';
  return `interrupted (${by.label}) ${when}, after ${formatDuration(verifyingMs)}: ${formatNumber(report.sent)} record${report.sent === 1 ? '' : 's'} sent, ${formatNumber(report.accepted)} accepted, ${notVerified}`;
}

/** How long verifying took, from the first record sent to the last check. */
function verifyElapsedMs(verification: readonly VerifyResult[]): number {
  return Math.max(0, ...verification.map((v) => v.elapsedMs));
}

/**
 * What became of the records not accepted, after "3 of 10 records": "were not accepted after 8 attempts
 * (ServiceUnavailableException ×3)"; records with a code no retry fixes were given up on at once: "were
 * refused for good, so not retried (RecordTooLarge ×1)"; records whose call was cut off after it was sent
 * (MaybeTaken) may be in the stream all the same; more than one of these, each with its count.
 */
function whyNotAccepted(failedByCode: Record<string, number>, maxAttempts: number): string {
  const list = (codes: Array<[string, number]>) => codes.map(([c, n]) => `${c} ×${formatNumber(n)}`).join(', ');
  const total = (codes: Array<[string, number]>) => formatNumber(codes.reduce((sum, [, n]) => sum + n, 0));
  const codes = Object.entries(failedByCode);
  const maybeTaken = codes.filter(([c]) => c === MAYBE_TAKEN);
  const retried = codes.filter(([c]) => c !== MAYBE_TAKEN && !isPermanentRecordError(c));
  const permanent = codes.filter(([c]) => isPermanentRecordError(c));
  const kinds: Array<[Array<[string, number]>, string, string]> = [
    [retried, `after ${maxAttempts} attempt${maxAttempts === 1 ? '' : 's'} (${list(retried)})`, 'not accepted '],
    [permanent, `refused for good, so not retried (${list(permanent)})`, ''],
    [maybeTaken, `in calls cut off after they were sent (${list(maybeTaken)}): the stream may have taken them, so sending them again may duplicate them (event ids tell copies apart)`, ''],
  ];
  const given = kinds.filter(([c]) => c.length > 0);
  if (given.length === 1) return `were ${given[0][2]}${given[0][1]}`;
  return `were not accepted: ${given.map(([c, what]) => `${total(c)} ${what}`).join('; ')}`;
}

/**
 * "(line 3)", "(lines 3, 17, 40)", "(lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 12 more)": the first MAX_LINES_SHOWN of a --file's
 * line numbers.
 * Not grouped by thousands: "1,204" would read as two numbers of the list.
 */
function linesClause(lines: readonly number[]): string {
  const shown = lines.slice(0, MAX_LINES_SHOWN).join(', ');
  const more = lines.length > MAX_LINES_SHOWN ? ` and ${formatNumber(lines.length - MAX_LINES_SHOWN)} more` : '';
  return `(line${lines.length === 1 ? '' : 's'} ${shown}${more})`;
}

// ---------------------------------------------------------------------------------------------
// Records

interface RecordSource {
  /** Up to n records; fewer when the source runs out. From a pipe, waits for its writer without holding the process. */
  take(n: number): Promise<PreparedRecord[]>;
  /** Whether every record was taken (a file's last line); a generated source never runs out. */
  exhausted(): boolean;
  /**
   * How many records were left untaken, up to `limit`, once a run stopped early: a regular file is read on to count
   * them, up to UNTAKEN_COUNT_BYTES; undefined when only waiting for a pipe's writer or reading further would tell,
   * or for generated records without a count.
   */
  untaken(limit: number): Promise<number | undefined>;
  /** Lets go of the input (a --file read only as far as --count). */
  close(): void;
  /**
   * Whitespace-only lines of a --file skipped so far: those before the last record taken, and to the end once every
   * record was taken. Undefined for generated records.
   */
  blankLines(): number | undefined;
}

/** What the transform will make of a record: the full transform's verdict (schema, event time, money, size). */
function prepare(schema: PipelineSchema, data: Buffer): PreparedRecord {
  const analysis = analyzeRecord(schema, data);
  const reason = analysis.kind === 'valid' ? failureReason(schema.pipeline, data) : '';
  if (analysis.kind === 'valid' && reason === '') {
    return { data, partitionKey: (analysis.entity || analysis.id || 'unkeyed').slice(0, 256), expected: { id: analysis.id, partitionKeys: analysis.partitionKeys } };
  }
  const failure = analysis.kind === 'failed' ? describeFailure(analysis.failure) : analysis.kind === 'empty' ? 'dropped: the record is empty' : reason;
  return { data, partitionKey: `unkeyed-${Math.floor(Math.random() * 1e9)}`, failure };
}

/** Draws in a row a generated record may be refused (a Sluice rule the sampler does not know) before put gives up. */
const GENERATED_DRAWS = 100;

/**
 * Generated records, each one the transform accepts (the sampler can draw values a Sluice rule refuses, e.g. cents in
 * JPY). The first is drawn at once, so a schema the sampler cannot satisfy fails the put before anything is sent.
 * `jsonSchema` is what the records are drawn from: the pipeline's schema file (read here unless the caller has read it),
 * or in tests one its validator refuses.
 */
export function generatedSource(schema: PipelineSchema, seed: number, jsonSchema: object = readSchema(schema.pipeline)): RecordSource {
  const rng: Rng = createRng(seed);
  const draw = (now: Date, beforeAnySent = false): PreparedRecord => {
    let record: PreparedRecord | undefined;
    for (let attempt = 0; attempt < GENERATED_DRAWS; attempt++) {
      record = prepare(schema, Buffer.from(JSON.stringify(drawSample(schema.pipeline, () => sampleRecord(jsonSchema, rng, { now })))));
      if (record.expected) return record;
    }
    throw new UserError(`cannot generate ${schema.pipeline} records the pipeline accepts: ${GENERATED_DRAWS} drawn in a row were refused (the last: ${record?.failure ?? 'refused'})${beforeAnySent ? '; nothing was sent' : ''}. Give the field "examples" the rule accepts in schemas/${schema.pipeline}.schema.json, or send your own records with --file`);
  };
  const first = [draw(new Date(), true)];
  return {
    take(n) {
      const now = new Date();
      const records = first.splice(0, n);
      while (records.length < n) records.push(draw(now));
      return Promise.resolve(records);
    },
    exhausted: () => false,
    untaken: (limit) => Promise.resolve(Number.isFinite(limit) ? limit : undefined),
    close: () => undefined,
    blankLines: () => undefined,
  };
}

/** Bytes read from a --file at a time: records are read as they are sent, never the whole file at once. */
const FILE_CHUNK_BYTES = 1 << 20;
/** The longest --file line read: 16 × the largest record either API takes. */
const MAX_FILE_LINE_BYTES = 16 * 1024 * 1024;
/**
 * How far a --file is read on after a run stopped early, to count the records it never sent: a quarter of a second
 * or so here. Beyond it the count is not given: a 10 GB file would hold the summary back half a minute.
 */
const UNTAKEN_COUNT_BYTES = 64 * 1024 * 1024;

/**
 * A --file's records, read as they are sent: a file of any size, or standard input that never ends (`producer |
 * sluice put … -f - --count 100` sends 100 and stops), is not first read whole into memory. Lines are bytes exactly as
 * written (less the line break, and a CR before it): a record's bytes are what is sent. Blank lines are skipped, and
 * counted: a summary that sends fewer records than the file has lines says why.
 */
async function fileSource(file: string, schema: PipelineSchema): Promise<RecordSource> {
  const problem = (err: unknown) => unreadableFile('--file', file, err);
  let fd: number;
  /** A pipe, FIFO or terminal: a read waits for its writer, so what was read is sent rather than held for more. */
  let waitsForWriter: boolean;
  try {
    fd = file === '-' ? 0 : fs.openSync(file, 'r');
    waitsForWriter = !fs.fstatSync(fd).isFile();
  } catch (err) {
    throw problem(err);
  }
  const chunk = Buffer.alloc(FILE_CHUNK_BYTES);
  /** Bytes read after the last line break. */
  let partial: Buffer[] = [];
  let partialBytes = 0;
  let lineNumber = 0;
  /** A line too long to be a record: the input ends before it, with this error. */
  let unreadable: UserError | undefined;
  const lines: Buffer[] = [];
  /** For each line in `lines`, its line number in the input. */
  const lineNumbers: number[] = [];
  /** For each line in `lines`, the blank lines just before it; `blanksAfter` those after the last one. */
  const blanksBefore: number[] = [];
  let blanksAfter = 0;
  /** Blank lines before the records taken. */
  let blanksTaken = 0;
  /** A run that stopped early counts the records it never sent: the blank lines among them were not reached. */
  let countingUntaken = false;
  let eof = false;
  let released = false;
  // A terminal is read whole with readSync before anything is sent (below); a pipe as the records are sent.
  const pipe = waitsForWriter && !tty.isatty(fd) ? pipeReader(fd) : undefined;
  /**
   * Closes the file once: at its end, at a line too long, or when the run is over (standard input read with readSync
   * is left alone). A pipe's reader closes its descriptor, and leaves nothing to hold the process.
   */
  const release = () => {
    if (pipe) pipe.close();
    else if (fd !== 0 && !released) fs.closeSync(fd);
    released = true;
  };
  const readChunk = async (): Promise<number> => (pipe ? pipe.read(chunk) : fs.readSync(fd, chunk, 0, chunk.length, null));
  /** The last read from a pipe took all it had: reading again would wait for its writer. */
  let drained = false;
  let bytesRead = 0;
  const keep = (line: Buffer) => {
    lineNumber++;
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    if (line.toString('utf8').trim() === '') {
      blanksAfter++;
      return;
    }
    lines.push(line);
    lineNumbers.push(lineNumber);
    blanksBefore.push(blanksAfter);
    blanksAfter = 0;
  };
  /**
   * Reads until `wanted` lines wait to be taken, or the end of the input; from a pipe, only until it has nothing more
   * for now once a line waits (a producer that pauses, or one that wrote just --count lines, is not waited for).
   */
  const fill = async (wanted: number) => {
    const enough = () => Number.isFinite(wanted) && lines.length > 0;
    while (lines.length < wanted && !eof && !unreadable && !(drained && enough())) {
      let n: number;
      try {
        n = await readChunk();
      } catch (err) {
        // Standard input another process left non-blocking: wait for it rather than fail.
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          if (enough()) break;
          await sleep(10);
          continue;
        }
        release();
        throw problem(err);
      }
      if (n === 0) {
        eof = true;
        // The line break that ends the last line starts no blank line.
        if (partialBytes > 0) keep(Buffer.concat(partial));
        partial = [];
        partialBytes = 0;
        release();
        break;
      }
      bytesRead += n;
      const bytes = chunk.subarray(0, n);
      let start = 0;
      for (let at = bytes.indexOf(0x0a); at !== -1; at = bytes.indexOf(0x0a, start)) {
        keep(Buffer.concat([...partial, bytes.subarray(start, at)]));
        partial = [];
        partialBytes = 0;
        start = at + 1;
      }
      if (start < bytes.length) {
        partial.push(Buffer.from(bytes.subarray(start)));
        partialBytes += bytes.length - start;
        // A record is at most 1 MiB: a line many times that (say /dev/zero) is not one, and would fill the memory.
        // The lines before it are still sent; the input is read no further.
        if (partialBytes > MAX_FILE_LINE_BYTES) {
          unreadable = new UserError(`--file ${file}: line ${lineNumber + 1} is longer than ${MAX_FILE_LINE_BYTES / 1024 / 1024} MiB with no line break yet; records are at most 1 MiB, one per line`);
          partial = [];
          release();
        }
      }
      drained = pipe ? !pipe.holdsMore() : waitsForWriter && n < chunk.length;
    }
  };
  // A terminal is read whole first, as before the records are sent: a blocking read of it while sending would hold
  // Ctrl-C's handler back until the next line is typed. Files and pipes are read as the records are sent.
  await fill(fd === 0 && tty.isatty(0) ? Number.POSITIVE_INFINITY : 1);
  if (lines.length === 0 && unreadable) throw unreadable;
  if (lines.length === 0) {
    const blank = blanksAfter === 0 ? '' : `, only ${formatNumber(blanksAfter)} blank line${blanksAfter === 1 ? '' : 's'}`;
    throw new UserError(`--file ${file} has no records${blank}: expected one JSON object per line`);
  }
  return {
    async take(n) {
      // One line ahead: once the last record is taken, the end of the input is known (see exhausted).
      await fill(n + 1);
      if (lines.length === 0 && unreadable) throw unreadable;
      for (const blanks of blanksBefore.splice(0, n)) blanksTaken += blanks;
      const numbers = lineNumbers.splice(0, n);
      return lines.splice(0, n).map((line, i) => ({ ...prepare(schema, line), line: numbers[i] }));
    },
    exhausted() {
      // Never reads: after Ctrl-C, a pipe that has nothing more to say yet must not hold the report back.
      return eof && lines.length === 0;
    },
    async untaken(limit) {
      let count = 0;
      const countUntil = bytesRead + UNTAKEN_COUNT_BYTES;
      countingUntaken = true;
      try {
        // A chunk at a time, the lines counted and let go. A line too long to be a record ends the count, as it ends the input.
        for (;;) {
          blanksBefore.splice(0);
          lineNumbers.splice(0);
          count += lines.splice(0).length;
          if (count >= limit || eof || unreadable) return Math.min(count, limit);
          // A pipe or terminal not at its end: reading on would wait for its writer, maybe for ever.
          if (waitsForWriter || bytesRead >= countUntil) return undefined;
          await fill(1);
        }
      } catch {
        return undefined;
      }
    },
    close: release,
    blankLines: () => blanksTaken + (eof && lines.length === 0 && !countingUntaken ? blanksAfter : 0),
  };
}

/**
 * A pipe, FIFO or socket read through the event loop, a chunk at a time, not with readSync: a read that waits for a
 * producer that pauses would hold the loop, and with it Ctrl-C's and SIGTERM's handlers, until it wrote again (nor would
 * a read in the thread pool do: the process cannot exit while one waits). Undefined for what the loop cannot watch (a
 * device such as /dev/zero), which is read with readSync.
 */
function pipeReader(fd: number): { read(into: Buffer): Promise<number>; holdsMore(): boolean; close(): void } | undefined {
  let socket: net.Socket;
  try {
    socket = new net.Socket({ fd, readable: true, writable: false });
  } catch {
    return undefined;
  }
  const chunks = socket[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let rest: Buffer = Buffer.alloc(0);
  return {
    async read(into) {
      if (rest.length === 0) {
        const next = await chunks.next();
        if (next.done === true) return 0;
        rest = next.value;
      }
      const n = rest.copy(into);
      rest = rest.subarray(n);
      return n;
    },
    /** Whether bytes already read from the pipe wait to be taken: the next read does not wait for the writer. */
    holdsMore: () => rest.length > 0 || socket.readableLength > 0,
    close: () => socket.destroy(),
  };
}

// ---------------------------------------------------------------------------------------------
// Sending

interface SendReport {
  sent: number;
  accepted: number;
  retries: number;
  failedByCode: Record<string, number>;
  /** The message of the first record each error code refused: what the entry point said (a disk that refuses the log, say). */
  firstMessageByCode: Record<string, string>;
  /** For each code of `failedByCode`, the --file lines of its records (none for generated records). */
  failedLinesByCode: Record<string, number[]>;
  invalid: number;
  invalidByReason: Record<string, number>;
  /** For each reason of `invalidByReason`, the --file lines of its records (none for generated records). */
  invalidLinesByReason: Record<string, number[]>;
  /** Accepted records that pass the schema, by id. */
  expected: Map<string, ExpectedRecord>;
  /** Accepted records that pass the schema: more than `expected` holds when some share an id. */
  expectedRecords: number;
  /** When the first record was sent, on the wall clock: what arrival times are compared with. */
  startedAt: number;
  /** The same instant on the monotonic clock (`performance.now()`), which times taken are counted on. */
  startedAtMonotonic: number;
  elapsedMs: number;
  /** Why sending stopped before the end, when a call failed for good after records were accepted. */
  stopped?: string;
  /** What ended a run whose input could not be read on after records were sent (a --file line too long to be a record). */
  unreadable?: UserError;
  /** Records of a run that `stopped` never sent, when that is known (see RecordSource.untaken). */
  neverSent?: number;
  /** Ctrl-C or SIGTERM stopped sending before the count or the duration was reached. */
  interrupted?: boolean;
  /** Ctrl-C or SIGTERM came during the last call, when nothing was left to send: it stops what comes next instead (--verify's wait). */
  interruptedLastCall?: boolean;
  /** The signal behind `interrupted` or `interruptedLastCall`. */
  interruption?: Interruption;
}

/** "Firehose delivery stream … at http://127.0.0.1:4573 stopped answering mid-run (ECONNREFUSED) after accepting 3,000 records" */
function stoppedMessage(entry: EntryPoint, cause: unknown, explained: unknown, accepted: number): string {
  const code = networkErrorCode(cause);
  const at = entry.failureContext.endpoint ? ` at ${entry.failureContext.endpoint}` : '';
  const why = code ? `stopped answering mid-run (${code})` : `refused a call mid-run (${(explained as Error).message ?? String(explained)})`;
  return `${entry.description}${at} ${why} after accepting ${formatNumber(accepted)} record${accepted === 1 ? '' : 's'}`;
}

interface SendOptions {
  readonly count: number;
  readonly rate?: number;
  readonly durationMs?: number;
  readonly batchSize: number;
  readonly maxAttempts: number;
  /** How long a run that has had records accepted waits for an endpoint that stopped answering (see sendBatch). */
  readonly outageWaitMs: number;
  readonly progress: Progress;
}

/** How long, by default, a run that has had records accepted waits for an endpoint that stopped answering to answer again. */
const DEFAULT_OUTAGE_WAIT_MS = 30_000;

/**
 * Sends one batch. Before any record of the run was accepted, a call that fails for good throws (its
 * error says it all: "nothing is listening…: start the twin"). After, an endpoint that stopped answering
 * (refused or reset connections) is given up to `outageWaitMs` to answer again, its unsettled records
 * sent again; then, or for any other failure, the run stops here and still reports what was sent.
 */
async function sendBatch(
  entry: EntryPoint,
  batch: readonly PreparedRecord[],
  acceptedBefore: number,
  options: SendOptions,
  interrupted: () => boolean,
): Promise<{ result: SendResult; stopped?: string }> {
  const outcomes: SendResult['outcomes'] = [];
  let retries = 0;
  let calls = 0;
  let pending = batch.map((_, i) => i);
  let outageStarted: number | undefined;
  for (let pause = 1000; ; pause = Math.min(pause * 2, 5000)) {
    let settled: SendResult | undefined;
    let cause: unknown;
    try {
      const result = await sendRecords(entry, pending.map((i) => batch[i]), {
        maxAttempts: options.maxAttempts,
        onRetry: ({ records, errorCodes, delayMs }) => options.progress.update(`retrying ${records} records in ${delayMs} ms (${Object.entries(errorCodes).map(([c, k]) => `${c} ×${k}`).join(', ')})`),
        onStopped: (partial, error) => {
          settled = partial;
          cause = error;
        },
      });
      result.outcomes.forEach((o, j) => (outcomes[pending[j]] = stillMaybeTaken(outcomes[pending[j]], o) ? outcomes[pending[j]] : o));
      return { result: { outcomes, retries: retries + result.retries, calls: calls + result.calls } };
    } catch (err) {
      const accepted = acceptedBefore + outcomes.filter((o) => o?.ok).length + (settled?.outcomes.filter((o) => o.ok).length ?? 0);
      if (!settled || accepted === 0) throw withMaybeTaken(err, settled);
      const partial: SendResult = settled;
      // A record whose call was cut off in an earlier round stays MaybeTaken while no later call got it accepted.
      partial.outcomes.forEach((o, j) => (outcomes[pending[j]] = stillMaybeTaken(outcomes[pending[j]], o) ? outcomes[pending[j]] : o));
      retries += partial.retries;
      calls += partial.calls;
      const code = networkErrorCode(cause);
      // On the monotonic clock: a wall clock set back an hour would wait out the outage for that hour more.
      outageStarted ??= performance.now();
      if ((code === 'ECONNREFUSED' || code === 'ECONNRESET') && performance.now() - outageStarted + pause <= options.outageWaitMs && !interrupted()) {
        // Only the records the outage left unsettled: one that used up --max-attempts on its own stays as it is.
        // Those whose call was cut off after it was sent too: the stream may have taken them (a second copy, then),
        // or not (lost, if not sent again).
        pending = pending.filter((i) => {
          const o = outcomes[i];
          return !o.ok && (o.errorCode === code || o.errorCode === MAYBE_TAKEN || o.errorCode === NOT_SENT);
        });
        retries += pending.length;
        options.progress.update(`${entry.name} is not answering (${code}): trying ${pending.length} records again in ${pause / 1000} s`);
        // Ctrl-C cuts the pause short; the run then ends as interrupted, reporting what was sent.
        for (const until = performance.now() + pause; performance.now() < until && !interrupted();) await sleep(Math.min(100, until - performance.now()));
        if (!interrupted()) continue;
      }
      // Interrupted while waiting: the run ends as interrupted (exit 130), not as stopped.
      return { result: { outcomes, retries, calls }, stopped: interrupted() ? undefined : stoppedMessage(entry, cause, err, accepted) };
    }
  }
}

/**
 * The error that stops a run before any record was accepted, with what became of the records of a call cut off after it
 * was sent: "nothing is listening" alone would say they never arrived, and the stream may hold them.
 */
function withMaybeTaken(err: unknown, settled: SendResult | undefined): unknown {
  const maybe = settled?.outcomes.filter((o) => !o.ok && o.errorCode === MAYBE_TAKEN).length ?? 0;
  if (maybe === 0 || !(err instanceof UserError)) return err;
  const records = `${formatNumber(maybe)} record${maybe === 1 ? '' : 's'}`;
  const them = maybe === 1 ? 'it' : 'them';
  return new UserError(`${err.message}. A call (${records}) was cut off after it was sent: the stream may hold ${them}, so sending ${them} again may duplicate ${them}`, err.exitCode);
}

/** Whether a record MaybeTaken in an earlier round stays so: the round that sent it again did not get it accepted. */
function stillMaybeTaken(before: RecordOutcome | undefined, after: RecordOutcome): boolean {
  return before !== undefined && !before.ok && before.errorCode === MAYBE_TAKEN && !after.ok;
}

/** Sends `count` records (or until `durationMs`), paced to `rate` on average, never bursting more than a second's worth. */
async function sendAll(entry: EntryPoint, source: RecordSource, options: SendOptions): Promise<SendReport> {
  const report: SendReport = {
    sent: 0, accepted: 0, retries: 0, failedByCode: {}, failedLinesByCode: {}, firstMessageByCode: {}, invalid: 0, invalidByReason: {}, invalidLinesByReason: {}, expected: new Map(), expectedRecords: 0, startedAt: Date.now(), startedAtMonotonic: performance.now(), elapsedMs: 0,
  };
  const { rate, durationMs, batchSize, progress } = options;
  // Pacing, --duration and the time taken run on the monotonic clock: a wall clock set back an hour would hold the
  // records for that hour, and one set forward would send the rest at once (and end --duration there).
  const elapsedMs = (): number => performance.now() - report.startedAtMonotonic;
  const deadline = durationMs ?? Number.POSITIVE_INFINITY;
  let interruption: Interruption | undefined;
  let interrupted = false;
  let stillSending: NodeJS.Timeout | undefined;
  // Records taken from the source that no call carried (the run stopped first).
  let takenNotSent = 0;
  // Ends a wait for records: a pipe's producer that pauses is not waited for once a signal came.
  const stopTaking = new AbortController();
  // Ctrl-C (or SIGTERM, as `timeout` and supervisors stop a run) during a load test stops sending and still reports
  // (and verifies) what was sent. A call in flight is answered before the report; one that takes long (an endpoint
  // that hangs) is said so. A second signal ends the process at once.
  const release = takeInterrupts((by) => {
    interruption = by;
    interrupted = true;
    stopTaking.abort();
    stillSending = setTimeout(() => io.err(`sluice: stopping once the call in flight is answered; ${by.label} again to quit at once`), STOPPING_NOTE_MS);
    stillSending.unref();
  });
  try {
    while (report.sent < options.count && elapsedMs() < deadline && !interrupted) {
      let n = Math.min(batchSize, options.count - report.sent);
      if (rate !== undefined) {
        const elapsed = elapsedMs() / 1000;
        const due = Math.floor(rate * elapsed) + 1 - report.sent;
        if (due <= 0) {
          const nextDueMs = ((report.sent / rate) - elapsed) * 1000;
          await sleep(Math.min(Math.max(nextDueMs, 1), 1000, Math.max(deadline - elapsedMs(), 1)));
          continue;
        }
        n = Math.min(n, due, Math.max(1, Math.ceil(rate)));
      }
      let batch: PreparedRecord[];
      try {
        batch = await untilAborted(source.take(n), stopTaking.signal);
      } catch (err) {
        // A signal while the producer pauses: the run ends as interrupted, reporting what was sent.
        if (stopTaking.signal.aborted && err === stopTaking.signal.reason) break;
        // Input that cannot be read on (a --file line too long to be a record): the run ends, reporting what was sent before it.
        if (!(err instanceof UserError) || report.sent === 0) throw err;
        const records = report.sent === 1 ? 'record before it was' : 'records before it were';
        report.unreadable = new UserError(`${err.message}. The ${formatNumber(report.sent)} ${records} sent (${formatNumber(report.accepted)} accepted); nothing after it was`, err.exitCode);
        break;
      }
      if (batch.length === 0) break;
      const { result, stopped } = await sendBatch(entry, batch, report.accepted, options, () => interrupted);
      report.stopped = stopped;
      // Records of calls that never went out (a call before theirs failed for good) count as never sent, not as refused.
      const notSent = result.outcomes.filter((o) => !o.ok && o.errorCode === NOT_SENT).length;
      takenNotSent += notSent;
      report.sent += batch.length - notSent;
      report.retries += result.retries;
      result.outcomes.forEach((outcome, i) => {
        const record = batch[i];
        if (!outcome.ok) {
          // A record's outcome is its last attempt's: one accepted on a retry is not listed, one given up on is, once.
          if (outcome.errorCode !== NOT_SENT && record.line !== undefined) (report.failedLinesByCode[outcome.errorCode] ??= []).push(record.line);
          return;
        }
        report.accepted++;
        if (record.expected) {
          report.expected.set(record.expected.id, record.expected);
          report.expectedRecords++;
        }
        if (record.failure) {
          report.invalid++;
          report.invalidByReason[record.failure] = (report.invalidByReason[record.failure] ?? 0) + 1;
          if (record.line !== undefined) (report.invalidLinesByReason[record.failure] ??= []).push(record.line);
        }
      });
      const sentOutcomes = result.outcomes.filter((o) => o.ok || o.errorCode !== NOT_SENT);
      for (const [code, k] of Object.entries(summarizeFailures(sentOutcomes))) report.failedByCode[code] = (report.failedByCode[code] ?? 0) + k;
      for (const o of sentOutcomes) if (!o.ok && !(o.errorCode in report.firstMessageByCode)) report.firstMessageByCode[o.errorCode] = o.errorMessage;
      const perSecond = report.accepted / Math.max(elapsedMs() / 1000, 0.001);
      const of = Number.isFinite(options.count) ? `/${formatNumber(options.count)}` : '';
      const left = Number.isFinite(deadline) ? ` · ${formatDuration(Math.max(0, deadline - elapsedMs()))} left` : '';
      progress.update(`${entry.name}: sent ${formatNumber(report.sent)}${of} · accepted ${formatNumber(report.accepted)} · ${formatNumber(Math.round(perSecond))} records/s${left}`);
      if (report.stopped) break;
    }
  } finally {
    release();
    clearTimeout(stillSending);
  }
  // A Ctrl-C during the last batch interrupted nothing (of --count, or of a --file).
  report.interrupted = interrupted && report.sent < options.count && !source.exhausted();
  report.interruptedLastCall = interrupted && !report.interrupted;
  report.interruption = interruption;
  report.elapsedMs = elapsedMs();
  // Counted after the clock stops: reading the rest of a large file is no part of the run's time.
  if (report.stopped) {
    const untaken = await source.untaken(options.count - report.sent - takenNotSent);
    report.neverSent = untaken === undefined ? undefined : untaken + takenNotSent;
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// Verifying

/**
 * How far this machine's clock may run ahead of the pipeline's without `--verify` missing this put's rows: rows count
 * from the put's start less this (verify.ts). Locally none: the twin stamps arrival times with this machine's clock, to
 * the millisecond (kinesis-mock too), so an earlier put's rows, however recent, never count; on AWS, Firehose and
 * Kinesis stamp them with theirs.
 */
const LOCAL_CLOCK_TOLERANCE_MS = 0;
const AWS_CLOCK_TOLERANCE_MS = 60_000;

const ARRIVED_BEFORE_HINT = 'an earlier put of the same records (the same --seed or --file) counts for nothing here, since only rows that '
  + 'arrived since this put started do; or, on AWS, this machine\'s clock runs more than a minute ahead';

/** What verifying found, and the Ctrl-C or SIGTERM that ended it before every destination had every record. */
interface Verification {
  readonly results: VerifyResult[];
  readonly interruption?: Interruption;
}

/** A line per destination verified: found of expected, and for one that did not pass, why (missing ids, or the signal). */
function printVerifyLines(verification: readonly VerifyResult[], interruption: Interruption | undefined): void {
  for (const v of verification) {
    const outcome = v.passed ? '' : v.interrupted ? ` when ${interruption?.label ?? 'Ctrl-C'} stopped the wait` : ` (missing e.g. ${escapeControlCharacters(v.missingSample.join(', '))})`;
    io.out(`  verify ${v.where}: ${formatNumber(v.found)}/${formatNumber(v.expected)} after ${formatDuration(v.elapsedMs)}${outcome}`);
    if (v.arrivedBefore) io.out(`    ${formatNumber(v.arrivedBefore)} of the missing ids are there from before this put: ${ARRIVED_BEFORE_HINT}`);
  }
}

/** Verifying failed after some destinations were verified: their results, and what failed the next. */
class VerifyCutShort extends Error {
  constructor(readonly cause: unknown, readonly results: VerifyResult[]) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

async function verifyAll(
  target: Target,
  pipeline: string,
  schema: PipelineSchema,
  expected: ExpectedRecord[],
  waitOptions: WaitOptions & { json: boolean },
): Promise<Verification> {
  if (expected.length === 0) return { results: [] };
  const p = target.config.pipelines[pipeline];
  const results: VerifyResult[] = [];
  // Ctrl-C or SIGTERM ends the wait, as it ends sending: the run then reports what was sent and that it was not
  // verified (exit 130 or 143). A second signal ends the process at once.
  const stop = new AbortController();
  let interruption: Interruption | undefined;
  const release = takeInterrupts((by) => {
    interruption = by;
    stop.abort();
  });
  const options = { ...waitOptions, signal: stop.signal };
  let skipped = false;
  try {
    if (p.destinations.includes('lake')) {
      const engine = await sqlEngineFor(target, { sigtermInterrupts: true });
      try {
        results.push(await verifyLake(engine, target.config, schema.model, expected, options));
      } finally {
        engine.close();
      }
    }
    if (p.destinations.includes('search') && stop.signal.aborted) skipped = true;
    else if (p.destinations.includes('search')) {
      const backend = await searchBackendFor(target);
      if (backend) {
        try {
          results.push(await verifySearch(backend, target.config, schema.model, expected, options));
        } finally {
          await backend.close();
        }
      } else if (target.kind === 'local') {
        results.push(await verifyBulkFiles(target.dataDir, target.config, schema.model, expected, options));
      } else if (!options.json) {
        io.err('verify search: skipped, the stack has no OpenSearch endpoint output (OpenSearchEndpoint)');
      }
    }
  } catch (err) {
    throw results.length > 0 ? new VerifyCutShort(err, results) : err;
  } finally {
    release();
    options.progress.done();
  }
  return { results, ...(skipped || results.some((v) => v.interrupted) ? { interruption } : {}) };
}
