/**
 * The twin's SQS stand-in, checked through its public surface: what send/receive/delete/claim
 * return, and what the files under `<data-dir>/dlq/` hold. A "restart" loads the module afresh, so
 * nothing survives but the files.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { DlqFile, DLQ_MAX_BODY_BYTES, type RoutedObject } from '../../lib/local/dlq-file';
import { pidLockContent, processStart, readPid } from '../../lib/local/process-alive';
import { replayLedgerKey } from '../../lib/cli/dead-letters';
import { dedupeKeyOf } from '../../transforms/failure-router/dedupe-key';
import { toSqsBody } from '../../transforms/shared/sqs-body';
import { within } from '../within';

type DlqModule = typeof import('../../lib/local/dlq-file');

/** The module as a new process would load it: no shared in-memory state with earlier instances. */
function afterRestart(): DlqModule {
  let loaded: DlqModule | undefined;
  jest.isolateModules(() => {
    loaded = require('../../lib/local/dlq-file') as DlqModule;
  });
  return loaded as DlqModule;
}

// The module itself, not an import's copy of it: a spy on it is what dlq-file.ts calls.
const fsPromises = require('node:fs/promises') as typeof import('node:fs/promises');
const realWriteFile = fsPromises.writeFile;
const body = (n: number): string => JSON.stringify({ recordId: `r-${n}`, errorCode: 'Lambda.FunctionError', n });
const linesOf = (file: string): string[] => readFileSync(file, 'utf8').split('\n').slice(0, -1);

let dataDir: string;
beforeEach(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'sluice-dlq-'));
});
afterEach(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

describe('DlqFile', () => {
  test('writes one body per line in <data-dir>/dlq/<queue>.jsonl', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'sluice-local-dlq' });
    await dlq.send([body(1), body(2)]);
    await dlq.send([body(3)]);
    expect(dlq.path).toBe(path.join(dataDir, 'dlq', 'sluice-local-dlq.jsonl'));
    expect(readFileSync(dlq.path, 'utf8')).toBe(`${body(1)}\n${body(2)}\n${body(3)}\n`);
    expect(await dlq.count()).toBe(3);
  });

  test('receive, delete and count survive a restart; undeleted messages come back in order', async () => {
    const before = new DlqFile({ dataDir, queue: 'q' });
    await before.send([1, 2, 3, 4, 5].map(body));
    const received = await before.receive(3);
    expect(received.map((m) => [m.line, m.body])).toEqual([
      [1, body(1)],
      [2, body(2)],
      [3, body(3)],
    ]);
    const result = await before.delete([received[0].receiptHandle, received[2].receiptHandle]);
    expect(result).toEqual({ deleted: 2, unknown: [] });
    // Received and not deleted: hidden until its visibility timeout passes.
    expect((await before.receive(10)).map((m) => m.line)).toEqual([4, 5]);

    const { DlqFile: Restarted } = afterRestart();
    const after = new Restarted({ dataDir, queue: 'q' });
    expect(await after.count()).toBe(3);
    const again = await after.receive(10);
    expect(again.map((m) => [m.line, m.body])).toEqual([
      [2, body(2)],
      [4, body(4)],
      [5, body(5)],
    ]);
    // The data file is untouched by deletes (only compaction rewrites it); the ledger holds them.
    expect(linesOf(after.path)).toHaveLength(5);
    expect(linesOf(after.deletedPath)).toHaveLength(3);
    await after.delete(again.map((m) => m.receiptHandle));
    expect(await after.count()).toBe(0);
    expect(await new (afterRestart().DlqFile)({ dataDir, queue: 'q' }).count()).toBe(0);
  });

  test('a received message becomes visible again after the visibility timeout', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'vis', visibilityTimeoutSeconds: 1 });
    await dlq.send([body(1)]);
    // The queue's clock (monotonic), held still and moved by hand: the timeout runs out at one instant, however slow the
    // machine. The wall clock set back an hour meanwhile changes nothing.
    const receivedAt = performance.now();
    const clock = jest.spyOn(performance, 'now').mockReturnValue(receivedAt);
    const realNow = Date.now.bind(Date);
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - 3_600_000);
    try {
      expect(await dlq.receive(1)).toHaveLength(1);
      clock.mockReturnValue(receivedAt + 999);
      expect(await dlq.receive(1)).toHaveLength(0);
      clock.mockReturnValue(receivedAt + 1000);
      expect((await dlq.receive(1)).map((m) => m.body)).toEqual([body(1)]);
    } finally {
      clock.mockRestore();
      wallClock.mockRestore();
    }
  });

  test('forEachBody walks every undeleted message in order, in flight or not, without hiding any', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'walk' });
    await dlq.send(Array.from({ length: 2500 }, (_, i) => body(i + 1))); // more than one read slice
    const [first, second] = await dlq.receive(2);
    await dlq.delete([first.receiptHandle]);
    appendFileSync(dlq.path, '{"recordId":"half-writ'); // a torn tail is no message
    const seen: string[] = [];
    await dlq.forEachBody((b) => seen.push(b));
    expect(seen).toEqual(Array.from({ length: 2499 }, (_, i) => body(i + 2)));
    expect(seen[0]).toBe(second.body); // received, so in flight: still a message
    expect((await dlq.receive(1)).map((m) => m.line)).toEqual([3]); // walking hid nothing
  });

  test('deleting twice, or with a made-up handle, deletes nothing else', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    await dlq.send([body(1), body(2)]);
    const [first] = await dlq.receive(1);
    expect(await dlq.delete([first.receiptHandle])).toEqual({ deleted: 1, unknown: [] });
    expect(await dlq.delete([first.receiptHandle, 'nonsense', '1.2.99'])).toEqual({
      deleted: 0,
      unknown: [first.receiptHandle, 'nonsense', '1.2.99'],
    });
    expect(await dlq.count()).toBe(1);
  });

  test('compacts once everything is deleted; old receipt handles no longer delete anything', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q', visibilityTimeoutSeconds: 0 });
    await dlq.send([body(1), body(2)]);
    const received = await dlq.receive(10);
    await dlq.delete(received.map((m) => m.receiptHandle));
    expect(readFileSync(dlq.path, 'utf8')).toBe('');
    await dlq.send([body(3)]);
    const [next] = await dlq.receive(10);
    expect([next.line, next.body]).toEqual([1, body(3)]);
    expect(await dlq.delete([received[0].receiptHandle])).toEqual({ deleted: 0, unknown: [received[0].receiptHandle] });
    expect(await dlq.count()).toBe(1);
  });

  test('compacts when most lines are deleted and nothing is in flight, keeping the rest in order', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q', compactAfterDeleted: 3, visibilityTimeoutSeconds: 0 });
    await dlq.send([1, 2, 3, 4, 5].map(body));
    const received = await dlq.receive(4);
    await dlq.delete([received[0], received[1], received[3]].map((m) => m.receiptHandle));
    expect(linesOf(dlq.path)).toEqual([body(3), body(5)]);
    expect((await dlq.receive(10)).map((m) => [m.line, m.body])).toEqual([
      [1, body(3)],
      [2, body(5)],
    ]);
  });

  test('a crash between the two renames of a compaction loses nothing (identical bodies included)', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    const same = JSON.stringify({ same: true });
    await dlq.send([same, same, body(3)]);
    const [first] = await dlq.receive(1);
    await dlq.delete([first.receiptHandle]);
    // What compaction writes first: the data file without line 1, as a new file renamed into place.
    // The crash comes before the ledger (which still deletes "line 1") is replaced.
    const replacement = `${dlq.path}.new`;
    writeFileSync(replacement, `${same}\n${body(3)}\n`);
    renameSync(replacement, dlq.path);

    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect(await after.count()).toBe(2);
    expect((await after.receive(10)).map((m) => m.body)).toEqual([same, body(3)]);
  });

  test('a line torn by a crash mid-append is not a message, and the next send cuts it off', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    await dlq.send([body(1)]);
    appendFileSync(dlq.path, '{"recordId":"half-writ');

    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect(await after.count()).toBe(1);
    await after.send([body(2)]);
    expect(linesOf(after.path)).toEqual([body(1), body(2)]);
  });

  test('a whole message missing only its newline (edited by hand, or cut just before it) is kept and given one', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    await dlq.send([body(1)]);
    appendFileSync(dlq.path, body(2));

    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect(await after.count()).toBe(2);
    await after.send([body(3)]);
    expect(linesOf(after.path)).toEqual([body(1), body(2), body(3)]);
    expect((await after.receive(10)).map((m) => m.body)).toEqual([body(1), body(2), body(3)]);
  });

  test('a deleted line edited in place is not hidden: ledger entries match content, not just line numbers', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    await dlq.send([body(1), body(2)]);
    const [first] = await dlq.receive(1);
    await dlq.delete([first.receiptHandle]);
    // Same file (same inode), first line replaced: someone edited the queue by hand.
    writeFileSync(dlq.path, `${body(7)}\n${body(2)}\n`, { flag: 'r+' });
    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect((await after.receive(10)).map((m) => m.body)).toEqual([body(7), body(2)]);
  });

  test('a handle received before the file was cut short and written anew in place deletes nothing: the message now on its line stays', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    await dlq.send([body(1), body(2)]);
    const received = await dlq.receive(2);
    // Same file (same inode), shorter, then one new message: line 1 is now another message.
    writeFileSync(dlq.path, `${body(9)}\n`);
    const result = await dlq.delete(received.map((m) => m.receiptHandle));
    expect(result).toEqual({ deleted: 0, unknown: received.map((m) => m.receiptHandle) });
    expect(await dlq.count()).toBe(1);
    // Visible at once, as a new message is: not hidden by the visibility of the message line 1 held before.
    expect((await dlq.receive(10)).map((m) => m.body)).toEqual([body(9)]);
    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect((await after.receive(10)).map((m) => m.body)).toEqual([body(9)]);
  });

  test('a handle of a replaced file deletes nothing, and the new file\'s messages are all visible at once', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    await dlq.send([body(1), body(2)]);
    const received = await dlq.receive(2);
    // Another file in its place (a new inode), holding the same bodies.
    const other = `${dlq.path}.new`;
    writeFileSync(other, `${body(1)}\n${body(2)}\n`);
    renameSync(other, dlq.path);
    expect((await dlq.receive(10)).map((m) => m.body)).toEqual([body(1), body(2)]);
    expect(await dlq.delete(received.map((m) => m.receiptHandle))).toEqual({ deleted: 0, unknown: received.map((m) => m.receiptHandle) });
    expect(await dlq.count()).toBe(2);
  });

  test('a malformed or out-of-range handle deletes nothing and does not throw', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    await dlq.send([body(1)]);
    const [m] = await dlq.receive(1);
    const [dataId] = /^\d+\.\d+/.exec(m.receiptHandle) as RegExpExecArray;
    const bad = ['', 'x', `${dataId}.0.0123456789abcdef`, `${dataId}.2.0123456789abcdef`, `${dataId}.1`];
    expect(await dlq.delete(bad)).toEqual({ deleted: 0, unknown: bad });
    expect(await dlq.count()).toBe(1);
  });

  test('claim() is true exactly once per key, across instances and restarts', async () => {
    const a = new DlqFile({ dataDir, queue: 'q' });
    const b = new DlqFile({ dataDir, queue: 'q' });
    const key = 's3://bucket/errors/app/processing-failed/2026/11/22/obj-1#3\nwith a newline';
    const results = await Promise.all([a.claim(key), b.claim(key), a.claim(key), b.claim(key)]);
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await a.hasDedupeKey(key)).toBe(true);
    expect(await a.hasDedupeKey('other')).toBe(false);

    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect(await after.claim(key)).toBe(false);
    expect(await after.claim('other')).toBe(true);
    expect(linesOf(after.dedupePath)).toHaveLength(2);
  });

  test('sendOnceEach() sends each key\'s message once, however often it is retried', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    const messages = [{ dedupeKey: 'obj-1', body: body(1) }, { dedupeKey: 'obj-2', body: body(2) }];
    expect(await dlq.sendOnceEach(messages)).toBe(2);
    expect(await dlq.sendOnceEach(messages)).toBe(0);
    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect(await after.sendOnceEach(messages)).toBe(0);
    expect(await after.count()).toBe(2);
  });

  test('concurrent sends from two instances on one file never interleave lines', async () => {
    const a = new DlqFile({ dataDir, queue: 'q' });
    const b = new DlqFile({ dataDir, queue: 'q' });
    const big = (who: string, n: number): string => JSON.stringify({ who, n, pad: 'x'.repeat(70_000 + n) });
    await Promise.all(
      Array.from({ length: 40 }, (_, n) => (n % 2 === 0 ? a : b).send([big(n % 2 === 0 ? 'a' : 'b', n), big('batch', n)])),
    );
    const lines = linesOf(a.path);
    expect(lines).toHaveLength(80);
    const parsed = lines.map((line) => JSON.parse(line) as { who: string; n: number });
    // Each send's two bodies stay adjacent: one write per send.
    for (let i = 0; i < parsed.length; i += 2) {
      expect(parsed[i + 1]).toMatchObject({ who: 'batch', n: parsed[i].n });
    }
    expect(await b.count()).toBe(80);
  });

  test('another process appending while this one deletes and compacts loses no message', async () => {
    const queue = 'shared';
    const child = spawn(
      process.execPath,
      [
        '--require',
        require.resolve('tsx/cjs'),
        '-e',
        `const { DlqFile } = require(${JSON.stringify(require.resolve('../../lib/local/dlq-file'))});
         (async () => {
           const dlq = new DlqFile({ dataDir: ${JSON.stringify(dataDir)}, queue: ${JSON.stringify(queue)} });
           for (let i = 0; i < 150; i++) await dlq.send([JSON.stringify({ from: 'child', i })]);
         })().catch((err) => { console.error(err); process.exit(1); });`,
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    let childDone = false;
    void exited.then(() => (childDone = true));

    const dlq = new DlqFile({ dataDir, queue, visibilityTimeoutSeconds: 0, compactAfterDeleted: 5 });
    const seen: string[] = [];
    for (let i = 0; i < 150; i++) await dlq.send([JSON.stringify({ from: 'parent', i })]);
    // Receive and delete everything, over and over, while the child keeps appending: compaction
    // runs whenever all lines are deleted.
    for (;;) {
      const batch = await dlq.receive(10);
      seen.push(...batch.map((m) => m.body));
      await dlq.delete(batch.map((m) => m.receiptHandle));
      if (batch.length === 0 && childDone) {
        if ((await dlq.count()) === 0) break;
      }
    }
    expect(await exited).toBe(0);
    const expected = [
      ...Array.from({ length: 150 }, (_, i) => JSON.stringify({ from: 'parent', i })),
      ...Array.from({ length: 150 }, (_, i) => JSON.stringify({ from: 'child', i })),
    ];
    expect([...seen].sort()).toEqual([...expected].sort());
    expect(existsSync(dlq.lockPath)).toBe(false);
  }, 60_000);

  test('a lock left by a dead process is broken; a live one is waited for and named', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q', lockTimeoutMs: 200 });
    await dlq.send([body(1)]);
    writeFileSync(dlq.lockPath, '999999999 deadbeef');
    expect(await dlq.count()).toBe(1);
    expect(existsSync(dlq.lockPath)).toBe(false);

    writeFileSync(dlq.lockPath, `${process.ppid} cafe`);
    await expect(dlq.count()).rejects.toThrow(`is locked by process ${process.ppid}`);
    // The wall clock set back an hour while it waits: the wait still ends after its 200 ms.
    const realNow = Date.now.bind(Date);
    let calls = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - (++calls > 1 ? 3_600_000 : 0));
    try {
      await expect(within(dlq.count(), 5000, 'still waiting')).rejects.toThrow(`is locked by process ${process.ppid}`);
    } finally {
      wallClock.mockRestore();
    }
    rmSync(dlq.lockPath);
  });

  test('a process killed while it takes the lock leaves no lock naming no one: the next operation goes on at once', async () => {
    // The child dies at the instant between making the lock and naming itself in it: the old code's exclusive create
    // then write (the kill after the create), or the new code's hard link (the kill before the link).
    const preload = path.join(dataDir, 'kill-while-locking.js');
    writeFileSync(preload, `const fs = require('node:fs'); const fsp = require('node:fs/promises');
      const writeFile = fsp.writeFile;
      fsp.writeFile = async (file, data, options) => {
        if (String(file).endsWith('.lock') && options && options.flag === 'wx') { await (await fsp.open(file, 'wx')).close(); process.kill(process.pid, 'SIGKILL'); }
        return writeFile(file, data, options);
      };
      const linkSync = fs.linkSync;
      fs.linkSync = (from, to) => { if (String(to).endsWith('.lock')) process.kill(process.pid, 'SIGKILL'); return linkSync(from, to); };`);
    const script = `const { DlqFile } = require(${JSON.stringify(require.resolve('../../lib/local/dlq-file'))});
      new DlqFile({ dataDir: ${JSON.stringify(dataDir)}, queue: 'q' }).send(['{"n":1}']).then(() => process.stdout.write('sent'));`;
    const child = spawn(process.execPath, ['--require', preload, '--require', require.resolve('tsx/cjs'), '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const signal = await new Promise((resolve) => child.once('exit', (_code, sig) => resolve(sig)));
    expect(signal).toBe('SIGKILL');
    expect(out).toBe('');
    const dlq = new DlqFile({ dataDir, queue: 'q', lockTimeoutMs: 2_000 });
    await expect(within(dlq.send(['{"n":2}']), 5_000, 'still waiting')).resolves.toBeUndefined();
    expect(await dlq.count()).toBe(1);
  }, 20_000);

  test('a lock whose pid now runs another process (a later start than the one it records: a container restarted) is broken; one that process wrote, or an older Sluice\'s pid alone, is waited for', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q', lockTimeoutMs: 200 });
    await dlq.send([body(1)]);
    // The lock this process takes names it as twin.pid does: the pid (and a token) first, its start on the next line
    // (written aside, then linked into place).
    const written: string[] = [];
    const writeFile = jest.spyOn(fsPromises, 'writeFile').mockImplementation(async (file, data, options) => {
      if (file === dlq.lockPath || file === `${dlq.lockPath}.${process.pid}.new`) written.push(String(data));
      return realWriteFile(file, data, options);
    });
    try {
      expect(await dlq.count()).toBe(1);
    } finally {
      writeFile.mockRestore();
    }
    expect(written).toEqual([expect.stringMatching(new RegExp(`^${process.pid} [0-9a-f]+\n${processStart(process.pid)}\n$`))]);
    expect(readPid(dlq.lockPath)).toBeUndefined(); // released

    // Not a Sluice process, but alive: as if it had been given the pid of a twin or replay killed earlier.
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      for (const deadline = Date.now() + 5000; processStart(other.pid!) === undefined; await new Promise((r) => setTimeout(r, 20))) {
        if (Date.now() > deadline) throw new Error(`no start for pid ${other.pid}`);
      }
      const start = processStart(other.pid!)!;
      const earlier = start.replace(/\d+$/, (ticks) => String(Number(ticks) - 1));
      writeFileSync(dlq.lockPath, pidLockContent({ pid: other.pid!, start: earlier }, 'cafe'));
      expect(await dlq.count()).toBe(1);
      expect(existsSync(dlq.lockPath)).toBe(false);
      // Written by that process itself, or by an older Sluice with the pid (and its token) alone: held.
      for (const content of [pidLockContent({ pid: other.pid!, start }, 'cafe'), `${other.pid} cafe`, `${other.pid}\n`]) {
        writeFileSync(dlq.lockPath, content);
        await expect(dlq.count()).rejects.toThrow(`is locked by process ${other.pid}`);
        expect(readFileSync(dlq.lockPath, 'utf8')).toBe(content);
      }
      rmSync(dlq.lockPath);
    } finally {
      other.kill('SIGKILL');
    }
  });

  describe('bodies', () => {
    test('a raw line break is refused with what to do instead', async () => {
      const dlq = new DlqFile({ dataDir, queue: 'q' });
      await expect(dlq.send(['{"a":\n1}'])).rejects.toThrow(/raw line break at character 5.*JSON\.stringify/);
      await expect(dlq.send([JSON.stringify({ a: 1 }, null, 2)])).rejects.toThrow('raw line break');
      await expect(dlq.send(['x\ry'])).rejects.toThrow('raw line break');
      await expect(dlq.send([''])).rejects.toThrow('non-empty');
      expect(existsSync(dlq.path)).toBe(false);
    });

    test('characters SQS refuses are refused; toSqsBody escapes them', async () => {
      const dlq = new DlqFile({ dataDir, queue: 'q' });
      await expect(dlq.send([JSON.stringify('\uffff')])).rejects.toThrow(/U\+FFFF.*toSqsBody/);
      await expect(dlq.send(['"\ud800"'])).rejects.toThrow('U+D800');
      await expect(dlq.send(['a\u0000b'])).rejects.toThrow('U+0000');
      await dlq.send([toSqsBody('\uffff\ufffe')]);
      const [message] = await dlq.receive(1);
      expect(message.body).toBe('"\\uffff\\ufffe"');
      expect(JSON.parse(message.body)).toBe('\uffff\ufffe');
    });

    test('bodies up to 1 MiB are taken, larger ones refused', async () => {
      const dlq = new DlqFile({ dataDir, queue: 'q' });
      const fits = JSON.stringify('é'.repeat((DLQ_MAX_BODY_BYTES - 2) / 2));
      expect(Buffer.byteLength(fits)).toBe(DLQ_MAX_BODY_BYTES);
      await dlq.send([fits]);
      await expect(dlq.send([JSON.stringify('x'.repeat(DLQ_MAX_BODY_BYTES))])).rejects.toThrow('at most 1048576');
      expect((await dlq.receive(1))[0].body).toBe(fits);
    });

    test('queue names and receive sizes follow SQS', () => {
      expect(() => new DlqFile({ dataDir, queue: '../escape' })).toThrow('not a valid SQS queue name');
      expect(() => new DlqFile({ dataDir, queue: 'a'.repeat(81) })).toThrow('not a valid SQS queue name');
      expect(() => new DlqFile({ dataDir, queue: 'orders.fifo' })).not.toThrow();
      return expect(new DlqFile({ dataDir, queue: 'q' }).receive(11)).rejects.toThrow('1–10');
    });

    test('any string, as a JSON body, comes back exactly (newlines, unicode, lone surrogates)', async () => {
      const tricky = fc.constantFrom('\n', '\r', '\r\n', '\u2028', '\u2029', '\ufffe', '\uffff', '\ud800', '\udfff', '"', '\\', '\u0000', '\t', '😀');
      const text = fc.string({ unit: fc.oneof(tricky, fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: 40 });
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(text, { minLength: 1, maxLength: 5 }), async (values) => {
          const dlq = new DlqFile({ dataDir, queue: `prop-${run++}` });
          await dlq.send(values.map((value) => toSqsBody({ value })));
          const received = await dlq.receive(10);
          expect(received.map((m) => (JSON.parse(m.body) as { value: string }).value)).toEqual(values);
          expect(linesOf(dlq.path)).toHaveLength(values.length);
        }),
        { numRuns: 150 },
      );
    });

    test('any JSON value round-trips through toSqsBody', async () => {
      const dlq = new DlqFile({ dataDir, queue: 'json', visibilityTimeoutSeconds: 0 });
      await fc.assert(
        fc.asyncProperty(fc.jsonValue(), async (value) => {
          await dlq.send([toSqsBody(value)]);
          const [message] = await dlq.receive(1);
          await dlq.delete([message.receiptHandle]);
          expect(JSON.parse(message.body)).toEqual(JSON.parse(JSON.stringify(value)));
        }),
        { numRuns: 100 },
      );
    });
  });
});

/** The failure router's messages of lines 1–`lines` of one error object, keyed as it keys them. */
function routedMessages(object: RoutedObject): Array<{ dedupeKey: string; body: string }> {
  return Array.from({ length: object.lines }, (_, i) => ({
    dedupeKey: dedupeKeyOf(object.bucket, object.key, i + 1, object.version),
    body: JSON.stringify({ source: `s3://${object.bucket}/${object.key}#${i + 1}@${object.version}` }),
  }));
}
const errorObject = (n: number, lines = 3, version = `etag-${n}`): RoutedObject => ({
  bucket: 'sluice-dev-data', key: `errors/app-events/processing-failed/2026/12/06/01/obj-${n}`, version, lines,
});

describe('DlqFile: error objects marked routed', () => {
  test('a marker survives a restart; the last version marked is the one routedVersions() names', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    await dlq.sendOnceEach(routedMessages(errorObject(1)));
    await dlq.markRouted(errorObject(1));
    await dlq.markRouted(errorObject(2, 0));
    await dlq.markRouted(errorObject(1, 4, 'etag-1b'));
    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect(await after.routedVersions()).toEqual(new Map([
      [`s3://sluice-dev-data/${errorObject(1).key}`, 'etag-1b'],
      [`s3://sluice-dev-data/${errorObject(2).key}`, 'etag-2'],
    ]));
    expect(existsSync(after.routedPath)).toBe(true);
  });

  test('markers given at once, from two instances, are all written (in fewer appends than markers)', async () => {
    const [a, b] = [new DlqFile({ dataDir, queue: 'q' }), new DlqFile({ dataDir, queue: 'q' })];
    const objects = Array.from({ length: 60 }, (_, n) => errorObject(n, 0));
    const opens = jest.spyOn(fsPromises, 'open');
    try {
      await Promise.all(objects.map((object, n) => (n % 2 === 0 ? a : b).markRouted(object)));
      const appends = opens.mock.calls.filter(([file, flags]) => file === a.routedPath && flags === 'a+').length;
      expect(appends).toBeGreaterThan(0);
      expect(appends).toBeLessThan(10);
    } finally {
      opens.mockRestore();
    }
    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect([...(await after.routedVersions()).values()].sort()).toEqual(objects.map((o) => o.version).sort());
    expect(linesOf(after.routedPath)).toHaveLength(60);
  });

  test('compaction drops the dedupe keys of objects marked routed, and keeps every other key', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    const [marked, unmarked] = [errorObject(1, 5), errorObject(2, 4)];
    expect(await dlq.sendOnceEach([...routedMessages(marked), ...routedMessages(unmarked)])).toBe(9);
    await dlq.claim('replayed#some-record');
    await dlq.markRouted(marked);
    expect(linesOf(dlq.dedupePath)).toHaveLength(10);
    await dlq.compactDedupe();
    expect(linesOf(dlq.dedupePath).map((l) => JSON.parse(l) as string).sort()).toEqual([...routedMessages(unmarked).map((m) => m.dedupeKey), 'replayed#some-record'].sort());
    expect(linesOf(dlq.routedPath).map((l) => JSON.parse(l) as unknown)).toEqual([{ ...marked, keysDropped: true }]);

    // After a restart the keys kept still dedupe: the unmarked object routed again sends nothing.
    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect(await after.sendOnceEach(routedMessages(unmarked))).toBe(0);
    expect(await after.hasDedupeKey('replayed#some-record')).toBe(true);
    expect(await after.count()).toBe(9);
    expect((await after.routedVersions()).get(`s3://sluice-dev-data/${marked.key}`)).toBe(marked.version);
  });

  test('markRouted compacts on its own once compactDedupeAfter keys may go and they are half the file', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q', compactDedupeAfter: 6 });
    for (const n of [1, 2, 3]) await dlq.sendOnceEach(routedMessages(errorObject(n)));
    await dlq.markRouted(errorObject(1));
    expect(linesOf(dlq.dedupePath)).toHaveLength(9);
    await dlq.markRouted(errorObject(2));
    // 6 droppable of 9: compacted, the third object's keys kept.
    expect(linesOf(dlq.dedupePath).map((l) => JSON.parse(l) as string).sort()).toEqual(routedMessages(errorObject(3)).map((m) => m.dedupeKey).sort());
    expect(linesOf(dlq.routedPath)).toHaveLength(2);
  });

  test('the keys of objects marked routed go although sluice replay\'s ledger (two keys a message, kept) outnumbers them', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q', compactDedupeAfter: 6 });
    const objects = [1, 2, 3, 4].map((n) => errorObject(n));
    // What replay leaves in the same file for each message it replayed: the record's time and the message's key.
    const replayed = (object: RoutedObject) => routedMessages(object).flatMap((m, i) => [replayLedgerKey(`record#${object.key}#${i}@1765000000000`), replayLedgerKey(m.dedupeKey)]);
    // An earlier run's objects, routed and replayed; then new ones, each replayed once routed, as a user works.
    for (const object of objects) {
      await dlq.sendOnceEach(routedMessages(object));
      await dlq.markRouted(object);
      await dlq.claimAll(replayed(object));
    }
    expect(linesOf(dlq.dedupePath).map((l) => JSON.parse(l) as string).sort()).toEqual(objects.flatMap(replayed).sort());
  });

  test('a compaction that fails (a full disk cannot hold the rewrite) keeps every key, and the marker stands: markRouted resolves, the next one compacts', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q', compactDedupeAfter: 3 });
    for (const n of [1, 2]) await dlq.sendOnceEach(routedMessages(errorObject(n)));
    const full = Object.assign(new Error('ENOSPC: no space left on device, rename'), { code: 'ENOSPC' });
    const rename = jest.spyOn(fsPromises, 'rename').mockRejectedValueOnce(full);
    try {
      await dlq.markRouted(errorObject(1));
    } finally {
      rename.mockRestore();
    }
    expect(linesOf(dlq.dedupePath)).toHaveLength(6);
    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q', compactDedupeAfter: 3 });
    expect((await after.routedVersions()).get(`s3://sluice-dev-data/${errorObject(1).key}`)).toBe('etag-1');
    await after.markRouted(errorObject(2));
    expect(readFileSync(after.dedupePath, 'utf8')).toBe('');
  });

  test('a crash after the dedupe file is compacted and before the markers are rewritten drops nothing more and loses nothing', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    for (const n of [1, 2]) await dlq.sendOnceEach(routedMessages(errorObject(n)));
    await dlq.markRouted(errorObject(1));
    const markersBefore = readFileSync(dlq.routedPath);
    await dlq.compactDedupe();
    // The markers as they were before their rewrite: keys said kept that are gone.
    writeFileSync(dlq.routedPath, markersBefore);
    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    await after.compactDedupe();
    expect(linesOf(after.dedupePath).map((l) => JSON.parse(l) as string).sort()).toEqual(routedMessages(errorObject(2)).map((m) => m.dedupeKey).sort());
    expect(await after.sendOnceEach(routedMessages(errorObject(2)))).toBe(0);
    expect(linesOf(after.routedPath).map((l) => JSON.parse(l) as unknown)).toEqual([{ ...errorObject(1), keysDropped: true }]);
  });

  test('a data dir written before markers (keys, no .routed file) routes as before, then marks and compacts', async () => {
    // What the twin wrote before markers existed: messages and their keys, one JSON string a line.
    mkdirSync(path.join(dataDir, 'dlq'));
    const old = errorObject(1, 4);
    writeFileSync(path.join(dataDir, 'dlq', 'q.jsonl'), routedMessages(old).map((m) => `${m.body}\n`).join(''));
    writeFileSync(path.join(dataDir, 'dlq', 'q.dedupe'), routedMessages(old).map((m) => `${JSON.stringify(m.dedupeKey)}\n`).join(''));
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    expect(await dlq.routedVersions()).toEqual(new Map());
    expect(await dlq.sendOnceEach(routedMessages(old))).toBe(0);
    await dlq.markRouted(old);
    await dlq.compactDedupe();
    expect(readFileSync(dlq.dedupePath, 'utf8')).toBe('');
    expect(await dlq.count()).toBe(4);
  });

  test('marker lines markRouted did not write mark nothing; a bad marker is refused', async () => {
    const dlq = new DlqFile({ dataDir, queue: 'q' });
    await dlq.markRouted(errorObject(1));
    appendFileSync(dlq.routedPath, 'not json\n{"bucket":"b","key":"k","lines":2}\n[1]\n');
    await dlq.markRouted(errorObject(2));
    const after = new (afterRestart().DlqFile)({ dataDir, queue: 'q' });
    expect([...(await after.routedVersions()).values()]).toEqual(['etag-1', 'etag-2']);
    await expect(dlq.markRouted({ ...errorObject(3), version: '' })).rejects.toThrow(/bucket \(no "\/"\), a key and a version, all non-empty/);
    await expect(dlq.markRouted({ ...errorObject(3), lines: -1 })).rejects.toThrow(/lines must be a whole number ≥ 0/);
  });

  test('SIGKILL at any point while routing, marking and compacting: routing the unmarked objects again sends every message, and none of a marked object twice', async () => {
    const objects = Array.from({ length: 40 }, (_, n) => errorObject(n, 5));
    // The child routes the objects as the twin does (messages and their keys, then the marker), saying each one marked.
    const script = `const { DlqFile } = require(${JSON.stringify(require.resolve('../../lib/local/dlq-file'))});
      const { dedupeKeyOf } = require(${JSON.stringify(require.resolve('../../transforms/failure-router/dedupe-key'))});
      (async () => {
        const dlq = new DlqFile({ dataDir: ${JSON.stringify(dataDir)}, queue: 'q', compactDedupeAfter: 10 });
        for (const o of ${JSON.stringify(objects)}) {
          await dlq.sendOnceEach(Array.from({ length: o.lines }, (_, i) => ({
            dedupeKey: dedupeKeyOf(o.bucket, o.key, i + 1, o.version),
            body: JSON.stringify({ source: 's3://' + o.bucket + '/' + o.key + '#' + (i + 1) + '@' + o.version }),
          })));
          await dlq.markRouted(o);
          process.stdout.write('.');
        }
      })().catch((err) => { console.error(err); process.exit(1); });`;
    for (const [killAfterMarked, extraMs] of [[2, 0], [11, 3], [23, 7], [29, 1]]) {
      rmSync(path.join(dataDir, 'dlq'), { recursive: true, force: true });
      const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      let marked = 0;
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (chunk: Buffer) => {
          marked += chunk.length;
          if (marked >= killAfterMarked) resolve();
        });
        void exited.then(() => resolve());
      });
      // A few ms on: the kill lands somewhere in the next object's messages, keys, marker or a compaction.
      await new Promise((resolve) => setTimeout(resolve, extraMs));
      const killedAt = marked;
      child.kill('SIGKILL');
      await exited;
      expect((await new (afterRestart().DlqFile)({ dataDir, queue: 'q' }).routedVersions()).size).toBeLessThan(objects.length);
      // A start: every object not marked as it is is routed again, then marked.
      const dlq = new (afterRestart().DlqFile)({ dataDir, queue: 'q', compactDedupeAfter: 10 });
      const routed = await dlq.routedVersions();
      for (const object of objects) {
        if (routed.get(`s3://${object.bucket}/${object.key}`) === object.version) continue;
        await dlq.sendOnceEach(routedMessages(object));
        await dlq.markRouted(object);
      }
      const bodies: string[] = [];
      await dlq.forEachBody((b) => bodies.push(b));
      const expected = objects.flatMap((o) => routedMessages(o).map((m) => m.body));
      expect([...new Set(bodies)].sort()).toEqual([...expected].sort());
      // A message is sent twice only by sendOnceEach's own window (messages on disk, the kill before their keys): those
      // of the one object the kill cut off, never one marked routed, whatever compaction did.
      const twice = bodies.filter((b, i) => bodies.indexOf(b) !== i);
      expect(new Set(twice.map((b) => (JSON.parse(b) as { source: string }).source.split('#')[0])).size).toBeLessThanOrEqual(1);
      expect(twice.every((b) => Number(/\/obj-(\d+)#/.exec(b)?.[1]) >= killedAt)).toBe(true);
      expect((await dlq.routedVersions()).size).toBe(objects.length);
      await dlq.compactDedupe();
      expect(readFileSync(dlq.dedupePath, 'utf8')).toBe('');
    }
  }, 60_000);
});
