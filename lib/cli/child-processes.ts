/**
 * The processes a command started and left running: a credential_process the SDK's chain runs (through a shell) and the
 * command gave up waiting on. They would outlive the CLI, holding the terminal a prompt of theirs may have, so the CLI
 * ends them as it ends.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** The processes `pid` started, and theirs, each before the ones it started. */
export function descendantsOf(pid: number): number[] {
  const found: number[] = [];
  const visit = (parent: number): void => {
    for (const child of childrenOf(parent)) {
      if (found.includes(child)) continue;
      found.push(child);
      visit(child);
    }
  };
  visit(pid);
  return found;
}

/** Sends SIGTERM to every process this one started, and to theirs; returns how many it signalled. */
export function endChildProcesses(): number {
  let signalled = 0;
  // All are listed before any is signalled: a shell that ends first would leave its child to init, out of our sight.
  for (const pid of descendantsOf(process.pid)) {
    try {
      process.kill(pid, 'SIGTERM');
      signalled++;
    } catch {
      // Ended meanwhile.
    }
  }
  return signalled;
}

/** Linux lists a process's children under /proc; elsewhere (macOS) `pgrep -P` does. None when neither can. */
function childrenOf(pid: number): number[] {
  const tasks = `/proc/${pid}/task`;
  try {
    const children: number[] = [];
    for (const task of readdirSync(tasks)) {
      for (const id of readFileSync(`${tasks}/${task}/children`, 'utf8').split(' ')) if (id.trim() !== '') children.push(Number(id));
    }
    return children;
  } catch {
    // Not Linux, or a kernel without the children file.
  }
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n').filter((line) => line.trim() !== '').map(Number);
  } catch {
    // pgrep exits 1 when there are none, or is not there.
    return [];
  }
}
