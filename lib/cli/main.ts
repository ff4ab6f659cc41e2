import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config';
import { EmulatorStateError } from '../local/state-error';
import { SchemaDerivationError } from '../schema/model';
import { sluiceCommand } from './invocation';
import { dashedQueriesAsUnknownOptions } from './options';
import { escapeControlCharactersInLines, UserError } from './output';
import { endChildProcesses } from './child-processes';
import { callsAreLeftWaiting } from './sleep';

/**
 * The commands, in the order the help lists them, each with the names it registers and its module, required only when
 * it is registered: loading every command's module (the twin, DuckDB, the AWS SDK clients) took about a second before
 * any command could start, most of it for code the command run does not use.
 */
export const COMMANDS: ReadonlyArray<{ readonly names: readonly string[]; readonly register: (program: Command) => void }> = [
  { names: ['local', 'demo'], register: (p) => (require('./local-command') as typeof import('./local-command')).registerLocalCommands(p) },
  { names: ['schema'], register: (p) => (require('./schema-command') as typeof import('./schema-command')).registerSchemaCommand(p) },
  { names: ['put'], register: (p) => (require('./put-command') as typeof import('./put-command')).registerPutCommand(p) },
  { names: ['query'], register: (p) => (require('./query-command') as typeof import('./query-command')).registerQueryCommand(p) },
  { names: ['search'], register: (p) => (require('./search-command') as typeof import('./search-command')).registerSearchCommand(p) },
  { names: ['replay'], register: (p) => (require('./replay-command') as typeof import('./replay-command')).registerReplayCommand(p) },
  { names: ['redrive-consumer'], register: (p) => (require('./redrive-consumer-command') as typeof import('./redrive-consumer-command')).registerRedriveConsumerCommand(p) },
  { names: ['cost'], register: (p) => (require('./cost-command') as typeof import('./cost-command')).registerCostCommand(p) },
];

/**
 * Builds the `sluice` program; `run` maps errors to exit codes. Given the name of the command a line runs, only that
 * command is registered (its help and its errors are its own); otherwise (no command, `help`, a name no command has,
 * whose suggestion needs them all) every command is.
 */
export function buildProgram(commandName?: string): Command {
  const program = new Command('sluice')
    .description('Sluice: a Firehose delivery pipeline on AWS, and its local twin')
    .version(packageVersion(), '-V, --version', "print sluice's version")
    .showHelpAfterError('(run with --help for usage)')
    // A function, so the command it names (sluiceCommand) is worked out only when the help is shown.
    .addHelpText('after', () => [
      '',
      `Commands run against the local twin (start it with \`${sluiceCommand()} local up\`) unless given --aws.`,
      'Exit status: 0 ok · 1 the work ran and did not succeed (records not accepted or not queryable in time, records left',
      '  in the dead-letter queue, a query the engine refused) · 2 usage, configuration or environment problem · 130 interrupted (Ctrl-C)',
    ].join('\n'))
    // Commander's own usage errors ("error: unknown option …") start `sluice:` and take one line like every
    // other message; its suggestion joins that line. They echo what was typed: its control characters are
    // escaped, as everywhere else, so a pasted flag cannot clear or retitle the terminal.
    .configureOutput({
      outputError: (text, write) => write(escapeControlCharactersInLines(
        text.replace(/^error: /, 'sluice: ').replace(/\n\(Did you mean (.+)\?\)\n$/, ' (did you mean $1?)\n'),
      )),
    })
    // Commander shows a command's help as an error (on stderr, exit 2) only when it is given no subcommand: the help
    // then follows a `sluice:` line that says so, as every other usage error starts.
    .addHelpText('beforeAll', ({ error, command }) => (error ? `sluice: ${missingSubcommand(command)}` : ''))
    .exitOverride();
  // The program reads its options anywhere on the line, before the command does: a query such as `-Vendor:acme` is the
  // command's to refuse (`sluice search` says to put -- before it), not -V.
  dashedQueriesAsUnknownOptions(program);
  const named = COMMANDS.filter((c) => commandName !== undefined && c.names.includes(commandName));
  for (const command of named.length > 0 ? named : COMMANDS) command.register(program);
  return program;
}

/** "no command given", "local needs a subcommand (up)". */
function missingSubcommand(command: Command): string {
  // `sluice local help bogus` shows local's help as an error too: the word it was asked about is no command.
  const asked = command.args.length > 1 && command.args[0] === 'help' ? command.args[1] : undefined;
  if (asked !== undefined) return `unknown command '${asked}'`;
  if (command.parent === null) return 'no command given';
  return `${command.name()} needs a subcommand (${command.commands.map((c) => c.name()).join(', ')})`;
}

/**
 * SQL that starts with a comment (`-- saved query …`, as `sluice query --saved` prints it) looks like an
 * option to the parser. No option has white space after its dashes, so such an argument is SQL: it goes
 * after a `--`, where nothing is read as an option. Arguments after a `--` the user wrote stay as they are.
 */
export function sqlCommentsAsArguments(argv: readonly string[]): string[] {
  const end = argv.indexOf('--');
  const head = end === -1 ? [...argv] : argv.slice(0, end);
  const comments = head.filter((a) => /^--\s/.test(a));
  if (comments.length === 0) return [...argv];
  const rest = end === -1 ? [] : argv.slice(end + 1);
  return [...head.filter((a) => !/^--\s/.test(a)), '--', ...comments, ...rest];
}

/**
 * Commander looks for --help before it finds that no command has the name given, so `sluice dlq --help` would
 * print the main help and exit 0, as if dlq were a command. For an unknown command (also as `sluice help dlq`)
 * the help flags are dropped, so commander reports it: `sluice: unknown command 'dlq'`, a suggestion when a
 * command's name is close, exit 2. The program takes no option before the command but --help, so the first
 * argument that is not a flag is the command's name.
 */
export function unknownCommandWithoutHelp(program: Command, argv: readonly string[]): string[] {
  const at = argv.findIndex((a) => !a.startsWith('-'));
  if (at === -1) return [...argv];
  const helpCommand = argv[at] === 'help';
  // `sluice help -h` asks for help on help: the names are the arguments after `help` that are not flags.
  const names = argv.slice(helpCommand ? at + 1 : at).filter((a) => !a.startsWith('-'));
  // Down the command tree as far as the names go: `sluice local dwn --help` names no command either. A command
  // without subcommands takes the rest as its arguments.
  let command = program;
  for (const name of names) {
    if (command.commands.length === 0) return [...argv];
    const sub = command.commands.find((c) => c.name() === name || c.aliases().includes(name));
    if (!sub) return argv.filter((a, i) => !(helpCommand && i === at) && a !== '--help' && a !== '-h');
    command = sub;
  }
  return [...argv];
}

/**
 * `help <command>` as `<command> --help`: commander's help command shows a command's help without reading the
 * command's options, and the help of `local up` gives the defaults its configuration sets, so `sluice local help up
 * -c local.firehosePort=14573` would give cdk.json's. With the --help flag the command reads its options (-c) first,
 * wherever they stand. What follows the names is left as it is; `help` before no command's name is not changed.
 */
export function helpCommandAsHelpFlag(program: Command, argv: readonly string[]): string[] {
  let command = program;
  for (let i = argv.findIndex((a) => !a.startsWith('-')); i !== -1 && i < argv.length; i++) {
    const named = (name: string | undefined) => command.commands.find((c) => c.name() === name || c.aliases().includes(name ?? ''));
    if (argv[i] === 'help' && named(argv[i + 1]) !== undefined) return [...argv.slice(0, i), argv[i + 1], '--help', ...argv.slice(i + 2)];
    const sub = named(argv[i]);
    if (sub === undefined) break;
    command = sub;
  }
  return [...argv];
}

/** The version in package.json. */
function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
}

/** Runs the CLI; user mistakes print a message (no stack trace) and exit 2; failures exit 1. */
export async function run(argv: readonly string[]): Promise<number> {
  const args = sqlCommentsAsArguments(argv);
  // The program takes no option before the command but --help and --version, so a command's name (or `help`) is the
  // first argument. A flag there is the program's: `sluice --help cost` shows the program's help, listing every command.
  const program = buildProgram(args[0]?.startsWith('-') ? undefined : args[0]);
  try {
    await program.parseAsync(helpCommandAsHelpFlag(program, unknownCommandWithoutHelp(program, args)), { from: 'user' });
    return 0;
  } catch (err) {
    // Messages echo what was typed or read (names, values, file names): their control characters are escaped.
    const say = (message: string) => console.error(escapeControlCharactersInLines(`sluice: ${message}`));
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UserError) {
      say(err.message);
      return err.exitCode;
    }
    if (err instanceof ConfigError || err instanceof SchemaDerivationError || err instanceof EmulatorStateError) {
      say(err.message);
      return 2;
    }
    // Not a known kind of failure: the message, and the stack trace only when asked for (for a bug report).
    say(`${describeUnexpected(err)}${debugging() ? `\n${(err as Error).stack ?? ''}` : '\n(SLUICE_DEBUG=1 shows where it happened)'}`);
    return 1;
  }
}

function debugging(): boolean {
  return ['1', 'true', 'yes'].includes((process.env.SLUICE_DEBUG ?? '').toLowerCase());
}

/** An error's message; for one without (Node's AggregateError of a failed connection), its name, code and causes. */
function describeUnexpected(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.message) return err.message;
  const code = (err as NodeJS.ErrnoException).code;
  const inner = err instanceof AggregateError ? err.errors.map((e: unknown) => (e instanceof Error ? e.message : String(e))).filter(Boolean) : [];
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return [err.name, code, ...inner, cause].filter(Boolean).join(': ');
}

/**
 * EPIPE on stdout or stderr means the reader is gone (`sluice cost | head -1`, or a `tee` that a Ctrl-C
 * stopped): nothing more can be shown there, but the work goes on and ends as it would have, with its own
 * exit code. Above all `local up` must still flush what it acknowledged when its SIGINT comes. Writes to
 * the closed stream are dropped from then on instead of raising an unhandled 'error' event.
 */
function keepGoingWhenTheReaderIsGone(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      stream.write = (() => true) as typeof stream.write;
    });
  }
}

if (require.main === module || process.argv[1]?.endsWith('sluice.js') || process.argv[1]?.endsWith('sluice')) {
  keepGoingWhenTheReaderIsGone();
  void run(process.argv.slice(2)).then((code) => {
    // Commands fail by throwing (a UserError carries its code); a failure recorded in process.exitCode
    // instead is not overwritten by a 0.
    if (code !== 0) process.exitCode = code;
    // A call the command gave up on that nothing can end would hold the process: it ends now, its output written (an
    // unref'd timer fires only while something else keeps the process), and so does a credential_process it ran: in the
    // same synchronous stretch, as the SDK's chain would run the process again as the next source once the first is ended.
    if (callsAreLeftWaiting()) {
      setTimeout(() => {
        endChildProcesses();
        process.exit();
      }, 200).unref();
    }
  });
}
