/**
 * Index retention: an Index State Management (ISM) policy per search pipeline that deletes its rotated indices
 * (`<index>-YYYY-MM-DD`, …) once every document in them is older than the pipeline's `search.retentionDays`.
 * Built by the stack (lib/infra/index-templates.ts), applied by the index-template custom resource and by the local
 * twin's search sink, both through {@link applyRetentionPolicy}.
 *
 * What ISM does and does not do, which the steps below follow (OpenSearch ISM API; Amazon OpenSearch Service,
 * "Index State Management"):
 * - a policy's `ism_template` attaches it only to indices created after the policy: the indices that already exist
 *   are attached with `POST _plugins/_ism/add/<pattern>`, which leaves an index that has a policy as it is;
 * - an index keeps the version of the policy it was attached with: after an update, the indices on the old version
 *   are moved with `POST _plugins/_ism/change_policy/<index>`, one index per request;
 * - an update must name the version it replaces (`?if_seq_no=…&if_primary_term=…`, from `GET`);
 * - deleting a policy does not stop the indices that follow it: they are detached first (`POST _plugins/_ism/remove`),
 *   and only those that follow this policy (`GET _plugins/_ism/explain/<pattern>`), never another's.
 */

/** Rotations of a search delivery stream and how long each index is written to, hours (a month at its longest). */
export const ROTATION_HOURS: Readonly<Record<string, number>> = { OneHour: 1, OneDay: 24, OneWeek: 24 * 7, OneMonth: 24 * 31 };

/** Above any priority an owner's catch-all policy (`*`, priority 0) is likely to have: the more specific policy wins. */
export const RETENTION_POLICY_PRIORITY = 100;

/** The policy of a pipeline's indices: `<index>-retention`. */
export function retentionPolicyId(indexName: string): string {
  return `${indexName}-retention`;
}

/**
 * The age at which an index is deleted: the retention plus the time the index is written to, since an index is as
 * old as its first document. So every document stays searchable at least `retentionDays` (a daily index of 30 days'
 * retention goes at 31 days), and the index being written is never deleted.
 */
export function deleteAfter(retentionDays: number, rotation: string): string {
  const period = ROTATION_HOURS[rotation];
  if (period === undefined) throw new Error(`rotation "${rotation}": no retention for it; use one of ${Object.keys(ROTATION_HOURS).join(', ')}`);
  if (!Number.isInteger(retentionDays) || retentionDays < 1) throw new Error(`retentionDays must be a whole number ≥ 1, got ${retentionDays}`);
  const hours = retentionDays * 24 + period;
  return hours % 24 === 0 ? `${hours / 24}d` : `${hours}h`;
}

/** The ISM policy body (`PUT _plugins/_ism/policies/<id>`) that deletes `<indexName>-*` indices past retention. */
export function retentionPolicyFor(indexName: string, retentionDays: number, rotation: string): { policy: Record<string, unknown> } {
  const age = deleteAfter(retentionDays, rotation);
  return {
    policy: {
      description: `Sluice: deletes ${indexName}-* indices ${age} after they were created, `
        + `so each document is kept at least ${retentionDays} days (search.retentionDays)`,
      default_state: 'hot',
      states: [
        { name: 'hot', actions: [], transitions: [{ state_name: 'delete', conditions: { min_index_age: age } }] },
        { name: 'delete', actions: [{ delete: {} }], transitions: [] },
      ],
      ism_template: [{ index_patterns: [`${indexName}-*`], priority: RETENTION_POLICY_PRIORITY }],
    },
  };
}

/** One request to the cluster; `path` has no leading "/". Answers the status and body, or throws when there is none. */
export type IsmRequest = (method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, body?: string) => Promise<{ status: number; body: string }>;

export interface RetentionOutcome {
  /** What happened to the policy itself. */
  readonly policy: 'created' | 'updated' | 'unchanged' | 'deleted' | 'absent';
  /** Existing indices that had no policy and now have this one. */
  readonly attached: number;
  /** Indices moved to the new version of the policy (after an update). */
  readonly moved: number;
  /** Indices no longer managed by the policy (after it was deleted). */
  readonly detached: number;
  /** Indices matching the pattern that follow another policy, which is left as it is, with that policy's id. */
  readonly otherPolicies: ReadonlyArray<{ readonly index: string; readonly policyId: string }>;
}

/** An ISM request answered with neither success nor an answer the steps expect. */
export class RetentionPolicyError extends Error {
  constructor(readonly method: string, readonly path: string, readonly status: number, body: string, what: string) {
    super(`${method} ${path} (${what}) answered ${status}: ${body.slice(0, 1000)}`);
    this.name = 'RetentionPolicyError';
  }
}

/**
 * Makes the cluster hold `policy` as `policyId` for `<indexName>-*` indices, or, with `policy` undefined (indices kept
 * forever), no such policy: creates or updates it, attaches it to the existing indices and moves those on an older
 * version; or detaches it from the indices that follow it and deletes it. Safe to run again.
 */
export async function applyRetentionPolicy(
  request: IsmRequest,
  policyId: string,
  indexName: string,
  policy: { policy: Record<string, unknown> } | undefined,
): Promise<RetentionOutcome> {
  const policyPath = `_plugins/_ism/policies/${policyId}`;
  const pattern = `${indexName}-*`;
  const current = await request('GET', policyPath);
  const exists = isOk(current);
  if (!exists && current.status !== 404) throw new RetentionPolicyError('GET', policyPath, current.status, current.body, 'the retention policy as it is');

  const managed = await managedIndices(request, pattern);
  const ours = managed.filter((m) => m.policyId === policyId).map((m) => m.index);
  const otherPolicies = managed.filter((m) => m.policyId !== undefined && m.policyId !== policyId)
    .map((m) => ({ index: m.index, policyId: m.policyId! }));

  if (policy === undefined) {
    if (!exists && ours.length === 0) return { policy: 'absent', attached: 0, moved: 0, detached: 0, otherPolicies };
    // One index per request: a comma list would need the role's paths to match commas, which also name other indices.
    for (const index of ours) await expectOk(request, 'POST', `_plugins/_ism/remove/${index}`, undefined, 'detach the retention policy from its indices');
    if (exists) {
      const deleted = await request('DELETE', policyPath);
      if (!isOk(deleted) && deleted.status !== 404) throw new RetentionPolicyError('DELETE', policyPath, deleted.status, deleted.body, 'delete the retention policy');
    }
    return { policy: exists ? 'deleted' : 'absent', attached: 0, moved: 0, detached: ours.length, otherPolicies };
  }

  let outcome: RetentionOutcome['policy'];
  if (!exists) {
    await expectOk(request, 'PUT', policyPath, JSON.stringify(policy), 'create the retention policy');
    outcome = 'created';
  } else {
    const held = JSON.parse(current.body) as { _seq_no?: unknown; _primary_term?: unknown; policy?: Record<string, unknown> };
    if (samePolicy(held.policy, policy.policy)) {
      outcome = 'unchanged';
    } else {
      if (typeof held._seq_no !== 'number' || typeof held._primary_term !== 'number') {
        throw new RetentionPolicyError('GET', policyPath, current.status, current.body, 'the retention policy as it is: no _seq_no and _primary_term to update it by');
      }
      await expectOk(request, 'PUT', `${policyPath}?if_seq_no=${held._seq_no}&if_primary_term=${held._primary_term}`, JSON.stringify(policy), 'update the retention policy');
      outcome = 'updated';
    }
  }

  // Indices with no policy yet (created before it, or while the pipeline kept its indices forever): `add` leaves an
  // index that has a policy, this one or another, as it is.
  const added = await request('POST', `_plugins/_ism/add/${pattern}`, JSON.stringify({ policy_id: policyId }));
  if (!isOk(added) && !isNoSuchIndex(added)) throw new RetentionPolicyError('POST', `_plugins/_ism/add/${pattern}`, added.status, added.body, 'attach the retention policy to the existing indices');
  const attached = isOk(added) ? updatedIndices(added.body) : 0;
  // An index follows the version it was attached with; an updated policy reaches the existing ones only this way.
  let moved = 0;
  if (outcome === 'updated') {
    for (const index of ours) {
      const answer = await expectOk(request, 'POST', `_plugins/_ism/change_policy/${index}`, JSON.stringify({ policy_id: policyId }), 'move the indices to the new version of the retention policy');
      moved += updatedIndices(answer.body);
    }
  }
  return { policy: outcome, attached, moved, detached: 0, otherPolicies };
}

/** The indices matching `pattern`, each with the id of the ISM policy that manages it (undefined: none). */
async function managedIndices(request: IsmRequest, pattern: string): Promise<Array<{ index: string; policyId?: string }>> {
  const path = `_plugins/_ism/explain/${pattern}`;
  const answer = await request('GET', path);
  if (isNoSuchIndex(answer)) return [];
  if (!isOk(answer)) throw new RetentionPolicyError('GET', path, answer.status, answer.body, 'which policy manages each existing index');
  const explained = JSON.parse(answer.body) as Record<string, unknown>;
  const out: Array<{ index: string; policyId?: string }> = [];
  for (const [index, value] of Object.entries(explained)) {
    if (typeof value !== 'object' || value === null) continue; // total_managed_indices
    const entry = value as Record<string, unknown>;
    const id = entry['index.plugins.index_state_management.policy_id'] ?? entry['index.opendistro.index_state_management.policy_id'] ?? entry.policy_id;
    out.push({ index, policyId: typeof id === 'string' && id !== '' ? id : undefined });
  }
  return out.sort((a, b) => a.index.localeCompare(b.index));
}

/** The parts of a policy Sluice writes, compared as the cluster answers them (it adds its own fields and defaults). */
function samePolicy(held: Record<string, unknown> | undefined, wanted: Record<string, unknown>): boolean {
  if (!held) return false;
  const comparable = (p: Record<string, unknown>) => JSON.stringify({
    description: p.description,
    default_state: p.default_state,
    states: (p.states as Array<{ name?: unknown; transitions?: unknown; actions?: unknown[] }> | undefined)?.map((s) => ({
      name: s.name,
      transitions: s.transitions,
      // The cluster adds a retry block to each action: compare the action kinds only.
      actions: (s.actions ?? []).map((a) => Object.keys(a as object).filter((k) => k !== 'retry').sort()),
    })),
    ism_template: (Array.isArray(p.ism_template) ? p.ism_template : p.ism_template ? [p.ism_template] : [])
      .map((t: { index_patterns?: unknown; priority?: unknown }) => ({ index_patterns: t.index_patterns, priority: t.priority })),
  });
  return comparable(held) === comparable(wanted);
}

async function expectOk(request: IsmRequest, method: 'PUT' | 'POST', path: string, body: string | undefined, what: string): Promise<{ status: number; body: string }> {
  const answer = await request(method, path, body);
  if (!isOk(answer)) throw new RetentionPolicyError(method, path.replace(/\?.*$/, ''), answer.status, answer.body, what);
  return answer;
}

function updatedIndices(body: string): number {
  try {
    const n = (JSON.parse(body) as { updated_indices?: unknown }).updated_indices;
    return typeof n === 'number' ? n : 0;
  } catch {
    return 0;
  }
}

function isOk(result: { status: number }): boolean {
  return result.status >= 200 && result.status < 300;
}

/** A pattern that matches no index, as a 404 `index_not_found_exception`. */
function isNoSuchIndex(result: { status: number; body: string }): boolean {
  return result.status === 404 && result.body.includes('index_not_found_exception');
}
