import type * as iam from 'aws-cdk-lib/aws-iam';

/**
 * `resource`, except that its grant method `method` grants what `grant` does. The L2 constructs that take a resource
 * (a Firehose destination, an event source, an on-failure destination) call its broadest grant for their role; this
 * is how the stack narrows what they grant without copying the constructs. Every other member is the resource's own.
 */
export function withGrant<T extends object>(resource: T, method: keyof T & string, grant: (grantee: iam.IGrantable) => iam.Grant): T {
  return new Proxy(resource, {
    get(target, property) {
      if (property === method) return grant;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
