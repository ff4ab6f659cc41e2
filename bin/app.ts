/**
 * The CDK app: `npx cdk synth|deploy|destroy`, configured by cdk.json's context and `-c key.path=value`
 * overrides (e.g. `cdk deploy -c env=prod -c pipelines.iot.shards=8`).
 */
import { App, Errors, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError, configFromContext, contextFileKeys, knownSchemaNames, readCdkJsonContext, type SluiceConfig } from '../lib/config';
import { InvalidPropsError, SluiceStack, stackName } from '../lib/infra';
import { SchemaDerivationError } from '../lib/schema';
import { writeGeneratedFiles } from '../lib/schema/codegen';

/** Errors a user can fix from their configuration or schemas: print the message alone and exit non-zero. */
function failWithMessage(err: unknown): never {
  // CDK's own ValidationError: a construct refused its props (a setting the checks above do not know yet).
  if (err instanceof ConfigError || err instanceof InvalidPropsError || err instanceof SchemaDerivationError || Errors.isValidationError(err)) {
    console.error(err.message);
    process.exit(1);
  }
  throw err;
}

try {
  // The transform Lambdas bundle the precompiled validators: regenerate them from the schemas before bundling.
  writeGeneratedFiles();

  const app = new App();
  // Every context value in effect: cdk.json's and `-c` ones (a `-c a.b.c=1` arrives as the key "a.b.c").
  const config: SluiceConfig = configFromContext(app.node.getAllContext(), { knownSchemas: knownSchemaNames(), fileEnv: readCdkJsonContext().env, fileKeys: contextFileKeys() });

  // Environment-agnostic: account and region are the deploying credentials' (pseudo-parameters in the template),
  // so one synthesized template deploys anywhere and nothing looks up the account at synth time.
  new SluiceStack(app, stackName(config), {
    config,
    description: `Sluice ${config.env}: Kinesis and Firehose pipelines to an S3/Parquet lake${Object.values(config.pipelines).some((p) => p.destinations.includes('search')) ? ' and OpenSearch' : ''}`,
  });
  // AWS Solutions checks run on every synth: an unacknowledged finding fails it.
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  // Synthesized here rather than as the process exits, so a stack CDK refuses (e.g. over CloudFormation's quotas) is
  // reported by its message alone, as the errors above are.
  app.synth();
} catch (err) {
  failWithMessage(err);
}
