/**
 * Turns what the network and the AWS SDK throw into messages that say what went wrong and what to do.
 * Anything a user can fix (nothing listening, no credentials, no region, a missing resource, no
 * permission) becomes a UserError: message only, exit 2.
 */
import { constants as bufferConstants } from 'node:buffer';
import * as fs from 'node:fs';
import { escapeControlCharacters, formatBytes, formatNumber, UserError } from './output';

const { MAX_STRING_LENGTH } = bufferConstants;

export interface FailureContext {
  /** What was being called, for messages: "the twin's Firehose API", "Athena". */
  readonly service: string;
  /** The endpoint, when it is the twin's (or one the user gave). */
  readonly endpoint?: string;
  /** How to bring the endpoint up, when it is local. */
  readonly startHint?: string;
  /** What the call was about: "delivery stream sluice-dev-app-events-lake". */
  readonly resource?: string;
}

interface ErrorLike {
  name?: string;
  code?: string;
  message?: string;
  errors?: unknown[];
  cause?: unknown;
  $metadata?: { httpStatusCode?: number };
  $fault?: 'client' | 'server';
  $retryable?: { throttling?: boolean };
}

/** Error names AWS services throttle with (besides what the SDK marks `$retryable.throttling`). */
const THROTTLING_ERRORS = new Set([
  'Throttling', 'ThrottlingException', 'ThrottledException', 'TooManyRequestsException', 'RequestLimitExceeded',
  'ProvisionedThroughputExceededException', 'RequestThrottled', 'RequestThrottledException', 'SlowDown', 'KmsThrottled', 'KMSThrottlingException',
]);

/**
 * A service refusing to use a KMS key for the caller: Kinesis and Firehose (KMSAccessDeniedException, KMSDisabledException,
 * InvalidKMSResourceException, …) and SQS (KmsAccessDenied, KmsDisabled, …). KmsThrottled (SQS) and KMSThrottlingException
 * (Kinesis) are throttling, not a refusal.
 */
function isKmsRefusal(name: string): boolean {
  return !THROTTLING_ERRORS.has(name) && (/^KMS[A-Z]\w*$/.test(name) || /^Kms[A-Z]\w*$/.test(name) || name === 'InvalidKMSResourceException');
}

/** Why a file the user named (`--file`, `--dsl`) cannot be read, as a UserError: "no such file", not ENOENT. */
export function unreadableFile(flag: string, file: string, err: unknown): UserError {
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no such file'
    : code === 'EISDIR' ? 'it is a directory'
      : code === 'ENOTDIR' ? 'a part of the path is not a directory'
        : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
          : (err as Error).message;
  return new UserError(`cannot read ${flag} ${escapeControlCharacters(file)}: ${why}`);
}

/**
 * A file or standard input longer than the text Node.js can hold: it would be read whole, then fail to decode
 * (ERR_STRING_TOO_LONG) with a message in hexadecimal.
 */
function tooLongToRead(flag: string, file: string, maxBytes: number): UserError {
  return new UserError(`cannot read ${flag} ${escapeControlCharacters(file)}: it holds more than ${formatNumber(maxBytes)} bytes (${formatBytes(maxBytes)}), `
    + 'the longest text Node.js can hold as one string: give a shorter one');
}

/**
 * The whole text of a file a flag names (`--file`, `--dsl`), or of standard input for `-`. Standard input is read through
 * the event loop, not with readFileSync: a producer that pauses would hold Ctrl-C's and SIGTERM's handlers back until it
 * wrote again or closed. Bytes that are not UTF-8 read as U+FFFD, as readFileSync reads them. More than `maxBytes` is
 * refused without reading on (UTF-8 never decodes to more characters than it has bytes, so what passes decodes).
 * `stdin` and `maxBytes` are for tests.
 */
export async function readFileOrStdin(
  flag: string,
  file: string,
  { stdin = process.stdin, maxBytes = MAX_STRING_LENGTH }: { stdin?: AsyncIterable<Buffer>; maxBytes?: number } = {},
): Promise<string> {
  try {
    if (file !== '-') {
      // A regular file says its size; a pipe or a device says 0 and is caught by the decoding below.
      if (fs.statSync(file).size > maxBytes) throw tooLongToRead(flag, file, maxBytes);
      return fs.readFileSync(file, 'utf8');
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of stdin) {
      bytes += chunk.length;
      if (bytes > maxBytes) throw tooLongToRead(flag, file, maxBytes);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  } catch (err) {
    if (err instanceof UserError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ERR_STRING_TOO_LONG') throw tooLongToRead(flag, file, maxBytes);
    throw unreadableFile(flag, file, err);
  }
}

/** The socket-level error code (ECONNREFUSED, ENOTFOUND, ...) anywhere in an error's causes. */
export function networkErrorCode(err: unknown, depth = 0): string | undefined {
  if (!err || typeof err !== 'object' || depth > 4) return undefined;
  const e = err as ErrorLike;
  if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) return e.code;
  // The AWS SDK wraps socket errors ("AWS SDK error wrapper for Error: connect ECONNREFUSED …") without the code.
  const inMessage = /\b(ECONNREFUSED|ECONNRESET|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|EHOSTUNREACH)\b/.exec(e.message ?? '');
  if (inMessage) return inMessage[1];
  for (const inner of e.errors ?? []) {
    const code = networkErrorCode(inner, depth + 1);
    if (code) return code;
  }
  return networkErrorCode(e.cause, depth + 1);
}

/**
 * Whether fetch (undici) refused to connect because of the URL's port: one of the Fetch standard's blocked ports
 * (1, 6000, 5060, 6667, 10080, …), which it refuses as browsers do, with only "fetch failed" and a cause "bad port".
 */
function fetchRefusedPort(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 4) return false;
  const e = err as ErrorLike;
  return e.message === 'bad port' || fetchRefusedPort(e.cause, depth + 1);
}

/** "nothing is listening on 127.0.0.1:4573" for a URL. */
function hostPort(endpoint: string): string {
  try {
    const u = new URL(endpoint);
    return `${u.hostname}:${u.port || (u.protocol === 'https:' ? 443 : 80)}`;
  } catch {
    return endpoint;
  }
}

/**
 * The SDK's chain throws a CredentialsProviderError for an SSO profile whose login is over, as it does when it finds no
 * credentials at all; its messages tell them apart. @aws-sdk/credential-provider-sso: "The SSO session associated with
 * this profile has expired. To refresh this SSO session run aws sso login …" (or "… is invalid. …" with no cached token);
 * @aws-sdk/token-providers (an sso_session profile): "Token is expired. To refresh this SSO session run 'aws sso login' …",
 * "Value not present for 'refreshToken' in SSO Token. Cannot refresh. …" (expiring, and no way to refresh it), "The SSO
 * session token associated with profile=dev was not found or is invalid. …"; IAM Identity Center itself, for a token it
 * no longer takes: "UnauthorizedException: Session token not found or invalid".
 */
function ssoSessionProblem(message: string): { expired: boolean; profile: string } | undefined {
  if (!/To refresh this SSO session run|UnauthorizedException: Session token not found or invalid/.test(message)) return undefined;
  const profile = /\bprofile=(\S+?)(?=\s|$)/.exec(message)?.[1] ?? process.env.AWS_PROFILE ?? 'default';
  return { expired: /has expired|Token is expired|Cannot refresh/.test(message), profile };
}

/** Maps an error to a UserError when the user can act on it; returns other errors unchanged. */
export function explainFailure(err: unknown, context: FailureContext): Error {
  if (err instanceof UserError) return err;
  const e = (err ?? {}) as ErrorLike;
  const name = e.name ?? '';
  const message = e.message ?? String(err);
  const about = context.resource ? ` (${context.resource})` : '';

  if (fetchRefusedPort(err)) {
    const where = context.endpoint ? `${context.service} at ${context.endpoint}` : context.service;
    return new UserError(`cannot reach ${where}: its port ${context.endpoint ? `${hostPort(context.endpoint).split(':').pop()} ` : ''}is one Node's fetch refuses to connect to (a blocked port of the Fetch standard, as in browsers): use another port`);
  }
  const net = networkErrorCode(err);
  if (net === 'ECONNREFUSED' && context.endpoint) {
    return new UserError(`nothing is listening on ${hostPort(context.endpoint)}${context.startHint ? `: ${context.startHint}` : ` (${context.service})`}`);
  }
  if (net === 'ENOTFOUND' || net === 'EAI_AGAIN') {
    return new UserError(`cannot resolve the host of ${context.service}${context.endpoint ? ` at ${context.endpoint}` : ''} (${net}): check the endpoint and your network`);
  }
  if (net === 'ECONNRESET' || net === 'ETIMEDOUT' || net === 'ECONNREFUSED') {
    return new UserError(`${context.service}${context.endpoint ? ` at ${context.endpoint}` : ''} dropped the connection (${net}); is it running and reachable?`);
  }
  const sso = ssoSessionProblem(message);
  if (sso) {
    const login = `aws sso login${sso.profile === 'default' ? '' : ` --profile ${sso.profile}`}`;
    return new UserError(sso.expired
      ? `your AWS SSO session has expired (AWS profile ${sso.profile}): run ${login} and try again`
      : `no valid AWS SSO session (AWS profile ${sso.profile}): you are not logged in, or the session was ended; run ${login} and try again`);
  }
  if (name === 'CredentialsProviderError' || /Could not load credentials/i.test(message)) {
    return new UserError('no AWS credentials found: configure them as for the AWS CLI (aws configure, AWS_PROFILE, aws sso login, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)');
  }
  if (/Region is missing/i.test(message)) {
    return new UserError('no AWS region: pass --region, or set AWS_REGION (or a region in your AWS profile)');
  }
  if (['ExpiredToken', 'ExpiredTokenException', 'RequestExpired'].includes(name)) {
    return new UserError(`your AWS credentials have expired (${name}): refresh them (e.g. aws sso login) and try again`);
  }
  if (['UnrecognizedClientException', 'InvalidClientTokenId', 'InvalidSignatureException', 'SignatureDoesNotMatch'].includes(name)) {
    return new UserError(`AWS rejected your credentials (${name}: ${message}); check AWS_PROFILE or your access keys`);
  }
  // An endpoint that answers, but not as this service: the Kinesis client at the twin's Firehose port, or the other way round.
  if (name === 'UnknownOperationException' && context.endpoint) {
    return new UserError(`${context.service} at ${context.endpoint} does not know this call (UnknownOperationException): is that the right endpoint and port for it?`);
  }
  // The twin checks no permissions: a refusal from a local endpoint means it is some other service.
  if (context.startHint && context.endpoint && (name === 'AccessDeniedException' || name === 'AccessDenied' || e.$metadata?.httpStatusCode === 403)) {
    return new UserError(`${context.service} at ${context.endpoint} refused the call (${name || 'HTTP 403'}: ${message}); the twin checks no permissions, so that endpoint is probably not it: check the port`);
  }
  if (isKmsRefusal(name)) {
    return new UserError(`${context.service} could not use its KMS key${about} (${name}: ${message}). Your AWS identity needs kms:GenerateDataKey on the key to write `
      + 'to an encrypted stream or queue, and kms:Decrypt to read from one; the key must be enabled (see docs/cli.md, "Permissions for --aws").');
  }
  if (name === 'AccessDeniedException' || name === 'AccessDenied' || e.$metadata?.httpStatusCode === 403) {
    return new UserError(`${context.service} denied access${about}: ${message}. Your AWS identity needs permission for this call.`);
  }
  // Past the SDK's own retries: nothing the user can fix but the timing (exit 1).
  const status = e.$metadata?.httpStatusCode;
  if (e.$retryable?.throttling === true || THROTTLING_ERRORS.has(name) || status === 429) {
    return new UserError(`${context.service} is throttling requests${about} (${name || `HTTP ${status}`}: ${message}), past the retries: try again later`, 1);
  }
  if (e.$fault === 'server' || (status !== undefined && status >= 500)) {
    return new UserError(`${context.service} is failing${about} (${name || `HTTP ${status}`}: ${message}), past the retries: try again later`, 1);
  }
  if (name === 'InvalidArgumentException' && /KinesisStreamAsSource/.test(message)) {
    return new UserError(`${context.service} refused the record${about}: ${message} The delivery stream reads a Kinesis stream; records go to the stream (is the pipeline's source configured as it is deployed?)`);
  }
  if (name === 'ResourceNotFoundException' || name === 'NoSuchBucket' || name === 'QueueDoesNotExist' || name === 'AWS.SimpleQueueService.NonExistentQueue') {
    return new UserError(`${context.service}: not found${about}: ${context.startHint ? `${message.replace(/\.+$/, '')}. ${context.startHint}` : message}`);
  }
  return err instanceof Error ? err : new Error(message);
}

/** Runs a call and rethrows its failure explained. */
export async function explained<T>(context: FailureContext, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw explainFailure(err, context);
  }
}
