/**
 * What every command promises: --help with examples and exit codes, `-c` overrides, and — run as the
 * real `sluice` binary — exit statuses a script can rely on and no stack traces for user mistakes.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { freePort } from '../../lib/local/ports';
import { buildProgram, COMMANDS as REGISTERED } from '../../lib/cli/main';
import { sluice } from './helpers';
import { pipelineSchema } from '../../transforms/shared/pipeline';

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

  test('put --help\'s --file example names the file as docs/cli.md does (no directory the repository lacks)', async () => {
    const { stdout } = await sluice('put', '--help');
    const examples = stdout.split('\n').filter((line) => /^ {2}\$ sluice put .*--file /.test(line)).map((line) => line.trim());
    expect(examples).toHaveLength(1);
    const docs = fs.readFileSync(path.join(__dirname, '..', '..', 'docs', 'cli.md'), 'utf8');
    expect(docs.split('\n')).toContain(examples[0]);
  });

  test('sluice --help lists the commands and the exit statuses', async () => {
    const { code, stdout } = await sluice('--help');
    expect(code).toBe(0);
    for (const c of COMMANDS) expect(stdout).toMatch(new RegExp(`\\n {2}${c} `));
    expect(stdout).toMatch(/Exit status: 0 ok · 1 /);
  });

  test.each([['--help', 'cost'], ['-h', 'local', 'up']])('%s before the command is the program\'s help flag: its help lists every command', async (...argv) => {
    const { code, stdout } = await sluice(...argv);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: sluice \[options\] \[command\]/);
    for (const c of COMMANDS) expect(stdout).toMatch(new RegExp(`\\n {2}${c} `));
  });
});

describe('commands are loaded when they run', () => {
  test('each entry registers exactly the names it lists; with no command named, the program has every command in that order', () => {
    for (const entry of REGISTERED) {
      const program = new Command();
      entry.register(program);
      expect(program.commands.map((c) => c.name())).toEqual(entry.names);
    }
    expect(buildProgram().commands.map((c) => c.name())).toEqual(REGISTERED.flatMap((e) => e.names));
  });

  test('a command\'s name registers its entry alone; a name no command has (or help) registers them all', () => {
    expect(buildProgram('cost').commands.map((c) => c.name())).toEqual(['cost']);
    expect(buildProgram('demo').commands.map((c) => c.name())).toEqual(['local', 'demo']);
    expect(buildProgram('help').commands).toHaveLength(REGISTERED.flatMap((e) => e.names).length);
    expect(buildProgram('cots').commands).toHaveLength(REGISTERED.flatMap((e) => e.names).length);
  });

  test('the binary loads what the command uses: sluice cost loads no twin, DuckDB or OpenSearch client; put, replay and redrive-consumer load neither DuckDB nor the CDK until they read the lake, local up no Lambda, S3 or SQS client; a misspelt command is still suggested', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-loaded-'));
    try {
      // Prints, as the process ends, the modules it loaded.
      const preload = path.join(dir, 'loaded.js');
      fs.writeFileSync(preload, "process.on('exit', () => require('node:fs').writeSync(2, '\\nLOADED ' + JSON.stringify(Object.keys(require.cache))));");
      const loadedBy = (...args: string[]) => {
        const run = spawnSync(process.execPath, ['-r', preload, path.resolve(__dirname, '../../bin/sluice.js'), ...args], { encoding: 'utf8', timeout: 60_000 });
        expect(run.status).toBe(0);
        return JSON.parse(run.stderr.slice(run.stderr.lastIndexOf('\nLOADED ') + 8)) as string[];
      };
      const cost = loadedBy('cost');
      expect(cost.some((f) => f.endsWith(path.join('lib', 'cli', 'cost-command.ts')))).toBe(true);
      for (const unused of [path.join('lib', 'local', 'twin.ts'), path.join('lib', 'cli', 'put-command.ts'), '@duckdb', '@opensearch-project']) {
        expect(cost.filter((f) => f.includes(unused))).toEqual([]);
      }
      for (const command of ['put', 'replay', 'redrive-consumer']) {
        const loaded = loadedBy(command, '--help');
        expect(loaded.some((f) => f.endsWith(path.join('lib', 'cli', `${command}-command.ts`)))).toBe(true);
        expect(loaded.filter((f) => f.includes('@duckdb') || f.includes(`${path.sep}aws-cdk-lib${path.sep}`))).toEqual([]);
      }
      // The twin's Lambda client is for redrive-consumer alone; the failure router, which the twin loads, requires its S3
      // and SQS clients only for Lambda: the twin gives it its own object store and DLQ file.
      const localUp = loadedBy('local', 'up', '--help');
      expect(localUp.some((f) => f.endsWith(path.join('transforms', 'failure-router', 'handler.ts')))).toBe(true);
      expect(localUp.filter((f) => ['@aws-sdk/client-lambda', '@aws-sdk/client-s3', '@aws-sdk/client-sqs'].some((client) => f.includes(client)))).toEqual([]);
      const misspelt = spawnSync(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), 'cots'], { encoding: 'utf8', timeout: 60_000 });
      expect(misspelt.status).toBe(2);
      expect(misspelt.stderr).toMatch(/^sluice: unknown command 'cots' \(did you mean cost\?\)\n/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
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
    expect(result.stderr).toMatch(/^sluice: unknown option '--jsn' \(did you mean --json\?\)\n/);
    const command = exec('dlq');
    expect(command.status).toBe(2);
    expect(command.stderr).toMatch(/^sluice: unknown command 'dlq'\n/);
  });

  test('no command, or local without its subcommand: a sluice: line says so, then the usage, on stderr, exit 2; their --help still goes to stdout, exit 0', async () => {
    const cases = [
      { argv: [], says: 'sluice: no command given', usage: 'Usage: sluice [options] [command]' },
      { argv: ['local'], says: 'sluice: local needs a subcommand (up)', usage: 'Usage: sluice local [options] [command]' },
    ];
    for (const { argv, says, usage } of cases) {
      const { code, stdout, stderr } = await sluice(...argv);
      expect({ argv, code, stdout, firstLines: stderr.split('\n').slice(0, 2) }).toEqual({ argv, code: 2, stdout: '', firstLines: [says, usage] });
      const help = await sluice(...argv, '--help');
      expect({ argv, code: help.code, stderr: help.stderr, firstLine: help.stdout.split('\n')[0] }).toEqual({ argv, code: 0, stderr: '', firstLine: usage });
    }
  });

  test('help about a subcommand that is not one says so, not that one is missing', async () => {
    const { code, stdout, stderr } = await sluice('local', 'help', 'bogus');
    expect({ code, stdout, firstLines: stderr.split('\n').slice(0, 2) }).toEqual({ code: 2, stdout: '', firstLines: ["sluice: unknown command 'bogus'", 'Usage: sluice local [options] [command]'] });
  });

  test('what a message echoes (an unknown flag or command, a -c key) has its control characters escaped, its lines kept', async () => {
    const flag = await sluice('query', '--x\u001b]0;pwned\u0007', 'SELECT 1');
    expect(flag.code).toBe(2);
    expect(flag.stderr.split('\n')[0]).toBe("sluice: unknown option '--x\\u001b]0;pwned\\u0007'");
    const command = await sluice('d\u001b[2Jlq');
    expect(command.code).toBe(2);
    expect(command.stderr.split('\n')[0]).toBe("sluice: unknown command 'd\\u001b[2Jlq'");
    // A configuration error echoes the -c key it refuses: the same escaping, for every message sluice prints.
    const config = await sluice('cost', '-c', 'pipelines.ap\u001b[2Jp.x=1');
    expect(config.code).toBe(2);
    expect(config.stderr).toContain('pipelines.ap\\u001b[2Jp.x: unknown pipeline "ap\\u001b[2Jp"');
    // eslint-disable-next-line no-control-regex
    expect(flag.stderr + command.stderr + config.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
  });

  test('an unknown command asked for its help: the same error, not the main help and exit 0', async () => {
    for (const argv of [['dlq', '--help'], ['dlq', '-h'], ['help', 'dlq'], ['local', 'dlq', '--help'], ['help', 'local', 'dlq']]) {
      const { code, stdout, stderr } = await sluice(...argv);
      expect({ argv, code, stdout }).toEqual({ argv, code: 2, stdout: '' });
      expect(stderr).toBe('sluice: unknown command \'dlq\'\n(run with --help for usage)\n');
    }
    const typo = await sluice('replya', '--help');
    expect(typo.code).toBe(2);
    expect(typo.stderr.split('\n')[0]).toBe('sluice: unknown command \'replya\' (did you mean replay?)');
    // A command's own help is unchanged, and so is help on help.
    expect((await sluice('help', 'replay')).stdout).toMatch(/^Usage: sluice replay /);
    expect((await sluice('local', 'up', '--data-dir', '/tmp/x', '--help')).stdout).toMatch(/^Usage: sluice local up /);
    expect((await sluice('put', 'iot', '--help')).stdout).toMatch(/^Usage: sluice put /);
    for (const argv of [['help', '-h'], ['help', '--help'], ['help']]) {
      const { code, stdout } = await sluice(...argv);
      expect({ argv, code, usage: stdout.split('\n')[0] }).toEqual({ argv, code: 0, usage: 'Usage: sluice [options] [command]' });
    }
  });

  test('local up --help: its AWS CLI v2 example sends raw JSON (--cli-binary-format) that the app-events schema accepts', async () => {
    const { stdout } = await sluice('local', 'up', '--help');
    expect(stdout).toContain('--cli-binary-format raw-in-base64-out');
    const record = /--record '([^']+)'/.exec(stdout)?.[1];
    const data = JSON.parse((JSON.parse(record ?? 'null') as { Data: string }).Data) as unknown;
    const { validate } = pipelineSchema('app-events');
    expect([validate(data), validate.errors ?? null]).toEqual([true, null]);
  });

  test('--version and -V print package.json\'s version', async () => {
    const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) expect(await sluice(flag)).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' });
  });

  test('cost --json: exit 0 and stdout is one JSON document', () => {
    const result = exec('cost', '--json', '--rate', '10');
    expect(result.status).toBe(0);
    expect(() => JSON.parse(result.stdout) as unknown).not.toThrow();
    expect(result.stderr).toBe('');
  });

  test('a failure recorded in process.exitCode is not overwritten by a command that then succeeds', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-exit-'));
    try {
      const preload = path.join(dir, 'fail.js');
      fs.writeFileSync(preload, 'process.exitCode = 3;\n');
      const result = spawnSync(process.execPath, ['--require', preload, bin, 'cost', '--rate', '10'], { encoding: 'utf8', timeout: 60_000 });
      expect(result.stderr).toBe('');
      expect(result.status).toBe(3);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('kinesis-mock\'s saved streams cut short: exit 2 and which file to move away, no stack trace', () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-conventions-'));
    try {
      fs.mkdirSync(path.join(dataDir, 'kinesis'));
      fs.writeFileSync(path.join(dataDir, 'kinesis', 'kinesis-data.json'), '');
      const result = exec('local', 'up', '--data-dir', dataDir, '--firehose-port', '0', '--kinesis-port', '0', '--dynamo-port', '0');
      expect(result.status).toBe(2);
      expect(result.stderr).toMatch(/^sluice: kinesis-mock's saved streams .*kinesis-data\.json is empty \(a save was cut off\): move it away[^\n]*\n$/);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a temporary folder tsx cannot cache its compiled code in (TMPDIR a file, read-only or gone): sluice and run-ts.js still run', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-tmpdir-'));
    try {
      // A file, not a folder: unwritable to root too, as a read-only mount is.
      const notAFolder = path.join(dir, 'tmp');
      fs.writeFileSync(notAFolder, '');
      const env = { ...process.env, TMPDIR: notAFolder, TSX_DISABLE_CACHE: undefined };
      const cost = spawnSync(process.execPath, [bin, 'cost', '--json', '--rate', '10'], { encoding: 'utf8', timeout: 60_000, env });
      expect({ status: cost.status, stderr: cost.stderr }).toEqual({ status: 0, stderr: '' });
      const script = path.join(dir, 'typed.ts');
      fs.writeFileSync(script, 'const answer: number = 42;\nconsole.log(answer);\n');
      const runTs = spawnSync(process.execPath, [path.resolve(__dirname, '../../bin/run-ts.js'), script], { encoding: 'utf8', timeout: 60_000, env });
      expect({ status: runTs.status, stdout: runTs.stdout, stderr: runTs.stderr }).toEqual({ status: 0, stdout: '42\n', stderr: '' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('SLUICE_DATA_DIR names the twin\'s data dir', () => {
    const result = exec('query', 'SELECT 1');
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/no twin data dir at \/nonexistent\/sluice/);
  });
});

describe('a failure of no known kind (a bug)', () => {
  /** `run` with the cost estimate replaced by one that throws `error`. */
  async function runWithFailingEstimate(error: unknown, env: Record<string, string | undefined> = {}): Promise<{ code: number; stderr: string }> {
    const lines: string[] = [];
    const spy = jest.spyOn(console, 'error').mockImplementation((...args: unknown[]) => { lines.push(args.join(' ')); });
    const saved = process.env.SLUICE_DEBUG;
    try {
      process.env.SLUICE_DEBUG = env.SLUICE_DEBUG;
      if (env.SLUICE_DEBUG === undefined) delete process.env.SLUICE_DEBUG;
      let code: number | undefined;
      // The command's module is loaded when the command runs: the run is inside the isolated registry the mock is in.
      await jest.isolateModulesAsync(async () => {
        jest.doMock('../../lib/cli/cost', () => ({ ...jest.requireActual('../../lib/cli/cost'), estimateCost: () => { throw error; } }));
        code = await (require('../../lib/cli/main') as typeof import('../../lib/cli/main')).run(['cost']);
      });
      return { code: code!, stderr: lines.join('\n') };
    } finally {
      spy.mockRestore();
      if (saved === undefined) delete process.env.SLUICE_DEBUG;
      else process.env.SLUICE_DEBUG = saved;
      jest.dontMock('../../lib/cli/cost');
    }
  }

  test('exit 1 with its message; the stack trace only with SLUICE_DEBUG=1', async () => {
    const plain = await runWithFailingEstimate(new Error('the estimate broke'));
    expect(plain).toEqual({ code: 1, stderr: 'sluice: the estimate broke\n(SLUICE_DEBUG=1 shows where it happened)' });
    expect((await runWithFailingEstimate(new Error('the estimate broke'), { SLUICE_DEBUG: '0' })).stderr).not.toMatch(/\n\s+at /);
    expect((await runWithFailingEstimate(new Error('the estimate broke'), { SLUICE_DEBUG: '1' })).stderr).toMatch(/^sluice: the estimate broke\nError: the estimate broke\n\s+at /);
  });

  test('an error without a message (a failed connection\'s AggregateError) still says what happened', async () => {
    const { code, stderr } = await runWithFailingEstimate(new AggregateError([new Error('connect ECONNREFUSED 127.0.0.1:1')], ''));
    expect(code).toBe(1);
    expect(stderr).toMatch(/^sluice: AggregateError: connect ECONNREFUSED 127\.0\.0\.1:1\n/);
  });
});
