import * as fs from 'node:fs';
import * as path from 'node:path';
import { PIPELINE_NAME, PIPELINE_NAME_RULE } from '../config/names';
import { describeSchema, notValidJson, SchemaFileNameError, type SchemaModel } from './model';

const DEFAULT_SCHEMA_DIR = path.resolve(__dirname, '..', '..', 'schemas');

/**
 * Refuses a schema file whose name is no pipeline name (`order_items.schema.json`), naming the file and, when there is
 * one, the name it could have (`order-items.schema.json`).
 */
export function checkSchemaFileName(pipeline: string): void {
  if (PIPELINE_NAME.test(pipeline)) return;
  const suggestion = pipeline.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^[-0-9]+|-+$/g, '').slice(0, 31).replace(/-+$/, '');
  const rename = PIPELINE_NAME.test(suggestion) ? `: rename it ${suggestion}.schema.json` : '';
  throw new SchemaFileNameError(`schemas/${pipeline}.schema.json`, `"${pipeline}" is not a pipeline name (${PIPELINE_NAME_RULE})${rename}`);
}

/** Reads schemas/<pipeline>.schema.json. */
export function readSchema(pipeline: string, schemaDir: string = DEFAULT_SCHEMA_DIR): object {
  checkSchemaFileName(pipeline);
  const file = path.join(schemaDir, `${pipeline}.schema.json`);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    const known = listSchemas(schemaDir);
    throw new Error(`no schema for pipeline "${pipeline}" at ${file}; known pipelines: ${known.join(', ') || '(none)'}`);
  }
  try {
    // A byte order mark (Windows editors save one) is no JSON error: require(), which the generated code loads the file with, skips it too.
    return JSON.parse(text.replace(/^\uFEFF/, '')) as object;
  } catch (err) {
    throw notValidJson(pipeline, err, text);
  }
}

export function listSchemas(schemaDir: string = DEFAULT_SCHEMA_DIR): string[] {
  if (!fs.existsSync(schemaDir)) return [];
  return fs.readdirSync(schemaDir).filter((f) => f.endsWith('.schema.json')).map((f) => f.slice(0, -12)).sort();
}

/** The column model of a pipeline's schema file. */
export function loadModel(pipeline: string, schemaDir?: string): SchemaModel {
  return describeSchema(pipeline, readSchema(pipeline, schemaDir));
}
