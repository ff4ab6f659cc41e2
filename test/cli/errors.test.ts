/** What explainFailure makes of answers from an endpoint that is not the service the command meant to call. */
import { explainFailure } from '../../lib/cli/errors';
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
