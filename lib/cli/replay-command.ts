import { createHash } from 'node:crypto';
import type { Command } from 'commander';
import type { DlqMessage } from '../../transforms/failure-router/handler';
import { analyzeRecord, failureReason, isKnownPipeline, pipelineSchema, type Analysis } from '../../transforms/shared';
import { OutputKeys } from '../infra/outputs';
import { ALARM_THRESHOLDS, DLQ_RETENTION_DAYS } from '../infra/thresholds';
import { openSearchOrigin, sameOpenSearchOrigin } from '../local/twin-record';
import { SEARCH_BACKUP_ROOT } from '../schema/layout';
import type { SchemaModel } from '../schema/model';
import { validatorFingerprint } from '../schema/fingerprint';
import { awaitCallerCredentials } from './credentials';
import { deadLettersFor, rawDataAt, ReadLaterError, VISIBILITY_SECONDS, type DeadLetterAccess, type DeadLetterQueue, type ReceivedMessage, type ReplayLedger } from './dead-letters';
import { addProgressOption, addTargetOptions, examples, formatDuration, parseCount, requireGeneratedCode, requirePipeline, type TargetFlags } from './options';
import { escapeControlCharacters, formatNumber, formatTable, toJson, UserError } from './output';
import { STOPPING_NOTE_MS, takeInterrupts, type Interruption } from './interrupt';
import { sluiceCommand } from './invocation';
import { io, Progress } from './progress';
import { MAYBE_TAKEN, sendRecords, type EntryPoint, type SendResult } from './record-sender';
import { searchBackendFor } from './search-backend';
import { sqlEngineFor } from './sql';
import { bulkFilePresence, lakePresence, searchPresence, type ExpectedRecord, type Presence } from './verify';
import { checkTwinDataDir, checkTwinTakesRecords, entryPointFor, localUpCommand, resolveTarget, staleTwinSchemas, twinBufferIntervalSeconds, type AwsTarget, type LocalTarget, type Target } from './target';

interface ReplayFlags extends TargetFlags {
  readonly pipeline?: string;
  readonly dryRun?: boolean;
  readonly force?: boolean;
  readonly max?: string;
  readonly maxAttempts: string;
  readonly json?: boolean;
  readonly progress?: boolean;
}

/** What became of one dead-letter message. */
export type ReplayOutcome =
  | 'replayed' // re-put and accepted, message deleted
  | 'would-replay' // --dry-run: passes now
  | 'already-replayed' // the ledger says a previous run re-put it: message deleted
  | 'duplicate' // the same record as another message of this run: replayed once, message deleted
  | 'still-failing' // fails validation still: kept
  | 'not-replayable' // holds the transformed record (conversion, OpenSearch), or no data, or only one destination failed it and the other holds it: kept
  | 'retry-later' // its pointer's error object could not be read this time (replaced while read, connection dropped), or the other destination not looked up: kept for the next run
  | 'put-failed' // the entry point did not accept it after retries: kept
  | 'unreadable'; // not a Sluice dead-letter message: kept

interface Tally {
  pipeline: string;
  outcome: ReplayOutcome;
  reason: string;
}

/** Error types whose record is the producer's bytes, so re-putting it at the entry point is meaningful. */
const REPLAYABLE_ERROR_TYPES = new Set(['processing-failed']);

/** Rows of the "not replayed, by reason" table: the most frequent reasons. */
const MAX_REASON_ROWS = 10;

export function registerReplayCommand(program: Command): void {
  const command = program
    .command('replay')
    .description('redrive the dead-letter queue: re-validate each failed record against the current schema, re-put the ones that pass, delete their messages')
    .option('-p, --pipeline <name>', 'only messages of this pipeline (others stay in the queue)')
    .option('--dry-run', 'report what would be replayed; put nothing, delete nothing')
    .option('--force', 'replay even though the local twin (with --aws, the deployed transform) runs another schema than `npm run generate` wrote in this checkout')
    .option('--max <n>', 'read at most this many messages')
    .option('--max-attempts <n>', 'attempts per record at the entry point before it counts as not accepted', '8')
    .option('--json', 'print the outcome per message and the totals as JSON');
  addTargetOptions(command, { dataDir: true, firehose: true, kinesis: true, opensearch: true });
  addProgressOption(command);
  command.addHelpText('after', () => [
    examples(
      'sluice replay --dry-run',
      'sluice replay --pipeline iot',
      'sluice replay --aws --stack sluice-prod --max 500 --json',
    ),
    '\nMessages come from SQS (the stack output DlqUrl) with --aws, from <data-dir>/dlq/<prefix>-<env>-dlq.jsonl locally.',
    'A message is deleted only after its record was accepted by the pipeline\'s entry point, and each replay is recorded',
    '(the metadata table on AWS, the queue\'s dedupe file locally), so running replay again does not duplicate records.',
    'Records that failed Parquet conversion or OpenSearch indexing hold the transformed record, not the producer\'s: they are',
    'reported as not replayable and kept. So is a record only one of a pipeline\'s two destinations (lake, search) failed while the',
    'other holds it: both read the same stream, and re-putting it would give the other a second copy.',
    'Locally, replay refuses (exit 2) while the twin runs an older schema than the one generated since it started: the',
    `records would fail again and come back as new dead letters. Restart the twin (\`${sluiceCommand()} local up\`) first, or pass --force.`,
    'A schema edited without `npm run generate` since is refused too (exit 2): records are re-validated with the generated code.',
    'Exit status: 0 every message read was replayed (or nothing to do) · 1 some records still fail or were not accepted · 2 usage, configuration or environment problem',
    '  · 130 interrupted (Ctrl-C; 143 for SIGTERM): the batch in hand is finished and recorded; messages not yet read stay in the queue',
  ].join('\n'));
  command.action(async (flags: ReplayFlags) => {
    await replay(flags);
  });
}

async function replay(flags: ReplayFlags): Promise<void> {
  const max = flags.max !== undefined ? parseCount(flags.max, '--max') : Number.POSITIVE_INFINITY;
  const maxAttempts = parseCount(flags.maxAttempts, '--max-attempts', 1, 100);
  const target = resolveTarget(flags);
  if (flags.pipeline !== undefined) requirePipeline(target.config, flags.pipeline);
  const replayed = flags.pipeline !== undefined ? [flags.pipeline] : Object.keys(target.config.pipelines);
  // Records are re-validated with the generated validator: one of an older schema would judge them by the schema
  // before the fix, and a dry run would count them by it.
  requireGeneratedCode(replayed);
  if (target.kind === 'local') checkTwinDataDir(target.dataDir);
  if (target.kind === 'local') {
    checkTwinSchemas(target, replayed, flags);
  } else {
    // Every request of the replay (CloudFormation, SQS, the metadata table, the entry points) is signed with the caller's
    // credentials: a source that hangs is named.
    await awaitCallerCredentials(target.credentials, { signing: 'every request of the replay' });
    await checkDeployedSchemas(target, replayed, flags);
  }
  const access = await deadLettersFor(target);
  const progress = new Progress({ forced: flags.progress });
  // Its time taken, on the monotonic clock: a wall clock set back or forward mid-run is no time taken.
  const started = performance.now();
  const elapsedMs = () => Math.round(performance.now() - started);
  const results: Array<Tally & { message: string; dedupeKey?: string }> = [];
  const entryPoints = new Map<string, EntryPoint>();
  let refusal: UserError | undefined;
  const done: DeletedSoFar = { replayed: 0, others: 0, unrecorded: 0, putAgain: 0, received: 0, keptSentAt: new Map() };
  // Ctrl-C (or SIGTERM, as `timeout` and supervisors stop a run) stops reading after the batch in hand: its accepted
  // records are recorded in the ledger and their messages deleted, so the next run does not put them again (killed
  // mid-batch, it would). A second signal ends the process at once.
  let interruptedBy: Interruption | undefined;
  let stoppingNote: NodeJS.Timeout | undefined;
  let interruption: string | undefined;
  let inFlight: number | undefined;
  const stopTakingSignals = takeInterrupts((by) => {
    interruptedBy = by;
    stoppingNote = setTimeout(() => io.err(`sluice: stopping once the batch in hand is done; ${by.label} again to quit at once\n`), STOPPING_NOTE_MS);
    stoppingNote.unref();
  });
  try {
    refusal = await drain(target, access, { ...flags, max, maxAttempts }, entryPoints, results, progress, done, () => interruptedBy !== undefined);
    if (interruptedBy !== undefined) interruption = await cutOffSummary(access.queue, results, done);
    // Nothing read: messages another reader holds hidden come back within their visibility timeout. Not counting them
    // (no sqs:GetQueueAttributes) leaves "nothing to replay" as it is.
    else if (done.received === 0) inFlight = await access.queue.messagesInFlight().catch(() => undefined);
  } catch (err) {
    // Cut off (the twin or a service went away): say what was already done before the reason, and with --json print
    // the report of the messages read so far, as a script needs their outcomes (which were replayed, which were kept);
    // the reason follows on stderr as for any failure.
    if (results.length > 0) {
      const summary = await cutOffSummary(access.queue, results, done);
      if (flags.json) {
        io.out(toJson({ queue: access.queue.description, dryRun: flags.dryRun === true, read: results.length, outcomes: countBy(results, (r) => r.outcome), messages: results,
          stopped: summary, elapsedMs: elapsedMs() }));
      }
      io.err(`sluice: ${summary}\n`);
    }
    throw err;
  } finally {
    stopTakingSignals();
    clearTimeout(stoppingNote);
    progress.done();
    for (const e of entryPoints.values()) e.close();
    access.queue.close();
  }
  // The twin refused a pipeline's records and nothing else was put: a usage problem, said as one.
  if (refusal && !results.some((r) => r.outcome === 'replayed')) throw refusal;

  const counts = countBy(results, (r) => r.outcome);
  const failing = results.filter((r) => !['replayed', 'would-replay', 'already-replayed', 'duplicate'].includes(r.outcome));
  if (flags.json) {
    io.out(toJson({ queue: access.queue.description, dryRun: flags.dryRun === true, read: results.length, outcomes: counts, messages: results,
      ...(inFlight ? { inFlight } : {}), ...(interruption !== undefined ? { interrupted: true, stopped: interruption } : {}), elapsedMs: elapsedMs() }));
  } else {
    printReport(access, results, counts, flags.dryRun === true, elapsedMs(), inFlight);
  }
  const oldKept = oldKeptWarning(done.keptSentAt);
  if (oldKept !== undefined) io.err(`sluice: warning: ${oldKept}\n`);
  if (interruption !== undefined && interruptedBy !== undefined) throw new UserError(`interrupted (${interruptedBy.label}): ${interruption}`, interruptedBy.exitCode);
  if (failing.length > 0) {
    throw new UserError(`${formatNumber(failing.length)} of ${formatNumber(results.length)} dead-letter message${results.length === 1 ? '' : 's'} ${flags.dryRun ? 'would not be replayed' : 'not replayed'}; ${failing.length === 1 ? 'it stays' : 'they stay'} in the queue`, 1);
  }
}

async function drain(
  target: Target,
  access: DeadLetterAccess,
  flags: Omit<ReplayFlags, 'max' | 'maxAttempts'> & { max: number; maxAttempts: number },
  entryPoints: Map<string, EntryPoint>,
  results: Array<Tally & { message: string; dedupeKey?: string }>,
  progress: Progress,
  done: DeletedSoFar,
  interrupted: () => boolean = () => false,
): Promise<UserError | undefined> {
  const { queue, ledger } = access;
  // Pipelines whose records the twin does not take (another data dir, other ports, another env): kept, not put.
  const refused = new Map<string, UserError>();
  const seenMessages = new Set<string>();
  const seenRecords = new Map<string, string>(); // pipeline + sha256(record) → id of the message replayed for it
  // pipeline + sha256(record) → the destinations its messages in this run say failed it.
  const failedDestinations = new Map<string, Set<Destination>>();
  // The dedupe keys of the messages this run re-puts (or would): another copy of one of them (a standard queue may hold
  // two) is not marked replayed as a duplicate, since that put may yet fail and its message stay for the next run.
  const putKeys = new Set<string>();
  const kept: ReceivedMessage[] = [];
  // Messages kept this run that came back since the last new one (their visibility ran out in a long run).
  let cameBack = 0;
  try {
    while (results.length < flags.max && !interrupted()) {
      const received = await queue.receive(Math.min(10, flags.max - results.length));
      done.received += received.length;
      if (received.length === 0) break;
      const messages: ReceivedMessage[] = [];
      for (const m of received) {
        if (!seenMessages.has(m.key ?? m.id)) messages.push(m);
        else {
          // Receiving it again hid it again; its new handle is the one to release.
          kept.push(m);
          cameBack++;
        }
      }
      if (messages.length === 0) {
        // Not the end of the queue: newer messages may be behind the returning ones. It is once every
        // kept message has come back with nothing new among them.
        if (cameBack > seenMessages.size - done.replayed - done.others) break;
        continue;
      }
      cameBack = 0;
      const toDelete: ReceivedMessage[] = [];
      let replayedInBatch = 0;
      let unrecordedInBatch = 0;
      const toPut = new Map<string, PutItem[]>();
      const parsed = messages.map((m) => parseMessage(m.body));
      const ledgered = await ledgerFor(ledger, parsed, (dlq) =>
        (flags.pipeline === undefined || dlq.pipeline === flags.pipeline) && target.config.pipelines[dlq.pipeline] !== undefined && isKnownPipeline(dlq.pipeline));
      for (const [i, message] of messages.entries()) {
        seenMessages.add(message.key ?? message.id);
        const dlq = parsed[i];
        if (typeof dlq === 'string') {
          // Whose it is cannot be told: reported only when replaying every pipeline.
          if (flags.pipeline === undefined) results.push({ message: message.id, pipeline: '?', outcome: 'unreadable', reason: dlq });
          kept.push(message);
          continue;
        }
        const record = { message: message.id, dedupeKey: dlq.dedupeKey, pipeline: dlq.pipeline };
        if (flags.pipeline !== undefined && dlq.pipeline !== flags.pipeline) {
          kept.push(message); // Not ours to judge: not in the report either.
          continue;
        }
        if (!target.config.pipelines[dlq.pipeline] || !isKnownPipeline(dlq.pipeline)) {
          results.push({ ...record, outcome: 'unreadable', reason: `pipeline "${dlq.pipeline}" is not configured here` });
          kept.push(message);
          continue;
        }
        if (ledgered.replayed.has(dlq.dedupeKey)) {
          // Its record's other messages: the record ledger says whether they came before that replay.
          results.push({ ...record, outcome: 'already-replayed', reason: `replayed by an earlier run; message ${flags.dryRun ? 'would be ' : ''}deleted` });
          if (!flags.dryRun) toDelete.push(message);
          else kept.push(message);
          continue;
        }
        if (!REPLAYABLE_ERROR_TYPES.has(dlq.errorType)) {
          results.push({ ...record, outcome: 'not-replayable', reason: notReplayableReason(dlq) });
          kept.push(message);
          continue;
        }
        let base64: string | undefined = dlq.rawData;
        try {
          if (base64 === undefined && dlq.pointer) base64 = await rawDataAt(access.readObject, dlq.pointer);
        } catch (err) {
          if (!(err instanceof UserError)) throw err;
          results.push({ ...record, outcome: err instanceof ReadLaterError ? 'retry-later' : 'not-replayable', reason: err.message });
          kept.push(message);
          continue;
        }
        if (base64 === undefined) {
          results.push({ ...record, outcome: 'not-replayable', reason: 'the message carries neither rawData nor a pointer to it' });
          kept.push(message);
          continue;
        }
        const data = Buffer.from(base64, 'base64');
        const reason = failureReason(dlq.pipeline, data);
        if (reason !== '') {
          results.push({ ...record, outcome: 'still-failing', reason });
          kept.push(message);
          continue;
        }
        // Two messages for one record (its lake and search deliveries both failed it): re-put it once.
        const recordKey = recordKeyOf(dlq.pipeline, data);
        const failedFor = failedDestinations.get(recordKey) ?? new Set<Destination>();
        failedFor.add(failedDestination(dlq));
        failedDestinations.set(recordKey, failedFor);
        const duplicate = async (reason: string): Promise<void> => {
          results.push({ ...record, outcome: 'duplicate', reason });
          if (flags.dryRun) {
            kept.push(message);
          } else {
            // Its record is replayed (or was): recorded like a replay, so a lost delete never re-puts it. Not so a copy of
            // the message being re-put: its key is that message's, marked when its put succeeds (markReplayed).
            if (!putKeys.has(dlq.dedupeKey)) {
              await ledger.mark(dlq.dedupeKey);
              ledgered.replayed.add(dlq.dedupeKey);
            }
            toDelete.push(message);
          }
        };
        if (seenRecords.has(recordKey)) {
          await duplicate(`the same record as message ${seenRecords.get(recordKey)}`);
          continue;
        }
        // Its other message may have been replayed by an earlier run (`replay --max N` runs): not again. A failure of
        // that replayed put arrived after the replay, and is replayed in turn; so is a message whose arrival is unknown
        // (0: its error line had none), a possible second put rather than a loss.
        const replayedAt = await ledgered.recordReplayedAt(recordLedgerKey(recordKey));
        const arrived = Number.isFinite(dlq.arrivalTimestamp) && dlq.arrivalTimestamp > 0 ? dlq.arrivalTimestamp : undefined;
        if (replayedAt !== undefined && arrived !== undefined && arrived < replayedAt - REPLAY_CLOCK_MARGIN_MS) {
          await duplicate(`the same record was replayed by an earlier run; message ${flags.dryRun ? 'would be ' : ''}deleted`);
          continue;
        }
        seenRecords.set(recordKey, message.id);
        putKeys.add(dlq.dedupeKey);
        const list = toPut.get(dlq.pipeline) ?? [];
        list.push({ message, dlq, data, recordKey, analysis: analyzeRecord(pipelineSchema(dlq.pipeline), data) });
        toPut.set(dlq.pipeline, list);
      }

      // What ended the run within this batch (a put or a ledger write failing for good): the batch is settled first
      // (accepted records recorded, their messages deleted, the rest released), then it is thrown.
      let stop: { error: unknown } | undefined;
      for (const [pipeline, judged] of toPut) {
        if (stop !== undefined) {
          for (const { message, dlq } of judged) {
            kept.push(message);
            results.push({ message: message.id, dedupeKey: dlq.dedupeKey, pipeline, outcome: 'put-failed', reason: 'not sent: the run stopped before this pipeline\'s records' });
          }
          continue;
        }
        const elsewhere = await heldElsewhere(target, pipeline, judged, failedDestinations, progress);
        const items: PutItem[] = [];
        for (const item of judged) {
          const held = elsewhere.get(item.recordKey);
          if (held === undefined) {
            items.push(item);
            continue;
          }
          // Not replayed: a later message of the same record is judged on its own, not as a duplicate of this one.
          if (seenRecords.get(item.recordKey) === item.message.id) seenRecords.delete(item.recordKey);
          putKeys.delete(item.dlq.dedupeKey);
          kept.push(item.message);
          results.push({ message: item.message.id, dedupeKey: item.dlq.dedupeKey, pipeline, ...held });
        }
        if (flags.dryRun) {
          for (const { message, dlq } of items) {
            results.push({ message: message.id, dedupeKey: dlq.dedupeKey, pipeline, outcome: 'would-replay', reason: 'passes the current schema' });
            kept.push(message);
          }
          continue;
        }
        if (items.length === 0) continue;
        let entry = entryPoints.get(pipeline);
        if (!entry) {
          entry = await entryPointFor(target, pipeline);
          entryPoints.set(pipeline, entry);
          if (target.kind === 'local') {
            try {
              await checkTwinTakesRecords(target, entry, pipeline);
            } catch (err) {
              if (!(err instanceof UserError)) throw err;
              refused.set(pipeline, err);
            }
          }
        }
        const refusal = refused.get(pipeline);
        if (refusal) {
          for (const { message, dlq } of items) {
            kept.push(message);
            results.push({ message: message.id, dedupeKey: dlq.dedupeKey, pipeline, outcome: 'put-failed', reason: refusal.message });
          }
          continue;
        }
        // Before the put: a failure of the replayed record arrives after this (see REPLAY_CLOCK_MARGIN_MS).
        const putStartedAt = Date.now();
        // A call failing in a way no retry fixes (credentials expired, access denied) after others were accepted: those
        // are recorded and their messages deleted all the same, or the next run would put them again.
        const sent: { soFar?: SendResult } = {};
        let outcome: SendResult;
        try {
          outcome = await sendRecords(entry, items.map(({ data, analysis }) => {
            const key = analysis.kind === 'valid' ? analysis.entity || analysis.id : createHash('sha256').update(data).digest('hex');
            return { data, partitionKey: key.slice(0, 256) };
          }), { maxAttempts: flags.maxAttempts, onStopped: (soFar) => { sent.soFar = soFar; } });
        } catch (err) {
          if (sent.soFar === undefined) throw err;
          outcome = sent.soFar;
          stop = { error: err };
        }
        // Recorded before the delete: if the delete fails, the next run deletes without re-putting. The record
        // itself too: its other message (a lake and a search failure) may come in a later run.
        const accepted = items.filter((_, i) => outcome.outcomes[i].ok);
        try {
          await ledger.markReplayed(accepted.map(({ dlq, recordKey }) => ({ dedupeKey: dlq.dedupeKey, recordKey: recordLedgerKey(recordKey), at: putStartedAt })));
        } catch (err) {
          // Their messages are deleted still: kept, every run would put their records again. Unrecorded, only a lost
          // delete (or the record's other message, in a later run) can put one twice.
          unrecordedInBatch += accepted.length;
          stop ??= { error: err };
        }
        for (let i = 0; i < items.length; i++) {
          const { message, dlq } = items[i];
          const o = outcome.outcomes[i];
          const record = { message: message.id, dedupeKey: dlq.dedupeKey, pipeline };
          if (o.ok) {
            toDelete.push(message);
            replayedInBatch++;
            results.push({ ...record, outcome: 'replayed', reason: `re-put to ${entry.description}` });
          } else {
            kept.push(message);
            results.push({ ...record, outcome: 'put-failed', reason: `${o.errorCode}: ${o.errorMessage}` });
          }
        }
      }
      try {
        await queue.delete(toDelete);
      } catch (err) {
        // Neither recorded nor deleted: the next run finds no mark and puts them again.
        done.putAgain += unrecordedInBatch;
        throw err;
      }
      done.unrecorded += unrecordedInBatch;
      done.replayed += replayedInBatch;
      done.others += toDelete.length - replayedInBatch;
      if (stop !== undefined) throw stop.error;
      progress.update(`replay: read ${formatNumber(results.length)} messages · ${formatNumber(results.filter((r) => r.outcome === 'replayed').length)} replayed`);
    }
  } finally {
    // Each message once (a kept one may have come back and been kept again), for the warning on old ones.
    for (const m of kept) if (m.sentAt !== undefined) done.keptSentAt.set(m.key ?? m.id, m.sentAt);
    await queue.release(kept);
  }
  return refused.values().next().value;
}

/**
 * The running twin validates with the generated code it loaded when it started: after a schema fix
 * (`npm run generate`) it still fails the records the fix is for, and a replay only turns their messages
 * into new ones. Refused unless --force; a dry run, which puts nothing, notes it.
 */
function checkTwinSchemas(target: LocalTarget, pipelines: readonly string[], flags: Pick<ReplayFlags, 'dryRun' | 'force'>): void {
  const runs = staleTwinSchemas(target, pipelines);
  if (runs === undefined) return;
  if (flags.dryRun) {
    io.err(`sluice: note: ${runs}. "would replay" counts are against the newer one; the twin would fail those records again: restart it (\`${escapeControlCharacters(localUpCommand(target.dataDir))}\`) before replaying`);
  } else if (flags.force) {
    io.err(`sluice: warning: ${runs}; replaying anyway (--force): records it fails again come back as new dead letters`);
  } else {
    throw new UserError(`${runs}, so the records would fail again and come back as new dead letters; nothing was replayed. Restart it (\`${escapeControlCharacters(localUpCommand(target.dataDir))}\`) to replay against the fixed schema, or pass --force to replay against the schema it runs`);
  }
}

/**
 * The deployed transform validates with the generated code of the last `cdk deploy` (the stack's SchemaFingerprints
 * output): after `npm run generate` and before a deploy, it still fails the records the fix is for. As for the twin:
 * refused unless --force; a dry run notes it. A stack deployed before the output existed is not checked.
 */
async function checkDeployedSchemas(target: AwsTarget, pipelines: readonly string[], flags: Pick<ReplayFlags, 'dryRun' | 'force'>): Promise<void> {
  const deployed = (await target.outputs()).get(OutputKeys.SchemaFingerprints);
  if (deployed === undefined) return;
  let fingerprints: Record<string, unknown>;
  try {
    fingerprints = JSON.parse(deployed) as Record<string, unknown>;
  } catch {
    return;
  }
  const stale = pipelines.filter((p) => typeof fingerprints[p] === 'string' && fingerprints[p] !== validatorFingerprint(p));
  if (stale.length === 0) return;
  const one = stale.length === 1;
  const runs = `${target.label} validates ${stale.join(', ')} with ${one ? 'another schema' : 'other schemas'} than this checkout generated (\`npm run generate\` since the last \`cdk deploy\`?)`;
  if (flags.dryRun) {
    io.err(`sluice: note: ${runs}. "would replay" counts are against this checkout's; the deployed transform would fail those records again: deploy (\`npx cdk deploy\`) before replaying`);
  } else if (flags.force) {
    io.err(`sluice: warning: ${runs}; replaying anyway (--force): records it fails again come back as new dead letters`);
  } else {
    throw new UserError(`${runs}, so the records would fail again and come back as new dead letters; nothing was replayed. Deploy first (\`npx cdk deploy\`), or pass --force to replay against the deployed schema`);
  }
}

/**
 * How much earlier than a replay's put a message must have arrived to be a duplicate of it. The put's start is this
 * machine's clock and a message's arrivalTimestamp Firehose's: a failure of the replayed put arrives after the put
 * began, and within this margin a skewed clock cannot make it look older (it would be deleted unreplayed). The other
 * message of the same failure (lake and search) arrived before the failure was even routed, minutes earlier; one
 * within the margin is put again instead (a duplicate, never a loss).
 */
const REPLAY_CLOCK_MARGIN_MS = 60_000;

/**
 * The ledger's entries for a batch of messages, read in one lookup: the dedupe keys of the messages `judged` (of the
 * pipelines replayed), and the records that replayable ones carry inline. A record a pointer names is read from S3 only
 * when its message comes to it, so it is looked up then. `replayed` is the batch's to add the keys it marks to.
 */
async function ledgerFor(ledger: ReplayLedger, parsed: ReadonlyArray<DlqMessage | string>, judged: (dlq: DlqMessage) => boolean): Promise<{
  replayed: Set<string>;
  recordReplayedAt(recordLedgerKey: string): Promise<number | undefined>;
}> {
  const ours = parsed.filter((dlq): dlq is DlqMessage => typeof dlq !== 'string' && judged(dlq));
  const inline = new Set(ours.filter((dlq) => REPLAYABLE_ERROR_TYPES.has(dlq.errorType) && dlq.rawData !== undefined)
    .map((dlq) => recordLedgerKey(recordKeyOf(dlq.pipeline, Buffer.from(dlq.rawData!, 'base64')))));
  const known = await ledger.lookup(ours.map((dlq) => dlq.dedupeKey), [...inline]);
  return {
    replayed: new Set(known.replayed),
    async recordReplayedAt(key) {
      return inline.has(key) ? known.recordReplayedAt.get(key) : (await ledger.lookup([], [key])).recordReplayedAt.get(key);
    },
  };
}

/** A message judged replayable, with its record. */
interface PutItem {
  readonly message: ReceivedMessage;
  readonly dlq: DlqMessage;
  readonly data: Buffer;
  readonly recordKey: string;
  /** The record read by the transform's checks, once: it passes them (failureReason said so). */
  readonly analysis: Analysis;
}

type Destination = 'lake' | 'search';

/** Which delivery failed the record: its error object is under errors/ (the lake's stream) or search-backup/ (the search stream's). */
function failedDestination(dlq: DlqMessage): Destination {
  return dlq.source.key.startsWith(`${SEARCH_BACKUP_ROOT}/`) ? 'search' : 'lake';
}

/**
 * The records of `items` that a destination the pipeline also delivers to already holds, with the outcome to report for
 * them. Both streams of a pipeline read the same Kinesis stream, so a record re-put there reaches both: one that failed
 * for the search stream only (its transform invocation throttled or timed out) but reached the lake would become a
 * second lake row, and one the lake's stream failed would become a second document (Firehose gives every put its own
 * document id). Such records are kept, said why; those the other destination does not hold are re-put (both failed
 * them, or the other's message is yet to come). Looked up by the schema's id field, in the lake with Athena (DuckDB
 * locally) and in OpenSearch (locally without one, in the twin's `_bulk` bodies). When it cannot be told, the messages
 * are kept for the next run.
 */
async function heldElsewhere(
  target: Target,
  pipeline: string,
  items: readonly PutItem[],
  failedDestinations: ReadonlyMap<string, ReadonlySet<Destination>>,
  progress: Progress,
): Promise<Map<string, { outcome: ReplayOutcome; reason: string }>> {
  const held = new Map<string, { outcome: ReplayOutcome; reason: string }>();
  const { destinations } = target.config.pipelines[pipeline];
  const schema = pipelineSchema(pipeline);
  for (const other of ['lake', 'search'] as const) {
    if (!destinations.includes(other)) continue;
    const asked = new Map<string, { record: ExpectedRecord; items: PutItem[] }>();
    const failed = other === 'lake' ? 'search' : 'lake';
    const where = other === 'lake' ? 'the lake' : 'OpenSearch';
    // The other stream may still buffer a record that arrived lately: not finding it then is no proof it is not coming.
    const holdsUpToMs = deliveryWithinSeconds(target, pipeline, other) * 1000;
    for (const item of items) {
      if (failedDestinations.get(item.recordKey)?.has(other)) continue;
      const arrived = item.dlq.arrivalTimestamp;
      if (Number.isFinite(arrived) && arrived > 0 && Date.now() - arrived < holdsUpToMs) {
        held.set(item.recordKey, {
          outcome: 'retry-later',
          reason: `only its ${failed} delivery failed, ${formatDuration(Math.max(0, Date.now() - arrived))} after it arrived; ${where} may still hold it in a buffer: run replay again from ${new Date(arrived + holdsUpToMs).toISOString()}`,
        });
        continue;
      }
      const { analysis } = item;
      if (analysis.kind !== 'valid') continue;
      const entry = asked.get(analysis.id) ?? { record: { id: analysis.id, partitionKeys: analysis.partitionKeys }, items: [] };
      entry.items.push(item);
      asked.set(analysis.id, entry);
    }
    if (asked.size === 0) continue;
    let found: Set<string>;
    try {
      found = await presenceIn(target, other, schema.model, progress)([...asked.values()].map((a) => a.record));
    } catch (err) {
      // Kept, whatever the cause (a query refused, OpenSearch unreachable): the next run looks again.
      for (const { items: unchecked } of asked.values()) {
        for (const item of unchecked) {
          held.set(item.recordKey, { outcome: 'retry-later', reason: `only its ${failed} delivery failed, and whether ${where} has it could not be looked up: ${err instanceof Error ? err.message : String(err)}` });
        }
      }
      continue;
    }
    for (const [id, { items: holding }] of asked) {
      if (!found.has(id)) continue;
      const copy = other === 'lake' ? 'a second lake row' : 'a second document';
      for (const item of holding) {
        held.set(item.recordKey, {
          outcome: 'not-replayable',
          reason: `${where} has this record (${schema.model.extensions.idField} ${id}); only its ${failed} delivery failed it (${item.dlq.errorCode}), and re-putting it would add ${copy}`,
        });
      }
    }
  }
  return held;
}

/**
 * How long after a record arrived a delivery stream may still hold it: its buffer interval (Firehose's; the twin's
 * own, `--buffer-interval` or `local.bufferIntervalSeconds`), the transform's processor interval on AWS, and what delivering takes beyond them
 * (the invocation, the Parquet conversion, a bulk request: a minute on AWS, where retries can add more; seconds in the twin).
 */
function deliveryWithinSeconds(target: Target, pipeline: string, destination: Destination): number {
  if (target.kind === 'local') return twinBufferIntervalSeconds(target) + LOCAL_DELIVERY_MARGIN_SECONDS;
  const p = target.config.pipelines[pipeline];
  return (destination === 'lake' ? p.buffering.intervalSeconds : p.search.bufferingIntervalSeconds) + p.transform.processorIntervalSeconds + AWS_DELIVERY_MARGIN_SECONDS;
}

const AWS_DELIVERY_MARGIN_SECONDS = 60;
const LOCAL_DELIVERY_MARGIN_SECONDS = 5;

/** How `heldElsewhere` looks in a destination: the lake through SQL, search through OpenSearch or the twin's `_bulk` bodies. */
function presenceIn(target: Target, destination: Destination, model: SchemaModel, progress: Progress): Presence {
  return async (records) => {
    if (destination === 'lake') {
      // SIGTERM is replay's to take (it finishes the batch in hand), not the local engine's.
      const engine = await sqlEngineFor(target, { sigtermInterrupts: true });
      try {
        return await lakePresence(engine, target.config, model, progress)(records);
      } finally {
        engine.close();
      }
    }
    if (target.kind === 'local') {
      // Where the twin running on the data dir puts documents, whatever this command's OPENSEARCH_URL says: looking
      // elsewhere finds none, and the record would be put a second time.
      const twins = target.runningTwin()?.endpoints.openSearch;
      const here = target.endpoints.openSearch !== undefined ? openSearchOrigin(target.endpoints.openSearch) : undefined;
      if (twins === null || (twins === undefined && here === undefined)) return bulkFilePresence(target.dataDir, target.config, model)(records);
      if (twins !== undefined && (here === undefined || !sameOpenSearchOrigin(twins, here))) {
        throw new UserError(`the twin indexes ${model.pipeline}'s documents into OpenSearch at ${twins}${here !== undefined ? `, not ${here}` : ''}: pass OPENSEARCH_URL=${twins} (or --endpoint-opensearch) so replay looks there`);
      }
    }
    const backend = await searchBackendFor(target);
    if (!backend) throw new UserError('the stack has no OpenSearch endpoint output (OpenSearchEndpoint)');
    try {
      return await searchPresence(backend, target.config, model)(records);
    } finally {
      await backend.close();
    }
  };
}

/** One record of one pipeline, whichever messages carry it. */
function recordKeyOf(pipeline: string, data: Buffer): string {
  return `${pipeline}\n${createHash('sha256').update(data).digest('hex')}`;
}

/** The ledger entry of a replayed record (beside those of its messages' dedupe keys). */
function recordLedgerKey(recordKey: string): string {
  return `record#${recordKey.replace('\n', '#')}`;
}

/** Messages deleted so far: of records this run re-put, and the others (already replayed, duplicates). */
interface DeletedSoFar {
  replayed: number;
  others: number;
  /** Of the records re-put, those the ledger write failed for (their messages deleted all the same). */
  unrecorded: number;
  /** Of the records re-put, those the ledger write and then the delete failed for: the next run puts them again. */
  putAgain: number;
  /** Messages received, other pipelines' (released unread) and ones that came back included. */
  received: number;
  /** When each message kept in the queue was sent, where the queue says (SQS). */
  keptSentAt: Map<string, number>;
}

/**
 * A warning when messages kept in the queue are older than the dlq-age alarm's threshold: SQS deletes them at its
 * retention, and its ApproximateAgeOfOldestMessage leaves out a message received more than three times (every replay
 * run, dry runs too, receives the messages it keeps), so the alarm may no longer see them.
 */
export function oldKeptWarning(keptSentAt: ReadonlyMap<string, number>, now = Date.now()): string | undefined {
  const old = [...keptSentAt.values()].filter((at) => now - at > ALARM_THRESHOLDS.deadLetterAgeSeconds * 1000);
  if (old.length === 0) return undefined;
  const oldest = Math.min(...old);
  const retentionMs = DLQ_RETENTION_DAYS * 86_400_000;
  return `${formatNumber(old.length)} message${old.length === 1 ? '' : 's'} kept in the queue ${old.length === 1 ? 'was' : 'were'} sent over ${ALARM_THRESHOLDS.deadLetterAgeSeconds / 86_400} days ago `
    + `(the oldest ${new Date(oldest).toISOString()}); SQS deletes ${old.length === 1 ? 'it' : 'them'} ${DLQ_RETENTION_DAYS} days after sending, from ${new Date(oldest + retentionMs).toISOString()}, `
    + 'and the dlq-age alarm stops counting a message received more than three times. Save them (the --json output holds their ids) or fix what keeps them';
}

/**
 * What a run cut off had done: records re-put and their messages deleted, and re-put ones whose delete it did not
 * reach; then what the queue still holds, counted where it can be (the run may have read the last message).
 */
async function cutOffSummary(queue: DeadLetterQueue, results: ReadonlyArray<Tally>, done: DeletedSoFar): Promise<string> {
  const undeleted = results.filter((r) => r.outcome === 'replayed').length - done.replayed - done.putAgain;
  const maybeTaken = results.filter((r) => r.outcome === 'put-failed' && r.reason.startsWith(`${MAYBE_TAKEN}:`)).length;
  // Whatever cut the run off may keep the queue from counting too: then it is not counted.
  const left = await queue.messagesLeft().catch(() => undefined);
  const them = (n: number) => (n === 1 ? 'it' : 'them');
  const records = (n: number) => `${formatNumber(n)} record${n === 1 ? ' was' : 's were'}`;
  const clauses = [`${formatNumber(done.replayed)} replayed${done.others > 0 ? ` and ${formatNumber(done.others)} already replayed or duplicate` : ''} (their messages deleted)`];
  if (undeleted > 0) clauses.push(`${formatNumber(undeleted)} more re-put and recorded, whose messages the next run deletes`);
  if (done.unrecorded > 0) {
    clauses.push(`${records(done.unrecorded)} re-put but not recorded in the replay ledger (a lost delete, or the record's other message in a later run, would put ${them(done.unrecorded)} again)`);
  }
  if (done.putAgain > 0) {
    clauses.push(`${records(done.putAgain)} re-put but neither recorded in the replay ledger nor ${done.putAgain === 1 ? 'its message' : 'their messages'} deleted: the next run puts ${them(done.putAgain)} again`);
  }
  if (maybeTaken > 0) {
    clauses.push(`${formatNumber(maybeTaken)} kept whose call was cut off after it was sent: the entry point may have taken ${them(maybeTaken)}, so the next run may put ${them(maybeTaken)} again`);
  }
  clauses.push(leftInQueue(left, undeleted + done.putAgain));
  return `replay stopped after reading ${formatNumber(results.length)} message${results.length === 1 ? '' : 's'}: ${clauses.join('; ')}`;
}

/** The messages a cut-off run leaves in the queue besides the `undeleted` re-put ones; `left` counts both, if known. */
function leftInQueue(left: number | undefined, undeleted: number): string {
  if (left === undefined) return 'any others stay in the queue';
  const besides = Math.max(0, left - undeleted);
  const other = undeleted > 0 ? 'other ' : '';
  if (besides === 0) return `no ${other}message is left in the queue`;
  return `${formatNumber(besides)} ${other}message${besides === 1 ? ' stays' : 's stay'} in the queue`;
}

function parseMessage(body: string): DlqMessage | string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return 'the message body is not JSON';
  }
  const m = value as Partial<DlqMessage>;
  if (typeof m !== 'object' || m === null || typeof m.dedupeKey !== 'string' || typeof m.pipeline !== 'string' || typeof m.errorType !== 'string') {
    return 'not a Sluice dead-letter message (no dedupeKey, pipeline or errorType)';
  }
  if (m.rawData !== undefined && typeof m.rawData !== 'string') return 'rawData is not a base64 string';
  if (m.rawData === undefined && m.pointer !== undefined && !isPointer(m.pointer)) return 'pointer is not {"bucket", "key", "line"} of an error object line';
  return m as DlqMessage;
}

function isPointer(value: unknown): value is { bucket: string; key: string; line: number } {
  const p = value as { bucket?: unknown; key?: unknown; line?: unknown } | null;
  return typeof p === 'object' && p !== null && typeof p.bucket === 'string' && p.bucket !== '' && typeof p.key === 'string' && p.key !== ''
    && typeof p.line === 'number' && Number.isSafeInteger(p.line) && p.line >= 1;
}

function notReplayableReason(m: DlqMessage): string {
  if (m.errorType === 'format-conversion-failed') {
    return `format-conversion-failed holds the transformed record, not the producer's; fix the Glue schema or the transform, then re-send from the source (${m.reason})`;
  }
  if (/OpenSearch|elasticsearch/i.test(m.errorType)) {
    return `${m.errorType}: the lake has this record; only its document is missing from OpenSearch — fix the mapping or the domain, then re-index (${m.reason})`;
  }
  return `${m.errorType} records are not replayed through the entry point (${m.reason})`;
}

function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

const OUTCOME_LABEL: Record<ReplayOutcome, string> = {
  replayed: 'replayed (message deleted)',
  'would-replay': 'would replay (passes the schema now)',
  'already-replayed': 'already replayed (message deleted)',
  duplicate: 'duplicate of a replayed record (message deleted)',
  'still-failing': 'still failing (kept)',
  'not-replayable': 'not replayable (kept)',
  'retry-later': 'not read now, the next run reads it again (kept)',
  'put-failed': 'not accepted by the entry point (kept)',
  unreadable: 'unreadable (kept)',
};
/** A dry run deletes nothing: its messages "would be deleted". */
const DRY_RUN_OUTCOME_LABEL: Partial<Record<ReplayOutcome, string>> = {
  'already-replayed': 'already replayed (message would be deleted)',
  duplicate: 'duplicate of a record to replay (message would be deleted)',
};

function outcomeLabel(outcome: string, dryRun: boolean): string {
  return (dryRun ? DRY_RUN_OUTCOME_LABEL[outcome as ReplayOutcome] : undefined) ?? OUTCOME_LABEL[outcome as ReplayOutcome] ?? outcome;
}

function printReport(access: DeadLetterAccess, results: ReadonlyArray<Tally>, counts: Record<string, number>, dryRun: boolean, elapsedMs: number, inFlight?: number): void {
  io.out(`${dryRun ? 'replay --dry-run' : 'replay'}: ${formatNumber(results.length)} dead-letter message${results.length === 1 ? '' : 's'} from ${escapeControlCharacters(access.queue.description)} · ${formatDuration(elapsedMs)}`);
  if (results.length === 0) {
    io.out(inFlight ? `nothing to replay now: ~${formatNumber(inFlight)} message${inFlight === 1 ? ' is' : 's are'} in flight (received by another reader, a replay `
      + `still running or one just ended, and hidden up to ${formatDuration(VISIBILITY_SECONDS * 1000)}); run replay again then` : 'nothing to replay');
    return;
  }
  // Messages, not records: one record can fail for two destinations (lake and search), a message each.
  io.out(formatTable(['outcome', 'messages'], Object.entries(counts).map(([o, n]) => [outcomeLabel(o, dryRun), n])));
  const byPipeline = countBy(results.filter((r) => r.outcome === 'replayed' || r.outcome === 'would-replay'), (r) => r.pipeline);
  if (Object.keys(byPipeline).length > 0) {
    io.out(`\n${dryRun ? 'would replay' : 'replayed'} by pipeline: ${Object.entries(byPipeline).map(([p, n]) => `${p} ${n}`).join(', ')}`);
  }
  const failing = results.filter((r) => ['still-failing', 'not-replayable', 'retry-later', 'put-failed', 'unreadable'].includes(r.outcome));
  if (failing.length > 0) {
    const groups = new Map<string, { pipeline: string; outcome: string; reason: string; n: number }>();
    for (const r of failing) {
      const k = `${r.pipeline}\n${r.outcome}\n${r.reason}`;
      const g = groups.get(k) ?? { pipeline: r.pipeline, outcome: r.outcome, reason: r.reason, n: 0 };
      g.n++;
      groups.set(k, g);
    }
    io.out('\nnot replayed, by reason');
    const rows = [...groups.values()].sort((a, b) => b.n - a.n);
    // Reasons run long (a pointer's S3 key, the schema's own words): they wrap, so that the rows stay under their headings.
    io.out(formatTable(['pipeline', 'outcome', 'messages', 'reason'], rows.slice(0, MAX_REASON_ROWS).map((g) => [g.pipeline, g.outcome, g.n, g.reason]), { width: io.stdoutWidth() }));
    // Reasons that name a field (`/junk108 is not a field of the schema`) make a row each: the most frequent are shown.
    const hidden = rows.slice(MAX_REASON_ROWS);
    if (hidden.length > 0) {
      const messages = hidden.reduce((sum, g) => sum + g.n, 0);
      io.out(`… and ${formatNumber(messages)} more message${messages === 1 ? '' : 's'} for ${formatNumber(hidden.length)} other reason${hidden.length === 1 ? '' : 's'} (--json lists every message)`);
    }
  }
}
