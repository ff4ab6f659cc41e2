import * as path from 'node:path';
import { CfnResource, Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { LogLevel, NodejsFunction, OutputFormat, type NodejsFunctionProps } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { PROJECT_ROOT } from '../config';
import { acknowledgeRule } from './nag';
import { assertValidProps } from './errors';

/** The Lambda handlers Sluice deploys, one folder each under transforms/. */
export const HANDLERS = {
  recordTransform: 'record-transform',
  metadataConsumer: 'metadata-consumer',
  failureRouter: 'failure-router',
  indexTemplate: 'index-template',
} as const;
export type HandlerName = (typeof HANDLERS)[keyof typeof HANDLERS];

/** The entry file of a handler: transforms/<name>/handler.ts. */
export function handlerEntry(handler: HandlerName): string {
  return path.join(PROJECT_ROOT, 'transforms', handler, 'handler.ts');
}

/** Runtime every Sluice Lambda runs on; the bundle targets the same Node.js version. */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_22_X;
const ESBUILD_TARGET = 'node22';

export interface SluiceFunctionProps {
  /** Which handler under transforms/ to bundle. */
  readonly handler: HandlerName;
  /** What the function is for, shown in the console. */
  readonly description: string;
  /** @default 256 */
  readonly memoryMiB?: number;
  /** @default Duration.seconds(60) */
  readonly timeout?: Duration;
  /** Environment variables the handler reads. @default - none */
  readonly environment?: Record<string, string>;
  /** What happens to the function's log group when the stack is deleted. @default RemovalPolicy.DESTROY */
  readonly logRemovalPolicy?: RemovalPolicy;
  /**
   * Modules left out of the bundle because the Lambda runtime provides them.
   * @default - the aws-cdk-lib default (the AWS SDK v3 the Node.js runtime ships)
   */
  readonly externalModules?: string[];
}

/**
 * A handler from transforms/ bundled by a local esbuild (no Docker): Node.js 22 on Graviton, minified,
 * with source maps, and a log group with a retention period instead of Lambda's never-expiring default.
 */
export class SluiceFunction extends Construct {
  /** How long function logs are kept. */
  static readonly LOG_RETENTION = logs.RetentionDays.ONE_MONTH;

  readonly function: NodejsFunction;
  readonly logGroup: logs.LogGroup;
  /** The execution role; grants to the function land here. */
  readonly role: iam.Role;
  /** The timeout, for alarms on duration close to it. */
  readonly timeout: Duration;

  constructor(scope: Construct, id: string, props: SluiceFunctionProps) {
    super(scope, id);
    const memoryMiB = props.memoryMiB ?? 256;
    this.timeout = props.timeout ?? Duration.seconds(60);
    const problems: string[] = [];
    if (!Number.isInteger(memoryMiB) || memoryMiB < 128 || memoryMiB > 10240) {
      problems.push(`memoryMiB must be a whole number from 128 to 10240 (Lambda's range), got ${memoryMiB}`);
    }
    if (this.timeout.toSeconds() < 1 || this.timeout.toSeconds() > 900) {
      problems.push(`timeout must be 1–900 seconds (Lambda's range), got ${this.timeout.toSeconds()} s`);
    }
    assertValidProps(this, problems);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: SluiceFunction.LOG_RETENTION,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.DESTROY,
    });

    // An own role instead of the default one: the AWS-managed basic execution policy writes to every log group (`*`),
    // this role writes to its own log group only.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Runs ${props.handler}: ${props.description}`.slice(0, 1000),
    });
    this.logGroup.grantWrite(this.role);

    const bundling: NodejsFunctionProps['bundling'] = {
      minify: true,
      sourceMap: true,
      sourcesContent: false,
      target: ESBUILD_TARGET,
      format: OutputFormat.CJS,
      forceDockerBundling: false,
      // esbuild's size summary per function is noise in `cdk synth` and `cdk deploy` (and defeats `--quiet`); its warnings and errors still show.
      logLevel: LogLevel.WARNING,
      // A dynamic import() of a package becomes a require(): esbuild keeps it an import() for node22, which resolves through
      // Node's ES module loader, and that ignores NODE_PATH, where the runtime's AWS SDK is (upstream Node fails it with
      // ERR_MODULE_NOT_FOUND; only Lambda's patched loader finds it). The PII hash key's Secrets Manager client loads so.
      esbuildArgs: { '--supported:dynamic-import': 'false' },
      ...(props.externalModules ? { externalModules: props.externalModules } : {}),
    };

    this.function = new NodejsFunction(this, 'Function', {
      entry: handlerEntry(props.handler),
      handler: 'handler',
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: path.join(PROJECT_ROOT, 'package-lock.json'),
      runtime: LAMBDA_RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      description: props.description,
      memorySize: memoryMiB,
      timeout: this.timeout,
      logGroup: this.logGroup,
      role: this.role,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling,
    });
    acknowledgeRule(this.function, 'AwsSolutions-L1',
      'Node.js 22 on purpose: the handlers are built and tested for it (esbuild target node22); moving to a newer runtime is a deliberate upgrade, not a default.');
  }
}

/**
 * Gives the Lambda functions aws-cdk-lib adds on its own (the S3 bucket-notifications handler, the auto-delete-objects
 * provider of a dev stack) a log group with SluiceFunction's retention: otherwise Lambda creates
 * `/aws/lambda/<name>` on their first run and keeps it forever. Their roles carry the basic execution policy, which
 * may write to any log group. Raw `AWS::Lambda::Function` resources only: an L2 function (every SluiceFunction, the
 * index templates' provider) has its log group from its props.
 */
export function retainHandlerLogs(scope: Construct, removalPolicy: RemovalPolicy): void {
  for (const c of scope.node.findAll()) {
    if (!(c instanceof CfnResource) || c.cfnResourceType !== 'AWS::Lambda::Function' || c instanceof lambda.CfnFunction) continue;
    const parent = c.node.scope;
    if (parent === undefined) continue;
    const logGroup = new logs.LogGroup(parent, `${c.node.id}Logs`, { retention: SluiceFunction.LOG_RETENTION, removalPolicy });
    c.addPropertyOverride('LoggingConfig.LogGroup', logGroup.logGroupName);
  }
}
