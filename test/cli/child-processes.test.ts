/** Finding the processes a command started (and theirs), which the CLI ends with a credential wait it gave up on. */
import { spawn } from 'node:child_process';
import { descendantsOf } from '../../lib/cli/child-processes';

test('a shell and the process it started are both found, the shell first; a process with none has none', async () => {
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
});
