import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SignatureV4 } from '@smithy/signature-v4';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import {
  applyIndexTemplate,
  isRetryable,
  NodeSha256,
  readProperties,
  regionOf,
  sendSigned,
  stackSettingsFrom,
  type HttpResult,
  type TemplateRequest,
} from '../../transforms/index-template/handler';

const body = JSON.stringify({ index_patterns: ['iot-*'], template: { settings: { number_of_shards: 1 } } });
const props = { ServiceToken: 'arn:aws:lambda:eu-west-1:123456789012:function:provider', Endpoint: 'search-x-abc.eu-west-1.es.amazonaws.com', TemplateName: 'iot', TemplateBody: body };

function event(type: 'Create' | 'Update' | 'Delete', physicalId = 'search-x-abc.eu-west-1.es.amazonaws.com/_index_template/iot'): CloudFormationCustomResourceEvent {
  const base = {
    ServiceToken: props.ServiceToken, ResponseURL: 'https://example.com', StackId: 'stack', RequestId: 'req', LogicalResourceId: 'Template',
    ResourceType: 'Custom::SluiceIndexTemplate', ResourceProperties: props,
  };
  if (type === 'Create') return { ...base, RequestType: 'Create' };
  if (type === 'Update') return { ...base, RequestType: 'Update', PhysicalResourceId: physicalId, OldResourceProperties: props };
  return { ...base, RequestType: 'Delete', PhysicalResourceId: physicalId };
}

/** A sender that answers from a script and records what it was asked. */
function scripted(...answers: Array<HttpResult | Error>) {
  const requests: TemplateRequest[] = [];
  const send = async (r: TemplateRequest) => {
    requests.push(r);
    const next = answers.shift() ?? { status: 200, body: '{}' };
    if (next instanceof Error) throw next;
    return next;
  };
  return { send, requests };
}
/** The stack's settings, as the function's environment gives them. */
const stack = { hostname: props.Endpoint, pipelines: ['clickstream', 'iot'] };
const clock = () => {
  let t = 0;
  return { now: () => t, sleep: async (ms: number) => { t += ms; }, stack };
};

describe('index-template custom resource', () => {
  // The handler logs JSON lines for CloudWatch; keep test output quiet.
  beforeEach(() => jest.spyOn(console, 'log').mockImplementation(() => undefined));
  afterEach(() => jest.restoreAllMocks());

  test('Create puts the template body, signed for the endpoint\'s region', async () => {
    const { send, requests } = scripted({ status: 200, body: '{"acknowledged":true}' });
    const result = await applyIndexTemplate(event('Create'), send, { region: 'us-east-1', deadline: 60_000, ...clock() });
    expect(requests).toEqual([{ hostname: props.Endpoint, region: 'eu-west-1', method: 'PUT', path: '/_index_template/iot', body }]);
    expect(result).toEqual({ PhysicalResourceId: 'search-x-abc.eu-west-1.es.amazonaws.com/_index_template/iot', Data: { TemplateName: 'iot' } });
  });

  test('retries while the new domain refuses (403) or throttles, then succeeds', async () => {
    const { send, requests } = scripted({ status: 403, body: 'not yet' }, new Error('ECONNRESET'), { status: 429, body: '' }, { status: 200, body: '{}' });
    await applyIndexTemplate(event('Update'), send, { deadline: 60_000, ...clock() });
    expect(requests).toHaveLength(4);
  });

  test('a rejected template fails the deployment with OpenSearch\'s answer; retries stop at the deadline', async () => {
    await expect(applyIndexTemplate(event('Create'), scripted({ status: 400, body: 'mapper_parsing_exception' }).send, { deadline: 60_000, ...clock() }))
      .rejects.toThrow(/answered 400: mapper_parsing_exception/);
    const forever = scripted(...Array.from({ length: 100 }, () => ({ status: 503, body: 'unavailable' })));
    await expect(applyIndexTemplate(event('Create'), forever.send, { deadline: 60_000, ...clock() })).rejects.toThrow(/answered 503/);
    expect(forever.requests.length).toBeLessThan(10);
  });

  test('the retries\' deadline is on the monotonic clock: a wall clock stepped an hour on mid-deployment does not cut them short', async () => {
    jest.spyOn(Date, 'now').mockReturnValue(new Date('2026-12-06T10:00:00Z').getTime() + 3_600_000);
    const { send, requests } = scripted({ status: 503, body: 'unavailable' });
    const result = await applyIndexTemplate(event('Create'), send, { deadline: performance.now() + 60_000, sleep: async () => undefined, stack });
    expect(result).toMatchObject({ Data: { TemplateName: 'iot' } });
    expect(requests.length).toBeGreaterThan(1);
  });

  describe('the template\'s fields reach the indices that already exist (a strict mapping refuses new fields until rotation)', () => {
    const properties = { event_id: { type: 'keyword' }, temperature_c: { type: 'float' } };
    const withMappings = JSON.stringify({ index_patterns: ['iot-*'], template: { mappings: { dynamic: 'strict', properties } } });
    const update = (type: 'Create' | 'Update') => {
      const e = event(type);
      return { ...e, ResourceProperties: { ...e.ResourceProperties, TemplateBody: withMappings } } as CloudFormationCustomResourceEvent;
    };
    const conflict = { status: 400, body: JSON.stringify({ error: { type: 'illegal_argument_exception', reason: 'mapper [temperature_c] cannot be changed from type [long] to [float]' }, status: 400 }) };

    test('after the template, its properties are put to <pattern>/_mapping, signed like the template', async () => {
      const { send, requests } = scripted({ status: 200, body: '{}' }, { status: 200, body: '{"acknowledged":true}' });
      await applyIndexTemplate(update('Update'), send, { deadline: 60_000, ...clock() });
      expect(requests.map((r) => `${r.method} ${r.path}`)).toEqual(['PUT /_index_template/iot', 'PUT /iot-*/_mapping']);
      expect(requests[1]).toMatchObject({ hostname: props.Endpoint, region: 'eu-west-1' });
      expect(JSON.parse(requests[1].body!)).toEqual({ properties });
    });

    test('no index yet (index_not_found_exception) is nothing to update', async () => {
      const { send, requests } = scripted({ status: 200, body: '{}' }, { status: 404, body: '{"error":{"type":"index_not_found_exception","reason":"no such index [iot-*]"}}' });
      await expect(applyIndexTemplate(update('Create'), send, { deadline: 60_000, ...clock() })).resolves.toMatchObject({ Data: { TemplateName: 'iot' } });
      expect(requests).toHaveLength(2);
    });

    test('a changed type is refused: the other fields are put one by one, the refused one is logged by name, the deployment goes on', async () => {
      const { send, requests } = scripted({ status: 200, body: '{}' }, conflict, { status: 200, body: '{}' }, conflict);
      await expect(applyIndexTemplate(update('Update'), send, { deadline: 60_000, ...clock() })).resolves.toMatchObject({ Data: { TemplateName: 'iot' } });
      expect(requests.slice(2).map((r) => JSON.parse(r.body!))).toEqual([{ properties: { event_id: properties.event_id } }, { properties: { temperature_c: properties.temperature_c } }]);
      const warnings = (console.log as jest.Mock).mock.calls.map(([line]) => JSON.parse(line as string)).filter((l) => l.level === 'WARN');
      expect(warnings).toEqual([expect.objectContaining({
        message: expect.stringMatching(/^existing indices refused field "temperature_c"/),
        field: 'temperature_c', reason: 'mapper [temperature_c] cannot be changed from type [long] to [float]', path: 'iot-*/_mapping',
      })]);
    });

    test('a mapping update OpenSearch never answers or keeps denying fails the deployment, naming the request', async () => {
      const denied = scripted({ status: 200, body: '{}' }, ...Array.from({ length: 100 }, () => ({ status: 403, body: 'no permissions for [indices:admin/mapping/put]' })));
      await expect(applyIndexTemplate(update('Update'), denied.send, { deadline: 60_000, ...clock() }))
        .rejects.toThrow(/^PUT iot-\*\/_mapping \(the template's fields, for the indices that already exist\) answered 403: no permissions/);
    });
  });

  test('Delete removes the template but never blocks stack deletion', async () => {
    const gone = scripted({ status: 404, body: '' });
    expect(await applyIndexTemplate(event('Delete', 'pid'), gone.send, { deadline: 60_000, ...clock() })).toEqual({ PhysicalResourceId: 'pid' });
    expect(gone.requests[0]).toMatchObject({ method: 'DELETE', path: '/_index_template/iot' });
    const broken = scripted(...Array.from({ length: 100 }, () => new Error('ENOTFOUND')));
    expect(await applyIndexTemplate(event('Delete', 'pid'), broken.send, { deadline: 60_000, ...clock() })).toEqual({ PhysicalResourceId: 'pid' });
    // Properties it does not take (another version's retention, say): nothing sent, and the Delete still succeeds.
    const unknown = scripted();
    const odd = { ...event('Delete', 'pid'), ResourceProperties: { ...props, Retention: JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', Policy: { policy: { ism_template: [{ index_patterns: ['*'] }] } } }) } } as CloudFormationCustomResourceEvent;
    expect(await applyIndexTemplate(odd, unknown.send, { deadline: 60_000, ...clock() })).toEqual({ PhysicalResourceId: 'pid' });
    expect(unknown.requests).toEqual([]);
    await expect(applyIndexTemplate({ ...odd, RequestType: 'Create' } as CloudFormationCustomResourceEvent, unknown.send, { deadline: 60_000, ...clock() })).rejects.toThrow(/Retention\.Policy: not a retention policy Sluice builds/);
  });

  describe('a domain endpoint that does not resolve', () => {
    const dnsError = (code: string) => Object.assign(new Error(`getaddrinfo ${code} ${props.Endpoint}`), { code, syscall: 'getaddrinfo', hostname: props.Endpoint });
    const retention = JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', RetentionDays: 30, Rotation: 'OneDay' });
    const withRetention = (type: 'Create' | 'Delete') => ({ ...event(type, 'pid'), ResourceProperties: { ...props, Retention: retention } }) as CloudFormationCustomResourceEvent;

    test('(ENOTFOUND) on Delete: the domain is gone, so the Delete succeeds at once, with a log line, and sends nothing more', async () => {
      const { send, requests } = scripted(...Array.from({ length: 100 }, () => dnsError('ENOTFOUND')));
      const sleeps: number[] = [];
      const options = { deadline: 285_000, stack, now: () => 0, sleep: async (ms: number) => { sleeps.push(ms); } };
      await expect(applyIndexTemplate(withRetention('Delete'), send, options)).resolves.toEqual({ PhysicalResourceId: 'pid' });
      // The template's DELETE once: no retry, and no retention policy requests.
      expect(requests.map((r) => `${r.method} ${r.path}`)).toEqual(['DELETE /_index_template/iot']);
      expect(sleeps).toEqual([]);
      const lines = (console.log as jest.Mock).mock.calls.map(([line]) => JSON.parse(line as string));
      expect(lines).toEqual([expect.objectContaining({ level: 'INFO', message: expect.stringMatching(/^the domain endpoint does not resolve: the domain is gone/), host: props.Endpoint, template: 'iot' })]);
    });

    test('for now (EAI_AGAIN) on Delete, or on Create: retried as before', async () => {
      const transient = scripted(dnsError('EAI_AGAIN'), dnsError('EAI_AGAIN'), { status: 200, body: '{}' });
      await expect(applyIndexTemplate(event('Delete', 'pid'), transient.send, { deadline: 60_000, ...clock() })).resolves.toEqual({ PhysicalResourceId: 'pid' });
      expect(transient.requests).toHaveLength(3);
      const creating = scripted(dnsError('ENOTFOUND'), dnsError('ENOTFOUND'), { status: 200, body: '{}' });
      await expect(applyIndexTemplate(event('Create'), creating.send, { deadline: 60_000, ...clock() })).resolves.toMatchObject({ Data: { TemplateName: 'iot' } });
      expect(creating.requests.map((r) => `${r.method} ${r.path}`)).toEqual(Array(3).fill('PUT /_index_template/iot'));
      const never = scripted(...Array.from({ length: 100 }, () => dnsError('ENOTFOUND')));
      await expect(applyIndexTemplate(withRetention('Create'), never.send, { deadline: 60_000, ...clock() })).rejects.toThrow(/ENOTFOUND/);
      expect(never.requests.length).toBeGreaterThan(2);
    });
  });

  test('Delete on a domain that never answers returns by the deadline: no request outlasts it, the retention\'s included', async () => {
    let t = 0;
    const timeouts: number[] = [];
    // Every request hangs until its timeout (a domain gone or its traffic dropped), which the clock then shows.
    const hanging = async (_r: TemplateRequest, timeoutMs: number): Promise<HttpResult> => {
      timeouts.push(timeoutMs);
      t += timeoutMs ?? 30_000;
      throw new Error('timed out');
    };
    const retention = JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', RetentionDays: 30, Rotation: 'OneDay' });
    const withRetention = { ...event('Delete', 'pid'), ResourceProperties: { ...props, Retention: retention } } as CloudFormationCustomResourceEvent;
    const options = { deadline: 60_000, stack, now: () => t, sleep: async (ms: number) => { t += ms; } };
    await expect(applyIndexTemplate(withRetention, hanging, options)).resolves.toEqual({ PhysicalResourceId: 'pid' });
    expect(t).toBeLessThanOrEqual(60_000);
    expect(timeouts.length).toBeGreaterThan(1);
    expect(Math.max(...timeouts)).toBeLessThanOrEqual(30_000);
  });

  test('properties are checked and named when wrong', () => {
    expect(readProperties({ ...props, Endpoint: 'https://search-x.eu-west-1.es.amazonaws.com/' }).hostname).toBe('search-x.eu-west-1.es.amazonaws.com');
    expect(() => readProperties({ ...props, TemplateName: 'Bad Name' })).toThrow(/TemplateName: "Bad Name" is not a valid index template name/);
    expect(() => readProperties({ ...props, TemplateBody: '{' })).toThrow(/TemplateBody: not valid JSON/);
    expect(() => readProperties({ ...props, Endpoint: '' })).toThrow(/Endpoint: missing/);
  });

  test('an event for another domain or template than the stack set is refused and sends nothing; a Delete of one deletes nothing', async () => {
    const forged = (type: 'Create' | 'Update' | 'Delete', changes: Record<string, string>) => {
      const e = event(type);
      return { ...e, ResourceProperties: { ...e.ResourceProperties, ...changes } } as CloudFormationCustomResourceEvent;
    };
    for (const type of ['Create', 'Update'] as const) {
      const { send, requests } = scripted();
      await expect(applyIndexTemplate(forged(type, { Endpoint: 'search-other-xyz.eu-west-1.es.amazonaws.com' }), send, { deadline: 60_000, ...clock() }))
        .rejects.toThrow(/^Endpoint: "search-other-xyz.eu-west-1.es.amazonaws.com" is not the stack's domain \(search-x-abc.eu-west-1.es.amazonaws.com\): refused/);
      await expect(applyIndexTemplate(forged(type, { TemplateName: 'payroll' }), send, { deadline: 60_000, ...clock() }))
        .rejects.toThrow(/^TemplateName: "payroll" is not one of the stack's search pipelines \(clickstream, iot\): refused/);
      expect(requests).toEqual([]);
    }
    const { send, requests } = scripted();
    await expect(applyIndexTemplate(forged('Delete', { TemplateName: 'payroll' }), send, { deadline: 60_000, ...clock() })).resolves.toEqual({ PhysicalResourceId: 'search-x-abc.eu-west-1.es.amazonaws.com/_index_template/iot' });
    expect(requests).toEqual([]);
    // The endpoint is compared as a host name, however it is written.
    await expect(applyIndexTemplate(forged('Create', { Endpoint: `https://${props.Endpoint}/` }), scripted().send, { deadline: 60_000, ...clock() })).resolves.toMatchObject({ Data: { TemplateName: 'iot' } });
  });

  test('the stack\'s settings come from the function\'s environment, and a missing one is named', () => {
    expect(stackSettingsFrom({ SLUICE_DOMAIN_ENDPOINT: 'https://search-x.eu-west-1.es.amazonaws.com', SLUICE_PIPELINES: '["iot"]' }))
      .toEqual({ hostname: 'search-x.eu-west-1.es.amazonaws.com', pipelines: ['iot'] });
    expect(() => stackSettingsFrom({ SLUICE_PIPELINES: '["iot"]' })).toThrow(/^SLUICE_DOMAIN_ENDPOINT: not set/);
    expect(() => stackSettingsFrom({ SLUICE_DOMAIN_ENDPOINT: 'search-x', SLUICE_PIPELINES: 'iot' })).toThrow(/^SLUICE_PIPELINES: "iot" is not a JSON list/);
  });

  test('region from the endpoint, else the function\'s; which statuses are worth a retry', () => {
    expect(regionOf('search-x-abc.ap-southeast-2.es.amazonaws.com', 'us-east-1')).toBe('ap-southeast-2');
    expect(regionOf('vpc-x.example.internal', 'eu-central-1')).toBe('eu-central-1');
    expect(() => regionOf('localhost', undefined)).toThrow(/AWS_REGION/);
    expect([403, 429, 500, 503].every(isRetryable)).toBe(true);
    expect([200, 400, 404].some(isRetryable)).toBe(false);
  });

  test('the SigV4 hash and HMAC match node:crypto', async () => {
    const hash = new NodeSha256();
    hash.update(new TextEncoder().encode('payload'));
    expect(Buffer.from(await hash.digest()).toString('hex')).toBe(createHash('sha256').update('payload').digest('hex'));
    const hmac = new NodeSha256('secret');
    hmac.update(new TextEncoder().encode('data'));
    expect(Buffer.from(await hmac.digest()).toString('hex')).toBe(createHmac('sha256', 'secret').update('data').digest('hex'));
  });

  test('signing with it reproduces the published SigV4 test vector (get-vanilla)', async () => {
    const signer = new SignatureV4({
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
      region: 'us-east-1', service: 'service', sha256: NodeSha256, applyChecksum: false,
    });
    const signed = await signer.sign(
      { method: 'GET', protocol: 'https:', hostname: 'example.amazonaws.com', path: '/', query: {}, headers: { host: 'example.amazonaws.com' } },
      { signingDate: new Date('2015-08-30T12:36:00Z') },
    );
    expect(signed.headers.authorization).toBe('AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, '
      + 'SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31');
  });
});

describe('sendSigned', () => {
  // A local HTTPS server for "localhost", with the self-signed test certificate of test/fixtures/tls, trusted through the
  // global agent sendSigned's requests use: the function's code verifies certificates as in Lambda.
  let server: https.Server;
  let port: number;
  let respond: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void;
  const received: string[] = [];
  const credentialKeys = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'] as const;
  const saved = { ca: https.globalAgent.options.ca, env: credentialKeys.map((k) => [k, process.env[k]] as const) };

  beforeAll(async () => {
    const tls = join(__dirname, '..', 'fixtures', 'tls');
    const cert = readFileSync(join(tls, 'localhost.cert.pem'));
    https.globalAgent.options.ca = cert;
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' });
    delete process.env.AWS_SESSION_TOKEN;
    server = https.createServer({ key: readFileSync(join(tls, 'localhost.key.pem')), cert }, (req, res) => {
      received.push(`${req.method} ${req.url} ${String(req.headers.authorization).split(' ')[0]}`);
      respond(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    https.globalAgent.options.ca = saved.ca;
    for (const [k, v] of saved.env) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => { received.length = 0; });

  const request: TemplateRequest = { hostname: 'localhost', region: 'eu-west-1', method: 'PUT', path: '/_index_template/iot', body };

  test('a server that answers: its status and body', async () => {
    respond = (_req, res) => res.writeHead(200).end('{"acknowledged":true}');
    await expect(sendSigned(request, 10_000, port)).resolves.toEqual({ status: 200, body: '{"acknowledged":true}' });
    expect(received).toEqual(['PUT /_index_template/iot AWS4-HMAC-SHA256']);
  }, 15_000);

  test('a server that takes the request and never answers: rejected with a timeout error once timeoutMs has passed', async () => {
    respond = () => undefined;
    await expect(sendSigned(request, 500, port)).rejects.toThrow(/^PUT \/_index_template\/iot timed out after 1 s$/);
    expect(received).toEqual(['PUT /_index_template/iot AWS4-HMAC-SHA256']);
  }, 15_000);

  test('an answer that trickles in and never ends: rejected too (the timer is on the whole exchange, not the socket\'s idle time)', async () => {
    respond = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const drip = setInterval(() => res.write(' '), 50);
      res.on('close', () => clearInterval(drip));
    };
    await expect(sendSigned(request, 500, port)).rejects.toThrow(/^PUT \/_index_template\/iot timed out after 1 s$/);
  }, 15_000);
});
