import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { configFromContext, knownSchemaNames, readCdkJsonContext, type SluiceConfig } from '../../lib/config';
import { SluiceStack, stackName } from '../../lib/infra';

/**
 * Every app of a test file writes its cloud assembly under one temp folder, removed after the file's tests. An
 * `App` without an outdir makes a new `cdk.outXXXXXX` under the system temp dir that nothing removes: 2.6 MB
 * per synth, hundreds of megabytes per run of the suite.
 */
const assemblies = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-synth-'));
afterAll(() => fs.rmSync(assemblies, { recursive: true, force: true }));

/** An app as the tests build them: this context, and its output in this file's temp folder. */
export function testApp(context: Readonly<Record<string, unknown>>): App {
  return new App({ context, outdir: fs.mkdtempSync(path.join(assemblies, 'cdk.out-')) });
}

export interface Synthesized {
  readonly app: App;
  readonly stack: SluiceStack;
  readonly config: SluiceConfig;
  readonly template: Template;
}

/**
 * Builds the stack the way bin/app.ts does — cdk.json's context (defaults and feature flags) plus `-c` overrides —
 * and synthesizes it once. The handlers are bundled only when `bundle` is set: bundling is what makes a synth slow
 * (about 4 s against 1 s), and changes nothing in the template but the code assets' hashes; a test that reads or runs
 * a bundle asks for it. Share the result across assertions.
 */
export function synthesize(overrides: Readonly<Record<string, string>> = {}, { bundle = false }: { readonly bundle?: boolean } = {}): Synthesized {
  const app = testApp({ ...readCdkJsonContext(), ...(bundle ? {} : { 'aws:cdk:bundling-stacks': [] }), ...overrides });
  const config = configFromContext(app.node.getAllContext(), { knownSchemas: knownSchemaNames(), fileEnv: readCdkJsonContext().env });
  const stack = new SluiceStack(app, stackName(config), { config });
  const template = Template.fromStack(stack);
  return { app, stack, config, template };
}

/** cdk-nag AwsSolutions findings that are not acknowledged, one line each ("rule @ construct path"). */
export function unacknowledgedNagFindings(app: App): string[] {
  const report = new AwsSolutionsChecks().validateScope(app);
  return report.violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} @ ${r.constructPath}: ${v.description}`));
}

type Json = Record<string, unknown>;

/** Resources of a type, as [logicalId, properties]. */
export function resourcesOf(template: Template, type: string): Array<[string, Json]> {
  return Object.entries(template.findResources(type)).map(([id, r]) => [id, (r as { Properties?: Json }).Properties ?? {}]);
}

/** The single resource of a type whose properties contain `match` (a shallow key/value subset). */
export function resourceWhere(template: Template, type: string, match: Json): [string, Json] {
  const found = resourcesOf(template, type).filter(([, p]) => Object.entries(match).every(([k, v]) => JSON.stringify(p[k]) === JSON.stringify(v)));
  if (found.length !== 1) throw new Error(`expected one ${type} with ${JSON.stringify(match)}, found ${found.length}`);
  return found[0];
}

/** Renders Fn::Join / Ref / Fn::GetAtt as text, e.g. `s3://<StorageData…>/data/`, for comparing strings built from tokens. */
export function flatten(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const o = value as Json;
    if (Array.isArray(o['Fn::Join'])) {
      const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
      return parts.map(flatten).join(sep);
    }
    if (o.Ref !== undefined) return `<${String(o.Ref)}>`;
    if (Array.isArray(o['Fn::GetAtt'])) return `<${(o['Fn::GetAtt'] as string[]).join('.')}>`;
  }
  return JSON.stringify(value);
}

/** Every IAM statement of the template's policies and inline role policies. */
export function iamStatements(template: Template): Array<{ policy: string; Effect: string; Action: string[]; Resource: string[]; Condition?: unknown }> {
  const out: Array<{ policy: string; Effect: string; Action: string[]; Resource: string[]; Condition?: unknown }> = [];
  const add = (policy: string, doc: unknown) => {
    const statements = ((doc as Json | undefined)?.Statement ?? []) as Json[];
    for (const s of statements) {
      const list = (v: unknown) => (Array.isArray(v) ? v : [v]).filter((x) => x !== undefined).map(flatten);
      out.push({ policy, Effect: String(s.Effect), Action: list(s.Action), Resource: list(s.Resource), ...(s.Condition !== undefined ? { Condition: s.Condition } : {}) });
    }
  };
  for (const [id, p] of resourcesOf(template, 'AWS::IAM::Policy')) add(id, p.PolicyDocument);
  for (const [id, p] of resourcesOf(template, 'AWS::IAM::Role')) {
    for (const inline of (p.Policies ?? []) as Json[]) add(`${id}/${String(inline.PolicyName)}`, inline.PolicyDocument);
  }
  return out;
}
