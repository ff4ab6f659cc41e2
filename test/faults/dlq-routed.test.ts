import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resourceNames } from '../../lib/config';
import { ObjectStore } from '../../lib/local/object-store';
import { localBucketName } from '../../lib/local/paths';
import { configWith, dlqMessages, removeDir, startFaultTwin } from './helpers';

/**
 * A start routes only the error objects not marked wholly routed (`<queue>.routed`): one routed before is not read again,
 * one rewritten since is, and a data dir from before markers (dedupe keys, no markers) routes every object as it did,
 * sending nothing twice. What a start reads is counted at the object store.
 */
describe('faults: a start reads only the error objects not yet wholly routed', () => {
  const config = configWith({ 'app-events': { source: 'direct-put', destinations: ['lake'] } });
  const queue = resourceNames(config, 'app-events').dlq;
  const bucket = localBucketName(config);
  const prefix = 'errors/app-events/processing-failed/2026/12/06/01/';
  const dirs: string[] = [];
  let reads: jest.SpyInstance | undefined;

  afterEach(() => reads?.mockRestore());
  afterAll(() => dirs.forEach(removeDir));

  const errorLine = (object: number, line: number) => JSON.stringify({
    attemptsMade: 1, arrivalTimestamp: 1_765_000_000_000 + line, errorCode: 'Lambda.FunctionError', errorMessage: 'boom',
    attemptEndingTimestamp: 1_765_000_000_500, rawData: Buffer.from(JSON.stringify({ object, line })).toString('base64'),
    lambdaArn: 'arn:aws:lambda:us-east-1:000000000000:function:sluice-dev-app-events-transform',
  });
  const writeErrorObject = (dataDir: string, object: number, lines: number) => {
    const file = path.join(dataDir, 's3', bucket, `${prefix}obj-${object}`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Array.from({ length: lines }, (_, i) => `${errorLine(object, i + 1)}\n`).join(''));
  };
  /** Starts the twin on `dataDir`, lets it route, stops it: the error objects it read, by key. */
  const startAndStop = async (dataDir: string): Promise<string[]> => {
    reads = jest.spyOn(ObjectStore.prototype, 'readObject');
    const run = await startFaultTwin(config, { dataDir });
    try {
      await run.twin.settle(30_000);
    } finally {
      await run.stop();
    }
    const keys = reads.mock.calls.map(([, key]) => key as string).filter((key) => key.startsWith('errors/'));
    reads.mockRestore();
    return [...new Set(keys)].sort();
  };
  const sources = (dataDir: string) => dlqMessages(dataDir, config).map((m) => Buffer.from(m.rawData ?? '', 'base64').toString()).sort();
  const expected = (objects: ReadonlyArray<[number, number]>) =>
    objects.flatMap(([object, lines]) => Array.from({ length: lines }, (_, i) => JSON.stringify({ object, line: i + 1 }))).sort();

  test('routed once, not read again; a rewritten object is read again; markers lost (an older data dir) send nothing twice', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-dlq-routed-'));
    dirs.push(dataDir);
    for (const object of [0, 1, 2]) writeErrorObject(dataDir, object, 4);
    const all = [0, 1, 2].map((n) => `${prefix}obj-${n}`);

    expect(await startAndStop(dataDir)).toEqual(all);
    expect(sources(dataDir)).toEqual(expected([[0, 4], [1, 4], [2, 4]]));
    const routedFile = path.join(dataDir, 'dlq', `${queue}.routed`);
    expect(fs.readFileSync(routedFile, 'utf8').split('\n').filter(Boolean)).toHaveLength(3);

    // The next start reads none of them.
    expect(await startAndStop(dataDir)).toEqual([]);
    expect(sources(dataDir)).toEqual(expected([[0, 4], [1, 4], [2, 4]]));

    // One rewritten with a line more (another ETag): read again, and its lines sent as the new version's (the router's
    // dedupe keys name the version: a mended object's lines are new records); the others are not read.
    writeErrorObject(dataDir, 0, 5);
    expect(await startAndStop(dataDir)).toEqual([`${prefix}obj-0`]);
    expect(sources(dataDir)).toEqual(expected([[0, 4], [0, 5], [1, 4], [2, 4]]));

    // No markers, keys kept: what the twin left before markers existed, or a kill after the messages, before the marker.
    fs.rmSync(routedFile);
    expect(await startAndStop(dataDir)).toEqual(all);
    expect(sources(dataDir)).toEqual(expected([[0, 4], [0, 5], [1, 4], [2, 4]]));
    expect(await startAndStop(dataDir)).toEqual([]);
  }, 180_000);

  test('the dedupe keys of objects routed go once there are enough of them; a start after still reads none and sends nothing twice', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-dlq-routed-'));
    dirs.push(dataDir);
    for (const object of [0, 1, 2]) writeErrorObject(dataDir, object, 400);
    expect(await startAndStop(dataDir)).toHaveLength(3);
    const dedupeFile = path.join(dataDir, 'dlq', `${queue}.dedupe`);
    // 1,200 keys of 3 objects marked routed: past compactDedupeAfter (1,000), so gone.
    expect(fs.readFileSync(dedupeFile, 'utf8')).toBe('');
    expect(await startAndStop(dataDir)).toEqual([]);
    expect(sources(dataDir)).toEqual(expected([[0, 400], [1, 400], [2, 400]]));
  }, 120_000);
});
