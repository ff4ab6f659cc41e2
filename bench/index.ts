/**
 * `npm run bench`: every benchmark, one after another, each in a fresh Node process (so one's heap,
 * JIT state and DuckDB instances do not colour the next one's numbers).
 *
 * Run: node bin/run-ts.js bench/index.ts [--quick] [name…], e.g. `npm run bench -- direct-put`.
 * Exits non-zero only when a benchmark could not run, never on timing.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const BENCHMARKS = ['transform', 'direct-put', 'kinesis', 'pruning', 'idle', 'parquet-ratio', 'json-body', 'cli-start', 'ttl-sweep', 'dlq-start'] as const;

function main(args: readonly string[]): number {
  const flags = args.filter((a) => a.startsWith('--'));
  const named = args.filter((a) => !a.startsWith('--'));
  const unknown = named.filter((n) => !(BENCHMARKS as readonly string[]).includes(n));
  if (unknown.length > 0) {
    console.error(`unknown benchmark ${unknown.join(', ')}; expected some of ${BENCHMARKS.join(', ')}`);
    return 2;
  }
  const root = path.resolve(__dirname, '..');
  let failed = 0;
  for (const name of named.length > 0 ? named : BENCHMARKS) {
    console.log(`\n== bench/${name}.ts`);
    const run = spawnSync(process.execPath, [path.join(root, 'bin', 'run-ts.js'), path.join(root, 'bench', `${name}.ts`), ...flags], { stdio: 'inherit' });
    if (run.status !== 0) {
      console.error(`bench/${name}.ts exited with ${run.status ?? run.signal}`);
      failed++;
    }
  }
  return failed > 0 ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
