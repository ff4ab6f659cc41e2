/**
 * `--data-dir=~/x` reaches the CLI with its `~` as typed (bash, zsh and sh expand none after `=`, nor in
 * quotes): every command refuses it, saying how to write it, rather than make or look for a folder named `~` here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sluiceCommand } from '../../lib/cli/invocation';
import { sluice, tempDataDir } from './helpers';

let cwd: string;
let here: string;
beforeEach(() => {
  cwd = process.cwd();
  here = tempDataDir();
  process.chdir(here);
});
afterEach(() => {
  process.chdir(cwd);
  delete process.env.SLUICE_DATA_DIR;
});

const REFUSED = /^sluice: the data dir ~\/sluice-data starts with a ~ the shell did not expand \(none is after "=", as in --data-dir=~\/…, or in quotes\): give `--data-dir ~\/…` with a space, or the full path \(\.\/~\/sluice-data for a folder named ~ here\)\n$/;

test.each([
  ['query', ['query', 'SELECT 1', '--data-dir=~/sluice-data']],
  ['put', ['put', 'iot', '-n', '1', '--data-dir=~/sluice-data']],
  ['replay', ['replay', '--dry-run', '--data-dir=~/sluice-data']],
])('%s refuses a data dir that starts with an unexpanded ~, and makes nothing', async (_name, argv) => {
  const run = await sluice(...argv);
  expect(run.stderr).toMatch(REFUSED);
  expect(run.code).toBe(2);
  expect(fs.readdirSync(here)).toEqual([]);
});

test('local up and demo refuse it too, from the flag or SLUICE_DATA_DIR, before they make or start anything', async () => {
  for (const argv of [['local', 'up', '--data-dir=~/sluice-data'], ['demo', '--data-dir=~/sluice-data']]) {
    const run = await sluice(...argv);
    expect(run.stderr).toMatch(REFUSED);
    expect(run.code).toBe(2);
  }
  process.env.SLUICE_DATA_DIR = '~/sluice-data';
  const run = await sluice('local', 'up');
  expect(run.stderr).toMatch(REFUSED);
  expect(fs.readdirSync(here)).toEqual([]);
});

test('a folder named ~ is still reachable as ./~, and commands the CLI suggests for it name it so', async () => {
  const run = await sluice('query', 'SELECT 1', `--data-dir=./~/sluice-data`);
  expect(run.stderr).toContain(`no twin data dir at ${path.join(here, '~', 'sluice-data')}`);
  // Not '~/sluice-data', which the command suggested would refuse.
  // Run from a temp folder, outside the checkout: the hint names sluice as it can be run from there.
  const command = sluiceCommand({ cwd: here });
  expect(command).not.toBe('npx sluice');
  expect(run.stderr).toContain(`\`${command} local up --data-dir './~/sluice-data'\``);
  fs.mkdirSync(path.join(here, '~', 'sluice-data', 's3'), { recursive: true });
  const put = await sluice('put', 'iot', '-n', '1', '--data-dir=./~/sluice-data');
  expect(put.stderr).toContain(`start one with \`${command} local up --data-dir './~/sluice-data'\``);
});
