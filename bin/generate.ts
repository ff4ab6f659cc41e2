import { writeGeneratedFiles } from '../lib/schema/codegen';

// Regenerates the precompiled validators and record types from schemas/*.schema.json.
const touched = writeGeneratedFiles();
console.log(touched.length === 0 ? 'generated code is up to date' : `regenerated:\n${touched.map((f) => `  ${f}`).join('\n')}`);
