/**
 * What a running twin says about itself, so that commands can tell which twin they reach: it writes
 * `<data-dir>/twin.json` when it starts (its pid, endpoints, resource names and the schemas it loaded)
 * and removes it when it stops, and its Firehose endpoint names its data dir in every answer
 * ({@link TWIN_DATA_DIR_HEADER}). `twin.pid` stays the lock `sluice local up` takes; this is the
 * twin's description of itself, written by the twin however it was started.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resourceNames, type SluiceConfig } from '../config';
import { loadModel } from '../schema';
import { validatorFile, validatorFingerprint } from '../schema/fingerprint';
import { holderRuns, readPidLock } from './process-alive';

/** The Firehose endpoint's answers carry the twin's data dir (URI-encoded) in this header. */
export const TWIN_DATA_DIR_HEADER = 'x-sluice-data-dir';
/**
 * And the twin's id (random at each start; also in twin.json), which tells a command it reached the
 * twin of its data dir even when the two name the folder differently (a bind mount, another letter case).
 */
export const TWIN_ID_HEADER = 'x-sluice-twin-id';

/** What twin.json keeps of an OpenSearch URL, and what `put --verify` compares: its origin, never a user or password in it. */
export function openSearchOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(an OpenSearch URL that does not parse)';
  }
}

/** How a URL can name this machine's loopback interface: one host, however it is spelled. */
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Whether two OpenSearch URLs (or origins, as twin.json keeps them) name the same one: the same scheme and port (a
 * default port or none are one), and the same host, loopback spelled as localhost, 127.0.0.1 or [::1] being one.
 */
export function sameOpenSearchOrigin(a: string, b: string): boolean {
  const key = (url: string) => {
    try {
      const u = new URL(url);
      return `${u.protocol}//${LOOPBACK_HOSTS.has(u.hostname) ? 'localhost' : u.hostname}:${u.port}`;
    } catch {
      return url;
    }
  };
  return key(a) === key(b);
}

/** The generated validator a twin loaded for a pipeline: what it validates records with. */
export interface SchemaFingerprint {
  /** sha256 of transforms/shared/generated/<pipeline>.validate.js. */
  readonly sha256: string;
  /** When `npm run generate` last wrote that file (ISO 8601). */
  readonly generatedAt: string;
  /** The schema's x-sluice.version. */
  readonly version: string;
}

export interface TwinRecord {
  readonly pid: number;
  /** When that process started (`processStart` in process-alive.ts): a later process given its pid is not this twin. Absent from an older Sluice's record. */
  readonly processStart?: string;
  /** ISO 8601. */
  readonly startedAt: string;
  /** Random at each start; the Firehose endpoint sends it in {@link TWIN_ID_HEADER}. Absent from an older Sluice's record. */
  readonly twinId?: string;
  /** Absolute, as the twin resolved it. */
  readonly dataDir: string;
  /**
   * `openSearch`: the origin (scheme, host, port) of the OpenSearch the twin indexes into (OPENSEARCH_URL); null when it
   * writes its _bulk bodies under <data-dir>/opensearch/ instead; absent from an older Sluice's record, which does not say.
   */
  readonly endpoints: { readonly firehose: string; readonly kinesis: string; readonly dynamo?: string; readonly openSearch?: string | null };
  /** The configuration's prefix and env, which name every stream, queue and the bucket. */
  readonly names: { readonly prefix: string; readonly env: string };
  /** Per configured pipeline. */
  readonly schemas: Readonly<Record<string, SchemaFingerprint>>;
  /** Per configured pipeline, where its records enter: a Kinesis stream or the delivery stream (DirectPut). Absent from an older Sluice's record. */
  readonly sources?: Readonly<Record<string, 'kinesis' | 'direct-put'>>;
  /**
   * The region its emulators keep their streams and tables under (AWS_REGION at its start, else us-east-1): a client
   * signing for another region finds none of them. Absent from an older Sluice's record.
   */
  readonly region?: string;
  /** The Firehose buffer interval it delivers with (`local up --buffer-interval`, else `local.bufferIntervalSeconds`). Absent from an older Sluice's record. */
  readonly bufferIntervalSeconds?: number;
}

export function twinRecordPath(dataDir: string): string {
  return path.join(dataDir, 'twin.json');
}

/** The lock a twin takes first at start: `<dataDir>/twin.pid`, holding its pid (and when its process started). */
export function twinLockPath(dataDir: string): string {
  return path.join(dataDir, 'twin.pid');
}

/** The live pid in `<dataDir>/twin.pid`: the twin that holds the data dir (or is starting on it); undefined when none. */
export function twinLockHolder(dataDir: string): number | undefined {
  const holder = readPidLock(twinLockPath(dataDir));
  return holder !== undefined && holderRuns(holder) ? holder.pid : undefined;
}

/** The generated validator of `pipeline` as it is on disk now; `sha256` when its hash was taken already. */
export function schemaFingerprint(pipeline: string, sha256 = validatorFingerprint(pipeline)): SchemaFingerprint {
  const file = validatorFile(pipeline);
  return {
    sha256,
    generatedAt: fs.statSync(file).mtime.toISOString(),
    version: loadModel(pipeline).extensions.version,
  };
}

/** "2026-11-22 09:58:40" in local time: when a schema was generated or a twin started. */
export function clockTime(iso: string): string {
  return new Date(iso).toLocaleString('sv-SE');
}

/** When `f` was generated, for a message comparing it with `other`; the version only when it tells them apart (a fix often keeps it). */
export function generatedWhen(f: SchemaFingerprint, other: SchemaFingerprint): string {
  return `${clockTime(f.generatedAt)}${f.version !== other.version ? ` (version ${f.version})` : ''}`;
}

/** Written aside and renamed into place: a reader never sees half a record. */
export function writeTwinRecord(record: TwinRecord): void {
  const file = twinRecordPath(record.dataDir);
  const staged = `${file}.${record.pid}.new`;
  try {
    fs.writeFileSync(staged, `${JSON.stringify(record, null, 2)}\n`);
    fs.renameSync(staged, file);
  } catch (error) {
    fs.rmSync(staged, { force: true });
    throw error;
  }
}

/** Removes the record if it is still the one this twin wrote (a later twin on the data dir may own it now). */
export function removeTwinRecord(dataDir: string, pid: number, startedAt: string): void {
  const record = readRecordFile(dataDir);
  if (record && record.pid === pid && record.startedAt === startedAt) fs.rmSync(twinRecordPath(dataDir), { force: true });
}

/** The record of the twin running on `dataDir`; undefined when there is none, or its process is gone (a crash, even if its pid runs another process now). */
export function readLiveTwinRecord(dataDir: string, isAlive?: (pid: number) => boolean): TwinRecord | undefined {
  const record = readRecordFile(dataDir);
  return record && twinRuns(record, isAlive) ? record : undefined;
}

/** Whether the twin that wrote `record` still runs: not when its process is gone, even if its pid runs another process now. */
export function twinRuns(record: TwinRecord, isAlive?: (pid: number) => boolean): boolean {
  return holderRuns({ pid: record.pid, start: typeof record.processStart === 'string' ? record.processStart : undefined }, isAlive);
}

function readRecordFile(dataDir: string): TwinRecord | undefined {
  return inspectTwinRecord(dataDir).record;
}

/**
 * The data dir's twin.json read, whether or not the process that wrote it is alive here (a twin in a container has a pid
 * of another namespace, and its random id alone says the record is that twin's): the record, or why the file, which is there, is no twin's record (`damage`: cut short or
 * hand-edited, a folder, unreadable, or without what a twin writes in it); neither when there is none. Fields it does not
 * know, from a newer Sluice, are no damage: they are passed over.
 */
export function inspectTwinRecord(dataDir: string): { readonly record?: TwinRecord; readonly damage?: string } {
  let value: unknown;
  try {
    value = JSON.parse(fs.readFileSync(twinRecordPath(dataDir), 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return {};
    if (code === 'EISDIR') return { damage: 'is a folder' };
    if (code !== undefined) return { damage: `cannot be read (${code})` };
    return { damage: 'is not JSON (cut short, or edited by hand)' };
  }
  const r = value as Partial<TwinRecord> | null;
  if (!r || typeof r !== 'object' || !Number.isSafeInteger(r.pid) || typeof r.endpoints?.firehose !== 'string' || typeof r.endpoints.kinesis !== 'string'
    || typeof r.schemas !== 'object' || r.schemas === null || typeof r.names?.env !== 'string' || typeof r.startedAt !== 'string') {
    return { damage: 'lacks what a twin writes there (its pid, endpoints, names, schemas and start)' };
  }
  return { record: r as TwinRecord };
}

/**
 * The twin's name for a pipeline's metadata consumer: its event source mapping's, and the one its Lambda Invoke answers
 * to (`sluice redrive-consumer` names it, without loading the twin).
 */
export function consumerFunctionName(config: Pick<SluiceConfig, 'prefix' | 'env'>, pipeline: string): string {
  return `${resourceNames(config, pipeline).stream}-metadata-consumer`;
}
