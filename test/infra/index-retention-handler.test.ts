import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { applyIndexTemplate, readProperties, type HttpResult, type TemplateRequest } from '../../transforms/index-template/handler';
import { deleteAfter, retentionPolicyFor } from '../../transforms/index-template/retention';

/**
 * A cluster with the Index State Management API as OpenSearch documents it: policies versioned by _seq_no and
 * _primary_term (an update must name the version it replaces), `ism_template` attaching a policy to indices created
 * after it only, `add` leaving an index that has a policy as it is, indices following the version they were attached
 * with until `change_policy`, `remove` detaching whatever policy an index has.
 */
class FakeIsmCluster {
  readonly policies = new Map<string, { body: Record<string, unknown>; seqNo: number; primaryTerm: number }>();
  readonly indices = new Map<string, { policyId?: string; policySeqNo?: number }>();
  readonly requests: TemplateRequest[] = [];
  private seq = 0;
  /** Answers instead of the cluster, for requests whose "METHOD path" matches. */
  readonly overrides: Array<[RegExp, HttpResult]> = [];

  createIndex(name: string): void {
    // What ism_template does: the policy of the highest priority whose pattern matches, at its current version.
    const match = [...this.policies.entries()].find(([, p]) => ((p.body.ism_template as Array<{ index_patterns: string[] }> | undefined) ?? [])
      .some((t) => t.index_patterns.some((pattern) => glob(pattern, name))));
    this.indices.set(name, match ? { policyId: match[0], policySeqNo: match[1].seqNo } : {});
  }

  send = async (r: TemplateRequest): Promise<HttpResult> => {
    this.requests.push(r);
    const line = `${r.method} ${r.path}`;
    const override = this.overrides.find(([re]) => re.test(line));
    if (override) return override[1];
    const [path, query = ''] = r.path.split('?');
    const params = new URLSearchParams(query);
    const body = r.body ? JSON.parse(r.body) as Record<string, unknown> : {};
    let m: RegExpExecArray | null;
    if (r.method === 'PUT' && path.startsWith('/_index_template/')) return ok({ acknowledged: true });
    if (r.method === 'PUT' && path.endsWith('/_mapping')) return this.named(path.slice(1, -'/_mapping'.length)).length ? ok({ acknowledged: true }) : noSuchIndex(path);
    if ((m = /^\/_plugins\/_ism\/policies\/([^/]+)$/.exec(path))) {
      const id = m[1];
      const held = this.policies.get(id);
      if (r.method === 'GET') {
        if (!held) return { status: 404, body: JSON.stringify({ error: { type: 'status_exception', reason: 'Policy not found' }, status: 404 }) };
        // The cluster adds its own fields, and a retry block to every action.
        const states = (held.body.states as Array<{ actions: object[] }>).map((s) => ({ ...s, actions: s.actions.map((a) => ({ retry: { count: 3, backoff: 'exponential', delay: '1m' }, ...a })) }));
        return ok({ _id: id, _version: 1, _seq_no: held.seqNo, _primary_term: held.primaryTerm, policy: { policy_id: id, last_updated_time: 1, schema_version: 21, error_notification: null, ...held.body, states } });
      }
      if (r.method === 'DELETE') {
        if (!held) return { status: 404, body: '{"result":"not_found"}' };
        this.policies.delete(id);
        return ok({ result: 'deleted' });
      }
      if (r.method === 'PUT') {
        const named = params.has('if_seq_no');
        if (held ? !named || Number(params.get('if_seq_no')) !== held.seqNo || Number(params.get('if_primary_term')) !== held.primaryTerm : named) {
          return { status: 409, body: JSON.stringify({ error: { type: 'version_conflict_engine_exception', reason: `[${id}]: version conflict` }, status: 409 }) };
        }
        this.policies.set(id, { body: (body as { policy: Record<string, unknown> }).policy, seqNo: ++this.seq, primaryTerm: 1 });
        return ok({ _id: id, _seq_no: this.seq, _primary_term: 1 });
      }
    }
    if (r.method === 'GET' && (m = /^\/_plugins\/_ism\/explain\/(.+)$/.exec(path))) {
      const names = this.named(m[1]);
      if (names.length === 0) return noSuchIndex(path);
      const out: Record<string, unknown> = {};
      for (const name of names) {
        const policyId = this.indices.get(name)!.policyId ?? null;
        out[name] = { 'index.plugins.index_state_management.policy_id': policyId, 'index.opendistro.index_state_management.policy_id': policyId, ...(policyId ? { index: name, policy_id: policyId, enabled: true } : {}) };
      }
      return ok({ ...out, total_managed_indices: names.filter((n) => this.indices.get(n)!.policyId).length });
    }
    if (r.method === 'POST' && (m = /^\/_plugins\/_ism\/(add|change_policy|remove)\/(.+)$/.exec(path))) {
      const names = this.named(m[2]);
      if (names.length === 0) return noSuchIndex(path);
      const failed: Array<{ index_name: string; reason: string }> = [];
      let updated = 0;
      for (const name of names) {
        const index = this.indices.get(name)!;
        const policyId = body.policy_id as string;
        if (m[1] === 'add') {
          if (index.policyId) failed.push({ index_name: name, reason: 'This index already has a policy, use the update policy API to update index policies' });
          else {
            Object.assign(index, { policyId, policySeqNo: this.policies.get(policyId)!.seqNo });
            updated++;
          }
        } else if (m[1] === 'change_policy') {
          if (!index.policyId) failed.push({ index_name: name, reason: 'This index is not being managed.' });
          else {
            Object.assign(index, { policyId, policySeqNo: this.policies.get(policyId)!.seqNo });
            updated++;
          }
        } else if (index.policyId) {
          this.indices.set(name, {});
          updated++;
        }
      }
      return ok({ updated_indices: updated, failures: failed.length > 0, failed_indices: failed });
    }
    return { status: 400, body: JSON.stringify({ error: `no handler found for uri [${r.path}] and method [${r.method}]` }) };
  };

  /** Index names a comma-separated list of names and wildcard patterns matches. */
  private named(expression: string): string[] {
    const parts = expression.split(',');
    return [...this.indices.keys()].filter((name) => parts.some((p) => glob(p, name))).sort();
  }
}

function glob(pattern: string, name: string): boolean {
  return new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`).test(name);
}
const ok = (body: unknown): HttpResult => ({ status: 200, body: JSON.stringify(body) });
const noSuchIndex = (path: string): HttpResult => ({ status: 404, body: JSON.stringify({ error: { type: 'index_not_found_exception', reason: `no such index [${path}]` }, status: 404 }) });

const endpoint = 'search-x-abc.eu-west-1.es.amazonaws.com';
const templateBody = JSON.stringify({ index_patterns: ['iot-*'], template: { settings: { number_of_shards: 1 }, mappings: { properties: { event_id: { type: 'keyword' } } } } });
const retention = (days: number | 'forever') => JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', RetentionDays: days, Rotation: 'OneDay' });
/** The Retention property as stacks before RetentionDays and Rotation passed it: the policy body. */
const retentionAsBody = (days: number | 'forever') => JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', Policy: days === 'forever' ? null : retentionPolicyFor('iot', days, 'OneDay') });

function event(type: 'Create' | 'Update' | 'Delete', days: number | 'forever' | undefined, asBody = false): CloudFormationCustomResourceEvent {
  const props = {
    ServiceToken: 'arn:aws:lambda:eu-west-1:123456789012:function:provider', Endpoint: endpoint, TemplateName: 'iot', TemplateBody: templateBody,
    ...(days === undefined ? {} : { Retention: asBody ? retentionAsBody(days) : retention(days) }),
  };
  const base = { ServiceToken: props.ServiceToken, ResponseURL: 'https://example.com', StackId: 'stack', RequestId: 'req', LogicalResourceId: 'Template', ResourceType: 'Custom::SluiceIndexTemplate', ResourceProperties: props };
  if (type === 'Create') return { ...base, RequestType: 'Create' };
  if (type === 'Update') return { ...base, RequestType: 'Update', PhysicalResourceId: `${endpoint}/_index_template/iot`, OldResourceProperties: props };
  return { ...base, RequestType: 'Delete', PhysicalResourceId: `${endpoint}/_index_template/iot` };
}

const clock = () => {
  let t = 0;
  return { deadline: 60_000, now: () => t, sleep: async (ms: number) => { t += ms; }, stack: { hostname: endpoint, pipelines: ['iot'] } };
};
const logged = (level: string) => (console.log as jest.Mock).mock.calls.map(([line]) => JSON.parse(line as string) as Record<string, unknown>).filter((l) => l.level === level);
const ismRequests = (cluster: FakeIsmCluster) => cluster.requests.filter((r) => r.path.startsWith('/_plugins/_ism/')).map((r) => `${r.method} ${r.path}`);

describe('index retention (the index-template custom resource, against a cluster with the ISM API)', () => {
  beforeEach(() => jest.spyOn(console, 'log').mockImplementation(() => undefined));
  afterEach(() => jest.restoreAllMocks());

  test('an index is deleted once its last document is retentionDays old: the age counts the rotation period from its creation', () => {
    expect(deleteAfter(30, 'OneDay')).toBe('31d');
    expect(deleteAfter(1, 'OneHour')).toBe('25h');
    expect(deleteAfter(30, 'OneWeek')).toBe('37d');
    expect(deleteAfter(30, 'OneMonth')).toBe('61d');
    expect(() => deleteAfter(0, 'OneDay')).toThrow(/retentionDays must be a whole number ≥ 1, got 0/);
    expect(() => deleteAfter(30, 'NoRotation')).toThrow(/rotation "NoRotation"/);
  });

  test('Create makes the policy and attaches it to the indices that already exist (its ism_template covers only the later ones), signed for the endpoint', async () => {
    const cluster = new FakeIsmCluster();
    cluster.createIndex('iot-2026-01-01');
    cluster.createIndex('iot-2026-01-02');
    cluster.createIndex('iotx-2026-01-01');
    await applyIndexTemplate(event('Create', 30), cluster.send, { region: 'us-east-1', ...clock() });
    expect(cluster.policies.get('iot-retention')?.body).toEqual(retentionPolicyFor('iot', 30, 'OneDay').policy);
    expect(Object.fromEntries(cluster.indices)).toEqual({
      'iot-2026-01-01': { policyId: 'iot-retention', policySeqNo: 1 },
      'iot-2026-01-02': { policyId: 'iot-retention', policySeqNo: 1 },
      'iotx-2026-01-01': {},
    });
    cluster.createIndex('iot-2026-01-03');
    expect(cluster.indices.get('iot-2026-01-03')).toEqual({ policyId: 'iot-retention', policySeqNo: 1 });
    expect(ismRequests(cluster)).toEqual([
      'GET /_plugins/_ism/policies/iot-retention',
      'GET /_plugins/_ism/explain/iot-*',
      'PUT /_plugins/_ism/policies/iot-retention',
      'POST /_plugins/_ism/add/iot-*',
    ]);
    for (const r of cluster.requests) expect(r).toMatchObject({ hostname: endpoint, region: 'eu-west-1' });
    expect(logged('INFO')).toContainEqual(expect.objectContaining({ message: 'retention policy applied', policy: 'created', attached: 2 }));
  });

  test('a cluster with no index of the pipeline yet: the policy alone', async () => {
    const cluster = new FakeIsmCluster();
    await applyIndexTemplate(event('Create', 30), cluster.send, clock());
    expect(cluster.policies.has('iot-retention')).toBe(true);
    cluster.createIndex('iot-2026-01-01');
    expect(cluster.indices.get('iot-2026-01-01')?.policyId).toBe('iot-retention');
  });

  test('the same retention again changes nothing: no new version of the policy', async () => {
    const cluster = new FakeIsmCluster();
    cluster.createIndex('iot-2026-01-01');
    await applyIndexTemplate(event('Create', 30), cluster.send, clock());
    cluster.requests.length = 0;
    await applyIndexTemplate(event('Update', 30), cluster.send, clock());
    expect(ismRequests(cluster)).toEqual(['GET /_plugins/_ism/policies/iot-retention', 'GET /_plugins/_ism/explain/iot-*', 'POST /_plugins/_ism/add/iot-*']);
    expect(cluster.policies.get('iot-retention')?.seqNo).toBe(1);
  });

  test('a new retention updates the policy by the version it replaces and moves its indices to it; an index another policy manages keeps that one', async () => {
    const cluster = new FakeIsmCluster();
    cluster.createIndex('iot-2026-01-01');
    await applyIndexTemplate(event('Create', 30), cluster.send, clock());
    cluster.indices.set('iot-archive', { policyId: 'owners-policy', policySeqNo: 99 });
    cluster.requests.length = 0;
    await applyIndexTemplate(event('Update', 7), cluster.send, clock());
    const policy = cluster.policies.get('iot-retention')!;
    expect(policy.body).toEqual(retentionPolicyFor('iot', 7, 'OneDay').policy);
    expect(ismRequests(cluster)).toContain('PUT /_plugins/_ism/policies/iot-retention?if_seq_no=1&if_primary_term=1');
    expect(cluster.indices.get('iot-2026-01-01')).toEqual({ policyId: 'iot-retention', policySeqNo: policy.seqNo });
    expect(cluster.indices.get('iot-archive')).toEqual({ policyId: 'owners-policy', policySeqNo: 99 });
    expect(ismRequests(cluster)).toContain('POST /_plugins/_ism/change_policy/iot-2026-01-01');
    expect(logged('WARN')).toContainEqual(expect.objectContaining({
      message: expect.stringMatching(/^1 existing indices follow another ISM policy and keep it/), indices: [{ index: 'iot-archive', policyId: 'owners-policy' }],
    }));
  });

  test('"forever": the policy is detached from the indices that follow it, and only those, then deleted', async () => {
    const cluster = new FakeIsmCluster();
    cluster.createIndex('iot-2026-01-01');
    await applyIndexTemplate(event('Create', 30), cluster.send, clock());
    cluster.indices.set('iot-archive', { policyId: 'owners-policy', policySeqNo: 99 });
    await applyIndexTemplate(event('Update', 'forever'), cluster.send, clock());
    expect(cluster.policies.has('iot-retention')).toBe(false);
    expect(cluster.indices.get('iot-2026-01-01')).toEqual({});
    expect(cluster.indices.get('iot-archive')).toEqual({ policyId: 'owners-policy', policySeqNo: 99 });
    expect(ismRequests(cluster)).toContain('POST /_plugins/_ism/remove/iot-2026-01-01');
    cluster.createIndex('iot-2026-01-02');
    expect(cluster.indices.get('iot-2026-01-02')).toEqual({});
    // Kept forever from the start: nothing to do.
    const fresh = new FakeIsmCluster();
    await applyIndexTemplate(event('Create', 'forever'), fresh.send, clock());
    expect(ismRequests(fresh)).toEqual(['GET /_plugins/_ism/policies/iot-retention', 'GET /_plugins/_ism/explain/iot-*']);
  });

  test('indices are moved and detached one per request: no path names a comma list, which the role\'s `<pipeline>-*` paths would match with other indices in it', async () => {
    const cluster = new FakeIsmCluster();
    for (const day of ['01', '02', '03']) cluster.createIndex(`iot-2026-01-${day}`);
    await applyIndexTemplate(event('Create', 30), cluster.send, clock());
    await applyIndexTemplate(event('Update', 7), cluster.send, clock());
    await applyIndexTemplate(event('Update', 'forever'), cluster.send, clock());
    const requests = ismRequests(cluster);
    expect(requests.filter((r) => /change_policy|remove/.test(r))).toEqual([
      'POST /_plugins/_ism/change_policy/iot-2026-01-01', 'POST /_plugins/_ism/change_policy/iot-2026-01-02', 'POST /_plugins/_ism/change_policy/iot-2026-01-03',
      'POST /_plugins/_ism/remove/iot-2026-01-01', 'POST /_plugins/_ism/remove/iot-2026-01-02', 'POST /_plugins/_ism/remove/iot-2026-01-03',
    ]);
    for (const r of cluster.requests) expect(r.path).not.toContain(',');
    expect(logged('INFO')).toContainEqual(expect.objectContaining({ message: 'retention policy applied', policy: 'updated', moved: 3 }));
    expect(logged('INFO')).toContainEqual(expect.objectContaining({ policy: 'deleted', detached: 3 }));
  });

  test('a refused policy fails the deployment with the request and OpenSearch\'s answer', async () => {
    const cluster = new FakeIsmCluster();
    cluster.overrides.push([/^PUT \/_plugins\/_ism\/policies\//, { status: 400, body: '{"error":{"type":"illegal_argument_exception","reason":"new policy iot-retention has an ism template with index pattern [iot-*] matching existing policy templates"}}' }]);
    await expect(applyIndexTemplate(event('Create', 30), cluster.send, clock()))
      .rejects.toThrow(/^PUT _plugins\/_ism\/policies\/iot-retention \(create the retention policy\) answered 400: .*matching existing policy templates/);
    const denied = new FakeIsmCluster();
    denied.overrides.push([/^GET \/_plugins\/_ism\/policies\//, { status: 403, body: '{"Message":"User: … is not authorized to perform: es:ESHttpGet"}' }]);
    await expect(applyIndexTemplate(event('Create', 30), denied.send, clock())).rejects.toThrow(/^GET _plugins\/_ism\/policies\/iot-retention \(the retention policy as it is\) answered 403/);
  });

  test('Delete removes the template, detaches and deletes the policy; a cluster that is gone does not block stack deletion', async () => {
    const cluster = new FakeIsmCluster();
    cluster.createIndex('iot-2026-01-01');
    await applyIndexTemplate(event('Create', 30), cluster.send, clock());
    await applyIndexTemplate(event('Delete', 30), cluster.send, clock());
    expect(cluster.policies.size).toBe(0);
    expect(cluster.indices.get('iot-2026-01-01')).toEqual({});
    const gone = async (): Promise<HttpResult> => {
      throw new Error('ENOTFOUND');
    };
    await expect(applyIndexTemplate(event('Delete', 30), gone, clock())).resolves.toEqual({ PhysicalResourceId: `${endpoint}/_index_template/iot` });
  });

  test('a resource deployed before retention (no Retention property) sends no ISM request', async () => {
    const cluster = new FakeIsmCluster();
    await applyIndexTemplate(event('Update', undefined), cluster.send, clock());
    await applyIndexTemplate(event('Delete', undefined), cluster.send, clock());
    expect(ismRequests(cluster)).toEqual([]);
  });

  test('the Retention property is checked and named when wrong', () => {
    const props = { Endpoint: endpoint, TemplateName: 'iot', TemplateBody: templateBody };
    expect(readProperties({ ...props, Retention: retention(30) }).retention?.PolicyId).toBe('iot-retention');
    expect(() => readProperties({ ...props, Retention: '{' })).toThrow(/^Retention: not valid JSON/);
    expect(() => readProperties({ ...props, Retention: JSON.stringify({ PolicyId: 'Bad Id', IndexName: 'iot', RetentionDays: 30, Rotation: 'OneDay' }) })).toThrow(/^Retention\.PolicyId: "Bad Id" is not the retention policy of iot \("iot-retention"\)/);
    expect(() => readProperties({ ...props, Retention: JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', RetentionDays: '30' }) })).toThrow(/^Retention: expected "RetentionDays"/);
    expect(() => readProperties({ ...props, Retention: retention(0) })).toThrow(/retentionDays must be a whole number ≥ 1, got 0/);
    expect(() => readProperties({ ...props, Retention: JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', RetentionDays: 30, Rotation: 'NoRotation' }) })).toThrow(/rotation "NoRotation"/);
  });

  test('the policy is built by the function from days and rotation: a policy body in the event is refused unless it is one the builder makes for that index', () => {
    const props = { Endpoint: endpoint, TemplateName: 'iot', TemplateBody: templateBody };
    expect(readProperties({ ...props, Retention: retention(30) }).retention).toEqual({ PolicyId: 'iot-retention', IndexName: 'iot', Policy: retentionPolicyFor('iot', 30, 'OneDay') });
    expect(readProperties({ ...props, Retention: retention('forever') }).retention).toEqual({ PolicyId: 'iot-retention', IndexName: 'iot', Policy: null });
    // ism_template attaches the policy to every new index it matches, and ISM deletes them as the cluster.
    const everything = { policy: { ...retentionPolicyFor('iot', 30, 'OneDay').policy, ism_template: [{ index_patterns: ['*'], priority: 100 }] } };
    const forged = JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', Policy: everything });
    expect(() => readProperties({ ...props, Retention: forged })).toThrow(/^Retention\.Policy: not a retention policy Sluice builds for iot-\*; refused/);
    expect(() => readProperties({ ...props, Retention: JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', Policy: { policy: { ism_template: [{ index_patterns: ['*'] }], states: [] } } }) })).toThrow(/^Retention\.Policy: not a retention policy/);
    expect(() => readProperties({ ...props, Retention: JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', Policy: retentionPolicyFor('clickstream', 30, 'OneDay') }) })).toThrow(/^Retention\.Policy: not a retention policy/);
    // The body an earlier stack passed, for any rotation, is the builder's, and so is taken.
    for (const rotation of ['OneHour', 'OneDay', 'OneWeek', 'OneMonth']) {
      const body = retentionPolicyFor('iot', 7, rotation);
      expect(readProperties({ ...props, Retention: JSON.stringify({ PolicyId: 'iot-retention', IndexName: 'iot', Policy: body }) }).retention?.Policy).toEqual(body);
    }
  });

  test('the Retention of a resource an earlier stack deployed (a policy body): the first Update after it applies the new one, a rollback to it and its Delete still work', async () => {
    const cluster = new FakeIsmCluster();
    cluster.createIndex('iot-2026-01-01');
    await applyIndexTemplate(event('Create', 30), cluster.send, clock());
    // The first deploy with this function: OldResourceProperties hold the body, ResourceProperties days and rotation.
    const first = event('Update', 30) as CloudFormationCustomResourceEvent & { OldResourceProperties: Record<string, unknown> };
    first.OldResourceProperties = event('Update', 30, true).ResourceProperties;
    cluster.requests.length = 0;
    await applyIndexTemplate(first, cluster.send, clock());
    expect(cluster.policies.get('iot-retention')?.seqNo).toBe(1);
    expect(ismRequests(cluster)).not.toContainEqual(expect.stringMatching(/^PUT /));
    // A deploy that fails after it rolls the resource back to its old properties: the body, as the builder made it.
    await applyIndexTemplate(event('Update', 7, true), cluster.send, clock());
    expect(cluster.policies.get('iot-retention')?.body).toEqual(retentionPolicyFor('iot', 7, 'OneDay').policy);
    await applyIndexTemplate(event('Delete', 7, true), cluster.send, clock());
    expect(cluster.policies.size).toBe(0);
    expect(cluster.indices.get('iot-2026-01-01')).toEqual({});
  });

  test('the retention of another pipeline\'s indices is refused before any request', async () => {
    const cluster = new FakeIsmCluster();
    const e = event('Create', 30);
    const other = { ...e, ResourceProperties: { ...e.ResourceProperties, Retention: JSON.stringify({ PolicyId: 'clickstream-retention', IndexName: 'clickstream', RetentionDays: 1, Rotation: 'OneHour' }) } } as CloudFormationCustomResourceEvent;
    await expect(applyIndexTemplate(other, cluster.send, clock())).rejects.toThrow(/^Retention\.IndexName: "clickstream" is not the template's pipeline \(iot\): refused/);
    expect(cluster.requests).toEqual([]);
  });
});
