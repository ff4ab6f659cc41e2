import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, didYouMean, validateConfig } from './validate';
import type { SluiceConfig } from './types';
import { lineAndColumn } from '../schema/model';

type Raw = Record<string, unknown>;

/** Context keys Sluice owns; anything else in CDK context (feature flags, aws:*) is CDK's. */
const SLUICE_KEYS = [
  'prefix', 'env', 'alarmEmail', 'removalPolicy', 'lifecycle', 'metadata', 'athena', 'opensearch', 'local',
  'pipelines', 'pipelineDefaults', 'environments',
];

/**
 * The environment when none is named: what cdk.json's top-level settings describe, with no overlay. Any other
 * env is defined under `environments` (an empty {} keeps the defaults), so a typo is refused instead of
 * deploying a new stack with the defaults.
 */
const DEFAULT_ENV = 'dev';

/** The project root: where cdk.json and schemas/ live. */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');

/**
 * Builds the configuration from CDK context the way CDK users expect:
 * cdk.json defaults, then `environments.<env>` for the chosen env, then `-c key.path=value` overrides.
 *
 * `context` is every context value in effect (cdk.json's and `-c`'s). Dotted keys are overrides:
 * `pipelines.iot.shards=8`. Their values arrive as strings from the command line, so they are read as
 * JSON when they parse (8, true, ["lake"]) and list-valued keys also accept "lake,metadata".
 */
export function configFromContext(
  context: Raw,
  options: {
    knownSchemas?: readonly string[];
    fileEnv?: unknown;
    /**
     * The keys the context files hold (cdk.json, cdk.context.json, ~/.cdk.json). Given, a key from elsewhere —
     * a `-c` on the command line — that is neither Sluice's nor CDK's is refused, as the CLI refuses it: a typo
     * (`-c environment=prod`) would otherwise synthesize the default stack.
     */
    fileKeys?: ReadonlySet<string>;
  } = {},
): SluiceConfig {
  const base: Raw = {};
  const overrides: Array<[string[], unknown]> = [];
  const problems: string[] = [];
  for (const [key, value] of Object.entries(context)) {
    const parts = key.split('.');
    if (!SLUICE_KEYS.includes(parts[0])) {
      if (options.fileKeys && !options.fileKeys.has(key) && !isCdkContextKey(key)) problems.push(notASetting(key));
      continue;
    }
    if (parts.length === 1) base[key] = parseContextValue(value);
    else if (parts[0] === 'environments') {
      problems.push(`-c ${key}: environments are defined in cdk.json only; for one run, give the setting itself with the env, e.g. -c env=${parts[1] ?? 'prod'} -c ${parts.slice(2).join('.') || 'opensearch.instanceCount'}=…`);
    } else overrides.push([parts, parseContextValue(value)]);
  }

  // `-c env=prod` replaces cdk.json's env before the per-environment overlay is chosen.
  const env = base.env === undefined ? DEFAULT_ENV : String(base.env);
  const environments = (base.environments ?? {}) as Raw;
  // The env cdk.json itself names is known too: a project may set its own default without an overlay.
  const knownEnvs = [...new Set([DEFAULT_ENV, ...(typeof options.fileEnv === 'string' ? [options.fileEnv] : []), ...Object.keys(environments)])];
  if (!knownEnvs.includes(env)) {
    const shown = typeof base.env === 'string' ? `"${env}"` : JSON.stringify(base.env);
    problems.push(`env: ${shown} is not a defined environment; known environments are ${knownEnvs.join(', ')} (define a new one under "environments" in cdk.json, `
      + '{} keeps the defaults; a stack deployed under another env name is reached once that name is defined)');
  }
  const overlay = Object.hasOwn(environments, env) ? environments[env] : undefined;
  let merged: Raw = { ...base, env };
  delete merged.environments;
  if (overlay !== undefined) merged = deepMerge(merged, overlay as Raw);

  for (const [parts, value] of overrides) {
    const problem = setPath(merged, parts, value);
    if (problem) problems.push(problem);
  }

  const defaults = (merged.pipelineDefaults ?? {}) as Raw;
  delete merged.pipelineDefaults;
  const pipelines = (merged.pipelines ?? {}) as Raw;
  const expanded: Raw = {};
  for (const [name, p] of Object.entries(pipelines)) {
    if (!isPlainObject(p)) {
      // Merging it would give the pipeline the defaults alone, dropping its own settings without a word.
      problems.push(`pipelines.${name}: must be an object of the pipeline's settings, got ${JSON.stringify(p) ?? String(p)}; to leave the pipeline out, remove it from cdk.json`);
      continue;
    }
    expanded[name] = deepMerge(defaults, p);
    problems.push(...settingsWithoutEffect(name, expanded[name] as Raw, (key) => layerSetting(name, key, base, overlay, overrides)));
  }
  merged.pipelines = expanded;

  // Validated even when an override could not be applied, so a typo in one -c does not hide the problems of the others.
  try {
    const config = validateConfig(merged, options);
    if (problems.length === 0) return config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...blameDefaults(err.problems, pipelines, defaults, expanded));
  }
  throw new ConfigError(problems);
}


/** The pipeline settings that take effect only with some source or destination: whether they do in `pipeline` (its merged settings). */
function settingNeeds(pipeline: Raw): Array<[key: string, used: boolean, what: string, decidedBy: string]> {
  const destinations = Array.isArray(pipeline.destinations) ? pipeline.destinations : [];
  const stream = 'source "kinesis" (a direct-put pipeline has no stream)';
  return [
    ['shards', pipeline.source !== 'direct-put', stream, 'source'],
    ['retentionHours', pipeline.source !== 'direct-put', stream, 'source'],
    ['streamEncryption', pipeline.source !== 'direct-put', stream, 'source'],
    ['consumer', destinations.includes('metadata'), 'the "metadata" destination', 'destinations'],
    ['search', destinations.includes('search'), 'the "search" destination', 'destinations'],
    ['buffering', destinations.includes('lake'), 'the "lake" destination (it is the lake delivery\'s buffer)', 'destinations'],
    ['transform', destinations.includes('lake') || destinations.includes('search'), 'the "lake" or "search" destination (the metadata consumer runs no transform)', 'destinations'],
  ];
}

/**
 * A pipeline's settings that its source or destinations make meaningless (`shards` on a direct-put pipeline,
 * `search` without the search destination) are refused when given in the same layer as what makes them
 * meaningless, or a later one: they would change nothing while the user believes they did. One given earlier
 * passes (cdk.json's `shards` for iot, and `-c pipelines.iot.source=direct-put` for one run), as do the defaults'.
 */
function settingsWithoutEffect(name: string, pipeline: Raw, layerOf: (key: string) => number): string[] {
  return settingNeeds(pipeline)
    .filter(([key, used, , decidedBy]) => !used && layerOf(key) >= Math.max(0, layerOf(decidedBy)))
    .map(([key, , what]) => `pipelines.${name}.${key}: only takes effect with ${what}; this pipeline's setting would change nothing: remove it`);
}

/**
 * The layer that last set a pipeline's key: -1 none (pipelineDefaults only), 0 the `pipelines` section, 1 the
 * environment's overlay, 2 the command line's dotted `-c`s (one layer: their order does not matter).
 */
function layerSetting(name: string, key: string, base: Raw, overlay: unknown, overrides: ReadonlyArray<[string[], unknown]>): number {
  const sets = (pipeline: unknown) => isPlainObject(pipeline) && Object.hasOwn(pipeline, key);
  const pipelineIn = (section: unknown) => (isPlainObject(section) && isPlainObject(section.pipelines) ? section.pipelines[name] : undefined);
  let layer = -1;
  if (sets(pipelineIn(base))) layer = 0;
  if (sets(pipelineIn(overlay))) layer = 1;
  for (const [parts, value] of overrides) {
    if (parts[0] !== 'pipelines' || parts[1] !== name) continue;
    if (parts.length === 2 ? sets(value) : parts[2] === key) layer = 2;
  }
  return layer;
}

/** Reads cdk.json's context from a project directory (the CLI and the twin use the same defaults as `cdk synth`). */
export function readCdkJsonContext(dir: string = PROJECT_ROOT): Raw {
  const file = path.join(dir, 'cdk.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new ConfigError([`cdk.json: not found at ${file}; run Sluice from its project directory`]);
  }
  try {
    const parsed = JSON.parse(text) as { context?: Raw };
    return parsed.context ?? {};
  } catch (err) {
    const message = (err as Error).message;
    throw new ConfigError([`cdk.json: ${file} is not valid JSON (${message}${lineAndColumn(message, text)})`]);
  }
}

/**
 * The keys of every context file the CDK CLI reads: the project's cdk.json and cdk.context.json (cached
 * lookups), and the user's ~/.cdk.json. Context keys from anywhere else came from `-c`.
 */
export function contextFileKeys(dir: string = PROJECT_ROOT, home: string = os.homedir()): Set<string> {
  const keys = new Set(Object.keys(readCdkJsonContext(dir)));
  for (const [file, nested] of [[path.join(dir, 'cdk.context.json'), false], [path.join(home, '.cdk.json'), true]] as const) {
    try {
      const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Raw;
      const context = nested ? parsed.context : parsed;
      if (isPlainObject(context)) for (const key of Object.keys(context)) keys.add(key);
    } catch {
      // Absent or unreadable: the CDK CLI would have said so itself.
    }
  }
  return keys;
}

/** CDK's own context: feature flags (`@aws-cdk/…`), the CLI's (`aws:cdk:…`) and cached lookups (`availability-zones:…`). */
function isCdkContextKey(key: string): boolean {
  return key.startsWith('@') || key.includes(':');
}

function notASetting(key: string): string {
  return `-c ${key}: not a Sluice setting; settings start with one of ${SLUICE_KEYS.join(', ')}${didYouMean(key.split('.')[0], SLUICE_KEYS)}`;
}

/** Pipelines that have a schema file in schemas/. */
export function knownSchemaNames(dir: string = PROJECT_ROOT): string[] {
  const schemaDir = path.join(dir, 'schemas');
  if (!fs.existsSync(schemaDir)) return [];
  return fs.readdirSync(schemaDir)
    .filter((f) => f.endsWith('.schema.json'))
    .map((f) => f.slice(0, -'.schema.json'.length))
    .sort();
}

/**
 * One warning per schema file the configuration has no pipeline for: such a schema is generated and shown, but nothing
 * deploys or runs it, and skipping "Adding a pipeline"'s cdk.json step is otherwise silent until `put`. A warning, not
 * an error: a schema may be kept for later, and `-c 'pipelines={…}'` may run some pipelines on purpose. Said by synth
 * (a stack annotation), the twin as it starts (`local up`, `demo`) and `cost`, the places that act on the list.
 */
export function unconfiguredSchemaWarnings(config: Pick<SluiceConfig, 'pipelines'>, knownSchemas: readonly string[] = knownSchemaNames()): string[] {
  return knownSchemas.filter((name) => !Object.hasOwn(config.pipelines, name)).map((name) =>
    `schemas/${name}.schema.json has no entry under "pipelines" in cdk.json, so nothing deploys or runs it: add "${name}": {} there `
    + `(or -c 'pipelines.${name}={}' for one command); a schema kept for later can stay as it is`);
}

/**
 * Parses `key=value` pairs as `-c` does and loads the configuration with cdk.json's defaults.
 * Used by the CLI and the local twin so `sluice local up -c pipelines.iot.shards=2` means what it means to cdk.
 */
export function loadConfig(overrides: readonly string[] = [], dir: string = PROJECT_ROOT): SluiceConfig {
  const fileContext = readCdkJsonContext(dir);
  const context: Raw = { ...fileContext };
  const problems: string[] = [];
  /** Top-level settings a -c object replaced whole. */
  const replaced: string[] = [];
  for (const pair of overrides) {
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      problems.push(`-c ${pair}: expected key=value, e.g. -c pipelines.iot.shards=8`);
      continue;
    }
    const key = pair.slice(0, eq);
    // cdk.json also holds CDK's own context; a -c given to Sluice that is none of its settings is a slip.
    if (!SLUICE_KEYS.includes(key.split('.')[0])) {
      problems.push(notASetting(key));
      continue;
    }
    const value = pair.slice(eq + 1);
    if (!key.includes('.')) {
      const parsed = parseContextValue(value);
      const hidden = prototypeKeyIn(parsed);
      if (hidden !== undefined) {
        problems.push(`-c ${key}: "${hidden}" is not a configuration key`);
        continue;
      }
      if (key === 'environments') {
        problems.push('-c environments: environments are defined in cdk.json only; for one run, give the setting itself with the env, e.g. -c env=prod -c opensearch.instanceCount=…');
        continue;
      }
      // A whole top-level setting replaces cdk.json's, as CDK's own -c does (and `cdk deploy -c` must mean the same).
      if (isPlainObject(parsed) && isPlainObject(fileContext[key])) replaced.push(key);
    }
    context[key] = value;
  }
  try {
    const config = configFromContext(context, { knownSchemas: knownSchemaNames(dir), fileEnv: fileContext.env });
    if (problems.length === 0) return config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // What the replacement left out is what is now missing: say so first, with the way to change only some settings.
    for (const key of replaced) {
      const example = Object.keys(fileContext[key] as Raw)[0] ?? 'name';
      problems.push(`-c ${key}: replaces cdk.json's whole "${key}" (as CDK's -c does), so the settings it does not name are gone; to change only some, give each its own key, e.g. -c ${key}.${example}=…`);
    }
    problems.push(...err.problems);
  }
  throw new ConfigError(problems);
}

/**
 * A problem found in a pipeline's merged settings whose value came from `pipelineDefaults` (the pipeline
 * itself does not set that key) is reported once, under the key the user wrote, instead of once per pipeline
 * under keys they never typed. Only when every pipeline that takes that value from pipelineDefaults, and where
 * it takes effect, has the same problem: one that only some of them have comes of those pipelines' own
 * settings (a default `destinations` with "metadata" on the one pipeline whose own source is direct-put),
 * and stays theirs.
 */
function blameDefaults(problems: readonly string[], pipelines: Raw, defaults: Raw, expanded: Raw): string[] {
  const names = Object.keys(pipelines);
  const located = problems.map((problem) => {
    for (const name of names) {
      const prefix = `pipelines.${name}.`;
      if (!problem.startsWith(prefix)) continue;
      const rest = problem.slice(prefix.length);
      const colon = rest.indexOf(':');
      const keyPath = (colon === -1 ? rest : rest.slice(0, colon)).split('.');
      const inherited = hasPath(defaults, keyPath) && !hasPath(pipelines[name], keyPath);
      return { problem, name, rest, keyPath, inherited };
    }
    return { problem, name: undefined, rest: problem, keyPath: [], inherited: false };
  });
  const out: string[] = [];
  for (const { problem, rest, keyPath, inherited } of located) {
    let message = problem;
    if (inherited) {
      // A default that changes nothing in a pipeline (`search` without the search destination) cannot be wrong there.
      const takesEffect = (n: string) => !isPlainObject(expanded[n]) || !settingNeeds(expanded[n]).some(([key, used]) => key === keyPath[0] && !used);
      const inheritors = names.filter((n) => !hasPath(pipelines[n], keyPath) && takesEffect(n));
      const withIt = new Set(located.filter((l) => l.inherited && l.rest === rest).map((l) => l.name));
      if (inheritors.every((n) => withIt.has(n))) message = `pipelineDefaults.${rest}`;
    }
    if (!out.includes(message)) out.push(message);
  }
  return out;
}

function hasPath(value: unknown, keyPath: readonly string[]): boolean {
  let node = value;
  for (const key of keyPath) {
    if (!isPlainObject(node) || !Object.hasOwn(node, key)) return false;
    node = node[key];
  }
  return true;
}

function parseContextValue(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const trimmed = value.trim();
  if (trimmed === '') return value;
  try {
    return JSON.parse(trimmed);
  } catch {
    return value;
  }
}

const LIST_KEYS = new Set(['destinations']);

function setPath(target: Raw, parts: string[], value: unknown): string | undefined {
  const key = parts.join('.');
  let node: Raw = target;
  for (let i = 0; i < parts.length - 1; i++) {
    const part = parts[i];
    if (isPrototypeKey(part)) return `${key}: "${part}" is not a configuration key`;
    const next = node[part];
    if (next === undefined) {
      if (parts[0] === 'pipelines' && i === 1) {
        const known = Object.keys((target.pipelines ?? {}) as Raw);
        return `${key}: unknown pipeline "${part}"${didYouMean(part, known)}; known pipelines are ${known.join(', ')} (add new ones to cdk.json)`;
      }
      node[part] = {};
    } else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
      return `${key}: "${parts.slice(0, i + 1).join('.')}" is not an object, so it has no key "${parts[i + 1]}"`;
    }
    node = node[part] as Raw;
  }
  const last = parts[parts.length - 1];
  if (isPrototypeKey(last)) return `${key}: "${last}" is not a configuration key`;
  const hidden = prototypeKeyIn(value);
  if (hidden !== undefined) return `${key}: "${hidden}" is not a configuration key`;
  const current = node[last];
  // An object merges into the settings there, as an environment's overlay does: `-c pipelines.iot={"shards":4}`
  // changes iot's shards and keeps the rest of its settings, rather than dropping them without a word.
  if (isPlainObject(current) && isPlainObject(value)) node[last] = deepMerge(current, value);
  else node[last] = LIST_KEYS.has(last) && typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value;
  return undefined;
}

/** A `__proto__`, `constructor` or `prototype` key anywhere in a parsed -c value (merging would follow it). */
function prototypeKeyIn(value: unknown): string | undefined {
  if (Array.isArray(value)) {
    for (const item of value) {
      const found = prototypeKeyIn(item);
      if (found !== undefined) return found;
    }
  } else if (isPlainObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (isPrototypeKey(k)) return k;
      const found = prototypeKeyIn(v);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

function isPrototypeKey(part: string): boolean {
  return part === '__proto__' || part === 'constructor' || part === 'prototype';
}

function deepMerge(base: Raw, over: Raw): Raw {
  const out: Raw = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}

function isPlainObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
