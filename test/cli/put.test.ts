/**
 * `sluice put` against the twin's Firehose endpoint (lib/local/firehose-api.ts) with a recording
 * backend; `--verify` against Parquet the test delivers the way the twin does.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { freePort } from '../../lib/local/ports';
import { startFirehoseApi, type RunningFirehoseApi } from '../../lib/local/firehose-api';
import { schemaFingerprint, TWIN_DATA_DIR_HEADER, TWIN_ID_HEADER } from '../../lib/local/twin-record';
import { validators } from '../../transforms/shared/generated';
import { acknowledgedJson, config, deliverToLake, expectNoStackTrace, RecordingBackend, registerTwin, sluice, tempDataDir } from './helpers';
import { resolveTarget, sameTargetFlags, type LocalTarget } from '../../lib/cli/target';
import { within } from '../within';

const backend = new RecordingBackend();
let api: RunningFirehoseApi;
let dataDir: string;

beforeAll(async () => {
  api = await startFirehoseApi({ port: 0, backend });
});
afterAll(async () => {
  await api.close();
});
beforeEach(() => {
  backend.reset();
  dataDir = tempDataDir();
  registerTwin(dataDir, { firehose: api.url });
});
afterEach(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const put = (...args: string[]) => sluice('put', ...args, '--endpoint-firehose', api.url, '--data-dir', dataDir);

/** `put` in its own process against the test's endpoint and data dir, so a SIGINT is a real one; its output as it comes. */
function spawnPut(...args: string[]) {
  const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), 'put', ...args, '--endpoint-firehose', api.url, '--data-dir', dataDir],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => { output.stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { output.stderr += chunk.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, output, exited };
}
const unavailable = { ok: false as const, errorCode: 'ServiceUnavailableException', errorMessage: 'Slow down.' };

describe('sluice put (DirectPut pipeline, twin Firehose API)', () => {
  test('sends 10 generated records that pass the schema to the lake delivery stream', async () => {
    const { code, stdout, stderr } = await put('app-events');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(backend.acknowledged).toHaveLength(10);
    expect(new Set(backend.acknowledged.map((r) => r.streamName))).toEqual(new Set(['sluice-dev-app-events-lake']));
    for (const record of acknowledgedJson(backend)) expect(validators['app-events'](record)).toBe(true);
    expect(new Set(acknowledgedJson(backend).map((r) => r.event_id)).size).toBe(10);
    expect(stdout).toMatch(/app-events: 10 records → Firehose delivery stream sluice-dev-app-events-lake \(the local twin/);
    expect(stdout).toMatch(/accepted 10 · failed 0 · retried 0/);
  });

  test('batches within the API limit: --count 1200 takes three PutRecordBatch calls', async () => {
    const { code } = await put('app-events', '--count', '1200');
    expect(code).toBe(0);
    expect(backend.acknowledged).toHaveLength(1200);
    expect(backend.calls).toBe(3);
  });

  test('retries only the records a call failed, until they are accepted', async () => {
    backend.decide = (_data, call, index) => (call === 1 && index % 2 === 0 ? unavailable : { ok: true });
    const { code, stdout } = await put('app-events', '--count', '10');
    expect(code).toBe(0);
    expect(backend.calls).toBe(2);
    expect(backend.acknowledged).toHaveLength(10);
    expect(new Set(acknowledgedJson(backend).map((r) => r.event_id)).size).toBe(10);
    expect(stdout).toMatch(/accepted 10 · failed 0 · retried 5/);
  });

  test('gives up after --max-attempts and exits 1, naming the error codes and what the entry point said', async () => {
    // The twin's answer when its disk refuses the write-ahead log: the code alone would not say so.
    const diskFull = { ...unavailable, errorMessage: 'sluice-dev-app-events-lake could not write its write-ahead log (ENOSPC: no space left on device, write); these records were not accepted' };
    backend.decide = (_data, _call, index) => (index === 0 ? diskFull : { ok: true });
    const { code, stdout, stderr } = await put('app-events', '--count', '4', '--batch-size', '4', '--max-attempts', '3');
    expect(code).toBe(1);
    expect(backend.calls).toBe(3);
    expect(stdout).toContain(`not accepted: ServiceUnavailableException ×1 (first: ${diskFull.errorMessage})`);
    expect(stderr).toMatch(/sluice: 1 of 4 records were not accepted after 3 attempts \(ServiceUnavailableException ×1\)/);
    expectNoStackTrace(stderr);
  });

  test('a record too large for the API is given up on at once: not counted as retried, not said to have had attempts', async () => {
    const file = path.join(dataDir, 'records.ndjson');
    const good = JSON.stringify({ event_id: '6f1c2b9e-0000-4000-8000-000000000001', user_id: 'u', event_type: 'login', timestamp: '2026-11-22T10:00:00Z' });
    const huge = JSON.stringify({ event_id: '6f1c2b9e-0000-4000-8000-000000000002', user_id: 'x'.repeat(1_100_000), event_type: 'login', timestamp: '2026-11-22T10:00:00Z' });
    fs.writeFileSync(file, `${good}\n${huge}\n`);
    const { code, stdout, stderr } = await put('app-events', '--file', file);
    expect(code).toBe(1);
    expect(stdout).toMatch(/accepted 1 · failed 1 · retried 0/);
    expect(stderr).toBe('sluice: 1 of 2 records were refused for good, so not retried (RecordTooLarge ×1)\n');

    backend.reset();
    backend.decide = (data) => (data.toString().includes('000000000001') ? unavailable : { ok: true });
    const mixed = await put('app-events', '--file', file, '--max-attempts', '2');
    expect(mixed.stdout).toMatch(/accepted 0 · failed 2 · retried 1/);
    expect(mixed.stderr).toBe('sluice: 2 of 2 records were not accepted: 1 after 2 attempts (ServiceUnavailableException ×1); 1 refused for good, so not retried (RecordTooLarge ×1)\n');

    // --verify with nothing accepted: nothing to verify, but no PASS for a run that fails.
    fs.writeFileSync(file, `${huge}\n`);
    const verified = await put('app-events', '--file', file, '--verify');
    expect(verified.code).toBe(1);
    expect(verified.stdout).toMatch(/^verify: nothing to verify/m);
    expect(verified.stdout).not.toMatch(/PASS/);
  });

  test('nothing listening: exit 2 and how to start the twin (on the data dir the command was given)', async () => {
    const port = await freePort();
    const { code, stderr } = await sluice('put', 'app-events', '--endpoint-firehose', `http://127.0.0.1:${port}`, '--data-dir', dataDir);
    expect(code).toBe(2);
    // A plain `sluice local up` would start a twin on .sluice here, which this command does not send to.
    expect(stderr).toBe(`sluice: nothing is listening on 127.0.0.1:${port}: start the twin with \`npx sluice local up --data-dir ${dataDir}\`\n`);
    // The data dir `local up` takes by itself (SLUICE_DATA_DIR here): the plain command.
    const saved = process.env.SLUICE_DATA_DIR;
    process.env.SLUICE_DATA_DIR = dataDir;
    try {
      const plain = await sluice('put', 'app-events', '--endpoint-firehose', `http://127.0.0.1:${port}`);
      expect(plain.stderr).toBe(`sluice: nothing is listening on 127.0.0.1:${port}: start the twin with \`npx sluice local up\`\n`);
    } finally {
      if (saved === undefined) delete process.env.SLUICE_DATA_DIR;
      else process.env.SLUICE_DATA_DIR = saved;
    }
  });

  test('an endpoint on a port fetch refuses (6000, a blocked port of the Fetch standard): exit 2 saying so, not "fetch failed"', async () => {
    const { code, stdout, stderr } = await sluice('put', 'app-events', '--endpoint-firehose', 'http://127.0.0.1:6000', '--data-dir', dataDir);
    expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
    expect(stderr).toMatch(/^sluice: cannot reach .* at http:\/\/127\.0\.0\.1:6000: its port 6000 is one Node's fetch refuses to connect to \(a blocked port of the Fetch standard, as in browsers\): use another port\n$/);
  });

  test('the endpoint stops answering mid-run: says so, still reports what was sent and accepted, exit 1', async () => {
    for (const json of [false, true]) {
      const stopping = new RecordingBackend();
      const twin = await startFirehoseApi({ port: 0, backend: stopping });
      registerTwin(dataDir, { firehose: twin.url });
      // Stopped once it has taken 600 records, not at a fixed time: a busy machine can send fewer than 500 in 1.2 s.
      let ended = false;
      const stopped = (async () => {
        while (!ended && stopping.acknowledged.length < 600) await new Promise((resolve) => setTimeout(resolve, 20));
        await twin.close();
      })();
      const { code, stdout, stderr } = await sluice('put', 'app-events', '-n', '5000', '--rate', '1000/s', '--outage-wait', json ? '0' : '2s',
        '--endpoint-firehose', twin.url, '--data-dir', dataDir, ...(json ? ['--json'] : [])).finally(() => (ended = true));
      await stopped;
      const accepted = stopping.acknowledged.length;
      expect(accepted).toBeGreaterThan(500);
      expect(code).toBe(1);
      expectNoStackTrace(stderr);
      expect(stderr).not.toMatch(/start the twin/);
      expect(stderr).toMatch(new RegExp(`^sluice: Firehose delivery stream sluice-dev-app-events-lake at ${twin.url} stopped answering mid-run \\(ECONN\\w+\\) after accepting ${accepted.toLocaleString('en-US')} records; [\\d,]+ of the 5,000 records were never sent\\. The summary counts what was sent until then`));
      if (json) {
        const report = JSON.parse(stdout) as { sent: number; accepted: number; failed: number; stopped: string };
        expect(report.accepted).toBe(accepted);
        expect(report.failed).toBe(report.sent - accepted);
        expect(report.stopped).toMatch(/stopped answering mid-run/);
      } else {
        expect(stdout).toMatch(new RegExp(`app-events: [\\d,]+ records → Firehose delivery stream sluice-dev-app-events-lake`));
        expect(stdout).toMatch(new RegExp(`accepted ${accepted.toLocaleString('en-US')} · failed \\d+`));
        // Those of the call the stop cut off may have been taken (MaybeTaken); the others were never sent.
        expect(stdout).toMatch(/not accepted: (ECONN\w+|MaybeTaken) ×\d+/);
      }
    }
  }, 30_000);

  test('--outage-wait is kept when the wall clock is set back an hour while the endpoint is down', async () => {
    const stopping = new RecordingBackend();
    const twin = await startFirehoseApi({ port: 0, backend: stopping });
    registerTwin(dataDir, { firehose: twin.url });
    const realNow = Date.now.bind(Date);
    let setBack = 0;
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - setBack);
    let ended = false;
    const stopped = (async () => {
      while (!ended && stopping.acknowledged.length < 300) await new Promise((resolve) => setTimeout(resolve, 20));
      await twin.close();
      // Mid-pause: the run is waiting for the endpoint to answer again.
      await new Promise((resolve) => setTimeout(resolve, 500));
      setBack = 3_600_000;
    })();
    try {
      const started = performance.now();
      const { code, stderr } = await sluice('put', 'app-events', '-n', '100000', '--rate', '1000/s', '--outage-wait', '2s',
        '--endpoint-firehose', twin.url, '--data-dir', dataDir).finally(() => (ended = true));
      await stopped;
      expect(code).toBe(1);
      expect(stderr).toMatch(/stopped answering mid-run/);
      expect(performance.now() - started).toBeLessThan(15_000);
    } finally {
      clock.mockRestore();
    }
  }, 30_000);

  /**
   * A proxy in front of `upstreamPort` that passes calls through; the `cutAt`-th PutRecordBatch reaches the stream
   * too, but its connection is cut before the answer and the proxy stops listening: the records arrived, the
   * caller cannot know. Without `cutAt` it only passes calls through.
   */
  async function proxyTo(upstreamPort: number, options: { port?: number; cutAt?: number } = {}): Promise<{ port: number; url: string; close(): void }> {
    const cutAt = options.cutAt ?? Number.POSITIVE_INFINITY;
    let requests = 0;
    const proxy = net.createServer((client) => {
      const upstream = net.connect(upstreamPort, '127.0.0.1');
      client.on('error', () => undefined);
      upstream.on('error', () => undefined);
      client.on('data', (chunk) => {
        if (chunk.includes('Firehose_20150804.PutRecordBatch') && ++requests === cutAt) proxy.close(); // no connection after it
        upstream.write(chunk);
        if (requests >= cutAt) setTimeout(() => client.destroy(), 300);
      });
      upstream.on('data', (chunk) => {
        if (requests < cutAt) client.write(chunk);
      });
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(options.port ?? 0, '127.0.0.1', resolve));
    const port = (proxy.address() as net.AddressInfo).port;
    return { port, url: `http://127.0.0.1:${port}`, close: () => proxy.close() };
  }

  // Past --outage-wait the endpoint is still gone: with 0 the run stops at once; with 2s it first sends the unsettled
  // records again (refused), and those of the cut-off call stay MaybeTaken through that.
  test.each(['0', '2s'])('a call cut off after it was sent, then the endpoint gone (--outage-wait %s): its records are MaybeTaken (the stream did take them), the others not sent', async (outageWait) => {
    const taking = new RecordingBackend();
    const twin = await startFirehoseApi({ port: 0, backend: taking });
    const proxy = await proxyTo(twin.port, { cutAt: 4 });
    const ownDir = tempDataDir();
    registerTwin(ownDir, { firehose: proxy.url });
    try {
      const { code, stdout, stderr } = await sluice('put', 'app-events', '-n', '2000', '--batch-size', '100', '--outage-wait', outageWait, '--endpoint-firehose', proxy.url, '--data-dir', ownDir, '--json');
      expect(code).toBe(1);
      const report = JSON.parse(stdout) as { sent: number; accepted: number; failedByCode: Record<string, number> };
      expect(report.accepted).toBe(300);
      expect(report.failedByCode).toEqual({ MaybeTaken: 100 });
      // The stream took them all the same.
      expect(taking.acknowledged).toHaveLength(400);
      expect(stderr).toMatch(/100 of the records not accepted \(MaybeTaken\) were in calls cut off after they were sent: the stream may have taken them, so sending them again may duplicate them/);
    } finally {
      proxy.close();
      await twin.close();
    }
  }, 30_000);

  test('a --file run the endpoint stops: says how many records of the file were never sent (a regular file is read on to count them, a pipe is not)', async () => {
    const twin = await startFirehoseApi({ port: 0, backend: new RecordingBackend() });
    const ownDir = tempDataDir();
    const file = path.join(ownDir, 'records.ndjson');
    const record = (n: number) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-${String(n).padStart(12, '0')}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() });
    // 1,000 records, with blank lines (no records) among them.
    fs.writeFileSync(file, Array.from({ length: 1000 }, (_, i) => `${record(i + 1)}\n${i % 100 === 0 ? '\n' : ''}`).join(''));
    /** A proxy that cuts the 4th call of 100 records and stops listening: 400 records taken from the input, 600 never. */
    const cutting = async () => {
      const proxy = await proxyTo(twin.port, { cutAt: 4 });
      registerTwin(ownDir, { firehose: proxy.url });
      return proxy;
    };
    const args = (url: string) => ['--batch-size', '100', '--outage-wait', '0', '--endpoint-firehose', url, '--data-dir', ownDir];
    let proxy = await cutting();
    try {
      const { code, stdout, stderr } = await sluice('put', 'app-events', '--file', file, ...args(proxy.url), '--json');
      expect(code).toBe(1);
      expect(stderr).toMatch(new RegExp(`stopped answering mid-run \\(ECONN\\w+\\) after accepting 300 records; 600 more records of --file ${escapeRegExp(file)} were never sent\\. The summary counts`));
      expect(JSON.parse(stdout)).toMatchObject({ sent: 400, accepted: 300, neverSent: 600 });
      proxy.close();

      // A file with more than 64 MiB left is not read to its end to count: the summary is not held back.
      const large = path.join(ownDir, 'large.ndjson');
      fs.copyFileSync(file, large);
      const line = `${'x'.repeat(1023)}\n`;
      for (let i = 0; i < 70; i++) fs.appendFileSync(large, line.repeat(1024));
      proxy = await cutting();
      const counted = await sluice('put', 'app-events', '--file', large, ...args(proxy.url), '--json');
      expect(counted.code).toBe(1);
      expect(counted.stderr).toContain(`after accepting 300 records; the rest of --file ${large} was never sent (how many records, if any, is not known without reading it to its end)`);
      expect(JSON.parse(counted.stdout)).not.toHaveProperty('neverSent');
      proxy.close();

      // Standard input that stays open: how much more it will bring is not known, and is not waited for.
      proxy = await cutting();
      const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), 'put', 'app-events', '--file', '-', ...args(proxy.url)], { stdio: ['pipe', 'pipe', 'pipe'] });
      let piped = '';
      child.stderr.on('data', (chunk: Buffer) => { piped += chunk.toString(); });
      child.stdin.on('error', () => undefined);
      child.stdin.write(fs.readFileSync(file));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      const pipedCode = await within(exited, 20_000, 'hung');
      if (pipedCode === 'hung') child.kill('SIGKILL');
      child.stdin.destroy();
      expect(pipedCode).toBe(1);
      expect(piped).toMatch(/after accepting \d+ records; the rest of standard input was never sent \(how many records, if any, is not known without reading it to its end\)\. The summary counts/);
    } finally {
      proxy.close();
      await twin.close();
      fs.rmSync(ownDir, { recursive: true, force: true });
    }
  }, 60_000);

  test('the first call cut off after it was sent, then the endpoint gone: the error says the stream may hold its records', async () => {
    const taking = new RecordingBackend();
    const twin = await startFirehoseApi({ port: 0, backend: taking });
    const proxy = await proxyTo(twin.port, { cutAt: 1 });
    const ownDir = tempDataDir();
    registerTwin(ownDir, { firehose: proxy.url });
    try {
      const { code, stderr } = await sluice('put', 'app-events', '-n', '200', '--batch-size', '100', '--endpoint-firehose', proxy.url, '--data-dir', ownDir);
      expect(code).toBe(2);
      expect(taking.acknowledged).toHaveLength(100);
      expect(stderr).toBe(`sluice: nothing is listening on 127.0.0.1:${proxy.port}: start the twin with \`npx sluice local up --data-dir ${ownDir}\`. A call (100 records) was cut off after it was sent: the stream may hold them, so sending them again may duplicate them\n`);
    } finally {
      proxy.close();
      await twin.close();
    }
  }, 30_000);

  test('a later call cut off after it was sent, no record accepted before it, then the endpoint gone: the error does not call it the first', async () => {
    const taking = new RecordingBackend();
    // The first call's records are all refused: nothing accepted when the second call is cut off.
    taking.decide = (_data, call) => (call === 1 ? unavailable : { ok: true });
    const twin = await startFirehoseApi({ port: 0, backend: taking });
    const proxy = await proxyTo(twin.port, { cutAt: 2 });
    const ownDir = tempDataDir();
    registerTwin(ownDir, { firehose: proxy.url });
    try {
      const { code, stderr } = await sluice('put', 'app-events', '-n', '200', '--batch-size', '100', '--max-attempts', '1', '--endpoint-firehose', proxy.url, '--data-dir', ownDir);
      expect(code).toBe(2);
      expect(taking.acknowledged).toHaveLength(100);
      expect(stderr).not.toMatch(/The first call/);
      expect(stderr).toMatch(/A call \(100 records\) was cut off after it was sent: the stream may hold them/);
    } finally {
      proxy.close();
      await twin.close();
    }
  }, 30_000);

  /**
   * A twin behind a proxy that cuts off the 4th PutRecordBatch after the stream took it and stops listening; a second
   * after the stream has 400 records, a proxy listens again on the same port. `beforeBack` runs as the wait begins.
   */
  async function withCutThenBack(beforeBack: (taking: RecordingBackend) => void, run: (url: string, ownDir: string, taking: RecordingBackend) => Promise<void>): Promise<void> {
    const taking = new RecordingBackend();
    const twin = await startFirehoseApi({ port: 0, backend: taking });
    const cutting = await proxyTo(twin.port, { cutAt: 4 });
    const ownDir = tempDataDir();
    registerTwin(ownDir, { firehose: cutting.url });
    let back: Awaited<ReturnType<typeof proxyTo>> | undefined;
    const comeBack = (async () => {
      while (taking.acknowledged.length < 400) await new Promise((resolve) => setTimeout(resolve, 20));
      beforeBack(taking);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      back = await proxyTo(twin.port, { port: cutting.port });
    })();
    try {
      await run(cutting.url, ownDir, taking);
      await comeBack;
    } finally {
      await comeBack.catch(() => undefined);
      cutting.close();
      back?.close();
      await twin.close();
    }
  }

  test('a call cut off after it was sent, and the endpoint back within --outage-wait: its records are sent again, a second copy rather than a loss', async () => {
    await withCutThenBack(() => undefined, async (url, ownDir, taking) => {
      const { code, stdout } = await sluice('put', 'app-events', '-n', '2000', '--batch-size', '100', '--outage-wait', '20s', '--endpoint-firehose', url, '--data-dir', ownDir, '--json');
      expect(code).toBe(0);
      expect(JSON.parse(stdout)).toMatchObject({ sent: 2000, accepted: 2000, failed: 0 });
      // Every record arrived; the cut-off call's 100 twice.
      const ids = taking.acknowledged.map((r) => (JSON.parse(r.data.toString()) as { event_id: string }).event_id);
      expect(new Set(ids).size).toBe(2000);
      expect(ids).toHaveLength(2100);
    });
  }, 40_000);

  test('a call cut off after it was sent, the endpoint back, and its records refused until --max-attempts runs out: they stay MaybeTaken', async () => {
    await withCutThenBack((taking) => {
      taking.decide = () => unavailable;
    }, async (url, ownDir) => {
      const { code, stdout, stderr } = await sluice('put', 'app-events', '-n', '400', '--batch-size', '100', '--max-attempts', '2', '--outage-wait', '20s', '--endpoint-firehose', url, '--data-dir', ownDir, '--json');
      expect(code).toBe(1);
      // The stream took the cut-off call's 100 records: "not accepted after 2 attempts" would have them sent again.
      expect(JSON.parse(stdout)).toMatchObject({ sent: 400, accepted: 300, failedByCode: { MaybeTaken: 100 } });
      expect(stderr).toMatch(/100 of 400 records were in calls cut off after they were sent \(MaybeTaken ×100\)/);
    });
  }, 40_000);

  test('the endpoint stops answering mid-run and comes back on its port (the twin restarting kinesis-mock): put waits, sends again, exit 0', async () => {
    const first = new RecordingBackend();
    const twin = await startFirehoseApi({ port: 0, backend: first });
    registerTwin(dataDir, { firehose: twin.url });
    const second = new RecordingBackend();
    let again: Awaited<ReturnType<typeof startFirehoseApi>> | undefined;
    // The outage begins once the first endpoint has taken some records, however long the put took to start.
    let ended = false;
    const outage = (async () => {
      while (!ended && first.acknowledged.length < 300) await new Promise((resolve) => setTimeout(resolve, 20));
      await twin.close();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      again = await startFirehoseApi({ port: twin.port, backend: second });
    })();
    try {
      const { code, stdout, stderr } = await sluice('put', 'app-events', '-n', '3000', '--rate', '1000/s', '--endpoint-firehose', twin.url, '--data-dir', dataDir, '--json')
        .finally(() => (ended = true));
      await outage;
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(first.acknowledged.length).toBeGreaterThan(0);
      expect(second.acknowledged.length).toBeGreaterThan(0);
      const ids = [...first.acknowledged, ...second.acknowledged].map((r) => (JSON.parse(r.data.toString()) as { event_id: string }).event_id);
      expect(new Set(ids).size).toBe(3000);
      const report = JSON.parse(stdout) as { sent: number; accepted: number; failed: number; stopped?: string };
      expect(report).toMatchObject({ sent: 3000, accepted: 3000, failed: 0 });
      expect(report.stopped).toBeUndefined();
    } finally {
      await outage.catch(() => undefined);
      await again?.close();
    }
  }, 30_000);

  test('Ctrl-C while waiting out an outage ends the wait at once; the run reports what was sent, interrupted, and the records left as not accepted', async () => {
    const stopping = new RecordingBackend();
    const twin = await startFirehoseApi({ port: 0, backend: stopping });
    registerTwin(dataDir, { firehose: twin.url });
    let ended = false;
    const closed = (async () => {
      while (!ended && stopping.acknowledged.length < 300) await new Promise((resolve) => setTimeout(resolve, 20));
      await twin.close();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      process.emit('SIGINT', 'SIGINT');
    })();
    // An hour of --outage-wait: unless the Ctrl-C ends the pause, the run outlasts this test's timeout and fails it.
    const { code, stdout, stderr } = await sluice('put', 'app-events', '-n', '100000', '--rate', '1000/s', '--outage-wait', '1h',
      '--endpoint-firehose', twin.url, '--data-dir', dataDir, '--json').finally(() => (ended = true));
    await closed;
    const report = JSON.parse(stdout) as { sent: number; accepted: number; interrupted?: boolean; stopped?: string };
    expect(report.accepted).toBe(stopping.acknowledged.length);
    expect(report.interrupted).toBe(true);
    expect(report.stopped).toBeUndefined();
    // The interruption sets the exit status (a stop the user asked for), and the message says both.
    expect(code).toBe(130);
    const sent = report.sent.toLocaleString('en-US');
    expect(stderr).toMatch(new RegExp(`^sluice: interrupted \\(Ctrl-C\\) after [\\d.]+ m?s: ${sent} of 100,000 records sent; ${(report.sent - report.accepted).toLocaleString('en-US')} of ${sent} records were `
      + '(not accepted .*ECONNREFUSED|in calls cut off after they were sent \\(MaybeTaken ×\\d+\\): the stream may have taken them)'));
  }, 30_000);

  test('SLUICE_FIREHOSE_PORT, which `sluice local up` reads, points put at the same port', async () => {
    const saved = process.env.SLUICE_FIREHOSE_PORT;
    try {
      process.env.SLUICE_FIREHOSE_PORT = new URL(api.url).port;
      const { code } = await sluice('put', 'app-events', '--count', '2', '--data-dir', dataDir);
      expect(code).toBe(0);
      expect(backend.acknowledged).toHaveLength(2);

      // 0 lets `local up` pick a port; the other commands find it in the data dir's twin.json.
      process.env.SLUICE_FIREHOSE_PORT = '0';
      expect((await sluice('put', 'app-events', '--count', '3', '--data-dir', dataDir)).code).toBe(0);
      expect(backend.acknowledged).toHaveLength(5);
      const empty = tempDataDir();
      try {
        const zero = await sluice('put', 'app-events', '--data-dir', empty);
        expect(zero.code).toBe(2);
        expect(zero.stderr).toBe('sluice: SLUICE_FIREHOSE_PORT=0 lets `npx sluice local up` pick a free port, and no twin running on the data dir says which it took: start one, or give the port it printed with --endpoint-firehose http://127.0.0.1:<port>\n');
      } finally {
        fs.rmSync(empty, { recursive: true, force: true });
      }
      // A flag wins over the variable, and commands that do not send records never read it.
      expect((await put('app-events', '--count', '1')).code).toBe(0);
      expect((await sluice('query', 'SELECT 1 AS one', '--data-dir', dataDir, '--json')).stdout).toBe('[\n  {\n    "one": 1\n  }\n]\n');
    } finally {
      if (saved === undefined) delete process.env.SLUICE_FIREHOSE_PORT;
      else process.env.SLUICE_FIREHOSE_PORT = saved;
    }
  });

  test('--file sends each line exactly as written and says which records the transform will fail', async () => {
    const file = path.join(dataDir, 'records.ndjson');
    const good = (n: number) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-00000000000${n}`, user_id: `user-${n}`, event_type: 'login', timestamp: '2026-11-22T10:00:00Z' });
    const bad = JSON.stringify({ event_id: '6f1c2b9e-0000-4000-8000-000000000009', event_type: 'login', timestamp: '2026-11-22T10:00:00Z' });
    fs.writeFileSync(file, `${good(1)}\r\n${good(2)}\n\n${bad}\n${good(3)}`);
    const { code, stdout } = await put('app-events', '--file', file);
    expect(code).toBe(0);
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual([good(1), good(2), bad, good(3)]);
    expect(stdout).toMatch(/1 record will fail the transform and go to the dead-letter queue/);
    expect(stdout).toMatch(/×1 {2}schema \(required\): \/user_id is required/);
  });

  test('--file says how many blank lines it skipped, with or without --json; the line break ending the file is none', async () => {
    const file = path.join(dataDir, 'blanks.ndjson');
    const good = (n: number) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-00000000000${n}`, user_id: `user-${n}`, event_type: 'login', timestamp: '2026-11-22T10:00:00Z' });
    // Blank: empty, spaces, a tab, a lone CR (a CRLF file's empty line); 6 of them, before, between and after the records.
    fs.writeFileSync(file, `\n${good(1)}\n  \n\t\n${good(2)}\r\n\r\n${good(3)}\n\n\n`);
    const text = await put('app-events', '--file', file);
    expect(text.code).toBe(0);
    expect(backend.acknowledged.map((r) => r.data.toString())).toEqual([good(1), good(2), good(3)]);
    expect(text.stdout.split('\n').slice(0, 2)).toEqual([
      expect.stringMatching(/^app-events: 3 records → /),
      `  skipped 6 blank lines of --file ${file} (whitespace only, not sent)`,
    ]);
    const json = JSON.parse((await put('app-events', '--file', file, '--json')).stdout) as Record<string, unknown>;
    expect({ sent: json.sent, blankLinesSkipped: json.blankLinesSkipped }).toEqual({ sent: 3, blankLinesSkipped: 6 });
    // --count 2: the blank lines past the last record sent were not skipped, only never reached.
    const two = JSON.parse((await put('app-events', '--file', file, '--count', '2', '--json')).stdout) as Record<string, unknown>;
    expect({ sent: two.sent, blankLinesSkipped: two.blankLinesSkipped }).toEqual({ sent: 2, blankLinesSkipped: 3 });
    // None skipped: 0 for scripts, nothing said; generated records have no lines to skip.
    fs.writeFileSync(file, `${good(1)}\n${good(2)}\n`);
    expect(JSON.parse((await put('app-events', '--file', file, '--json')).stdout)).toEqual(expect.objectContaining({ sent: 2, blankLinesSkipped: 0 }));
    expect((await put('app-events', '--file', file)).stdout).not.toContain('blank line');
    expect(JSON.parse((await put('app-events', '--json')).stdout)).not.toHaveProperty('blankLinesSkipped');
  });

  test('--file names the lines of the records not accepted and of those that will fail the transform: the first 10, every one with --json', async () => {
    const file = path.join(dataDir, 'lines.ndjson');
    const record = (n: number, fields: Record<string, unknown> = {}) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-${String(n).padStart(12, '0')}`, user_id: `user-${n}`, event_type: 'login', timestamp: '2026-11-22T10:00:00Z', ...fields });
    const noType = (n: number) => record(n, { event_type: undefined });
    // Line numbers as an editor shows them: blank lines (empty, spaces, a CRLF file's empty line) count.
    const lines = [
      '', record(1), record(2, { user_id: undefined }), '  ', `${record(3)}\r`, '\r', record(4), record(5, { user_id: undefined }),
      ...Array.from({ length: 12 }, (_, k) => noType(100 + k)), record(6),
    ];
    fs.writeFileSync(file, `${lines.join('\n')}\n\n`);
    // Lines 5, 8 and 21 are refused at every attempt (8 fails the transform too: it is named only as not accepted);
    // line 7 only at the first, then accepted: not named.
    const refused = ['000000000003', '000000000005', '000000000006'];
    backend.decide = (data, call) => (refused.some((id) => data.includes(id)) || (call === 1 && data.includes('000000000004')) ? unavailable : { ok: true });
    const text = await put('app-events', '--file', file, '--max-attempts', '2');
    expect(text.code).toBe(1);
    expect(text.stdout.split('\n').slice(2)).toEqual([
      expect.stringMatching(/^ {2}accepted 15 · failed 3 · retried 4 · /),
      '  not accepted: ServiceUnavailableException ×3 (first: Slow down.)',
      '    (lines 5, 8, 21)',
      // The replay it suggests reads the same data dir (not the default one, where these dead letters are not).
      `  13 records will fail the transform and go to the dead-letter queue (\`npx sluice replay --data-dir ${dataDir}\`):`,
      '    ×12  schema (required): /event_type is required',
      '         (lines 9, 10, 11, 12, 13, 14, 15, 16, 17, 18 and 2 more)',
      '    ×1  schema (required): /user_id is required',
      '        (line 3)',
      '',
    ]);

    backend.reset();
    backend.decide = (data, call) => (refused.some((id) => data.includes(id)) || (call === 1 && data.includes('000000000004')) ? unavailable : { ok: true });
    const json = await put('app-events', '--file', file, '--max-attempts', '2', '--json');
    expect(json.code).toBe(1);
    const summary = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({
      failedByCode: { ServiceUnavailableException: 3 },
      willFailValidationByReason: { 'schema (required): /event_type is required': 12, 'schema (required): /user_id is required': 1 },
    });
    expect(summary.failedLinesByCode).toEqual({ ServiceUnavailableException: [5, 8, 21] });
    expect(summary.willFailValidationLinesByReason).toEqual({
      'schema (required): /event_type is required': Array.from({ length: 12 }, (_, k) => 9 + k),
      'schema (required): /user_id is required': [3],
    });

    // Generated records have no lines: no line numbers said, no such keys.
    backend.reset();
    backend.decide = (_data, _call, index) => (index === 0 ? unavailable : { ok: true });
    const generated = await put('app-events', '--count', '2', '--max-attempts', '1');
    expect(generated.stdout).toContain('not accepted: ServiceUnavailableException ×1');
    expect(generated.stdout).not.toContain('(line');
    const generatedJson = JSON.parse((await put('app-events', '--count', '2', '--max-attempts', '1', '--json')).stdout) as Record<string, unknown>;
    expect(generatedJson).not.toHaveProperty('failedLinesByCode');
    expect(generatedJson).not.toHaveProperty('willFailValidationLinesByReason');
  });

  test('standard input (--file -) names its lines as a file does', async () => {
    const record = (n: number, fields: Record<string, unknown> = {}) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-${String(n).padStart(12, '0')}`, user_id: `user-${n}`, event_type: 'login', timestamp: '2026-11-22T10:00:00Z', ...fields });
    backend.decide = (data) => (data.includes('000000000002') ? unavailable : { ok: true });
    const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), 'put', 'app-events', '--file', '-', '--max-attempts', '1', '--json',
      '--endpoint-firehose', api.url, '--data-dir', dataDir], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stdin.end(`${record(1)}\n\n${record(2)}\n${record(3, { user_id: undefined })}\n`);
    const code = await within(new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c))), 15_000, 'hung');
    if (code === 'hung') child.kill('SIGKILL');
    expect(code).toBe(1);
    expect(JSON.parse(stdout)).toMatchObject({
      failedLinesByCode: { ServiceUnavailableException: [3] },
      willFailValidationLinesByReason: { 'schema (required): /user_id is required': [4] },
      blankLinesSkipped: 1,
    });
  }, 30_000);

  test('what records and the endpoint put in the summary prints escaped, with or without --json; --json parses back to the exact values', async () => {
    const file = path.join(dataDir, 'hostile.ndjson');
    const key = 'x\u009b31m\u001b]0;pwned\u0007\u007f';
    const record = (n: number, extra: Record<string, unknown> = {}) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-00000000000${n}`, user_id: 'u', event_type: 'login', timestamp: '2026-11-22T10:00:00Z', ...extra });
    fs.writeFileSync(file, `${record(1)}\n${record(2, { [key]: 1 })}\n`);
    const code = 'Slow\u009b2J\u001b[2JDown';
    backend.decide = (_data, _call, index) => (index === 0 ? { ok: false, errorCode: code, errorMessage: 'no' } : { ok: true });
    // eslint-disable-next-line no-control-regex
    const terminalControl = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
    const text = await put('app-events', '--file', file, '--max-attempts', '1');
    expect(text.code).toBe(1);
    expect(text.stdout).not.toMatch(terminalControl);
    expect(text.stdout).toContain('not accepted: Slow\\u009b2J\\u001b[2JDown ×1 (first: no)');
    expect(text.stdout).toContain('/x\\u009b31m\\u001b]0;pwned\\u0007\\u007f is not a field of the schema');
    const json = await put('app-events', '--file', file, '--max-attempts', '1', '--json');
    expect(json.stdout).not.toMatch(terminalControl);
    const summary = JSON.parse(json.stdout) as { failedByCode: Record<string, number>; willFailValidationByReason: Record<string, number> };
    expect(summary.failedByCode).toEqual({ [code]: 1 });
    expect(Object.keys(summary.willFailValidationByReason)).toEqual([expect.stringContaining(`/${key} is not a field of the schema`)]);
  });

  test('records sharing an id are said so (each id is one record to verify), with or without --json', async () => {
    const file = path.join(dataDir, 'shared-ids.ndjson');
    const good = (n: number, user: number) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-00000000000${n}`, user_id: `user-${user}`, event_type: 'login', timestamp: '2026-11-22T10:00:00Z' });
    fs.writeFileSync(file, `${good(1, 1)}\n${good(1, 2)}\n${good(2, 3)}\n`);
    const text = await put('app-events', '--file', file);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('  note: the 3 records that pass the schema carry 2 distinct event_id values (from the field\'s examples, or repeated in the input)\n');
    expect(JSON.parse((await put('app-events', '--file', file, '--json')).stdout)).toEqual(expect.objectContaining({ sent: 3, distinctIds: 2 }));
    // Distinct ids: nothing said.
    fs.writeFileSync(file, `${good(1, 1)}\n${good(2, 2)}\n`);
    expect((await put('app-events', '--file', file)).stdout).not.toContain('distinct');
    expect(JSON.parse((await put('app-events', '--file', file, '--json')).stdout)).not.toHaveProperty('distinctIds');
  });

  test('--file that cannot be read or holds no records: a clear error, exit 2, nothing sent', async () => {
    const blank = path.join(dataDir, 'blank.ndjson');
    fs.writeFileSync(blank, '\n  \r\n\n');
    const cases: Array<[string, string]> = [
      [path.join(dataDir, 'nope.ndjson'), 'no such file'],
      [dataDir, 'it is a directory'],
    ];
    for (const [file, why] of cases) {
      const { code, stderr } = await put('app-events', '--file', file);
      expect({ code, stderr }).toEqual({ code: 2, stderr: `sluice: cannot read --file ${file}: ${why}\n` });
    }
    const { code, stderr } = await put('app-events', '--file', blank);
    expect({ code, stderr }).toEqual({ code: 2, stderr: `sluice: --file ${blank} has no records, only 3 blank lines: expected one JSON object per line\n` });
    const empty = path.join(dataDir, 'empty.ndjson');
    fs.writeFileSync(empty, '');
    expect(await put('app-events', '--file', empty)).toEqual(expect.objectContaining({ code: 2, stderr: `sluice: --file ${empty} has no records: expected one JSON object per line\n` }));
    expect(backend.calls).toBe(0);
  });

  test('--file lines that straddle a read (a character split across it, bytes that are not UTF-8) are sent byte for byte', async () => {
    const file = path.join(dataDir, 'straddle.ndjson');
    const record = (n: number, user: string) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-${String(n).padStart(12, '0')}`, user_id: user, event_type: 'login', timestamp: '2026-11-22T10:00:00Z' });
    // Small lines up to just before the first 1 MiB read ends, then a line whose first "é" (2 bytes) falls across it.
    const lines: Buffer[] = [];
    let bytes = 0;
    for (let n = 1; bytes < (1 << 20) - 600; n++) {
      const line = Buffer.from(`${record(n, 'u')}\n`);
      lines.push(line);
      bytes += line.length;
    }
    const split = Buffer.from(`${record(900_001, 'é🙂'.repeat(10))}\n`);
    // A line indented to put the first "é" on the read's last byte (JSON takes the spaces).
    const pad = (1 << 20) - 1 - bytes - split.indexOf(Buffer.from('é'));
    const padded = record(900_000, 'u');
    lines.push(Buffer.from(`${' '.repeat(pad - padded.length - 1)}${padded}\n`));
    const notUtf8 = Buffer.concat([Buffer.from('{"event_id":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}\r\n')]);
    fs.writeFileSync(file, Buffer.concat([...lines, split, notUtf8]));
    const { code, stdout } = await put('app-events', '--file', file, '--json');
    expect(code).toBe(0);
    const sent = backend.acknowledged.map((r) => r.data);
    expect(sent).toHaveLength(lines.length + 2);
    expect(sent[lines.length].equals(split.subarray(0, split.length - 1))).toBe(true);
    expect(sent[lines.length + 1].equals(notUtf8.subarray(0, notUtf8.length - 2))).toBe(true);
    expect(Buffer.concat([...lines, split]).indexOf(Buffer.from('é'))).toBe((1 << 20) - 1);
    // Only the line that is not UTF-8 fails the transform.
    expect(JSON.parse(stdout)).toMatchObject({ sent: lines.length + 2, accepted: lines.length + 2, willFailValidation: 1 });
  }, 30_000);

  test('--file with more reasons to fail than the list shows: says how many records and reasons are left out', async () => {
    const file = path.join(dataDir, 'records.ndjson');
    const base = { event_id: '6f1c2b9e-0000-4000-8000-000000000001', user_id: 'user-1', event_type: 'login', timestamp: '2026-11-22T10:00:00Z' };
    const { user_id: _u, ...noUser } = base;
    const { event_type: _e, ...noType } = base;
    const { timestamp: _t, ...noTime } = base;
    const bad = [
      ...Array.from({ length: 4 }, () => noUser), ...Array.from({ length: 3 }, () => noType), noTime, noTime,
      { ...base, user_id: 7 }, { ...base, event_type: 'x'.repeat(300) }, { ...base, timestamp: 'yesterday' }, { ...base, event_id: 'not-a-uuid' },
    ];
    fs.writeFileSync(file, bad.map((r) => JSON.stringify(r)).join('\n'));
    const { stdout } = await put('app-events', '--file', file, '--json');
    const reasons = (JSON.parse(stdout) as { willFailValidationByReason: Record<string, number> }).willFailValidationByReason;
    const counts = Object.values(reasons).sort((a, b) => b - a);
    expect(counts.length).toBeGreaterThan(5);

    const text = (await put('app-events', '--file', file)).stdout;
    expect(text).toMatch(new RegExp(`\\n {2}${bad.length} records will fail the transform`));
    const listed = [...text.matchAll(/\n {4}×(\d+) {2}/g)].map((m) => Number(m[1]));
    expect(listed).toEqual(counts.slice(0, 5));
    const rest = counts.slice(5);
    expect(text).toContain(`    … and ${rest.reduce((a, b) => a + b, 0)} more record${rest.reduce((a, b) => a + b, 0) === 1 ? '' : 's'} for ${rest.length} other reason${rest.length === 1 ? '' : 's'} (--json lists every reason)`);
  });

  test('--rate paces the records; --duration keeps sending for that long', async () => {
    let started = Date.now();
    expect((await put('app-events', '--count', '30', '--rate', '60/s')).code).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    expect(backend.acknowledged).toHaveLength(30);

    // 3 s at 10/s: 30 records, one at once and then one each 100 ms. Sending ends at the deadline, so a machine that
    // stalls across it (a busy one, for a few hundred ms) sends fewer: at least 20 leaves it a second, where 1 s at 20/s
    // left it 200 ms. However slow the machine, no record comes before its time.
    backend.reset();
    const arrivals: number[] = [];
    backend.onIngest = async (_stream, records) => {
      for (let i = 0; i < records.length; i++) arrivals.push(Date.now());
    };
    started = Date.now();
    const { code, stdout } = await put('app-events', '--duration', '3s', '--rate', '10');
    expect(code).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    expect(backend.acknowledged.length).toBeGreaterThanOrEqual(20);
    expect(backend.acknowledged.length).toBeLessThanOrEqual(31);
    const early = arrivals.map((at, k) => ({ record: k, afterMs: at - started })).filter(({ record, afterMs }) => afterMs < record * 100);
    expect(early).toEqual([]);
    expect(stdout).toMatch(/records\/s\)/);
  });

  test.each([['back', -3_600_000], ['forward', 3_600_000]])('--rate and --duration keep their pace when the wall clock is set %s an hour mid-run', async (_way, step) => {
    const realNow = Date.now.bind(Date);
    let stepped = 0;
    const clock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + stepped);
    const arrivals: number[] = [];
    backend.onIngest = async (_stream, records) => {
      for (let i = 0; i < records.length; i++) arrivals.push(performance.now());
      stepped = step;
    };
    try {
      const started = performance.now();
      const { code } = await put('app-events', '--duration', '2s', '--rate', '10');
      expect(code).toBe(0);
      // Set back, the run waited for the hour; set forward, it ended at once, or sent the rest at once.
      expect(performance.now() - started).toBeGreaterThanOrEqual(1900);
      expect(performance.now() - started).toBeLessThan(10_000);
      expect(backend.acknowledged.length).toBeGreaterThanOrEqual(10);
      const early = arrivals.map((at, k) => ({ record: k, afterMs: at - started })).filter(({ record, afterMs }) => afterMs < record * 100);
      expect(early).toEqual([]);
    } finally {
      clock.mockRestore();
    }
  }, 20_000);

  test('Ctrl-C during --duration: says it was interrupted, how long into the run and what was sent; no PASS; exit 130', async () => {
    backend.onIngest = async (_stream, records) => {
      await deliverToLake(dataDir, 'app-events', records);
    };
    // The SIGINT sent when records flow.
    const { child, output, exited } = spawnPut('app-events', '--duration', '30s', '--rate', '50', '--verify');
    while (backend.acknowledged.length < 20) await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill('SIGINT');
    const { code } = await exited;
    const { stdout, stderr } = output;
    const sent = backend.acknowledged.length;
    // The call in flight as the signal came delivers to the lake (DuckDB): on a loaded machine it may take over a second,
    // and put then says it waits for it.
    expect(stderr).toMatch(new RegExp(`^(sluice: stopping once the call in flight is answered; Ctrl-C again to quit at once\n)?sluice: interrupted \\(Ctrl-C\\) after [\\d.]+ m?s of 30 s: ${sent} records sent\n$`));
    expect(stdout).toMatch(new RegExp(`accepted ${sent} · failed 0`));
    expect(stdout).toMatch(new RegExp(`^verified: ${sent} of ${sent} records sent before Ctrl-C queryable after`, 'm'));
    expect(stdout).not.toMatch(/PASS/);
    expect(code).toBe(130);
  }, 60_000);

  test('SIGTERM during --duration (twice at once, as GNU timeout sends it) is taken as Ctrl-C is: the run reports what was sent and verifies it; exit 143', async () => {
    backend.onIngest = async (_stream, records) => {
      await deliverToLake(dataDir, 'app-events', records);
    };
    const { child, output, exited } = spawnPut('app-events', '--duration', '30s', '--rate', '50', '--verify');
    while (backend.acknowledged.length < 20) await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill('SIGTERM');
    child.kill('SIGTERM');
    const { code } = await exited;
    const { stdout, stderr } = output;
    const sent = backend.acknowledged.length;
    expect(stderr).toMatch(new RegExp(`^sluice: interrupted \\(SIGTERM\\) after [\\d.]+ m?s of 30 s: ${sent} records sent\n$`));
    expect(stdout).toMatch(new RegExp(`accepted ${sent} · failed 0`));
    expect(stdout).toMatch(new RegExp(`^verified: ${sent} of ${sent} records sent before SIGTERM queryable after`, 'm'));
    expect(code).toBe(143);
  }, 60_000);

  test('SIGTERM while --verify waits ends the wait, unverified (exit 143); a second SIGTERM later than a repeat ends the process at once', async () => {
    backend.onIngest = () => new Promise((resolve) => setTimeout(resolve, 200));
    const { child, output, exited } = spawnPut('app-events', '--count', '5', '--verify', '--timeout', '60s');
    for (const until = Date.now() + 20_000; !/accepted 5 · failed 0/.test(output.stdout) && Date.now() < until;) await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 500));
    child.kill('SIGTERM');
    expect((await exited).code).toBe(143);
    expect(output.stderr).toMatch(/^sluice: interrupted \(SIGTERM\) while verifying, after [\d.]+ m?s: 5 records sent, 5 accepted, not verified \(queryable so far: 0\/5 in lake \(sluice_dev\.app_events\)\)\n$/);
    expect(output.stdout).toMatch(/when SIGTERM stopped the wait$/m);

    // A call that hangs: the first SIGTERM waits for it; one more than 2 s later quits at once, by the signal.
    const file = path.join(dataDir, 'records.ndjson');
    fs.writeFileSync(file, `${JSON.stringify({ event_id: '6f1c2b9e-0000-4000-8000-000000000001', user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() })}\n`);
    const hanging = spawnPut('app-events', '--file', file);
    let release: () => void = () => undefined;
    backend.onIngest = () => new Promise<void>((resolve) => {
      release = resolve;
      hanging.child.kill('SIGTERM');
    });
    try {
      for (const until = Date.now() + 20_000; !hanging.output.stderr.includes('SIGTERM again') && Date.now() < until;) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(hanging.output.stderr).toBe('sluice: stopping once the call in flight is answered; SIGTERM again to quit at once\n');
      await new Promise((resolve) => setTimeout(resolve, 2_200));
      hanging.child.kill('SIGTERM');
      expect((await hanging.exited).signal).toBe('SIGTERM');
    } finally {
      release();
    }
  }, 60_000);

  test('Ctrl-C while --verify waits: what was sent, and that it was not verified, in one sluice: line; no PASS or FAIL; exit 130', async () => {
    // Records that never land in the lake: verifying waits (up to --timeout) for them. Sending takes a while, so a
    // time counted from the end of sending would differ from one counted from the first record sent.
    backend.onIngest = () => new Promise((resolve) => setTimeout(resolve, 700));
    const { child, output, exited } = spawnPut('app-events', '--count', '5', '--verify', '--timeout', '60s');
    // The summary is printed once sending is done; verifying starts then.
    for (const until = Date.now() + 20_000; !/accepted 5 · failed 0/.test(output.stdout) && Date.now() < until;) await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    child.kill('SIGINT');
    expect((await exited).code).toBe(130);
    const { stdout, stderr } = output;
    expect(stderr).toMatch(/^sluice: interrupted \(Ctrl-C\) while verifying, after [\d.]+ m?s: 5 records sent, 5 accepted, not verified \(queryable so far: 0\/5 in lake \(sluice_dev\.app_events\)\)\n$/);
    expect(stdout).toMatch(/^ {2}verify lake \(sluice_dev\.app_events\): 0\/5 after [\d.]+ m?s when Ctrl-C stopped the wait$/m);
    expect(stdout).not.toMatch(/PASS|FAIL/);
    // One time, in both lines: from the first record sent to when Ctrl-C stopped the wait.
    const verifyLine = /verify lake \S+: 0\/5 after ([\d.]+ m?s)/.exec(stdout)?.[1];
    expect(verifyLine).toBeDefined();
    expect(/while verifying, after ([\d.]+ m?s):/.exec(stderr)?.[1]).toBe(verifyLine);
  }, 60_000);

  test('Ctrl-C during the last batch of a --file interrupted nothing: every record sent, exit 0, not 130', async () => {
    const file = path.join(dataDir, 'records.ndjson');
    const record = (n: number) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-00000000000${n}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() });
    fs.writeFileSync(file, `${record(1)}\n${record(2)}\n${record(3)}\n`);
    const { child, output, exited } = spawnPut('app-events', '--file', file);
    // The SIGINT arrives while the file's one and only call is in flight.
    backend.onIngest = async () => {
      child.kill('SIGINT');
      await new Promise((resolve) => setTimeout(resolve, 300));
    };
    const { code } = await exited;
    expect(backend.acknowledged).toHaveLength(3);
    expect(output.stderr).toBe('');
    expect(code).toBe(0);
  }, 60_000);

  test('Ctrl-C during the last batch with --verify: nothing is left to send, so it ends the wait before it starts; exit 130, not a PASS', async () => {
    const file = path.join(dataDir, 'records.ndjson');
    const record = (n: number) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-00000000000${n}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() });
    fs.writeFileSync(file, `${record(1)}\n${record(2)}\n${record(3)}\n`);
    const { child, output, exited } = spawnPut('app-events', '--file', file, '--verify', '--timeout', '60s');
    // The records land in the lake (a verify would pass at its first check) and the SIGINT arrives while the file's
    // one and only call is in flight; the call is answered once put has taken it (its note says it waits for the call).
    backend.onIngest = async (_stream, records) => {
      await deliverToLake(dataDir, 'app-events', records);
      child.kill('SIGINT');
      for (const until = Date.now() + 20_000; !output.stderr.includes('Ctrl-C again') && Date.now() < until;) await new Promise((resolve) => setTimeout(resolve, 50));
    };
    const { code } = await exited;
    const { stdout, stderr } = output;
    expect(backend.acknowledged).toHaveLength(3);
    expect(stdout).toMatch(/accepted 3 · failed 0/);
    expect(stdout).not.toMatch(/PASS|FAIL|verify lake/);
    expect(stderr).toMatch(/^sluice: stopping once the call in flight is answered; Ctrl-C again to quit at once\nsluice: interrupted \(Ctrl-C\) during the last call, after [\d.]+ m?s: 3 records sent, 3 accepted, not verified\n$/);
    expect(code).toBe(130);
  }, 60_000);

  test('Ctrl-C while a call hangs: a note says it waits for that call and how to quit; a second Ctrl-C quits at once', async () => {
    const file = path.join(dataDir, 'records.ndjson');
    const record = (n: number) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-00000000000${n}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() });
    fs.writeFileSync(file, `${record(1)}\n${record(2)}\n`);
    const { child, output, exited } = spawnPut('app-events', '--file', file, '--batch-size', '1');
    // The first call hangs (an endpoint that stopped answering).
    let release: () => void = () => undefined;
    backend.onIngest = () => new Promise<void>((resolve) => {
      release = resolve;
      child.kill('SIGINT');
    });
    try {
      for (const until = Date.now() + 20_000; !output.stderr.includes('Ctrl-C again') && Date.now() < until;) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(output.stderr).toBe('sluice: stopping once the call in flight is answered; Ctrl-C again to quit at once\n');
      child.kill('SIGINT');
      expect((await exited).signal).toBe('SIGINT');
    } finally {
      release();
    }
  }, 60_000);

  test('--file with a line too long to be a record (no line break for 16 MiB): the lines before it are sent and summed up, then a clear error', async () => {
    const file = path.join(dataDir, 'long-line.ndjson');
    const record = (n: number) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-00000000000${n}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() });
    fs.writeFileSync(file, `${record(1)}\n${record(2)}\n${record(3)}\n${'x'.repeat(17 * 1024 * 1024)}`);
    const error = `sluice: --file ${file}: line 4 is longer than 16 MiB with no line break yet; records are at most 1 MiB, one per line. The 3 records before it were sent (3 accepted); nothing after it was\n`;
    const { code, stdout, stderr } = await put('app-events', '--file', file);
    expect(backend.acknowledged).toHaveLength(3);
    expect(stderr).toBe(error);
    expect(code).toBe(2);
    // The summary of any run that ends early (an endpoint gone, Ctrl-C): what was sent until then.
    expect(stdout).toMatch(/^app-events: 3 records → Firehose delivery stream sluice-dev-app-events-lake/);
    expect(stdout).toMatch(/accepted 3 · failed 0 · retried 0/);
    // --json: the document, with why sending stopped; --verify is skipped, as for a run an outage stopped.
    const json = await put('app-events', '--file', file, '--json', '--verify');
    expect({ code: json.code, stderr: json.stderr }).toEqual({ code: 2, stderr: error });
    const report = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({ sent: 3, accepted: 3, failed: 0, stopped: expect.stringMatching(/^--file .*: line 4 is longer than 16 MiB/) });
    expect(report.verify).toBeUndefined();
    // Such a line first: nothing to send, nothing to sum up.
    backend.reset();
    fs.writeFileSync(file, 'y'.repeat(17 * 1024 * 1024));
    const first = await put('app-events', '--file', file);
    expect(first.stderr).toBe(`sluice: --file ${file}: line 1 is longer than 16 MiB with no line break yet; records are at most 1 MiB, one per line\n`);
    expect(first.stdout).toBe('');
    expect(first.code).toBe(2);
    expect(backend.calls).toBe(0);
  }, 60_000);

  test('--file - --count N on standard input that does not end (a producer piped in): sends N records and exits', async () => {
    const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), 'put', 'app-events', '--file', '-', '--count', '5',
      '--endpoint-firehose', api.url, '--data-dir', dataDir], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.stdin.on('error', () => undefined); // EPIPE once it has exited
    let n = 0;
    const line = () => `${JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-${String(++n).padStart(12, '0')}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() })}\n`;
    const producer = setInterval(() => child.stdin.write(Array.from({ length: 20 }, line).join('')), 20);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const code = await within(exited, 20_000, 'hung');
    clearInterval(producer);
    if (code === 'hung') child.kill('SIGKILL');
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(backend.acknowledged).toHaveLength(5);
  }, 60_000);

  test('--json: one JSON document on stdout; --progress writes to stderr only', async () => {
    const { code, stdout } = await put('app-events', '--count', '5', '--json', '--progress');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as Record<string, unknown>;
    expect(report).toMatchObject({ pipeline: 'app-events', sent: 5, accepted: 5, failed: 0, entryPoint: { kind: 'firehose', name: 'sluice-dev-app-events-lake' } });
  });

  test('usage mistakes exit 2 with the flag named', async () => {
    expect((await put('app-events', '--rate', 'fast')).stderr).toMatch(/--rate "fast": expected records per second/);
    expect((await put('app-events', '--count', '0')).code).toBe(2);
    expect((await put('app-events', '--file', 'x.ndjson', '--duration', '1m')).stderr).toMatch(/--duration generates records/);
    expect((await put('app-events', '--timeout', '1m')).stderr).toMatch(/--timeout and --poll apply to --verify/);
    const unknown = await put('orders');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown pipeline "orders"; configured pipelines: clickstream, iot, transactions, app-events/);
    expect(backend.calls).toBe(0);
  });
});

describe('sluice put sends only to the twin running on its data dir', () => {
  /** A Firehose endpoint that says it serves `servedDir`, as the twin's does. */
  const twinServing = (servedDir: string) => startFirehoseApi({ port: 0, backend, headers: { [TWIN_DATA_DIR_HEADER]: encodeURIComponent(servedDir) } });

  test('a pipeline configured since the twin started (its twin.json does not list it): exit 2 saying to restart the twin, nothing sent', async () => {
    const { 'app-events': _started, ...without } = Object.fromEntries(Object.keys(config.pipelines).map((p) => [p, schemaFingerprint(p)]));
    registerTwin(dataDir, { firehose: api.url }, { startedAt: '2026-11-22T08:05:00.000Z', schemas: without });
    const { code, stdout, stderr } = await put('app-events', '--verify');
    expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
    expect(stderr).toMatch(new RegExp(`^sluice: the twin at \\S+ \\(pid ${process.pid}, started 2026-11-2[12] \\d\\d:\\d\\d:00\\) was started without app-events \\(its pipelines: clickstream, iot, transactions\\): nothing was sent\\. Restart it \\(\`npx sluice local up --data-dir ${escapeRegExp(dataDir)}\`\\) to run the configuration as it is now\\n$`));
    expect(backend.calls).toBe(0);
  });

  test('the twin validates with an older generated validator than `npm run generate` wrote since: exit 2 saying so, as replay does, nothing sent', async () => {
    const loaded = { sha256: 'the validator before the edit', generatedAt: '2026-11-22T08:00:00.000Z', version: '1.0.0' };
    registerTwin(dataDir, { firehose: api.url }, { startedAt: '2026-11-22T08:05:00.000Z', schemas: { 'app-events': loaded } });
    const { code, stdout, stderr } = await put('app-events', '--verify');
    expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
    expect(stderr).toMatch(new RegExp(`^sluice: the twin at \\S+ \\(pid ${process.pid}, started 2026-11-2[12] \\d\\d:\\d\\d:00\\) validates app-events with the schema generated 2026-11-2[12] \\d\\d:\\d\\d:00; \`npm run generate\` has written a newer one since \\(\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\), so records of the schema now could fail there: nothing was sent\\. Restart the twin \\(\`npx sluice local up --data-dir ${escapeRegExp(dataDir)}\`\\) to run the schema as it is now\\n$`));
    expect(backend.calls).toBe(0);
    // A twin that loaded the validator as it is now takes them.
    registerTwin(dataDir, { firehose: api.url });
    expect((await put('app-events', '--count', '2')).code).toBe(0);
  });

  test('the twin answering on the port runs on another data dir: exit 2 naming it, nothing sent', async () => {
    const other = tempDataDir();
    const twin = await twinServing(other);
    try {
      const { code, stdout, stderr } = await sluice('put', 'app-events', '--verify', '--timeout', '5s', '--endpoint-firehose', twin.url, '--data-dir', dataDir);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr).toBe(`sluice: the twin answering at ${twin.url} runs on data dir ${other}, not ${dataDir}: nothing was sent. Pass --data-dir ${other} to send to it, or start a twin on ${dataDir} on other ports (\`npx sluice local up --data-dir ${dataDir} --firehose-port … --kinesis-port … --dynamo-port …\`) and point --endpoint-firehose at it\n`);
      expect(backend.calls).toBe(0);

      // The same twin, told its own data dir: it takes the records (its word is enough without twin.json).
      fs.rmSync(path.join(dataDir, 'twin.json'));
      expect((await sluice('put', 'app-events', '--count', '2', '--endpoint-firehose', twin.url, '--data-dir', other)).code).toBe(0);
      expect(backend.acknowledged).toHaveLength(2);
    } finally {
      await twin.close();
      fs.rmSync(other, { recursive: true, force: true });
    }
  });

  test('a twin that names its data dir differently (a bind mount, another letter case) but carries the id in the data dir\'s twin.json takes the records', async () => {
    const twinId = 'b7f3c1d2-twin-id';
    const elsewhere = '/mnt/container/sluice-data';
    const twin = await startFirehoseApi({ port: 0, backend, headers: { [TWIN_DATA_DIR_HEADER]: encodeURIComponent(elsewhere), [TWIN_ID_HEADER]: twinId } });
    try {
      registerTwin(dataDir, { firehose: twin.url }, { twinId });
      const taken = await sluice('put', 'app-events', '--count', '2', '--endpoint-firehose', twin.url, '--data-dir', dataDir);
      expect(taken.stderr).toBe('');
      expect(taken.code).toBe(0);
      expect(backend.acknowledged).toHaveLength(2);

      // The same with a pid that is not this machine's (the twin runs in a container): its id still says it is the one.
      registerTwin(dataDir, { firehose: twin.url }, { twinId, pid: 4_000_000 });
      const contained = await sluice('put', 'app-events', '--count', '2', '--endpoint-firehose', twin.url, '--data-dir', dataDir);
      expect(contained.stderr).toBe('');
      expect(contained.code).toBe(0);
      expect(backend.acknowledged).toHaveLength(4);

      // Another twin's id: the paths decide, and they differ.
      registerTwin(dataDir, { firehose: twin.url }, { twinId: 'another-twin' });
      const refused = await sluice('put', 'app-events', '--count', '2', '--endpoint-firehose', twin.url, '--data-dir', dataDir);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(new RegExp(`^sluice: the twin answering at ${escapeRegExp(twin.url)} runs on data dir ${escapeRegExp(elsewhere)}, not `));
      expect(backend.acknowledged).toHaveLength(4);
    } finally {
      await twin.close();
    }
  });

  test('a data dir that does not exist: exit 2 before anything is sent, naming the twin that answers', async () => {
    const missing = path.join(dataDir, 'nonexistent');
    const twin = await twinServing(dataDir);
    try {
      const { code, stdout, stderr } = await sluice('put', 'app-events', '--verify', '--endpoint-firehose', twin.url, '--data-dir', missing);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr).toMatch(new RegExp(`^sluice: no twin data dir at ${escapeRegExp(missing)}: nothing was sent; the twin answering at ${escapeRegExp(twin.url)} runs on ${escapeRegExp(dataDir)}: pass --data-dir ${escapeRegExp(dataDir)} to send to it, or start a twin there with \`npx sluice local up --data-dir .+\`\n$`));
      expect(backend.calls).toBe(0);
    } finally {
      await twin.close();
    }
  });

  test('a data dir that is a file: exit 2, saying so, rather than suggesting a twin be started on it', async () => {
    const file = path.join(dataDir, 'not-a-dir');
    fs.writeFileSync(file, 'x');
    const twin = await twinServing(dataDir);
    try {
      const { code, stdout, stderr } = await sluice('put', 'app-events', '--verify', '--endpoint-firehose', twin.url, '--data-dir', file);
      expect([code, stdout]).toEqual([2, '']);
      expect(stderr).toBe(`sluice: the data dir ${file} is not a directory: pass the twin's data dir (the one \`npx sluice local up\` uses) with --data-dir or SLUICE_DATA_DIR\n`);
      expect(backend.calls).toBe(0);
    } finally {
      await twin.close();
    }
  });

  test('no twin runs on the data dir (no twin.json, or its twin has exited) and the endpoint does not say whose it is: exit 2, nothing sent', async () => {
    fs.rmSync(path.join(dataDir, 'twin.json'));
    const none = await put('app-events');
    expect(none.code).toBe(2);
    expect(none.stderr).toBe(`sluice: no twin runs on data dir ${dataDir} (no twin.json of a running twin there): nothing was sent; start one with \`npx sluice local up --data-dir ${dataDir}\`; what answers at ${api.url} does not say which data dir it serves (a twin from an older Sluice? restart it)\n`);

    fs.writeFileSync(path.join(dataDir, 'twin.json'), '{"pid": 1, "endpoints": '); // cut short: no twin's word
    const garbled = await put('app-events');
    expect(garbled.code).toBe(2);
    expect(garbled.stderr).toMatch(/^sluice: no twin runs on data dir /);

    registerTwin(dataDir, { firehose: api.url }, { pid: 2_147_483_646 }); // no such process
    const exited = await put('app-events');
    expect(exited.code).toBe(2);
    expect(exited.stderr).toMatch(/^sluice: no twin runs on data dir /);
    expect(backend.calls).toBe(0);
  });

  test('a twin still starting (its twin.pid there, no twin.json yet): try again once it prints its endpoints, nothing sent', async () => {
    fs.rmSync(path.join(dataDir, 'twin.json'));
    fs.writeFileSync(path.join(dataDir, 'twin.pid'), `${process.pid}\n`);
    const starting = await sluice('put', 'iot', '--endpoint-kinesis', 'http://127.0.0.1:9', '--data-dir', dataDir);
    expect(starting.code).toBe(2);
    expect(starting.stderr).toBe(`sluice: the twin on data dir ${dataDir} (pid ${process.pid}) has not said where it takes records yet: nothing was sent. `
      + 'Try again once it prints its endpoints (a twin from an older Sluice never says: restart it)\n');
    expect(backend.calls).toBe(0);
  });

  test('a running twin (its twin.pid held) whose twin.json is cut short or a folder: the file and the restart are named, not "no twin runs"; nothing sent', async () => {
    const record = path.join(dataDir, 'twin.json');
    fs.writeFileSync(path.join(dataDir, 'twin.pid'), `${process.pid}\n`);
    const restart = `: nothing was done. Restart the twin (Ctrl-C where it runs, or \`kill ${process.pid}\`: it flushes, then exits; it writes the file again when it starts)\n`;
    try {
      fs.writeFileSync(record, '{"pid": 1, "endpoints": ');
      for (const pipeline of ['app-events', 'iot']) {
        const cut = await sluice('put', pipeline, '--data-dir', dataDir);
        expect([cut.code, cut.stderr]).toEqual([2, `sluice: the twin running on ${dataDir} (pid ${process.pid}) says where it listens in ${record}, which is not JSON (cut short, or edited by hand)${restart}`]);
      }
      fs.rmSync(record);
      fs.mkdirSync(record);
      const folder = await sluice('put', 'app-events', '--data-dir', dataDir);
      // The start refuses a folder there (and the stop leaves it): it must go before the twin starts again.
      expect([folder.code, folder.stderr]).toEqual([2, `sluice: the twin running on ${dataDir} (pid ${process.pid}) says where it listens in ${record}, which is a folder: nothing was done. `
        + `Restart the twin (Ctrl-C where it runs, or \`kill ${process.pid}\`: it flushes, then exits; move the folder away before you start it again, and it writes the file again when it starts)\n`]);
      expect(backend.calls).toBe(0);
    } finally {
      fs.rmSync(record, { recursive: true, force: true });
      fs.rmSync(path.join(dataDir, 'twin.pid'), { force: true });
    }
  });

  test('the data dir\'s twin listens on other ports: exit 2 with the endpoint to use', async () => {
    const port = await freePort();
    registerTwin(dataDir, { firehose: `http://127.0.0.1:${port}` });
    const firehose = await put('app-events');
    expect(firehose.code).toBe(2);
    expect(firehose.stderr).toBe(`sluice: the twin on data dir ${dataDir} (pid ${process.pid}) takes Firehose records at http://127.0.0.1:${port}, not ${api.url}: nothing was sent. Pass --endpoint-firehose http://127.0.0.1:${port}\n`);
    expect(backend.calls).toBe(0);

    // A Kinesis-sourced pipeline: its stream is at the twin's kinesis-mock.
    registerTwin(dataDir, { firehose: api.url, kinesis: `http://127.0.0.1:${port}` });
    const kinesis = await sluice('put', 'iot', '--endpoint-kinesis', 'http://127.0.0.1:9', '--data-dir', dataDir);
    expect(kinesis.code).toBe(2);
    expect(kinesis.stderr).toBe(`sluice: the twin on data dir ${dataDir} (pid ${process.pid}) takes Kinesis records at http://127.0.0.1:${port}, not http://127.0.0.1:9: nothing was sent. Pass --endpoint-kinesis http://127.0.0.1:${port}\n`);
  });

  test('with no endpoint flag or port variable, put goes where the data dir\'s twin says it listens (a twin started on other ports)', async () => {
    const saved = process.env.SLUICE_FIREHOSE_PORT;
    delete process.env.SLUICE_FIREHOSE_PORT;
    try {
      registerTwin(dataDir, { firehose: api.url });
      expect(new URL(api.url).port).not.toBe('4573');
      const { code, stderr } = await sluice('put', 'app-events', '--count', '3', '--data-dir', dataDir);
      expect(stderr).toBe('');
      expect(code).toBe(0);
      expect(backend.acknowledged).toHaveLength(3);
    } finally {
      if (saved !== undefined) process.env.SLUICE_FIREHOSE_PORT = saved;
    }
  });

  test('the twin runs another env than -c names: exit 2 before sending, not a verify that waits for a bucket the data dir does not have', async () => {
    const { code, stdout, stderr } = await put('app-events', '-c', 'env=prod', '--verify');
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toBe(`sluice: the twin on data dir ${dataDir} runs env dev (its streams and bucket are named sluice-dev-…), not env prod (sluice-prod-…) as this command's configuration has it: nothing was sent. Drop the -c override, or run a twin for env prod on its own data dir and ports (\`npx sluice local up -c env=prod --data-dir …\`)\n`);
    expect(backend.calls).toBe(0);
  });
});

describe('sluice put: a twin with other resource names', () => {
  test('-c prefix=… on a twin of another prefix: the message names the prefix, not an env both share', async () => {
    const { code, stderr } = await put('app-events', '-c', 'prefix=other');
    expect(code).toBe(2);
    expect(stderr).not.toMatch(/not env dev/);
    expect(stderr).toBe(`sluice: the twin on data dir ${dataDir} runs prefix sluice (its streams and bucket are named sluice-dev-…), not prefix other (other-dev-…) as this command's configuration has it: nothing was sent. Drop the -c override, or run a twin for prefix other on its own data dir and ports (\`npx sluice local up -c prefix=other --data-dir …\`)\n`);
    expect(backend.calls).toBe(0);
  });

  test('-c pipelines.<p>.source=… other than the running twin\'s: the message names the source (it said "not found" for a stream the twin never made)', async () => {
    const { code, stderr } = await put('app-events', '-c', 'pipelines.app-events.source=kinesis');
    expect(stderr).toBe(`sluice: the twin on data dir ${dataDir} runs pipeline app-events with source direct-put, not kinesis as this command's configuration has it: nothing was sent. Drop the -c override, or run a twin with it on its own data dir and ports (\`npx sluice local up -c pipelines.app-events.source=kinesis --data-dir …\`)\n`);
    expect(code).toBe(2);
    expect(backend.calls).toBe(0);
    // A twin from an older Sluice does not say its sources: nothing to compare, the send goes ahead as before.
    registerTwin(dataDir, { firehose: api.url }, { sources: undefined });
    expect((await put('app-events', '-c', 'pipelines.app-events.source=kinesis')).stderr).not.toMatch(/runs pipeline app-events with source/);
  });
});

describe('sluice put --verify (twin lake through DuckDB)', () => {
  test('PASS with the counts and the time it took once every record is a Parquet row', async () => {
    backend.onIngest = async (_stream, records) => {
      await deliverToLake(dataDir, 'app-events', records);
    };
    const { code, stdout, stderr } = await put('app-events', '--count', '12', '--verify');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/verify lake \(sluice_dev\.app_events\): 12\/12 after \d/);
    expect(stdout).toMatch(/PASS: 12 of 12 records queryable after \d/);
  });

  test('records refused and the others queryable: no PASS line for a run that exits 1', async () => {
    backend.onIngest = async (_stream, records) => {
      await deliverToLake(dataDir, 'app-events', records);
    };
    const file = path.join(dataDir, 'records.ndjson');
    const good = JSON.stringify({ event_id: '6f1c2b9e-0000-4000-8000-000000000001', user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() });
    const huge = JSON.stringify({ event_id: '6f1c2b9e-0000-4000-8000-000000000002', user_id: 'x'.repeat(1_100_000), event_type: 'login', timestamp: new Date().toISOString() });
    fs.writeFileSync(file, `${good}\n${huge}\n`);
    const { code, stdout, stderr } = await put('app-events', '--file', file, '--verify');
    expect(code).toBe(1);
    expect(stderr).toBe('sluice: 1 of 2 records were refused for good, so not retried (RecordTooLarge ×1)\n');
    expect(stdout).toMatch(/verify lake \(sluice_dev\.app_events\): 1\/1 after /);
    expect(stdout).not.toMatch(/PASS/);
    expect(stdout).toMatch(/^verified: 1 of 1 accepted records queryable after [\d.]+ m?s; 1 of 2 records not accepted$/m);
  });

  test('records sent and none can become queryable (every one fails the transform, or none accepted): no PASS, exit 1', async () => {
    const file = path.join(dataDir, 'records.ndjson');
    const noUser = (n: number) => JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-00000000000${n}`, event_type: 'login', timestamp: new Date().toISOString() });
    fs.writeFileSync(file, `${noUser(1)}\n${noUser(2)}\n`);
    const { code, stdout, stderr } = await put('app-events', '--file', file, '--verify');
    expect(stdout).toMatch(/accepted 2 · failed 0/);
    expect(stdout).toMatch(/2 records will fail the transform and go to the dead-letter queue/);
    expect(stdout).not.toMatch(/PASS/);
    expect(stdout).toMatch(/^FAIL: nothing to verify \(no record accepted that passes the schema\)$/m);
    expect(stderr).toBe('sluice: --verify has nothing to wait for: the transform will fail all 2 records sent, which go to the dead-letter queue (the summary says why)\n');
    expect(code).toBe(1);
    const json = await put('app-events', '--file', file, '--verify', '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ accepted: 2, willFailValidation: 2, verify: { passed: false, results: [] } });

    // None accepted at all: the run fails for the refused records, and --json does not call the verification passed either.
    backend.decide = () => unavailable;
    const refused = await put('app-events', '--count', '2', '--max-attempts', '1', '--verify', '--json');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^sluice: 2 of 2 records were not accepted after 1 attempt/);
    expect(JSON.parse(refused.stdout)).toMatchObject({ accepted: 0, verify: { passed: false, results: [] } });
  });

  test('a fresh twin (no bucket folder yet) on a data dir with glob characters: the first --verify finds the records', async () => {
    // DuckDB is given such a bucket through a link; one made before the twin had written anything pointed nowhere.
    const dir = path.join(dataDir, 'fresh [1] *?');
    fs.mkdirSync(dir);
    registerTwin(dir, { firehose: api.url });
    // Delivered after the first check, as the twin's buffer interval has it.
    let landed: Promise<unknown> = Promise.resolve();
    backend.onIngest = async (_stream, records) => {
      landed = new Promise((resolve) => setTimeout(resolve, 1500)).then(() => deliverToLake(dir, 'app-events', records));
    };
    const { code, stdout, stderr } = await sluice('put', 'app-events', '--count', '4', '--verify', '--timeout', '10s', '--poll', '500ms', '--endpoint-firehose', api.url, '--data-dir', dir);
    await landed;
    expect(stderr).toBe('');
    expect(stdout).toMatch(/PASS: 4 of 4 records queryable after /);
    expect(code).toBe(0);
  });

  test('counts only the ids it sent: rows already in the lake do not make it pass', async () => {
    // Someone else's rows are there; ours never land.
    await deliverToLake(dataDir, 'app-events', [Buffer.from(JSON.stringify({ event_id: '6f1c2b9e-0000-4000-8000-000000000001', user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() }))]);
    const { code, stdout, stderr } = await put('app-events', '--count', '3', '--verify', '--timeout', '2s', '--poll', '300ms');
    expect(code).toBe(1);
    expect(stdout).toMatch(/verify lake \(sluice_dev\.app_events\): 0\/3 after .* \(missing e\.g\. /);
    // Given up at the deadline: 2 s and however long its last check took (DuckDB's, on a busy machine, can take a second).
    expect(secondsIn(stdout, /FAIL: not every record became queryable after ([\d.]+) s \(--timeout 2\.0 s\)/)).toBeGreaterThanOrEqual(2);
    expect(secondsIn(stderr, /sluice: verify failed after ([\d.]+) s \(--timeout 2\.0 s\): lake \(sluice_dev\.app_events\): 0\/3\. Records may still be buffered/)).toBeGreaterThanOrEqual(2);
  });

  test('counts only rows that arrived since it started: the same records put again (the same --seed) do not pass on the earlier put\'s rows', async () => {
    // The earlier put's rows: the same ids, arrived half a second before this put started. This put's own never land.
    backend.onIngest = async (_stream, records) => {
      await deliverToLake(dataDir, 'app-events', records, Date.now() - 500);
    };
    const again = await put('app-events', '--seed', '99', '--count', '3', '--verify', '--timeout', '1s', '--poll', '300ms');
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(/verify lake \(sluice_dev\.app_events\): 0\/3 after /);
    expect(again.stdout).toMatch(/^ {4}3 of the missing ids are there from before this put: an earlier put of the same records \(the same --seed or --file\) counts for nothing here/m);
    expect(again.stderr).toMatch(/Some missing ids are there from before this put: an earlier put of the same records/);

    // This put's rows land beside the earlier ones: they count.
    backend.onIngest = async (_stream, records) => {
      await deliverToLake(dataDir, 'app-events', records);
    };
    const landed = await put('app-events', '--seed', '99', '--count', '3', '--verify', '--timeout', '5s', '--poll', '300ms');
    expect(landed.stdout).toMatch(/PASS: 3 of 3 records queryable after /);
    expect(landed.code).toBe(0);
  });

  test('checks once more at the deadline when the next poll would pass it, and says how long it really waited', async () => {
    // Checks at about 0 s and at the 5 s deadline, the next poll (20 s) being past it; the records land at about 2.5 s.
    // Seconds apart, so that a busy machine's slow checks and writes (DuckDB's, each can take a second) cannot blur a
    // check at the deadline with one a poll later or earlier.
    let landed: Promise<unknown> = Promise.resolve();
    backend.onIngest = async (_stream, records) => {
      landed = new Promise((resolve) => setTimeout(resolve, 2500)).then(() => deliverToLake(dataDir, 'app-events', records));
    };
    let started = Date.now();
    const { code, stdout } = await put('app-events', '--count', '3', '--verify', '--timeout', '5s', '--poll', '20s');
    let tookSeconds = (Date.now() - started) / 1000;
    await landed;
    // Found by the check at the deadline, not a poll later; said as the time it really took, which the whole put took at least.
    const foundAfter = secondsIn(stdout, /verify lake \(sluice_dev\.app_events\): 3\/3 after ([\d.]+) s\n/);
    expect(foundAfter).toBeGreaterThanOrEqual(5);
    expect(foundAfter).toBeLessThan(15);
    expect(foundAfter).toBeLessThanOrEqual(tookSeconds + 0.05);
    expect(secondsIn(stdout, /PASS: 3 of 3 records queryable after ([\d.]+) s/)).toBe(foundAfter);
    expect(code).toBe(0);

    // Nothing lands: it gives up at the deadline, neither a poll before it (about 0 s) nor one after (20 s), and says so.
    backend.reset();
    started = Date.now();
    const failed = await put('app-events', '--count', '2', '--verify', '--timeout', '1500ms', '--poll', '20s');
    tookSeconds = (Date.now() - started) / 1000;
    expect(failed.code).toBe(1);
    const gaveUpAfter = secondsIn(failed.stdout, /verify lake \(sluice_dev\.app_events\): 0\/2 after ([\d.]+) s/);
    expect(gaveUpAfter).toBeGreaterThanOrEqual(1.5);
    expect(gaveUpAfter).toBeLessThan(15);
    expect(gaveUpAfter).toBeLessThanOrEqual(tookSeconds + 0.05);
    expect(secondsIn(failed.stdout, /FAIL: not every record became queryable after ([\d.]+) s \(--timeout 1\.5 s\)/)).toBe(gaveUpAfter);
  }, 60_000);

  test('--json carries the verification', async () => {
    backend.onIngest = async (_stream, records) => {
      await deliverToLake(dataDir, 'app-events', records);
    };
    const { code, stdout } = await put('app-events', '--count', '4', '--verify', '--json');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { verify: { passed: boolean; results: Array<{ expected: number; found: number; passed: boolean }> } };
    expect(report.verify.passed).toBe(true);
    expect(report.verify.results).toEqual([expect.objectContaining({ expected: 4, found: 4, passed: true })]);
  });
});

/** The seconds that the line matching `pattern` says (its first group, as in "after 2.3 s"); fails the test when no line does. */
function secondsIn(text: string, pattern: RegExp): number {
  const match = pattern.exec(text);
  if (!match) throw new Error(`no line matches ${pattern} in:\n${text}`);
  return Number(match[1]);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('sluice put --file: reading as it sends', () => {
  const line = (n: number) => `${JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-${String(n).padStart(12, '0')}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() })}\n`;

  /** Runs put on a pipe that gets `text` and then stays open; resolves with the exit code, or 'hung'. */
  async function putOnOpenPipe(text: string, ...args: string[]): Promise<{ code: number | null | 'hung'; stderr: string }> {
    const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), 'put', 'app-events', '--file', '-', ...args,
      '--endpoint-firehose', api.url, '--data-dir', dataDir], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.stdin.on('error', () => undefined);
    child.stdin.write(text);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const code = await within(exited, 8_000, 'hung');
    if (code === 'hung') child.kill('SIGKILL');
    child.stdin.destroy();
    return { code, stderr };
  }

  test('--count N on a producer that has written exactly N lines and stays open: sends them and exits', async () => {
    const { code, stderr } = await putOnOpenPipe([1, 2, 3].map(line).join(''), '--count', '3');
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    expect(backend.acknowledged).toHaveLength(3);
  }, 30_000);
});

describe('sluice put --file: a producer that pauses', () => {
  test('lines a producer wrote before pausing are sent while it pauses, not held until 500 more come', async () => {
    const line = (n: number) => `${JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-${String(n).padStart(12, '0')}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() })}\n`;
    const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), 'put', 'app-events', '--file', '-',
      '--endpoint-firehose', api.url, '--data-dir', dataDir], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.on('error', () => undefined);
    child.stdin.write([1, 2, 3].map(line).join(''));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    for (const until = Date.now() + 8_000; backend.acknowledged.length < 3 && Date.now() < until;) await new Promise((resolve) => setTimeout(resolve, 100));
    const sentWhilePaused = backend.acknowledged.length;
    child.stdin.end();
    const code = await within(exited, 8_000, 'hung');
    if (code === 'hung') child.kill('SIGKILL');
    expect(sentWhilePaused).toBe(3);
    expect(code).toBe(0);
    expect(backend.acknowledged).toHaveLength(3);
  }, 30_000);

  test.each([['SIGINT', 'Ctrl-C', 130], ['SIGTERM', 'SIGTERM', 143]] as const)(
    '%s (%s) while the producer pauses (the pipe open, nothing to read) ends the run at once: what was sent is reported, exit %i',
    async (signal, label, exitCode) => {
      const line = (n: number) => `${JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-${String(n).padStart(12, '0')}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() })}\n`;
      const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), 'put', 'app-events', '--file', '-',
        '--endpoint-firehose', api.url, '--data-dir', dataDir], { stdio: ['pipe', 'pipe', 'pipe'] });
      const output = { stdout: '', stderr: '' };
      child.stdout.on('data', (chunk: Buffer) => { output.stdout += chunk.toString(); });
      child.stderr.on('data', (chunk: Buffer) => { output.stderr += chunk.toString(); });
      child.stdin.on('error', () => undefined);
      child.stdin.write([1, 2, 3].map(line).join(''));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      for (const until = Date.now() + 8_000; backend.acknowledged.length < 3 && Date.now() < until;) await new Promise((resolve) => setTimeout(resolve, 100));
      // The producer stays open and silent: put waits on its pipe when the signal comes.
      await new Promise((resolve) => setTimeout(resolve, 500));
      child.kill(signal);
      const code = await within(exited, 5_000, 'hung');
      if (code === 'hung') child.kill('SIGKILL');
      child.stdin.destroy();
      expect(code).toBe(exitCode);
      expect(output.stderr).toMatch(new RegExp(`^sluice: interrupted \\(${label}\\) after [\\d.]+ m?s: 3 records sent\n$`));
      expect(output.stdout).toMatch(/accepted 3 · failed 0/);
    }, 30_000);
});

describe('sluice put --file --count below the file', () => {
  test('the file is closed when the run ends, not left open for the process', async () => {
    const file = path.join(dataDir, 'more-than-count.ndjson');
    const line = (n: number) => `${JSON.stringify({ event_id: `6f1c2b9e-0000-4000-8000-${String(n).padStart(12, '0')}`, user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() })}\n`;
    fs.writeFileSync(file, [1, 2, 3].map(line).join(''));
    const { code } = await put('app-events', '--file', file, '--count', '1');
    expect(code).toBe(0);
    const open = fs.readdirSync('/proc/self/fd').map((fd) => { try { return fs.readlinkSync(`/proc/self/fd/${fd}`); } catch { return ''; } });
    expect(open).not.toContain(file);
  });
});

describe('sluice put --file: one record before a line too long', () => {
  test('the error counts it in the singular', async () => {
    const file = path.join(dataDir, 'one-then-long.ndjson');
    fs.writeFileSync(file, `${JSON.stringify({ event_id: '6f1c2b9e-0000-4000-8000-000000000001', user_id: 'u', event_type: 'login', timestamp: new Date().toISOString() })}\n${'x'.repeat(17 * 1024 * 1024)}`);
    const { code, stderr } = await put('app-events', '--file', file);
    expect(code).toBe(2);
    expect(stderr).toBe(`sluice: --file ${file}: line 2 is longer than 16 MiB with no line break yet; records are at most 1 MiB, one per line. The 1 record before it was sent (1 accepted); nothing after it was\n`);
  }, 30_000);
});

describe('the twin\'s region', () => {
  test('is the running twin\'s (its twin.json), else this shell\'s AWS_REGION: an older twin.json without one, or one edited into no region, is not used', () => {
    const own = tempDataDir();
    const region = () => (resolveTarget({ dataDir: own }) as LocalTarget).region;
    const shell = process.env.AWS_REGION || 'us-east-1';
    expect(region()).toBe(shell);
    registerTwin(own, {}, { region: 'eu-west-2' });
    expect(region()).toBe('eu-west-2');
    registerTwin(own, {}, { region: undefined });
    expect(region()).toBe(shell);
    for (const bad of ['', 'EU-WEST-2', 'eu-west-2\nx', 42, 'http://evil']) {
      registerTwin(own, {}, { region: bad as string });
      expect(region()).toBe(shell);
    }
  });
});

describe('the replay put suggests', () => {
  test('reads what the put ran against: its -c overrides, and the deployed stack with --aws', () => {
    const flags = { aws: true, stack: 'sluice-prod', region: 'eu-west-1', context: ['env=prod', 'pipelines={"iot": {}}'] };
    expect(sameTargetFlags(resolveTarget(flags), flags)).toBe(` -c env=prod -c 'pipelines={"iot": {}}' --aws --stack sluice-prod --region eu-west-1`);
    expect(sameTargetFlags(resolveTarget({ aws: true }), {})).toBe(' --aws --stack sluice-dev');
  });
});
