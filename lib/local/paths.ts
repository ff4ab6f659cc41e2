import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { SluiceConfig } from '../config';
import { EmulatorStateError } from './state-error';

/** The twin's data-dir layout (DESIGN.md "The local twin"), written once. */

/**
 * Whether `child` lies strictly inside `parent` (both resolved). A first segment that merely starts with
 * two dots (`.. x`, `..a`) is a name, not the parent directory.
 */
export function isInside(parent: string, child: string): boolean {
  const relative = path.relative(parent, child);
  return relative !== '' && relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
}

/**
 * `mkdir -p`, one level at a time from the nearest folder that exists; `mode` for `dir` when it is made. Node's recursive mkdir never
 * returns for a path under /proc (each level answers ENOENT, and it retries the parent forever).
 */
export function makeDirectories(dir: string, options: { readonly mode?: number } = {}): void {
  const missing: string[] = [];
  let at = path.resolve(dir);
  while (!fs.existsSync(at)) {
    missing.push(at);
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  const made = path.resolve(dir);
  for (const folder of missing.reverse()) {
    try {
      // `mode` for `dir` itself (the process umask still applies); folders above it as the umask says.
      fs.mkdirSync(folder, folder === made && options.mode !== undefined ? { mode: options.mode } : undefined);
    } catch (error) {
      // Made meanwhile (another twin starting on the same folder) is fine.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir} is not a folder`);
}

/**
 * A new folder `<prefix>XXXXXX` in the system temp dir (`TMPDIR`), its owner's alone; `what` it is for names it when the temp
 * dir cannot take it (read-only, missing, a file), which is the environment's to fix, not a bug.
 */
export function makeTempFolder(prefix: string, what: string): string {
  try {
    return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new EmulatorStateError(`the temp dir ${os.tmpdir()} cannot take ${what} (${code ?? (error as Error).message}): set TMPDIR to a folder you can write`);
  }
}

/** The mode the twin makes its data dir with: it holds raw records, its owner's alone. */
export const DATA_DIR_MODE = 0o700;

/**
 * What a twin keeps at the top of its data dir: the lake (s3/), dead letters (dlq/), the delivery streams' logs (firehose/),
 * the emulators' state (kinesis/, dynamodb/), the readers' checkpoints, search bodies, the hash key, the lake's layout
 * (lake-layout.json), the data dir's format (sluice-data.json), and while it runs twin.pid and twin.json. A twin makes several at start, before any record, so a twin that received nothing has some.
 */
const TWIN_DATA_DIR_ENTRIES = ['s3', 'dlq', 'firehose', 'kinesis', 'dynamodb', 'kinesis-checkpoints', 'opensearch', 'pii-hash-key', 'lake-layout.json', 'sluice-data.json', 'twin.pid', 'twin.json'];

/**
 * Whether `name` is a temporary file writeFileAtomic leaves (`.<file>.<pid>.<hex>.tmp`) when a process is killed while it
 * writes one of the twin's files at the top of its data dir (sluice-data.json, lake-layout.json; twin.json is written
 * aside as twin.json.<pid>.new): no data.
 */
function isTwinFileLeftover(name: string): boolean {
  const written = /^\.(.+)\.\d+\.[0-9a-f]+\.tmp$/.exec(name);
  return written !== null && TWIN_DATA_DIR_ENTRIES.includes(written[1]);
}

/**
 * Whether `name`, at the top of a data dir, is the twin's bookkeeping and holds no records: twin.pid and twin.json (and
 * their files written aside), which a twin that died leaves, the data dir's format (sluice-data.json), and a killed
 * write's temporary file.
 */
export function isTwinBookkeeping(name: string): boolean {
  return /^twin\.(?:pid|json)(?:\.|$)/.test(name) || name === 'sluice-data.json' || isTwinFileLeftover(name);
}

/** Whether `dir` is a twin's data dir: it holds something a twin keeps there. Any other folder would read as a twin with no data. */
export function isTwinDataDir(dir: string): boolean {
  return TWIN_DATA_DIR_ENTRIES.some((entry) => fs.existsSync(path.join(dir, entry)));
}

/**
 * Makes the twin's data dir (mode 700) if it is missing, and makes one that exists its owner's alone too when it is
 * empty or a twin's: it holds raw records (streams, the write-ahead log, error objects, dead letters). A folder of
 * other files, or another user's, keeps its mode (its other files are not the twin's to hide). Returns what a person
 * should be told: the mode changed, or others may read the records.
 */
export function makeDataDir(dir: string): string | undefined {
  makeDirectories(dir, { mode: DATA_DIR_MODE });
  const stat = fs.statSync(dir);
  if (process.platform === 'win32' || (stat.mode & 0o077) === 0) return undefined;
  const was = (stat.mode & 0o777).toString(8);
  const mine = typeof process.getuid !== 'function' || stat.uid === process.getuid();
  // Only what a twin keeps there (or nothing): a folder that also holds other files (`--data-dir .`) is not the twin's.
  // `sluice query`'s footer cache too, though it alone does not make a twin's data dir (a home folder has a .cache).
  if (mine && fs.readdirSync(dir).every((entry) => TWIN_DATA_DIR_ENTRIES.includes(entry) || entry === '.cache' || isTwinBookkeeping(entry))) {
    fs.chmodSync(dir, DATA_DIR_MODE);
    return `made the data dir ${dir} readable by its owner alone (mode 700; it was ${was}): it holds raw records`;
  }
  return `warning: others can read the data dir ${dir} (mode ${was}, ${mine ? 'a folder of other files' : 'not yours'}), and the twin keeps raw records there: chmod 700 it, or choose another --data-dir`;
}

/** Default data dir: `.sluice/` in the working directory. */
export function defaultDataDir(cwd: string = process.cwd()): string {
  return path.join(cwd, '.sluice');
}

/** The one data bucket the twin writes, as the stack's data bucket (whose AWS name CloudFormation picks). */
export function localBucketName(config: Pick<SluiceConfig, 'prefix' | 'env'>): string {
  return `${config.prefix}-${config.env}-data`;
}

export function s3Dir(dataDir: string): string {
  return path.join(dataDir, 's3');
}

export function bucketDir(dataDir: string, bucket: string): string {
  return path.join(s3Dir(dataDir), bucket);
}

export function dlqDir(dataDir: string): string {
  return path.join(dataDir, 'dlq');
}

export function dlqPath(dataDir: string, queue: string): string {
  return path.join(dlqDir(dataDir), `${queue}.jsonl`);
}

export function openSearchDir(dataDir: string): string {
  return path.join(dataDir, 'opensearch');
}

/**
 * The key of the twin's `hash` PII mask for a data dir: random, made on its first start and kept in
 * `<dataDir>/pii-hash-key` (owner-only), so hashes join across restarts and nobody can test guesses against them
 * with a key every copy of Sluice shares.
 */
export function localPiiHashKey(dataDir: string): string {
  const file = path.join(dataDir, 'pii-hash-key');
  try {
    fs.writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    // Made before (or by a twin starting at the same moment): read it.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const remake = 'the twin makes a new key (local hashes made before will not match)';
  let key: string;
  try {
    key = fs.readFileSync(file, 'utf8').trim();
  } catch (error) {
    // A folder, or a file this user cannot read: the user's to fix, not a failed start.
    const code = (error as NodeJS.ErrnoException).code;
    throw new EmulatorStateError(code === 'EISDIR' ? `${file} is a folder: move it away and ${remake}` : `${file} cannot be read (${code ?? (error as Error).message}): make it readable, or move it away and ${remake}`);
  }
  if (key === '') throw new EmulatorStateError(`${file} is empty: delete it and ${remake}`);
  return key;
}

/**
 * The files under a folder (recursively) whose names end with `extension`, in a stable order (a view is defined again
 * only when they change). Local query's views list them rather than glob the folder: DuckDB would read `[`, `*`, `?` in
 * the data dir's path as glob syntax and a backslash as a separator, so `/tmp/br[x]` matched nothing or a sibling's files.
 */
export function filesUnder(dir: string, extension = ''): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(extension))
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}
