/** The check both child-processes suites make, with and without /proc: a shell and the process it started are found. */
import { spawn } from 'node:child_process';
import { descendantsOf } from '../../lib/cli/child-processes';

/** Starts a shell that starts `sleep`: descendantsOf finds both, the shell first, and nothing below the sleep. */
export async function expectShellAndItsChildFound(): Promise<void> {
  const shell = spawn('/bin/sh', ['-c', 'sleep 30 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const sleepPid = await new Promise<number>((resolve) => shell.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
    const found = descendantsOf(process.pid);
    expect(found).toEqual(expect.arrayContaining([shell.pid, sleepPid]));
    expect(found.indexOf(shell.pid!)).toBeLessThan(found.indexOf(sleepPid));
    expect(descendantsOf(sleepPid)).toEqual([]);
  } finally {
    // The shell's child first: ending the shell alone would leave it to init.
    for (const pid of descendantsOf(shell.pid!)) process.kill(pid, 'SIGKILL');
    shell.kill('SIGKILL');
  }
}
