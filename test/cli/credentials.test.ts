/**
 * The caller's credential chain (one per command, shared by its clients): --region reaches the chain's own STS calls,
 * and an SSO profile's call for role credentials stays in the profile's sso_region.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/nested-clients/sts';
import { GetRoleCredentialsCommand, SSOClient } from '@aws-sdk/nested-clients/sso';
import { mockClient } from 'aws-sdk-client-mock';
import { callerCredentials } from '../../lib/cli/credentials';

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
