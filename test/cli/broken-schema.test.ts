/**
 * A schema file edited into something that is not JSON since `npm run generate` (the README's workflow is to edit schemas):
 * what needs that schema says so in one line, naming the file, and every other command, --help first, still works.
 * The CLI runs from a copy of the project, whose schema is broken; the repository's own schemas stay as they are.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
/** The parser's own words (they differ between Node versions) in the middle; no path, no stack trace. */
const BROKEN = /^sluice: schemas\/iot\.schema\.json at \/: is not valid JSON \([^/\n]+ at position 22 \(line 3 column 1\)\): fix it, then run `npm run generate`\n$/;

let copy: string;
beforeAll(() => {
  copy = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-broken-schema-'));
  for (const entry of ['bin', 'lib', 'transforms', 'schemas', 'cdk.json', 'package.json', 'tsconfig.json']) {
    fs.cpSync(path.join(ROOT, entry), path.join(copy, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'), 'dir');
  // A trailing comma, as an edit leaves one: Node 20's parser gives only the position, which the message turns into a line.
  fs.writeFileSync(path.join(copy, 'schemas', 'iot.schema.json'), '{\n  "type": "object",\n}\n');
});
afterAll(() => fs.rmSync(copy, { recursive: true, force: true }));

function run(...argv: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, argv, { cwd: copy, encoding: 'utf8', timeout: 60_000, env: { ...process.env, SLUICE_DATA_DIR: path.join(copy, '.sluice') } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('--help and the other pipelines\' commands work; what needs the broken schema says which file, in one line, exit 2', () => {
  const help = run('bin/sluice.js', '--help');
  expect({ code: help.code, stderr: help.stderr, usage: help.stdout.split('\n')[0] }).toEqual({ code: 0, stderr: '', usage: 'Usage: sluice [options] [command]' });

  const other = run('bin/sluice.js', 'schema', 'app-events');
  expect({ code: other.code, stderr: other.stderr }).toEqual({ code: 0, stderr: '' });
  expect(other.stdout).toContain('schemas/app-events.schema.json');

  for (const argv of [['schema', 'iot'], ['cost'], ['local', 'up']]) {
    const broken = run('bin/sluice.js', ...argv);
    expect({ argv, code: broken.code, stderr: broken.stderr }).toEqual({ argv, code: 2, stderr: expect.stringMatching(BROKEN) });
  }
  // `local up` refused before it started anything: nothing in the data dir (its lock came and went).
  const dataDir = path.join(copy, '.sluice');
  expect(fs.existsSync(dataDir) ? fs.readdirSync(dataDir) : []).toEqual([]);
}, 120_000);

test('npm run generate names the file, without a stack trace, and exits 1', () => {
  const generate = run('bin/run-ts.js', 'bin/generate.ts');
  expect({ code: generate.code, stdout: generate.stdout, stderr: generate.stderr }).toEqual({ code: 1, stdout: '', stderr: expect.stringMatching(new RegExp(BROKEN.source.replace('^sluice: ', '^'))) });
}, 60_000);
