/**
 * CloudFormation custom resource (behind the CDK Provider framework) that applies a pipeline's OpenSearch index
 * template: PUT _index_template/<name> on Create/Update, then its fields to the indices that already match its
 * patterns (PUT <patterns>/_mapping, see existing-indices.ts), then the pipeline's index retention (an ISM policy, or
 * none when its indices are kept forever; see retention.ts); DELETE the template and the policy on Delete. Requests
 * are signed with SigV4 using the function's role, which the domain's access policy names.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import * as https from 'node:https';
import { setTimeout as defaultSleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import { fromEnv } from '@aws-sdk/credential-provider-env';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Checksum, HttpRequest, SourceData } from '@smithy/types';
import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';
import { updateExistingMappings } from './existing-indices';
import { applyRetentionPolicy, retentionPolicyFor, retentionPolicyId, ROTATION_HOURS, type RetentionOutcome } from './retention';

/** Resource properties, as the stack passes them (CloudFormation turns every scalar into a string). */
export interface IndexTemplateProperties {
  /** Domain endpoint, with or without https:// */
  readonly Endpoint: string;
  readonly TemplateName: string;
  /** The template body as JSON text (a string, so numbers and booleans survive CloudFormation). */
  readonly TemplateBody: string;
  /**
   * The index retention as JSON text, {@link RetentionProperty}. Absent in resources deployed before Sluice managed
   * retention: nothing is done about it then.
   */
  readonly Retention?: string;
}

/**
 * What `Retention` holds: what the handler builds the policy of `<IndexName>-*` from (retention.ts), or
 * `RetentionDays: "forever"` for indices kept forever (no policy). Never a policy body: a body's `ism_template` could
 * name any index pattern, and ISM deletes what it matches as the cluster, whatever the role may send.
 */
export interface RetentionProperty {
  readonly PolicyId: string;
  readonly IndexName: string;
  readonly RetentionDays: number | 'forever';
  /** The delivery stream's index rotation (a key of ROTATION_HOURS). */
  readonly Rotation: string;
}

/** The retention as the handler applies it: the policy it built, or null for indices kept forever. */
export interface Retention {
  readonly PolicyId: string;
  readonly IndexName: string;
  readonly Policy: { policy: Record<string, unknown> } | null;
}

/** The domain and the templates the stack configured the function for (its environment): events naming others are refused. */
export interface StackSettings {
  /** Host name of the domain endpoint, without https:// */
  readonly hostname: string;
  /** The search pipelines: each one's template and indices are named after it. */
  readonly pipelines: readonly string[];
}

/** What the Provider framework expects back. */
export interface ProviderResponse {
  readonly PhysicalResourceId: string;
  readonly Data?: Record<string, string>;
}

export interface TemplateRequest {
  readonly hostname: string;
  readonly region: string;
  readonly method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  readonly path: string;
  readonly body?: string;
}

export interface HttpResult {
  readonly status: number;
  readonly body: string;
}

/** Sends one signed request, giving up after `timeoutMs`; replaced in tests. */
export type SendSigned = (request: TemplateRequest, timeoutMs: number) => Promise<HttpResult>;

/** The longest one request may take: a domain that answers at all answers well within it. */
const REQUEST_TIMEOUT_MS = 30_000;
/** Less time than this before the deadline is not worth a request. */
const MIN_REQUEST_MS = 1000;

const log = (level: 'INFO' | 'WARN' | 'ERROR', message: string, extra: Record<string, unknown> = {}): void => {
  console.log(JSON.stringify({ level, message, ...extra }));
};

/** Reads and checks the resource properties; throws naming the property that is wrong. */
export function readProperties(raw: Record<string, unknown>): { hostname: string; templateName: string; body?: string; retention?: Retention } {
  const endpoint = raw.Endpoint;
  const name = raw.TemplateName;
  if (typeof endpoint !== 'string' || endpoint === '') throw new Error('Endpoint: missing; expected the OpenSearch domain endpoint');
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9_-]{0,254}$/.test(name)) {
    throw new Error(`TemplateName: ${JSON.stringify(name)} is not a valid index template name (lower-case letters, digits, "_" and "-")`);
  }
  const hostname = hostnameOf(endpoint);
  if (!/^[A-Za-z0-9.-]+$/.test(hostname)) throw new Error(`Endpoint: "${endpoint}" is not a host name or https:// URL`);
  let body: string | undefined;
  if (raw.TemplateBody !== undefined) {
    if (typeof raw.TemplateBody !== 'string') throw new Error('TemplateBody: expected the template as JSON text');
    try {
      JSON.parse(raw.TemplateBody);
    } catch (err) {
      throw new Error(`TemplateBody: not valid JSON (${(err as Error).message})`, { cause: err });
    }
    body = raw.TemplateBody;
  }
  return { hostname, templateName: name, body, retention: raw.Retention === undefined ? undefined : readRetention(raw.Retention) };
}

const OPENSEARCH_NAME = /^[a-z0-9][a-z0-9_-]{0,254}$/;

function readRetention(raw: unknown): Retention {
  let parsed: unknown;
  try {
    parsed = typeof raw === 'string' ? JSON.parse(raw) : undefined;
  } catch (err) {
    throw new Error(`Retention: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  const r = parsed as Partial<RetentionProperty & Retention> | undefined;
  if (typeof r !== 'object' || r === null) throw new Error('Retention: expected {"PolicyId", "IndexName", "RetentionDays", "Rotation"} as JSON text');
  if (typeof r.IndexName !== 'string' || !OPENSEARCH_NAME.test(r.IndexName)) throw new Error(`Retention.IndexName: ${JSON.stringify(r.IndexName)} is not a valid index name (lower-case letters, digits, "_" and "-")`);
  if (r.PolicyId !== retentionPolicyId(r.IndexName)) throw new Error(`Retention.PolicyId: ${JSON.stringify(r.PolicyId)} is not the retention policy of ${r.IndexName} ("${retentionPolicyId(r.IndexName)}")`);
  if ('Policy' in r) return { PolicyId: r.PolicyId, IndexName: r.IndexName, Policy: builtPolicy(r.IndexName, r.Policy) };
  if (r.RetentionDays === 'forever') return { PolicyId: r.PolicyId, IndexName: r.IndexName, Policy: null };
  if (typeof r.RetentionDays !== 'number' || typeof r.Rotation !== 'string') {
    throw new Error(`Retention: expected "RetentionDays" (a number of days, or "forever") and "Rotation", got ${JSON.stringify(raw).slice(0, 200)}`);
  }
  // deleteAfter (through the builder) refuses days that are not whole and ≥ 1, and an unknown rotation, naming them.
  return { PolicyId: r.PolicyId, IndexName: r.IndexName, Policy: retentionPolicyFor(r.IndexName, r.RetentionDays, r.Rotation) };
}

/**
 * The policy body of a resource deployed before the stack passed retention days and rotation instead (CloudFormation
 * sends it back in a rollback, and on Delete): accepted only when it is exactly one the builder makes for the index.
 */
function builtPolicy(indexName: string, policy: unknown): { policy: Record<string, unknown> } | null {
  if (policy === null) return null;
  const description = (policy as { policy?: { description?: unknown } } | undefined)?.policy?.description;
  const days = typeof description === 'string' ? Number(/kept at least (\d+) days/.exec(description)?.[1]) : NaN;
  const built = Number.isInteger(days) && days >= 1 ? Object.keys(ROTATION_HOURS).map((rotation) => retentionPolicyFor(indexName, days, rotation)) : [];
  const same = built.find((b) => isDeepStrictEqual(b, policy));
  if (!same) throw new Error(`Retention.Policy: not a retention policy Sluice builds for ${indexName}-*; refused (the stack passes RetentionDays and Rotation)`);
  return same;
}

/** The stack's settings from the function's environment; throws naming the variable that is missing. */
export function stackSettingsFrom(env: NodeJS.ProcessEnv): StackSettings {
  const endpoint = env.SLUICE_DOMAIN_ENDPOINT;
  if (!endpoint) throw new Error('SLUICE_DOMAIN_ENDPOINT: not set; the stack sets it to the domain endpoint the function may apply templates to');
  let pipelines: unknown;
  try {
    pipelines = JSON.parse(env.SLUICE_PIPELINES ?? '');
  } catch {
    pipelines = undefined;
  }
  if (!Array.isArray(pipelines) || !pipelines.every((p) => typeof p === 'string')) {
    throw new Error(`SLUICE_PIPELINES: ${JSON.stringify(env.SLUICE_PIPELINES)} is not a JSON list of pipeline names; the stack sets it to its search pipelines`);
  }
  return { hostname: hostnameOf(endpoint), pipelines };
}

function hostnameOf(endpoint: string): string {
  return endpoint.replace(/^https:\/\//, '').replace(/\/+$/, '');
}

/** Why the event is not one the stack sends (another domain, template or index), or undefined when it is. */
export function notFromStack(props: { hostname: string; templateName: string; retention?: Retention }, stack: StackSettings): string | undefined {
  if (props.hostname !== stack.hostname) return `Endpoint: "${props.hostname}" is not the stack's domain (${stack.hostname})`;
  if (!stack.pipelines.includes(props.templateName)) return `TemplateName: "${props.templateName}" is not one of the stack's search pipelines (${stack.pipelines.join(', ')})`;
  if (props.retention && props.retention.IndexName !== props.templateName) return `Retention.IndexName: "${props.retention.IndexName}" is not the template's pipeline (${props.templateName})`;
  return undefined;
}

/** The region to sign for: the one in an AWS domain endpoint (….<region>.es.amazonaws.com), else the function's. */
export function regionOf(hostname: string, fallback: string | undefined): string {
  const m = /\.([a-z]{2}(?:-[a-z]+)+-\d+)\.es\.amazonaws\.com$/.exec(hostname);
  const region = m?.[1] ?? fallback;
  if (!region) throw new Error(`cannot tell the region of ${hostname}, and AWS_REGION is not set`);
  return region;
}

/** Statuses worth retrying: IAM and access-policy changes take a while to reach a new domain (403), throttling, server errors. */
export function isRetryable(status: number): boolean {
  return status === 403 || status === 408 || status === 429 || status >= 500;
}

/** The retries' clock, ms: monotonic, so a wall clock stepped by NTP neither cuts them short nor runs them past the function's timeout. */
const monotonicNow = (): number => performance.now();

/**
 * Handles one custom-resource event with the given sender and clock (the Lambda entry point wires the real ones).
 * `deadline` is on `now`'s clock, by default `performance.now()`.
 */
export async function applyIndexTemplate(
  event: CloudFormationCustomResourceEvent,
  send: SendSigned,
  options: { region?: string; stack: StackSettings; deadline: number; now?: () => number; sleep?: (ms: number) => Promise<void> },
): Promise<ProviderResponse> {
  let props: ReturnType<typeof readProperties>;
  try {
    props = readProperties(event.ResourceProperties);
  } catch (err) {
    if (event.RequestType !== 'Delete') throw err;
    // Properties this version does not take (written by another one): deleting the stack or the pipeline must not stop on them.
    log('WARN', 'properties not understood; nothing deleted', { error: (err as Error).message });
    return { PhysicalResourceId: event.PhysicalResourceId };
  }
  // Anyone who may invoke the function could otherwise have it write to another domain, template or index pattern.
  const refused = notFromStack(props, options.stack);
  if (refused) {
    if (event.RequestType !== 'Delete') throw new Error(`${refused}: refused; the function applies only what its stack configured`);
    // A pipeline since removed from the configuration, or a forged event: the role may touch neither, so send nothing.
    log('WARN', 'not a template this stack applies; nothing deleted', { reason: refused });
    return { PhysicalResourceId: event.PhysicalResourceId };
  }
  const region = regionOf(props.hostname, options.region);
  const path = `/_index_template/${props.templateName}`;
  const physicalId = `${props.hostname}${path}`;

  if (event.RequestType === 'Delete') {
    // Tearing down must not hang on a domain that is gone or refuses us: the template only matters while the domain does.
    // A host name that does not resolve is a domain deleted already (by the same stack deletion, or by hand): nothing
    // is left to delete, so no retries until the deadline. A Create or Update retries it, as any failure.
    const deleting = { ...options, stopOn: endpointGone };
    try {
      const result = await sendWithRetry(send, { hostname: props.hostname, region, method: 'DELETE', path }, deleting);
      if (result.status !== 404 && (result.status < 200 || result.status >= 300)) {
        log('WARN', 'could not delete the index template; leaving it', { template: props.templateName, status: result.status, body: result.body.slice(0, 500) });
      }
    } catch (err) {
      if (endpointGone(err)) {
        log('INFO', 'the domain endpoint does not resolve: the domain is gone, with its template and retention policy; nothing to delete', {
          template: props.templateName, host: props.hostname, error: (err as Error).message,
        });
        return { PhysicalResourceId: event.PhysicalResourceId };
      }
      log('WARN', 'could not delete the index template; leaving it', { template: props.templateName, error: (err as Error).message });
    }
    // The indices left behind stay, and no policy the stack made deletes them any more.
    if (props.retention) {
      try {
        report(props.templateName, props.retention, await applyRetentionPolicy(ismRequest(send, props.hostname, region, deleting), props.retention.PolicyId, props.retention.IndexName, undefined));
      } catch (err) {
        log('WARN', 'could not delete the retention policy; leaving it', { template: props.templateName, policyId: props.retention.PolicyId, error: (err as Error).message });
      }
    }
    return { PhysicalResourceId: event.PhysicalResourceId };
  }

  if (props.body === undefined) throw new Error('TemplateBody: missing; expected the index template as JSON text');
  const result = await sendWithRetry(send, { hostname: props.hostname, region, method: 'PUT', path, body: props.body }, options);
  if (result.status < 200 || result.status >= 300) {
    throw new Error(`PUT ${path} on ${props.hostname} answered ${result.status}: ${result.body.slice(0, 1000)}`);
  }
  log('INFO', 'index template applied', { template: props.templateName, host: props.hostname, requestType: event.RequestType });

  // A field an existing index refuses (its type changed) is logged, not a failed deployment: no existing index can
  // ever take it, so failing would roll back this deploy and every later one while such an index exists, though the
  // template gives the next index the new type. Until then the documents it refuses go to the search backup and the
  // DLQ, as any refused document does. No answer, 403 or 5xx after the retries still fails the deployment.
  const update = await updateExistingMappings(JSON.parse(props.body), (mappingPath, mappingBody) =>
    sendWithRetry(send, { hostname: props.hostname, region, method: 'PUT', path: `/${mappingPath}`, body: mappingBody }, options));
  if (update && !update.indicesFound) log('INFO', 'no existing index matches the template yet', { template: props.templateName, path: update.path });
  if (update?.indicesFound) {
    log('INFO', 'template fields put to the existing indices', { template: props.templateName, path: update.path, refusedFields: update.refused.length });
    for (const { field, reason } of update.refused) {
      log('WARN', `existing indices refused field "${field}": documents whose "${field}" does not fit their mapping are refused until the next index rotation`, {
        template: props.templateName, path: update.path, field, reason,
      });
    }
  }
  // A refused or unanswered ISM request fails the deployment, as the template does: indices nobody deletes fill the domain.
  if (props.retention) {
    const { PolicyId, IndexName, Policy } = props.retention;
    report(props.templateName, props.retention, await applyRetentionPolicy(ismRequest(send, props.hostname, region, options), PolicyId, IndexName, Policy ?? undefined));
  }
  return { PhysicalResourceId: physicalId, Data: { TemplateName: props.templateName } };
}

/**
 * The host name does not resolve (getaddrinfo's ENOTFOUND: no such name), as a deleted domain's endpoint. Not EAI_AGAIN,
 * a lookup that failed for now (the resolver timed out or could not answer), which says nothing about the domain.
 */
export function endpointGone(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOTFOUND';
}

/** Retry options: the deadline on `now`'s clock, and errors not worth a retry (`stopOn`, none by default). */
interface RetryOptions {
  readonly deadline: number;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly stopOn?: (err: Error) => boolean;
}

/** ISM requests, signed and retried as the template's are. */
function ismRequest(send: SendSigned, hostname: string, region: string, options: RetryOptions) {
  return (method: TemplateRequest['method'], path: string, body?: string) => sendWithRetry(send, { hostname, region, method, path: `/${path}`, ...(body === undefined ? {} : { body }) }, options);
}

function report(templateName: string, retention: Retention, outcome: RetentionOutcome): void {
  const { policy, attached, moved, detached } = outcome;
  log('INFO', retention.Policy ? 'retention policy applied' : 'indices kept forever: no retention policy', {
    template: templateName, policyId: retention.PolicyId, pattern: `${retention.IndexName}-*`, policy, attached, moved, detached,
  });
  if (retention.Policy && outcome.otherPolicies.length > 0) {
    log('WARN', `${outcome.otherPolicies.length} existing indices follow another ISM policy and keep it: search.retentionDays does not apply to them`, {
      template: templateName, policyId: retention.PolicyId, indices: outcome.otherPolicies.slice(0, 20),
    });
  }
}

async function sendWithRetry(
  send: SendSigned,
  request: TemplateRequest,
  options: RetryOptions,
): Promise<HttpResult> {
  const now = options.now ?? monotonicNow;
  const sleep = options.sleep ?? defaultSleep;
  // No request outlasts the deadline: one to a domain that never answers (gone, or its traffic dropped) would
  // otherwise run the function past its timeout, and the Provider framework would fail the event (a Delete too).
  if (options.deadline - now() < MIN_REQUEST_MS) throw new Error(`${request.method} ${request.path}: no time left before the function's timeout`);
  let delay = 2000;
  for (let attempt = 1; ; attempt++) {
    let result: HttpResult | undefined;
    let error: Error | undefined;
    try {
      result = await send(request, Math.min(REQUEST_TIMEOUT_MS, options.deadline - now()));
    } catch (err) {
      error = err as Error;
      if (options.stopOn?.(error)) throw error;
    }
    if (result && !isRetryable(result.status)) return result;
    const outOfTime = now() + delay + MIN_REQUEST_MS > options.deadline;
    if (outOfTime) {
      if (result) return result;
      throw error ?? new Error(`${request.method} ${request.path} failed`);
    }
    log('WARN', 'retrying', { attempt, method: request.method, path: request.path, status: result?.status, error: error?.message });
    await sleep(delay);
    delay = Math.min(delay * 2, 30_000);
  }
}

/** SHA-256 (and HMAC-SHA-256 when given a secret) from node:crypto, in the shape SignatureV4 expects. */
export class NodeSha256 implements Checksum {
  private hash: Hash | Hmac;

  constructor(private readonly secret?: SourceData) {
    this.hash = this.create();
  }

  update(data: Uint8Array): void {
    this.hash.update(data);
  }

  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }

  reset(): void {
    this.hash = this.create();
  }

  private create(): Hash | Hmac {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(this.secret));
  }
}

function toBuffer(data: SourceData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

/**
 * Signs with the function's credentials and sends over HTTPS; fails once `timeoutMs` has passed, answered or not.
 * `port` is for tests (a local server): OpenSearch Service answers on 443.
 */
export async function sendSigned(request: TemplateRequest, timeoutMs: number, port = 443): Promise<HttpResult> {
  const signer = new SignatureV4({ credentials: fromEnv(), region: request.region, service: 'es', sha256: NodeSha256 });
  const unsigned: HttpRequest = {
    method: request.method,
    protocol: 'https:',
    hostname: request.hostname,
    path: request.path,
    query: {},
    headers: { host: request.hostname, 'content-type': 'application/json', ...(request.body ? { 'content-length': String(Buffer.byteLength(request.body)) } : {}) },
    body: request.body,
  };
  const signed = await signer.sign(unsigned);
  return new Promise<HttpResult>((resolve, reject) => {
    const req = https.request(
      { method: signed.method, hostname: signed.hostname, port, path: signed.path, headers: signed.headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    // The whole exchange, not the socket's idle time: a response that trickles in must not outlast the deadline either.
    const timer = setTimeout(() => req.destroy(new Error(`${request.method} ${request.path} timed out after ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
    if (request.body) req.write(request.body);
    req.end();
  });
}

export async function handler(event: CloudFormationCustomResourceEvent, context: Context): Promise<ProviderResponse> {
  log('INFO', 'event', { requestType: event.RequestType, logicalResourceId: event.LogicalResourceId, requestId: event.RequestId });
  // Leave 15 s to report back before the function times out.
  const deadline = monotonicNow() + context.getRemainingTimeInMillis() - 15_000;
  return applyIndexTemplate(event, sendSigned, { region: process.env.AWS_REGION, stack: stackSettingsFrom(process.env), deadline });
}
