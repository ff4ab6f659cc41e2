import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { PROJECT_ROOT } from '../config';
import { schemaChanges, type SchemaChange } from '../schema/changes';
import { glueColumns, loadModel, openSearchIndexTemplate, openSearchMappingSize, OPENSEARCH_TOTAL_FIELDS_LIMIT, parquetColumns, projectionParameters, firehoseDataPrefix, firehoseErrorPrefix, typeScriptTypes, listSchemas } from '../schema';
import { describeSchema, SchemaDerivationError, type SchemaModel } from '../schema/model';
import { addConfigOption, configFrom, unknownPipeline } from './options';
import { formatTable, toJson, UserError } from './output';

export function registerSchemaCommand(program: Command): void {
  addConfigOption(program.command('schema'))
    .description('show what a pipeline\'s schema derives: Glue columns, partition keys, Parquet types, OpenSearch mapping, validator summary')
    .argument('<pipeline>', 'pipeline name (a file schemas/<pipeline>.schema.json)')
    .option('--json', 'print the artifacts as JSON for scripts')
    .option('--types', 'also print the TypeScript record types')
    .option('--against <rev|file>', 'instead, what changed since the schema at a git revision (the deployed commit) or in a file, and what each change does to the data'
      + ' already written: unsafe changes exit 1')
    .addHelpText('after', '\nExamples:\n  $ sluice schema iot\n  $ sluice schema transactions --json | jq .glue.columns\n  $ sluice schema iot --against origin/main')
    .action((pipeline: string, opts: { context?: string[]; json?: boolean; types?: boolean; against?: string }) => {
      // The configuration first: a pipeline it names without a schema file is refused there, saying the schema is
      // missing, where "unknown pipeline" would send the user looking for a typo.
      const config = configFrom(opts);
      if (!listSchemas().includes(pipeline)) throw unknownPipeline(pipeline, 'known', listSchemas());
      // The mapping is the schema's whatever the pipeline delivers to; only a search destination puts it to use.
      const configured = config.pipelines[pipeline];
      const destinations = configured?.destinations ?? [];
      const model = loadModel(pipeline);
      if (opts.against !== undefined) {
        printChanges(pipeline, opts.against, model, opts.json === true);
        return;
      }
      const glue = glueColumns(model);
      // A mapping OpenSearch would refuse stops only a search destination: the rest is still shown.
      let template: object | undefined;
      let searchProblem: string | undefined;
      try {
        template = openSearchIndexTemplate(model);
      } catch (err) {
        if (!(err instanceof SchemaDerivationError)) throw err;
        searchProblem = err.message;
      }
      const x = model.extensions;
      const validator = {
        schemaVersion: x.version,
        precompiled: `transforms/shared/generated/${pipeline}.validate.js`,
        required: model.inputColumns.filter((c) => c.required).map((c) => c.jsonKey),
        optional: model.inputColumns.filter((c) => !c.required).map((c) => c.jsonKey),
        idField: x.idField,
        eventTimeField: x.eventTimeField,
        partitionFields: x.partitionFields,
        pii: x.pii,
      };
      const artifacts = {
        pipeline,
        destinations,
        glue,
        projection: projectionParameters(model, '<data-bucket>'),
        firehose: { prefix: firehoseDataPrefix(model), errorOutputPrefix: firehoseErrorPrefix(pipeline) },
        parquet: parquetColumns(model),
        opensearch: template ?? { error: searchProblem },
        validator,
        ...(opts.types ? { typescript: typeScriptTypes(model) } : {}),
      };
      if (opts.json) {
        console.log(toJson(artifacts));
        return;
      }
      const parquetType = new Map(artifacts.parquet.map((c) => [c.name, c.type]));
      const mapping = template === undefined ? {} : (template as { template: { mappings: { properties: SearchProperties } } }).template.mappings.properties;
      console.log(`${model.title} — schemas/${pipeline}.schema.json v${x.version}\n`);
      console.log('Glue columns');
      console.log(formatTable(['column', 'hive type', 'parquet (duckdb)', 'opensearch'], glue.columns.map((c) => [
        c.name, c.type, abbreviate(parquetType.get(c.name) ?? ''), template === undefined ? 'n/a' : mapping[c.name]?.type ?? 'object',
      ])));
      console.log('\nPartition keys (in the S3 path, not in the files)');
      console.log(formatTable(['key', 'hive type', 'projection'], model.partitionKeys.map((k) => [
        k.name, k.hiveType, Object.entries(k.projection).map(([a, b]) => `${a}=${b}`).join(' '),
      ])));
      console.log(`\nFirehose prefix        ${artifacts.firehose.prefix}`);
      console.log(`Error output prefix    ${artifacts.firehose.errorOutputPrefix}`);
      console.log(`Projection template    ${artifacts.projection['storage.location.template']}`);
      if (template === undefined) console.log(`\nOpenSearch: no search destination for this schema: ${searchProblem}`);
      else {
        const patterns = (template as { index_patterns: string[] }).index_patterns.join(', ');
        // The top-level fields are what the schema lists; the limit counts every object, leaf and .keyword sub-field.
        const fields = `${Object.keys(mapping).length} top-level fields; ${openSearchMappingSize(model).fields} of the ${OPENSEARCH_TOTAL_FIELDS_LIMIT} mapped fields an index takes; dynamic: strict`;
        const why = configured ? `${pipeline} has no search destination (destinations: ${destinations.join(', ')})` : `${pipeline} is not a configured pipeline`;
        // The lines under it list the fields typed other than by their JSON type alone.
        const listed = typedSearchFields(mapping).length > 0 ? '; its date, ip and geo_point fields:' : '';
        if (destinations.includes('search')) console.log(`\nOpenSearch index template  ${patterns}  (${fields})${listed}`);
        else console.log(`\nOpenSearch: not indexed: ${why}; with the search destination its index template would be ${patterns} (${fields})${listed}`);
      }
      for (const [field, type] of typedSearchFields(mapping)) console.log(`  ${field}: ${type}`);
      console.log('\nValidator (JSON Schema 2020-12, precompiled with ajv standalone)');
      console.log(`  code         ${validator.precompiled}`);
      console.log(`  required     ${validator.required.join(', ')}`);
      console.log(`  optional     ${validator.optional.join(', ')}`);
      console.log(`  id / time    ${validator.idField} / ${validator.eventTimeField}`);
      console.log(`  PII          ${Object.entries(x.pii).map(([f, m]) => `${f} → ${m}`).join(', ') || '(none)'}`);
      if (opts.types) console.log(`\n${artifacts.typescript}`);
    });
}

type SearchProperties = Record<string, { type?: string; properties?: SearchProperties }>;

/** The mapping's date, ip and geo_point fields, nested ones included by their dotted path (`shipping_address.geo`). */
function typedSearchFields(properties: SearchProperties, prefix = ''): Array<[string, string]> {
  return Object.entries(properties).flatMap(([name, m]): Array<[string, string]> => {
    if (m.properties) return typedSearchFields(m.properties, `${prefix}${name}.`);
    return m.type === 'geo_point' || m.type === 'date' || m.type === 'ip' ? [[`${prefix}${name}`, m.type]] : [];
  });
}

/** Keeps the table readable: nested DuckDB types repeat the Hive column beside them. */
function abbreviate(type: string): string {
  const m = /^STRUCT\((.*)\)$/.exec(type);
  return m ? `STRUCT(${m[1].split(/, (?=["a-z_]+ )/).length} fields)` : type;
}

/**
 * `--against`: the changes from the schema at a git revision (or in a file) to the one in schemas/, and what each does
 * to the data already written (lib/schema/changes.ts). Exits 1 when one is unsafe, so a CI step before `cdk deploy` stops.
 */
function printChanges(pipeline: string, against: string, model: SchemaModel, json: boolean): void {
  const before = earlierSchema(pipeline, against);
  const file = `schemas/${pipeline}.schema.json`;
  if (before === undefined) {
    if (json) console.log(toJson({ pipeline, against, earlier: false, changes: [] }));
    else console.log(`${file} is not in ${against}: a new pipeline, with no data written by an earlier schema`);
    return;
  }
  const changes = schemaChanges(before, model);
  const unsafe = changes.filter((c) => c.verdict === 'unsafe').length;
  if (json) console.log(toJson({ pipeline, against, earlier: true, changes }));
  else if (changes.length === 0) console.log(`${file} against ${against}: no change to the table, the partitions, the masks or the version`);
  else {
    const care = changes.filter((c) => c.verdict === 'care').length;
    console.log(`${file} against ${against}: ${changes.length} ${changes.length === 1 ? 'change' : 'changes'}, ${unsafe} unsafe, ${care} with care\n`);
    const width = process.stdout.isTTY === true && process.stdout.columns > 0 ? process.stdout.columns : 120;
    console.log(formatTable(['verdict', 'subject', 'change', 'what it does to the data already written'], changes.map((c: SchemaChange) => [
      c.verdict === 'care' ? 'with care' : c.verdict, c.subject, c.change, c.consequence,
    ]), { width }));
    console.log('\nSee schemas/README.md, "Changing a schema".');
  }
  if (unsafe > 0) throw new UserError(`${unsafe} unsafe ${unsafe === 1 ? 'change' : 'changes'} to ${pipeline}'s schema against ${against}`, 1);
}

/** The pipeline's schema in a file, or at a git revision of the project; undefined when that revision has no such file. */
function earlierSchema(pipeline: string, against: string): SchemaModel | undefined {
  const isFile = fs.existsSync(against) && fs.statSync(against).isFile();
  let text: string;
  if (isFile) text = fs.readFileSync(against, 'utf8');
  else {
    if (against.startsWith('-') || against.includes(':')) throw new UserError(`--against ${JSON.stringify(against)} is neither a file nor a git revision (HEAD, origin/main, a tag or a commit)`);
    const file = `schemas/${pipeline}.schema.json`;
    try {
      execFileSync('git', ['rev-parse', '--verify', '--quiet', `${against}^{commit}`], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new UserError(code === 'ENOENT' ? `--against ${against}: git is not installed, and no file is named so` : `--against ${against}: no such file, and no such git revision in ${PROJECT_ROOT}`);
    }
    try {
      // `./`: the path from the project's root, which may be a folder of the repository (`<rev>:<path>` is from the repository's top).
      text = execFileSync('git', ['show', `${against}:./${file}`], { cwd: PROJECT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000, maxBuffer: 64 * 1024 * 1024 });
    } catch {
      return undefined;
    }
  }
  const where = isFile ? against : `${against}:schemas/${pipeline}.schema.json`;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${where} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    return describeSchema(pipeline, json);
  } catch (err) {
    if (!(err instanceof SchemaDerivationError)) throw err;
    throw new UserError(`${where} is not a schema Sluice can derive a table from: ${err.message}`);
  }
}
