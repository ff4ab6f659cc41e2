import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * A wildcard in an IAM policy that is there on purpose. `resource` and `action` are written as in the policy
 * (tokens allowed, e.g. `${bucket.bucketArn}/errors/*`); the finding id is derived the way cdk-nag's
 * AwsSolutions-IAM5 names it, so the acknowledgement covers exactly that wildcard and nothing else.
 */
export interface IntendedWildcard {
  /** The wildcard resource. @default - the wildcard is in an action */
  readonly resource?: string;
  /** The wildcard action. @default - the wildcard is in a resource */
  readonly action?: string;
  /** Why the wildcard is needed and what bounds it. */
  readonly reason: string;
}

/** Acknowledges cdk-nag AwsSolutions-IAM5 findings for the given wildcards on `scope` (a role, policy or an ancestor). */
export function acknowledgeWildcards(scope: IConstruct, wildcards: readonly IntendedWildcard[]): void {
  const stack = Stack.of(scope);
  for (const w of wildcards) {
    if (w.resource !== undefined) {
      Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[Resource::${flattenReference(stack.resolve(w.resource))}]`, reason: w.reason });
    }
    if (w.action !== undefined) {
      Validations.of(scope).acknowledge({ id: `AwsSolutions-IAM5[Action::${w.action}]`, reason: w.reason });
    }
  }
}

/** Acknowledges one cdk-nag rule on `scope` with the reason it does not apply. */
export function acknowledgeRule(scope: IConstruct, ruleId: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: ruleId, reason });
}

/** Renders a resolved CloudFormation value as cdk-nag does in finding ids: `<Logical.Arn>`, `<Ref>`, joins flattened. */
function flattenReference(node: unknown): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/\}/g, '>');
  if (typeof node === 'object' && node !== null) {
    const o = node as Record<string, unknown>;
    if (Array.isArray(o['Fn::Join'])) {
      const [delimiter, items] = o['Fn::Join'] as [string, unknown[]];
      return items.map(flattenReference).join(delimiter);
    }
    if (o['Fn::Sub'] !== undefined) return flattenReference(o['Fn::Sub']);
    if (Array.isArray(o['Fn::GetAtt'])) {
      const [resource, attribute] = o['Fn::GetAtt'] as [unknown, unknown];
      return `<${flattenReference(resource)}.${flattenReference(attribute)}>`;
    }
    if (o['Fn::ImportValue'] !== undefined) return flattenReference(o['Fn::ImportValue']);
    if (o.Ref !== undefined) return `<${flattenReference(o.Ref)}>`;
  }
  return JSON.stringify(node);
}
