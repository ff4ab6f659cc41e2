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
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

/** The pid a lock file such as `twin.pid` names; undefined when it is missing or holds no pid. */
export function readPid(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
