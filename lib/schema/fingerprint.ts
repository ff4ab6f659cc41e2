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
