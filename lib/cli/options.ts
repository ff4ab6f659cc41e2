/**
 * Flags every command shares, and the parsers for the values users type (`5m`, `200/s`, `1.5KB`).
 * Parsers throw UserError naming the flag and an example, so a typo exits 2 with a message.
 */
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import { loadConfig, type SluiceConfig } from '../config';
import { escapeControlCharacters, UserError } from './output';
import { generatedCodeProblem } from '../schema/fingerprint';
import { describeSchema } from '../schema/model';
import { listSchemas, readSchema } from '../schema/registry';
import { SampleError } from '../schema/sample';

/** `-c key=value`, repeatable, exactly as `cdk -c`: the same overrides the stack and the twin read. */
export function addConfigOption(command: Command): Command {
  return command.option(
    '-c, --context <key=value>',
    'override configuration as `cdk -c` does (repeatable), e.g. -c env=prod -c pipelines.iot.shards=4',
    (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
  );
}

/** Where a command runs: the local twin (default) or a deployed stack. */
export interface TargetFlags {
  readonly context?: string[];
  readonly aws?: boolean;
  readonly stack?: string;
  readonly region?: string;
  readonly dataDir?: string;
  readonly endpointFirehose?: string;
  readonly endpointKinesis?: string;
  readonly endpointOpensearch?: string;
}

/** The flags that pick the twin or AWS, and the twin's endpoints (each also an environment variable). */
export function addTargetOptions(command: Command, uses: { firehose?: boolean; kinesis?: boolean; opensearch?: boolean; dataDir?: boolean } = {}): Command {
  addConfigOption(command);
  command
    .option('--aws', 'run against the deployed stack (standard AWS credential chain and region) instead of the local twin')
    .option('--stack <name>', 'CloudFormation stack whose outputs name the resources (with --aws; default <prefix>-<env>, env SLUICE_STACK)')
    .option('--region <region>', 'AWS region (with --aws; default: AWS_REGION or your profile\'s region)');
  if (uses.dataDir) {
    command.addOption(new Option('--data-dir <dir>', 'the local twin\'s data dir (default .sluice in the working directory)').env('SLUICE_DATA_DIR'));
  }
  if (uses.firehose) {
    command.addOption(new Option('--endpoint-firehose <url>', 'the twin\'s Firehose API (default: the port SLUICE_FIREHOSE_PORT names, else the one the data dir\'s running twin took, else local.firehosePort)').env('SLUICE_FIREHOSE_ENDPOINT'));
  }
  if (uses.kinesis) {
    command.addOption(new Option('--endpoint-kinesis <url>', 'the twin\'s Kinesis API (default: the port SLUICE_KINESIS_PORT names, else the one the data dir\'s running twin took, else local.kinesisPort)').env('SLUICE_KINESIS_ENDPOINT'));
  }
  if (uses.opensearch) {
    command.addOption(new Option('--endpoint-opensearch <url>', 'an OpenSearch to query locally (default: none)').env('OPENSEARCH_URL'));
  }
  return command;
}

/**
 * The data dir `given` (--data-dir or SLUICE_DATA_DIR) names, resolved. A leading `~` is refused: a shell leaves it as it
 * is after `=` (`--data-dir=~/x` in bash, zsh and sh) and in quotes, and the twin would make a folder named `~` here.
 */
export function dataDirPath(given: string): string {
  if (given === '~' || given.startsWith('~/')) {
    throw new UserError(`the data dir ${given} starts with a ~ the shell did not expand (none is after "=", as in --data-dir=~/…, or in quotes): `
      + `give \`--data-dir ~/…\` with a space, or the full path (./${given} for a folder named ~ here)`);
  }
  return path.resolve(given);
}

/**
 * For a command whose free-text argument can start with '-' (a NOT query, `-event_type:click`): the parser takes such an
 * argument for options, so it stops with "unknown option", and that error adds `hint`, which says to put `--` before it
 * (after `--` nothing is read as an option). An unknown `--…` is left as it is: that is a mistyped flag, and commander
 * suggests the right one. A query that begins like one of the command's short options is an unknown option too (see
 * dashedQueriesAsUnknownOptions).
 */
export function hintDashesBeforeDashedArgument(command: Command, hint: () => string): Command {
  dashedQueriesAsUnknownOptions(command);
  const { outputError = (text: string, write: (text: string) => void) => write(text) } = command.configureOutput();
  return command.configureOutput({
    outputError: (text, write) => outputError(text.replace(/^(error: unknown option '-[^-][^\n]*')\n$/, (_, error: string) => `${error}; ${hint()}\n`), write),
  });
}

/**
 * Commander reads a single-dash argument whose second character is one of the command's short options as that option,
 * and the rest as its value or as more short options: `-country:FR` as `-c ountry:FR` (a configuration override), and,
 * at the program, which reads its options anywhere on the line before the command does, `-Vendor:acme` as -V (print the
 * version). Such an argument whose rest reads as a query is left unparsed instead, as an unknown option: the command
 * then stops with "unknown option" (and its hint, see hintDashesBeforeDashedArgument). A short option's own value
 * (`-cenv=prod`) has no query syntax before its `=`, so real short options read as before; and `-c` joined to a rest
 * without `=` (`-country`, NOT country) is no override, as every override is key=value.
 */
export function dashedQueriesAsUnknownOptions(command: Command): Command {
  const parseOptions = command.parseOptions.bind(command);
  command.parseOptions = (args) => {
    const at = queryReadAsShortOptionAt(command, args);
    if (at === -1) return parseOptions(args);
    // As commander does from the first unknown option on: that argument and the rest are left to the command.
    const parsed = parseOptions(args.slice(0, at));
    return { operands: parsed.operands, unknown: [...parsed.unknown, ...args.slice(at)] };
  };
  return command;
}

/** Query-string syntax no short option's value has before its `=`: fields, phrases, wildcards, groups, ranges, operators, white space. */
const QUERY_SYNTAX_BEFORE_EQUALS = /^[^=]*[:"*?()[\]{}~^\\/<>!&|+\s]/;

/**
 * The index in `args` of the first argument commander would read as one of the command's short options with more after
 * it (`-country:FR`) where that rest reads as a query; -1 when there is none. Arguments are walked as commander walks
 * them: an option's value is the next argument whatever it looks like (`--index -logs-*`), and `--` ends options.
 */
function queryReadAsShortOptionAt(command: Command, args: readonly string[]): number {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') return -1;
    const option = command.options.find((o) => o.short === arg || o.long === arg);
    if (option) {
      if (option.required || (option.optional && i + 1 < args.length && !args[i + 1].startsWith('-'))) i++;
      continue;
    }
    if (!/^-[^-]./.test(arg)) continue;
    const short = command.options.find((o) => o.short === arg.slice(0, 2));
    if (short === undefined) continue;
    if (QUERY_SYNTAX_BEFORE_EQUALS.test(arg.slice(2))) return i;
    // `-c`'s value is always key=value: `-country` (NOT country) joined to it without one can only be a query.
    if (short.long === '--context' && !arg.includes('=')) return i;
  }
  return -1;
}

/** `--progress`: progress lines on stderr even when it is not a terminal. */
export function addProgressOption(command: Command): Command {
  return command.option('--progress', 'report progress on stderr even when it is not a terminal (it always is on a terminal)');
}

/** Loads the configuration with the command's `-c` overrides. */
export function configFrom(flags: Pick<TargetFlags, 'context'>): SluiceConfig {
  return loadConfig(flags.context ?? []);
}

/** The configured pipeline, or a UserError listing the configured ones. */
export function requirePipeline(config: SluiceConfig, pipeline: string): SluiceConfig['pipelines'][string] {
  const p = config.pipelines[pipeline];
  if (!p) throw unknownPipeline(pipeline, 'configured', Object.keys(config.pipelines));
  return p;
}

/**
 * Refuses pipelines whose generated code (the validator the twin and `put` load) is not of their schema file as it is
 * now: edited, or added, without `npm run generate` since. Run on, the twin would validate with the old schema while
 * `sluice schema` and `query` show the new one, and records with a new field would go to the DLQ. Returns the schema
 * files it read, by pipeline, for the caller to draw records from without reading them again. A pipeline without a
 * schema file has none there, and no problem: the configuration says that. A schema file that is not JSON, or that
 * changed into one the derivation refuses, throws its SchemaDerivationError, as everything that reads it does.
 */
export function requireGeneratedCode(pipelines: readonly string[]): ReadonlyMap<string, object> {
  const files = listSchemas();
  const schemas = new Map(pipelines.filter((p) => files.includes(p)).map((p) => [p, readSchema(p)]));
  const problems = [...schemas].map(([p, schema]) => {
    const problem = generatedCodeProblem(p, schema);
    // An edited schema may be one `npm run generate` would refuse: its own error says what to fix, at once.
    if (problem !== undefined) describeSchema(p, schema);
    return problem;
  }).filter((p): p is string => p !== undefined);
  if (problems.length > 0) throw new UserError(problems.join('; '));
  return schemas;
}

/**
 * The UserError for a pipeline name that is none of `known`. The name is echoed as typed, its control characters
 * escaped as table cells print them: a pasted name cannot clear, recolour or retitle the terminal.
 */
export function unknownPipeline(pipeline: string, kind: 'configured' | 'known', known: readonly string[]): UserError {
  // A schema without its cdk.json entry: the step the schema author missed, as synth's message gives the other way round.
  const configure = kind === 'configured' && listSchemas().includes(pipeline)
    ? `. schemas/${pipeline}.schema.json exists: add "${pipeline}": {} under "pipelines" in cdk.json (or -c 'pipelines.${pipeline}={}' for one command)`
    : '';
  return new UserError(`unknown pipeline "${escapeControlCharacters(pipeline)}"; ${kind} pipelines: ${known.join(', ')}${configure}`);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** The longest duration a flag takes: whole milliseconds still exact (about 285,000 years). */
const MAX_DURATION_MS = Number.MAX_SAFE_INTEGER;

/** `90s`, `5m`, `1h30m`, `500ms`, `2d`; a bare number is seconds. */
export function parseDuration(value: string, flag: string, options: { readonly zero?: boolean } = {}): number {
  const text = value.trim().toLowerCase();
  let ms: number;
  if (/^\d+(\.\d+)?$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
    if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
      throw new UserError(`${flag} ${JSON.stringify(value)}: expected a duration such as 30s, 5m, 1h30m or 500ms`);
    }
    ms = parts.reduce((sum, p) => sum + Number(p[1]) * DURATION_UNITS[p[2]], 0);
  }
  // Written as 0 or 0s alike: refused unless the flag takes zero (`--outage-wait 0`: do not wait).
  if (!(ms > 0) && !(options.zero && ms === 0)) throw new UserError(`${flag} ${JSON.stringify(value)}: the duration must be more than zero`);
  // Beyond this a duration is no longer a whole number of milliseconds (and 400 nines are Infinity): a slip.
  if (ms > MAX_DURATION_MS) throw new UserError(`${flag} ${JSON.stringify(value)}: the duration is too long; at most ${Math.floor(MAX_DURATION_MS / DURATION_UNITS.d).toLocaleString('en-US')}d`);
  return ms;
}

const RATE_UNITS: Record<string, number> = { s: 1, sec: 1, min: 1 / 60, m: 1 / 60, h: 1 / 3600, hr: 1 / 3600 };

/** Records (events) per second: `200`, `200/s`, `5k/s`, `12000/min`, `1M/h` (k thousands, M millions). */
export function parseRate(value: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([km]?)\s*(?:\/\s*(s|sec|min|m|h|hr))?\s*$/i.exec(value);
  if (!m) throw new UserError(`${flag} ${JSON.stringify(value)}: expected records per second such as 200, 200/s, 5k/s, 2M/h or 12000/min`);
  // Elsewhere "5m" is five minutes: a lower-case m here could mean per minute as well as millions.
  if (m[2] === 'm') throw new UserError(`${flag} ${JSON.stringify(value)}: write ${m[1]}M for ${m[1]} million per second or ${m[1]}/min for ${m[1]} per minute`);
  const scale = m[2].toLowerCase() === 'k' ? 1e3 : m[2] === 'M' ? 1e6 : 1;
  const perSecond = Number(m[1]) * scale * RATE_UNITS[(m[3] ?? 's').toLowerCase()];
  if (!Number.isFinite(perSecond)) throw new UserError(`${flag} ${JSON.stringify(value)}: the rate is too large a number`);
  if (!(perSecond > 0)) throw new UserError(`${flag} ${JSON.stringify(value)}: the rate must be more than zero`);
  return perSecond;
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1000, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 };

/** Bytes: `800`, `800B`, `1KB` (1,000), `1KiB` (1,024), `2.5MB`. */
export function parseSize(value: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*$/i.exec(value);
  if (!m) throw new UserError(`${flag} ${JSON.stringify(value)}: expected a size such as 800B, 1KB, 1KiB or 2.5MB`);
  const bytes = Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()];
  if (!Number.isFinite(bytes)) throw new UserError(`${flag} ${JSON.stringify(value)}: the size is too large a number`);
  if (!(bytes >= 1)) throw new UserError(`${flag} ${JSON.stringify(value)}: the size must be at least 1 byte`);
  // A fraction of a byte is a slip (1.5 meant 1.5KB?), not something to round away in silence.
  // (Decimal fractions are not exact in binary: 1.1 × 1,000 is 1,100.0000000000002.)
  const whole = Math.round(bytes);
  if (Math.abs(bytes - whole) > 1e-9 * Math.max(1, bytes)) throw new UserError(`${flag} ${JSON.stringify(value)}: ${bytes} is not a whole number of bytes; give a unit, e.g. ${m[1]}KB or ${m[1]}KiB`);
  return whole;
}

/** A whole number in [min, max], written in digits (`1_000` too). */
export function parseCount(value: string, flag: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  // Number() reads "" and "  " as 0, and 0x10 as 16: an empty `--size "$N"` must not quietly mean 0.
  const digits = value.trim();
  const n = /^\d[\d_]*$/.test(digits) ? Number(digits.replace(/_/g, '')) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UserError(`${flag} ${JSON.stringify(value)}: expected a whole number from ${min.toLocaleString('en-US')} to ${max.toLocaleString('en-US')}`);
  }
  return n;
}

/** `1h` → "1 h", 90_000 → "1 m 30 s": durations as people read them. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  if (minutes < 60) return seconds > 0 ? `${minutes} m ${seconds} s` : `${minutes} m`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${minutes % 60} m`;
}

/** Help text: an "Examples:" block, the way every command ends its --help. */
export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`;
}

/**
 * A port from a flag or an environment variable (`SLUICE_*_PORT`), or undefined when it is not set:
 * an empty or blank variable counts as not set, so every command reads the variables alike.
 */
export function parsePort(raw: string | undefined, what: string): number | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`${what}: "${raw}" is not a port (0–65535; 0 picks a free one)`);
  return port;
}

/**
 * `draw()`, with a schema the sampler cannot draw from reported as a usage problem naming the pipeline and the field.
 * `otherwise` ends the advice: `put`'s other way out, by default, or what the caller says instead.
 */
export function drawSample<T>(pipeline: string, draw: () => T, otherwise = ', or send your own records with --file'): T {
  try {
    return draw();
  } catch (err) {
    if (!(err instanceof SampleError)) throw err;
    throw new UserError(`cannot generate ${pipeline} records: field ${err.field}: ${err.problem}; add "examples" to it in schemas/${pipeline}.schema.json${otherwise}`);
  }
}
