import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, configFromContext, contextFileKeys, knownSchemaNames, loadConfig, readCdkJsonContext, resourceNames, unconfiguredSchemaWarnings } from '../../lib/config';

const defaults = () => readCdkJsonContext();
const load = (...overrides: string[]) => loadConfig(overrides);

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('a cdk.json that is not JSON', () => {
  test('names the line and column of the mistake on every Node.js version (Node 20 gives only an offset)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-cdkjson-'));
    try {
      fs.writeFileSync(path.join(dir, 'cdk.json'), '{\n  "context": {\n    "env": "dev",\n  }\n}\n');
      const [problem] = problemsOf(() => readCdkJsonContext(dir));
      expect(problem).toMatch(new RegExp(`^cdk\\.json: ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/cdk\\.json is not valid JSON \\(.*\\(line 4 column 3\\)\\)$`));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('configuration defaults (cdk.json context)', () => {
  test('load with the four default pipelines', () => {
    const config = load();
    expect(config.env).toBe('dev');
    expect(Object.keys(config.pipelines)).toEqual(['clickstream', 'iot', 'transactions', 'app-events']);
    expect(config.pipelines['app-events'].source).toBe('direct-put');
    expect(config.pipelines['app-events'].destinations).toEqual(['lake']);
    expect(config.pipelines.clickstream.destinations).toEqual(['lake', 'search', 'metadata']);
    expect(config.pipelines.transactions.retentionHours).toBe(720);
    expect(config.pipelines.transactions.streamEncryption).toBe('customer-managed');
    // pipelineDefaults fill what a pipeline does not say
    expect(config.pipelines.iot.buffering).toEqual({ sizeMiB: 128, intervalSeconds: 300, activePartitionQuota: 500 });
  });

  test('resource names come from prefix, env and pipeline', () => {
    const names = resourceNames(load('env=prod'), 'app-events');
    expect(names.stream).toBe('sluice-prod-app-events');
    expect(names.lakeDeliveryStream).toBe('sluice-prod-app-events-lake');
    expect(names.glueDatabase).toBe('sluice_prod');
    expect(names.glueTable).toBe('app_events');
  });
});

describe('a schema file without a pipelines entry', () => {
  // "Adding a pipeline" step 2 forgotten: the schema generates and shows, and nothing deploys or runs it.
  test('is a warning naming the schema and the entry to add; none when every schema is configured', () => {
    expect(unconfiguredSchemaWarnings(load())).toEqual([]);
    expect(unconfiguredSchemaWarnings(load(), [...knownSchemaNames(), 'refunds'])).toEqual([
      'schemas/refunds.schema.json has no entry under "pipelines" in cdk.json, so nothing deploys or runs it: add "refunds": {} there '
      + '(or -c \'pipelines.refunds={}\' for one command); a schema kept for later can stay as it is',
    ]);
    // Not an error: a schema may be kept for later, or -c may run some pipelines on purpose.
    const some = load('pipelines={"iot":{}}');
    expect(unconfiguredSchemaWarnings(some).map((w) => w.split(' ')[0])).toEqual(
      knownSchemaNames().filter((p) => p !== 'iot').map((p) => `schemas/${p}.schema.json`));
  });
});

describe('-c overrides work the way CDK users expect', () => {
  test('env=prod applies the prod overlay', () => {
    const config = load('env=prod');
    expect(config.env).toBe('prod');
    expect(config.removalPolicy).toBe('retain');
    expect(config.opensearch.instanceCount).toBe(2);
  });

  test('an env that is not defined (a typo) is refused, naming the known ones, not run without its overlay', () => {
    expect(problemsOf(() => load('env=prdo'))).toEqual([
      'env: "prdo" is not a defined environment; known environments are dev, prod (define a new one under "environments" in cdk.json, '
        + '{} keeps the defaults; a stack deployed under another env name is reached once that name is defined)',
    ]);
    // As `cdk synth -c env=prdo` gives it to the app: in the context, not as a Sluice -c.
    expect(problemsOf(() => configFromContext({ ...defaults(), env: 'prdo' }))[0]).toMatch(/^env: "prdo" is not a defined environment/);
    expect(problemsOf(() => load('env=8'))[0]).toMatch(/^env: 8 is not a defined environment/);
    expect(problemsOf(() => load('env={"a":1}'))[0]).toMatch(/^env: \{"a":1\} is not a defined environment/);
  });

  test('the env cdk.json itself names is a known one, overlay or not', () => {
    const ctx = { ...defaults(), env: 'staging' };
    expect(configFromContext(ctx, { fileEnv: 'staging' }).env).toBe('staging');
    expect(problemsOf(() => configFromContext(ctx))[0]).toMatch(/^env: "staging" is not a defined environment/);
  });

  test('a new env is one entry under environments; {} keeps the defaults', () => {
    const ctx = defaults() as { environments: Record<string, unknown> };
    const config = configFromContext({ ...ctx, env: 'staging', environments: { ...ctx.environments, staging: {} } });
    expect(config.env).toBe('staging');
    expect(config.removalPolicy).toBe(load().removalPolicy);
    expect(load('env=dev').env).toBe('dev');
  });

  test('dotted keys reach into pipelines, with numbers parsed from strings', () => {
    const config = load('env=prod', 'pipelines.iot.shards=8', 'pipelines.iot.buffering.intervalSeconds=120');
    expect(config.pipelines.iot.shards).toBe(8);
    expect(config.pipelines.iot.buffering.intervalSeconds).toBe(120);
    expect(config.pipelines.clickstream.shards).toBe(2);
  });

  test('on-demand shards, list values as JSON or comma-separated', () => {
    const config = load('pipelines.iot.shards=on-demand', 'pipelines.iot.destinations=lake,search', 'pipelines.clickstream.destinations=["lake"]');
    expect(config.pipelines.iot.shards).toBe('on-demand');
    expect(config.pipelines.iot.destinations).toEqual(['lake', 'search']);
    expect(config.pipelines.clickstream.destinations).toEqual(['lake']);
  });

  test('CDK keys that are not Sluice\'s are ignored', () => {
    const config = configFromContext({ ...defaults(), '@aws-cdk/core:newStyleStackSynthesis': true, 'aws:cdk:enable-path-metadata': true });
    expect(config.prefix).toBe('sluice');
  });

  test('an override of an unknown pipeline is a typo, not a new pipeline', () => {
    expect(problemsOf(() => load('pipelines.iott.shards=8'))).toEqual([
      'pipelines.iott.shards: unknown pipeline "iott" (did you mean "iot"?); known pipelines are clickstream, iot, transactions, app-events (add new ones to cdk.json)',
    ]);
  });

  test('an unknown pipeline in one -c does not hide the problems of the others', () => {
    expect(problemsOf(() => load('pipelines.iot.shards=abc', 'pipelines.nosuch.shards=2'))).toEqual([
      'pipelines.nosuch.shards: unknown pipeline "nosuch"; known pipelines are clickstream, iot, transactions, app-events (add new ones to cdk.json)',
      'pipelines.iot.shards: "abc" must be a whole number from 1 to 500 (or "on-demand")',
    ]);
    // As `cdk synth -c ...` gives them to the app: in the context.
    expect(problemsOf(() => configFromContext({ ...defaults(), 'pipelines.nosuch.shards': '2', 'pipelines.iot.retentionHours': '1' }))).toEqual([
      expect.stringMatching(/^pipelines\.nosuch\.shards: unknown pipeline "nosuch"/),
      expect.stringMatching(/^pipelines\.iot\.retentionHours: 1 is out of range/),
    ]);
  });

  test('a malformed or foreign -c pair does not hide the problems of the others', () => {
    expect(problemsOf(() => load('regoin=eu-west-1', 'pipelines.iot.shards', 'pipelines.iot.shards=0'))).toEqual([
      expect.stringMatching(/^-c regoin: not a Sluice setting/),
      expect.stringMatching(/^-c pipelines\.iot\.shards: expected key=value/),
      expect.stringMatching(/^pipelines\.iot\.shards: 0 is out of range/),
    ]);
  });

  test('cdk synth refuses a -c key that is neither Sluice\'s nor CDK\'s, as the CLI does; context files\' own keys stay allowed', () => {
    // As `cdk synth -c environment=prod` gives it to the app: a context key no context file holds.
    const files = new Set(Object.keys(defaults()));
    expect(problemsOf(() => configFromContext({ ...defaults(), environment: 'prod' }, { fileKeys: files }))).toEqual([
      expect.stringMatching(/^-c environment: not a Sluice setting; settings start with one of prefix, env,/),
    ]);
    expect(problemsOf(() => configFromContext({ ...defaults(), 'pipeline.iot.shards': '8' }, { fileKeys: files }))[0]).toMatch(/^-c pipeline\.iot\.shards: not a Sluice setting/);
    // CDK's flags and the CLI's own keys, and anything a context file holds (cdk.context.json's lookups, a project's own keys).
    const cdk = { '@aws-cdk/core:newStyleStackSynthesis': true, 'aws:cdk:enable-path-metadata': true, 'availability-zones:account=1:region=x': ['a'], 'acknowledged-issue-numbers': [1] };
    expect(configFromContext({ ...defaults(), ...cdk }, { fileKeys: new Set([...files, 'acknowledged-issue-numbers']) }).prefix).toBe('sluice');
  });

  test('the context files are cdk.json, cdk.context.json and ~/.cdk.json', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ctx-'));
    try {
      fs.writeFileSync(path.join(dir, 'cdk.json'), JSON.stringify({ context: { prefix: 'x', mine: 1 } }));
      fs.writeFileSync(path.join(dir, 'cdk.context.json'), JSON.stringify({ 'acknowledged-issue-numbers': [1] }));
      fs.mkdirSync(path.join(dir, 'home'));
      fs.writeFileSync(path.join(dir, 'home', '.cdk.json'), JSON.stringify({ context: { 'user-default': true } }));
      expect([...contextFileKeys(dir, path.join(dir, 'home'))].sort()).toEqual(['acknowledged-issue-numbers', 'mine', 'prefix', 'user-default']);
      expect([...contextFileKeys(dir, path.join(dir, 'nowhere'))].sort()).toEqual(['acknowledged-issue-numbers', 'mine', 'prefix']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a pipeline set to something other than an object is refused, not reset to the defaults', () => {
    for (const value of ['null', 'false', '5', '[]', '"x"']) {
      expect(problemsOf(() => load(`pipelines.transactions=${value}`))).toEqual([
        `pipelines.transactions: must be an object of the pipeline's settings, got ${value}; to leave the pipeline out, remove it from cdk.json`,
      ]);
    }
    // An object still merges over the defaults.
    expect(load('pipelines.transactions={"shards":2}').pipelines.transactions.shards).toBe(2);
  });

  test('an environment\'s overlay is not set with -c: the message says how to give the setting for one run', () => {
    expect(problemsOf(() => load('env=prod', 'environments.prod.opensearch.instanceCount=4'))).toEqual([
      '-c environments.prod.opensearch.instanceCount: environments are defined in cdk.json only; for one run, give the setting itself with the env, e.g. -c env=prod -c opensearch.instanceCount=…',
    ]);
  });

  test('a pipeline whose Glue table is another\'s errors table is refused by the configuration (the twin and the CLI too, not only synth)', () => {
    const context = defaults() as { pipelines: Record<string, unknown> };
    const withClash = { ...context, pipelines: { ...context.pipelines, 'iot-errors': { source: 'direct-put', destinations: ['lake'] } } };
    expect(problemsOf(() => configFromContext(withClash))).toEqual(['pipelines: "iot" and "iot-errors" both map to the Glue table "iot_errors"; rename one of them']);
  });

  test('two search pipelines whose index patterns overlap are refused; the same names without search are not', () => {
    const context = defaults() as { pipelines: Record<string, unknown> };
    const eu = (destinations: string[]) => ({ ...context, pipelines: { ...context.pipelines, 'clickstream-eu': { source: 'kinesis', shards: 1, destinations } } });
    expect(problemsOf(() => configFromContext(eu(['lake', 'search'])))).toEqual([
      expect.stringMatching(/^pipelines: "clickstream-eu"'s OpenSearch indices \(clickstream-eu-…\) match "clickstream"'s index pattern clickstream-\*, .*rename one/),
    ]);
    expect(configFromContext(eu(['lake'])).pipelines['clickstream-eu'].destinations).toEqual(['lake']);
  });

  test('prototype keys cannot be set', () => {
    expect(problemsOf(() => load('pipelines.__proto__.polluted=1'))[0]).toMatch(/"__proto__" is not a configuration key/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test('buffering.activePartitionQuota: Firehose\'s quota, 500 unless raised, up to 5,000; optional (a cdk.json from before it has none)', () => {
    expect(load().pipelines.iot.buffering.activePartitionQuota).toBe(500);
    expect(load('pipelines.iot.buffering.activePartitionQuota=5000').pipelines.iot.buffering.activePartitionQuota).toBe(5000);
    // AWS raises the quota, never lowers it: below 500 the near-quota warning would fire on a working stream.
    for (const bad of ['0', '1', '499', '5001', '612.5']) {
      expect(problemsOf(() => load(`pipelines.iot.buffering.activePartitionQuota=${bad}`))).toEqual([
        expect.stringMatching(/^pipelines\.iot\.buffering\.activePartitionQuota: .*Firehose's active partitions per delivery stream: 500, or what AWS raised it to on request, at most 5,000/),
      ]);
    }
    const context = readCdkJsonContext();
    const defaults = context.pipelineDefaults as { buffering: Record<string, unknown> };
    const { activePartitionQuota, ...older } = defaults.buffering;
    expect(activePartitionQuota).toBe(500);
    const config = configFromContext({ ...context, pipelineDefaults: { ...defaults, buffering: older } }, { knownSchemas: knownSchemaNames() });
    expect(config.pipelines.iot.buffering.activePartitionQuota).toBe(500);
  });

  test('a problem in pipelineDefaults is reported once, under the key that was typed', () => {
    expect(problemsOf(() => load('pipelineDefaults.bogus=2'))).toEqual([
      'pipelineDefaults.bogus: unknown key; allowed keys are source, shards, retentionHours, streamEncryption, destinations, buffering, transform, consumer, search',
    ]);
    expect(problemsOf(() => load('pipelineDefaults.buffering.intervalSeconds=9999'))).toEqual([
      expect.stringMatching(/^pipelineDefaults\.buffering\.intervalSeconds: 9999 is out of range/),
    ]);
    // A pipeline's own bad value stays its own; a default it overrides is not blamed.
    expect(problemsOf(() => load('pipelines.iot.buffering.intervalSeconds=9999'))).toEqual([
      expect.stringMatching(/^pipelines\.iot\.buffering\.intervalSeconds: 9999 is out of range/),
    ]);
    expect(problemsOf(() => load('pipelineDefaults.shards=0', 'pipelines.app-events.source=kinesis'))).toEqual([
      expect.stringMatching(/^pipelineDefaults\.shards: 0 is out of range/),
    ]);
    expect(problemsOf(() => load('pipelineDefaults.shards=0', 'pipelines.iot.shards=0'))).toEqual([
      expect.stringMatching(/^pipelines\.iot\.shards: 0 is out of range/),
      expect.stringMatching(/^pipelineDefaults\.shards: 0 is out of range/),
    ]);
  });

  test('a default that is wrong for one pipeline only, because of that pipeline\'s own settings, is reported under that pipeline', () => {
    // iot and transactions both take destinations ["lake", "metadata"] from pipelineDefaults; only iot's own source makes
    // them wrong, so the problem is iot's: a message under pipelineDefaults would not say which pipeline to fix.
    expect(problemsOf(() => load('pipelines.iot.source=direct-put'))).toEqual([
      expect.stringMatching(/^pipelines\.iot\.destinations: "metadata" needs a Kinesis stream to read, but source is "direct-put"/),
    ]);
  });

  test('an object given with -c merges into the settings there instead of replacing them', () => {
    const config = load('pipelines.transactions={"shards":2}', 'pipelines.iot.buffering={"sizeMiB":64}');
    expect(config.pipelines.transactions.shards).toBe(2);
    // cdk.json's own settings for transactions stay
    expect(config.pipelines.transactions.retentionHours).toBe(720);
    expect(config.pipelines.transactions.streamEncryption).toBe('customer-managed');
    expect(config.pipelines.iot.buffering).toEqual({ sizeMiB: 64, intervalSeconds: 300, activePartitionQuota: 500 });
    // a value that is not an object still replaces
    expect(load('pipelines.clickstream.destinations=lake').pipelines.clickstream.destinations).toEqual(['lake']);
  });

  test('an object given with -c for a whole top-level setting replaces cdk.json\'s, as CDK\'s -c does (cdk deploy must mean the same)', () => {
    // A test twin with only the pipelines it needs relies on this, as would a user's.
    const config = load('pipelines={"transactions":{"shards":2}}');
    expect(Object.keys(config.pipelines)).toEqual(['transactions']);
    expect(config.pipelines.transactions.retentionHours).toBe(24);
    // What the replacement left out is missing: said first, with the way to change only some settings.
    expect(problemsOf(() => load('local={"bufferIntervalSeconds":3}'))[0]).toBe(
      '-c local: replaces cdk.json\'s whole "local" (as CDK\'s -c does), so the settings it does not name are gone; to change only some, give each its own key, e.g. -c local.firehosePort=…',
    );
    expect(problemsOf(() => load('pipelineDefaults={"shards":2}'))[0]).toMatch(/^-c pipelineDefaults: replaces cdk\.json's whole "pipelineDefaults"/);
    // the dotted form changes only what it names
    expect(load('local.bufferIntervalSeconds=3').local).toMatchObject({ bufferIntervalSeconds: 3, firehosePort: 4573 });
  });

  test('a prototype key in a -c object for a whole setting, and -c environments, are refused', () => {
    expect(problemsOf(() => load('pipelines={"__proto__":{"shards":9}}'))).toEqual(['-c pipelines: "__proto__" is not a configuration key']);
    expect(problemsOf(() => load('pipelines={"iot":{"__proto__":{"shards":9}}}'))).toEqual(['-c pipelines: "__proto__" is not a configuration key']);
    expect(problemsOf(() => load('environments={"dev":{"prefix":"zz"}}'))[0]).toMatch(/^-c environments: environments are defined in cdk.json only/);
  });

  test('a setting that must be an object and is not is one problem, not one more per setting under it', () => {
    expect(problemsOf(() => load('pipelines.iot.buffering=5'))).toEqual(['pipelines.iot.buffering: 5 must be an object']);
    expect(problemsOf(() => load('pipelines.iot.transform=[]'))).toEqual(['pipelines.iot.transform: [] must be an object']);
    expect(problemsOf(() => load('local=5'))).toEqual(['local: 5 must be an object']);
  });

  test('a number too large for a double is shown as the Infinity it became, not as null', () => {
    expect(problemsOf(() => load('pipelines.iot.buffering={"intervalSeconds":1e400}'))[0]).toMatch(/^pipelines\.iot\.buffering\.intervalSeconds: Infinity must be/);
  });

  test('a prototype key inside a -c object is refused, not merged', () => {
    expect(problemsOf(() => load('pipelines.iot={"__proto__":{"shards":9}}'))).toEqual(['pipelines.iot: "__proto__" is not a configuration key']);
    expect(problemsOf(() => load('pipelines.iot.buffering={"a":{"constructor":1}}'))).toEqual(['pipelines.iot.buffering: "constructor" is not a configuration key']);
  });

  test('a malformed -c pair is explained', () => {
    expect(problemsOf(() => load('pipelines.iot.shards'))[0]).toMatch(/expected key=value/);
  });

  test('a -c key that is no Sluice setting is refused, not ignored', () => {
    expect(problemsOf(() => load('nonsense.key=1'))).toEqual([
      '-c nonsense.key: not a Sluice setting; settings start with one of prefix, env, alarmEmail, removalPolicy, lifecycle, metadata, athena, opensearch, local, pipelines, pipelineDefaults, environments',
    ]);
    expect(problemsOf(() => load('pipeline.iot.shards=2'))[0]).toMatch(/^-c pipeline\.iot\.shards: not a Sluice setting/);
  });
});

describe('settings a pipeline\'s source or destinations ignore are refused, not silently without effect', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['shards on a direct-put pipeline', ['pipelines.app-events.shards=8'], /^pipelines\.app-events\.shards: only takes effect with source "kinesis" \(a direct-put pipeline has no stream\); this pipeline's setting would change nothing: remove it$/],
    ['stream retention on a direct-put pipeline', ['pipelines.app-events.retentionHours=48'], /^pipelines\.app-events\.retentionHours: only takes effect with source "kinesis"/],
    ['stream encryption on a direct-put pipeline', ['pipelines.app-events.streamEncryption=customer-managed'], /^pipelines\.app-events\.streamEncryption: only takes effect with source "kinesis"/],
    ['search settings without the search destination', ['pipelines.iot.search.rotation=OneHour'], /^pipelines\.iot\.search: only takes effect with the "search" destination/],
    ['consumer settings without the metadata destination', ['pipelines.iot.destinations=lake', 'pipelines.iot.consumer.batchSize=100'], /^pipelines\.iot\.consumer: only takes effect with the "metadata" destination/],
    ['shards given with a switch to direct-put', ['pipelines.iot.source=direct-put', 'pipelines.iot.destinations=lake', 'pipelines.iot.shards=4'], /^pipelines\.iot\.shards: only takes effect with source "kinesis"/],
    // One command line is one place: the order of its -c switches does not matter.
    ['shards given before a switch to direct-put on the same command line', ['pipelines.iot.shards=4', 'pipelines.iot.source=direct-put', 'pipelines.iot.destinations=lake'], /^pipelines\.iot\.shards: only takes effect with source "kinesis"/],
    ['consumer settings given before the destinations that drop metadata', ['pipelines.iot.consumer.batchSize=100', 'pipelines.iot.destinations=lake'], /^pipelines\.iot\.consumer: only takes effect with the "metadata" destination/],
    ['lake buffering without the lake destination', ['pipelines.iot.destinations=search,metadata', 'pipelines.iot.buffering.sizeMiB=100'], /^pipelines\.iot\.buffering: only takes effect with the "lake" destination/],
    ['transform settings with neither lake nor search', ['pipelines.iot.destinations=metadata', 'pipelines.iot.transform.memoryMiB=1024'], /^pipelines\.iot\.transform: only takes effect with the "lake" or "search" destination/],
  ];

  test.each(cases)('%s', (_name, overrides, expected) => {
    expect(problemsOf(() => load(...overrides))).toEqual(expect.arrayContaining([expect.stringMatching(expected)]));
  });

  test('the defaults\' values of such settings pass: app-events (direct-put) and pipelines without search load as shipped', () => {
    expect(() => load()).not.toThrow();
  });

  test('one given before what makes it meaningless passes: a one-off switch to direct-put (-c), an environment\'s (overlay), keep cdk.json\'s shards', () => {
    expect(load('pipelines.iot.source=direct-put', 'pipelines.iot.destinations=lake').pipelines.iot.source).toBe('direct-put');
    const ctx = { ...defaults(), env: 'lab', environments: { lab: { pipelines: { transactions: { source: 'direct-put', destinations: ['lake'] } } } } };
    expect(configFromContext(ctx).pipelines.transactions.source).toBe('direct-put');
    // Given in the overlay that keeps app-events direct-put (cdk.json's pipelines section), it is refused.
    const refused = { ...defaults(), env: 'lab', environments: { lab: { pipelines: { 'app-events': { shards: 2 } } } } };
    expect(problemsOf(() => configFromContext(refused))).toEqual([expect.stringMatching(/^pipelines\.app-events\.shards: only takes effect with source "kinesis"/)]);
    // In the same section as the source that makes it meaningless too.
    const sameSection = { ...defaults(), pipelines: { 'app-events': { source: 'direct-put', destinations: ['lake'], retentionHours: 48 } } };
    expect(problemsOf(() => configFromContext(sameSection))).toEqual([expect.stringMatching(/^pipelines\.app-events\.retentionHours: only takes effect/)]);
  });
});

describe('values AWS would reject fail with the key, the value and the allowed range', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['Firehose buffer < 64 MiB with Parquet conversion', ['pipelines.iot.buffering.sizeMiB=32'], /^pipelines\.iot\.buffering\.sizeMiB: 32 is out of range; allowed 64–128 \(Firehose requires at least 64 MiB with Parquet conversion/],
    ['Firehose buffer above 128 MiB', ['pipelines.iot.buffering.sizeMiB=256'], /^pipelines\.iot\.buffering\.sizeMiB: 256 is out of range; allowed 64–128/],
    ['buffer interval < 60 s with dynamic partitioning', ['pipelines.iot.buffering.intervalSeconds=30'], /^pipelines\.iot\.buffering\.intervalSeconds: 30 is out of range; allowed 60–900/],
    ['processor buffer below 0.2 MiB', ['pipelines.iot.transform.processorBufferMiB=0.1'], /^pipelines\.iot\.transform\.processorBufferMiB: 0\.1 is out of range; allowed 0\.2–3/],
    ['processor buffer above 3 MiB', ['pipelines.iot.transform.processorBufferMiB=5'], /^pipelines\.iot\.transform\.processorBufferMiB: 5 is out of range; allowed 0\.2–3/],
    ['retention below 24 h', ['pipelines.iot.retentionHours=12'], /^pipelines\.iot\.retentionHours: 12 is out of range; allowed 24–8760/],
    ['retention above 8760 h', ['pipelines.iot.retentionHours=9000'], /^pipelines\.iot\.retentionHours: 9000 is out of range; allowed 24–8760/],
    ['an unknown destination', ['pipelines.iot.destinations=lake,warehouse'], /^pipelines\.iot\.destinations: unknown destination "warehouse"; use one of "lake", "search", "metadata"/],
    ['no destination', ['pipelines.iot.destinations=[]'], /^pipelines\.iot\.destinations: at least one of lake, search, metadata is required/],
    ['search on a direct-put pipeline', ['pipelines.app-events.destinations=lake,search'], /^pipelines\.app-events\.destinations: "search" needs a Kinesis stream to read, but source is "direct-put"/],
    ['metadata on a direct-put pipeline', ['pipelines.app-events.destinations=lake,metadata'], /^pipelines\.app-events\.destinations: "metadata" needs a Kinesis stream/],
    ['an unknown source', ['pipelines.iot.source=kafka'], /^pipelines\.iot\.source: "kafka" is not allowed; use one of "kinesis", "direct-put"/],
    ['zero shards', ['pipelines.iot.shards=0'], /^pipelines\.iot\.shards: 0 is out of range; allowed 1–500 \(or "on-demand"\)/],
    ['fractional shards', ['pipelines.iot.shards=1.5'], /^pipelines\.iot\.shards: 1\.5 must be a whole number/],
    ['transform timeout beyond Firehose\'s 5 minutes', ['pipelines.iot.transform.timeoutSeconds=600'], /^pipelines\.iot\.transform\.timeoutSeconds: 600 is out of range; allowed 1–300/],
    ['consumer batch above 10,000', ['pipelines.iot.consumer.batchSize=20000'], /^pipelines\.iot\.consumer\.batchSize: 20000 is out of range; allowed 1–10000/],
    ['consumer window above 300 s', ['pipelines.iot.consumer.batchWindowSeconds=301'], /^pipelines\.iot\.consumer\.batchWindowSeconds: 301 is out of range; allowed 0–300/],
    ['unbounded consumer retries', ['pipelines.iot.consumer.maxRetries=-1'], /^pipelines\.iot\.consumer\.maxRetries: -1 is out of range; allowed 0–10000 \(bounded/],
    ['record age below 60 s', ['pipelines.iot.consumer.maxRecordAgeSeconds=30'], /^pipelines\.iot\.consumer\.maxRecordAgeSeconds: 30 is out of range; allowed 60–604800/],
    ['parallelization above 10', ['pipelines.iot.consumer.parallelization=11'], /^pipelines\.iot\.consumer\.parallelization: 11 is out of range; allowed 1–10/],
    ['OpenSearch buffer above 100 MB', ['pipelines.clickstream.search.bufferingSizeMiB=101'], /^pipelines\.clickstream\.search\.bufferingSizeMiB: 101 is out of range; allowed 1–100/],
    ['OpenSearch retry above 7200 s', ['pipelines.clickstream.search.retrySeconds=7201'], /^pipelines\.clickstream\.search\.retrySeconds: 7201 is out of range; allowed 0–7200/],
    ['an unknown index rotation', ['pipelines.clickstream.search.rotation=Daily'], /^pipelines\.clickstream\.search\.rotation: "Daily" is not allowed; use one of "OneHour", "OneDay", "OneWeek", "OneMonth"$/],
    // SearchDelivery refuses it at synth (the template pattern <pipeline>-* would not match): the CLI and the twin refuse it too.
    ['no index rotation', ['pipelines.clickstream.search.rotation=NoRotation'],
      /^pipelines\.clickstream\.search\.rotation: "NoRotation" would write to the one index "clickstream", which the index template pattern "clickstream-\*" does not match; use one of "OneHour"/],
    ['no index retention', ['pipelines.clickstream.search.retentionDays=0'],
      /^pipelines\.clickstream\.search\.retentionDays: 0 is out of range; allowed 1–36500 \(days each document stays searchable before its index is deleted, or "forever" to keep every index\)$/],
    ['a retention in days that is not whole', ['pipelines.clickstream.search.retentionDays=7.5'],
      /^pipelines\.clickstream\.search\.retentionDays: 7\.5 must be a whole number from 1 to 36500 \(.*or "forever" to keep every index\)$/],
    ['a retention that is a word other than "forever"', ['pipelines.clickstream.search.retentionDays=never'],
      /^pipelines\.clickstream\.search\.retentionDays: "never" must be a whole number from 1 to 36500 \(.*or "forever" to keep every index\)$/],
    ['a retention past a hundred years', ['pipelines.clickstream.search.retentionDays=36501'], /^pipelines\.clickstream\.search\.retentionDays: 36501 is out of range; allowed 1–36500/],
    ['indices kept forever', ['pipelines.clickstream.search.retentionDays=forever'], /^$/],
    ['Glacier sooner than 30 days after IA', ['lifecycle.glacierDays=45'], /^lifecycle\.glacierDays: 45 must be at least 30 days after lifecycle\.infrequentAccessDays \(30\)/],
    ['IA sooner than 30 days', ['lifecycle.infrequentAccessDays=7'], /^lifecycle\.infrequentAccessDays: 7 is out of range; allowed 30–3650/],
    ['an Athena cutoff below 10 MB', ['athena.bytesScannedCutoffMiB=1'], /^athena\.bytesScannedCutoffMiB: 1 is out of range; allowed 10–/],
    // Given to Sluice's -c (the CLI, the twin): refused. In cdk.json or `cdk synth -c` such keys are CDK's context, ignored.
    ['an unknown top-level key', ['regoin=eu-west-1'], /^-c regoin: not a Sluice setting/],
    ['an unknown pipeline key', ['pipelines.iot.shard=2'], /^pipelines\.iot\.shard: unknown key; allowed keys are source, shards/],
    ['a malformed alarm e-mail', ['alarmEmail=ops-at-example'], /^alarmEmail: "ops-at-example" is not valid; expected an e-mail address/],
    // Strings CDK (tokens) or CloudFormation (dynamic references) would replace in the template are no addresses.
    ['a CDK token in the alarm e-mail', ['alarmEmail=${Token[TOKEN.99]}x@example.com'], /^alarmEmail: "\$\{Token\[TOKEN\.99\]\}x@example\.com" is not valid; expected an e-mail address/],
    ['a dynamic reference in the alarm e-mail', ['alarmEmail={{resolve:ssm:oncall}}@example.com'], /^alarmEmail: .* is not valid; expected an e-mail address/],
    ['a quote in the alarm e-mail', ['alarmEmail=ops"@example.com'], /^alarmEmail: .* is not valid; expected an e-mail address/],
    ['two twin services on one port', ['local.firehosePort=4568'], /^local\.kinesisPort: 4568 is also local\.firehosePort; the twin listens on each, so give every one its own port$/],
    ['a mistyped top-level key', ['prefx=acme'], /^-c prefx: not a Sluice setting; .* \(did you mean "prefix"\?\)$/],
    ['a mistyped pipeline key', ['pipelines.iot.transfrom.memoryMiB=256'], /^pipelines\.iot\.transfrom: unknown key; .* \(did you mean "transform"\?\)$/],
    ['a key in the wrong case', ['opensearch.instancecount=2'], /^opensearch\.instancecount: unknown key; .* \(did you mean "instanceCount"\?\)$/],
    ['a pipeline in the wrong case', ['pipelines.IoT.shards=2'], /^pipelines\.IoT\.shards: unknown pipeline "IoT" \(did you mean "iot"\?\); known pipelines are/],
    ['an upper-case prefix', ['prefix=Sluice'], /^prefix: "Sluice" is not valid/],
    ['an existing OpenSearch domain without endpoint', ['opensearch.mode=existing'], /^opensearch: mode "existing" needs both opensearch\.endpoint and opensearch\.domainArn/],
    ['an existing domain\'s endpoint and ARN in different regions',
      ['opensearch.mode=existing', 'opensearch.endpoint=https://search-logs-abc123.us-east-1.es.amazonaws.com', 'opensearch.domainArn=arn:aws:es:eu-west-1:123456789012:domain/logs'],
      /^opensearch: opensearch\.endpoint https:\/\/search-logs-abc123\.us-east-1\.es\.amazonaws\.com and opensearch\.domainArn arn:aws:es:eu-west-1:123456789012:domain\/logs name different domains \(region us-east-1 in the endpoint, eu-west-1 in the ARN\)/],
    ['an existing domain\'s endpoint and ARN naming different domains',
      ['opensearch.mode=existing', 'opensearch.endpoint=https://vpc-other-x1y2z3.eu-west-1.es.amazonaws.com', 'opensearch.domainArn=arn:aws:es:eu-west-1:123456789012:domain/logs'],
      /name different domains \(domain "other" in the endpoint, "logs" in the ARN\): the stack would let Firehose write to the ARN's domain/],
    // Nothing in the stack delivers into a VPC: refused before deploy, rather than a custom resource timing out.
    ['an existing domain in a VPC',
      ['opensearch.mode=existing', 'opensearch.endpoint=https://vpc-logs-x1y2z3.eu-west-1.es.amazonaws.com', 'opensearch.domainArn=arn:aws:es:eu-west-1:123456789012:domain/logs'],
      /^opensearch: opensearch\.endpoint https:\/\/vpc-logs-x1y2z3\.eu-west-1\.es\.amazonaws\.com is a VPC domain's endpoint, and Sluice does not deliver into a VPC .* Use a domain with a public endpoint .* or set opensearch\.mode to "create"/],
    ['an existing domain in a VPC, at its dual-stack endpoint',
      ['opensearch.mode=existing', 'opensearch.endpoint=https://vpc-logs-x1y2z3.aos.eu-west-1.on.aws', 'opensearch.domainArn=arn:aws:es:eu-west-1:123456789012:domain/logs'],
      /^opensearch: opensearch\.endpoint https:\/\/vpc-logs-x1y2z3\.aos\.eu-west-1\.on\.aws is a VPC domain's endpoint/],
    // A domain name with dashes, and a custom endpoint, which names no domain: accepted.
    ['an existing domain whose name has dashes', ['opensearch.mode=existing', 'opensearch.endpoint=https://search-app-logs-2-abc123.eu-west-1.es.amazonaws.com', 'opensearch.domainArn=arn:aws:es:eu-west-1:123456789012:domain/app-logs-2'], /^$/],
    // Without mode "existing" the stack would create a domain of its own and never deliver to the one named.
    ['an existing domain\'s endpoint and ARN without mode "existing"',
      ['opensearch.endpoint=https://search-logs-abc123.eu-west-1.es.amazonaws.com', 'opensearch.domainArn=arn:aws:es:eu-west-1:123456789012:domain/logs'],
      /^opensearch: opensearch\.endpoint and opensearch\.domainArn name a domain, but opensearch\.mode is "create", so the stack would create a domain of its own \(sluice-dev\) .* Set opensearch\.mode to "existing"/],
    ['an existing domain\'s endpoint alone without mode "existing"', ['opensearch.endpoint=https://search.example.com'], /^opensearch: opensearch\.endpoint names a domain, but opensearch\.mode is "create"/],
    ['an endpoint without mode "existing" when no pipeline searches', ['opensearch.endpoint=https://search.example.com', 'pipelines.clickstream.destinations=lake,metadata'], /^$/],
    ['an existing domain at a custom endpoint', ['opensearch.mode=existing', 'opensearch.endpoint=https://search.example.com', 'opensearch.domainArn=arn:aws:es:eu-west-1:123456789012:domain/logs'], /^$/],
    ['an OpenSearch instance type that is not one', ['opensearch.instanceType=m5.large'], /^opensearch\.instanceType: "m5\.large" is not valid; expected an OpenSearch instance type/],
    // What the domain construct refuses, refused by the configuration too: the CLI (sluice cost) prices nothing synth would not build.
    ['an instance family without encryption at rest', ['opensearch.instanceType=t2.micro.search'], /^opensearch\.instanceType "t2\.micro\.search": the T2 family does not support encryption at rest/],
    ['an instance family without EBS volumes', ['opensearch.instanceType=i3.large.search'], /^opensearch\.instanceType "i3\.large\.search": the I3 family uses instance storage/],
    ['data nodes no zone layout divides', ['opensearch.instanceCount=5'], /^opensearch\.instanceCount 5 cannot be spread evenly over availability zones/],
    ['a volume over the T3 limit', ['opensearch.volumeGiB=16384'], /^opensearch\.volumeGiB 16384 exceeds the 100 GiB EBS limit of t3\.small\.search/],
    ['domain settings go unchecked when no pipeline searches', ['opensearch.instanceCount=5', 'pipelines.clickstream.destinations=lake'], /^$/],
    // OpenSearch domain names are 3–28 characters; prefix (≤ 20) and env (≤ 10) can make more.
    // The stack's buckets are named by CloudFormation after the stack, <prefix>-<env>: S3 reserves some beginnings.
    ['a prefix that makes bucket names S3 reserves', ['prefix=sthree'],
      /^prefix: "sthree" with env "dev" makes the stack "sthree-dev", whose S3 buckets CloudFormation names "sthree-dev-…"; S3 refuses bucket names that start with "sthree-"/],
    ['a prefix that makes bucket names start with "xn--" with the env', ['prefix=xn-'], /^prefix: "xn-" with env "dev" makes the stack "xn--dev", .*start with "xn--"/],
    ['a prefix that only resembles a reserved one', ['prefix=sthreeapp'], /^$/],
    ['an OpenSearch domain name over 28 characters', ['prefix=sluice-analytics-team', 'env=staging'],
      /^opensearch: the domain this stack creates is named "sluice-analytics-team-staging" \(prefix-env\), 29 characters; OpenSearch allows 28/],
  ];

  test.each(cases)('%s', (_name, overrides, expected) => {
    if (expected.source === '^$') {
      expect(() => load(...overrides)).not.toThrow();
      return;
    }
    const problems = problemsOf(() => load(...overrides));
    expect(problems.some((p) => expected.test(p))).toBe(true);
  });

  test('search.retentionDays: 30 days by default, a number of days or "forever" from -c', () => {
    expect(load().pipelines.clickstream.search.retentionDays).toBe(30);
    expect(load('pipelines.clickstream.search.retentionDays=7').pipelines.clickstream.search.retentionDays).toBe(7);
    expect(load('pipelines.clickstream.search.retentionDays=forever').pipelines.clickstream.search.retentionDays).toBe('forever');
  });

  test('names too long for Firehose (64 characters) are rejected before deploy', () => {
    const ctx = { ...defaults(), prefix: 'averyveryverylongpfx', env: 'production', environments: { production: {} } } as Record<string, unknown>;
    ctx.pipelines = { 'clickstream-enriched-events-v2': { destinations: ['lake'] } };
    expect(problemsOf(() => configFromContext(ctx))).toEqual([
      'pipelines.clickstream-enriched-events-v2: delivery stream name "averyveryverylongpfx-production-clickstream-enriched-events-v2-lake" would be 67 characters; Firehose allows 64 — shorten prefix, env or pipeline name',
    ]);
  });

  test('"NoRotation" in the pipeline defaults is refused only for pipelines that write to OpenSearch', () => {
    const ctx = { ...defaults(), pipelineDefaults: { ...(defaults().pipelineDefaults as Record<string, unknown>), search: { bufferingSizeMiB: 5, bufferingIntervalSeconds: 60, retrySeconds: 300, rotation: 'NoRotation', retentionDays: 30 } } } as Record<string, unknown>;
    ctx.pipelines = { iot: { shards: 1 }, 'app-events': { source: 'direct-put', destinations: ['lake'] } };
    expect(Object.keys(configFromContext(ctx).pipelines)).toEqual(['iot', 'app-events']);
    ctx.pipelines = { iot: { shards: 1 }, clickstream: { destinations: ['lake', 'search'] } };
    expect(problemsOf(() => configFromContext(ctx))).toEqual([
      // Blamed on the key that set it; the index names the pipeline.
      expect.stringMatching(/^pipelineDefaults\.search\.rotation: "NoRotation" would write to the one index "clickstream"/),
    ]);
  });

  test('the Firehose name checked is the longest stream the pipeline has: a lake-only pipeline is not held to "-search"', () => {
    const ctx = { ...defaults(), prefix: 'averyveryverylongpfx', env: 'production', environments: { production: {} } } as Record<string, unknown>;
    // averyveryverylongpfx-production-clickstream-enriched-events-lake: 64 characters.
    ctx.pipelines = { 'clickstream-enriched-events': { destinations: ['lake'] } };
    expect(configFromContext(ctx).pipelines['clickstream-enriched-events'].destinations).toEqual(['lake']);
  });

  test('every problem is reported at once', () => {
    const problems = problemsOf(() => load('pipelines.iot.shards=0', 'pipelines.iot.retentionHours=1', 'pipelines.iot.buffering.sizeMiB=1'));
    expect(problems).toHaveLength(3);
  });

  test('the error message lists each problem on its own line', () => {
    expect(() => load('pipelines.iot.shards=0')).toThrow(/^Invalid Sluice configuration:\n {2}- pipelines\.iot\.shards: 0 is out of range/);
  });

  test('a pipeline without a schema file is rejected', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-config-'));
    const ctx = defaults() as { pipelines: Record<string, unknown> };
    ctx.pipelines = { ...ctx.pipelines, orders: {} };
    fs.writeFileSync(path.join(dir, 'cdk.json'), JSON.stringify({ context: ctx }));
    fs.mkdirSync(path.join(dir, 'schemas'));
    for (const p of ['clickstream', 'iot', 'transactions', 'app-events']) fs.writeFileSync(path.join(dir, 'schemas', `${p}.schema.json`), '{}');
    expect(problemsOf(() => loadConfig([], dir))).toContain('pipelines.orders: no schema for pipeline "orders"; add schemas/orders.schema.json (known: app-events, clickstream, iot, transactions)');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a missing cdk.json is explained', () => {
    expect(problemsOf(() => loadConfig([], os.tmpdir()))[0]).toMatch(/^cdk\.json: not found at .*; run Sluice from its project directory$/);
  });
});
