import Ajv2020, { _ } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import standaloneCode from 'ajv/dist/standalone';
import { dateTimeFormat } from './formats';

/** Options shared by the ahead-of-time compile and by tests that compile on the fly, so both validate alike. */
function newAjv(): Ajv2020 {
  // Standalone code references formats through ./formats (ajv-formats' set with a faster
  // date-time), compiled to JavaScript beside the validators in transforms/shared/generated/
  // (see codegen.ts), so plain Node can load them.
  const ajv = new Ajv2020({
    allErrors: true,
    strict: true,
    code: { source: true, esm: false, lines: false, formats: _`require("./formats.js").formats` },
  });
  addFormats(ajv);
  ajv.addFormat('date-time', dateTimeFormat);
  // x-sluice is Sluice's annotation keyword (see schemas/README.md); validation ignores it.
  ajv.addKeyword({ keyword: 'x-sluice', schemaType: 'object' });
  return ajv;
}

/** CommonJS source of a standalone validator: no schema is compiled at Lambda cold start. */
export function validatorSource(schema: object): string {
  const ajv = newAjv();
  const validate = ajv.compile(schema);
  return standaloneCode(ajv, validate);
}

export { issuesFrom, describeIssues, type ValidationIssue } from './issues';

/** Compiles a validator in-process (tests and tools only; Lambdas use the generated code). */
export function compileValidator(schema: object) {
  return newAjv().compile(schema);
}
