/**
 * Whether a lock's holder still runs where there is no /proc (macOS): `ps` says when a process started, so a pid the
 * system has handed to another process since (after a reboot, macOS counts pids again) does not hold a twin's lock.
 * /proc is hidden from the module here, as on a Mac.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { holderRuns, ownProcessStart, processIsAlive, processStart } from '../../lib/local/process-alive';

jest.mock('node:fs', () => {
  const actual = jest.requireActual<typeof import('node:fs')>('node:fs');
  const noProc = (file: unknown): boolean => String(file) === '/proc' || String(file).startsWith('/proc/');
  const missing = (file: unknown) => Object.assign(new Error(`ENOENT: no such file or directory, open '${String(file)}'`), { code: 'ENOENT' });
  return {
    ...actual,
    existsSync: (file: Parameters<typeof actual.existsSync>[0]) => !noProc(file) && actual.existsSync(file),
    readFileSync: (...args: Parameters<typeof actual.readFileSync>) => {
      if (noProc(args[0])) throw missing(args[0]);
      return actual.readFileSync(...args);
    },
  };
});

/** `ps`'s start, as the module writes it: the C locale's date, in UTC. */
const PS_START = /^started [A-Z][a-z]{2} [A-Z][a-z]{2} \d{1,2} \d\d:\d\d:\d\d \d{4} UTC$/;

async function startedProcess(args: string[]): Promise<ChildProcess> {
  const child = spawn('/bin/sh', args, { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve) => child.stdout!.once('data', resolve));
  return child;
}

let timeZone: string | undefined;
beforeAll(() => {
  // Two terminals in two zones must write and read one text for one process.
  timeZone = process.env.TZ;
  process.env.TZ = 'Asia/Kolkata';
});
afterAll(() => {
  if (timeZone === undefined) delete process.env.TZ;
  else process.env.TZ = timeZone;
});

test('without /proc, a process\'s start comes from ps, in UTC whatever the zone, and names the process to the second', async () => {
  const before = Math.floor(Date.now() / 1000) * 1000;
  const other = await startedProcess(['-c', 'echo up; exec sleep 30']);
  try {
    const start = processStart(other.pid!);
    expect(start).toMatch(PS_START);
    const at = Date.parse(start!.slice('started '.length));
    expect(at).toBeGreaterThanOrEqual(before - 1000);
    expect(at).toBeLessThanOrEqual(Date.now());
    expect(ownProcessStart()).toMatch(PS_START);
    expect(processStart(other.pid!)).toBe(start);
  } finally {
    other.kill('SIGKILL');
  }
});

test('without /proc, a lock naming a live pid with another start is no holder; with its start, or the pid alone, it is', async () => {
  const other = await startedProcess(['-c', 'echo up; exec sleep 30']);
  try {
    const start = processStart(other.pid!)!;
    // The pid's earlier owner, a twin that crashed before a reboot.
    expect(holderRuns({ pid: other.pid!, start: 'started Mon Jan 5 09:00:00 2026 UTC' })).toBe(false);
    expect(holderRuns({ pid: other.pid!, start })).toBe(true);
    expect(holderRuns({ pid: other.pid! })).toBe(true);
    expect(holderRuns({ pid: process.pid, start: ownProcessStart() })).toBe(true);
  } finally {
    other.kill('SIGKILL');
  }
  await new Promise((resolve) => other.once('exit', resolve));
  expect(processIsAlive(other.pid!)).toBe(false);
  expect(processStart(other.pid!)).toBeUndefined();
});

test('without /proc, a zombie (ended, not reaped by its parent) is not alive: ps says so', async () => {
  // The shell's background child ends at once; the shell, become `sleep`, never reaps it.
  const parent = spawn('/bin/sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const zombie = await new Promise<number>((resolve) => parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
    for (const deadline = Date.now() + 5000; processIsAlive(zombie) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20));
    expect(processIsAlive(zombie)).toBe(false);
    expect(processIsAlive(parent.pid!)).toBe(true);
  } finally {
    parent.kill('SIGKILL');
  }
});

test('without /proc, the start is read from a ps that takes -o as POSIX says (the rest of an argument after "=" is its header, as FreeBSD\'s does)', async () => {
  // A ps in front of the real one that reads its -o arguments as POSIX does: keywords before the first "=", separated
  // by commas, and all after it the last one's header; a header line when any header is not empty.
  const realPs = execFileSync('/bin/sh', ['-c', 'command -v ps'], { encoding: 'utf8' }).trim();
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-posix-ps-'));
  fs.writeFileSync(path.join(bin, 'ps'), `#!${process.execPath}
const { execFileSync } = require('node:child_process');
const args = process.argv.slice(2);
const keywords = [];
let pid;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '-p') pid = args[++i];
  if (args[i] !== '-o') continue;
  const spec = args[++i];
  const eq = spec.indexOf('=');
  const names = (eq === -1 ? spec : spec.slice(0, eq)).split(/[ ,]/).filter(Boolean);
  names.forEach((name, j) => keywords.push({ name, header: eq !== -1 && j === names.length - 1 ? spec.slice(eq + 1) : name.toUpperCase() }));
}
let out;
try {
  out = execFileSync(${JSON.stringify(realPs)}, [...keywords.flatMap((k) => ['-o', k.name + '=']), '-p', pid], { encoding: 'utf8' });
} catch {
  process.exit(1);
}
const headers = keywords.map((k) => k.header);
process.stdout.write((headers.some(Boolean) ? headers.join(' ') + '\\n' : '') + out);
`, { mode: 0o755 });
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}${path.delimiter}${savedPath ?? ''}`;
  const other = await startedProcess(['-c', 'echo up; exec sleep 30']);
  try {
    expect(execFileSync('ps', ['-o', 'stat=,lstart=', '-p', String(other.pid)], { encoding: 'utf8', env: process.env })).toMatch(/^,lstart=\n\S+\s*\n$/);
    expect(processStart(other.pid!)).toMatch(PS_START);
    expect(holderRuns({ pid: other.pid!, start: 'started Mon Jan 5 09:00:00 2026 UTC' })).toBe(false);
  } finally {
    process.env.PATH = savedPath;
    other.kill('SIGKILL');
    fs.rmSync(bin, { recursive: true, force: true });
  }
});

test('without /proc and without ps (none on the PATH), a lock is judged by its pid alone: a live pid holds it, a dead one does not', async () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-no-ps-'));
  const savedPath = process.env.PATH;
  const other = await startedProcess(['-c', 'echo up; exec sleep 30']);
  process.env.PATH = empty;
  try {
    expect(processStart(other.pid!)).toBeUndefined();
    // Its start cannot be compared: the live pid holds the lock, whatever start the lock recorded.
    expect(holderRuns({ pid: other.pid!, start: 'started Mon Jan 5 09:00:00 2026 UTC' })).toBe(true);
    other.kill('SIGKILL');
    await new Promise((resolve) => other.once('exit', resolve));
    expect(holderRuns({ pid: other.pid!, start: 'started Mon Jan 5 09:00:00 2026 UTC' })).toBe(false);
  } finally {
    process.env.PATH = savedPath;
    other.kill('SIGKILL');
    fs.rmSync(empty, { recursive: true, force: true });
  }
});

test('without /proc, ps\'s answer stands for a second on the monotonic clock: the wall clock set back an hour does not keep a process that ended alive for the hour', async () => {
  // The shell's background child runs until killed; the shell, become `sleep`, never reaps it: killed, it is a zombie.
  const parent = spawn('/bin/sh', ['-c', 'sleep 30 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const realNow = Date.now.bind(Date);
  let setBack = 0;
  const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - setBack);
  try {
    const child = await new Promise<number>((resolve) => parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
    expect(processIsAlive(child)).toBe(true);
    setBack = 3_600_000;
    process.kill(child, 'SIGKILL');
    const began = performance.now();
    while (processIsAlive(child) && performance.now() - began < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(processIsAlive(child)).toBe(false);
  } finally {
    clock.mockRestore();
    parent.kill('SIGKILL');
  }
});
