/**
 * The caller's AWS credentials with --aws: one SDK default chain for every client of a command, so a credential source
 * is asked once (a credential_process or an SSO login not run again per client), and can be waited on as a stage of its
 * own under a deadline, named by what the chain was asking when the deadline came.
 */
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import type { AwsCredentialIdentityProvider, Logger } from '@smithy/types';
import { escapeControlCharacters } from './output';

export interface CallerCredentials {
  /** The SDK's default chain, memoized: `credentials` of every client of the command. */
  readonly provider: AwsCredentialIdentityProvider;
  /** What the chain asked last: "the container credentials endpoint http://… (AWS_CONTAINER_CREDENTIALS_FULL_URI)". */
  source(): string;
}

/**
 * `region` (--region) is the one the chain's own STS calls use when it is asked before any client (search's credentials
 * stage), as a client's region is when the client asks. An SSO profile's GetRoleCredentials stays in its sso_region.
 */
export function callerCredentials(region?: string): CallerCredentials {
  let asking = "the AWS SDK's default credential chain";
  // The chain logs each source as it turns to it (at debug level): the last one named is the one it waits on.
  const logger: Logger = {
    debug: (message: unknown) => {
      asking = sourceNamedBy(String(message)) ?? asking;
    },
    info: () => undefined,
    warn: (...content: unknown[]) => console.warn(...content),
    error: (...content: unknown[]) => console.error(...content),
  };
  const chain = fromNodeProviderChain({ logger });
  // Given as the asking client's config, not as the chain's clientConfig: that one would also move SSO's call out of sso_region.
  const asker = region ? { callerClientConfig: { region: async () => region } } : undefined;
  const provider: AwsCredentialIdentityProvider = (properties) => chain(properties ?? asker);
  return { provider, source: () => asking };
}

/** The credential source a debug line of the SDK's chain names, for people; undefined for other lines. */
function sourceNamedBy(message: string): string | undefined {
  const profile = `AWS profile ${escapeControlCharacters(process.env.AWS_PROFILE ?? 'default')}`;
  if (/fromHttp|fromContainerMetadata|credential_source is EcsContainer/.test(message)) return containerEndpoint();
  if (/fromInstanceMetadata|credential_source is Ec2InstanceMetadata/.test(message)) return 'the EC2 instance metadata service (IMDS)';
  if (/fromProcess/.test(message)) return `the credential_process of ${profile}`;
  if (/fromSSO/.test(message)) return `IAM Identity Center (SSO) for ${profile}`;
  if (/fromTokenFile|fromWebToken/.test(message)) return 'STS, for the web identity of AWS_WEB_IDENTITY_TOKEN_FILE';
  if (/resolveAssumeRoleCredentials/.test(message)) return `STS, for the role_arn of ${profile}`;
  if (/defaultProvider::fromIni/.test(message)) return `the AWS config files (${profile})`;
  return undefined;
}

/** The container credentials endpoint the chain asks, as the SDK picks it; no query string (it may hold a secret). */
function containerEndpoint(): string {
  const full = process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
  const relative = process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
  const [uri, variable] = relative ? [`http://169.254.170.2${relative}`, 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'] : [full, 'AWS_CONTAINER_CREDENTIALS_FULL_URI'];
  if (!uri) return 'the container credentials endpoint';
  let shown = uri;
  try {
    const parsed = new URL(uri);
    shown = `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    // Shown as it is: the SDK refuses it with its own message.
  }
  return `the container credentials endpoint ${escapeControlCharacters(shown)} (${variable})`;
}
