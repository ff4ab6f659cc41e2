/**
 * The command the CLI's hints name for running sluice again (`start the twin with \`… local up\``): one that works
 * from the working directory, where `npx sluice` outside this package asks the npm registry for another package.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sluiceCommand } from '../../lib/cli/invocation';
import { freePort } from '../../lib/local/ports';
import { tempDataDir } from './helpers';

/** A package laid out as this one (package.json, bin/sluice.js) under a fresh temp dir, and folders around it. */
function layout(packageFolder = 'checkout') {
  const top = tempDataDir();
  const root = path.join(top, packageFolder);
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(root, 'docs'));
  fs.writeFileSync(path.join(root, 'package.json'), '{"name":"sluice","bin":{"sluice":"bin/sluice.js"}}');
  fs.writeFileSync(path.join(root, 'bin', 'sluice.js'), '#!/usr/bin/env node\n', { mode: 0o755 });
  const elsewhere = path.join(top, 'elsewhere');
  fs.mkdirSync(elsewhere);
  return { top, root, bin: path.join(root, 'bin', 'sluice.js'), elsewhere };
}

/** A folder holding an executable `sluice` that links to `target`, as `npm link` or a global install makes one. */
function binFolder(under: string, target: string): string {
  fs.mkdirSync(under, { recursive: true });
  fs.symlinkSync(target, path.join(under, 'sluice'));
  return under;
}

describe('sluiceCommand', () => {
  test('in the package or any folder of it: npx sluice, as npm finds the package there', () => {
    const { root } = layout();
    expect(sluiceCommand({ cwd: root, script: path.join(root, 'bin', 'sluice.js'), pathVariable: '', packageRoot: root })).toBe('npx sluice');
    expect(sluiceCommand({ cwd: path.join(root, 'docs'), script: '/somewhere/.npm/_npx/1/node_modules/.bin/sluice', pathVariable: '', packageRoot: root })).toBe('npx sluice');
  });

  test('in a project that depends on it (its node_modules/.bin/sluice leads here): npx sluice', () => {
    const { top } = layout();
    const project = path.join(top, 'project');
    const root = path.join(project, 'node_modules', 'sluice');
    fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
    fs.writeFileSync(path.join(root, 'bin', 'sluice.js'), '', { mode: 0o755 });
    binFolder(path.join(project, 'node_modules', '.bin'), '../sluice/bin/sluice.js');
    fs.mkdirSync(path.join(project, 'src'));
    expect(sluiceCommand({ cwd: path.join(project, 'src'), script: path.join(root, 'bin', 'sluice.js'), pathVariable: '', packageRoot: root })).toBe('npx sluice');
  });

  test('run through a bin link on PATH that leads to the package: sluice, wherever the working directory is', () => {
    const { top, root, bin, elsewhere } = layout();
    const linked = binFolder(path.join(top, 'global', 'bin'), bin);
    const pathVariable = ['/nonexistent/bin', linked].join(path.delimiter);
    const script = path.join(linked, 'sluice');
    expect(sluiceCommand({ cwd: elsewhere, script, pathVariable, packageRoot: root })).toBe('sluice');
    expect(sluiceCommand({ cwd: root, script, pathVariable, packageRoot: root })).toBe('sluice');
    // Run as `node …/bin/sluice.js` from elsewhere, the link on PATH works all the same.
    expect(sluiceCommand({ cwd: elsewhere, script: bin, pathVariable, packageRoot: root })).toBe('sluice');
    // From the package, run so, npx sluice as the user ran it there.
    expect(sluiceCommand({ cwd: root, script: bin, pathVariable, packageRoot: root })).toBe('npx sluice');
  });

  test('a sluice on PATH of another package, npx\'s own node_modules/.bin, or a file that does not run is no way to run this one', () => {
    const { top, root, bin, elsewhere } = layout();
    const other = layout('other');
    const npxCache = binFolder(path.join(top, '.npm', '_npx', '1', 'node_modules', '.bin'), bin);
    const notRunnable = path.join(top, 'plain');
    fs.mkdirSync(notRunnable);
    fs.copyFileSync(bin, path.join(notRunnable, 'sluice'));
    fs.chmodSync(path.join(notRunnable, 'sluice'), 0o644);
    const otherLink = binFolder(path.join(top, 'other-bin'), other.bin);
    for (const [pathVariable, script] of [[npxCache, path.join(npxCache, 'sluice')], [otherLink, bin], [notRunnable, bin]]) {
      expect(sluiceCommand({ cwd: elsewhere, script, pathVariable, packageRoot: root })).toBe('node ../checkout/bin/sluice.js');
    }
  });

  test('elsewhere: node and the path of bin/sluice.js, relative when that is shorter, quoted for a shell', () => {
    const { root, bin, elsewhere } = layout('my checkout');
    expect(sluiceCommand({ cwd: elsewhere, script: bin, pathVariable: '', packageRoot: root })).toBe("node '../my checkout/bin/sluice.js'");
    const deep = path.join(elsewhere, ...'abcdefghijklmnopqrstuvwxyz'.split(''));
    fs.mkdirSync(deep, { recursive: true });
    expect(sluiceCommand({ cwd: deep, script: bin, pathVariable: '', packageRoot: root })).toBe(`node '${bin}'`);
  });
});

test('run from another working directory, the hint names a command that runs there', async () => {
  const cwd = os.tmpdir();
  const dataDir = tempDataDir();
  const port = await freePort();
  const env = { ...process.env, SLUICE_DATA_DIR: undefined, SLUICE_FIREHOSE_PORT: undefined };
  const bin = path.resolve(__dirname, '../../bin/sluice.js');
  const put = spawnSync(process.execPath, [bin, 'put', 'app-events', '--endpoint-firehose', `http://127.0.0.1:${port}`, '--data-dir', dataDir],
    { cwd, env, encoding: 'utf8', timeout: 60_000 });
  expect(put.status).toBe(2);
  const hinted = /start the twin with `(.*) local up --data-dir (.*)`\n$/.exec(put.stderr);
  expect(hinted).not.toBeNull();
  expect(hinted![1]).not.toBe('npx sluice');
  const help = spawnSync('/bin/sh', ['-c', `${hinted![1]} local up --data-dir ${hinted![2]} --help`], { cwd, env, encoding: 'utf8', timeout: 60_000 });
  expect([help.status, help.stderr]).toEqual([0, '']);
  expect(help.stdout).toMatch(/^Usage: sluice local up /);
}, 120_000);
