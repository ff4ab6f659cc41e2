import type { IConstruct } from 'constructs';

/**
 * Construct props that AWS would reject (or that would deploy something broken), found at synth time.
 * Names the construct and every problem, each with the value and the allowed range.
 */
export class InvalidPropsError extends Error {
  constructor(readonly constructPath: string, readonly problems: readonly string[]) {
    super(`Invalid settings for ${constructPath}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'InvalidPropsError';
  }
}

/** Throws InvalidPropsError when `problems` is not empty. */
export function assertValidProps(scope: IConstruct, problems: readonly string[]): void {
  if (problems.length > 0) throw new InvalidPropsError(scope.node.path, problems);
}
