/**
 * Reading a Firehose request body: `JSON.parse(body.toString('utf8'))` against the twin's pieced
 * reading (lib/local/json-pieces.ts), on PutRecordBatch bodies of 100 to 500 records and a 4 MiB
 * one. The floor is JSON.parse alone on the body as a string made beforehand: what any reader must
 * at least do. Over 128 KiB, the string `toString` makes goes to V8's large-object space, and
 * allocating it there costs more than parsing it.
 *
 * Run: node bin/run-ts.js bench/json-body.ts [--quick]. Prints a table; never fails on timing.
 */
import * as path from 'node:path';
import { parseJsonInPieces } from '../lib/local/json-pieces';
import { machine, median, QUICK, table } from './report';

function body(records: number, dataBytes: number): Buffer {
  const Records = Array.from({ length: records }, (_, i) => ({ Data: Buffer.from(`${JSON.stringify({ i, at: new Date(0).toISOString() })}${' '.repeat(dataBytes)}`).toString('base64') }));
  return Buffer.from(JSON.stringify({ DeliveryStreamName: 'sluice-dev-app-events-lake', Records }));
}

/** Median µs per call over rounds of at least `minMs`. */
function timeUs(f: () => unknown, minMs: number): number {
  for (let i = 0; i < 20; i++) f();
  const rounds: number[] = [];
  for (let round = 0; round < 7; round++) {
    let n = 0;
    const started = performance.now();
    while (performance.now() - started < minMs / 7) {
      f();
      n++;
    }
    rounds.push(((performance.now() - started) * 1000) / n);
  }
  return median(rounds);
}

function main(): void {
  const minMs = QUICK ? 300 : 2000;
  const cases: Array<[string, Buffer]> = [
    ['100 records of 200 bytes', body(100, 160)],
    ['500 records of 200 bytes', body(500, 160)],
    ['500 records of 1 KiB', body(500, 990)],
    ['4 MiB: 500 records of 6 KiB', body(500, 6200)],
  ];
  const rows = cases.map(([name, bytes]) => {
    const text = bytes.toString('utf8');
    const floor = timeUs(() => JSON.parse(text), minMs);
    const whole = timeUs(() => JSON.parse(bytes.toString('utf8')), minMs);
    const pieces = timeUs(() => parseJsonInPieces(bytes), minMs);
    return [name, (bytes.length / 1024).toFixed(0), floor.toFixed(0), whole.toFixed(0), pieces.toFixed(0), (whole / floor).toFixed(2), (pieces / floor).toFixed(2)];
  });
  console.log(`\nReading a PutRecordBatch body (µs per body, medians) — ${machine()}\n`);
  console.log(table(['body', 'KiB', 'floor: JSON.parse of a ready string', 'toString + JSON.parse', 'in pieces (the twin)', 'whole / floor', 'pieces / floor'], rows));
}

if (require.main === module || path.resolve(process.argv[1] ?? '') === __filename) main();
