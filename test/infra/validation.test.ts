import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Duration, RemovalPolicy, Size, Stack, STACK_RESOURCE_LIMIT_CONTEXT } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as glue from 'aws-cdk-lib/aws-glue';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { configFromContext, knownSchemaNames, PROJECT_ROOT, readCdkJsonContext } from '../../lib/config';
import {
  AthenaWorkspace,
  DataStorage,
  InvalidPropsError,
  LakeCatalog,
  LakeDelivery,
  PipelineStream,
  SearchDelivery,
  SearchDomain,
  SluiceStack,
  stackName,
  type TransformInvocation,
} from '../../lib/infra';
import { describeSchema, loadModel, readSchema, type SchemaModel } from '../../lib/schema';
import { savedQueries } from '../../lib/infra/athena-workspace';
import { testApp } from './synth';

// Constructs are checked in isolation with imported (code-less) functions and buckets: no bundling, no synth.
function scope() {
  // cdk.json's context carries the feature flags the app runs with.
  const stack = new Stack(testApp(readCdkJsonContext()), 'Test');
  return {
    stack,
    fn: lambda.Function.fromFunctionArn(stack, 'Fn', 'arn:aws:lambda:eu-west-1:123456789012:function:transform'),
    bucket: s3.Bucket.fromBucketName(stack, 'Bucket', 'data-bucket'),
    stream: kinesis.Stream.fromStreamArn(stack, 'Stream', 'arn:aws:kinesis:eu-west-1:123456789012:stream/s'),
  };
}
const invocation: TransformInvocation = { bufferSizeMiB: 1, bufferIntervalSeconds: 60, retries: 3 };

function messageOf(build: () => unknown): string {
  try {
    build();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidPropsError);
    return (err as Error).message;
  }
  throw new Error('expected the construct to reject its props');
}

describe('constructs reject what AWS would reject, naming the value and the range', () => {
  const lake = (overrides: Partial<ConstructorParameters<typeof LakeDelivery>[2]>) => {
    const { stack, fn, bucket } = scope();
    const model = loadModel('iot');
    const table = new glue.CfnTable(stack, 'Table', { catalogId: '123456789012', databaseName: 'db', tableInput: { name: 'iot' } });
    return () => new LakeDelivery(stack, 'Lake', {
      deliveryStreamName: 'sluice-dev-iot-lake', model, bucket, table, transform: fn, transformInvocation: invocation, ...overrides,
    });
  };

  test('Firehose buffer below 64 MiB with Parquet conversion', () => {
    expect(messageOf(lake({ bufferingSize: Size.mebibytes(32) }))).toMatch(/bufferingSize must be 64–128 MiB .*got 32 MiB/);
  });

  test('buffer interval below 60 s with dynamic partitioning, and a processor buffer hint outside 0.2–3 MB', () => {
    const message = messageOf(lake({ bufferingInterval: Duration.seconds(30), transformInvocation: { ...invocation, bufferSizeMiB: 5 } }));
    expect(message).toMatch(/bufferingInterval must be 60–900 s .*got 30 s/);
    expect(message).toMatch(/bufferSizeMiB must be 0\.2–3 .*got 5/);
  });

  test('index rotation the index template cannot match', () => {
    const { stack, fn, bucket, stream } = scope();
    const domain = new SearchDomain(stack, 'Domain', {
      existing: { endpoint: 'https://search-logs-abc.eu-west-1.es.amazonaws.com', domainArn: 'arn:aws:es:eu-west-1:123456789012:domain/logs' },
    });
    expect(messageOf(() => new SearchDelivery(stack, 'Search', {
      deliveryStreamName: 'sluice-dev-clickstream-search', model: loadModel('clickstream'), indexName: 'clickstream', domain, source: stream,
      bucket, transform: fn, transformInvocation: invocation, rotation: 'NoRotation',
    }))).toMatch(/rotation "NoRotation" writes to the index "clickstream", which the index template pattern "clickstream-\*" does not match/);
  });

  test('OpenSearch data nodes that no zone layout divides, and a volume over the instance type\'s limit', () => {
    const { stack } = scope();
    const message = messageOf(() => new SearchDomain(stack, 'Domain', {
      create: { domainName: 'sluice-dev', engineVersion: 'OpenSearch_2.19', instanceType: 't3.small.search', instanceCount: 5, volumeGiB: 200, removalPolicy: RemovalPolicy.DESTROY },
    }));
    expect(message).toMatch(/instanceCount 5 cannot be spread evenly/);
    expect(message).toMatch(/volumeGiB 200 exceeds the 100 GiB EBS limit of t3\.small\.search/);
    // A family CDK's domain would refuse with its own error (and a stack trace under `cdk synth`).
    expect(messageOf(() => new SearchDomain(scope().stack, 'Domain', {
      create: { domainName: 'sluice-dev', engineVersion: 'OpenSearch_2.19', instanceType: 'm3.medium.search', instanceCount: 1, volumeGiB: 10, removalPolicy: RemovalPolicy.DESTROY },
    }))).toMatch(/instanceType "m3\.medium\.search": the M3 family does not support encryption at rest/);
  });

  test('Kinesis shards and retention, Athena cutoff, S3 lifecycle order', () => {
    expect(messageOf(() => new PipelineStream(scope().stack, 'S', { streamName: 's', shards: 0, retentionHours: 12, encryption: 'aws-managed', removalPolicy: RemovalPolicy.DESTROY })))
      .toMatch(/shards must be "on-demand" or a whole number from 1 to 500, got 0.*retentionHours must be a whole number from 24 to 8760.*got 12/s);
    const { stack, bucket } = scope();
    const key = new DataStorage(stack, 'Storage', { infrequentAccessDays: 30, glacierDays: 90, errorExpirationDays: 30, removalPolicy: RemovalPolicy.DESTROY }).key;
    expect(messageOf(() => new AthenaWorkspace(stack, 'Athena', { workGroupName: 'wg', databaseName: 'db', bucket, key, bytesScannedCutoffMiB: 5, pipelines: [] })))
      .toMatch(/bytesScannedCutoffMiB must be a whole number ≥ 10 .*got 5/);
    expect(messageOf(() => new DataStorage(scope().stack, 'S', { infrequentAccessDays: 30, glacierDays: 40, errorExpirationDays: 30, removalPolicy: RemovalPolicy.DESTROY })))
      .toMatch(/glacierDays must be ≥ infrequentAccessDays \+ 30 \(60\).*got 40/);
  });
});

/** The iot schema with these extra string fields, all required (names as long as a Glue column may be). */
function iotWith(fields: Record<string, object>, xSluice: Record<string, unknown>): SchemaModel {
  const schema = structuredClone(readSchema('iot')) as { properties: Record<string, object>; required: string[]; 'x-sluice': Record<string, unknown> };
  Object.assign(schema.properties, fields);
  schema.required.push(...Object.keys(fields));
  Object.assign(schema['x-sluice'], xSluice);
  return describeSchema('a234567890123456789012345678901', schema);
}

describe('what a legal schema derives fits AWS\'s limits', () => {
  test('saved query names and descriptions fit Athena\'s (128 and 1,024 characters), however long the field names', () => {
    const entity = 'd'.repeat(120);
    const partitions = ['p', 'q', 'r', 's', 't'].map((c) => c.repeat(255));
    const model = iotWith({
      [entity]: { type: 'string', examples: ['dev-1'] },
      ...Object.fromEntries(partitions.map((p) => [p, { type: 'string', enum: ['a', 'b'] }])),
    }, { entityField: entity, partitionFields: partitions });
    const queries = savedQueries('db', { model, tableName: 't', errorTableName: 't_errors' });
    expect(queries).toHaveLength(3);
    for (const q of queries) {
      expect(q.name.length).toBeLessThanOrEqual(128);
      expect(q.description.length).toBeLessThanOrEqual(1024);
    }
    expect(queries[2].name).toBe(`a234567890123456789012345678901: top ${entity}`.slice(0, 127) + '…');
  });

  test('a schema title of any length makes a Glue table description within Glue\'s 2,048 characters', () => {
    const schema = structuredClone(readSchema('iot')) as Record<string, unknown>;
    schema.title = `Device telemetry ${'t'.repeat(3000)}`;
    const { stack, bucket } = scope();
    new LakeCatalog(stack, 'Catalog', { databaseName: 'db', bucket, pipelines: [{ model: describeSchema('iot', schema), tableName: 'iot' }] });
    const descriptions = Object.values(Template.fromStack(stack).findResources('AWS::Glue::Table'))
      .map((r) => String((r as { Properties: { TableInput: { Description: string } } }).Properties.TableInput.Description));
    expect(descriptions).toHaveLength(2);
    for (const d of descriptions) expect(d.length).toBeLessThanOrEqual(2048);
    expect(descriptions[0]).toMatch(/^Device telemetry t+… \(schemas\/iot\.schema\.json v1\.0\.0\), written by Firehose as Parquet$/);
  });

  test('a lake data prefix over Firehose\'s 1,024 characters (partition field names are in it twice) fails synth naming the fields', () => {
    const partitions = ['p', 'q'].map((c) => c.repeat(255));
    const model = iotWith(Object.fromEntries(partitions.map((p) => [p, { type: 'string', enum: ['a', 'b'] }])), { partitionFields: partitions });
    const { stack, fn, bucket } = scope();
    const table = new glue.CfnTable(stack, 'Table', { catalogId: '123456789012', databaseName: 'db', tableInput: { name: 't' } });
    expect(messageOf(() => new LakeDelivery(stack, 'Lake', { deliveryStreamName: 'sluice-dev-x-lake', model, bucket, table, transform: fn, transformInvocation: invocation })))
      .toMatch(/data prefix of pipeline "a234567890123456789012345678901" would be 1\d{3} characters .*Firehose allows 1024: shorten or drop some of x-sluice\.partitionFields \("p{255}", "q{255}"\)/);
  });
});

const outdir = path.join(PROJECT_ROOT, 'cdk.out', `test-${process.pid}`);
afterAll(() => fs.rmSync(outdir, { recursive: true, force: true }));

/** Runs bin/app.ts the way `cdk synth -c …` does (context in CDK_CONTEXT_JSON) and returns its exit code and stderr. */
function runApp(overrides: Record<string, unknown>): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'run-ts.js'), path.join(PROJECT_ROOT, 'bin', 'app.ts')], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, CDK_CONTEXT_JSON: JSON.stringify({ ...readCdkJsonContext(), ...overrides }), CDK_OUTDIR: outdir },
    encoding: 'utf8',
    timeout: 90_000,
  });
  return { status: result.status, stderr: result.stderr };
}

describe('`cdk synth` with a configuration AWS would reject fails with a clear message and no stack trace', () => {
  test('a Firehose buffer below 64 MiB (configuration check)', () => {
    const { status, stderr } = runApp({ 'pipelines.iot.buffering.sizeMiB': '32' });
    expect(status).not.toBe(0);
    expect(stderr).toMatch(/pipelines\.iot\.buffering\.sizeMiB: 32 is out of range; allowed 64–128/);
    expect(stderr).not.toMatch(/^\s+at /m);
  }, 90_000);

  test('an OpenSearch node count no zone layout divides (the domain construct\'s check, which the configuration now shares)', () => {
    const { status, stderr } = runApp({ 'opensearch.instanceCount': '5' });
    expect(status).not.toBe(0);
    expect(stderr).toMatch(/Invalid Sluice configuration:\n {2}- opensearch\.instanceCount 5 cannot be spread evenly over availability zones/);
    expect(stderr).not.toMatch(/^\s+at /m);
  }, 90_000);
});

describe('a configuration with more resources than one CloudFormation stack may declare', () => {
  // CDK's own setting lowers the limit, so the default pipelines stand for a configuration with many more; no bundling.
  // Version reporting on, as `cdk synth` has it: the stack's CDKMetadata resource counts too.
  const context = (limit?: number) => ({
    ...readCdkJsonContext(), 'aws:cdk:bundling-stacks': [], 'aws:cdk:version-reporting': true,
    ...(limit === undefined ? {} : { [STACK_RESOURCE_LIMIT_CONTEXT]: limit }),
  });
  const build = (limit?: number) => {
    const app = testApp(context(limit));
    const config = configFromContext(app.node.getAllContext(), { knownSchemas: knownSchemaNames(), fileEnv: readCdkJsonContext().env });
    new SluiceStack(app, stackName(config), { config });
    return app;
  };

  test('fails the synth saying what the stack and each pipeline take and which pipelines to move to a second stack', () => {
    const declared = Object.keys(build().synth().getStackByName('sluice-dev').template.Resources as object).length;
    let message = '';
    try {
      build(declared - 1).synth();
    } catch (err) {
      message = (err as Error).message;
    }
    const found = /sluice-dev would declare (\d+) CloudFormation resources; one stack may declare at most (\d+)\. The stack itself takes (\d+) .* and each pipeline its own: (.*?)\. Deploy the pipeline that does not fit \(([^)]*)\) as a second Sluice stack with a prefix of its own, e\.g\. `npx cdk deploy -c prefix=sluice2 -c 'pipelines=\{"([^"]+)":\{…\}\}'` with its settings \(the stack sluice2-dev/.exec(message);
    expect(found).not.toBeNull();
    const [, total, limit, shared, perPipeline, moved, example] = found!;
    expect([Number(total), Number(limit)]).toEqual([declared, declared - 1]);
    // Every resource is counted once: the stack's own and the pipelines' add up to what the template declares.
    const counts = perPipeline.split(', ').map((entry) => entry.split(' '));
    expect(counts.map(([name]) => name)).toEqual(['clickstream', 'iot', 'transactions', 'app-events']);
    expect(Number(shared) + counts.reduce((sum, [, n]) => sum + Number(n), 0)).toBe(declared);
    // One resource over: the first pipeline in order whose move brings the stack back under (here the first that fits
    // in what the others leave), named in the example too.
    expect(moved).toBe(example);
    expect(counts.map(([name]) => name)).toContain(moved);
    // docs/deploy.md gives these counts.
    const n = Object.fromEntries(counts);
    const docs = fs.readFileSync(path.join(PROJECT_ROOT, 'docs', 'deploy.md'), 'utf8').replace(/\s+/g, ' ');
    expect(docs).toContain(`the stack itself takes ${shared} `);
    expect(docs).toContain(`${n.clickstream} for \`clickstream\``);
    expect(docs).toContain(`${Math.min(n.iot, n.transactions)}–${Math.max(n.iot, n.transactions)} for a Kinesis pipeline`);
    expect(docs).toContain(`${n['app-events']} for a direct-put pipeline`);
  });

  test('within the limit (the default pipelines, 500) nothing is reported', () => {
    expect(() => build().synth()).not.toThrow();
  });

  test('`cdk synth` prints the message alone and exits non-zero', () => {
    const { status, stderr } = runApp({ [STACK_RESOURCE_LIMIT_CONTEXT]: 150, 'aws:cdk:bundling-stacks': [] });
    expect(status).not.toBe(0);
    expect(stderr).toMatch(/sluice-dev would declare \d+ CloudFormation resources; one stack may declare at most 150\. .* Deploy the pipelines that do not fit \([a-z-]+, [a-z-, ]+\) as a second Sluice stack .* with their settings .* and remove them from this configuration's pipelines\./);
    // Not thrown from CDK's synthesis as the process exits: no source line of aws-cdk-lib, no frames, no Node.js banner.
    expect(stderr).not.toMatch(/^\s+at |node_modules|Node\.js v/m);
  }, 90_000);
});
