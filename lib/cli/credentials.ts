/**
 * The caller's AWS credentials with --aws: one SDK default chain for every client of a command, so a credential source
 * is asked once (a credential_process or an SSO login not run again per client), and can be waited on as a stage of its
 * own under a deadline, named by what the chain was asking when the deadline came.
 */
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import type { AwsCredentialIdentityProvider, Logger } from '@smithy/types';
import { explainFailure } from './errors';
import { escapeControlCharacters, INTERRUPTED_EXIT_CODE, UserError } from './output';
import { io } from './progress';
import { leaveWaiting, untilAborted, type CommandDeadline } from './sleep';

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

/** How long a wait for credentials with no deadline goes on before the CLI says what it waits on. */
const NOTICE_AFTER_MS = 5000;

export interface CredentialsStageOptions {
  /** What the credentials sign, for messages: "every request of the search". */
  readonly signing: string;
  /**
   * The command's deadline (search's, put's --timeout with --verify): ends the wait with a UserError naming the source.
   * Without one the wait goes on, with a notice.
   */
  readonly deadline?: CommandDeadline;
  /**
   * With no deadline, how long to wait before saying once on stderr what the wait is on.
   * @default SLUICE_CREDENTIALS_NOTICE_MS (milliseconds; for tests), else 5000
   */
  readonly noticeAfterMs?: number;
}

/**
 * The caller's credentials as a stage of their own, before a command's first request to AWS: every request is signed with
 * them, so a source that hangs is named as such rather than taken for the service asked next. A hung source can be
 * stopped two ways: by the command's deadline, or by Ctrl-C (exit 130); either leaves the SDK's call waiting (it takes no
 * abort signal) and the process ends without it (leaveWaiting), ending a credential_process it ran. What the chain throws is explained (explainFailure).
 */
export async function awaitCallerCredentials(credentials: CallerCredentials, options: CredentialsStageOptions): Promise<void> {
  const { deadline } = options;
  const check = 'check that it runs, or use other credentials (AWS_PROFILE, aws sso login, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)';
  const interruption = new AbortController();
  const onInterrupt = (): void => interruption.abort(new UserError(
    `interrupted (Ctrl-C) while waiting for your AWS credentials from ${credentials.source()}, which sign ${options.signing}: ${check}`, INTERRUPTED_EXIT_CODE));
  const noticeAfterMs = options.noticeAfterMs ?? noticeDelayMs();
  const notice = deadline ? undefined : setTimeout(() => io.err(`sluice: still waiting for your AWS credentials from ${credentials.source()}… (Ctrl-C to stop)`), noticeAfterMs);
  process.on('SIGINT', onInterrupt);
  const loud = quietRequestTimeoutWarnings();
  let leftWaiting = false;
  try {
    await untilAborted(credentials.provider(), AbortSignal.any(deadline ? [deadline.signal, interruption.signal] : [interruption.signal]));
  } catch (err) {
    if (err === interruption.signal.reason) {
      leaveWaiting();
      leftWaiting = true;
      throw err;
    }
    if (deadline && err === deadline.signal.reason) {
      leaveWaiting();
      leftWaiting = true;
      throw deadline.noAnswer(credentials.source(), ` when asked for your AWS credentials, which sign ${options.signing}: ${check}, or raise --timeout to wait longer`);
    }
    throw explainFailure(err, { service: 'AWS credentials' });
  } finally {
    clearTimeout(notice);
    process.off('SIGINT', onInterrupt);
    // A call left waiting may still pass its timeout before the process ends: its warning stays quiet.
    if (!leftWaiting) loud();
  }
}

/**
 * The SDK's warning that its own request to a credential source outlived its (1 s) requestTimeout and goes on waiting:
 * "@smithy/node-http-handler - [WARN] a request has exceeded the configured 1000 ms requestTimeout. Init client
 * requestHandler with throwOnRequestTimeout=true …". It advises a setting the user has no hold on, and the stage says
 * what is waited on, and on what, itself (the notice, the deadline's and Ctrl-C's messages).
 */
const SDK_REQUEST_TIMEOUT_WARNING = /^@smithy\/node-http-handler - \[WARN\] a request has exceeded the configured \d+ ms requestTimeout/;

/** Drops the SDK's requestTimeout warning from console.warn (any other warning passes); returns what puts it back. */
function quietRequestTimeoutWarnings(): () => void {
  const warn = console.warn;
  console.warn = (...content: unknown[]) => {
    if (typeof content[0] === 'string' && SDK_REQUEST_TIMEOUT_WARNING.test(content[0])) return;
    warn.apply(console, content);
  };
  return () => {
    console.warn = warn;
  };
}

/** The notice's delay: SLUICE_CREDENTIALS_NOTICE_MS when set (tests set it short), else NOTICE_AFTER_MS. */
function noticeDelayMs(): number {
  const given = process.env.SLUICE_CREDENTIALS_NOTICE_MS;
  if (given === undefined || given === '') return NOTICE_AFTER_MS;
  const ms = Number(given);
  if (!Number.isInteger(ms) || ms < 0) throw new UserError(`SLUICE_CREDENTIALS_NOTICE_MS=${JSON.stringify(given)}: expected a whole number of milliseconds, e.g. 5000`);
  return ms;
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
