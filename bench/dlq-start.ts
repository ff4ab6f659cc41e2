/**
 * What the error objects a data dir holds cost a twin's start: time from startTwin() to settled (every error object
 * routed to the dead-letter file) and the error objects read, for the first start on a data dir holding N error objects
 * (it routes them all and marks them in `<queue>.routed`) and for the start after it (it reads only objects not marked).
 * Against a floor measured in the same run: the same start on a data dir with no error object.
 *
 * Run: node bin/run-ts.js bench/dlq-start.ts [--quick]. Prints a table; never fails on timing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig, resourceNames } from '../lib/config';
import { ObjectStore } from '../lib/local/object-store';
import { localBucketName } from '../lib/local/paths';
import { startTwin } from '../lib/local/twin';
import { machine, QUICK, table } from './report';

const OBJECTS = QUICK ? 400 : 2_000;
const LINES = 5;
const ERRORS_PREFIX = 'errors/app-events/processing-failed/2026/12/06/01/';
/** An error object's name as Firehose gives it: stream name, version, time, a random part. */
const objectName = (n: number) => `sluice-dev-app-events-lake-1-2026-12-06-01-00-00-${String(n).padStart(8, '0')}-3f1c2a7e-9b0d-4e51-a8c6-0d2f4b7e91aa`;
const OBJECT_KEY_CHARS = (ERRORS_PREFIX + objectName(0)).length;

const config = loadConfig(['local.bufferIntervalSeconds=1', `pipelines=${JSON.stringify({ 'app-events': { source: 'direct-put', destinations: ['lake'] } })}`]);
const queue = resourceNames(config, 'app-events').dlq;

/** N error objects of LINES processing-failed records each, as Firehose writes them. */
function writeErrorObjects(dataDir: string): void {
  const dir = path.join(dataDir, 's3', localBucketName(config), ERRORS_PREFIX);
  fs.mkdirSync(dir, { recursive: true });
  for (let o = 0; o < OBJECTS; o++) {
    const lines = Array.from({ length: LINES }, (_, i) => JSON.stringify({
      attemptsMade: 1, arrivalTimestamp: 1_765_000_000_000 + i, errorCode: 'Lambda.FunctionError', errorMessage: 'the function failed',
      attemptEndingTimestamp: 1_765_000_000_500, rawData: Buffer.from(JSON.stringify({ o, i })).toString('base64'),
      lambdaArn: 'arn:aws:lambda:us-east-1:000000000000:function:sluice-dev-app-events-transform',
    }));
    fs.writeFileSync(path.join(dir, objectName(o)), `${lines.join('\n')}\n`);
  }
}

interface Start {
  readonly ms: number;
  readonly reads: number;
  readonly dlqRecords: number;
}

async function timedStart(dataDir: string): Promise<Start> {
  let reads = 0;
  const readObject = ObjectStore.prototype.readObject;
  ObjectStore.prototype.readObject = function (this: ObjectStore, ...args: Parameters<typeof readObject>) {
    if (args[1].startsWith('errors/')) reads++;
    return readObject.apply(this, args);
  };
  try {
    const began = performance.now();
    const twin = await startTwin({ config, dataDir, ports: { firehose: 0, kinesis: 0, dynamo: 0 }, log: () => undefined });
    try {
      await twin.settle(600_000);
      const ms = performance.now() - began;
      return { ms, reads, dlqRecords: (await twin.dlqCount()).records };
    } finally {
      await twin.stop();
    }
  } finally {
    ObjectStore.prototype.readObject = readObject;
  }
}

async function main(): Promise<void> {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-dlq-empty-'));
  const full = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-dlq-'));
  try {
    writeErrorObjects(full);
    // A first start of each twin kind warms the file cache and Node's module cache alike.
    const floor = await timedStart(empty);
    const first = await timedStart(full);
    const keysAfterFirst = lineCount(path.join(full, 'dlq', `${queue}.dedupe`));
    const second = await timedStart(full);
    const floorAgain = await timedStart(empty);
    const floorMs = Math.min(floor.ms, floorAgain.ms);
    const routed = path.join(full, 'dlq', `${queue}.routed`);
    const markers = lineCount(routed);
    const row = (label: string, s: Start) => [label, s.reads.toLocaleString('en-US'), s.dlqRecords.toLocaleString('en-US'), (s.ms / 1000).toFixed(2), (s.ms / floorMs).toFixed(2)];
    console.log(`\nA twin's start to settled with ${OBJECTS.toLocaleString('en-US')} error objects of ${LINES} records under errors/ (${machine()})\n`);
    console.log(table(['start', 'error objects read', 'DLQ messages', 's', '× floor'], [
      row('floor: no error object (faster of two)', floor.ms <= floorAgain.ms ? floor : floorAgain),
      row('first start: routes and marks them all', first),
      row('next start: all marked', second),
    ]));
    console.log(`\ndedupe keys after the first start: ${keysAfterFirst.toLocaleString('en-US')}; after the next: ${lineCount(path.join(full, 'dlq', `${queue}.dedupe`)).toLocaleString('en-US')}; routed markers: ${markers.toLocaleString('en-US')}, ${Math.round(fs.statSync(routed).size / markers)} bytes each for keys of ${OBJECT_KEY_CHARS} characters`);
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
    fs.rmSync(full, { recursive: true, force: true });
  }
}

function lineCount(file: string): number {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
