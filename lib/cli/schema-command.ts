import type { Command } from 'commander';
import { glueColumns, loadModel, openSearchIndexTemplate, openSearchMappingSize, OPENSEARCH_TOTAL_FIELDS_LIMIT, parquetColumns, projectionParameters, firehoseDataPrefix, firehoseErrorPrefix, typeScriptTypes, listSchemas } from '../schema';
import { SchemaDerivationError } from '../schema/model';
import { addConfigOption, configFrom, unknownPipeline } from './options';
import { formatTable, toJson } from './output';

export function registerSchemaCommand(program: Command): void {
  addConfigOption(program.command('schema'))
    .description('show what a pipeline\'s schema derives: Glue columns, partition keys, Parquet types, OpenSearch mapping, validator summary')
    .argument('<pipeline>', 'pipeline name (a file schemas/<pipeline>.schema.json)')
    .option('--json', 'print the artifacts as JSON for scripts')
    .option('--types', 'also print the TypeScript record types')
    .addHelpText('after', '\nExamples:\n  $ sluice schema iot\n  $ sluice schema transactions --json | jq .glue.columns')
    .action((pipeline: string, opts: { context?: string[]; json?: boolean; types?: boolean }) => {
      // The configuration first: a pipeline it names without a schema file is refused there, saying the schema is
      // missing, where "unknown pipeline" would send the user looking for a typo.
      const config = configFrom(opts);
      if (!listSchemas().includes(pipeline)) throw unknownPipeline(pipeline, 'known', listSchemas());
      // The mapping is the schema's whatever the pipeline delivers to; only a search destination puts it to use.
      const configured = config.pipelines[pipeline];
      const destinations = configured?.destinations ?? [];
      const model = loadModel(pipeline);
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
