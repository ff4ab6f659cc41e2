/**
 * Where there is no /proc (macOS), the processes a command started are found with `pgrep -P`, and free ports are
 * picked below the ephemeral range all the same. /proc is hidden from the modules here, as on a Mac.
 */
import { expectShellAndItsChildFound } from './descendants';
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

test('without /proc, pgrep -P finds a shell and the process it started, the shell first', expectShellAndItsChildFound);

test('without /proc, the ephemeral range is taken to start at 32768 and free ports are picked below it', async () => {
  expect(ephemeralRangeStart()).toBe(32_768);
  for (let i = 0; i < 5; i++) expect(await freePort()).toBeLessThan(32_768);
});
