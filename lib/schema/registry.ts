import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeSchema, notValidJson, type SchemaModel } from './model';

const DEFAULT_SCHEMA_DIR = path.resolve(__dirname, '..', '..', 'schemas');

/** Reads schemas/<pipeline>.schema.json. */
export function readSchema(pipeline: string, schemaDir: string = DEFAULT_SCHEMA_DIR): object {
  if (!/^[a-z][a-z0-9-]{0,30}$/.test(pipeline)) {
    throw new Error(`"${pipeline}" is not a pipeline name (lower-case letters, digits and "-")`);
  }
  const file = path.join(schemaDir, `${pipeline}.schema.json`);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    const known = listSchemas(schemaDir);
    throw new Error(`no schema for pipeline "${pipeline}" at ${file}; known pipelines: ${known.join(', ') || '(none)'}`);
  }
  try {
    return JSON.parse(text) as object;
  } catch (err) {
    throw notValidJson(pipeline, err);
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
