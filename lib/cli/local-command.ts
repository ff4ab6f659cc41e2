import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Help, type Command, type Option } from 'commander';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { PutRecordBatchCommand } from '@aws-sdk/client-firehose';
import { ConfigError, MAX_LOCAL_BUFFER_INTERVAL_SECONDS, resourceNames, type SluiceConfig } from '../config';
import { readSchema } from '../schema';
import { BAD_RECORD_KINDS, badRecordBytes, createRng, sampleRecord } from '../schema/sample';
import { firehoseClient, kinesisClient, localRegion } from '../local/aws-clients';
import { LocalAthena } from '../local/athena';
import { listenProblem } from '../local/ports';
import { checkDataFormat } from '../local/data-format';
import { DATA_DIR_MODE, defaultDataDir, isTwinBookkeeping, makeDirectories, makeTempFolder } from '../local/paths';
import { takePidLock, type PidLockOptions } from '../local/pid-lock';
import { startTwin, type DlqCounts, type LeftInS3, type Twin, type TwinOptions } from '../local/twin';
import { readLiveTwinRecord, twinLockHolder, twinLockPath } from '../local/twin-record';
import { addConfigOption, configFrom, drawSample, dataDirPath, examples, parsePort, requireGeneratedCode } from './options';
import { displayRows, escapeControlCharacters, formatBytes, formatNumber, formatTable, shellWord, UserError } from './output';
import { sluiceCommand } from './invocation';
import { io } from './progress';
import { signalExitCode, takeInterrupts } from './interrupt';
import { sleep } from './sleep';

interface LocalFlags {
  context?: string[];
  dataDir?: string;
  host?: string;
  firehosePort?: string;
  kinesisPort?: string;
  dynamoPort?: string;
  bufferInterval?: string;
}

/** Ctrl-C and SIGTERM while this process runs a twin: see takeStopSignals. */
interface StopSignals {
  /** Aborts at the first signal, with the signal's name ('SIGINT', 'SIGTERM') as its reason. */
  readonly requested: AbortSignal;
  /** The data dir's lock, for a second signal to let go of before it exits; until it is given, there is none to let go. */
  holding(release: () => void): void;
  /** Stops taking the signals: from then on they are taken Node's way. */
  dispose(): void;
}

/**
 * Takes SIGINT and SIGTERM with one listener until dispose(): between a first and a second listener Node would take a
 * signal its default way, and a second SIGTERM (GNU `timeout` sends two, microseconds apart) would kill the twin
 * mid-flush. The first signal is a request to stop (`onFirst` says what follows), which the caller acts on. A second
 * exits at once, as after a crash: what was acknowledged and not delivered yet stays in the write-ahead logs, the
 * streams and the error objects, and the next start (`nextStart`) delivers it. The lock goes: a twin.pid naming a
 * process that is gone would be taken over by the next start all the same. `lineOpen`: whether stderr ends in an
 * unfinished progress line just then, which the second signal's line must not join. `flushed`: whether the flush is
 * over, so that a second signal leaves nothing to deliver and its line says so.
 */
function takeStopSignals(
  dataDir: string,
  onFirst: (signal: NodeJS.Signals) => void,
  {
    nextStart = 'the next start',
    lineOpen = () => false,
    flushed = () => false,
  }: { nextStart?: string; lineOpen?: () => boolean; flushed?: () => boolean } = {},
): StopSignals {
  const requested = new AbortController();
  let release: (() => void) | undefined;
  const dispose = takeInterrupts(({ signal }) => {
    onFirst(signal);
    requested.abort(signal);
  }, (signal) => {
    const left = flushed()
      ? `everything was flushed; the data stays in ${dataDir}`
      : `records not yet delivered stay in ${dataDir} and are delivered at ${nextStart}`;
    console.error(`${lineOpen() ? '\n' : ''}sluice: second ${signal}: exiting now; ${left}`);
    try {
      release?.();
    } finally {
      process.exit(signalExitCode(signal));
    }
  });
  return { requested: requested.signal, holding: (held) => (release = held), dispose };
}

type TwinPorts = NonNullable<TwinOptions['ports']>;

type LocalPortKey = 'firehosePort' | 'kinesisPort' | 'dynamoPort';

/** One of the twin's servers: where its port comes from, and what help, messages and the endpoints table call it. */
interface TwinServer {
  readonly key: keyof TwinPorts & keyof Twin['endpoints'];
  /** The port flag's attribute and cdk.json's `local.<setting>`. */
  readonly setting: LocalPortKey;
  readonly flag: string;
  readonly variable: string;
  /** In the port flag's help. */
  readonly portHelp: string;
  /** In the message that its port is in use. */
  readonly service: string;
  /** Its row in the endpoints table `local up` prints. */
  readonly label: string;
}

/** The twin's servers: every list of them (ports, flags, the endpoints table) is made from this one. */
const TWIN_SERVERS: readonly TwinServer[] = [
  { key: 'firehose', setting: 'firehosePort', flag: '--firehose-port', variable: 'SLUICE_FIREHOSE_PORT', portHelp: 'Firehose API port', service: 'Firehose API', label: 'Firehose API (AWS JSON 1.1)' },
  { key: 'kinesis', setting: 'kinesisPort', flag: '--kinesis-port', variable: 'SLUICE_KINESIS_PORT', portHelp: 'Kinesis emulator port', service: 'Kinesis emulator', label: 'Kinesis (kinesis-mock)' },
  { key: 'dynamo', setting: 'dynamoPort', flag: '--dynamo-port', variable: 'SLUICE_DYNAMO_PORT', portHelp: 'DynamoDB (dynalite) port', service: 'DynamoDB emulator', label: 'DynamoDB (dynalite)' },
];

/** The port of each server, as `portOf` reads it. */
function twinPorts(portOf: (server: TwinServer) => number): TwinPorts {
  return Object.fromEntries(TWIN_SERVERS.map((server) => [server.key, portOf(server)]));
}

/** `local up`'s ports: each flag, else its variable, else cdk.json's; a bad value is refused naming where it came from. */
function localUpPorts(flags: LocalFlags, config: SluiceConfig): TwinPorts {
  return twinPorts((s) => parsePort(flags[s.setting], s.flag) ?? parsePort(process.env[s.variable], s.variable) ?? config.local[s.setting]);
}

/** The demo's ports: each flag, else any free port, so that it never collides with a twin already running. */
function demoPorts(flags: LocalFlags): TwinPorts {
  return twinPorts((s) => parsePort(flags[s.setting], s.flag) ?? 0);
}

function twinOptions(flags: LocalFlags, config: SluiceConfig, dataDir: string, ports: TwinPorts): TwinOptions {
  const host = flags.host ?? process.env.SLUICE_HOST ?? '127.0.0.1';
  return { config, dataDir, host, ports, openSearchUrl: process.env.OPENSEARCH_URL || undefined, sluiceCommand: sluiceCommand() };
}

/**
 * The configuration a twin runs with: the command's, with `bufferInterval` (--buffer-interval, or the demo's own) when
 * given. Refused while the generated code of one of its pipelines is not of its schema file: the twin validates with it.
 */
function twinConfig(flags: LocalFlags, bufferInterval: string | undefined): SluiceConfig {
  const config = configFrom(flags);
  const seconds = bufferInterval === undefined ? config.local.bufferIntervalSeconds : Number(bufferInterval);
  if (!Number.isFinite(seconds) || seconds < 0 || seconds > MAX_LOCAL_BUFFER_INTERVAL_SECONDS) {
    throw new UserError(`--buffer-interval: "${bufferInterval}" must be 0–${MAX_LOCAL_BUFFER_INTERVAL_SECONDS} seconds`);
  }
  requireGeneratedCode(Object.keys(config.pipelines));
  return { ...config, local: { ...config.local, bufferIntervalSeconds: seconds } };
}

/** The demo's buffer interval unless --buffer-interval is given: its flush comes quickly whatever cdk.json says. */
const DEMO_BUFFER_INTERVAL_SECONDS = 1;

/** The columns of the demo's summary, one row per pipeline (the README's `npm start` paragraph names them). */
export const DEMO_SUMMARY_COLUMNS = [
  'pipeline', 'sent', 'sent rec/s', 'parquet rows', 'processing-failed', 'conversion-failed', 'dropped', 'DLQ messages', 'files', 'bytes', 'search docs', 'consumer records',
] as const;

/**
 * What the help of `local up` and of the demo says of the defaults they take, which differ. `config` is the
 * configuration the command would run with, undefined when it cannot be read (the help then names the setting).
 */
interface LocalOptionDefaults {
  readonly dataDir: string;
  port(key: LocalPortKey, variable: string, config: SluiceConfig | undefined): string;
  bufferInterval(config: SluiceConfig | undefined): string;
}

const LOCAL_UP_DEFAULTS: LocalOptionDefaults = {
  dataDir: '.sluice/ here, env SLUICE_DATA_DIR',
  port: (key, variable, config) => `default ${configured(config?.local[key], `local.${key}`)}; env ${variable}; 0 = any free port`,
  bufferInterval: (config) => `default ${configured(config && `${config.local.bufferIntervalSeconds} s`, 'local.bufferIntervalSeconds')}`,
};

const DEMO_DEFAULTS: LocalOptionDefaults = {
  dataDir: 'a new sluice-demo-* directory under the system temp dir, kept for `sluice query --data-dir`',
  port: (_key, variable) => `default any free port; ${variable} is not read`,
  bufferInterval: () => `default ${DEMO_BUFFER_INTERVAL_SECONDS} s, for a quick flush; cdk.json's local.bufferIntervalSeconds is not read`,
};

/** "4573 from local.firehosePort in cdk.json or -c"; without the value when the configuration cannot be read. */
function configured(value: string | number | undefined, setting: string): string {
  return `${value === undefined ? '' : `${value} from `}${setting} in cdk.json or -c`;
}

function addLocalOptions(command: Command, defaults: LocalOptionDefaults): Command {
  addConfigOption(command)
    .option('--data-dir <dir>', `where the twin keeps its data (default ${defaults.dataDir})`)
    .option('--host <address>', 'address the servers bind (default 127.0.0.1, loopback only; env SLUICE_HOST)');
  for (const server of TWIN_SERVERS) command.option(`${server.flag} <port>`, server.portHelp);
  command.option('--buffer-interval <seconds>', 'Firehose buffer interval for local delivery');
  const saysDefault = new Map<string, (config: SluiceConfig | undefined) => string>([
    ...TWIN_SERVERS.map((s) => [s.setting, (config: SluiceConfig | undefined) => defaults.port(s.setting, s.variable, config)] as const),
    ['bufferInterval', (config) => defaults.bufferInterval(config)],
  ]);
  // The defaults the configuration sets are written when the help is shown: cdk.json's, with the -c given (before or after --help).
  return command.configureHelp({
    optionDescription(this: Help, option: Option): string {
      const described = Help.prototype.optionDescription.call(this, option);
      const says = saysDefault.get(option.attributeName());
      return says === undefined ? described : `${described} (${says(configForHelp(command))})`;
    },
  });
}

/** The configuration each command's help read: it asks option by option, and for its examples, and reads it once. */
const configsForHelp = new WeakMap<Command, SluiceConfig | undefined>();

/** The configuration `command` would run with, as far as its help can tell; undefined when it cannot be read. */
function configForHelp(command: Command): SluiceConfig | undefined {
  if (configsForHelp.has(command)) return configsForHelp.get(command);
  let config: SluiceConfig | undefined;
  try {
    config = configFrom(command.opts<LocalFlags>());
  } catch (error) {
    // The command itself says what is wrong with it: its help is still shown.
    if (!(error instanceof ConfigError)) throw error;
  }
  configsForHelp.set(command, config);
  return config;
}

export function registerLocalCommands(program: Command): void {
  const local = program.command('local').description('the local twin: the whole pipeline on this machine');
  addLocalOptions(local.command('up'), LOCAL_UP_DEFAULTS)
    .description('run the local twin until Ctrl-C (SIGINT) or SIGTERM, then flush every buffer and exit 0')
    // The example puts to the port and the stream the configuration names, as the port flags' defaults say.
    .addHelpText('after', ({ command }) => {
      const config = configForHelp(command);
      const port = config?.local.firehosePort ?? '<local.firehosePort>';
      const stream = config ? resourceNames(config, 'app-events').lakeDeliveryStream : '<prefix>-<env>-app-events-lake';
      return examples(
        'sluice local up',
        'sluice local up --data-dir /tmp/sluice --firehose-port 0',
        // AWS CLI v2 takes --record's Data as base64 unless told otherwise.
        `aws firehose put-record --endpoint-url http://127.0.0.1:${port} --delivery-stream-name ${stream} --cli-binary-format raw-in-base64-out \\\n`
          + '    --record \'{"Data":"{\\"event_id\\":\\"5f0c6d3e-1b2a-4c3d-8e9f-0a1b2c3d4e5f\\",\\"user_id\\":\\"u1\\",\\"event_type\\":\\"login\\",\\"timestamp\\":\\"2026-11-22T10:00:00Z\\"}"}\'',
      );
    })
    .action(async (flags: LocalFlags) => {
      const config = twinConfig(flags, flags.bufferInterval);
      const dataDir = dataDirPath(flags.dataDir ?? process.env.SLUICE_DATA_DIR ?? defaultDataDir());
      const { twin, release } = await startLockedTwin(twinOptions(flags, config, dataDir, localUpPorts(flags, config)));
      // Taken before the line that says it runs: a supervisor may send SIGTERM as soon as it reads it, and a signal with
      // no listener yet would end the process unflushed. On stderr, as every command's status lines are: stdout holds
      // the endpoints and the summary.
      const stop = takeStopSignals(dataDir, (signal) => console.error(`\n${signal}: flushing… (${againExits(signal)} at once and leaves the rest for the next start)`));
      stop.holding(release);
      printEndpoints(twin, config);
      console.log('\nRunning. Ctrl-C stops taking records, flushes every buffer and exits.');
      await once(stop.requested, 'abort');
      try {
        await twin.stop();
      } finally {
        stop.dispose();
        release();
      }
      printSummary(twin.summary(), await twin.dlqCount(), twin.leftInS3());
    });

  addLocalOptions(program.command('demo'), DEMO_DEFAULTS)
    .description('start the twin in a fresh data dir (a --data-dir must be new or empty), send realistic traffic (a few % bad) to every pipeline, flush, and report what happened')
    .option('--count <n>', 'records per pipeline', '300')
    .option('--bad-rate <fraction>', 'share of bad records', '0.04')
    .addHelpText('after', examples('npm start', 'sluice demo --count 1000 --data-dir /tmp/sluice-demo'))
    .action((flags: LocalFlags & { count: string; badRate: string }) => runDemo(flags));
}

/**
 * Checks what a start needs before anything starts, so a user meets one line that says what to do
 * instead of a stack trace half-way through: the data dir is (or can be made) a directory, no other
 * twin uses it, and every port is free on the host. Returns the release of the data dir's lock.
 * `portVariables`: whether the ports come from SLUICE_*_PORT too (local up's do, the demo's do not).
 */
async function preflight(options: TwinOptions, { portVariables = true }: { portVariables?: boolean } = {}): Promise<() => void> {
  const { dataDir } = options;
  if (fs.existsSync(dataDir) && !fs.statSync(dataDir).isDirectory()) {
    throw new UserError(`--data-dir ${dataDir} is a file, not a directory: give a directory (it is created if missing)`);
  }
  // A data dir a newer Sluice wrote: refused before the lock or anything else is written in it.
  checkDataFormat(dataDir);
  // Before the ports: a second start on the same ports would otherwise be told of a port in use, when what stops it
  // is the data dir (on other ports it would run, and corrupt it). The lock taken below settles starts racing past this.
  const holder = twinLockHolder(dataDir);
  if (holder !== undefined && holder !== process.pid) throw dataDirInUse(dataDir, holder);
  const host = options.host ?? '127.0.0.1';
  const hostProblem = await listenProblem(host, 0);
  if (hostProblem !== undefined) throw badHost(host, hostProblem);
  for (const server of TWIN_SERVERS) {
    const port = options.ports?.[server.key];
    if (port === undefined || port === 0) continue;
    const problem = await listenProblem(host, port);
    if (problem?.code === 'EADDRINUSE') {
      const choose = portVariables ? `${server.flag} or ${server.variable} (0 = any free port)` : `${server.flag} (or leave it out: any free port)`;
      throw new UserError(`port ${port} on ${host} (${server.service}) is in use, perhaps by another twin: stop it, or choose another port with ${choose}`);
    }
    if (problem !== undefined) throw badHost(host, problem);
  }
  try {
    makeDirectories(dataDir, { mode: DATA_DIR_MODE });
  } catch (error) {
    throw new UserError(`--data-dir ${dataDir} cannot be created: ${(error as Error).message}`);
  }
  return lockDataDir(dataDir);
}

/** A --host (or SLUICE_HOST) nothing can listen on: a name that does not resolve (ENOTFOUND), an address not this machine's (EADDRNOTAVAIL). */
function badHost(host: string, problem: NodeJS.ErrnoException): UserError {
  return new UserError(`--host ${host}: cannot listen there (${problem.code ?? problem.message}): give an address of this machine, e.g. 127.0.0.1`);
}

/**
 * The twin, after the preflight, holding its data dir: `release` lets it go once the twin has stopped (or failed to start).
 * `checkHeld` runs once the data dir is held, before anything starts; `holding` is given `release` then too (a second
 * signal while the twin starts lets the data dir go with it). `portVariables`: as preflight takes it.
 */
async function startLockedTwin(
  options: TwinOptions,
  { checkHeld, holding, portVariables }: { checkHeld?: (dataDir: string) => void; holding?: (release: () => void) => void; portVariables?: boolean } = {},
): Promise<{ twin: Twin; release: () => void }> {
  const release = await preflight(options, { portVariables });
  holding?.(release);
  try {
    checkHeld?.(options.dataDir);
    return { twin: await startTwin(options), release };
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * The demo reports what it finds after sending (DLQ messages, Parquet rows, records a write-ahead log kept
 * from an earlier run), and says every record it sent is accounted for. Earlier runs' data would mix into those
 * numbers and fail the check for records this run never sent, so the demo takes an empty data dir only (a
 * twin's bookkeeping aside: twin.pid, twin.json, the format's file). That also keeps its test traffic out of a data dir `local up` uses.
 */
function refuseDataDirWithData(dataDir: string): void {
  const entries = fs.readdirSync(dataDir).filter((name) => !isTwinBookkeeping(name)).sort();
  if (entries.length === 0) return;
  const named = entries.slice(0, 3).join(', ') + (entries.length > 3 ? ', …' : '');
  throw new UserError(`--data-dir ${dataDir} already holds data (${named}): the demo counts only what it sends, so it needs an empty data dir. `
    + `Give a new or empty --data-dir (or delete this one), or leave --data-dir out for a new one under ${os.tmpdir()}`);
}

/** What lockDataDir needs to know about processes; tests replace it to stage races. */
export type LockOptions = PidLockOptions;

/** One twin per data dir: two would write the same write-ahead logs, checkpoints and DLQ files. `<data-dir>/twin.pid` names the running one. */
export function lockDataDir(dataDir: string, options: LockOptions = {}): () => void {
  const file = twinLockPath(dataDir);
  return takePidLock(file, {
    inUse: (holder) => dataDirInUse(dataDir, holder),
    cannot: (what, cause) => new UserError(`--data-dir ${dataDir}: cannot ${what} ${file}: ${cause.message}`),
    contended: () => new UserError(`--data-dir ${dataDir}: could not take ${file} over (other starts kept changing it); try again`),
  }, options);
}

/**
 * The refusal of a data dir that the live process `holder` holds (its twin.pid), naming where that twin listens when its
 * twin.json says (a twin still starting has not written it yet). A pid the system gave to another process since is
 * possible where neither /proc nor `ps` says when a process started, or for an older Sluice's lock, hence the last resort.
 */
function dataDirInUse(dataDir: string, holder: number): UserError {
  const record = readLiveTwinRecord(dataDir); // not one an earlier twin with the same pid left
  const endpoints = record?.pid === holder ? record.endpoints : undefined;
  const where = endpoints
    ? `; Firehose ${endpoints.firehose}, Kinesis ${endpoints.kinesis}${endpoints.dynamo ? `, DynamoDB ${endpoints.dynamo}` : ''}`
    : '';
  return new UserError(`--data-dir ${dataDir} is in use by a running twin (pid ${holder}${where}): two twins on one data dir would corrupt its write-ahead logs and checkpoints. `
    + `Stop that twin (Ctrl-C where it runs, or \`kill ${holder}\`: it flushes, then exits), or give this one another --data-dir (if no twin runs there, delete ${twinLockPath(dataDir)})`);
}

function printEndpoints(twin: Twin, config: SluiceConfig): void {
  console.log(`Sluice local twin — data dir ${escapeControlCharacters(twin.dataDir)}`);
  console.log(formatTable(['service', 'endpoint'], TWIN_SERVERS.map((s) => [s.label, twin.endpoints[s.key]])));
  // kinesis-mock keeps streams per region: a client in another region finds none of the twin's.
  console.log(`AWS CLIs and SDKs: --endpoint-url one of these, region ${localRegion()} (AWS_REGION at the start, else us-east-1), any credentials`);
  console.log('\nDelivery streams');
  const rows: string[][] = [];
  for (const [p, pc] of Object.entries(config.pipelines)) {
    const n = resourceNames(config, p);
    rows.push([p, pc.source, pc.source === 'kinesis' ? n.stream : '—', n.lakeDeliveryStream, pc.destinations.join(', ')]);
  }
  console.log(formatTable(['pipeline', 'source', 'kinesis stream', 'lake delivery stream', 'destinations'], rows));
}

/** Error objects named in the summary; the router's log lines name them all. */
const FILES_SHOWN = 10;

function printSummary(summary: ReturnType<Twin['summary']>, dlq: DlqCounts, leftInS3: LeftInS3): void {
  console.log(formatTable(
    ['pipeline', 'received', 'parquet rows', 'processing-failed', 'conversion-failed', 'dropped', 'files', 'bytes', 'search docs', 'metadata ok'],
    summary.map((s) => [
      s.pipeline, s.lake?.received ?? 0, s.lake?.deliveredRows ?? 0, s.lake?.processingFailed ?? 0,
      (s.lake?.formatConversionFailed ?? 0) + (s.lake?.partitioningFailed ?? 0), s.lake?.dropped ?? 0, s.lake?.files ?? 0,
      formatBytes(s.lake?.bytes ?? 0), s.search?.deliveredRows ?? null, metadataRecorded(s),
    ]),
  ));
  printConsumerSkipped(summary, 'metadata ok');
  // The DLQ files keep every run's messages until they are replayed or removed.
  printDeadLetters(dlq, leftInS3, 'in the data dir\'s DLQ files, this run and earlier ones');
}

/** Records the metadata consumer wrote to DynamoDB (or found there already); null for a pipeline without it. */
function metadataRecorded(s: ReturnType<Twin['summary']>[number]): number | null {
  return s.metadata ? s.metadata.recordsSucceeded - s.metadata.recordsSkipped : null;
}

/**
 * The records the metadata consumer skipped as malformed, under the table whose `column` leaves them out: they have
 * no DynamoDB item, and counted there they made the column more than the table holds. Column + skipped = taken.
 */
function printConsumerSkipped(summary: ReturnType<Twin['summary']>, column: string): void {
  const skipped = summary.filter((s) => (s.metadata?.recordsSkipped ?? 0) > 0);
  if (skipped.length === 0) return;
  const total = skipped.reduce((n, s) => n + s.metadata!.recordsSkipped, 0);
  const each = skipped.map((s) => `${s.pipeline} ${formatNumber(s.metadata!.recordsSkipped)}`).join(', ');
  console.log(`(${column}: records the metadata consumer recorded in DynamoDB; it skipped ${formatNumber(total)} more as malformed: ${each})`);
}

/**
 * The DLQ line, `where` in its parentheses, and what the failure router left in S3 only. A pointer to an over-long
 * line is no Firehose record (none is that long): it is counted apart, as the stack's OverlongErrorLines metric counts it.
 */
function printDeadLetters(dlq: DlqCounts, leftInS3: LeftInS3, where: string): void {
  const pointers = dlq.overlongLinePointers > 0
    ? `, ${howMany(dlq.overlongLinePointers, 'pointer')} to error lines too long to read (errorCode Sluice.ErrorLineTooLong: `
      + 'damaged or foreign lines, maybe no record at all; each names its line in S3)'
    : '';
  console.log(`DLQ messages: ${howMany(dlq.records, 'failed record')}${pointers}, ${formatNumber(dlq.consumer)} consumer batch${dlq.consumer === 1 ? '' : 'es'} (${where})`);
  // Error objects the router gave up on while the twin stopped (the DLQ could not be written): their records are in
  // S3 and reach the DLQ at the next start on this data dir, which routes every error object not marked wholly routed.
  const { notYetRouted } = leftInS3;
  if (notYetRouted.length > 0) {
    console.log(`Not in the DLQ yet: ${howMany(notYetRouted.length, 'error object')} the failure router could not finish routing before the stop `
      + '(its log lines on stderr say why); the next start on this data dir routes them:');
    printFiles(notYetRouted);
  }
  // What the router could not route has no DLQ message, only its ERROR log line: said here, or it would go unseen.
  const { unreadableLines, damagedObjects, files } = leftInS3;
  if (files.length === 0) return;
  const what = [
    unreadableLines > 0 ? `${howMany(unreadableLines, 'error line')} that no error record can be read from (not JSON, or no rawData)` : '',
    damagedObjects > 0 ? `the rest of ${howMany(damagedObjects, 'gzip object')} damaged or cut off` : '',
  ].filter(Boolean).join(' and ');
  console.log(`Not in the DLQ, left in S3 only: ${what}, in ${howMany(files.length, 'error object')} the failure router read this run `
    + '(its "level":"ERROR" log lines on stderr give each line and why):');
  printFiles(files);
}

function printFiles(files: readonly string[]): void {
  for (const file of files.slice(0, FILES_SHOWN)) console.log(`  ${escapeControlCharacters(file)}`);
  if (files.length > FILES_SHOWN) console.log(`  … and ${files.length - FILES_SHOWN} more`);
}

/** "1 error line", "2 error lines". */
function howMany(n: number, noun: string): string {
  return `${formatNumber(n)} ${noun}${n === 1 ? '' : 's'}`;
}

/** Where the demo is: what a first signal stops, and so what its line says, depends on it. */
type DemoStage = 'starting' | 'sending' | 'flushing' | 'reporting' | 'querying';

const FIRST_SIGNAL_SAYS: Record<DemoStage, (signal: NodeJS.Signals) => string> = {
  starting: (signal) => `stopping once the twin is up; no records are sent (${againExits(signal)} at once)`,
  sending: (signal) => `stopping; no more records are sent, those accepted are flushed (${againExits(signal)} at once and leaves the rest in the data dir)`,
  flushing: (signal) => `every record was sent; the flush goes on, then the report, without the query (${againExits(signal)} at once and leaves the rest in the data dir)`,
  reporting: () => 'every record was sent and flushed; the report ends without the query',
  querying: () => 'every record was sent and flushed; the query is stopped and its results are not shown',
};

/** What a second signal after `first` does: any signal but the same SIGTERM delivered twice (see REPEATED_SIGTERM_MS). */
function againExits(first: NodeJS.Signals): string {
  return first === 'SIGTERM' ? 'Ctrl-C, or a SIGTERM 2 s on, exits' : 'Ctrl-C again exits';
}

/**
 * The demo's stage, and its writes to stderr. A terminal's progress line, and the flush's line waiting for its time
 * in a log, are left unfinished: a signal's line must start a line of its own then, and only then (a blank line
 * in a log otherwise).
 */
class DemoProgress {
  stage: DemoStage = 'starting';
  private unfinished = false;

  /** Whether the last write left its line unfinished. */
  get lineOpen(): boolean {
    return this.unfinished;
  }

  write(text: string): void {
    process.stderr.write(text);
    this.unfinished = !text.endsWith('\n');
  }

  /** Ends the line, if one is unfinished. */
  endLine(): void {
    if (this.unfinished) this.write('\n');
  }
}

/**
 * Runs the demo; a record that is not accounted for fails it (UserError, exit 1) after the report. A first Ctrl-C
 * or SIGTERM stops sending: what was accepted is flushed and reported, and the demo ends interrupted (130, 143) without
 * the query and the accounting check, which a partial send would fail. One after the sending lets the flush finish;
 * one during the query stops it, its results unshown. A second exits at once, as `local up`'s does.
 */
async function runDemo(flags: LocalFlags & { count: string; badRate: string }): Promise<void> {
  const count = Number(flags.count);
  const badRate = Number(flags.badRate);
  if (!Number.isInteger(count) || count < 1 || count > 100_000) throw new UserError(`--count: "${flags.count}" must be a whole number 1–100000`);
  if (!(badRate >= 0 && badRate <= 1)) throw new UserError(`--bad-rate: "${flags.badRate}" must be between 0 and 1`);
  const config = twinConfig(flags, flags.bufferInterval ?? String(DEMO_BUFFER_INTERVAL_SECONDS));
  const ports = demoPorts(flags);
  // Every pipeline's records before anything starts: a schema the sampler cannot draw from is said with nothing
  // started or sent, not after the twin started and the pipelines before it were sent to.
  const traffic = demoTraffic(config, count, badRate);
  const madeDataDir = flags.dataDir === undefined;
  const dataDir = flags.dataDir !== undefined ? dataDirPath(flags.dataDir) : path.resolve(makeTempFolder('sluice-demo-', 'the demo\'s data dir'));
  try {
    await demoIn(twinOptions(flags, config, dataDir, ports), traffic);
  } catch (error) {
    // A demo that failed before anything was written (a port in use, a bad --host) leaves no empty sluice-demo-* dir
    // behind; one that holds data stays, for `sluice query --data-dir`, and so does a --data-dir given.
    if (madeDataDir && !removeIfEmpty(dataDir) && error instanceof Error && !error.message.includes(dataDir)) {
      // The message is all a failure prints: the demo's own data dir is named in it, not left unnamed in the temp dir.
      error.message = `${error.message} (the demo's data dir ${escapeControlCharacters(dataDir)} keeps what it wrote)`;
    }
    throw error;
  }
}

/** Each pipeline's demo records, as the demo sends them: seeded per pipeline, so every run sends the same. */
type DemoTraffic = ReadonlyMap<string, readonly Buffer[]>;

/** The demo's records for every pipeline; a schema the sampler cannot draw from is a UserError naming the pipeline and the field. */
function demoTraffic(config: SluiceConfig, count: number, badRate: number): DemoTraffic {
  const traffic = new Map<string, Buffer[]>();
  for (const pipeline of Object.keys(config.pipelines)) {
    const schema = readSchema(pipeline);
    const rng = createRng(pipeline.length * 7919 + 1);
    const records: Buffer[] = [];
    let bad = 0;
    const draw = <T>(sample: () => T): T => drawSample(pipeline, sample, '; nothing was started (the demo draws every configured pipeline\'s records before it starts)');
    for (let i = 0; i < count; i++) {
      if (rng() < badRate) {
        records.push(draw(() => badRecordBytes(schema, BAD_RECORD_KINDS[bad % BAD_RECORD_KINDS.length], rng)));
        bad++;
      } else {
        records.push(Buffer.from(JSON.stringify(draw(() => sampleRecord(schema, rng)))));
      }
    }
    traffic.set(pipeline, records);
  }
  return traffic;
}

/** Removes `dir` if it is empty: rmdir refuses one that holds anything, which then stays. Whether it is gone. */
function removeIfEmpty(dir: string): boolean {
  try {
    fs.rmdirSync(dir);
    return true;
  } catch {
    // Not empty: it stays.
    return !fs.existsSync(dir);
  }
}

/** Seconds since `start`, a `performance.now()`: every time the demo prints is on the monotonic clock. */
const secondsSince = (start: number): number => (performance.now() - start) / 1000;

/** The demo in the data dir `options` names, once its flags have been read. */
async function demoIn(options: TwinOptions, traffic: DemoTraffic): Promise<void> {
  const { config, dataDir } = options;
  const started = performance.now();
  const progress = new DemoProgress();
  // Taken from before the twin starts: a signal while it starts stops the demo once it is up, rather than killing the
  // process with the twin half started (its twin.pid left behind, kinesis-mock saving on after it).
  const stop = takeStopSignals(
    dataDir,
    (signal) => progress.write(`${progress.lineOpen ? '\n' : ''}${signal}: ${FIRST_SIGNAL_SAYS[progress.stage](signal)}\n`),
    {
      nextStart: `the next \`${sluiceCommand()} local up --data-dir ${escapeControlCharacters(shellWord(dataDir))}\``,
      lineOpen: () => progress.lineOpen,
      flushed: () => progress.stage === 'reporting' || progress.stage === 'querying',
    },
  );
  try {
    const { twin, release } = await startLockedTwin(options, { checkHeld: refuseDataDirWithData, holding: stop.holding, portVariables: false });
    let stopping: Promise<void> | undefined;
    const stopTwin = () => (stopping ??= twin.stop());
    try {
      await demoOnTwin(twin, stopTwin, config, traffic, started, stop.requested, progress);
    } finally {
      try {
        await stopTwin();
      } finally {
        release();
      }
    }
  } finally {
    stop.dispose();
  }
}

/**
 * The demo's traffic, flush (`stopTwin`) and report on a running twin; it stops sending when `interrupted` aborts.
 * `progress` takes its writes to stderr and the stage it is in. `started` is on the monotonic clock (`performance.now()`),
 * as every time the demo prints: the wall clock set forward or back meanwhile (NTP, a resumed laptop) changes none.
 */
async function demoOnTwin(
  twin: Twin, stopTwin: () => Promise<void>, config: SluiceConfig, traffic: DemoTraffic, started: number, interrupted: AbortSignal, progress: DemoProgress,
): Promise<void> {
  const { dataDir } = twin;
  progress.stage = 'sending';
  console.log(`Local twin up in ${secondsSince(started).toFixed(1)} s — data dir ${escapeControlCharacters(dataDir)}`);
  const kinesis = kinesisClient(twin.endpoints.kinesis);
  const firehose = firehoseClient(twin.endpoints.firehose);
  const sent = new Map<string, { records: number; seconds: number }>();
  const tty = io.stderrIsTTY();
  const sendStarted = performance.now();
  for (const [pipeline, p] of Object.entries(config.pipelines)) {
    if (interrupted.aborted) break;
    const records = traffic.get(pipeline) ?? [];
    const names = resourceNames(config, pipeline);
    const pipelineStarted = performance.now();
    let accepted = 0;
    // A stop finishes the call in flight: what it accepted is in the pipeline, and counted; what it refused is not retried.
    for (let i = 0; i < records.length && !interrupted.aborted; i += 500) {
      let batch = records.slice(i, i + 500);
      for (let attempt = 0; batch.length > 0 && !interrupted.aborted; attempt++) {
        if (attempt > 10) throw new Error(`${pipeline}: records still refused after ${attempt} attempts`);
        let failed: number[];
        if (p.source === 'kinesis') {
          const out = await kinesis.send(new PutRecordsCommand({
            StreamName: names.stream, Records: batch.map((data, j) => ({ Data: data, PartitionKey: `pk-${i + j}` })),
          }));
          failed = (out.Records ?? []).flatMap((r, j) => (r.ErrorCode ? [j] : []));
        } else {
          const out = await firehose.send(new PutRecordBatchCommand({
            DeliveryStreamName: names.lakeDeliveryStream, Records: batch.map((data) => ({ Data: data })),
          }));
          failed = (out.RequestResponses ?? []).flatMap((r, j) => (r.ErrorCode ? [j] : []));
        }
        accepted += batch.length - failed.length;
        batch = failed.map((j) => batch[j]);
        if (batch.length > 0) await sleep(100 * 2 ** attempt, interrupted);
      }
      const line = `  sent ${accepted}/${records.length} ${pipeline} (${p.source === 'kinesis' ? 'Kinesis PutRecords' : 'Firehose PutRecordBatch'})`;
      // A terminal gets one line rewritten per batch; a log or pipe only each pipeline's last.
      if (tty) progress.write(`\r${line}   `);
      else if (i + 500 >= records.length || interrupted.aborted) progress.write(line);
    }
    progress.endLine();
    sent.set(pipeline, { records: accepted, seconds: secondsSince(pipelineStarted) });
  }
  const sendSeconds = secondsSince(sendStarted);
  const flushStarted = performance.now();
  const flushSeconds = (digits = 1) => secondsSince(flushStarted).toFixed(digits);
  let flushedIn: string | undefined;
  progress.stage = 'flushing';
  const ticker = tty ? setInterval(() => progress.write(`\r  flushing buffers, readers and error routing… ${flushSeconds(0)} s`), 1000) : undefined;
  try {
    progress.write('  flushing buffers, readers and error routing…');
    await stopTwin();
    flushedIn = flushSeconds();
    // On a terminal the ticking line is written once more, with the time to a tenth (also after a flush under a second).
    // In a log, a signal during the flush wrote its line under this one: the time goes on a line of its own.
    if (tty) progress.write(`\r  flushing buffers, readers and error routing… ${flushSeconds()} s`);
    else progress.write(progress.lineOpen ? ` ${flushSeconds()} s` : `  flushed after ${flushSeconds()} s`);
  } finally {
    clearInterval(ticker);
    progress.endLine();
  }
  progress.stage = 'reporting';
  const elapsed = secondsSince(started);
  const summary = twin.summary();
  const dlq = await twin.dlqCountByPipeline();

  const sentTo = (pipeline: string) => sent.get(pipeline) ?? { records: 0, seconds: 0 };
  const rows = summary.map((s) => {
    const l = s.lake!;
    const failed = l.processingFailed + l.formatConversionFailed + l.partitioningFailed;
    return [s.pipeline, sentTo(s.pipeline).records, l.deliveredRows, l.processingFailed,
      l.formatConversionFailed + l.partitioningFailed, l.dropped, l.files, formatBytes(l.bytes), s.search?.deliveredRows ?? null,
      metadataRecorded(s), failed, dlq.byPipeline.get(s.pipeline) ?? 0, throughput(sentTo(s.pipeline))];
  });
  const totalSent = [...sent.values()].reduce((a, s) => a + s.records, 0);
  console.log(`\nSent ${formatNumber(totalSent)} records in ${sendSeconds.toFixed(1)} s and flushed them in ${flushedIn} s; ${elapsed.toFixed(1)} s since the demo started.\n`);
  console.log(formatTable(
    [...DEMO_SUMMARY_COLUMNS],
    rows.map((r) => [r[0], r[1], r[12], r[2], r[3], r[4], r[5], r[11], r[6], r[7], r[8], r[9]]),
  ));
  printConsumerSkipped(summary, 'consumer records');
  const withSearch = summary.filter((s) => s.search).map((s) => s.pipeline);
  if (withSearch.length > 0) console.log(`(${withSearch.join(', ')}: the lake and the search delivery streams each route their failed records to the DLQ)`);
  console.log('');
  const leftInS3 = twin.leftInS3();
  printDeadLetters(dlq, leftInS3, escapeControlCharacters(path.join(dataDir, 'dlq')));

  if (!interrupted.aborted) {
    progress.stage = 'querying';
    await printAthenaQuery(dataDir, config, interrupted);
  }
  if (interrupted.aborted) {
    const signal = interrupted.reason as NodeJS.Signals;
    throw new UserError(`interrupted (${signal === 'SIGINT' ? 'Ctrl-C' : signal}): ${formatNumber(totalSent)} of `
      + `${formatNumber([...traffic.values()].reduce((n, records) => n + records.length, 0))} records sent, then flushed; the data dir keeps them: \`${sluiceCommand()} query "…" --data-dir ${shellWord(dataDir)}\``, signalExitCode(signal));
  }

  // Every record ends in exactly one place: a row, an error object, or a documented drop.
  const unaccounted = rows.filter((r) => (r[1] as number) !== (r[2] as number) + (r[10] as number) + (r[5] as number));
  // The search stream's failures are routed to the same DLQ.
  const totalFailed = rows.reduce((a, r) => a + (r[10] as number), 0)
    + summary.reduce((a, s) => a + (s.search ? s.search.processingFailed + s.search.searchFailed + s.search.formatConversionFailed + s.search.partitioningFailed : 0), 0);
  if (unaccounted.length > 0) {
    throw new UserError(`records unaccounted for in ${unaccounted.map((r) => r[0]).join(', ')}: sent ≠ rows + failed + dropped`, 1);
  }
  // dlq.records leaves out the router's pointers to over-long error lines: they stand for no record the demo sent.
  if (dlq.records !== totalFailed) {
    const pending = leftInS3.notYetRouted.length > 0 && dlq.records < totalFailed
      ? `; the rest are in the error objects not routed yet (above), which \`${sluiceCommand()} local up --data-dir ${escapeControlCharacters(shellWord(dataDir))}\` routes`
      : '';
    throw new UserError(`${formatNumber(totalFailed)} failed records but ${formatNumber(dlq.records)} DLQ messages${pending}`, 1);
  }
  console.log('\nEvery record is accounted for: sent = Parquet rows + failed (each with an error object and a DLQ message) + dropped.');
}

/** The demo's Athena SQL over what it delivered; a stop (`interrupted`) while it runs ends it, with nothing printed. */
async function printAthenaQuery(dataDir: string, config: SluiceConfig, interrupted: AbortSignal): Promise<void> {
  const athena = await LocalAthena.open(dataDir, config);
  const interrupt = () => athena.interrupt();
  interrupted.addEventListener('abort', interrupt, { once: true });
  try {
    if (interrupted.aborted) return;
    const sql = 'SELECT event_type, count(*) AS events, round(avg(temperature_c), 1) AS avg_temp_c FROM iot GROUP BY event_type ORDER BY events DESC';
    const result = await athena.query(sql);
    // DuckDB finishes a query the interrupt came too late for: the stop still holds, and its results are not shown.
    if (interrupted.aborted) return;
    console.log(`\nAthena SQL through DuckDB: ${sql}`);
    console.log(formatTable(result.columns, displayRows(result.columnTypes, result.rows)));
    console.log(`(${result.filesRead} of ${result.filesTotal} Parquet files read; try \`${sluiceCommand()} query "…" --data-dir ${escapeControlCharacters(shellWord(dataDir))}\`)`);
  } catch (error) {
    if (!interrupted.aborted) throw error;
  } finally {
    interrupted.removeEventListener('abort', interrupt);
    athena.close();
  }
}

function throughput(sent: { records: number; seconds: number }): string {
  return Math.round(sent.records / Math.max(sent.seconds, 0.001)).toLocaleString('en-US');
}
