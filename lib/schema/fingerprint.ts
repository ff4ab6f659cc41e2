import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Where generated code lives: bundled into the Lambdas by esbuild and loaded by the twin. */
export const GENERATED_DIR = path.resolve(__dirname, '..', '..', 'transforms', 'shared', 'generated');

/**
 * SHA-256 of a pipeline's generated validator as it is on disk: what the twin (its twin.json) and the deployed
 * transform (the stack's `SchemaFingerprints` output) validate with, for `sluice replay` to compare.
 */
export function validatorFingerprint(pipeline: string): string {
  return createHash('sha256').update(fs.readFileSync(validatorFile(pipeline))).digest('hex');
}

export function validatorFile(pipeline: string): string {
  return path.join(GENERATED_DIR, `${pipeline}.validate.js`);
}

/** How a generated validator names the schema it was generated from: the second line of the file. */
const SCHEMA_HASH_LINE = /^\/\/ from a schema with sha256 ([0-9a-f]{64})$/m;

/**
 * SHA-256 of a schema's JSON as parsed (white space and line endings aside, so a checkout with CRLF line endings or a
 * reformatted file is the same schema); the generator writes it into each validator ({@link schemaHashLine}).
 */
export function schemaHash(schema: object): string {
  return createHash('sha256').update(JSON.stringify(schema)).digest('hex');
}

/** The line a generated validator carries to say which schema it was generated from. */
export function schemaHashLine(schema: object): string {
  return `// from a schema with sha256 ${schemaHash(schema)}`;
}

/**
 * What is wrong with the generated code of `pipeline` when it does not match `schema`, schemas/<pipeline>.schema.json
 * as the file is now (edited, or added, without `npm run generate` since): one line saying to run it; undefined when
 * they match.
 */
export function generatedCodeProblem(pipeline: string, schema: object): string | undefined {
  const file = `schemas/${pipeline}.schema.json`;
  let generated: string;
  try {
    generated = fs.readFileSync(validatorFile(pipeline), 'utf8');
  } catch {
    return `${file} has no generated code yet: run npm run generate`;
  }
  if (SCHEMA_HASH_LINE.exec(generated)?.[1] !== schemaHash(schema)) return `${file} changed since the code was generated: run npm run generate`;
  return undefined;
}
