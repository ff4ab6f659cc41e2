import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

/**
 * Whether a process with this pid runs (EPERM: it exists, but belongs to someone else). A zombie does not: a process
 * ended (a SIGKILLed twin too) that its parent has not reaped yet keeps its pid, and would keep its lock held.
 */
export function processIsAlive(pid: number): boolean {
  return isRunning(pid, processStat(pid));
}

/** {@link processIsAlive}, with what the process table said of `pid` read already. */
function isRunning(pid: number, stat: ProcessStat | undefined): boolean {
  // Where the process table could not be read, no process is taken for a zombie.
  return pidExists(pid) && stat?.state !== 'Z';
}

/** Whether `pid` names a process, a zombie too (EPERM: it exists, but belongs to someone else). */
function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What the process table says of a process: its state (`Z`: a zombie) and {@link processStart}. */
interface ProcessStat {
  readonly state: string;
  readonly start: string | undefined;
}

let procfs: boolean | undefined;

/** Linux's /proc; elsewhere (macOS has no /proc) `ps`. Undefined when the process is gone or hidden from this user. */
function processStat(pid: number): ProcessStat | undefined {
  procfs ??= fs.existsSync('/proc/self/stat');
  return procfs ? procStat(pid) : psStat(pid);
}

/**
 * /proc/<pid>/stat: the state (field 3) and the start in clock ticks since boot (field 22), with the boot's id. The
 * fields are counted after the command name, cut at the last ')', since it may hold spaces and parentheses itself.
 */
function procStat(pid: number): ProcessStat | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const startTime = fields[19]; // field 22, counted from the state's 3
  const boot = bootId();
  return { state: fields[0], start: boot !== undefined && startTime !== undefined && /^\d+$/.test(startTime) ? `${boot}/${startTime}` : undefined };
}

let bootIdRead: string | undefined | null = null;

function bootId(): string | undefined {
  if (bootIdRead === null) {
    try {
      bootIdRead = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      bootIdRead = undefined;
    }
  }
  return bootIdRead;
}

/**
 * `ps -o stat= -o lstart=` (BSD's and procps' both): the state and the start as a date to the second, in the C locale
 * and UTC so that every terminal's process writes and reads the same text for one process (macOS hands a pid out
 * again after a reboot, and a crashed twin's lock would name the process that has it now). One -o each: POSIX (and
 * FreeBSD's ps) takes all of an argument after its `=` as the header, so `stat=,lstart=` would give no start.
 */
function psStat(pid: number): ProcessStat | undefined {
  // A DLQ lock's waiter asks every few milliseconds, and ps takes a few itself: an answer stands for a second while
  // the pid still runs, on the monotonic clock (the wall clock set back an hour would keep a zombie alive for the hour).
  const now = performance.now();
  const cached = psAnswers.get(pid);
  if (cached !== undefined && now - cached.at < PS_ANSWER_MS && pidExists(pid)) return cached.stat;
  const stat = psStatNow(pid);
  if (psAnswers.size >= 64) psAnswers.clear();
  psAnswers.set(pid, { at: now, stat });
  return stat;
}

const PS_ANSWER_MS = 1000;
const psAnswers = new Map<number, { readonly at: number; readonly stat: ProcessStat | undefined }>();

function psStatNow(pid: number): ProcessStat | undefined {
  let line: string;
  try {
    line = execFileSync('ps', ['-o', 'stat=', '-o', 'lstart=', '-p', String(pid)], {
      encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, LC_ALL: 'C', TZ: 'UTC0' },
    }).trim();
  } catch {
    // ps exits 1 for a pid that runs no process, or is not there.
    return undefined;
  }
  const match = /^(\S+)\s+(.+)$/.exec(line);
  if (match === null) return undefined;
  return { state: match[1][0], start: `started ${match[2].replace(/\s+/g, ' ')} UTC` };
}

/**
 * Which process `pid` is, beyond its number, which a later process given the same pid (after a container restart, or
 * a reboot) does not share: on Linux `<boot id>/<start time>` (in clock ticks since boot, field 22 of
 * /proc/<pid>/stat), elsewhere `started <date> UTC` as `ps` gives it. Undefined when the process is gone or hidden
 * from this user.
 */
export function processStart(pid: number): string | undefined {
  return processStat(pid)?.start;
}

let ownStart: { readonly start: string | undefined } | undefined;

/** This process's {@link processStart}, read once: it does not change while the process runs. */
export function ownProcessStart(): string | undefined {
  ownStart ??= { start: processStart(process.pid) };
  return ownStart.start;
}

/**
 * What a lock file such as `twin.pid` says: the pid, the first word of its first line, and on a second line the
 * holder's {@link processStart}.
 */
export interface PidLockHolder {
  readonly pid: number;
  /** Absent from an older Sluice's lock (the pid alone). */
  readonly start?: string;
}

/**
 * The lock file's content for `holder`: the pid on the first line, as {@link readPid} and an older Sluice read it. A
 * `tag` follows the pid on that line after a space (the DLQ lock's token: an older Sluice reads its first word).
 */
export function pidLockContent(holder: PidLockHolder, tag?: string): string {
  const first = tag === undefined ? `${holder.pid}` : `${holder.pid} ${tag}`;
  return holder.start === undefined ? `${first}\n` : `${first}\n${holder.start}\n`;
}

/** What a lock file such as `twin.pid` names; undefined when it is missing or holds no pid. */
export function readPidLock(file: string): PidLockHolder | undefined {
  let content: string;
  try {
    content = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  return pidLockHolder(content);
}

/** What {@link pidLockContent} wrote (or an older Sluice's pid alone, or its DLQ lock's `<pid> <token>`) says; undefined when it holds no pid. */
export function pidLockHolder(content: string): PidLockHolder | undefined {
  const lines = content.split('\n');
  const pid = Number(lines[0].trim().split(' ')[0]);
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  const start = lines[1]?.trim();
  return start ? { pid, start } : { pid };
}

/** The pid a lock file such as `twin.pid` names; undefined when it is missing or holds no pid. */
export function readPid(file: string): number | undefined {
  return readPidLock(file)?.pid;
}

/**
 * Whether the process that wrote a lock (or a twin.json) still runs: its pid is alive and, where both are known, has
 * the start recorded. A pid the system has given to another process since is no holder.
 * @param isAlive replaces {@link processIsAlive} (tests). @default processIsAlive
 */
export function holderRuns(holder: PidLockHolder, isAlive?: (pid: number) => boolean): boolean {
  // One read of the process table answers both: is the pid a zombie, and since when does it run.
  const stat = processStat(holder.pid);
  if (!(isAlive ? isAlive(holder.pid) : isRunning(holder.pid, stat))) return false;
  const now = holder.start === undefined ? undefined : stat?.start;
  return now === undefined || now === holder.start;
}
