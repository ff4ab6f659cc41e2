/**
 * What explainFailure makes of answers from an endpoint that is not the service the command meant to call, and of the
 * credential chain's word for an SSO login that is over.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { callerCredentials } from '../../lib/cli/credentials';
import { explainFailure, readFileOrStdin } from '../../lib/cli/errors';
import { UserError } from '../../lib/cli/output';

const sdkError = (name: string, message: string, status: number) => Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
const twinKinesis = { service: 'the twin\'s Kinesis API', endpoint: 'http://127.0.0.1:4573', startHint: 'start the twin with `npx sluice local up`' };

test('an endpoint that does not know the call (the Kinesis client at the Firehose port) is named, with the port to check', () => {
  const explained = explainFailure(sdkError('UnknownOperationException', '', 400), twinKinesis);
  expect(explained).toBeInstanceOf(UserError);
  expect(explained.message).toBe('the twin\'s Kinesis API at http://127.0.0.1:4573 does not know this call (UnknownOperationException): is that the right endpoint and port for it?');
});

test('a 403 from a local endpoint does not send the user to their AWS permissions', () => {
  const explained = explainFailure(sdkError('AccessDeniedException', 'Forbidden', 403), twinKinesis);
  expect(explained).toBeInstanceOf(UserError);
  expect(explained.message).toMatch(/^the twin's Kinesis API at http:\/\/127\.0\.0\.1:4573 refused the call \(AccessDeniedException: Forbidden\); the twin checks no permissions/);
  expect(explained.message).not.toMatch(/Your AWS identity/);
  // Against AWS (no local endpoint), it is about permissions.
  expect(explainFailure(sdkError('AccessDeniedException', 'no', 403), { service: 'Firehose' }).message).toMatch(/Your AWS identity needs permission/);
});

test('a port fetch refuses outright (the Fetch standard\'s blocked ports) is named as such, not "fetch failed"', async () => {
  for (const port of [6000, 1, 5060, 6667, 10080]) {
    const endpoint = `http://127.0.0.1:${port}`;
    // undici refuses these before it connects: nothing needs to listen there.
    const err = await fetch(`${endpoint}/`, { method: 'POST' }).then(() => undefined, (e: unknown) => e);
    const explained = explainFailure(err, { service: 'the twin\'s Firehose API', endpoint, startHint: 'start the twin' });
    expect(explained).toBeInstanceOf(UserError);
    expect(explained.message).toBe(`cannot reach the twin's Firehose API at ${endpoint}: its port ${port} is one Node's fetch refuses to connect to (a blocked port of the Fetch standard, as in browsers): use another port`);
    expect((explained as UserError).exitCode).toBe(2);
  }
});

describe('an SSO login that is over is said as such, not as "no AWS credentials found"', () => {
  const savedEnv = { ...process.env };
  let home: string;
  beforeEach(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sso-'));
  });
  afterEach(() => {
    process.env = { ...savedEnv };
    fs.rmSync(home, { recursive: true, force: true });
  });

  /** The chain's failure for an SSO profile `dev` whose cached login (under this HOME) expires at `expiresAt`, or has none. */
  async function chainFailureForSsoProfile(expiresAt: string | undefined): Promise<unknown> {
    const startUrl = 'https://example.awsapps.com/start';
    fs.writeFileSync(path.join(home, 'config'), `[profile dev]\nsso_start_url = ${startUrl}\nsso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = Dev\n`);
    if (expiresAt !== undefined) {
      const cache = path.join(home, '.aws', 'sso', 'cache');
      fs.mkdirSync(cache, { recursive: true });
      fs.writeFileSync(path.join(cache, `${createHash('sha1').update(startUrl).digest('hex')}.json`), JSON.stringify({ accessToken: 'token', expiresAt, region: 'us-east-1', startUrl }));
    }
    process.env = {
      PATH: savedEnv.PATH,
      HOME: home,
      AWS_CONFIG_FILE: path.join(home, 'config'),
      AWS_SHARED_CREDENTIALS_FILE: path.join(home, 'no-credentials'),
      AWS_PROFILE: 'dev',
      AWS_EC2_METADATA_DISABLED: 'true',
    };
    return callerCredentials('eu-west-1').provider().then(() => undefined, (err: unknown) => err);
  }

  test('the SDK\'s own error for an expired session (a real chain, an expired cached token) says to run aws sso login for the profile', async () => {
    const err = await chainFailureForSsoProfile('2020-01-01T00:00:00Z');
    expect(err).toMatchObject({ name: 'CredentialsProviderError', message: expect.stringMatching(/has expired/) as unknown });
    const explained = explainFailure(err, { service: 'AWS credentials' });
    expect(explained).toBeInstanceOf(UserError);
    expect(explained.message).toBe('your AWS SSO session has expired (AWS profile dev): run aws sso login --profile dev and try again');
  });

  test('no cached login for an SSO profile: not logged in, the same command to run', async () => {
    const explained = explainFailure(await chainFailureForSsoProfile(undefined), { service: 'AWS credentials' });
    expect(explained.message).toBe('no valid AWS SSO session (AWS profile dev): you are not logged in, or the session was ended; run aws sso login --profile dev and try again');
  });

  // The texts of @aws-sdk/credential-provider-sso and @aws-sdk/token-providers (an sso_session profile), as the chain
  // throws them (a CredentialsProviderError carrying the token provider's message).
  test.each([
    ['The SSO session associated with this profile has expired. To refresh this SSO session run aws sso login with the corresponding profile.', true, 'default'],
    ['Token is expired. To refresh this SSO session run \'aws sso login\' with the corresponding profile.', true, 'default'],
    ['Value not present for \'refreshToken\' in SSO Token. Cannot refresh. To refresh this SSO session run \'aws sso login\' with the corresponding profile.', true, 'default'],
    ['The SSO session token associated with profile=team was not found or is invalid. To refresh this SSO session run \'aws sso login\' with the corresponding profile.', false, 'team'],
    ['UnauthorizedException: Session token not found or invalid', false, 'default'],
  ])('%s', (message, expired, profile) => {
    delete process.env.AWS_PROFILE;
    const err = Object.assign(new Error(message), { name: 'CredentialsProviderError' });
    const explained = explainFailure(err, { service: 'AWS credentials' });
    expect(explained).toBeInstanceOf(UserError);
    const login = profile === 'default' ? 'aws sso login' : `aws sso login --profile ${profile}`;
    expect(explained.message).toMatch(expired ? `your AWS SSO session has expired (AWS profile ${profile}): run ${login} and try again`
      : `no valid AWS SSO session (AWS profile ${profile})`);
    expect(explained.message).toContain(`run ${login} and try again`);
  });

  test('a chain with nothing to offer is still "no AWS credentials found"', () => {
    const err = Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
    expect(explainFailure(err, { service: 'AWS credentials' }).message).toMatch(/^no AWS credentials found: /);
  });
});

test('throttling and server faults that outlast the SDK\'s retries name the service and say to try again later (exit 1)', () => {
  const throttled = Object.assign(sdkError('Throttling', 'Rate exceeded', 400), { $fault: 'client', $retryable: { throttling: true } });
  const cfn = explainFailure(throttled, { service: 'CloudFormation', resource: 'stack sluice-dev' });
  expect(cfn).toBeInstanceOf(UserError);
  expect([cfn.message, (cfn as UserError).exitCode]).toEqual(['CloudFormation is throttling requests (stack sluice-dev) (Throttling: Rate exceeded), past the retries: try again later', 1]);
  expect(explainFailure(sdkError('ThrottlingException', 'Rate exceeded', 400), { service: 'Athena' }).message).toBe('Athena is throttling requests (ThrottlingException: Rate exceeded), past the retries: try again later');
  const failing = explainFailure(Object.assign(sdkError('InternalServerError', 'We encountered an internal error.', 500), { $fault: 'server' }), { service: 'SQS', resource: 'queue q' });
  expect([failing.message, (failing as UserError).exitCode]).toEqual(['SQS is failing (queue q) (InternalServerError: We encountered an internal error.), past the retries: try again later', 1]);
});

test('a service refusing its KMS key (Kinesis, SQS) names the service and the KMS permissions (exit 2), not the raw text', () => {
  for (const [name, service] of [['KMSAccessDeniedException', 'Kinesis'], ['KmsAccessDenied', 'SQS'], ['InvalidKMSResourceException', 'Firehose']]) {
    const explained = explainFailure(sdkError(name, 'User is not authorized to use key', 400), { service });
    expect(explained).toBeInstanceOf(UserError);
    expect((explained as UserError).exitCode).toBe(2);
    expect(explained.message).toBe(`${service} could not use its KMS key (${name}: User is not authorized to use key). Your AWS identity needs kms:GenerateDataKey on the key to write `
      + 'to an encrypted stream or queue, and kms:Decrypt to read from one; the key must be enabled (see docs/cli.md, "Permissions for --aws").');
  }
  // Throttled by KMS is throttling.
  expect(explainFailure(sdkError('KmsThrottled', 'slow down', 400), { service: 'SQS' }).message).toMatch(/^SQS is throttling requests/);
  const kinesisKms = explainFailure(sdkError('KMSThrottlingException', 'Rate exceeded for key', 400), { service: 'Kinesis' });
  expect([kinesisKms.message, (kinesisKms as UserError).exitCode]).toEqual(['Kinesis is throttling requests (KMSThrottlingException: Rate exceeded for key), past the retries: try again later', 1]);
});

test('a missing resource on AWS gives the service\'s words and then the hint, one period between them', () => {
  const explained = explainFailure(sdkError('ResourceNotFoundException', 'Stream sluice-dev-iot under account 123456789012 not found.', 400),
    { service: 'Kinesis', resource: 'Kinesis stream sluice-dev-iot', startHint: 'is stack sluice-dev deployed with pipeline "iot"?' });
  expect(explained.message).toBe('Kinesis: not found (Kinesis stream sluice-dev-iot): Stream sluice-dev-iot under account 123456789012 not found. is stack sluice-dev deployed with pipeline "iot"?');
});

test('standard input longer than Node.js can hold as one string (--file -, --dsl -) is refused as soon as it is, not read on', async () => {
  // A producer that never ends, 16 MiB a chunk (the same buffer each time: the test holds 16 MiB, whatever is read).
  const chunk = Buffer.alloc(16 * 1024 * 1024, 'x');
  let given = 0;
  async function* endless(): AsyncGenerator<Buffer> {
    for (;;) {
      given++;
      yield chunk;
    }
  }
  await expect(readFileOrStdin('--file', '-', { stdin: endless() })).rejects.toThrow(new UserError(
    'cannot read --file -: it holds more than 536,870,888 bytes (512.0 MiB), the longest text Node.js can hold as one string: give a shorter one',
  ));
  // 32 chunks (536,870,912 bytes) are the first past 536,870,888 bytes: reading stopped there.
  expect(given).toBe(32);
  // A cap given: the text up to it passes whole, one byte more is refused.
  const pieces = () => (async function* () {
    yield Buffer.from('SELECT ');
    yield Buffer.from('1');
  })();
  await expect(readFileOrStdin('--dsl', '-', { stdin: pieces(), maxBytes: 8 })).resolves.toBe('SELECT 1');
  await expect(readFileOrStdin('--dsl', '-', { stdin: pieces(), maxBytes: 7 })).rejects.toThrow(
    'cannot read --dsl -: it holds more than 7 bytes (7 B), the longest text Node.js can hold as one string: give a shorter one',
  );
});
