/**
 * Where a command runs: the local twin (the default) or a deployed stack (`--aws`). Every command
 * resolves one Target from its flags, then asks the per-concern helpers (entry points, SQL, search,
 * dead letters) for what it needs, so the same command code drives both.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { FirehoseClient } from '@aws-sdk/client-firehose';
import { KinesisClient } from '@aws-sdk/client-kinesis';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { MAX_LOCAL_BUFFER_INTERVAL_SECONDS, resourceNames, type SluiceConfig } from '../config';
import { firehoseClient, kinesisClient, localRegion } from '../local/aws-clients';
import { checkDataFormat } from '../local/data-format';
import { defaultDataDir, isInside, isTwinDataDir } from '../local/paths';
import {
  clockTime, generatedWhen, inspectTwinRecord, schemaFingerprint, twinLockHolder, twinRecordPath, twinRuns, TWIN_DATA_DIR_HEADER, TWIN_ID_HEADER, type TwinRecord,
} from '../local/twin-record';
import { validatorFingerprint } from '../schema/fingerprint';
import { explainFailure, type FailureContext } from './errors';
import { callerCredentials, type CallerCredentials } from './credentials';
import { configFrom, dataDirPath, parsePort, requirePipeline, type TargetFlags } from './options';
import { sluiceCommand } from './invocation';
import { shellWord, UserError } from './output';
import { firehoseEntryPoint, kinesisEntryPoint, type EntryPoint } from './record-sender';
import { defaultStackName, pipelineOutputKey, StackOutputs } from './stack-outputs';

/**
 * How to start the twin a local command on `dataDir` needs: a plain `sluice local up` starts it on the default data dir
 * (SLUICE_DATA_DIR, else .sluice here), so for any other the hint names it.
 */
export function startTwinHint(dataDir: string): string {
  return `start the twin with \`${localUpCommand(dataDir)}\``;
}

/** The `local up` that starts (or restarts) the twin on `dataDir`: with --data-dir unless a plain one takes it. */
export function localUpCommand(dataDir: string): string {
  return `${sluiceCommand()} local up${dataDirFlag(dataDir)}`;
}

/** ` --data-dir DIR` for a command suggested on `dataDir`, or nothing when a plain command finds it (as startTwinHint). */
function dataDirFlag(dataDir: string): string {
  const started = path.resolve(process.env.SLUICE_DATA_DIR ?? defaultDataDir());
  return sameDir(started, dataDir) ? '' : ` --data-dir ${shellWord(displayPath(dataDir))}`;
}

/**
 * The flags that point a command the CLI suggests (`replay` after a put) at what the suggesting command ran against:
 * its `-c` overrides (they name the queue and tables), then `--aws --stack` (and `--region`) for a deployed stack, or
 * the data dir when a plain command would read another. Without them the suggestion would read the local twin's
 * default data dir.
 */
export function sameTargetFlags(target: Target, flags: Pick<TargetFlags, 'context' | 'region'>): string {
  const context = (flags.context ?? []).map((pair) => ` -c ${shellWord(pair)}`).join('');
  const where = target.kind === 'aws'
    ? ` --aws --stack ${shellWord(target.stackName)}${flags.region ? ` --region ${shellWord(flags.region)}` : ''}`
    : dataDirFlag(target.dataDir);
  return `${context}${where}`;
}

/** A region name a client can sign for: lower-case letters, digits and inner hyphens (us-east-1, eu-west-2, a local one's). */
const REGION = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;

export interface LocalTarget {
  readonly kind: 'local';
  readonly config: SluiceConfig;
  readonly dataDir: string;
  readonly endpoints: { readonly firehose: string; readonly kinesis: string; readonly openSearch?: string };
  /** For messages: "the local twin (.sluice)". */
  readonly label: string;
  /**
   * The region the twin's emulators keep its streams under: the running twin's (its twin.json), which may not be this
   * shell's AWS_REGION, else localRegion(). Read on use, as the endpoints are.
   */
  readonly region: string;
  /**
   * The data dir's twin.json as the twin wrote it, whether or not its process runs here (a twin in a container has a
   * pid of another namespace); read once, on first use, for every check of the command.
   */
  twinRecord(): TwinRecord | undefined;
  /** That record while the twin that wrote it runs (see twinRuns); undefined when no twin runs on the data dir. */
  runningTwin(): TwinRecord | undefined;
}

export interface AwsTarget {
  readonly kind: 'aws';
  readonly config: SluiceConfig;
  readonly stackName: string;
  /** The caller's credentials: the SDK's default chain, one for every client of the command. */
  readonly credentials: CallerCredentials;
  /** Client settings: the region from the flags (the SDK's chain finds it when not given), and `credentials.provider`. */
  readonly clientConfig: { region?: string; credentials: AwsCredentialIdentityProvider };
  /**
   * The stack's outputs, read once on first use; `signal` bounds that read (it rejects with `signal.reason`), and a
   * read that failed is tried again on the next use.
   */
  outputs(signal?: AbortSignal): Promise<StackOutputs>;
  readonly label: string;
}

export type Target = LocalTarget | AwsTarget;

/** Resolves the target from a command's flags (loading the configuration with its `-c` overrides). */
export function resolveTarget(flags: TargetFlags): Target {
  const config = configFrom(flags);
  if (flags.aws) {
    const stackName = flags.stack ?? defaultStackName(config);
    const credentials = callerCredentials(flags.region);
    const clientConfig = { ...(flags.region && { region: flags.region }), credentials: credentials.provider };
    let outputs: Promise<StackOutputs> | undefined;
    return {
      kind: 'aws',
      config,
      stackName,
      credentials,
      clientConfig,
      outputs(signal) {
        outputs ??= (async () => {
          const client = new CloudFormationClient(clientConfig);
          try {
            return await StackOutputs.load(client, stackName, signal);
          } catch (err) {
            outputs = undefined;
            throw err;
          } finally {
            client.destroy();
          }
        })();
        return outputs;
      },
      label: `stack ${stackName}${flags.region ? ` (${flags.region})` : ''}`,
    };
  }
  for (const flag of ['stack', 'region'] as const) {
    if (flags[flag] !== undefined) throw new UserError(`--${flag} applies to a deployed stack; add --aws (without it, commands run against the local twin)`);
  }
  const dataDir = dataDirPath(flags.dataDir ?? defaultDataDir());
  // twin.json is read once per command: the record, or why it is none.
  let read: ReturnType<typeof inspectTwinRecord> | undefined;
  // A data dir a newer Sluice wrote is refused before its twin.json is read (that may not mean what this code reads in it).
  const reading = () => {
    if (read === undefined) {
      checkDataFormat(dataDir);
      read = inspectTwinRecord(dataDir);
    }
    return read;
  };
  const twinRecord = () => reading().record;
  const runningTwin = () => {
    const { record, damage } = reading();
    if (record) return twinRuns(record) ? record : undefined;
    if (damage !== undefined) refuseDamagedTwinRecord(dataDir, damage);
    return undefined;
  };
  return {
    kind: 'local',
    config,
    dataDir,
    // Read when a command uses them, so a port variable meant for another command never stops this one.
    endpoints: {
      get firehose() {
        return localUrl(flags.endpointFirehose, 'SLUICE_FIREHOSE_PORT', () => runningTwin()?.endpoints.firehose, config.local.firehosePort, '--endpoint-firehose');
      },
      get kinesis() {
        return localUrl(flags.endpointKinesis, 'SLUICE_KINESIS_PORT', () => runningTwin()?.endpoints.kinesis, config.local.kinesisPort, '--endpoint-kinesis');
      },
      openSearch: flags.endpointOpensearch ? checkedUrl(flags.endpointOpensearch, '--endpoint-opensearch / OPENSEARCH_URL') : undefined,
    },
    get region() {
      const region: unknown = runningTwin()?.region;
      // One edited by hand into something no client can sign for is not used.
      return typeof region === 'string' && REGION.test(region) ? region : localRegion();
    },
    label: `the local twin at ${displayPath(dataDir)}`,
    twinRecord,
    runningTwin,
  };
}

/**
 * A twin runs on the data dir (its twin.pid is held) and its twin.json, where it says where it listens and what it
 * loaded, does not read: rather than "no twin runs" or "nothing is listening", which send the user to start a second
 * twin that the lock refuses, the message names the file and the fix. Without a live twin, a damaged file is only
 * left over from one that stopped: the next start writes it again.
 */
function refuseDamagedTwinRecord(dataDir: string, damage: string): void {
  const holder = twinLockHolder(dataDir);
  if (holder === undefined) return;
  const file = twinRecordPath(dataDir);
  // A folder is neither removed at the stop nor replaced at the start (which refuses it): it has to go first.
  const folder = fs.lstatSync(file, { throwIfNoEntry: false })?.isDirectory() === true;
  throw new UserError(`the twin running on ${dataDir} (pid ${holder}) says where it listens in ${file}, which ${damage}: nothing was done. `
    + `Restart the twin (Ctrl-C where it runs, or \`kill ${holder}\`: it flushes, then exits; ${folder ? 'move the folder away before you start it again, and it' : 'it'} writes the file again when it starts)`);
}

/**
 * Refuses a data dir that is a file. It would read as a twin with no data, or send the user to start a twin on it,
 * which `local up` refuses; so the message says what is wrong with the path itself.
 */
function refuseDataDirFile(dataDir: string): void {
  if (fs.existsSync(dataDir) && !fs.statSync(dataDir).isDirectory()) {
    throw new UserError(`the data dir ${dataDir} is not a directory: pass the twin's data dir (the one \`${sluiceCommand()} local up\` uses) with --data-dir or SLUICE_DATA_DIR`);
  }
}

/**
 * Before a command reads the twin's data dir (query, replay): it exists, is a folder, is in a format this Sluice reads, and
 * is a twin's. Any other folder would read as a twin that received nothing (empty tables, no dead letters), and the
 * command would report that.
 */
export function checkTwinDataDir(dataDir: string): void {
  if (!fs.existsSync(dataDir)) throw new UserError(`no twin data dir at ${dataDir}: ${startTwinHint(dataDir)} (or pass --data-dir / SLUICE_DATA_DIR)`);
  refuseDataDirFile(dataDir);
  checkDataFormat(dataDir);
  if (!isTwinDataDir(dataDir)) {
    throw new UserError(`${dataDir} is not a twin data dir: it holds none of what a twin keeps there (s3/ for the lake, dlq/ for dead letters, firehose/, twin.json …); `
      + `pass the twin's data dir (the one \`${sluiceCommand()} local up\` uses, .sluice by default) with --data-dir or SLUICE_DATA_DIR, or ${startTwinHint(dataDir)}`);
  }
}

/**
 * The data dir as a user would type it: relative below the working directory, else absolute. A folder named `~…` here
 * is `./~…`: as `~/…`, --data-dir is refused (dataDirPath), and a shell would take it for the home folder.
 */
export function displayPath(dir: string): string {
  const relative = path.relative(process.cwd(), dir);
  if (relative === '') return '.';
  if (!isInside(process.cwd(), dir)) return dir;
  return relative.startsWith('~') ? `.${path.sep}${relative}` : relative;
}

/**
 * The endpoint flag (or its URL variable); else the port variable `sluice local up` also reads, so that one
 * `export SLUICE_FIREHOSE_PORT=…` points the twin and every other command at the same place (0: the port the twin
 * took); else where the twin running on the data dir says it listens (its twin.json: a twin started with other
 * ports); else the configured port.
 */
function localUrl(given: string | undefined, portVariable: string, recorded: () => string | undefined, configuredPort: number, flag: string): string {
  if (given) return checkedUrl(given, flag);
  const port = parsePort(process.env[portVariable], portVariable);
  if (port === 0) {
    // `local up` picked a free port and wrote it to the data dir's twin.json.
    const url = recorded();
    if (url) return url;
    throw new UserError(`${portVariable}=0 lets \`${sluiceCommand()} local up\` pick a free port, and no twin running on the data dir says which it took: start one, or give the port it printed with ${flag} http://127.0.0.1:<port>`);
  }
  if (port !== undefined) return `http://127.0.0.1:${port}`;
  return recorded() ?? `http://127.0.0.1:${configuredPort}`;
}

function checkedUrl(value: string, flag: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UserError(`${flag} ${JSON.stringify(value)}: expected an http:// or https:// URL, e.g. http://127.0.0.1:<port>`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UserError(`${flag} ${JSON.stringify(value)}: expected an http:// or https:// URL`);
  return value.replace(/\/+$/, '');
}

/** The pipeline's real entry point: its Kinesis stream, or for a DirectPut pipeline its lake delivery stream. */
export async function entryPointFor(target: Target, pipeline: string): Promise<EntryPoint> {
  const p = requirePipeline(target.config, pipeline);
  const names = resourceNames(target.config, pipeline);
  if (target.kind === 'local') {
    if (p.source === 'kinesis') {
      const context: FailureContext = { service: 'the twin\'s Kinesis API', endpoint: target.endpoints.kinesis, startHint: startTwinHint(target.dataDir) };
      return kinesisEntryPoint(kinesisClient(target.endpoints.kinesis, { region: target.region }), names.stream, context);
    }
    const context: FailureContext = { service: 'the twin\'s Firehose API', endpoint: target.endpoints.firehose, startHint: startTwinHint(target.dataDir) };
    return firehoseEntryPoint(firehoseClient(target.endpoints.firehose), names.lakeDeliveryStream, context);
  }
  // Sluice names streams itself (lib/config/names.ts); an output, when the stack has one, wins.
  const outputs = await target.outputs();
  const hint = `is stack ${target.stackName} deployed with pipeline "${pipeline}"?`;
  if (p.source === 'kinesis') {
    const stream = outputs.get(pipelineOutputKey(pipeline, 'StreamName')) ?? names.stream;
    return kinesisEntryPoint(new KinesisClient(target.clientConfig), stream, { service: 'Kinesis', startHint: hint });
  }
  const deliveryStream = outputs.get(pipelineOutputKey(pipeline, 'LakeDeliveryStreamName')) ?? names.lakeDeliveryStream;
  return firehoseEntryPoint(new FirehoseClient(target.clientConfig), deliveryStream, { service: 'Firehose', startHint: hint });
}

/** How long a command waits for the twin's Firehose endpoint to say whose it is. */
const PROBE_TIMEOUT_MS = 5000;

/**
 * Before a command sends records to the local twin: the data dir exists, and the twin that takes them is
 * the one running on it, with the resource names this command uses. Otherwise records land in another
 * twin's data dir (and `--verify` waits for them here), or in streams no twin delivers. The twin's Firehose
 * endpoint names its data dir in every answer; the data dir's twin.json names its pid, endpoints and names.
 */
export async function checkTwinTakesRecords(target: LocalTarget, entry: EntryPoint, pipeline: string): Promise<void> {
  refuseDataDirFile(target.dataDir);
  const dir = displayPath(target.dataDir);
  const firehose = target.endpoints.firehose;
  const endpoint = entry.kind === 'firehose' ? firehose : target.endpoints.kinesis;
  let answering: TwinAnswer | undefined;
  try {
    answering = await twinServedAt(firehose);
  } catch (err) {
    // A Kinesis-sourced pipeline's records do not go there: the endpoint only helps name the twin in messages.
    if (entry.kind === 'firehose') {
      if ((err as Error).name === 'TimeoutError') throw new UserError(`${entry.failureContext.service} at ${firehose} did not answer within ${PROBE_TIMEOUT_MS / 1000} s: is the twin running there?`);
      throw explainFailure(err, entry.failureContext);
    }
  }
  const record = target.runningTwin();
  // The twin's id says it is the data dir's twin even where the paths differ (a bind mount, another letter case),
  // and even when its pid is not one of this machine's (a twin in a container).
  const sameTwin = answering?.twinId !== undefined && target.twinRecord()?.twinId === answering.twinId;
  const other = !sameTwin && answering?.dataDir !== undefined && !sameDir(answering.dataDir, target.dataDir) ? displayPath(answering.dataDir) : undefined;
  const useOther = other !== undefined ? `the twin answering at ${firehose} runs on ${other}: pass --data-dir ${shellWord(other)} to send to it, or ` : '';
  if (!isDirectory(target.dataDir)) {
    throw new UserError(`no twin data dir at ${target.dataDir}: nothing was sent; ${useOther}start a twin there with \`${sluiceCommand()} local up --data-dir ${shellWord(dir)}\``);
  }
  if (entry.kind === 'firehose' && other !== undefined) {
    throw new UserError(`the twin answering at ${firehose} runs on data dir ${other}, not ${target.dataDir}: nothing was sent. Pass --data-dir ${shellWord(other)} to send to it, or start a twin on ${dir} on other ports (\`${sluiceCommand()} local up --data-dir ${shellWord(dir)} --firehose-port … --kinesis-port … --dynamo-port …\`) and point --endpoint-firehose at it`);
  }
  const vouched = entry.kind === 'firehose' && answering?.dataDir !== undefined;
  if (!record) {
    if (vouched) return; // twin.json is gone, but the twin's own word is enough
    // twin.pid appears first at start, twin.json last: a live pid there is a twin still starting (or an older Sluice's).
    const holder = twinLockHolder(target.dataDir);
    if (holder !== undefined) {
      throw new UserError(`the twin on data dir ${target.dataDir} (pid ${holder}) has not said where it takes records yet: nothing was sent. `
        + 'Try again once it prints its endpoints (a twin from an older Sluice never says: restart it)');
    }
    const unnamed = entry.kind === 'firehose' ? `; what answers at ${firehose} does not say which data dir it serves (a twin from an older Sluice? restart it)` : '';
    throw new UserError(`no twin runs on data dir ${target.dataDir} (no ${path.basename(twinRecordPath(target.dataDir))} of a running twin there): nothing was sent; ${useOther}start one with \`${sluiceCommand()} local up --data-dir ${shellWord(dir)}\`${unnamed}`);
  }
  // A -c override of the pipeline's source sends to an entry point the running twin does not have.
  const source = target.config.pipelines[pipeline]?.source;
  const theirs = record.sources?.[pipeline];
  if (source !== undefined && theirs !== undefined && theirs !== source) {
    throw new UserError(`the twin on data dir ${target.dataDir} runs pipeline ${pipeline} with source ${theirs}, not ${source} as this command's configuration has it: nothing was sent. `
      + `Drop the -c override, or run a twin with it on its own data dir and ports (\`${sluiceCommand()} local up -c pipelines.${pipeline}.source=${source} --data-dir …\`)`);
  }
  const recorded = entry.kind === 'firehose' ? record.endpoints.firehose : record.endpoints.kinesis;
  if (!vouched && portOf(recorded) !== portOf(endpoint)) {
    const flag = entry.kind === 'firehose' ? '--endpoint-firehose' : '--endpoint-kinesis';
    throw new UserError(`the twin on data dir ${target.dataDir} (pid ${record.pid}) takes ${entry.kind === 'firehose' ? 'Firehose' : 'Kinesis'} records at ${recorded}, not ${endpoint}: nothing was sent. Pass ${flag} ${recorded}`);
  }
  const { prefix, env } = target.config;
  if (record.names.prefix !== prefix || record.names.env !== env) {
    // The settings that differ, each named: "env dev" alone would read "not env dev" when only the prefix differs.
    const differ = (['prefix', 'env'] as const).filter((k) => record.names[k] !== target.config[k]);
    const theirs = differ.map((k) => `${k} ${record.names[k]}`).join(' and ');
    const ours = differ.map((k) => `${k} ${target.config[k]}`).join(' and ');
    const overrides = differ.map((k) => `-c ${k}=${target.config[k]}`).join(' ');
    throw new UserError(`the twin on data dir ${target.dataDir} runs ${theirs} (its streams and bucket are named ${record.names.prefix}-${record.names.env}-…), not ${ours} (${prefix}-${env}-…) as this command's configuration has it: nothing was sent. Drop the -c override, or run a twin for ${ours} on its own data dir and ports (\`${sluiceCommand()} local up ${overrides} --data-dir …\`)`);
  }
}

/**
 * The buffer interval the twin of the target's data dir delivers with: a `local up --buffer-interval` other than the
 * configuration's is in its twin.json. The configuration's when no twin recorded one (none yet, or an older Sluice's), or one
 * `local up` would not take (a twin.json edited by hand).
 */
export function twinBufferIntervalSeconds(target: LocalTarget): number {
  const recorded: unknown = target.twinRecord()?.bufferIntervalSeconds;
  // A twin.json edited by hand is not trusted with a wait: only what `local up` takes.
  return typeof recorded === 'number' && recorded >= 0 && recorded <= MAX_LOCAL_BUFFER_INTERVAL_SECONDS ? recorded : target.config.local.bufferIntervalSeconds;
}

/** "the twin at .sluice (pid 4242, started 2026-11-22 09:58:40)": the twin running on the target's data dir, for messages. */
export function twinAt(target: LocalTarget, twin: TwinRecord): string {
  return `the twin at ${displayPath(target.dataDir)} (pid ${twin.pid}, started ${clockTime(twin.startedAt)})`;
}

/**
 * What the twin running on the data dir validates `pipelines` with, when `npm run generate` has written newer code for
 * any of them since it started (it validates with the generated code it loaded then): "the twin at .sluice (pid 4242,
 * started …) validates iot with the schema generated 2026-11-22 09:50:02; `npm run generate` has written a newer one
 * since (2026-11-22 10:02:11)". Undefined when no twin runs there, or it runs the code of each as it is now (a pipeline
 * it was started without is not this check's). `put` and `replay` each say what follows from it.
 */
export function staleTwinSchemas(target: LocalTarget, pipelines: readonly string[]): string | undefined {
  const twin = target.runningTwin();
  if (!twin) return undefined;
  const stale = pipelines.flatMap((pipeline) => {
    const loaded = twin.schemas[pipeline];
    if (!loaded) return [];
    const sha256 = validatorFingerprint(pipeline);
    return loaded.sha256 === sha256 ? [] : [{ pipeline, loaded, now: schemaFingerprint(pipeline, sha256) }];
  });
  if (stale.length === 0) return undefined;
  const one = stale.length === 1;
  return `${twinAt(target, twin)} validates ${stale.map((s) => s.pipeline).join(', ')} with the schema${one ? '' : 's'} generated ${stale.map((s) => generatedWhen(s.loaded, s.now)).join(', ')}; `
    + `\`npm run generate\` has written ${one ? 'a newer one' : 'newer ones'} since (${stale.map((s) => generatedWhen(s.now, s.loaded)).join(', ')})`;
}

/** What the twin at `endpoint` says about itself in its answer: its data dir and id, each undefined when not said. */
interface TwinAnswer {
  readonly dataDir?: string;
  readonly twinId?: string;
}

async function twinServedAt(endpoint: string): Promise<TwinAnswer> {
  const response = await fetch(`${endpoint}/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'Firehose_20150804.ListDeliveryStreams' },
    body: '{"Limit":1}',
    signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
  });
  await response.arrayBuffer();
  const named = response.headers.get(TWIN_DATA_DIR_HEADER);
  let dataDir: string | undefined;
  try {
    dataDir = named === null ? undefined : decodeURIComponent(named);
  } catch {
    dataDir = undefined;
  }
  return { dataDir, twinId: response.headers.get(TWIN_ID_HEADER) ?? undefined };
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

/** Through symbolic links: /tmp and /private/tmp are one directory. */
function sameDir(a: string, b: string): boolean {
  const real = (dir: string) => {
    try {
      return fs.realpathSync(dir);
    } catch {
      return path.resolve(dir);
    }
  };
  return real(a) === real(b);
}

function portOf(url: string): string {
  const u = new URL(url);
  return u.port || (u.protocol === 'https:' ? '443' : '80');
}
