import type { ErrorObject } from 'ajv';

/**
 * Validation issues in words, without ajv's compiler: the Lambdas bundle this module, and importing
 * `./validator` would pull the whole ajv compiler into every bundle.
 */

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
