import {
  DESTINATIONS,
  INDEX_ROTATIONS,
  MAX_LOCAL_BUFFER_INTERVAL_SECONDS,
  MAX_PROVISIONED_SHARDS,
  OPENSEARCH_MODES,
  REMOVAL_POLICIES,
  SOURCES,
  STREAM_ENCRYPTION,
  type PipelineConfig,
  type SluiceConfig,
} from './types';
import { PIPELINE_NAME, PIPELINE_NAME_RULE, resourceNames, SEARCH_DOMAIN_MAX_LENGTH } from './names';
import { domainSizeProblems } from './opensearch';
import { ACTIVE_PARTITION_QUOTA } from './delivery';
import { ERRORS_TABLE_SUFFIX } from '../schema/layout';

/** Thrown for a configuration AWS (or Sluice) would reject; lists every problem, one per line. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid Sluice configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

type Raw = Record<string, unknown>;

/**
 * Reads a raw (merged) configuration object into a typed SluiceConfig, collecting every problem.
 * Each problem names the key, the value and what is allowed, so `cdk synth` fails before CloudFormation would.
 */
export function validateConfig(raw: Raw, options: { knownSchemas?: readonly string[] } = {}): SluiceConfig {
  const v = new Reader();
  const cfg = v.object(raw, '', ['prefix', 'env', 'alarmEmail', 'removalPolicy', 'lifecycle', 'metadata', 'athena', 'opensearch', 'local', 'pipelines']);

  const prefix = v.pattern(cfg, 'prefix', /^[a-z][a-z0-9-]{0,19}$/, 'lower-case letters, digits and "-", starting with a letter, at most 20 characters');
  const env = v.pattern(cfg, 'env', /^[a-z][a-z0-9-]{0,9}$/, 'lower-case letters, digits and "-", starting with a letter, at most 10 characters');
  // CloudFormation names the stack's buckets `<stack>-<logical id>-<random>` (lower case), and the stack is `<prefix>-<env>`.
  const bucketStart = `${prefix}-${env}`;
  const reserved = RESERVED_BUCKET_PREFIXES.find((r) => bucketStart.startsWith(r));
  if (reserved !== undefined) {
    v.problem(`prefix: "${prefix}" with env "${env}" makes the stack "${bucketStart}", whose S3 buckets CloudFormation names "${bucketStart}-…"; `
      + `S3 refuses bucket names that start with "${reserved}" (reserved by AWS), so choose another prefix`);
  }
  // The address goes into the template as a string, so only what an address is made of: "${Token[…]}" would be
  // resolved by CDK and "{{resolve:…}}" by CloudFormation into something else entirely.
  const alarmEmail = cfg.alarmEmail === undefined || cfg.alarmEmail === '' ? undefined
    : v.pattern(cfg, 'alarmEmail', /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$/,
      'an e-mail address such as oncall@example.com');
  const removalPolicy = v.oneOf(cfg, 'removalPolicy', REMOVAL_POLICIES);

  const lc = v.object(cfg.lifecycle, 'lifecycle', ['infrequentAccessDays', 'glacierDays', 'errorExpirationDays']);
  const infrequentAccessDays = v.int(lc, 'lifecycle.infrequentAccessDays', 30, 3650, 'S3 moves objects to STANDARD_IA no sooner than 30 days');
  const glacierDays = v.int(lc, 'lifecycle.glacierDays', 1, 36500);
  if (glacierDays < infrequentAccessDays + 30) {
    v.problem(`lifecycle.glacierDays: ${glacierDays} must be at least 30 days after lifecycle.infrequentAccessDays (${infrequentAccessDays}), as S3 requires`);
  }
  const errorExpirationDays = v.int(lc, 'lifecycle.errorExpirationDays', 1, 3650);

  const md = v.object(cfg.metadata, 'metadata', ['ttlDays']);
  const ttlDays = v.int(md, 'metadata.ttlDays', 1, 3650);

  const at = v.object(cfg.athena, 'athena', ['bytesScannedCutoffMiB']);
  const bytesScannedCutoffMiB = v.int(at, 'athena.bytesScannedCutoffMiB', 10, 1024 * 1024, 'Athena accepts a cutoff of at least 10 MB');

  const os = v.object(cfg.opensearch, 'opensearch', ['mode', 'endpoint', 'domainArn', 'engineVersion', 'instanceType', 'instanceCount', 'volumeGiB']);
  const mode = v.oneOf(os, 'opensearch.mode', OPENSEARCH_MODES);
  const endpoint = os.endpoint === undefined || os.endpoint === '' ? undefined
    : v.pattern(os, 'opensearch.endpoint', /^https:\/\/[A-Za-z0-9.-]+(:\d+)?\/?$/, 'an https:// URL of the domain endpoint');
  const domainArn = os.domainArn === undefined || os.domainArn === '' ? undefined
    : v.pattern(os, 'opensearch.domainArn', /^arn:aws[a-z-]*:es:[a-z0-9-]+:\d{12}:domain\/[a-z][a-z0-9-]{2,27}$/, 'an OpenSearch domain ARN (arn:aws:es:<region>:<account>:domain/<name>)');
  const engineVersion = v.pattern(os, 'opensearch.engineVersion', /^OpenSearch_\d+\.\d+$/, 'e.g. "OpenSearch_2.19"');
  const instanceType = v.pattern(os, 'opensearch.instanceType', /^[a-z0-9]+\.[a-z0-9]+\.search$/, 'an OpenSearch instance type such as "t3.small.search"');
  const instanceCount = v.int(os, 'opensearch.instanceCount', 1, 80);
  const volumeGiB = v.int(os, 'opensearch.volumeGiB', 10, 16384);

  const lo = v.object(cfg.local, 'local', ['firehosePort', 'kinesisPort', 'dynamoPort', 'bufferSizeMiB', 'bufferIntervalSeconds']);
  const local = {
    firehosePort: v.int(lo, 'local.firehosePort', 1, 65535),
    kinesisPort: v.int(lo, 'local.kinesisPort', 1, 65535),
    dynamoPort: v.int(lo, 'local.dynamoPort', 1, 65535),
    bufferSizeMiB: v.number(lo, 'local.bufferSizeMiB', 0.001, 128),
    bufferIntervalSeconds: v.number(lo, 'local.bufferIntervalSeconds', 0, MAX_LOCAL_BUFFER_INTERVAL_SECONDS),
  };
  // The twin listens on all three at once: a shared port would fail `sluice local up` with EADDRINUSE.
  const portKeys = ['firehosePort', 'kinesisPort', 'dynamoPort'] as const;
  portKeys.forEach((k, i) => {
    const earlier = portKeys.slice(0, i).find((e) => Number.isInteger(lo[e]) && lo[e] === lo[k]);
    if (earlier && Number.isInteger(lo[k])) v.problem(`local.${k}: ${local[k]} is also local.${earlier}; the twin listens on each, so give every one its own port`);
  });

  const pipelinesRaw = v.object(cfg.pipelines, 'pipelines', undefined);
  const pipelines: Record<string, PipelineConfig> = {};
  const names = Object.keys(pipelinesRaw);
  if (names.length === 0) v.problem('pipelines: at least one pipeline is required');
  for (const name of names) {
    const p = readPipeline(v, name, pipelinesRaw[name], prefix, env, options.knownSchemas);
    if (p) pipelines[name] = p;
  }

  // Each lake pipeline has a Glue table and an errors table: `orders-errors` beside `orders` would share one.
  const tables = new Map<string, string>();
  for (const name of Object.keys(pipelines).filter((n) => pipelines[n].destinations.includes('lake'))) {
    const table = resourceNames({ prefix, env }, name).glueTable;
    for (const t of [table, `${table}${ERRORS_TABLE_SUFFIX}`]) {
      const other = tables.get(t);
      if (other !== undefined) v.problem(`pipelines: "${other}" and "${name}" both map to the Glue table "${t}"; rename one of them`);
      else tables.set(t, name);
    }
  }

  // A search pipeline's indices are `<index>-…` and everything of it on the domain addresses `<index>-*` (index template,
  // mapping updates, retention policy, the delivery role's paths): `orders-eu-…` indices would match `orders`'s too, and
  // OpenSearch refuses two index templates of one priority whose patterns overlap.
  const searchIndices = Object.keys(pipelines).filter((n) => pipelines[n].destinations.includes('search'))
    .map((name) => ({ name, index: resourceNames({ prefix, env }, name).indexPrefix }));
  for (const a of searchIndices) {
    for (const b of searchIndices) {
      if (b.index.startsWith(`${a.index}-`)) {
        v.problem(`pipelines: "${b.name}"'s OpenSearch indices (${b.index}-…) match "${a.name}"'s index pattern ${a.index}-*, so ${a.name}'s index template, `
          + `mapping updates, retention and delivery permissions would reach them (and OpenSearch refuses two index templates whose patterns overlap); `
          + `rename one so that neither name followed by "-" begins the other`);
      }
    }
  }

  const usesSearch = searchIndices.length > 0;
  if (usesSearch && mode === 'existing' && (!endpoint || !domainArn)) {
    v.problem('opensearch: mode "existing" needs both opensearch.endpoint and opensearch.domainArn');
  }
  if (usesSearch && mode === 'existing' && endpoint) {
    const problem = vpcEndpointProblem(endpoint);
    if (problem !== undefined) v.problem(`opensearch: ${problem}`);
  }
  if (usesSearch && mode === 'existing' && endpoint && domainArn) {
    const problem = endpointArnMismatch(endpoint, domainArn);
    if (problem !== undefined) v.problem(`opensearch: ${problem}`);
  }
  // Given without mode "existing" they would be ignored: the stack would create a domain of its own and deliver there,
  // while the user believes their domain receives the documents.
  if (usesSearch && mode === 'create' && (endpoint || domainArn)) {
    const given = [endpoint && 'opensearch.endpoint', domainArn && 'opensearch.domainArn'].filter(Boolean).join(' and ');
    v.problem(`opensearch: ${given} name${endpoint && domainArn ? '' : 's'} a domain, but opensearch.mode is "create", so the stack would create a domain of its own `
      + `(${resourceNames({ prefix, env }, '').searchDomain}) and deliver there, never to that one. Set opensearch.mode to "existing" to deliver to it, `
      + 'or leave them out ("" clears one an earlier layer set)');
  }
  if (usesSearch && mode === 'create') for (const problem of domainSizeProblems({ instanceType, instanceCount, volumeGiB }, 'opensearch.')) v.problem(problem);
  const domainName = resourceNames({ prefix, env }, '').searchDomain;
  if (usesSearch && mode === 'create' && domainName.length > SEARCH_DOMAIN_MAX_LENGTH) {
    v.problem(`opensearch: the domain this stack creates is named "${domainName}" (prefix-env), ${domainName.length} characters; OpenSearch allows ${SEARCH_DOMAIN_MAX_LENGTH} — shorten prefix or env`);
  }

  v.throwIfAny();
  return {
    prefix, env, alarmEmail, removalPolicy,
    lifecycle: { infrequentAccessDays, glacierDays, errorExpirationDays },
    metadata: { ttlDays },
    athena: { bytesScannedCutoffMiB },
    opensearch: { mode, endpoint, domainArn, engineVersion, instanceType, instanceCount, volumeGiB },
    local,
    pipelines,
  };
}

function readPipeline(v: Reader, name: string, raw: unknown, prefix: string, env: string, knownSchemas?: readonly string[]): PipelineConfig | undefined {
  const key = `pipelines.${name}`;
  if (!PIPELINE_NAME.test(name)) {
    v.problem(`${key}: pipeline name "${name}" must be ${PIPELINE_NAME_RULE}`);
    return undefined;
  }
  if (knownSchemas && !knownSchemas.includes(name)) {
    v.problem(`${key}: no schema for pipeline "${name}"; add schemas/${name}.schema.json (known: ${knownSchemas.join(', ')})`);
  }
  const p = v.object(raw, key, ['source', 'shards', 'retentionHours', 'streamEncryption', 'destinations', 'buffering', 'transform', 'consumer', 'search']);
  const source = v.oneOf(p, `${key}.source`, SOURCES);
  const shards = p.shards === 'on-demand' ? 'on-demand' as const : v.int(p, `${key}.shards`, 1, MAX_PROVISIONED_SHARDS, 'or "on-demand"');
  const retentionHours = v.int(p, `${key}.retentionHours`, 24, 8760, 'Kinesis retention is 24 hours to 365 days');
  const streamEncryption = v.oneOf(p, `${key}.streamEncryption`, STREAM_ENCRYPTION);
  const destinations = v.list(p, `${key}.destinations`, DESTINATIONS);
  if (destinations.length === 0) v.problem(`${key}.destinations: at least one of ${DESTINATIONS.join(', ')} is required`);
  if (new Set(destinations).size !== destinations.length) v.problem(`${key}.destinations: [${destinations.join(', ')}] names a destination twice`);
  // Firehose names are limited to 64 characters: check the longest of the delivery streams this pipeline has.
  const deliveryStream = destinations.includes('search') ? resourceNames({ prefix, env }, name).searchDeliveryStream
    : destinations.includes('lake') ? resourceNames({ prefix, env }, name).lakeDeliveryStream : undefined;
  if (deliveryStream !== undefined && deliveryStream.length > 64) {
    v.problem(`${key}: delivery stream name "${deliveryStream}" would be ${deliveryStream.length} characters; Firehose allows 64 — shorten prefix, env or pipeline name`);
  }
  if (source === 'direct-put') {
    for (const d of destinations) {
      if (d !== 'lake') {
        v.problem(`${key}.destinations: "${d}" needs a Kinesis stream to read, but source is "direct-put"; a direct-put pipeline delivers to "lake" only (set source to "kinesis" or remove "${d}")`);
      }
    }
  }

  const b = v.object(p.buffering, `${key}.buffering`, ['sizeMiB', 'intervalSeconds', 'activePartitionQuota']);
  const buffering = {
    sizeMiB: v.int(b, `${key}.buffering.sizeMiB`, 64, 128, 'Firehose requires at least 64 MiB with Parquet conversion and dynamic partitioning'),
    intervalSeconds: v.int(b, `${key}.buffering.intervalSeconds`, 60, 900, 'Firehose requires at least 60 s with dynamic partitioning'),
    // Optional (a cdk.json written before the setting has none): Firehose's default quota.
    activePartitionQuota: b.activePartitionQuota === undefined ? ACTIVE_PARTITION_QUOTA : v.int(b, `${key}.buffering.activePartitionQuota`, ACTIVE_PARTITION_QUOTA, 5000,
      `Firehose's active partitions per delivery stream: ${ACTIVE_PARTITION_QUOTA}, or what AWS raised it to on request, at most 5,000`),
  };

  const t = v.object(p.transform, `${key}.transform`, ['memoryMiB', 'timeoutSeconds', 'processorBufferMiB', 'processorIntervalSeconds', 'retries']);
  const transform = {
    memoryMiB: v.int(t, `${key}.transform.memoryMiB`, 128, 10240),
    timeoutSeconds: v.int(t, `${key}.transform.timeoutSeconds`, 1, 300, 'Firehose waits at most 5 minutes for a transform invocation'),
    processorBufferMiB: v.number(t, `${key}.transform.processorBufferMiB`, 0.2, 3, 'the Firehose processor buffer hint'),
    processorIntervalSeconds: v.int(t, `${key}.transform.processorIntervalSeconds`, 0, 900),
    retries: v.int(t, `${key}.transform.retries`, 0, 300),
  };

  const c = v.object(p.consumer, `${key}.consumer`, ['batchSize', 'batchWindowSeconds', 'maxRetries', 'maxRecordAgeSeconds', 'parallelization', 'memoryMiB', 'timeoutSeconds']);
  const consumer = {
    batchSize: v.int(c, `${key}.consumer.batchSize`, 1, 10000),
    batchWindowSeconds: v.int(c, `${key}.consumer.batchWindowSeconds`, 0, 300),
    maxRetries: v.int(c, `${key}.consumer.maxRetries`, 0, 10000, 'bounded, so a poison record cannot block its shard'),
    maxRecordAgeSeconds: v.int(c, `${key}.consumer.maxRecordAgeSeconds`, 60, 604800, 'bounded, so a poison record cannot block its shard'),
    parallelization: v.int(c, `${key}.consumer.parallelization`, 1, 10),
    memoryMiB: v.int(c, `${key}.consumer.memoryMiB`, 128, 10240),
    timeoutSeconds: v.int(c, `${key}.consumer.timeoutSeconds`, 1, 900),
  };

  const s = v.object(p.search, `${key}.search`, ['bufferingSizeMiB', 'bufferingIntervalSeconds', 'retrySeconds', 'rotation', 'retentionDays']);
  const search = {
    bufferingSizeMiB: v.int(s, `${key}.search.bufferingSizeMiB`, 1, 100),
    bufferingIntervalSeconds: v.int(s, `${key}.search.bufferingIntervalSeconds`, 0, 900),
    retrySeconds: v.int(s, `${key}.search.retrySeconds`, 0, 7200),
    // SearchDelivery refuses it at synth (only a pipeline with the search destination has one); refused here too, so
    // the CLI and the twin accept only what deploys.
    rotation: s.rotation === 'NoRotation' && destinations.includes('search')
      ? (v.problem(`${key}.search.rotation: "NoRotation" would write to the one index "${name}", which the index template pattern "${name}-*" does not match; use one of ${DEPLOYABLE_ROTATIONS.map((r) => `"${r}"`).join(', ')}`), 'OneDay' as const)
      : s.rotation === 'NoRotation' ? 'NoRotation' as const : v.oneOf(s, `${key}.search.rotation`, DEPLOYABLE_ROTATIONS),
    retentionDays: s.retentionDays === FOREVER ? FOREVER
      : v.int(s, `${key}.search.retentionDays`, 1, MAX_RETENTION_DAYS, `days each document stays searchable before its index is deleted, or "${FOREVER}" to keep every index`),
  };

  return { name, source, shards, retentionHours, streamEncryption, destinations, buffering, transform, consumer, search };
}

/** Beginnings S3 refuses in a general purpose bucket's name (Amazon S3 user guide, "General purpose bucket naming rules"). */
const RESERVED_BUCKET_PREFIXES = ['xn--', 'sthree-', 'amzn-s3-demo-'];

/** `search.retentionDays` that keeps every index: no retention policy. */
const FOREVER = 'forever' as const;
/** A hundred years: a larger number means "forever", which says so. */
const MAX_RETENTION_DAYS = 36500;

/** Rotations a deployed search delivery can use: every index it writes must match the template's `<pipeline>-*`. */
const DEPLOYABLE_ROTATIONS = INDEX_ROTATIONS.filter((r) => r !== 'NoRotation');

/**
 * The candidate a mistyped key most likely meant: the same key in another case, or one at most two edits away
 * (one for short keys). Undefined when none is that close.
 */
export function closestKey(key: string, candidates: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = candidate.toLowerCase() === lower ? 0 : editDistance(lower, candidate.toLowerCase());
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  const allowed = key.length <= 4 ? 1 : 2;
  return best && best.distance <= allowed ? best.candidate : undefined;
}

/** ` (did you mean "shards"?)` for a key close to a known one, else nothing. */
export function didYouMean(key: string, candidates: readonly string[]): string {
  const match = closestKey(key, candidates);
  return match === undefined ? '' : ` (did you mean "${match}"?)`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

/** Reads typed values out of raw objects, recording problems instead of throwing at the first one. */
class Reader {
  private readonly problems: string[] = [];
  /** Keys that are not objects: the settings under them are not reported as missing too, one by one. */
  private readonly notObjects: string[] = [];

  problem(message: string): void {
    if (this.notObjects.some((key) => message.startsWith(`${key}.`))) return;
    this.problems.push(message);
  }

  throwIfAny(): void {
    if (this.problems.length > 0) throw new ConfigError(this.problems);
  }

  object(raw: unknown, key: string, allowed: readonly string[] | undefined): Raw {
    const where = key || 'configuration';
    if (raw === undefined) {
      this.problem(`${where}: missing; it must be an object`);
      if (key) this.notObjects.push(key);
      return {};
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      this.problem(`${where}: ${show(raw)} must be an object`);
      if (key) this.notObjects.push(key);
      return {};
    }
    if (allowed) {
      for (const k of Object.keys(raw)) {
        if (!allowed.includes(k)) this.problem(`${key ? `${key}.` : ''}${k}: unknown key; allowed keys are ${allowed.join(', ')}${didYouMean(k, allowed)}`);
      }
    }
    return raw as Raw;
  }

  number(obj: Raw, key: string, min: number, max: number, why?: string): number {
    const value = obj[leaf(key)];
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      this.problem(`${key}: ${show(value)} must be a number from ${min} to ${max}${why ? ` (${why})` : ''}`);
      return min;
    }
    if (value < min || value > max) {
      this.problem(`${key}: ${value} is out of range; allowed ${min}–${max}${why ? ` (${why})` : ''}`);
    }
    return value;
  }

  int(obj: Raw, key: string, min: number, max: number, why?: string): number {
    const value = obj[leaf(key)];
    if (typeof value !== 'number' || !Number.isInteger(value)) {
      this.problem(`${key}: ${show(value)} must be a whole number from ${min} to ${max}${why ? ` (${why})` : ''}`);
      return min;
    }
    return this.number(obj, key, min, max, why);
  }

  oneOf<T extends string>(obj: Raw, key: string, allowed: readonly T[]): T {
    const value = obj[leaf(key)];
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
      this.problem(`${key}: ${show(value)} is not allowed; use one of ${allowed.map((a) => `"${a}"`).join(', ')}`);
      return allowed[0];
    }
    return value as T;
  }

  list<T extends string>(obj: Raw, key: string, allowed: readonly T[]): T[] {
    const value = obj[leaf(key)];
    if (!Array.isArray(value)) {
      this.problem(`${key}: ${show(value)} must be a list drawn from ${allowed.join(', ')}`);
      return [];
    }
    const out: T[] = [];
    for (const item of value) {
      if (typeof item === 'string' && (allowed as readonly string[]).includes(item)) out.push(item as T);
      else this.problem(`${key}: unknown destination ${show(item)}; use one of ${allowed.map((a) => `"${a}"`).join(', ')}`);
    }
    return out;
  }

  pattern(obj: Raw, key: string, re: RegExp, what: string): string {
    const value = obj[leaf(key)];
    if (typeof value !== 'string' || !re.test(value)) {
      this.problem(`${key}: ${show(value)} is not valid; expected ${what}`);
      return typeof value === 'string' ? value : '';
    }
    return value;
  }
}

function leaf(key: string): string {
  const i = key.lastIndexOf('.');
  return i < 0 ? key : key.slice(i + 1);
}

function show(value: unknown): string {
  if (value === undefined) return 'missing value';
  // JSON.stringify writes Infinity and NaN (`-c …=1e400`) as null, which the user never typed.
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  const s = JSON.stringify(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * Why a VPC domain's endpoint (vpc-<name>-<id>.<region>.es.amazonaws.com, or .aos.<region>.on.aws) cannot be used: the stack delivers over the
 * public endpoint only. Firehose would need a VpcConfiguration (subnets, security groups, ec2 network-interface
 * permissions on its role) and the index-template function would need to run in the VPC; without them the template
 * PUT times out and the stack rolls back, so it is refused before deploy.
 */
function vpcEndpointProblem(endpoint: string): string | undefined {
  const host = /^https:\/\/([^/:]+)/.exec(endpoint)?.[1]?.toLowerCase();
  // Also the dual-stack form (EndpointV2: vpc-<name>-<id>.aos.<region>.on.aws).
  if (host === undefined || !/^vpc-[a-z0-9-]+\.(?:[a-z0-9-]+\.es\.amazonaws\.com(?:\.cn)?|aos\.[a-z0-9-]+\.on\.aws)$/.test(host)) return undefined;
  return `opensearch.endpoint ${endpoint} is a VPC domain's endpoint, and Sluice does not deliver into a VPC `
    + '(Firehose would need subnets and security groups, and the index-template function would have to run in the VPC). '
    + 'Use a domain with a public endpoint whose access policy allows the stack\'s roles (docs/deploy.md, "OpenSearch, existing"), '
    + 'or set opensearch.mode to "create" for a domain of the stack\'s own';
}

/**
 * Where an AWS-made domain endpoint (search-<name>-<id>.<region>.es.amazonaws.com, vpc-… for a VPC domain) and the
 * domain ARN disagree on the domain's name or region: the stack would grant Firehose access to one domain and have it
 * write to another, and deliveries would fail as access denied. A custom endpoint (the domain's own host name) says
 * neither, and is taken as it is.
 */
function endpointArnMismatch(endpoint: string, domainArn: string): string | undefined {
  const host = /^https:\/\/([^/:]+)/.exec(endpoint)?.[1]?.toLowerCase();
  const made = host === undefined ? null : /^(?:search|vpc)-([a-z][a-z0-9-]*)-[a-z0-9]+\.([a-z0-9-]+)\.es\.amazonaws\.com(?:\.cn)?$/.exec(host);
  const arn = /^arn:aws[a-z-]*:es:([a-z0-9-]+):\d{12}:domain\/([a-z][a-z0-9-]*)$/.exec(domainArn);
  if (!made || !arn) return undefined;
  const [, endpointDomain, endpointRegion] = made;
  const [, arnRegion, arnDomain] = arn;
  const differ: string[] = [];
  if (endpointDomain !== arnDomain) differ.push(`domain "${endpointDomain}" in the endpoint, "${arnDomain}" in the ARN`);
  if (endpointRegion !== arnRegion) differ.push(`region ${endpointRegion} in the endpoint, ${arnRegion} in the ARN`);
  if (differ.length === 0) return undefined;
  return `opensearch.endpoint ${endpoint} and opensearch.domainArn ${domainArn} name different domains (${differ.join('; ')}): `
    + 'the stack would let Firehose write to the ARN\'s domain and send it to the endpoint\'s. Give the endpoint and ARN of one domain';
}
