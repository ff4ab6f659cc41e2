import * as fs from 'node:fs';
import type { Command } from 'commander';
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { ChangeMessageVisibilityCommand, SQSClient } from '@aws-sdk/client-sqs';
import { resourceNames } from '../config';
import { kinesisClient, lambdaClient } from '../local/aws-clients';
import { DlqFile } from '../local/dlq-file';
import { consumerFunctionName } from '../local/twin-record';
import { parseFailedBatch, readBatchRange, redriveRecords, type ConsumerInvoker, type FailedBatch, type RangeRead } from './consumer-redrive';
import { awaitCallerCredentials } from './credentials';
import { dlqFileQueue, sqsDeadLetterQueue, takeQueueRunLock, type DeadLetterQueue, type ReceivedMessage } from './dead-letters';
import { explainFailure, type FailureContext } from './errors';
import { STOPPING_NOTE_MS, takeInterrupts, type Interruption } from './interrupt';
import { addProgressOption, addTargetOptions, examples, formatDuration, parseCount, requirePipeline, type TargetFlags } from './options';
import { escapeControlCharacters, formatNumber, formatTable, toJson, UserError } from './output';
import { io, Progress } from './progress';
import { pipelineOutputKey } from './stack-outputs';
import { checkTwinDataDir, displayPath, resolveTarget, startTwinHint, type AwsTarget, type LocalTarget } from './target';

interface RedriveFlags extends TargetFlags {
  readonly pipeline?: string;
  readonly dryRun?: boolean;
  readonly discardTrimmed?: boolean;
  readonly max?: string;
  readonly maxAttempts: string;
  readonly json?: boolean;
  readonly progress?: boolean;
}

/** What became of one consumer dead-letter message. */
export type RedriveOutcome =
  | 'redriven' // its range read again and recorded by the consumer: message deleted
  | 'would-redrive' // --dry-run: the stream still holds its whole range
  | 'trimmed' // the stream's retention removed some or all of its range (what was left was redriven): kept
  | 'trimmed-discarded' // the same, with --discard-trimmed: message deleted, the loss reported
  | 'incomplete' // its range is not where it says (the shard ends, or the tip is reached, first): kept
  | 'still-failing' // the consumer failed again: kept
  | 'unreadable'; // not an on-failure record of a configured pipeline's stream: kept

interface Result {
  readonly message: string;
  readonly pipeline: string;
  readonly outcome: RedriveOutcome;
  readonly reason: string;
  readonly shardId?: string;
  readonly startSequenceNumber?: string;
  readonly endSequenceNumber?: string;
  /** Records of the range the stream still held. */
  readonly records?: number;
}

const DONE: ReadonlySet<RedriveOutcome> = new Set(['redriven', 'would-redrive']);

export function registerRedriveConsumerCommand(program: Command): void {
  const command = program
    .command('redrive-consumer')
    .description('redrive the metadata consumer\'s dead-letter queue: read each failed batch\'s range from its Kinesis stream again, invoke the consumer with it, delete the message')
    .option('-p, --pipeline <name>', 'only batches of this pipeline\'s stream (others stay in the queue)')
    .option('--dry-run', 'read each range and say what would be redriven; invoke nothing, delete nothing')
    .option('--discard-trimmed', 'delete the messages of ranges the stream\'s retention has removed (in full or in part, after redriving what is left); their loss is still reported')
    .option('--max <n>', 'read at most this many messages')
    .option('--max-attempts <n>', 'invocations of the consumer per range (and per part of it it reports for retry) before the message is kept', '3')
    .option('--json', 'print the outcome per message and the totals as JSON');
  addTargetOptions(command, { dataDir: true, kinesis: true });
  addProgressOption(command);
  command.addHelpText('after', [
    examples(
      'sluice redrive-consumer --dry-run',
      'sluice redrive-consumer --aws --stack sluice-prod --dry-run',
      'sluice redrive-consumer --aws --stack sluice-prod --pipeline iot --json',
    ),
    '\nMessages come from SQS (the stack output ConsumerDlqUrl) with --aws, from <data-dir>/dlq/<prefix>-<env>-consumer-dlq.jsonl locally.',
    'Each is Lambda\'s on-failure record of a batch: its shard and sequence range, not the records. They are read from the',
    'stream again (within its retention: 24 hours by default), and the consumer function (the stack output',
    '<Pipeline>ConsumerFunctionName; locally the consumer itself, against the twin\'s DynamoDB) is invoked with them as',
    'the event source mapping would. The consumer is idempotent: events it already recorded add nothing. A message is',
    'deleted only once the consumer took every record of its range. Records the stream no longer holds are reported, and',
    'their message kept (or deleted with --discard-trimmed): nothing can bring them back.',
    'Exit status: 0 every message read was redriven (or nothing to do) · 1 some ranges are past the retention, incomplete or',
    '  still failing · 2 usage, configuration or environment problem · 130 interrupted (Ctrl-C; 143 for SIGTERM): the message in',
    '  hand is finished; messages not yet read stay in the queue',
  ].join('\n'));
  command.action(async (flags: RedriveFlags) => {
    await redriveConsumer(flags);
  });
}

/** Where the consumer's dead letters are, how its streams are read and how it is invoked: on AWS or in the twin. */
interface ConsumerAccess {
  readonly queue: DeadLetterQueue;
  readonly kinesis: KinesisClient;
  readonly kinesisContext: FailureContext;
  readonly region: string;
  /** The pipeline whose stream the batch names; undefined when no configured pipeline with a consumer reads it. */
  pipelineOf(batch: FailedBatch): string | undefined;
  invoker(pipeline: string): ConsumerInvoker;
  /** Keeps a message in hand hidden from other receivers for the longest step of its redrive still to come. */
  keepHidden(message: ReceivedMessage): Promise<void>;
}

/**
 * What each keepHidden asks of SQS: the longest step between two calls of it (one invocation of a consumer at Lambda's
 * 900-second limit) with five minutes to spare, since the queue's receive hides a message for five minutes only.
 */
const HIDDEN_SECONDS = 900 + 300;

async function redriveConsumer(flags: RedriveFlags): Promise<void> {
  const max = flags.max !== undefined ? parseCount(flags.max, '--max') : Number.POSITIVE_INFINITY;
  const attempts = parseCount(flags.maxAttempts, '--max-attempts', 1, 100);
  const target = resolveTarget(flags);
  if (flags.pipeline !== undefined) {
    const p = requirePipeline(target.config, flags.pipeline);
    if (p.source !== 'kinesis' || !p.destinations.includes('metadata')) {
      throw new UserError(`pipeline "${flags.pipeline}" has no metadata consumer (it needs a Kinesis source and the metadata destination): nothing of it is in the consumer dead-letter queue`);
    }
  }
  if (target.kind === 'aws') await awaitCallerCredentials(target.credentials, { signing: 'every request of the redrive' });
  const access = target.kind === 'local' ? localAccess(target) : await awsAccess(target);
  const progress = new Progress({ forced: flags.progress });
  // Its time taken, on the monotonic clock: a wall clock set back or forward mid-run is no time taken.
  const started = performance.now();
  const elapsedMs = () => Math.round(performance.now() - started);
  const results: Result[] = [];
  let interruptedBy: Interruption | undefined;
  let stoppingNote: NodeJS.Timeout | undefined;
  // Ctrl-C (or SIGTERM) stops after the message in hand: its range redriven and the message deleted, or kept.
  const stopTakingSignals = takeInterrupts((by) => {
    interruptedBy = by;
    stoppingNote = setTimeout(() => io.err(`sluice: stopping once the message in hand is done; ${by.label} again to quit at once\n`), STOPPING_NOTE_MS);
    stoppingNote.unref();
  });
  const kept: ReceivedMessage[] = [];
  try {
    const seen = new Set<string>();
    while (results.length < max && interruptedBy === undefined) {
      // One at a time: a message waiting behind a long redrive would come back to other receivers while it waits.
      const received = await access.queue.receive(1);
      const fresh = received.filter((m) => !seen.has(m.key ?? m.id));
      kept.push(...received.filter((m) => seen.has(m.key ?? m.id)));
      // Empty, or only messages this run kept that came back (a run longer than their visibility): done.
      if (fresh.length === 0) break;
      for (const message of fresh) {
        seen.add(message.key ?? message.id);
        if (interruptedBy !== undefined || results.length >= max) {
          kept.push(message);
          continue;
        }
        progress.update(`${formatNumber(results.length)} message${results.length === 1 ? '' : 's'} read · ${formatDuration(progress.elapsedMs)}`);
        const result = await redriveOne(access, message, { ...flags, attempts });
        if (result === undefined) {
          kept.push(message); // another pipeline's: not ours to judge, nor to report
          continue;
        }
        results.push(result);
        if (deletes(result.outcome, flags)) await access.queue.delete([message]);
        else kept.push(message);
      }
    }
  } catch (err) {
    if (results.length > 0) io.err(`sluice: ${stoppedSummary(results)}\n`);
    throw err;
  } finally {
    stopTakingSignals();
    clearTimeout(stoppingNote);
    progress.done();
    await access.queue.release(kept);
    access.queue.close();
    access.kinesis.destroy();
  }

  const counts: Record<string, number> = {};
  for (const r of results) counts[r.outcome] = (counts[r.outcome] ?? 0) + 1;
  if (flags.json) {
    io.out(toJson({ queue: access.queue.description, dryRun: flags.dryRun === true, read: results.length, outcomes: counts, messages: results, elapsedMs: elapsedMs() }));
  } else {
    printReport(access.queue.description, results, counts, flags.dryRun === true, elapsedMs());
  }
  if (interruptedBy !== undefined) throw new UserError(`interrupted (${interruptedBy.label}): ${stoppedSummary(results)}`, interruptedBy.exitCode);
  const failing = results.filter((r) => !DONE.has(r.outcome));
  if (failing.length > 0) {
    const lost = results.filter((r) => r.outcome === 'trimmed' || r.outcome === 'trimmed-discarded').length;
    throw new UserError(`${formatNumber(failing.length)} of ${formatNumber(results.length)} consumer dead-letter message${results.length === 1 ? '' : 's'} ${flags.dryRun ? 'would not be redriven' : 'not redriven'}`
      + `${lost > 0 ? ` (${formatNumber(lost)} name${lost === 1 ? 's' : ''} records past the stream's retention: their metadata is lost)` : ''}`, 1);
  }
}

function deletes(outcome: RedriveOutcome, flags: RedriveFlags): boolean {
  if (flags.dryRun) return false;
  return outcome === 'redriven' || outcome === 'trimmed-discarded';
}

/** One message to its outcome; undefined for a batch of another pipeline than --pipeline's. */
async function redriveOne(access: ConsumerAccess, message: ReceivedMessage, flags: RedriveFlags & { attempts: number }): Promise<Result | undefined> {
  const batch = parseFailedBatch(message.body);
  if (typeof batch === 'string') {
    return flags.pipeline === undefined ? { message: message.id, pipeline: '?', outcome: 'unreadable', reason: batch } : undefined;
  }
  const range = { shardId: batch.shardId, startSequenceNumber: batch.startSequenceNumber, endSequenceNumber: batch.endSequenceNumber };
  const pipeline = access.pipelineOf(batch);
  if (pipeline === undefined) {
    if (flags.pipeline !== undefined) return undefined;
    return { message: message.id, pipeline: '?', ...range, outcome: 'unreadable', reason: `stream ${batch.streamName} is not the stream of a configured pipeline with a metadata consumer` };
  }
  if (flags.pipeline !== undefined && pipeline !== flags.pipeline) return undefined;
  const base = { message: message.id, pipeline, ...range };
  const heartbeat = () => access.keepHidden(message);
  const read: RangeRead = await readBatchRange(access.kinesis, batch, { context: access.kinesisContext, heartbeat });
  const records = read.records.length;
  if (read.kind === 'incomplete') return { ...base, records, outcome: 'incomplete', reason: read.why };
  // A Kinesis record can hold several events (KPL aggregation): the loss is counted in records, and says so.
  const lostClause = read.kind === 'trimmed'
    ? `${read.why}; ${formatNumber(read.lost)} of its ${formatNumber(batch.batchSize)} Kinesis records are lost (each may hold several KPL-aggregated events)` : '';
  if (flags.dryRun) {
    if (read.kind === 'trimmed') return { ...base, records, outcome: 'trimmed', reason: `${lostClause}${records > 0 ? `; ${formatNumber(records)} would be redriven` : ''}` };
    return { ...base, records, outcome: 'would-redrive', reason: `${formatNumber(records)} record${records === 1 ? '' : 's'} still in the stream` };
  }
  if (records > 0) {
    const redriven = await redriveRecords(access.invoker(pipeline), batch, read.records, { region: access.region, attempts: flags.attempts, heartbeat });
    if (!redriven.ok) {
      return { ...base, records, outcome: 'still-failing', reason: `${redriven.why}, after ${redriven.invocations} invocation${redriven.invocations === 1 ? '' : 's'}; ${formatNumber(redriven.recorded)} of ${formatNumber(records)} records taken${read.kind === 'trimmed' ? `; and ${lostClause}` : ''}` };
    }
  }
  if (read.kind === 'trimmed') {
    const left = records > 0 ? `; the ${formatNumber(records)} left were redriven` : '';
    return { ...base, records, outcome: flags.discardTrimmed ? 'trimmed-discarded' : 'trimmed', reason: `${lostClause}${left}` };
  }
  return { ...base, records, outcome: 'redriven', reason: `${formatNumber(records)} record${records === 1 ? '' : 's'} recorded` };
}

/** The pipelines with a consumer, by the name of the stream it reads. */
function consumerPipelines(config: LocalTarget['config'], streamNameOf: (pipeline: string) => string): Map<string, string> {
  const byStream = new Map<string, string>();
  for (const [name, p] of Object.entries(config.pipelines)) {
    if (p.source === 'kinesis' && p.destinations.includes('metadata')) byStream.set(streamNameOf(name), name);
  }
  return byStream;
}

function localAccess(target: LocalTarget): ConsumerAccess {
  checkTwinDataDir(target.dataDir);
  const names = (p: string) => resourceNames(target.config, p);
  const queueName = names(Object.keys(target.config.pipelines)[0]).consumerDlq;
  // Its visibility lives in this process only: a kept message stays hidden for the whole run, as replay's do.
  const file = new DlqFile({ dataDir: target.dataDir, queue: queueName, visibilityTimeoutSeconds: 43_200 });
  const twin = target.runningTwin();
  const hint = startTwinHint(target.dataDir);
  const queued = fs.existsSync(file.path);
  if (queued && twin === undefined) {
    throw new UserError(`${queueName} holds failed consumer batches, and redriving them reads the twin's Kinesis streams and writes its DynamoDB: no twin runs on ${target.dataDir}; ${hint}`);
  }
  const releaseLock = queued ? takeQueueRunLock(file, 'redrive-consumer', 'invoke the consumer with the same batches and report them twice') : () => undefined;
  const kinesisEndpoint = target.endpoints.kinesis;
  // The twin runs its consumer when asked (Lambda's Invoke on its Firehose endpoint), in its own process: there its
  // writes queue behind its event source mapping's, which keeps them exactly-once; a second writer here would not.
  const functionsEndpoint = twin?.endpoints.firehose ?? target.endpoints.firehose;
  const longestTimeoutSeconds = Math.max(...Object.values(target.config.pipelines).map((p) => p.consumer.timeoutSeconds));
  // One attempt: the redrive invokes again itself (--max-attempts), and a retry after a timeout would run beside the first.
  const lambda = lambdaClient(functionsEndpoint, { maxAttempts: 1, requestTimeoutMs: (longestTimeoutSeconds + 30) * 1000 });
  const context: FailureContext = { service: 'the twin\'s Firehose endpoint', endpoint: functionsEndpoint, startHint: hint };
  const byStream = consumerPipelines(target.config, (p) => names(p).stream);
  const restart = `stop it (Ctrl-C where it runs${twin ? `, or kill ${twin.pid}` : ''}), then ${hint}`;
  return {
    queue: {
      ...dlqFileQueue(file, queueName, queued),
      close() {
        lambda.destroy();
        releaseLock();
      },
    },
    kinesis: kinesisClient(kinesisEndpoint, { region: target.region }),
    kinesisContext: { service: 'the twin\'s Kinesis API', endpoint: kinesisEndpoint, startHint: hint },
    region: target.region,
    pipelineOf: (batch) => byStream.get(batch.streamName),
    // The twin's messages stay hidden for the whole run (the file queue's visibility above).
    keepHidden: async () => undefined,
    invoker(pipeline) {
      const functionName = consumerFunctionName(target.config, pipeline);
      return lambdaInvoker(lambda, functionName, (err) => {
        const name = (err as Error).name;
        const running = `the twin running on ${displayPath(target.dataDir)}${twin ? ` (pid ${twin.pid})` : ''}`;
        if (name === 'UnknownOperationException') {
          // Its Firehose endpoint took the Invoke for a Firehose call: a twin started before it ran its consumer for others.
          return new UserError(`${running} is from an older Sluice and cannot run its metadata consumer for redrive-consumer `
            + `(its DynamoDB is not written from here: that would race the twin's own writes); nothing was redriven yet; ${restart}`);
        }
        if (name === 'ResourceNotFoundException') {
          return new UserError(`${running} has no metadata consumer ${functionName} for pipeline ${pipeline}: it started with another configuration; ${restart}`);
        }
        return explainFailure(err, context);
      });
    },
  };
}

/** The consumer `functionName` invoked through Lambda's Invoke (the stack's function, or the twin's own), as the redrive reads it. */
function lambdaInvoker(lambda: LambdaClient, functionName: string, explain: (err: unknown) => Error): ConsumerInvoker {
  return async (event) => {
    let answer;
    try {
      answer = await lambda.send(new InvokeCommand({ FunctionName: functionName, InvocationType: 'RequestResponse', Payload: Buffer.from(JSON.stringify(event)) }));
    } catch (err) {
      throw explain(err);
    }
    const text = answer.Payload ? Buffer.from(answer.Payload).toString('utf8') : '';
    let payload: unknown;
    try {
      payload = text === '' ? null : JSON.parse(text);
    } catch {
      payload = text;
    }
    return { ...(answer.FunctionError ? { functionError: answer.FunctionError } : {}), payload };
  };
}

async function awsAccess(target: AwsTarget): Promise<ConsumerAccess> {
  const outputs = await target.outputs();
  const queueUrl = outputs.require('ConsumerDlqUrl', 'sluice redrive-consumer');
  const sqs = new SQSClient(target.clientConfig);
  const lambda = new LambdaClient(target.clientConfig);
  const kinesis = new KinesisClient(target.clientConfig);
  const byStream = consumerPipelines(target.config, (p) => outputs.get(pipelineOutputKey(p, 'StreamName')) ?? resourceNames(target.config, p).stream);
  return {
    queue: {
      ...sqsDeadLetterQueue(sqs, queueUrl, (n, why) =>
        new UserError(`SQS could not delete ${n} redriven message${n === 1 ? '' : 's'} (${why}); the next run redrives ${n === 1 ? 'it' : 'them'} again, which records nothing twice`, 1)),
      close() {
        sqs.destroy();
        lambda.destroy();
      },
    },
    kinesis,
    kinesisContext: { service: 'Kinesis' },
    region: outputs.region,
    pipelineOf: (batch) => byStream.get(batch.streamName),
    async keepHidden(message) {
      try {
        await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: message.handle, VisibilityTimeout: HIDDEN_SECONDS }));
      } catch (err) {
        throw explainFailure(err, { service: 'SQS', resource: `queue ${queueUrl}` });
      }
    },
    invoker(pipeline) {
      // The stack's own function, never one a message names: a message is data, and the caller's credentials invoke.
      const functionName = outputs.require(pipelineOutputKey(pipeline, 'ConsumerFunctionName'), `redriving ${pipeline}'s consumer batches`);
      const context: FailureContext = { service: 'Lambda', resource: `function ${functionName}` };
      return lambdaInvoker(lambda, functionName, (err) => explainFailure(err, context));
    },
  };
}

function stoppedSummary(results: readonly Result[]): string {
  const redriven = results.filter((r) => r.outcome === 'redriven' || r.outcome === 'trimmed-discarded').length;
  const keptCount = results.length - redriven;
  return `redrive-consumer stopped after reading ${formatNumber(results.length)} message${results.length === 1 ? '' : 's'}: ${formatNumber(redriven)} deleted`
    + `${keptCount > 0 ? `, ${formatNumber(keptCount)} kept` : ''}; messages not read stay in the queue`;
}

const OUTCOME_LABEL: Record<RedriveOutcome, string> = {
  redriven: 'redriven (message deleted)',
  'would-redrive': 'would redrive (range still in the stream)',
  trimmed: 'past the stream\'s retention (kept)',
  'trimmed-discarded': 'past the stream\'s retention (message deleted)',
  incomplete: 'range not found in full (kept)',
  'still-failing': 'consumer still failing (kept)',
  unreadable: 'unreadable (kept)',
};

function printReport(queue: string, results: readonly Result[], counts: Record<string, number>, dryRun: boolean, elapsedMs: number): void {
  io.out(`${dryRun ? 'redrive-consumer --dry-run' : 'redrive-consumer'}: ${formatNumber(results.length)} consumer dead-letter message${results.length === 1 ? '' : 's'} from ${escapeControlCharacters(queue)} · ${formatDuration(elapsedMs)}`);
  if (results.length === 0) {
    io.out('nothing to redrive');
    return;
  }
  io.out(formatTable(['outcome', 'messages'], Object.entries(counts).map(([o, n]) => [OUTCOME_LABEL[o as RedriveOutcome] ?? o, n])));
  const others = results.filter((r) => !DONE.has(r.outcome));
  if (others.length > 0) {
    io.out('\nnot redriven');
    io.out(formatTable(['pipeline', 'shard', 'first sequence number', 'outcome', 'reason'],
      others.map((r) => [r.pipeline, r.shardId ?? '', r.startSequenceNumber ?? '', r.outcome, r.reason]), { width: io.stdoutWidth() }));
  }
}
