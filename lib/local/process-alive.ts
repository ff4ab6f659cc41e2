import * as fs from 'node:fs';

/**
 * Whether a process with this pid runs (EPERM: it exists, but belongs to someone else). A zombie does not: a process
 * ended (a SIGKILLed twin too) that its parent has not reaped yet keeps its pid, and would keep its lock held.
 */
export function processIsAlive(pid: number): boolean {
  return isRunning(pid, procStat(pid));
}

/** {@link processIsAlive}, with what /proc/<pid>/stat said of `pid` read already (undefined off Linux). */
function isRunning(pid: number, stat: ProcStat | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // Linux's /proc says whether it is a zombie; elsewhere no process is taken for one.
  return stat?.state !== 'Z';
}

/** What /proc/<pid>/stat says of a process: its state (field 3) and its start in clock ticks since boot (field 22). */
interface ProcStat {
  readonly state: string;
  readonly startTime: string | undefined;
}

/**
 * /proc/<pid>/stat; undefined off Linux or when the process is gone. The fields are counted after the command name,
 * cut at the last ')', since it may hold spaces and parentheses itself.
 */
function procStat(pid: number): ProcStat | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0], startTime: fields[19] }; // field 22, counted from the state's 3
}

let bootId: string | undefined | null = null;

/**
 * Which process `pid` is, beyond its number: `<boot id>/<start time>` (in clock ticks since boot, field 22 of
 * /proc/<pid>/stat), which a later process given the same pid (after a container restart, or a reboot) does not share.
 * Undefined off Linux, or when the process is gone or hidden from this user.
 */
export function processStart(pid: number): string | undefined {
  return startOf(procStat(pid));
}

let ownStart: { readonly start: string | undefined } | undefined;

/** This process's {@link processStart}, read once: it does not change while the process runs. */
export function ownProcessStart(): string | undefined {
  ownStart ??= { start: processStart(process.pid) };
  return ownStart.start;
}

function startOf(stat: ProcStat | undefined): string | undefined {
  if (bootId === null) {
    try {
      bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      bootId = undefined;
    }
  }
  const startTime = stat?.startTime;
  return bootId !== undefined && startTime !== undefined && /^\d+$/.test(startTime) ? `${bootId}/${startTime}` : undefined;
}

/**
 * What a lock file such as `twin.pid` says: the pid, the first word of its first line, and on a second line the
 * holder's {@link processStart}.
 */
export interface PidLockHolder {
  readonly pid: number;
  /** Absent from an older Sluice's lock (the pid alone), and off Linux. */
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
  // One read of /proc/<pid>/stat answers both: is the pid a zombie, and since when does it run.
  const stat = procStat(holder.pid);
  if (!(isAlive ? isAlive(holder.pid) : isRunning(holder.pid, stat))) return false;
  const now = holder.start === undefined ? undefined : startOf(stat);
  return now === undefined || now === holder.start;
}
