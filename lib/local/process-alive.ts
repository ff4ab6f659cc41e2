import * as fs from 'node:fs';

/**
 * Whether a process with this pid runs (EPERM: it exists, but belongs to someone else). A zombie does not: a process
 * ended (a SIGKILLed twin too) that its parent has not reaped yet keeps its pid, and would keep its lock held.
 */
export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !isZombie(pid);
}

/** Linux's /proc says so (the state after the parenthesized command name); elsewhere no process is taken for one. */
function isZombie(pid: number): boolean {
  return procStatFields(pid)?.[0] === 'Z';
}

/**
 * The fields of /proc/<pid>/stat after the command name, from the state (field 3) on; undefined off Linux or when the
 * process is gone. The name is cut at the last ')', since it may hold spaces and parentheses itself.
 */
function procStatFields(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

let bootId: string | undefined | null = null;

/**
 * Which process `pid` is, beyond its number: `<boot id>/<start time>` (in clock ticks since boot, field 22 of
 * /proc/<pid>/stat), which a later process given the same pid (after a container restart, or a reboot) does not share.
 * Undefined off Linux, or when the process is gone or hidden from this user.
 */
export function processStart(pid: number): string | undefined {
  if (bootId === null) {
    try {
      bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      bootId = undefined;
    }
  }
  const startTime = procStatFields(pid)?.[19]; // field 22, counted from the state's 3
  return bootId !== undefined && startTime !== undefined && /^\d+$/.test(startTime) ? `${bootId}/${startTime}` : undefined;
}

/** What a lock file such as `twin.pid` says: the pid on its first line, and on a second the holder's {@link processStart}. */
export interface PidLockHolder {
  readonly pid: number;
  /** Absent from an older Sluice's lock (the pid alone), and off Linux. */
  readonly start?: string;
}

/** The lock file's content for `holder`: readable by {@link readPid}, whose first line is the pid. */
export function pidLockContent(holder: PidLockHolder): string {
  return holder.start === undefined ? `${holder.pid}\n` : `${holder.pid}\n${holder.start}\n`;
}

/** What a lock file such as `twin.pid` names; undefined when it is missing or holds no pid. */
export function readPidLock(file: string): PidLockHolder | undefined {
  let lines: string[];
  try {
    lines = fs.readFileSync(file, 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0].trim());
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
 */
export function holderRuns(holder: PidLockHolder, isAlive: (pid: number) => boolean = processIsAlive): boolean {
  if (!isAlive(holder.pid)) return false;
  const now = holder.start === undefined ? undefined : processStart(holder.pid);
  return now === undefined || now === holder.start;
}
