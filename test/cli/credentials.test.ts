/**
 * The caller's credential chain (one per command, shared by its clients): --region reaches the chain's own STS calls,
 * and an SSO profile's call for role credentials stays in the profile's sso_region. The wait for it as a stage of its
 * own (awaitCallerCredentials): a notice, Ctrl-C, a deadline.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/nested-clients/sts';
import { GetRoleCredentialsCommand, SSOClient } from '@aws-sdk/nested-clients/sso';
import { mockClient } from 'aws-sdk-client-mock';
import { awaitCallerCredentials, callerCredentials, type CallerCredentials } from '../../lib/cli/credentials';
import { UserError } from '../../lib/cli/output';
import { commandDeadline } from '../../lib/cli/sleep';

const savedEnv = { ...process.env };
let home: string;
const sso = mockClient(SSOClient);
const sts = mockClient(STSClient);

/** Only the AWS config file at `home` with `config` as the source of credentials. */
function onlyProfile(profile: string, config: string): void {
  fs.writeFileSync(path.join(home, 'config'), config);
  process.env = {
    PATH: savedEnv.PATH,
    HOME: home,
    AWS_CONFIG_FILE: path.join(home, 'config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(home, 'no-credentials'),
    AWS_PROFILE: profile,
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-credentials-'));
  sso.reset();
  sts.reset();
});

afterEach(() => {
  process.env = { ...savedEnv };
  fs.rmSync(home, { recursive: true, force: true });
});

afterAll(() => {
  sso.restore();
  sts.restore();
});

test('an SSO profile asks for its role credentials in its sso_region, whatever --region says', async () => {
  const startUrl = 'https://example.awsapps.com/start';
  onlyProfile('dev', `[profile dev]\nsso_start_url = ${startUrl}\nsso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = Dev\n`);
  const cache = path.join(home, '.aws', 'sso', 'cache');
  fs.mkdirSync(cache, { recursive: true });
  fs.writeFileSync(path.join(cache, `${createHash('sha1').update(startUrl).digest('hex')}.json`),
    JSON.stringify({ accessToken: 'token', expiresAt: '2099-01-01T00:00:00Z', region: 'us-east-1', startUrl }));
  sso.on(GetRoleCredentialsCommand).resolves({
    roleCredentials: { accessKeyId: 'AKIDSSO', secretAccessKey: 'secret', sessionToken: 'session', expiration: Date.now() + 3_600_000 },
  });

  const credentials = await callerCredentials('eu-west-1').provider();

  expect(credentials.accessKeyId).toBe('AKIDSSO');
  expect(sso.calls()).toHaveLength(1);
  // The access token is valid only in the IAM Identity Center's region.
  const client = sso.call(0).thisValue as SSOClient;
  await expect(client.config.region()).resolves.toBe('us-east-1');
});

test('a profile with a role_arn assumes it through STS in --region', async () => {
  onlyProfile('role', '[profile role]\nrole_arn = arn:aws:iam::123456789012:role/Dev\nsource_profile = base\n'
    + '[profile base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = secret\n');
  sts.on(AssumeRoleCommand).resolves({
    Credentials: { AccessKeyId: 'AKIDROLE', SecretAccessKey: 'secret', SessionToken: 'session', Expiration: new Date(Date.now() + 3_600_000) },
  });

  const credentials = await callerCredentials('eu-west-1').provider();

  expect(credentials.accessKeyId).toBe('AKIDROLE');
  const client = sts.call(0).thisValue as STSClient;
  await expect(client.config.region()).resolves.toBe('eu-west-1');
});

describe('awaitCallerCredentials', () => {
  const source = 'the credential_process of AWS profile dev';
  const hanging: CallerCredentials = { provider: () => new Promise(() => undefined), source: () => source };
  let stderr: jest.SpyInstance;
  beforeEach(() => {
    stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  });
  afterEach(() => stderr.mockRestore());
  /** The CLI's lines on stderr (not Node's own warnings, which the SDK may cause at any time). */
  const said = () => stderr.mock.calls.map((c: unknown[]) => String(c[0])).filter((text) => text.startsWith('sluice:')).join('');

  test('credentials that come before the notice: nothing said', async () => {
    const quick: CallerCredentials = { provider: async () => ({ accessKeyId: 'AKID', secretAccessKey: 'secret' }), source: () => source };
    await awaitCallerCredentials(quick, { signing: 'every request of the query', noticeAfterMs: 0 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(said()).toBe('');
  });

  test('without a deadline: one line naming the source once the wait is long, then Ctrl-C ends it (exit 130), its listener gone', async () => {
    const listeners = process.listenerCount('SIGINT');
    const waiting = awaitCallerCredentials(hanging, { signing: 'every request of the query', noticeAfterMs: 30 }).then(() => undefined, (err: unknown) => err);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(said()).toBe(`sluice: still waiting for your AWS credentials from ${source}… (Ctrl-C to stop)\n`);
    process.emit('SIGINT');
    const err = await waiting;
    expect(err).toBeInstanceOf(UserError);
    expect(err).toMatchObject({ exitCode: 130, message: `interrupted (Ctrl-C) while waiting for your AWS credentials from ${source}, which sign every request of the query: `
      + 'check that it runs, or use other credentials (AWS_PROFILE, aws sso login, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)' });
    expect(process.listenerCount('SIGINT')).toBe(listeners);
  });

  test('SLUICE_CREDENTIALS_NOTICE_MS sets the delay; a value that is not milliseconds is refused', async () => {
    process.env.SLUICE_CREDENTIALS_NOTICE_MS = '10';
    const waiting = awaitCallerCredentials(hanging, { signing: 'every request of the query' }).then(() => undefined, (err: unknown) => err);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(said()).toMatch(/still waiting/);
    process.emit('SIGINT');
    await waiting;
    process.env.SLUICE_CREDENTIALS_NOTICE_MS = '5s';
    await expect(awaitCallerCredentials(hanging, { signing: 'every request of the query' })).rejects.toThrow('SLUICE_CREDENTIALS_NOTICE_MS="5s": expected a whole number of milliseconds, e.g. 5000');
  });

  test('with a deadline: no notice, and the source is named with the --timeout when it comes', async () => {
    const err = await awaitCallerCredentials(hanging, { signing: 'every request of the put', noticeAfterMs: 0, deadline: commandDeadline(100) })
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toMatch(new RegExp(`^${source} gave no answer in \\d+ ms \\(--timeout 100 ms\\) when asked for your AWS credentials, which sign every request of the put: check that it runs`));
    expect(said()).toBe('');
  });

  test('what the chain throws is explained', async () => {
    const none: CallerCredentials = { provider: () => Promise.reject(Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' })), source: () => source };
    await expect(awaitCallerCredentials(none, { signing: 'every request of the query' })).rejects.toThrow(/^no AWS credentials found: /);
  });
});
