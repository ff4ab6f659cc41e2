/**
 * `npm start`'s DLQ column: the twin's dead-letter queue broken down by the pipeline each message names.
 * What `local up` / `demo` check before they start anything, what they report, and how they take Ctrl-C and SIGTERM.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PutRecordCommand } from '@aws-sdk/client-firehose';
import { GetRecordsCommand, GetShardIteratorCommand, KinesisClient, ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { firehoseClient } from '../../lib/local/aws-clients';
import { DlqFile } from '../../lib/local/dlq-file';
import { toSqsBody } from '../../transforms/shared/sqs-body';
import { DEMO_SUMMARY_COLUMNS, lockDataDir } from '../../lib/cli/local-command';
import { localBucketName } from '../../lib/local/paths';
import { processStart, readPid } from '../../lib/local/process-alive';
import { readLiveTwinRecord, twinLockHolder } from '../../lib/local/twin-record';
import { dlqMessageKinds, dlqMessageKindsByPipeline } from '../../lib/local/twin';
import { MAX_ERROR_LINE_BYTES, OVERLONG_LINE_ERROR_CODE } from '../../transforms/failure-router/handler';
import type { Twin, TwinOptions } from '../../lib/local/twin';
import { processRuns, waitForExit } from '../faults/helpers';
import { config, expectNoStackTrace, registerTwin, sluice, sluiceAfresh, sluiceBinary, sluiceWithUnusableTempDir, tempDataDir } from './helpers';

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The fields of a failure-router message the count reads; the rest do not matter to it. */
const message = (pipeline: string, n: number): string => toSqsBody({ dedupeKey: `${pipeline}-${n}`, pipeline, errorType: 'processing-failed' });

let dataDir: string;
beforeEach(() => {
  dataDir = tempDataDir();
});
afterEach(async () => {
  // A `local up` child ended at once (a second Ctrl-C or SIGTERM) leaves kinesis-mock, orphaned, making its final save into
  // the data dir before it ends: on a busy machine that took longer than rmSync's own retries (5.5 s) once.
  for (let attempt = 1; ; attempt++) {
    try {
      rmSync(dataDir, { recursive: true, force: true });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' || attempt === 150) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}, 60_000);

/** `sluice <args>` in its own process: its output so far, its exit, and a wait for what it prints. */
function sluiceProcess(args: readonly string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => (output.stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output.stderr += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  /** Resolves as soon as `seen` holds, checked on each piece of output; fails should the process exit first. */
  const when = (what: string, seen: () => boolean) => new Promise<void>((resolve, reject) => {
    const check = () => {
      if (!seen()) return;
      stop();
      resolve();
    };
    const gone = () => {
      stop();
      reject(new Error(`sluice ${args[0]} exited before ${what}:\n${output.stdout}\n${output.stderr}`));
    };
    const stop = () => {
      child.stdout.off('data', check);
      child.stderr.off('data', check);
      child.off('exit', gone);
    };
    child.stdout.on('data', check);
    child.stderr.on('data', check);
    child.once('exit', gone);
    check();
  });
  /** Its child processes now (the twin's kinesis-mock; dynalite and the transform's runtimes run inside it). */
  const children = () => readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  return { child, output, exited, when, children };
}

/** What a start on a data dir a live twin holds says; `endpoints`: those its twin.json names, when it has written one. */
function inUseByTwin(dir: string, pid: number, endpoints?: { firehose: string; kinesis: string; dynamo?: string }): string {
  const where = endpoints ? `; Firehose ${endpoints.firehose}, Kinesis ${endpoints.kinesis}, DynamoDB ${endpoints.dynamo}` : '';
  return `sluice: --data-dir ${dir} is in use by a running twin (pid ${pid}${where}): two twins on one data dir would corrupt its write-ahead logs and checkpoints. `
    + `Stop that twin (Ctrl-C where it runs, or \`kill ${pid}\`: it flushes, then exits), or give this one another --data-dir (if no twin runs there, delete ${path.join(dir, 'twin.pid')})\n`;
}

/** Until `ready()` says so (5 s at most). */
async function waitFor(ready: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 5000; !ready(); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > deadline) throw new Error(`not ready after 5 s: ${ready}`);
  }
}

describe('dlqMessageKindsByPipeline: its byPipeline', () => {
  const messagesByPipeline = async (queue: DlqFile) => (await dlqMessageKindsByPipeline(queue)).byPipeline;

  test('counts messages per pipeline; a pipeline with none has no entry', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-dlq' });
    await dlq.send([message('iot', 1), message('transactions', 1), message('iot', 2), message('iot', 3), message('transactions', 2)]);
    const counts = await messagesByPipeline(dlq);
    expect([...counts]).toEqual([['iot', 3], ['transactions', 2]]);
    expect(counts.has('clickstream')).toBe(false);
  });

  test('an empty or never-written queue counts nothing', async () => {
    expect((await messagesByPipeline(new DlqFile({ dataDir, queue: 'sluice-local-dlq' }))).size).toBe(0);
  });

  test('bodies that name no pipeline count for none, and do not stop the count', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-dlq' });
    await dlq.send([
      'not json at all',
      message('iot', 1),
      'null',
      '[1,2]',
      '"iot"',
      toSqsBody({ pipeline: 42 }),
      toSqsBody({ dedupeKey: 'k', errorType: 'processing-failed' }),
      message('iot', 2),
    ]);
    expect([...await messagesByPipeline(dlq)]).toEqual([['iot', 2]]);
  });

  test('deleted (replayed) messages no longer count, so the column adds up to the DLQ total', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-dlq' });
    await dlq.send([message('iot', 1), message('app-events', 1), message('iot', 2)]);
    const [first] = await dlq.receive(1);
    await dlq.delete([first.receiptHandle]);
    const counts = await messagesByPipeline(dlq);
    expect([...counts]).toEqual([['app-events', 1], ['iot', 1]]);
    expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(await dlq.count());
  });

  test('reads only its own queue: the consumer DLQ beside it is not counted', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'consumers-local-dlq' }); // a prefix may contain "consumer"
    await new DlqFile({ dataDir, queue: 'consumers-local-consumer-dlq' }).send([message('iot', 9)]);
    await dlq.send([message('iot', 1)]);
    expect([...await messagesByPipeline(dlq)]).toEqual([['iot', 1]]);
  });
});

describe('dlqMessageKinds', () => {
  test('counts the router\'s pointers to over-long error lines apart from records; anything else counts as a record', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-dlq' });
    const pointer = (n: number) => toSqsBody({ dedupeKey: `p-${n}`, pipeline: 'app-events', errorType: 'processing-failed', errorCode: OVERLONG_LINE_ERROR_CODE });
    await dlq.send([
      message('iot', 1), pointer(1), 'not json at all',
      // A record whose text mentions the code is still a record.
      toSqsBody({ dedupeKey: 'r', pipeline: 'iot', errorCode: 'Lambda.ProcessingFailedStatus', errorMessage: OVERLONG_LINE_ERROR_CODE }),
      pointer(2),
    ]);
    expect(await dlqMessageKinds(dlq)).toEqual({ records: 3, overlongLinePointers: 2 });
    const [first] = await dlq.receive(1);
    await dlq.delete([first.receiptHandle]);
    expect(await dlqMessageKinds(dlq)).toEqual({ records: 2, overlongLinePointers: 2 });
  });
});

describe('dlqMessageKindsByPipeline', () => {
  test('gives what dlqMessageKinds gives, and the messages per pipeline, from one read of the queue', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-dlq' });
    const pointer = toSqsBody({ dedupeKey: 'p-1', pipeline: 'app-events', errorType: 'processing-failed', errorCode: OVERLONG_LINE_ERROR_CODE });
    await dlq.send([message('iot', 1), pointer, 'not json at all', message('transactions', 1), message('iot', 2)]);
    const kinds = await dlqMessageKinds(dlq);
    const byPipeline = new Map([['iot', 2], ['app-events', 1], ['transactions', 1]]);
    const read = jest.spyOn(DlqFile.prototype, 'forEachBody');
    try {
      expect(await dlqMessageKindsByPipeline(dlq)).toEqual({ ...kinds, byPipeline });
      expect(read).toHaveBeenCalledTimes(1);
    } finally {
      read.mockRestore();
    }
  });
});

describe('before the twin starts', () => {
  test('--help gives the ports and buffer interval the configuration sets (-c too), each port\'s variable, and that 0 picks a free port', async () => {
    // Each port flag, its setting and variable, and a port for -c to set instead.
    const ports = [
      ['--firehose-port', 'firehosePort', 'SLUICE_FIREHOSE_PORT', 14573],
      ['--kinesis-port', 'kinesisPort', 'SLUICE_KINESIS_PORT', 14568],
      ['--dynamo-port', 'dynamoPort', 'SLUICE_DYNAMO_PORT', 14569],
    ] as const;
    const helpOf = async (...args: string[]) => {
      const run = await sluice('local', 'up', ...args, '--help');
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      return run.stdout.replace(/\s+/g, ' ');
    };
    const help = await helpOf();
    for (const [flag, key, env] of ports) {
      expect(help).toMatch(new RegExp(`${flag} <port> [^<]+?\\(default ${config.local[key]} from local\\.${key} in cdk\\.json or -c; env ${env}; 0 = any free port\\)`));
    }
    expect(help).toMatch(new RegExp(`--buffer-interval <seconds> [^<]+?\\(default ${config.local.bufferIntervalSeconds} s from local\\.bufferIntervalSeconds in cdk\\.json or -c\\)`));

    expect(help).toContain(`--endpoint-url http://127.0.0.1:${config.local.firehosePort} --delivery-stream-name ${config.prefix}-${config.env}-app-events-lake `);

    const overridden = await helpOf(...ports.flatMap(([, key, , port]) => ['-c', `local.${key}=${port}`]), '-c', 'local.bufferIntervalSeconds=7', '-c', 'env=prod');
    for (const [flag, key, , port] of ports) expect(overridden).toMatch(new RegExp(`${flag} <port> [^<]+?\\(default ${port} from local\\.${key} in`));
    expect(overridden).toMatch(/--buffer-interval <seconds> [^<]+?\(default 7 s from local\.bufferIntervalSeconds in/);
    // The example puts where that twin listens.
    expect(overridden).toContain(`--endpoint-url http://127.0.0.1:14573 --delivery-stream-name ${config.prefix}-prod-app-events-lake `);

    // A configuration that cannot be read is the command's to refuse: its help still comes, naming the settings.
    const unreadable = await helpOf('-c', 'local.firehosePort=abc');
    expect(unreadable).toMatch(/--firehose-port <port> [^<]+?\(default local\.firehosePort in cdk\.json or -c; env SLUICE_FIREHOSE_PORT; 0 = any free port\)/);
  });

  test('--help reads -c wherever it stands: after --help, and with commander\'s help command (`sluice local help up -c …`)', async () => {
    for (const argv of [
      ['local', 'up', '--help', '-c', 'local.firehosePort=14573', '-c', 'env=prod'],
      ['local', 'help', 'up', '-c', 'local.firehosePort=14573', '-c', 'env=prod'],
      ['local', 'help', 'up', '--context=local.firehosePort=14573', '-cenv=prod'],
    ]) {
      const run = await sluice(...argv);
      expect({ argv, code: run.code, stderr: run.stderr }).toEqual({ argv, code: 0, stderr: '' });
      const help = run.stdout.replace(/\s+/g, ' ');
      expect(help).toMatch(/^Usage: sluice local up /);
      expect(help).toMatch(/--firehose-port <port> [^<]+?\(default 14573 from local\.firehosePort in cdk\.json or -c;/);
      expect(help).toContain(`--endpoint-url http://127.0.0.1:14573 --delivery-stream-name ${config.prefix}-prod-app-events-lake `);
    }
  });

  test('demo --help gives the demo\'s own defaults: free ports whatever SLUICE_*_PORT says, and a 1 s buffer interval', async () => {
    const run = await sluice('demo', '--help');
    const help = run.stdout.replace(/\s+/g, ' ');
    for (const flag of ['--firehose-port', '--kinesis-port', '--dynamo-port']) {
      expect(help).toMatch(new RegExp(`${flag} <port> [^<]+? port \\(default any free port; SLUICE_\\w+_PORT is not read\\)`));
    }
    expect(help).toMatch(/--buffer-interval <seconds> [^(]+\(default 1 s, for a quick flush; cdk\.json's local\.bufferIntervalSeconds is not read\)/);
    expect(help).toMatch(/--host <address> [^(]+\(default 127\.0\.0\.1, loopback only; env SLUICE_HOST\)/);
  });

  test('a data dir that is a file: one line, exit 2, nothing started', async () => {
    const file = path.join(dataDir, 'not-a-dir');
    writeFileSync(file, 'x');
    const run = await sluice('local', 'up', '--data-dir', file, '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0');
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(`sluice: --data-dir ${file} is a file, not a directory: give a directory (it is created if missing)\n`);
  });

  test('a data dir that cannot be made says why and exits 2, also under /proc (where Node\'s recursive mkdir never returns)', async () => {
    const nested = path.join(dataDir, 'file', 'sub');
    writeFileSync(path.join(dataDir, 'file'), 'x');
    const underFile = await sluice('local', 'up', '--data-dir', nested, '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0');
    expect(underFile.code).toBe(2);
    expect(underFile.stderr).toMatch(new RegExp(`^sluice: --data-dir ${nested} cannot be created: ENOTDIR`));
    // In a child process with a deadline: the old code looped forever, synchronously.
    const proc = spawnSync(process.execPath, [path.join(__dirname, '../../bin/sluice.js'), 'local', 'up', '--data-dir', '/proc/sluice-nope/data',
      '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0'], { encoding: 'utf8', timeout: 30_000 });
    expect(proc.signal).toBeNull();
    expect(proc.status).toBe(2);
    expect(proc.stderr).toBe("sluice: --data-dir /proc/sluice-nope/data cannot be created: ENOENT: no such file or directory, mkdir '/proc/sluice-nope'\n");
  }, 40_000);

  test('a folder where the twin writes twin.json or lake-layout.json at every start is named, with what to do, before anything starts (exit 2; the lock let go, nothing left beside it)', async () => {
    const written = {
      'twin.json': 'its record: its pid, endpoints and schemas, which the other commands read; removed when it stops',
      'lake-layout.json': 'the lake\'s partition layout, from what its files show',
    };
    for (const [name, what] of Object.entries(written)) {
      const folder = path.join(dataDir, name);
      mkdirSync(folder);
      try {
        const run = await sluice('local', 'up', '--data-dir', dataDir, '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0');
        expect(run.code).toBe(2);
        expect(run.stderr).toContain(`sluice: ${folder} is a folder: a twin writes a file there at every start (${what}), and none of its data is in it. Move the folder away, then start again\n`);
        expect(readdirSync(dataDir).filter((entry) => entry.startsWith('twin.'))).toEqual(name === 'twin.json' ? ['twin.json'] : []);
      } finally {
        rmSync(folder, { recursive: true, force: true });
      }
    }
  });

  test('a port in use is named with its flag and variable, before anything starts', async () => {
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as { port: number }).port;
    try {
      const dir = path.join(dataDir, 'fresh');
      const run = await sluice('local', 'up', '--data-dir', dir, '--firehose-port', '0', '--kinesis-port', String(port), '--dynamo-port', '0');
      expect(run.code).toBe(2);
      expect(run.stderr).toBe(`sluice: port ${port} on 127.0.0.1 (Kinesis emulator) is in use, perhaps by another twin: stop it, or choose another port with --kinesis-port or SLUICE_KINESIS_PORT (0 = any free port)\n`);
      expect(existsSync(dir)).toBe(false);
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
  });

  test('a port that is not one is named where it came from: the SLUICE_*_PORT variable, or the flag; nothing starts', async () => {
    const dir = path.join(dataDir, 'fresh');
    for (const [flag, variable] of [['--firehose-port', 'SLUICE_FIREHOSE_PORT'], ['--kinesis-port', 'SLUICE_KINESIS_PORT'], ['--dynamo-port', 'SLUICE_DYNAMO_PORT']]) {
      const saved = process.env[variable];
      process.env[variable] = 'abc';
      try {
        const fromVariable = await sluice('local', 'up', '--data-dir', dir);
        expect({ code: fromVariable.code, stderr: fromVariable.stderr })
          .toEqual({ code: 2, stderr: `sluice: ${variable}: "abc" is not a port (0–65535; 0 picks a free one)\n` });
        const fromFlag = await sluice('local', 'up', '--data-dir', dir, flag, '99999');
        expect({ code: fromFlag.code, stderr: fromFlag.stderr })
          .toEqual({ code: 2, stderr: `sluice: ${flag}: "99999" is not a port (0–65535; 0 picks a free one)\n` });
      } finally {
        if (saved === undefined) delete process.env[variable];
        else process.env[variable] = saved;
      }
    }
    expect(existsSync(dir)).toBe(false);
  });

  test('a demo whose port is in use names only its flag, and leaves no empty sluice-demo-* dir behind; a --data-dir given stays', async () => {
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as { port: number }).port;
    try {
      // TMPDIR here, so that the demo's own data dir goes where this test can see it (tsx keeps its cache there too).
      const run = sluiceBinary(['demo', '--count', '1', '--firehose-port', String(port)], { TMPDIR: dataDir });
      const demoDirs = () => readdirSync(dataDir).filter((f) => f.startsWith('sluice-demo-'));
      expect(run.code).toBe(2);
      expect(run.stderr).toBe(`sluice: port ${port} on 127.0.0.1 (Firehose API) is in use, perhaps by another twin: stop it, or choose another port with --firehose-port (or leave it out: any free port)\n`);
      expect(demoDirs()).toEqual([]);
      const given = path.join(dataDir, 'given');
      mkdirSync(given);
      const withDataDir = await sluice('demo', '--count', '1', '--firehose-port', String(port), '--data-dir', given);
      expect(withDataDir.code).toBe(2);
      expect({ demoDirs: demoDirs(), given: existsSync(given) }).toEqual({ demoDirs: [], given: true });
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
  });

  test('a temp dir that cannot take the demo\'s data dir is said with what to do (exit 2), not as a bug', () => {
    const { code, stderr, tempDir } = sluiceWithUnusableTempDir('demo', '--count', '1');
    expect({ code, stderr }).toEqual({ code: 2, stderr: `sluice: the temp dir ${tempDir} cannot take the demo's data dir (ENOTDIR): set TMPDIR to a folder you can write\n` });
  });

  test('a data dir another live twin holds is refused and names it; one a dead twin left is taken over and released', async () => {
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      writeFileSync(path.join(dataDir, 'twin.pid'), `${other.pid}\n`);
      const refused = await sluice('demo', '--count', '1', '--data-dir', dataDir);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toBe(inUseByTwin(dataDir, other.pid!));
    } finally {
      other.kill();
      await new Promise((resolve) => other.once('exit', resolve));
    }
    // Now the pid names a process that is gone.
    const run = await sluice('demo', '--count', '1', '--data-dir', dataDir);
    expect(run.code).toBe(0);
    expect(existsSync(path.join(dataDir, 'twin.pid'))).toBe(false);
  }, 60_000);

  test('two starts racing for one stale twin.pid: one takes it over, the other gives way', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-lock-'));
    try {
      const file = path.join(dir, 'twin.pid');
      writeFileSync(file, '999999\n');
      const alive = (pid: number) => pid === 1001 || pid === 1002;
      let releaseA: (() => void) | undefined;
      // B judges the file stale, then A takes it over before B does.
      expect(() => lockDataDir(dir, { pid: 1002, isAlive: alive, beforeTakeover: () => { releaseA = lockDataDir(dir, { pid: 1001, isAlive: alive }); } }))
        .toThrow(`--data-dir ${dir} is in use by a running twin (pid 1001)`);
      expect(readFileSync(file, 'utf8')).toBe('1001\n');
      expect(readdirSync(dir)).toEqual(['twin.pid']);
      releaseA!();
      expect(existsSync(file)).toBe(false);
      // A stale file alone is taken over, and released by its new holder only.
      writeFileSync(file, '999999\n');
      const release = lockDataDir(dir, { pid: 1002, isAlive: alive });
      expect(readFileSync(file, 'utf8')).toBe('1002\n');
      release();
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a twin.pid naming a process killed and not yet reaped (a zombie: its pid still answers) is taken over', async () => {
    // A stand-in twin whose parent, `sleep` after the exec, never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const [line] = await once(parent.stdout, 'data') as [Buffer];
      const pid = Number(line.toString().trim());
      // Killed once the shell has become `sleep`, which never waits for a child (the shell could still reap it).
      for (const deadline = Date.now() + 5000; readFileSync(`/proc/${parent.pid}/comm`, 'utf8') !== 'sleep\n'; await new Promise((r) => setTimeout(r, 20))) {
        if (Date.now() > deadline) throw new Error('the shell did not exec sleep');
      }
      process.kill(pid, 'SIGKILL');
      for (const deadline = Date.now() + 5000; !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); await new Promise((r) => setTimeout(r, 20))) {
        if (Date.now() > deadline) throw new Error(`pid ${pid} did not become a zombie`);
      }
      writeFileSync(path.join(dataDir, 'twin.pid'), `${pid}\n`);
      const release = lockDataDir(dataDir);
      expect(readPid(path.join(dataDir, 'twin.pid'))).toBe(process.pid);
      release();
      expect(readdirSync(dataDir)).toEqual([]);
    } finally {
      parent.kill('SIGKILL');
    }
  });

  test('a twin.pid whose pid now runs another process (a later start than the one it records: a container restarted) is taken over; its own process, or a pid alone, still holds', async () => {
    // Not a twin, but alive: as if it had been given the pid of a twin killed earlier.
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await waitFor(() => processStart(other.pid!) !== undefined);
      const start = processStart(other.pid!)!;
      const earlier = start.replace(/\d+$/, (ticks) => String(Number(ticks) - 1));
      const file = path.join(dataDir, 'twin.pid');
      writeFileSync(file, `${other.pid}\n${earlier}\n`);
      expect(twinLockHolder(dataDir)).toBeUndefined();
      const release = lockDataDir(dataDir);
      expect(readFileSync(file, 'utf8')).toBe(`${process.pid}\n${processStart(process.pid)}\n`);
      expect(readPid(file)).toBe(process.pid); // the first line, as an older Sluice reads it
      expect(twinLockHolder(dataDir)).toBe(process.pid);
      release();
      expect(readdirSync(dataDir)).toEqual([]);
      // Written by that process itself, or by an older Sluice with the pid alone: held.
      for (const content of [`${other.pid}\n${start}\n`, `${other.pid}\n`]) {
        writeFileSync(file, content);
        expect(twinLockHolder(dataDir)).toBe(other.pid);
        expect(() => lockDataDir(dataDir)).toThrow(`--data-dir ${dataDir} is in use by a running twin (pid ${other.pid}):`);
        expect(readFileSync(file, 'utf8')).toBe(content);
      }
      rmSync(file);
      // twin.json the same: a record naming the pid with another start is an earlier twin's, no running one.
      registerTwin(dataDir, {}, { pid: other.pid!, processStart: earlier });
      expect(readLiveTwinRecord(dataDir)).toBeUndefined();
      registerTwin(dataDir, {}, { pid: other.pid!, processStart: start });
      expect(readLiveTwinRecord(dataDir)?.pid).toBe(other.pid);
      registerTwin(dataDir, {}, { pid: other.pid! });
      expect(readLiveTwinRecord(dataDir)?.pid).toBe(other.pid);
    } finally {
      other.kill('SIGKILL');
    }
  });

  test('the start a lock records is field 22 of /proc/<pid>/stat, read after the last ")" of a command name with spaces and parentheses', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-stat-'));
    const program = path.join(dir, 'a) b (c');
    copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), program);
    chmodSync(program, 0o755);
    const odd = spawn(program, ['30'], { stdio: 'ignore' });
    try {
      await waitFor(() => readFileSync(`/proc/${odd.pid}/comm`, 'utf8') === 'a) b (c\n');
      const [bootId, ticks] = processStart(odd.pid!)!.split('/');
      expect(bootId).toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
      // Started just now: its start, in clock ticks since boot, is the uptime now.
      const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
      const hertz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
      expect(Math.abs(Number(ticks) / hertz - uptime)).toBeLessThan(5);
    } finally {
      odd.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an address that is not this machine\'s is named, without a stack trace', async () => {
    const run = await sluice('local', 'up', '--data-dir', path.join(dataDir, 'h'), '--host', '999.1.1.1', '--firehose-port', '4599');
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^sluice: --host 999\.1\.1\.1: cannot listen there \(\w+\): give an address of this machine, e\.g\. 127\.0\.0\.1\n$/);
    expectNoStackTrace(run.stderr);
  });

  test('so is a --host nothing can listen on when every port is 0 (no port to probe): a name that does not resolve, an address not this machine\'s', async () => {
    // A name that does not resolve is ENOTFOUND, or EAI_AGAIN on a machine without a resolver.
    for (const [host, code] of [['999.1.1.1', 'ENOTFOUND|EAI_AGAIN'], ['10.255.255.1', 'EADDRNOTAVAIL']]) {
      const dir = path.join(dataDir, code.split('|')[0]);
      const run = await sluice('local', 'up', '--host', host, '--data-dir', dir, '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0');
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(new RegExp(`^sluice: --host ${host.replace(/\./g, '\\.')}: cannot listen there \\((${code})\\): give an address of this machine, e\\.g\\. 127\\.0\\.0\\.1\n$`));
      expect(existsSync(dir)).toBe(false);
    }
  });
});

describe('demo', () => {
  test('README\'s npm start paragraph says what the summary is: one table with a row per pipeline, naming each of its columns', () => {
    const readme = readFileSync(path.join(__dirname, '../../README.md'), 'utf8');
    const start = readme.indexOf('`npm start` starts the local twin');
    expect(start).toBeGreaterThanOrEqual(0);
    const paragraph = readme.slice(start, readme.indexOf('\n\n', start)).replace(/\s+/g, ' ');
    expect(paragraph).toMatch(/prints one table with a row per pipeline/);
    expect(DEMO_SUMMARY_COLUMNS.slice(1).filter((column) => !paragraph.includes(`\`${column}\``))).toEqual([]);
  });

  test('a data dir that holds an earlier run\'s data is refused before anything starts, and says what to do', async () => {
    // What an earlier demo leaves: a DLQ with messages (and more), which this run's report would count as its own.
    await new DlqFile({ dataDir, queue: 'sluice-dev-dlq' }).send([message('iot', 1)]);
    writeFileSync(path.join(dataDir, 'twin.pid'), '999999\n'); // a dead twin's lock is no data
    writeFileSync(path.join(dataDir, 'twin.json'), '{"pid":999999}\n'); // nor is what it said of itself
    // nor what a write killed halfway leaves beside the twin's files, nor the data dir's format
    writeFileSync(path.join(dataDir, '.twin.json.999999.0a1b2c3d.tmp'), '{"pi');
    writeFileSync(path.join(dataDir, '.sluice-data.json.999999.0a1b2c3d.tmp'), '');
    writeFileSync(path.join(dataDir, 'sluice-data.json'), '{"format":1}\n');
    const before = readdirSync(dataDir).sort();
    const run = await sluice('demo', '--count', '1', '--data-dir', dataDir);
    expect(run.stderr).toBe(`sluice: --data-dir ${dataDir} already holds data (dlq): the demo counts only what it sends, so it needs an empty data dir. `
      + `Give a new or empty --data-dir (or delete this one), or leave --data-dir out for a new one under ${tmpdir()}\n`);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(readdirSync(dataDir).sort()).toEqual(before.filter((name) => name !== 'twin.pid'));
  });

  test('a pipeline whose records cannot be generated is said before anything starts: no twin, nothing sent, no sluice-demo-* dir left', async () => {
    // iot's schema as if a field with a pattern had lost its examples; the pipelines before it in cdk.json (clickstream) were sent to first.
    jest.doMock('../../lib/schema/sample', () => {
      const actual = jest.requireActual<typeof import('../../lib/schema/sample')>('../../lib/schema/sample');
      const cannot = (schema: object) => {
        if ((schema as { $id?: string }).$id?.includes('/iot.schema.json')) throw new actual.SampleError('/device_id', 'a string with "pattern" needs "examples" to draw from');
      };
      return {
        ...actual,
        sampleRecord: (schema: object, ...rest: [never]) => { cannot(schema); return actual.sampleRecord(schema, ...rest); },
        badRecordBytes: (schema: object, ...rest: [never, never]) => { cannot(schema); return actual.badRecordBytes(schema, ...rest); },
      };
    });
    // The demo's own data dir would go here, where this test can see it (a test's process.env.TMPDIR does not reach os.tmpdir()).
    jest.doMock('node:os', () => ({ ...jest.requireActual<typeof import('node:os')>('node:os'), tmpdir: () => dataDir }));
    try {
      const run = await sluiceAfresh('demo', '--count', '5');
      expect(run).toEqual(expect.objectContaining({
        code: 2,
        stdout: '',
        stderr: 'sluice: cannot generate iot records: field /device_id: a string with "pattern" needs "examples" to draw from; add "examples" to it in '
          + 'schemas/iot.schema.json; nothing was started (the demo draws every configured pipeline\'s records before it starts)\n',
      }));
      expect(readdirSync(dataDir)).toEqual([]);
    } finally {
      jest.dontMock('node:os');
      jest.dontMock('../../lib/schema/sample');
    }
  });

  /** The CLI run next (sluiceAfresh) starts twins that `alter` changes; jest.dontMock after. */
  function twinsAltered(alter: (twin: Twin) => Twin): void {
    jest.doMock('../../lib/local/twin', () => {
      const actual = jest.requireActual<typeof import('../../lib/local/twin')>('../../lib/local/twin');
      return { ...actual, startTwin: async (options: TwinOptions): Promise<Twin> => alter(await actual.startTwin(options)) };
    });
  }

  /** The CLI run next has `then` called as each of its queries returns its results; jest.dontMock after. */
  function queriesAltered(then: () => void): void {
    jest.doMock('../../lib/local/athena', () => {
      const actual = jest.requireActual<typeof import('../../lib/local/athena')>('../../lib/local/athena');
      const open: typeof actual.LocalAthena.open = async (...args) => {
        const athena = await actual.LocalAthena.open(...args);
        const query = athena.query.bind(athena);
        athena.query = async (...sql) => {
          const result = await query(...sql);
          then();
          return result;
        };
        return athena;
      };
      return { ...actual, LocalAthena: new Proxy(actual.LocalAthena, { get: (target, key, receiver) => (key === 'open' ? open : Reflect.get(target, key, receiver)) }) };
    });
  }

  /**
   * A signal for the CLI run started next in this process, delivered as the OS would deliver it to a process of its own:
   * to the SIGINT and SIGTERM listeners the run added (any of jest's are left alone). A test sends it from a stage of
   * the demo (a mocked twin's stop, a query's results), so no timing decides where it lands.
   */
  function signalToRun(): (signal: NodeJS.Signals) => void {
    const before = new Set([...process.listeners('SIGINT'), ...process.listeners('SIGTERM')]);
    return (signal) => {
      for (const listener of process.listeners(signal)) if (!before.has(listener)) (listener as NodeJS.SignalsListener)(signal);
    };
  }

  /** `signal` for the demo run next in this process, as its flush (the twin's stop) starts. */
  function signalAsTheFlushStarts(signal: NodeJS.Signals): void {
    const signalRun = signalToRun();
    twinsAltered((twin) => ({
      ...twin,
      stop: () => {
        signalRun(signal);
        return twin.stop();
      },
    }));
  }

  /** stderr is a terminal for the CLI run in `during`, as it reads it (process.stderr.isTTY). */
  async function onTerminal<T>(during: () => Promise<T>): Promise<T> {
    const own = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
    Object.defineProperty(process.stderr, 'isTTY', { value: true, configurable: true, writable: true });
    try {
      return await during();
    } finally {
      if (own) Object.defineProperty(process.stderr, 'isTTY', own);
      else delete (process.stderr as { isTTY?: boolean }).isTTY;
    }
  }

  test('an accounting check that fails is the exit status: 1, after the report, with what did not add up', async () => {
    // A twin whose DLQ reports one message more than the pipelines failed.
    twinsAltered((twin) => ({ ...twin, dlqCountByPipeline: async () => {
      const dlq = await twin.dlqCountByPipeline();
      return { ...dlq, records: dlq.records + 1 };
    } }));
    try {
      const run = await sluiceAfresh('demo', '--count', '20', '--data-dir', path.join(dataDir, 'demo'));
      expect(run.stdout).toMatch(/Athena SQL through DuckDB/);
      expect(run.stderr).toMatch(/\nsluice: (\d+) failed records but \d+ DLQ messages\n$/);
      const [, failed, messages] = /(\d+) failed records but (\d+) DLQ messages/.exec(run.stderr)!;
      expect(Number(messages)).toBe(Number(failed) + 1);
      expect(run.code).toBe(1);
      // The data dir the CLI made holds raw records: its owner's alone, with the local PII hash key inside, owner-only too.
      expect(statSync(path.join(dataDir, 'demo')).mode & 0o777).toBe(0o700);
      expect(statSync(path.join(dataDir, 'demo', 'pii-hash-key')).mode & 0o777).toBe(0o600);
    } finally {
      jest.dontMock('../../lib/local/twin');
    }
  }, 60_000);

  test('the summary line gives its count as the interrupted line does (1,000, not 1000); a SLUICE_*_PORT it does not read cannot stop it; '
    + 'the times it prints count on the monotonic clock: a wall clock an hour further on at every look of the demo\'s adds nothing to them', async () => {
    const variable = process.env.SLUICE_FIREHOSE_PORT;
    process.env.SLUICE_FIREHOSE_PORT = 'not-a-port';
    // Only the looks of the demo's own code (lib/cli/local-command.ts) jump: the twin's stay on time, since a record's
    // age (for the consumer's maxRecordAgeSeconds) is rightly counted on the wall clock, and hours on it would age the
    // records out. The caller is the first frame below this mock's own and jest-mock's.
    const realNow = Date.now.bind(Date);
    const lookedFromDemo = (): boolean => {
      const caller = (new Error().stack ?? '').split('\n').slice(1).find((frame) => !frame.includes('local-command.test.') && !frame.includes('jest-mock'));
      return /lib[\\/]cli[\\/]local-command\./.test(caller ?? '');
    };
    let looks = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + (lookedFromDemo() ? 3_600_000 * ++looks : 0));
    try {
      const run = await sluice('demo', '--count', '250', '--data-dir', path.join(dataDir, 'demo'));
      expect(run.code).toBe(0);
      // Seconds, not the hours the wall clock moved: an hour is 3600.0 s.
      expect(run.stdout).toMatch(/^Local twin up in \d{1,3}\.\d s — /m);
      expect(run.stdout).toMatch(/\nSent 1,000 records in \d{1,3}\.\d s and flushed them in \d{1,3}\.\d s; \d{1,3}\.\d s since the demo started\.\n/);
      // Each pipeline's rate: its 250 records in seconds, not in an hour (0 records a second).
      const lines = run.stdout.split('\n');
      const header = lines.findIndex((l) => l.startsWith('pipeline') && l.includes('sent rec/s'));
      const rule = [...lines[header + 1].matchAll(/─+/g)].map((m) => [m.index, m.index + m[0].length] as const);
      const column = rule.findIndex(([from, to]) => lines[header].slice(from, to).trim() === 'sent rec/s');
      const rates = lines.slice(header + 2, header + 6).map((l) => Number(l.slice(...rule[column]).trim().replace(/,/g, '')));
      expect(rates).toHaveLength(4);
      for (const rate of rates) expect(rate).toBeGreaterThan(0);
    } finally {
      wallClock.mockRestore();
      if (variable === undefined) delete process.env.SLUICE_FIREHOSE_PORT;
      else process.env.SLUICE_FIREHOSE_PORT = variable;
    }
  }, 60_000);

  test('consumer records are the records with a DynamoDB item: the ones the metadata consumer skipped as malformed are counted apart, and the two add up to those sent', async () => {
    const run = await sluice('demo', '--count', '40', '--bad-rate', '0.25', '--data-dir', path.join(dataDir, 'demo'));
    expect(run.code).toBe(0);
    const lines = run.stdout.split('\n');
    const header = lines.findIndex((l) => l.startsWith('pipeline') && l.includes('consumer records'));
    // Cells by the rule's segments under each heading: a column can be blank in a row.
    const spans = [...lines[header + 1].matchAll(/─+/g)].map((m) => [m.index, m.index + m[0].length] as const);
    const cell = (line: string, i: number) => line.slice(spans[i][0], spans[i][1]).trim();
    const columns = spans.map((_, i) => cell(lines[header], i));
    const rows = new Map(lines.slice(header + 2, header + 6).map((l) => [cell(l, 0), Object.fromEntries(columns.map((c, i) => [c, cell(l, i)]))] as const));
    const note = lines.find((l) => l.startsWith('(consumer records: '));
    expect(note).toMatch(/^\(consumer records: records the metadata consumer recorded in DynamoDB; it skipped \d+ more as malformed: [a-z-]+ \d+(, [a-z-]+ \d+)*\)$/);
    const skipped = new Map([...note!.slice(note!.lastIndexOf(':') + 2, -1).matchAll(/([a-z-]+) (\d+)/g)].map((m) => [m[1], Number(m[2])]));
    for (const pipeline of ['clickstream', 'iot', 'transactions']) {
      const row = rows.get(pipeline)!;
      // At a 25 % bad rate each Kinesis pipeline has bad records the consumer refuses, as the lake does.
      expect(skipped.get(pipeline)).toBeGreaterThan(0);
      expect(Number(row['consumer records']) + skipped.get(pipeline)!).toBe(Number(row.sent.replace(/,/g, '')));
    }
    expect(rows.get('app-events')?.['consumer records']).toBe(''); // direct put: no consumer
  }, 120_000);

  test('the report counts over-long-line pointers apart and names the error objects not routed yet and what stays in S3 only, as local up\'s does; the check still holds', async () => {
    // A twin whose DLQ also holds two of the router's pointers to over-long lines, and whose router left a line in S3
    // only: neither stands for a record the demo sent.
    const leftIn = path.join(dataDir, 's3', 'errors', 'h1-plain');
    const pending = path.join(dataDir, 's3', 'errors', 'h2-pending');
    twinsAltered((twin) => ({
      ...twin,
      dlqCountByPipeline: async () => ({ ...await twin.dlqCountByPipeline(), overlongLinePointers: 2 }),
      leftInS3: () => ({ unreadableLines: 1, damagedObjects: 0, files: [leftIn], notYetRouted: [pending] }),
    }));
    try {
      const demo = path.join(dataDir, 'demo');
      const run = await sluiceAfresh('demo', '--count', '20', '--data-dir', demo);
      expect(run.code).toBe(0);
      const report = run.stdout.slice(run.stdout.indexOf('\nDLQ messages:') + 1).split('\n');
      expect(report[0]).toMatch(new RegExp(`^DLQ messages: \\d+ failed records, 2 pointers to error lines too long to read \\(errorCode Sluice\\.ErrorLineTooLong: `
        + `damaged or foreign lines, maybe no record at all; each names its line in S3\\), 0 consumer batches \\(${escapeRegExp(path.join(demo, 'dlq'))}\\)$`));
      expect(report.slice(1, 5)).toEqual([
        'Not in the DLQ yet: 1 error object the failure router could not finish routing before the stop (its log lines on stderr say why); '
          + 'the next start on this data dir routes them:',
        `  ${pending}`,
        'Not in the DLQ, left in S3 only: 1 error line that no error record can be read from (not JSON, or no rawData), in 1 error object '
          + 'the failure router read this run (its "level":"ERROR" log lines on stderr give each line and why):',
        `  ${leftIn}`,
      ]);
      expect(run.stdout).toMatch(/\nEvery record is accounted for/);
    } finally {
      jest.dontMock('../../lib/local/twin');
    }
  }, 60_000);

  test('the report reads each DLQ file once: its DLQ line and its DLQ messages column come from the same read', async () => {
    const walks: string[] = [];
    jest.doMock('../../lib/local/dlq-file', () => {
      const actual = jest.requireActual<typeof import('../../lib/local/dlq-file')>('../../lib/local/dlq-file');
      class WalksCounted extends actual.DlqFile {
        override async forEachBody(visit: (body: string) => void): Promise<void> {
          walks.push(this.path);
          return super.forEachBody(visit);
        }
      }
      return { ...actual, DlqFile: WalksCounted };
    });
    try {
      const demo = path.join(dataDir, 'demo');
      const run = await sluiceAfresh('demo', '--count', '100', '--bad-rate', '0.2', '--data-dir', demo);
      expect(run.code).toBe(0);
      expect(walks).toEqual([path.join(demo, 'dlq', 'sluice-dev-dlq.jsonl')]);
      const dlqLine = /\nDLQ messages: (\d+) failed records, /.exec(run.stdout);
      expect(dlqLine).not.toBeNull();
      // The DLQ messages column, pipeline by pipeline, adds up to the DLQ line.
      const column = Object.keys(config.pipelines).map((pipeline) => Number(new RegExp(`\\n${pipeline}(?: +[\\d,.]+){6} +([\\d,]+) `).exec(run.stdout)![1].replace(/,/g, '')));
      expect(column.reduce((a, b) => a + b, 0)).toBe(Number(dlqLine![1]));
      expect(Number(dlqLine![1])).toBeGreaterThan(0);
    } finally {
      jest.dontMock('../../lib/local/dlq-file');
    }
  }, 60_000);

  test.each([['SIGINT', 130, 'Ctrl-C'], ['SIGTERM', 143, 'SIGTERM']] as const)(
    '%s as its query returns: the results are not shown; it ends with the stop\'s line and exit %d, after the report',
    async (signal, code, named) => {
      const demo = path.join(dataDir, 'demo');
      const signalRun = signalToRun();
      // The query finishes before DuckDB sees the interrupt: the stop still holds.
      queriesAltered(() => signalRun(signal));
      try {
        const run = await sluiceAfresh('demo', '--count', '20', '--data-dir', demo);
        expect(run.code).toBe(code);
        expect(run.stdout).not.toMatch(/Athena SQL|Parquet files read|accounted for/);
        // The report before it stands: the table and the DLQ line.
        expect(run.stdout).toMatch(/\napp-events +20 /);
        expect(run.stdout).toMatch(/\nDLQ messages: \d+ failed records, /);
        // Said as it is at that stage, on a line of its own, and with no blank line before it (stderr is no terminal).
        expect(run.stderr).toMatch(new RegExp(`(^|[^\\n]\\n)${signal}: every record was sent and flushed; the query is stopped and its results are not shown\\n`));
        expect(run.stderr).toMatch(new RegExp(`\\nsluice: interrupted \\(${named}\\): 80 of 80 records sent, then flushed; the data dir keeps them: \`npx sluice query "…" --data-dir ${escapeRegExp(demo)}\`\\n$`));
      } finally {
        jest.dontMock('../../lib/local/athena');
      }
    },
    60_000,
  );

  test('a second Ctrl-C after the flush exits 130 and says that everything was flushed, not that records wait for the next start', async () => {
    const demo = path.join(dataDir, 'demo');
    const signalRun = signalToRun();
    const exits: Array<string | number | null | undefined> = [];
    // In this process, the exit is noted rather than made: the run goes on as after the first signal.
    const exit = jest.spyOn(process, 'exit').mockImplementation(((code) => {
      exits.push(code);
    }) as typeof process.exit);
    queriesAltered(() => {
      signalRun('SIGINT');
      signalRun('SIGINT');
    });
    try {
      const run = await sluiceAfresh('demo', '--count', '20', '--data-dir', demo);
      expect(exits).toEqual([130]);
      expect(run.stderr).toMatch(new RegExp(`\\nsluice: second SIGINT: exiting now; everything was flushed; the data stays in ${escapeRegExp(demo)}\\n`));
      expect(run.stderr).not.toMatch(/records not yet delivered/);
    } finally {
      exit.mockRestore();
      jest.dontMock('../../lib/local/athena');
    }
  }, 60_000);

  test('SIGTERM during its flush says the flush goes on (sending is over), under the flush\'s line; exit 143 without the query', async () => {
    signalAsTheFlushStarts('SIGTERM');
    try {
      const run = await sluiceAfresh('demo', '--count', '20', '--data-dir', path.join(dataDir, 'demo'));
      expect(run.code).toBe(143);
      expect(run.stderr).toMatch(new RegExp(/\n {2}flushing buffers, readers and error routing…\nSIGTERM: every record was sent; the flush goes on, then the report, without the query /.source
        + /\(Ctrl-C, or a SIGTERM 2 s on, exits at once and leaves the rest in the data dir\)\n {2}flushed after [\d.]+ s\n/.source));
      expect(run.stderr).not.toMatch(/no more records are sent/);
      expect(run.stderr).toMatch(/\nsluice: interrupted \(SIGTERM\): 80 of 80 records sent, then flushed; /);
      expect(run.stdout).toMatch(/\nDLQ messages: /);
      expect(run.stdout).not.toMatch(/Athena SQL/);
    } finally {
      jest.dontMock('../../lib/local/twin');
    }
  }, 60_000);

  test('on a terminal, a signal\'s line starts with a newline only when a progress line is unfinished: during the flush, not after it', async () => {
    signalAsTheFlushStarts('SIGINT');
    try {
      const flushing = await onTerminal(() => sluiceAfresh('demo', '--count', '20', '--data-dir', path.join(dataDir, 'flushing')));
      expect(flushing.code).toBe(130);
      expect(flushing.stderr).toMatch(/ {2}flushing buffers, readers and error routing…\nSIGINT: every record was sent; the flush goes on/);
    } finally {
      jest.dontMock('../../lib/local/twin');
    }
    const signalAgain = signalToRun();
    queriesAltered(() => signalAgain('SIGINT'));
    try {
      const querying = await onTerminal(() => sluiceAfresh('demo', '--count', '20', '--data-dir', path.join(dataDir, 'querying')));
      expect(querying.code).toBe(130);
      // The flush's line, rewritten with its time however short the flush, was ended: the signal's line follows it
      // directly, not after a blank line.
      expect(querying.stderr).toMatch(/\r {2}flushing buffers, readers and error routing… \d+\.\d s\nSIGINT: every record was sent and flushed; the query is stopped/);
    } finally {
      jest.dontMock('../../lib/local/athena');
    }
  }, 90_000);

  test('Ctrl-C while it sends: it stops sending, flushes what was accepted, says so and where the data dir is, and exits 130 with nothing left running', async () => {
    const { child: demo, output, exited, when, children } = sluiceProcess(['demo', '--data-dir', dataDir, '--count', '2000']);
    try {
      await when('the twin was up', () => /Local twin up in /.test(output.stdout));
      const emulators = children();
      expect(emulators.length).toBeGreaterThan(0);
      demo.kill('SIGINT');
      expect(await exited).toEqual({ code: 130, signal: null });
      // Gone before the demo: stopped with the twin, not left to stop itself once its parent is gone.
      expect(emulators.filter(processRuns)).toEqual([]);
      // On a line of its own, with no blank line before it: stderr is no terminal, so no progress line was left unfinished.
      expect(output.stderr).toMatch(/(^|[^\n]\n)SIGINT: stopping; no more records are sent, those accepted are flushed \(Ctrl-C again exits at once and leaves the rest in the data dir\)\n/);
      const interrupted = new RegExp(`\\nsluice: interrupted \\(Ctrl-C\\): ([\\d,]+) of 8,000 records sent, then flushed; the data dir keeps them: \`npx sluice query "…" --data-dir ${escapeRegExp(dataDir)}\`\\n$`).exec(output.stderr);
      expect(interrupted).not.toBeNull();
      const sent = Number(interrupted![1].replace(/,/g, ''));
      expect(sent).toBeLessThan(8000);
      // No accounting check (it would fail for the records never sent), no query; the lock let go.
      expect(output.stdout).not.toMatch(/accounted for|Athena SQL/);
      expect(output.stderr).not.toMatch(/failed records but|unaccounted/);
      expect(readdirSync(dataDir).filter((name) => name.startsWith('twin.'))).toEqual([]);
      // What was sent was flushed: each pipeline's records are rows, failed or dropped, and the rows are queryable.
      const columns = (pipeline: string) => new RegExp(`\\n${pipeline} +([\\d,]+) +[\\d,]+ +([\\d,]+) +([\\d,]+) +([\\d,]+) +([\\d,]+) `)
        .exec(output.stdout)!.slice(1).map((n) => Number(n.replace(/,/g, '')));
      const pipelines = Object.keys(config.pipelines).map(columns);
      expect(pipelines.reduce((n, [s]) => n + s, 0)).toBe(sent);
      for (const [s, rows, processingFailed, conversionFailed, dropped] of pipelines) expect(s).toBe(rows + processingFailed + conversionFailed + dropped);
      const query = await sluice('query', 'SELECT count(*) AS n FROM clickstream', '--data-dir', dataDir, '--csv');
      expect(query.code).toBe(0);
      expect(query.stdout).toBe(`n\r\n${columns('clickstream')[1]}\r\n`);
    } finally {
      if (demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
    }
  }, 120_000);

  test('SIGTERM while the twin starts: it stops once the twin is up, sends nothing and exits 143 with nothing left running', async () => {
    const { child: demo, output, exited, children } = sluiceProcess(['demo', '--data-dir', dataDir, '--count', '300']);
    try {
      // kinesis-mock is the twin's first child: the twin is starting.
      let emulators: number[] = [];
      for (const deadline = Date.now() + 45_000; (emulators = children()).length === 0; await new Promise((r) => setTimeout(r, 20))) {
        if (demo.exitCode !== null || Date.now() > deadline) throw new Error(`no kinesis-mock:\n${output.stdout}\n${output.stderr}`);
      }
      demo.kill('SIGTERM');
      expect(await exited).toEqual({ code: 143, signal: null });
      expect(emulators.filter(processRuns)).toEqual([]);
      expect(output.stderr).toMatch(/(^|[^\n]\n)SIGTERM: stopping once the twin is up; no records are sent \(Ctrl-C, or a SIGTERM 2 s on, exits at once\)\n/);
      expect(output.stderr).toMatch(new RegExp(`\\nsluice: interrupted \\(SIGTERM\\): 0 of 1,200 records sent, then flushed; the data dir keeps them: \`npx sluice query "…" --data-dir ${escapeRegExp(dataDir)}\`\\n$`));
      expect(readdirSync(dataDir).filter((name) => name.startsWith('twin.'))).toEqual([]);
    } finally {
      if (demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
    }
  }, 90_000);

  test('a second Ctrl-C while the twin starts exits at once with 130 and lets the data dir go (no twin.pid left)', async () => {
    const { child: demo, output, exited, when, children } = sluiceProcess(['demo', '--data-dir', dataDir, '--count', '300']);
    let emulators: number[] = [];
    try {
      // kinesis-mock is the twin's first child: the twin is starting, the data dir already held.
      for (const deadline = Date.now() + 45_000; (emulators = children()).length === 0; await new Promise((r) => setTimeout(r, 20))) {
        if (demo.exitCode !== null || Date.now() > deadline) throw new Error(`no kinesis-mock:\n${output.stdout}\n${output.stderr}`);
      }
      demo.kill('SIGINT');
      await when('the first SIGINT was taken', () => /SIGINT: stopping/.test(output.stderr));
      demo.kill('SIGINT');
      expect(await exited).toEqual({ code: 130, signal: null });
      expect(output.stderr).toMatch(/\nsluice: second SIGINT: exiting now; /);
      expect(readdirSync(dataDir).filter((name) => name.startsWith('twin.'))).toEqual([]);
    } finally {
      if (demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
      await waitForExit(emulators);
    }
  }, 90_000);

  test('Ctrl-C during its flush: the line says the flush goes on, and the flush\'s time is on a line of its own, not under the SIGINT line', async () => {
    // Every transform invocation times out (500 ms, retried 3 times, with backoff between): the flush lasts seconds.
    const { child: demo, output, exited, when } = sluiceProcess(['demo', '--data-dir', dataDir, '--count', '1'], { SLUICE_FAULTS: 'transform=1,transform.kinds=timeout,transform.timeoutMs=500' });
    try {
      await when('the flush', () => /flushing buffers/.test(output.stderr));
      demo.kill('SIGINT');
      expect(await exited).toEqual({ code: 130, signal: null });
      const lines = output.stderr.split('\n');
      // Every record was sent by then: the line says the flush goes on, not that sending stops.
      const signalled = lines.findIndex((line) => line.startsWith('SIGINT: every record was sent; the flush goes on, then the report, without the query'));
      expect(signalled).toBeGreaterThan(0);
      expect(lines.slice(signalled + 1)).toContainEqual(expect.stringMatching(/^ {2}flushed after [\d.]+ s$/));
      expect(lines).not.toContainEqual(expect.stringMatching(/^ [\d.]+ s$/));
    } finally {
      if (demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
    }
  }, 90_000);

  test('a second Ctrl-C during its flush exits at once with 130, says where the rest waits (for `local up`), and lets the data dir go', async () => {
    // Every transform invocation times out (2 s, retried 3 times): the flush lasts.
    const { child: demo, output, exited, when, children } = sluiceProcess(['demo', '--data-dir', dataDir, '--count', '1'], { SLUICE_FAULTS: 'transform=1,transform.kinds=timeout,transform.timeoutMs=2000' });
    let emulators: number[] = [];
    try {
      await when('the twin was up', () => /Local twin up in /.test(output.stdout));
      emulators = children();
      demo.kill('SIGINT');
      await when('the flush', () => /flushing buffers/.test(output.stderr));
      demo.kill('SIGINT');
      expect(await exited).toEqual({ code: 130, signal: null });
      expect(output.stderr).toMatch(new RegExp(`\\nsluice: second SIGINT: exiting now; records not yet delivered stay in ${escapeRegExp(dataDir)} `
        + `and are delivered at the next \`npx sluice local up --data-dir ${escapeRegExp(dataDir)}\`\\n$`));
      expect(existsSync(path.join(dataDir, 'twin.pid'))).toBe(false);
    } finally {
      if (demo.exitCode === null && demo.signalCode === null) demo.kill('SIGKILL');
      // kinesis-mock, told to stop as the demo exited, saves its streams on its way out.
      await waitForExit(emulators);
    }
  }, 90_000);
});

describe('local up', () => {
  test('a second start on a running twin\'s data dir is refused before it starts or makes anything, on the twin\'s ports or free ones, naming the twin; one SIGKILLed blocks nothing', async () => {
    const freePorts = ['--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0'];
    // Two starts at the same instant: one runs, the other gives way (the first to exit).
    const starts = [0, 1].map(() => sluiceProcess(['local', 'up', '--data-dir', dataDir, ...freePorts, '--buffer-interval', '7']));
    let emulators: number[] = [];
    try {
      const loser = await Promise.race(starts.map(async (start) => (await start.exited, start)));
      const winner = starts.find((start) => start !== loser)!;
      expect(await loser.exited).toEqual({ code: 2, signal: null });
      // The winner may not have said where it listens yet: its endpoints are in the line or not.
      expect(loser.output.stderr.replace(/; Firehose [^)]+\)/, ')')).toBe(inUseByTwin(dataDir, winner.child.pid!));
      await winner.when('"Running."', () => /\nRunning\./.test(winner.output.stdout));
      emulators = winner.children();
      const record = JSON.parse(readFileSync(path.join(dataDir, 'twin.json'), 'utf8')) as { pid: number; endpoints: { firehose: string; kinesis: string; dynamo: string }; bufferIntervalSeconds: number };
      expect(record.pid).toBe(winner.child.pid);
      // The interval it delivers with, for put --verify's and replay's waits.
      expect(record.bufferIntervalSeconds).toBe(7);
      const entries = readdirSync(dataDir).sort();
      // On the twin's own ports (as a second `local up` with the default ports meets them), and on free ones: the data dir is named, not a port.
      const portOf = (url: string) => new URL(url).port;
      const samePorts = ['--firehose-port', portOf(record.endpoints.firehose), '--kinesis-port', portOf(record.endpoints.kinesis), '--dynamo-port', portOf(record.endpoints.dynamo)];
      for (const ports of [samePorts, freePorts]) {
        const refused = await sluice('local', 'up', '--data-dir', dataDir, ...ports);
        expect(refused).toEqual({ code: 2, stdout: '', stderr: inUseByTwin(dataDir, record.pid, record.endpoints) });
      }
      expect(readdirSync(dataDir).sort()).toEqual(entries);

      // Killed outright, the twin leaves its twin.pid and twin.json: their pid is gone, and the next start takes the data dir.
      winner.child.kill('SIGKILL');
      expect(await winner.exited).toEqual({ code: null, signal: 'SIGKILL' });
      await waitForExit(emulators); // its kinesis-mock saves its streams on its way out
      expect(readdirSync(dataDir).filter((name) => name.startsWith('twin.')).sort()).toEqual(['twin.json', 'twin.pid']);
      const next = sluiceProcess(['local', 'up', '--data-dir', dataDir, ...freePorts]);
      starts.push(next);
      await next.when('"Running."', () => /\nRunning\./.test(next.output.stdout));
      expect((JSON.parse(readFileSync(path.join(dataDir, 'twin.json'), 'utf8')) as { pid: number }).pid).toBe(next.child.pid);
      next.child.kill('SIGINT');
      expect(await next.exited).toEqual({ code: 0, signal: null });
      expect(readdirSync(dataDir).filter((name) => name.startsWith('twin.'))).toEqual([]);
    } finally {
      for (const { child } of starts) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await waitForExit(emulators);
    }
  }, 120_000);

  test('the endpoints table says the region the twin\'s streams are in (AWS_REGION at its start): a client in it finds them, one elsewhere none; '
    + 'twin.json says it too, and `put` and `redrive-consumer` reach its streams from a shell in another region', async () => {
    const up = sluiceProcess(['local', 'up', '--data-dir', dataDir, '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0'], { AWS_REGION: 'eu-west-2' });
    try {
      await up.when('"Running."', () => /\nRunning\./.test(up.output.stdout));
      expect(up.output.stdout).toContain('\nAWS CLIs and SDKs: --endpoint-url one of these, region eu-west-2 (AWS_REGION at the start, else us-east-1), any credentials\n');
      const endpoint = /Kinesis \(kinesis-mock\)\s+(http:\/\/\S+)/.exec(up.output.stdout)![1];
      const kinesisIn = (region: string) => new KinesisClient({ endpoint, region, credentials: { accessKeyId: 'x', secretAccessKey: 'x' }, requestHandler: new NodeHttpHandler(), maxAttempts: 1 });
      const streamsIn = async (region: string) => {
        const client = kinesisIn(region);
        try {
          return (await client.send(new ListStreamsCommand({}))).StreamNames;
        } finally {
          client.destroy();
        }
      };
      expect(await streamsIn('eu-west-2')).toContain('sluice-dev-iot');
      expect(await streamsIn('us-east-1')).toEqual([]);
      expect((JSON.parse(readFileSync(path.join(dataDir, 'twin.json'), 'utf8')) as { region: string }).region).toBe('eu-west-2');
      const shellRegion = process.env.AWS_REGION;
      process.env.AWS_REGION = 'us-east-1';
      try {
        const put = await sluice('put', 'iot', '--count', '1', '--data-dir', dataDir);
        expect({ code: put.code, stderr: put.stderr }).toEqual({ code: 0, stderr: '' });
        // A consumer batch of that record that failed, as the twin's event source mapping writes it: redriven from the twin's streams.
        const client = kinesisIn('eu-west-2');
        try {
          const { ShardIterator } = await client.send(new GetShardIteratorCommand({ StreamName: 'sluice-dev-iot', ShardId: 'shardId-000000000000', ShardIteratorType: 'TRIM_HORIZON' }));
          const [record] = (await client.send(new GetRecordsCommand({ ShardIterator }))).Records!;
          const arrival = new Date(record.ApproximateArrivalTimestamp!).toISOString();
          await new DlqFile({ dataDir, queue: 'sluice-dev-consumer-dlq' }).send([JSON.stringify({
            requestContext: { requestId: 'r-1', functionArn: 'arn:aws:lambda:eu-west-2:000000000000:function:sluice-dev-iot-metadata-consumer', condition: 'RetryAttemptsExhausted', approximateInvokeCount: 6 },
            responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
            version: '1.0',
            timestamp: new Date().toISOString(),
            KinesisBatchInfo: {
              shardId: 'shardId-000000000000', startSequenceNumber: record.SequenceNumber!, endSequenceNumber: record.SequenceNumber!,
              approximateArrivalOfFirstRecord: arrival, approximateArrivalOfLastRecord: arrival, batchSize: 1,
              streamArn: 'arn:aws:kinesis:eu-west-2:000000000000:stream/sluice-dev-iot',
            },
          })]);
        } finally {
          client.destroy();
        }
        const redrive = await sluice('redrive-consumer', '--data-dir', dataDir, '--json');
        expect({ code: redrive.code, stderr: redrive.stderr }).toEqual({ code: 0, stderr: '' });
        expect(JSON.parse(redrive.stdout)).toMatchObject({ outcomes: { redriven: 1 }, messages: [{ outcome: 'redriven', records: 1, pipeline: 'iot' }] });
      } finally {
        if (shellRegion === undefined) delete process.env.AWS_REGION;
        else process.env.AWS_REGION = shellRegion;
      }
      up.child.kill('SIGINT');
      expect(await up.exited).toEqual({ code: 0, signal: null });
    } finally {
      if (up.child.exitCode === null && up.child.signalCode === null) up.child.kill('SIGKILL');
    }
  }, 60_000);

  /**
   * `sluice local up` in its own process, with every transform invocation timing out (`timeoutMs` each, retried
   * 3 times), so the flush of the one record it is sent lasts a few seconds: signals arrive while it runs.
   */
  async function upWithSlowFlush(timeoutMs: number) {
    const { child: twin, output, exited, when } = sluiceProcess(
      ['local', 'up', '--data-dir', dataDir, '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0', '--buffer-interval', '900'],
      { SLUICE_FAULTS: `transform=1,transform.kinds=timeout,transform.timeoutMs=${timeoutMs}` },
    );
    await when('"Running."', () => /\nRunning\./.test(output.stdout));
    const endpoint = /Firehose API \(AWS JSON 1\.1\)\s+(http:\/\/\S+)/.exec(output.stdout)![1];
    const firehose = firehoseClient(endpoint);
    await firehose.send(new PutRecordCommand({ DeliveryStreamName: 'sluice-dev-app-events-lake', Record: { Data: Buffer.from('{"event_id":"x"}') } }));
    firehose.destroy();
    /** Runs `then` as soon as the twin says it flushes, rather than at the next poll. */
    const onFlushing = (then: () => void) => {
      const watch = () => {
        if (!/: flushing…/.test(output.stderr)) return;
        twin.stderr.off('data', watch);
        then();
      };
      twin.stderr.on('data', watch);
      watch();
    };
    const stderrLines = () => output.stderr.split('\n').filter((line) => !line.startsWith('sluice: injecting faults'));
    return { twin, output, exited, when, onFlushing, stderrLines };
  }

  test('a second Ctrl-C during the flush exits at once with 130, says where the rest waits, and lets the data dir go', async () => {
    const { twin, exited, when, output, stderrLines } = await upWithSlowFlush(2000);
    try {
      twin.kill('SIGINT');
      await when('the flush', () => /SIGINT: flushing…/.test(output.stderr));
      twin.kill('SIGINT');
      expect(await exited).toEqual({ code: 130, signal: null });
      expect(output.stdout).not.toMatch(/flushing/);
      expect(stderrLines()).toEqual([
        '',
        'SIGINT: flushing… (Ctrl-C again exits at once and leaves the rest for the next start)',
        `sluice: second SIGINT: exiting now; records not yet delivered stay in ${dataDir} and are delivered at the next start`,
        '',
      ]);
      expect(existsSync(path.join(dataDir, 'twin.pid'))).toBe(false);
    } finally {
      if (twin.exitCode === null && twin.signalCode === null) twin.kill('SIGKILL');
    }
  }, 90_000);

  test('SIGTERM twice back to back (as GNU timeout sends it) is one stop: the flush completes and it exits 0', async () => {
    // 4 invocations of 500 ms and 1.4 s of backoff: the flush outlasts the 2 s in which a SIGTERM repeats the first.
    const { twin, exited, onFlushing, output, stderrLines } = await upWithSlowFlush(500);
    try {
      // `timeout` signals the child, then its process group: the twin gets both, microseconds apart. And a third,
      // once the flush has begun, for the case where the two arrive far enough apart to be handled one by one.
      // A burst of them as well: one landing between two of the twin's listeners would be taken Node's default way (killed).
      onFlushing(() => twin.kill('SIGTERM'));
      for (let i = 0; i < 20; i++) twin.kill('SIGTERM');
      expect(await exited).toEqual({ code: 0, signal: null });
      // The stop line on stderr, once; stdout holds the endpoints and the summary alone.
      expect(stderrLines()).toEqual(['', 'SIGTERM: flushing… (Ctrl-C, or a SIGTERM 2 s on, exits at once and leaves the rest for the next start)', '']);
      expect(output.stdout).not.toMatch(/flushing/);
      expect(output.stdout).toMatch(/\napp-events +1 +0 +1 /); // received 1, no Parquet row, processing-failed 1
      expect(existsSync(path.join(dataDir, 'twin.json'))).toBe(false);
      expect(existsSync(path.join(dataDir, 'twin.pid'))).toBe(false);
    } finally {
      if (twin.exitCode === null && twin.signalCode === null) twin.kill('SIGKILL');
    }
  }, 90_000);

  /** `local up` on the data dir until it says "Running.", then Ctrl-C: its stop summary from the DLQ line on. */
  async function stopSummaryOfUp(env: NodeJS.ProcessEnv = {}): Promise<string> {
    const up = sluiceProcess(['local', 'up', '--data-dir', dataDir, '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0'], env);
    try {
      await up.when('"Running."', () => /\nRunning\./.test(up.output.stdout));
      up.child.kill('SIGINT');
      expect(await up.exited).toEqual({ code: 0, signal: null });
      return up.output.stdout.slice(up.output.stdout.indexOf('\nDLQ messages:') + 1);
    } finally {
      if (up.child.exitCode === null && up.child.signalCode === null) up.child.kill('SIGKILL');
    }
  }

  test('the stop summary counts over-long-line pointers apart from failed records, and names what stays in S3 only', async () => {
    // Hand-made error objects, as a damaged or foreign object would be: the router reads them when the twin starts.
    const hour = path.join(dataDir, 's3', localBucketName(config), 'errors', 'app-events', 'processing-failed', '2026', '12', '03', '19');
    mkdirSync(hour, { recursive: true });
    const errorLine = (n: number) => JSON.stringify({
      attemptsMade: 1, arrivalTimestamp: 1796326031341, errorCode: 'Lambda.ProcessingFailedStatus', errorMessage: 'hand made', lambdaArn: 'x',
      rawData: Buffer.from(JSON.stringify({ event_id: `5555000${n}-0000-4000-8000-000000000000`, user_id: `u${n}`, event_type: 'login', timestamp: '2026-12-03T10:00:00Z' })).toString('base64'),
    });
    writeFileSync(path.join(hour, 'h1-plain'), `${errorLine(1)}\nnot json\n${errorLine(2)}\n`);
    writeFileSync(path.join(hour, 'h2-overlong'), `${'z'.repeat(MAX_ERROR_LINE_BYTES + 1)}\n${errorLine(3)}\n`);
    // A gzip header, then a deflate block of the type no stream may have (BTYPE 11).
    writeFileSync(path.join(hour, 'h3-gz-damaged'), Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff]));
    const summary = (await stopSummaryOfUp()).split('\n');
    expect(summary[0]).toBe('DLQ messages: 3 failed records, 1 pointer to error lines too long to read (errorCode Sluice.ErrorLineTooLong: '
      + 'damaged or foreign lines, maybe no record at all; each names its line in S3), 0 consumer batches (in the data dir\'s DLQ files, this run and earlier ones)');
    expect(summary.slice(1)).toEqual([
      'Not in the DLQ, left in S3 only: 1 error line that no error record can be read from (not JSON, or no rawData) and the rest of 1 gzip object '
        + 'damaged or cut off, in 2 error objects the failure router read this run (its "level":"ERROR" log lines on stderr give each line and why):',
      `  ${path.join(hour, 'h1-plain')}`,
      `  ${path.join(hour, 'h3-gz-damaged')}`,
      '',
    ]);
  }, 90_000);

  test('the stop summary names the error objects the router could not route before the stop (the DLQ down), and the next start routes them', async () => {
    const hour = path.join(dataDir, 's3', localBucketName(config), 'errors', 'app-events', 'processing-failed', '2026', '12', '03', '19');
    mkdirSync(hour, { recursive: true });
    const rawData = Buffer.from(JSON.stringify({ event_id: '66660001-0000-4000-8000-000000000000', user_id: 'u1', event_type: 'login', timestamp: '2026-12-03T10:00:00Z' })).toString('base64');
    writeFileSync(path.join(hour, 'h1-pending'), `${JSON.stringify({ attemptsMade: 1, arrivalTimestamp: 1796326031341, errorCode: 'Lambda.ProcessingFailedStatus', errorMessage: 'hand made', lambdaArn: 'x', rawData })}\n`);
    // Every send to the DLQ fails: the router keeps trying until the stop, then gives up on the object.
    const down = (await stopSummaryOfUp({ SLUICE_FAULTS: 'dlq=1' })).split('\n');
    expect(down.slice(0, 3)).toEqual([
      'DLQ messages: 0 failed records, 0 consumer batches (in the data dir\'s DLQ files, this run and earlier ones)',
      'Not in the DLQ yet: 1 error object the failure router could not finish routing before the stop (its log lines on stderr say why); '
        + 'the next start on this data dir routes them:',
      `  ${path.join(hour, 'h1-pending')}`,
    ]);
    const again = (await stopSummaryOfUp({ SLUICE_FAULTS: '' })).split('\n');
    expect(again[0]).toBe('DLQ messages: 1 failed record, 0 consumer batches (in the data dir\'s DLQ files, this run and earlier ones)');
    expect(again.join('\n')).not.toMatch(/Not in the DLQ yet/);
  }, 120_000);

  test('a SIGTERM a while after the first is a second stop: it exits at once with 143', async () => {
    // The flush lasts over 8 s (4 invocations of 2 s): the second SIGTERM, 2.5 s after the first (past the 2 s in which
    // a SIGTERM repeats it), comes well within it.
    const { twin, exited, onFlushing, stderrLines } = await upWithSlowFlush(2000);
    try {
      onFlushing(() => setTimeout(() => twin.kill('SIGTERM'), 2_500));
      twin.kill('SIGTERM');
      expect(await exited).toEqual({ code: 143, signal: null });
      expect(stderrLines()).toEqual([
        '',
        'SIGTERM: flushing… (Ctrl-C, or a SIGTERM 2 s on, exits at once and leaves the rest for the next start)',
        `sluice: second SIGTERM: exiting now; records not yet delivered stay in ${dataDir} and are delivered at the next start`,
        '',
      ]);
    } finally {
      if (twin.exitCode === null && twin.signalCode === null) twin.kill('SIGKILL');
    }
  }, 90_000);
});
