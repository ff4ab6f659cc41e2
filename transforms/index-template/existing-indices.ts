/**
 * An index template applies only when an index is created, and Sluice's mappings are `dynamic: strict`: after a
 * schema gains a field, the index being written (until the next rotation) refuses every document that carries it.
 * So the template's fields are also put to the indices that already match its patterns (`PUT <patterns>/_mapping`).
 * Used by the index-template custom resource and by the local twin's search sink.
 */

/** One PUT to the cluster; `path` has no leading "/". Answers the status and body, or throws when there is none. */
export type PutMapping = (path: string, body: string) => Promise<{ status: number; body: string }>;

export interface RefusedField {
  /** The top-level field whose mapping the existing indices refused. */
  readonly field: string;
  /** OpenSearch's reason, e.g. "mapper [temperature_c] cannot be changed from type [long] to [float]". */
  readonly reason: string;
}

export interface MappingUpdate {
  /** `<patterns>/_mapping`, e.g. `iot-*\/_mapping`. */
  readonly path: string;
  /** False when no index matches the patterns yet (nothing to update: the template covers the first one). */
  readonly indicesFound: boolean;
  /** Fields an existing index refused (a changed type), each left as that index has it. */
  readonly refused: readonly RefusedField[];
}

/** The `PUT _mapping` path and the template's fields; undefined when the template has no patterns or no fields. */
export function mappingUpdateOf(template: unknown): { path: string; properties: Record<string, unknown> } | undefined {
  const t = template as { index_patterns?: unknown; template?: { mappings?: { properties?: unknown } } } | null;
  const patterns = Array.isArray(t?.index_patterns) ? t.index_patterns.filter((p): p is string => typeof p === 'string' && p !== '') : [];
  const properties = t?.template?.mappings?.properties;
  if (patterns.length === 0 || typeof properties !== 'object' || properties === null || Object.keys(properties).length === 0) return undefined;
  return { path: `${patterns.join(',')}/_mapping`, properties: properties as Record<string, unknown> };
}

/**
 * Adds the template's fields to the existing indices. OpenSearch refuses a whole `_mapping` request when one field
 * would change type, so after a refusal each field is put alone: new fields still reach the current index, and the
 * fields refused are returned for the caller to report. Any other failure (no answer, 403, 5xx) throws.
 */
export async function updateExistingMappings(template: unknown, put: PutMapping): Promise<MappingUpdate | undefined> {
  const update = mappingUpdateOf(template);
  if (!update) return undefined;
  const all = await put(update.path, JSON.stringify({ properties: update.properties }));
  if (isNoSuchIndex(all)) return { path: update.path, indicesFound: false, refused: [] };
  if (isOk(all)) return { path: update.path, indicesFound: true, refused: [] };
  if (all.status !== 400) throw new MappingUpdateError(update.path, all.status, all.body);
  const refused: RefusedField[] = [];
  for (const [field, mapping] of Object.entries(update.properties)) {
    const one = await put(update.path, JSON.stringify({ properties: { [field]: mapping } }));
    if (isOk(one) || isNoSuchIndex(one)) continue;
    if (one.status !== 400) throw new MappingUpdateError(update.path, one.status, one.body);
    refused.push({ field, reason: reasonOf(one.body) });
  }
  return { path: update.path, indicesFound: true, refused };
}

function isOk(result: { status: number }): boolean {
  return result.status >= 200 && result.status < 300;
}

/** A wildcard that matches no index is `index_not_found_exception` (404) for a put-mapping request. */
function isNoSuchIndex(result: { status: number; body: string }): boolean {
  return result.status === 404 && result.body.includes('index_not_found_exception');
}

/** OpenSearch answered the mapping update with neither success, "no such index" nor a refused field. */
export class MappingUpdateError extends Error {
  constructor(readonly path: string, readonly status: number, body: string) {
    super(`PUT ${path} (the template's fields, for the indices that already exist) answered ${status}: ${body.slice(0, 1000)}`);
    this.name = 'MappingUpdateError';
  }
}

/** `error.reason` of an OpenSearch error body, else the body itself (shortened). */
export function reasonOf(body: string): string {
  try {
    const reason = (JSON.parse(body) as { error?: { reason?: unknown } }).error?.reason;
    if (typeof reason === 'string') return reason;
  } catch {
    // Not JSON: the body says it as it is.
  }
  return body.slice(0, 500);
}
