/**
 * The schema a Lambda serves, resolved once per pipeline: the column model (for enrichment,
 * partitioning and masking) and the validator compiled ahead of time by `bin/generate.ts`.
 * Nothing here compiles a schema at run time.
 */
import * as fs from 'node:fs';
import { describeSchema, notValidJson, schemaFileOfParseError, type SchemaModel } from '../../lib/schema/model';
import { schemas, validators, type GeneratedValidator, type PipelineName } from './generated';

export interface PipelineSchema {
  readonly pipeline: PipelineName;
  readonly model: SchemaModel;
  readonly validate: GeneratedValidator;
}

const cache = new Map<string, PipelineSchema>();

/** Pipelines with a generated validator, i.e. a schema under schemas/ when the code was generated. */
export function knownPipelines(): PipelineName[] {
  return Object.keys(validators).sort() as PipelineName[];
}

export function isKnownPipeline(name: string): name is PipelineName {
  return Object.prototype.hasOwnProperty.call(validators, name);
}

/**
 * The model and validator of a pipeline. Throws, naming the known pipelines, when there is none:
 * a Lambda configured for a pipeline it has no schema for must fail at cold start, not per record.
 */
export function pipelineSchema(pipeline: string): PipelineSchema {
  const hit = cache.get(pipeline);
  if (hit) return hit;
  if (!isKnownPipeline(pipeline)) {
    throw new Error(
      `no schema for pipeline "${pipeline}"; known pipelines: ${knownPipelines().join(', ')}. ` +
        'Add schemas/<pipeline>.schema.json and run `npm run generate`.',
    );
  }
  let schema: object;
  try {
    schema = schemas[pipeline];
  } catch (err) {
    // The file was edited into something that is not JSON since the code was generated: its text places the error.
    throw notValidJson(pipeline, err, readTextOrUndefined(schemaFileOfParseError(err)));
  }
  const resolved: PipelineSchema = { pipeline, model: describeSchema(pipeline, schema), validate: validators[pipeline] };
  cache.set(pipeline, resolved);
  return resolved;
}

function readTextOrUndefined(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
