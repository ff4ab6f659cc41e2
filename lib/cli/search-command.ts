import * as tty from 'node:tty';
import type { Command } from 'commander';
import { resourceNames } from '../config';
import { loadModel, openSearchIndexTemplate, type SchemaModel } from '../schema';
import { jsonErrorWithoutContent } from '../../transforms/shared';
import { addProgressOption, addTargetOptions, examples, formatDuration, hintDashesBeforeDashedArgument, parseCount, parseDuration, requirePipeline, type TargetFlags } from './options';
import { displayRows, displayValue, escapeControlCharacters, formatTable, toJson, UserError } from './output';
import { awaitCallerCredentials } from './credentials';
import { explainFailure, readFileOrStdin } from './errors';
import { sluiceCommand } from './invocation';
import { io, Progress } from './progress';
import { NO_OPENSEARCH_HINT, searchBackendFor, type SearchResponseBody } from './search-backend';
import { commandDeadline } from './sleep';
import { OutputKeys } from './stack-outputs';
import { resolveTarget } from './target';

interface SearchFlags extends TargetFlags {
  readonly dsl?: string;
  readonly since?: string;
  readonly size: string;
  readonly countBy?: string;
  readonly top: string;
  readonly fields?: string;
  readonly index?: string;
  readonly json?: boolean;
  readonly progress?: boolean;
  readonly timeout: string;
}

type Mapping = { type?: string; properties?: Record<string, Mapping>; fields?: Record<string, Mapping> };

export function registerSearchCommand(program: Command): void {
  const command = program
    .command('search')
    .description('search a pipeline\'s OpenSearch indices: query-string syntax or a DSL file, hits as a table, counts per field with --count-by')
    .argument('<pipeline>', 'a pipeline with the search destination')
    .argument('[query]', 'OpenSearch query-string syntax, e.g. \'event_type:click AND device.type:mobile\' (default: everything); a query that starts with \'-\' (NOT) goes after -- (see the examples)')
    .option('--dsl <file.json>', 'a search body (or just a query clause) in OpenSearch Query DSL, from a file or "-" for standard input; combined with the query string and --since')
    .option('--since <time>', 'only events newer than this, by event time: 15m, 1h, 7d')
    .option('--size <n>', 'hits to show', '20')
    .option('--count-by <field>', 'count documents per value of a field (a terms aggregation) instead of listing hits')
    .option('--top <n>', 'with --count-by, how many values', '20')
    .option('--fields <a,b,c>', 'columns of the hits table (dotted paths into the document)')
    .option('--index <pattern>', 'index pattern (default <pipeline>-*, the rotated indices Firehose writes)')
    .option('--json', 'print the hits (or buckets) and total as JSON')
    .option('--timeout <time>', 'give up when OpenSearch (with --aws, first your AWS credentials\' source, then CloudFormation for the stack\'s outputs, then STS for its query role) has not answered by then, retries included', '30s');
  addTargetOptions(command, { opensearch: true });
  addProgressOption(command);
  hintDashesBeforeDashedArgument(command, () => `a query that starts with '-' is read as options: put -- before it, e.g. ${sluiceCommand()} search clickstream -- '-event_type:click'`);
  command.addHelpText('after', [
    examples(
      'OPENSEARCH_URL=http://127.0.0.1:9200 sluice search clickstream \'event_type:add_to_cart\' --since 1h',
      'sluice search clickstream --count-by device.type --since 1d',
      'sluice search clickstream --since 1h -- \'-event_type:click\'',
      'sluice search clickstream --dsl slow-pages.json --fields event_time,page.path,duration_ms',
      'echo \'{"range": {"duration_ms": {"gte": 5000}}}\' | sluice search clickstream --dsl - --since 1d',
      'sluice search clickstream \'user_id:"user-42"\' --aws --json',
    ),
    '\nLocally the CLI asks OPENSEARCH_URL (or --endpoint-opensearch); with --aws the stack\'s domain, SigV4-signed as the stack\'s read-only query role (OpenSearchQueryRoleArn, assumed with your AWS credentials) when it has one, else as you.',
    'Exit status: 0 ok (also with no hits) · 1 OpenSearch refused the query · 2 usage, configuration or environment problem (e.g. no OpenSearch)',
  ].join('\n'));
  command.action(async (pipeline: string, query: string | undefined, flags: SearchFlags) => {
    const target = resolveTarget(flags);
    const p = requirePipeline(target.config, pipeline);
    if (!p.destinations.includes('search')) {
      throw new UserError(`pipeline "${pipeline}" does not deliver to search (destinations: ${p.destinations.join(', ')}); query its lake with \`${sluiceCommand()} query\``);
    }
    const model = loadModel(pipeline);
    const size = parseCount(flags.size, '--size', 0, 10_000);
    const top = parseCount(flags.top, '--top', 1, 10_000);
    const timeoutMs = parseDuration(flags.timeout, '--timeout');
    // Named before anything is sent: a field the index does not have would print an empty column.
    const fields = flags.fields !== undefined ? displayFields(model, flags.fields) : defaultFields(model);
    const body = buildSearchBody(model, {
      query,
      dsl: flags.dsl !== undefined ? await readDsl(flags.dsl) : undefined,
      sinceMs: flags.since !== undefined ? parseDuration(flags.since, '--since') : undefined,
      size: flags.countBy !== undefined && !command.getOptionValueSource('size')?.startsWith('cli') ? 0 : size,
      countBy: flags.countBy,
      top,
    });
    // One deadline for the whole search, from here on: with --aws, the caller's credentials, reading the stack's outputs
    // (the endpoint) and the query role's AssumeRole, then asking OpenSearch, whose client retries an attempt that timed
    // out (after 30 s) or answered 502, 503 or 504 within it. A hung credential source, CloudFormation, STS (the query
    // role) or OpenSearch fails in --timeout, not after 4 attempts × 30 s.
    const deadline = commandDeadline(timeoutMs);
    // With --aws, the caller's credentials first: every request of the search is signed with them (CloudFormation's,
    // STS's, OpenSearch's), so a credential source that never answers is named as such, not taken for the service.
    if (target.kind === 'aws') {
      await awaitCallerCredentials(target.credentials, { signing: 'every request of the search', deadline });
    }
    let backend;
    try {
      backend = await searchBackendFor(target, deadline.signal);
    } catch (err) {
      if (err !== deadline.signal.reason) throw err;
      throw deadline.noAnswer('CloudFormation', ` when asked for the outputs of ${escapeControlCharacters(target.label)}, which name the OpenSearch endpoint: check your network and AWS credentials, or raise --timeout to wait longer`);
    }
    if (!backend) throw new UserError(NO_OPENSEARCH_HINT);
    // An empty pattern would search every index of the cluster (`POST /_search`), not none.
    if (flags.index !== undefined && flags.index.trim() === '') throw new UserError(`--index ${JSON.stringify(flags.index)}: expected an index pattern such as ${resourceNames(target.config, pipeline).indexPrefix}-*`);
    const index = flags.index ?? `${resourceNames(target.config, pipeline).indexPrefix}-*`;
    // The query role's credentials before the search that waits on them: a hung STS is named, not taken for OpenSearch.
    if (backend.queryRole) {
      try {
        await backend.queryRole.assume(deadline.signal);
      } catch (err) {
        await backend.close();
        const role = `the stack's OpenSearch query role ${escapeControlCharacters(backend.queryRole.arn)} (output ${OutputKeys.OpenSearchQueryRoleArn})`;
        if (err !== deadline.signal.reason) throw explainFailure(err, { service: 'STS', resource: `AssumeRole of ${role}` });
        throw deadline.noAnswer('STS', ` when asked to assume ${role}, whose credentials sign the search: check your network and AWS credentials, or raise --timeout to wait longer`);
      }
    }
    const progress = new Progress({ forced: flags.progress });
    const started = performance.now();
    let response: SearchResponseBody;
    try {
      response = await progress.during(() => `searching ${index} on ${backend.description} · ${formatDuration(performance.now() - started)}`, backend.search(index, body, deadline.signal));
    } catch (err) {
      if (err !== deadline.signal.reason) throw err;
      throw deadline.noAnswer(backend.description, ': is it up and not overloaded? Raise --timeout to wait longer');
    } finally {
      progress.done();
      await backend.close();
    }
    printResponse(model, response, { index, json: flags.json === true, fields, countBy: flags.countBy, elapsedMs: Math.round(performance.now() - started), where: backend.description });
  });
}

/** The --dsl JSON object, from a file or, for "-", standard input. */
async function readDsl(file: string): Promise<Record<string, unknown>> {
  const shown = file === '-' ? '- (standard input)' : file;
  if (file === '-' && tty.isatty(0)) {
    // Reading a terminal would wait, without a prompt, for a JSON body typed until Ctrl-D.
    throw new UserError('--dsl -: standard input is a terminal, not the query DSL: pipe the DSL in (--dsl - < query.json) or name its file (--dsl query.json)');
  }
  const text = await readFileOrStdin('--dsl', file);
  if (text.trim() === '') throw new UserError(`--dsl ${shown} is empty: expected a JSON object, a search body or a query clause`);
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('expected a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    // Not JSON.parse's own message: it quotes the input, line breaks and all, and the message is one line.
    throw new UserError(`--dsl ${shown} is not a JSON object: ${jsonErrorWithoutContent(err)}`);
  }
}

/** Keys of a whole search body; anything else in a --dsl file is taken as a query clause. */
const BODY_KEYS = new Set(['query', 'aggs', 'aggregations', 'sort', 'size', 'from', '_source', 'track_total_hits', 'post_filter', 'highlight', 'search_after', 'fields']);

/** The event-time field as indexed (the column name the enriched record carries). */
export function eventTimeField(model: SchemaModel): string {
  return model.enrichedColumns.find((c) => c.jsonKey === model.extensions.eventTimeField)?.name ?? model.extensions.eventTimeField;
}

/** A field path to aggregate on: text fields have their `.keyword` sub-field; unknown paths are a UserError. */
export function aggregatableField(model: SchemaModel, field: string): string {
  const properties = indexProperties(model);
  const parts = field.replace(/\.keyword$/, '').split('.');
  const node = mappingAt(properties, parts);
  if (!node || node.properties) {
    throw new UserError(`--count-by ${field}: not a field of the ${model.pipeline} index; fields: ${leafPaths(properties).join(', ')}`);
  }
  return node.type === 'text' && node.fields?.keyword ? `${parts.join('.')}.keyword` : parts.join('.');
}

/** The --fields list to show: a field or object of the index each (an object shows whole); unknown paths are a UserError. */
export function displayFields(model: SchemaModel, list: string): string[] {
  const properties = indexProperties(model);
  const fields = list.split(',').map((f) => f.trim()).filter(Boolean);
  const unknown = fields.filter((f) => !displayable(properties, f.split('.')));
  if (fields.length === 0 || unknown.length > 0) {
    const what = fields.length === 0 ? `--fields ${JSON.stringify(list)}: no field named` : `--fields: ${unknown.map((f) => escapeControlCharacters(f)).join(', ')} ${unknown.length === 1 ? 'is not a field' : 'are not fields'} of the ${model.pipeline} index`;
    throw new UserError(`${what}; fields: ${leafPaths(properties).join(', ')}`);
  }
  return fields;
}

/** A field, an object, or a key inside a map (flat_object) or a geo point: documents hold those too. */
function displayable(properties: Record<string, Mapping>, parts: readonly string[]): boolean {
  for (let n = parts.length; n > 0; n--) {
    const node = mappingAt(properties, parts.slice(0, n));
    if (node !== undefined) return n === parts.length || node.type === 'flat_object' || node.type === 'geo_point';
  }
  return false;
}

/** Every leaf field of a mapping, by dotted path. */
function leafPaths(properties: Record<string, Mapping>, prefix = ''): string[] {
  return Object.entries(properties).flatMap(([k, v]) => (v.properties ? leafPaths(v.properties, `${prefix}${k}.`) : [`${prefix}${k}`]));
}

function indexProperties(model: SchemaModel): Record<string, Mapping> {
  return (openSearchIndexTemplate(model) as { template: { mappings: { properties: Record<string, Mapping> } } }).template.mappings.properties;
}

function mappingAt(properties: Record<string, Mapping>, parts: readonly string[]): Mapping | undefined {
  let node: Mapping | undefined = { properties };
  // Own properties only: `constructor` or `toString` is no field, whatever every object inherits.
  for (const part of parts) node = node?.properties && Object.hasOwn(node.properties, part) ? node.properties[part] : undefined;
  return node;
}

/** OpenSearch's floating-point field types: their columns print as query's DOUBLE columns do (see displayRows). */
const FLOATING_POINT_MAPPING = new Set(['double', 'float', 'half_float', 'scaled_float']);

/** Each shown field's type for displayRows: DOUBLE for a floating-point field, nothing for the rest. */
export function searchColumnTypes(model: SchemaModel, fields: readonly string[]): string[] {
  const properties = indexProperties(model);
  return fields.map((f) => (FLOATING_POINT_MAPPING.has(mappingAt(properties, f.split('.'))?.type ?? '') ? 'DOUBLE' : ''));
}

export interface SearchRequest {
  readonly query?: string;
  readonly dsl?: Record<string, unknown>;
  readonly sinceMs?: number;
  readonly size: number;
  readonly countBy?: string;
  readonly top: number;
}

/** The search body: the query string, the DSL and --since combined with bool/filter; newest first. */
export function buildSearchBody(model: SchemaModel, request: SearchRequest): Record<string, unknown> {
  const dsl = request.dsl ?? {};
  const isBody = Object.keys(dsl).some((k) => BODY_KEYS.has(k));
  const body: Record<string, unknown> = isBody ? { ...dsl } : {};
  const must: unknown[] = [];
  if (isBody && body.query !== undefined) must.push(body.query);
  if (!isBody && request.dsl !== undefined) must.push(dsl);
  if (request.query !== undefined && request.query.trim() !== '') {
    must.push({ query_string: { query: request.query, default_operator: 'AND', lenient: true } });
  }
  const filter: unknown[] = [];
  if (request.sinceMs !== undefined) filter.push({ range: { [eventTimeField(model)]: { gte: `now-${Math.max(1, Math.round(request.sinceMs / 1000))}s` } } });
  body.query = must.length === 0 && filter.length === 0
    ? { match_all: {} }
    : must.length === 1 && filter.length === 0
      ? must[0]
      : { bool: { ...(must.length > 0 ? { must } : {}), ...(filter.length > 0 ? { filter } : {}) } };
  if (body.size === undefined) body.size = request.size;
  if (body.sort === undefined && (body.size as number) > 0) body.sort = [{ [eventTimeField(model)]: { order: 'desc', unmapped_type: 'date' } }];
  body.track_total_hits = true;
  if (request.countBy !== undefined) {
    body.aggs = { ...(body.aggs as object | undefined), count_by: { terms: { field: aggregatableField(model, request.countBy), size: request.top } } };
  }
  return body;
}

/** Default columns: the event time, the id, the partition fields, the entity. */
function defaultFields(model: SchemaModel): string[] {
  const x = model.extensions;
  const column = (key: string) => model.enrichedColumns.find((c) => c.jsonKey === key)?.name ?? key;
  const fields = [eventTimeField(model), column(x.idField), ...x.partitionFields.map(column)];
  if (x.entityField) fields.push(column(x.entityField));
  return [...new Set(fields)];
}

function valueAt(doc: Record<string, unknown> | undefined, path: string): unknown {
  let node: unknown = doc;
  for (const part of path.split('.')) {
    // Own fields only: `--fields constructor` is a field the document lacks, not Object's constructor.
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function totalOf(response: SearchResponseBody): number {
  const t = response.hits.total;
  return typeof t === 'number' ? t : (t?.value ?? response.hits.hits.length);
}

function printResponse(
  model: SchemaModel,
  response: SearchResponseBody,
  options: { index: string; json: boolean; fields: readonly string[]; countBy?: string; elapsedMs: number; where: string },
): void {
  const total = totalOf(response);
  const buckets = response.aggregations?.count_by?.buckets;
  if (options.json) {
    io.out(toJson({
      index: options.index,
      total,
      hits: response.hits.hits.map((h) => ({ _index: h._index, _id: h._id, ...h._source })),
      ...(buckets ? { countBy: { field: options.countBy, buckets: buckets.map((b) => ({ value: b.key_as_string ?? b.key, count: b.doc_count })) } } : {}),
      ...(response.aggregations ? { aggregations: response.aggregations } : {}),
    }));
    return;
  }
  if (buckets) {
    io.out(formatTable([options.countBy ?? 'value', 'documents'], buckets.map((b) => [displayValue(b.key_as_string ?? b.key), b.doc_count])));
    const other = (response.aggregations?.count_by?.sum_other_doc_count as number | undefined) ?? 0;
    if (other > 0) io.out(`(${other.toLocaleString('en-US')} more documents in other values; raise --top)`);
  }
  if (response.hits.hits.length > 0) {
    if (buckets) io.out('');
    const { fields } = options;
    io.out(formatTable(fields, displayRows(searchColumnTypes(model, fields), response.hits.hits.map((h) => fields.map((f) => valueAt(h._source, f))))));
  }
  const shown = response.hits.hits.length;
  io.out(`\n${total.toLocaleString('en-US')} matching document${total === 1 ? '' : 's'}${shown > 0 && shown < total ? ` (showing ${shown})` : ''} in ${escapeControlCharacters(options.index)} · ${escapeControlCharacters(options.where)} · ${formatDuration(options.elapsedMs)}`);
}
