/**
 * Where there is no /proc (macOS), the processes a command started are found with `pgrep -P`, and free ports are
 * picked below the ephemeral range all the same. /proc is hidden from the modules here, as on a Mac.
 */
import { spawn } from 'node:child_process';
import { descendantsOf } from '../../lib/cli/child-processes';
import { ephemeralRangeStart, freePort } from '../../lib/local/ports';

jest.mock('node:fs', () => {
  const actual = jest.requireActual<typeof import('node:fs')>('node:fs');
  const noProc = (file: unknown): boolean => String(file) === '/proc' || String(file).startsWith('/proc/');
  const missing = (file: unknown) => Object.assign(new Error(`ENOENT: no such file or directory, scandir '${String(file)}'`), { code: 'ENOENT' });
  return {
    ...actual,
    readdirSync: (...args: Parameters<typeof actual.readdirSync>) => {
      if (noProc(args[0])) throw missing(args[0]);
      return actual.readdirSync(...args);
    },
    readFileSync: (...args: Parameters<typeof actual.readFileSync>) => {
      if (noProc(args[0])) throw missing(args[0]);
      return actual.readFileSync(...args);
    },
  };
});

test('without /proc, pgrep -P finds a shell and the process it started, the shell first', async () => {
  const shell = spawn('/bin/sh', ['-c', 'sleep 30 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const sleepPid = await new Promise<number>((resolve) => shell.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
    const found = descendantsOf(process.pid);
    expect(found).toEqual(expect.arrayContaining([shell.pid, sleepPid]));
    expect(found.indexOf(shell.pid!)).toBeLessThan(found.indexOf(sleepPid));
    expect(descendantsOf(sleepPid)).toEqual([]);
  } finally {
    for (const pid of descendantsOf(shell.pid!)) process.kill(pid, 'SIGKILL');
    shell.kill('SIGKILL');
  }
});

test('without /proc, the ephemeral range is taken to start at 32768 and free ports are picked below it', async () => {
  expect(ephemeralRangeStart()).toBe(32_768);
  for (let i = 0; i < 5; i++) expect(await freePort()).toBeLessThan(32_768);
});
