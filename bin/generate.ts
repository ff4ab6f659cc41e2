import { writeGeneratedFiles } from '../lib/schema/codegen';
import { SchemaDerivationError } from '../lib/schema/model';

// Regenerates the precompiled validators and record types from schemas/*.schema.json.
try {
  const touched = writeGeneratedFiles();
  console.log(touched.length === 0 ? 'generated code is up to date' : `regenerated:\n${touched.map((f) => `  ${f}`).join('\n')}`);
} catch (err) {
  // A schema to fix: its file, the JSON path and the problem, without a stack trace.
  if (!(err instanceof SchemaDerivationError)) throw err;
  console.error(err.message);
  process.exitCode = 1;
}
