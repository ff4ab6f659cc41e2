/**
 * How long `sluice` takes to start, by command: each run of `node bin/sluice.js <command> --help` in a fresh process,
 * wall time to its exit (the command's module and what it imports loaded, its help printed). `sluice --help` loads
 * every command's module, as every command did before a command's module was loaded only when it runs. Against a floor
 * measured in the same run: Node.js loading tsx and commander and exiting, which every command pays.
 *
 * Run: node bin/run-ts.js bench/cli-start.ts [--quick]. Prints a table; never fails on timing.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { machine, median, QUICK, table } from './report';

const RUNS = QUICK ? 3 : 9;
const root = path.resolve(__dirname, '..');
const sluice = path.join(root, 'bin', 'sluice.js');

/** Median wall ms of `node <args>` over RUNS runs, after one unmeasured run (tsx's compile cache filled). */
function wallMs(args: readonly string[]): number {
  const once = () => {
    const started = performance.now();
    const run = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' } });
    if (run.status !== 0) throw new Error(`node ${args.join(' ')} exited with ${run.status ?? run.signal}: ${run.stderr}`);
    return performance.now() - started;
  };
  once();
  return median(Array.from({ length: RUNS }, once));
}

function main(): void {
  const floor = wallMs(['-e', "require('tsx/cjs'); require('commander')"]);
  const commands: Array<[string, string[]]> = [
    ['sluice --help (every command\'s module)', ['--help']],
    ['sluice cost --help', ['cost', '--help']],
    ['sluice schema --help', ['schema', '--help']],
    ['sluice search --help', ['search', '--help']],
    ['sluice query --help', ['query', '--help']],
    ['sluice put --help', ['put', '--help']],
    ['sluice replay --help', ['replay', '--help']],
    ['sluice local up --help', ['local', 'up', '--help']],
  ];
  const rows = commands.map(([label, args]) => {
    const ms = wallMs([sluice, ...args]);
    return [label, Math.round(ms), (ms / floor).toFixed(1)];
  });
  console.log(`CLI start, median of ${RUNS} runs each — ${machine()}`);
  console.log(table(['command', 'wall ms', '× floor'], [['floor: node loading tsx and commander', Math.round(floor), '1.0'], ...rows]));
}

main();
