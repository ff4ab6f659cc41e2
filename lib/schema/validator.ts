import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import standaloneCode from 'ajv/dist/standalone';
import type { ErrorObject } from 'ajv';

/** Options shared by the ahead-of-time compile and by tests that compile on the fly, so both validate alike. */
function newAjv(): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: true, strict: true, code: { source: true, esm: false, lines: false } });
  addFormats(ajv);
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

export interface ValidationIssue {
  /** JSON pointer of the field, e.g. /payment_method/card_number; "/" for the record itself. */
  readonly field: string;
  /** The schema keyword that failed (required, type, enum, maximum, ...). */
  readonly rule: string;
  readonly message: string;
}

/** Turns ajv errors into issues that name the field and the rule. */
export function issuesFrom(errors: readonly ErrorObject[] | null | undefined): ValidationIssue[] {
  return (errors ?? []).map((e) => {
    let field = e.instancePath || '/';
    let message = e.message ?? e.keyword;
    if (e.keyword === 'required') {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      field = `${e.instancePath}/${missing}`;
      message = 'is required';
    } else if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      field = `${e.instancePath}/${extra}`;
      message = 'is not a field of the schema';
    } else if (e.keyword === 'enum') {
      message = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    }
    return { field, rule: e.keyword, message };
  });
}

/** One line a person can act on: "/amount must be > 0; /currency is required". */
export function describeIssues(issues: readonly ValidationIssue[]): string {
  return issues.map((i) => `${i.field} ${i.message}`).join('; ');
}

/** Compiles a validator in-process (tests and tools only; Lambdas use the generated code). */
export function compileValidator(schema: object) {
  return newAjv().compile(schema);
}
