/**
 * What every command promises: --help with examples and exit codes, `-c` overrides, and — run as the
 * real `sluice` binary — exit statuses a script can rely on and no stack traces for user mistakes.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../../lib/local/emulators';
import { sluice } from './helpers';

const COMMANDS = ['put', 'query', 'search', 'replay', 'cost'];

describe('--help', () => {
  test.each(COMMANDS)('sluice %s --help shows examples, exit statuses and -c', async (command) => {
    const { code, stdout } = await sluice(command, '--help');
    expect(code).toBe(0);
    expect(stdout).toMatch(/\nExamples:\n {2}\$ (\w+=\S+ )?sluice /);
    expect(stdout).toMatch(/Exit status: 0 /);
    expect(stdout).toMatch(/-c, --context <key=value>/);
  });

  test.each(['put', 'query', 'search', 'replay'])('sluice %s offers --aws, --stack and --progress', async (command) => {
    const { stdout } = await sluice(command, '--help');
    expect(stdout).toMatch(/--aws/);
    expect(stdout).toMatch(/--stack <name>/);
    expect(stdout).toMatch(/--progress/);
  });

  test('sluice --help lists the commands and the exit statuses', async () => {
    const { code, stdout } = await sluice('--help');
    expect(code).toBe(0);
    for (const c of COMMANDS) expect(stdout).toMatch(new RegExp(`\\n {2}${c} `));
    expect(stdout).toMatch(/Exit status: 0 ok · 1 /);
  });
});

describe('configuration overrides', () => {
  test('-c changes the names commands use (env prod → sluice-prod-…)', async () => {
    const port = await freePort();
    const { code, stderr } = await sluice('put', 'app-events', '-c', 'env=prod', '--endpoint-firehose', `http://127.0.0.1:${port}`);
    expect(code).toBe(2);
    expect(stderr).toMatch(/nothing is listening/);
    const bad = await sluice('query', 'SELECT 1', '-c', 'pipelines.iot.source=ftp');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/pipelines\.iot\.source: "ftp" is not allowed; use one of "kinesis", "direct-put"/);
  });
});

describe('the sluice binary', () => {
  const bin = path.resolve(__dirname, '../../bin/sluice.js');
  const exec = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SLUICE_DATA_DIR: '/nonexistent/sluice' } });

  test('a user mistake: exit 2, one line on stderr, nothing on stdout', async () => {
    const port = await freePort();
    const result = exec('put', 'app-events', '--endpoint-firehose', `http://127.0.0.1:${port}`, '--json');
    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`sluice: nothing is listening on 127.0.0.1:${port}: start the twin with \`npx sluice local up\`\n`);
  });

  test('an unknown flag: exit 2 with usage help', () => {
    const result = exec('query', '--jsn', 'SELECT 1');
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/^sluice: unknown option '--jsn'\n/);
    const command = exec('dlq');
    expect(command.status).toBe(2);
    expect(command.stderr).toMatch(/^sluice: unknown command 'dlq'\n/);
  });

  test('cost --json: exit 0 and stdout is one JSON document', () => {
    const result = exec('cost', '--json', '--rate', '10');
    expect(result.status).toBe(0);
    expect(() => JSON.parse(result.stdout) as unknown).not.toThrow();
    expect(result.stderr).toBe('');
  });

  test('a failure of no known kind: its message on stderr and exit 1, the stack trace only with SLUICE_DEBUG', () => {
    // A twin that cannot start: kinesis-mock's saved streams are unreadable.
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-conventions-'));
    try {
      fs.mkdirSync(path.join(dataDir, 'kinesis'));
      fs.writeFileSync(path.join(dataDir, 'kinesis', 'kinesis-data.json'), '');
      const args = ['local', 'up', '--data-dir', dataDir, '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0'];
      const result = exec(...args);
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/^sluice: kinesis-mock's saved streams .*kinesis-data\.json is empty \(a save was cut off\): move it away/);
      expect(result.stderr).toMatch(/\(SLUICE_DEBUG=1 shows where it happened\)\n$/);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      const debug = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SLUICE_DEBUG: '1' } });
      expect(debug.status).toBe(1);
      expect(debug.stderr).toMatch(/\n\s+at /);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('SLUICE_DATA_DIR names the twin\'s data dir', () => {
    const result = exec('query', 'SELECT 1');
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/no twin data dir at \/nonexistent\/sluice/);
  });
});
