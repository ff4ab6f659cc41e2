/**
 * OpenSearch through the official client: `OPENSEARCH_URL` (or --endpoint-opensearch) against the
 * twin, SigV4-signed requests to the stack's domain with --aws. Without an OpenSearch to ask, the
 * twin keeps the exact `_bulk` bodies under `<data-dir>/opensearch/`; `bulkDocuments` reads those.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import type { Client } from '@opensearch-project/opensearch';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { openSearchDir } from '../local/paths';
import { explainFailure, type FailureContext } from './errors';
import { UserError } from './output';
import { OutputKeys } from './stack-outputs';
import { sleep, untilAborted } from './sleep';
import type { Target } from './target';

/**
 * The OpenSearch client, loaded when a command first asks OpenSearch: loading it takes about 0.3 s, which every other
 * command (and `--help`) would otherwise pay at start.
 */
function openSearchClient(): typeof import('@opensearch-project/opensearch') {
  return require('@opensearch-project/opensearch') as typeof import('@opensearch-project/opensearch');
}

export interface SearchHit {
  readonly _index: string;
  readonly _id: string;
  readonly _score?: number | null;
  readonly _source?: Record<string, unknown>;
}

export interface SearchResponseBody {
  readonly took?: number;
  readonly hits: { readonly total?: { value: number; relation: string } | number; readonly hits: SearchHit[] };
  readonly aggregations?: Record<string, { buckets?: Array<{ key: unknown; key_as_string?: string; doc_count: number }> } & Record<string, unknown>>;
}

export interface SearchBackend {
  /** "OpenSearch at http://127.0.0.1:9200", "OpenSearch domain https://search-…(SigV4)". */
  readonly description: string;
  /**
   * Runs a search; an index pattern that matches nothing answers no hits, as `ignore_unavailable` does. When `signal`
   * aborts, the request (whichever attempt it is on) is abandoned and the search rejects with `signal.reason`.
   */
  search(index: string, body: Record<string, unknown>, signal?: AbortSignal): Promise<SearchResponseBody>;
  close(): Promise<void>;
  /**
   * With --aws, when the stack has a query role (OpenSearchQueryRoleArn): the role, and its AssumeRole, which the first
   * search waits on unless asked first. Asked first, under the caller's deadline, a hung STS is told from a hung OpenSearch:
   * `assume` rejects with `signal.reason` when `signal` aborts. The search signs with the credentials it got.
   */
  readonly queryRole?: { readonly arn: string; assume(signal?: AbortSignal): Promise<void> };
}

/** How to give the CLI an OpenSearch, for the message when there is none. */
export const NO_OPENSEARCH_HINT = [
  'no OpenSearch to ask.',
  'Locally, run one (e.g. `docker run -p 9200:9200 -e discovery.type=single-node -e DISABLE_SECURITY_PLUGIN=true opensearchproject/opensearch:2`),',
  'start the twin with OPENSEARCH_URL=http://127.0.0.1:9200 so it indexes there, and pass the same OPENSEARCH_URL (or --endpoint-opensearch) here;',
  'without one, the twin writes its _bulk bodies under <data-dir>/opensearch/.',
  'Against AWS, add --aws: the endpoint comes from the stack output OpenSearchEndpoint (or opensearch.endpoint in cdk.json).',
].join(' ');

/**
 * The OpenSearch of a target, or undefined when there is none configured (the caller says what to do). With --aws,
 * `signal` bounds reading the stack's outputs (where the endpoint is; it rejects with `signal.reason`), and the
 * backend's AssumeRole of the query role (queryRole.assume, or else its first search, which waits on it).
 */
export async function searchBackendFor(target: Target, signal?: AbortSignal): Promise<SearchBackend | undefined> {
  if (target.kind === 'local') {
    const url = target.endpoints.openSearch;
    if (!url) return undefined;
    // The client sends a URL's user and password as Basic auth (as the twin does); they are never printed.
    const shown = withoutPassword(url);
    const context: FailureContext = { service: 'OpenSearch', endpoint: shown, startHint: `start OpenSearch there, or fix OPENSEARCH_URL / --endpoint-opensearch (${shown})` };
    const { Client } = openSearchClient();
    return clientBackend(new Client({ node: url, requestTimeout: 30_000 }), `OpenSearch at ${shown}`, context);
  }
  const outputs = await target.outputs(signal);
  const endpoint = outputs.get(OutputKeys.OpenSearchEndpoint) ?? target.config.opensearch.endpoint;
  if (!endpoint) return undefined;
  const node = /^https?:\/\//.test(endpoint) ? endpoint : `https://${endpoint}`;
  // The domain's access policy names the stack's query role: assume it when the stack has one, with the caller's
  // credentials (the command's chain, not a second one that would ask the credential source again).
  const roleArn = outputs.get(OutputKeys.OpenSearchQueryRoleArn);
  const assumeRole = roleArn
    ? fromTemporaryCredentials({
      masterCredentials: target.credentials.provider,
      params: { RoleArn: roleArn, RoleSessionName: 'sluice-search', DurationSeconds: 3600 },
      clientConfig: { region: outputs.region, ...(signal && { requestHandler: abortedBy(signal) }) },
    })
    : undefined;
  // The credentials queryRole.assume got are the signer's first; it asks again only to renew them (after an hour).
  let assumed: ReturnType<NonNullable<typeof assumeRole>> | undefined;
  const getCredentials = assumeRole
    ? () => {
      const first = assumed ?? assumeRole();
      assumed = undefined;
      return first;
    }
    : target.credentials.provider;
  const { Client } = openSearchClient();
  const { AwsSigv4Signer } = require('@opensearch-project/opensearch/aws-v3') as typeof import('@opensearch-project/opensearch/aws-v3');
  const client = new Client({
    ...AwsSigv4Signer({ region: outputs.region, service: 'es', getCredentials }),
    node,
    requestTimeout: 30_000,
  });
  const as = roleArn ? `, as ${roleArn.split('/').pop()}` : '';
  const backend = clientBackend(client, `OpenSearch domain ${node} (SigV4, ${outputs.region}${as})`, { service: 'OpenSearch', endpoint: node });
  if (!roleArn || !assumeRole) return backend;
  return {
    ...backend,
    queryRole: {
      arn: roleArn,
      async assume(until) {
        assumed = assumeRole();
        await untilAborted(assumed, until);
      },
    },
  };
}

/**
 * An HTTP handler whose requests end when `signal` aborts: STS's, for the query role, whose AssumeRole the search
 * waits on before it sends anything. A hung STS then neither outlasts --timeout nor holds the process open after it.
 */
function abortedBy(signal: AbortSignal): NodeHttpHandler {
  return new (class extends NodeHttpHandler {
    override handle(...[request, options]: Parameters<NodeHttpHandler['handle']>): ReturnType<NodeHttpHandler['handle']> {
      return super.handle(request, { ...options, abortSignal: options?.abortSignal ?? signal });
    }
  })();
}

/** A URL to print: its password, if it has one, as `***`. */
export function withoutPassword(url: string): string {
  const parsed = new URL(url);
  if (!parsed.password) return url;
  parsed.password = '***';
  return parsed.toString().replace(/\/$/, url.endsWith('/') ? '/' : '');
}

function clientBackend(client: Client, description: string, context: FailureContext): SearchBackend {
  return {
    description,
    async search(index, body, signal) {
      // The client retries 502/503/504 and connection errors itself; OpenSearch's throttling answer (429) is
      // retried here, with backoff (or its Retry-After), until the caller's deadline aborts the wait.
      for (let attempt = 1; ; attempt++) {
        try {
          return await searchOnce(index, body, signal);
        } catch (err) {
          if (signal?.aborted && err === signal.reason) throw err;
          const wait = throttledRetryMs(err, attempt);
          if (wait === undefined || signal?.aborted) throw explainOpenSearchFailure(err, context);
          await sleep(wait, signal);
          // Out of time while throttled: the answer OpenSearch gave is the reason, not silence.
          if (signal?.aborted) throw explainOpenSearchFailure(err, context);
        }
      }
    },
    close: () => client.close(),
  };

  async function searchOnce(index: string, body: Record<string, unknown>, signal: AbortSignal | undefined): Promise<SearchResponseBody> {
    signal?.throwIfAborted();
    const request = client.search({ index, body, ignore_unavailable: true, allow_no_indices: true } as Parameters<Client['search']>[0]);
    // Not `() => request.abort()`: abort() returns the request, a thenable, and an event listener's rejected
    // thenable is rethrown as an uncaught exception.
    const abort = () => {
      request.abort();
    };
    signal?.addEventListener('abort', abort, { once: true });
    try {
      // Signed requests wait for credentials first (AssumeRole of the query role), which abort() does not end.
      const response = await untilAborted(request, signal);
      return searchResponseBody(response.body, response.statusCode, response.headers?.['content-type'], context);
    } catch (err) {
      if (signal?.aborted && (err as Error).name === 'RequestAbortedError') throw signal.reason;
      throw err;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }
}

/**
 * The body of a search answered 2xx, checked for what the commands read (`hits.hits`): a proxy or a login page in
 * front of OpenSearch answers 200 with HTML, which is no search result. Such an endpoint is not OpenSearch: exit 2.
 */
export function searchResponseBody(body: unknown, statusCode: number | null | undefined, contentType: unknown, context: FailureContext): SearchResponseBody {
  const hits = (body as { hits?: { hits?: unknown } } | null)?.hits;
  if (typeof body === 'object' && body !== null && typeof hits === 'object' && hits !== null && Array.isArray(hits.hits)) return body as SearchResponseBody;
  const what = [typeof contentType === 'string' && contentType !== '' ? contentType.split(';')[0] : undefined, typeof body === 'object' && body !== null ? 'a body without hits' : 'not a JSON search result']
    .filter(Boolean).join(', ');
  throw new UserError(`${context.service}${context.endpoint ? ` at ${context.endpoint}` : ''} answered the search (HTTP ${statusCode ?? '?'}) but not as OpenSearch does (${what}): is a proxy or a login page in front of it? Check the endpoint`);
}

/** Attempts at a throttled (429) search, the first included. */
const THROTTLED_ATTEMPTS = 5;

/** How long to wait before asking again after `err`, or undefined when it is not a throttling answer to retry. */
function throttledRetryMs(err: unknown, attempt: number): number | undefined {
  const e = err as OpenSearchErrorLike & { meta?: { headers?: Record<string, string | string[] | undefined> } };
  if (e?.name !== 'ResponseError' || e.statusCode !== 429 || attempt >= THROTTLED_ATTEMPTS) return undefined;
  const retryAfter = Number(e.meta?.headers?.['retry-after']);
  if (Number.isFinite(retryAfter) && retryAfter >= 0) return Math.min(retryAfter, 30) * 1000;
  return 250 * 2 ** (attempt - 1);
}

interface OpenSearchErrorLike {
  name?: string;
  message?: string;
  statusCode?: number;
  // `Message` (or `message`): what the domain's IAM layer answers, before OpenSearch itself sees the request.
  meta?: { body?: { error?: { type?: string; reason?: string; root_cause?: Array<{ reason?: string }> } | string; Message?: string; message?: string } | string };
}

/** Query errors (a bad query string, an unknown field) are the user's to fix: exit 1 with OpenSearch's reason. */
export function explainOpenSearchFailure(err: unknown, context: FailureContext): Error {
  const e = err as OpenSearchErrorLike;
  if (e?.name === 'ResponseError') {
    const body = e.meta?.body;
    const error = typeof body === 'object' ? body?.error : undefined;
    const reason = typeof error === 'object' ? (error.root_cause?.[0]?.reason ?? error.reason ?? error.type)
      : typeof body === 'string' ? body
        : typeof error === 'string' ? error
          : (body?.Message ?? body?.message ?? e.message);
    if (e.statusCode === 401 || e.statusCode === 403) {
      return new UserError(`${context.service} refused the request (HTTP ${e.statusCode}): ${reason ?? ''}. Your identity needs access to the domain (its access policy or fine-grained access control).`);
    }
    if (e.statusCode === 400) return new UserError(`OpenSearch refused the query: ${reason}`, 1);
    if (e.statusCode === 429) return new UserError(`${context.service} is throttling requests (HTTP 429: ${reason}), past the retries: try again later`, 1);
    if (e.statusCode !== undefined && e.statusCode >= 500) return new UserError(`${context.service} is failing (HTTP ${e.statusCode}: ${reason}), past the retries: try again later`, 1);
    return new UserError(`OpenSearch answered HTTP ${e.statusCode}: ${reason}`, 1);
  }
  if (e?.name === 'ConnectionError' || e?.name === 'TimeoutError') {
    const refused = /ECONNREFUSED/.test(e.message ?? '');
    if (refused && context.endpoint) return explainFailure(Object.assign(new Error(e.message), { code: 'ECONNREFUSED' }), context);
    return new UserError(`cannot reach ${context.service}${context.endpoint ? ` at ${context.endpoint}` : ''}: ${e.message}`);
  }
  return explainFailure(err, context);
}

/**
 * Documents in the twin's `_bulk` bodies (no OPENSEARCH_URL), written as
 * `<data-dir>/opensearch/<pipeline>/<index>/<n>.ndjson` (lib/local/search-sink.ts): action lines and
 * document lines; every document is yielded with the index its action named.
 */
export function* bulkDocuments(dataDir: string, pipeline: string): Generator<{ index: string; doc: Record<string, unknown> }> {
  const root = path.join(openSearchDir(dataDir), pipeline);
  if (!fs.existsSync(root)) return;
  const files = fs.readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ndjson'))
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
  for (const file of files) {
    let index = '';
    let expectDoc = false;
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        continue;
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) continue;
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj);
      if (!expectDoc && keys.length === 1 && ['index', 'create', 'update', 'delete'].includes(keys[0]) && typeof obj[keys[0]] === 'object') {
        index = String((obj[keys[0]] as { _index?: unknown })._index ?? '');
        expectDoc = keys[0] !== 'delete';
        continue;
      }
      expectDoc = false;
      yield { index, doc: (obj.doc as Record<string, unknown> | undefined) ?? obj };
    }
  }
}
