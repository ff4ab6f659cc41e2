/**
 * The search destination of the local twin: what Firehose's Amazon OpenSearch Service destination
 * does with a buffer of transformed documents.
 *
 * With an endpoint (`OPENSEARCH_URL`), the pipeline's index template is applied first
 * (`PUT _index_template/<pipeline>`), and its fields put to the indices that already match it (`PUT <pipeline>-*\/_mapping`,
 * as the stack's custom resource does: a strict mapping refuses a new field until the next rotation otherwise), then documents go out as `_bulk` requests of `index` actions
 * to `<index>-<rotation suffix>` (arrival time, UTC), with the document id Firehose generates by default
 * (`FIREHOSE_DEFAULT`, as the stack configures it): one per Firehose record, the same on every retry of its
 * delivery, and a new one when a producer sends the record again (as `sluice replay` does). Throttling
 * (429), server errors (5xx), network failures and the 429/5xx items of a partial bulk failure are
 * retried with exponential backoff for the retry duration, as Firehose does; documents OpenSearch
 * refuses (4xx items) or that are still failing when the duration runs out come back as failures,
 * which the delivery engine backs up as `AmazonOpenSearchService-failed` error records.
 *
 * Without an endpoint the exact `_bulk` bodies are written to
 * `<dataDir>/opensearch/<pipeline>/<index>/<n>.ndjson` (and the template to
 * `<dataDir>/opensearch/<pipeline>/_index_template.json`), so what would have been sent can be read.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openSearchIndexTemplate } from '../schema/artifacts';
import type { SchemaModel } from '../schema/model';
import type { IndexRotation } from '../config/types';
import { writeFileAtomic } from './atomic-file';
import { openSearchDir } from './paths';
import { MappingUpdateError, updateExistingMappings } from '../../transforms/index-template/existing-indices';
import { applyRetentionPolicy, retentionPolicyFor, retentionPolicyId } from '../../transforms/index-template/retention';

export interface SearchDocument {
  /** The Firehose record id: the document id. */
  readonly recordId: string;
  /** The transformed record: one JSON object. */
  readonly data: Buffer;
  /** Epoch ms; chooses the rotated index. */
  readonly arrivalTimestamp: number;
  /** Its index in a KPL-aggregated Kinesis record, as Firehose's record metadata says; 0 for a plain record. @default 0 */
  readonly subsequenceNumber?: number;
}

export interface SearchFailure {
  readonly document: SearchDocument;
  readonly attemptsMade: number;
  /** HTTP status OpenSearch answered (e.g. "400", "429"), or OS.ConnectionFailed / OS.RequestTimeout. */
  readonly errorCode: string;
  readonly errorMessage: string;
  readonly attemptEndingTimestamp: number;
  readonly esDocumentId: string;
  readonly esIndexName: string;
}

export interface SearchDelivery {
  /** Documents OpenSearch indexed (or, without an endpoint, written to bulk files). */
  readonly indexed: number;
  /** Bulk requests sent (or bulk files written). */
  readonly requests: number;
  /** Bytes of bulk bodies sent or written. */
  readonly bytes: number;
  readonly failed: readonly SearchFailure[];
}

export interface SearchSinkOptions {
  readonly model: SchemaModel;
  /** Where bulk bodies go when there is no endpoint. */
  readonly dataDir: string;
  /** OpenSearch endpoint, e.g. http://127.0.0.1:9200 (credentials in the URL become Basic auth). `null` forces file mode. @default process.env.OPENSEARCH_URL */
  readonly url?: string | null;
  /** Index name before the rotation suffix (≤ 80 characters). @default model.pipeline */
  readonly indexName?: string;
  /** @default 'OneDay' */
  readonly rotation?: IndexRotation;
  /**
   * With an endpoint, the pipeline's index retention as the stack applies it (the ISM policy `<index>-retention`, or
   * none for 'forever'), after the template. A cluster without the ISM plugin is said once, not retried.
   * @default - no retention requests
   */
  readonly retentionDays?: number | 'forever';
  /** How long failed documents are retried, in seconds (Firehose: 0–7200). @default 300 */
  readonly retrySeconds?: number;
  /** First backoff delay; doubles per retry. @default 500 */
  readonly retryBaseDelayMs?: number;
  /** @default 8000 */
  readonly retryMaxDelayMs?: number;
  /** Largest bulk body per request or file. @default 10 MiB */
  readonly maxBulkBytes?: number;
  /** How long one request may go unanswered, bounded by the retry duration (at least 1 s). @default 60000 */
  readonly requestTimeoutMs?: number;
  /** @default Date.now */
  readonly now?: () => number;
  /** Says what the user should know and nothing fails for (a field an existing index refused). @default a line on stderr */
  readonly warn?: (message: string) => void;
}

/**
 * The JSON line Firehose writes for a document OpenSearch did not take (Firehose developer guide, OpenSearch delivery
 * failures), its members in that order (see transforms/failure-router/error-records.ts).
 */
export interface OpenSearchFailedRecord {
  readonly attemptsMade: number;
  readonly arrivalTimestamp: number;
  readonly errorCode: string;
  readonly errorMessage: string;
  readonly attemptEndingTimestamp: number;
  readonly rawData: string;
  /** The record's index in a KPL-aggregated Kinesis record; 0 for a plain record. */
  readonly subsequenceNumber: number;
  readonly esDocumentId: string;
  readonly esIndexName: string;
  /** The mapping type; OpenSearch 7+ has none and the stack configures no TypeName. */
  readonly esTypeName: string;
}

export function failedDocumentRecord(failure: SearchFailure): OpenSearchFailedRecord {
  return {
    attemptsMade: failure.attemptsMade,
    arrivalTimestamp: failure.document.arrivalTimestamp,
    errorCode: failure.errorCode,
    errorMessage: failure.errorMessage,
    attemptEndingTimestamp: failure.attemptEndingTimestamp,
    rawData: failure.document.data.toString('base64'),
    subsequenceNumber: failure.document.subsequenceNumber ?? 0,
    esDocumentId: failure.esDocumentId,
    esIndexName: failure.esIndexName,
    // What Firehose writes here for a typeless (OpenSearch 7+) domain with no TypeName configured is not documented and
    // not confirmed by us; "" (no type) as the router's fixture has it (test/fixtures/events). The router does not read it.
    esTypeName: '',
  };
}

/** `<index>` plus Firehose's rotation suffix for an arrival time (UTC). OneWeek uses ISO weeks, e.g. `-2016-w08`. */
export function rotatedIndexName(indexName: string, rotation: IndexRotation, arrivalTimestamp: number): string {
  const d = new Date(arrivalTimestamp);
  const y = d.getUTCFullYear();
  const mo = pad2(d.getUTCMonth() + 1);
  const day = pad2(d.getUTCDate());
  switch (rotation) {
    case 'NoRotation': return indexName;
    case 'OneHour': return `${indexName}-${y}-${mo}-${day}-${pad2(d.getUTCHours())}`;
    case 'OneDay': return `${indexName}-${y}-${mo}-${day}`;
    case 'OneWeek': {
      const { weekYear, week } = isoWeek(d);
      return `${indexName}-${weekYear}-w${pad2(week)}`;
    }
    case 'OneMonth': return `${indexName}-${y}-${mo}`;
  }
}

const MAX_INDEX_NAME = 80;
const DEFAULT_MAX_BULK_BYTES = 10 * 1024 * 1024;
const RETRYABLE_STATUS = (status: number): boolean => status === 429 || status >= 500;

interface BulkItem {
  readonly document: SearchDocument;
  readonly index: string;
  readonly id: string;
  /** `{"index":…}\n<document>\n` */
  readonly lines: Buffer;
}

interface ItemError {
  readonly code: string;
  readonly message: string;
}

export class SearchSink {
  readonly pipeline: string;
  readonly indexName: string;
  readonly rotation: IndexRotation;
  /** How long failed documents are retried, seconds. */
  readonly retrySeconds: number;
  /** The endpoint, or undefined when bulk bodies go to files. */
  readonly endpoint: string | undefined;
  private readonly authorization: string | undefined;
  private readonly template: Record<string, unknown>;
  private readonly retryMs: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxBulkBytes: number;
  private readonly requestTimeoutMs: number;
  private readonly now: () => number;
  private readonly warn: (message: string) => void;
  private readonly fileRoot: string;
  private templateApplied = false;
  private readonly retentionDays: number | 'forever' | undefined;
  private readonly nextFileNumber = new Map<string, number>();

  constructor(options: SearchSinkOptions) {
    this.pipeline = options.model.pipeline;
    this.indexName = options.indexName ?? options.model.pipeline;
    if (this.indexName.length === 0 || this.indexName.length > MAX_INDEX_NAME || !/^[a-z0-9][a-z0-9._-]*$/.test(this.indexName)) {
      throw new Error(`search index name ${JSON.stringify(this.indexName)} must be 1–${MAX_INDEX_NAME} lower-case letters, digits, ".", "_" or "-"`);
    }
    this.rotation = options.rotation ?? 'OneDay';
    this.retentionDays = options.retentionDays;
    const retrySeconds = options.retrySeconds ?? 300;
    if (!(retrySeconds >= 0 && retrySeconds <= 7200)) throw new Error(`search retrySeconds must be 0–7200, got ${retrySeconds}`);
    this.retrySeconds = retrySeconds;
    this.retryMs = retrySeconds * 1000;
    this.baseDelayMs = options.retryBaseDelayMs ?? 500;
    this.maxDelayMs = options.retryMaxDelayMs ?? 8000;
    this.maxBulkBytes = options.maxBulkBytes ?? DEFAULT_MAX_BULK_BYTES;
    // One unanswered request must not outlast the retry duration (an OpenSearch that hangs held a delivery, and the
    // twin's stop, for the full 60 s); 1 s at least, so a duration of 0 still makes its one attempt.
    this.requestTimeoutMs = Math.min(options.requestTimeoutMs ?? 60_000, Math.max(this.retryMs, 1000));
    this.now = options.now ?? Date.now;
    this.warn = options.warn ?? ((message) => process.stderr.write(`${message}\n`));
    this.fileRoot = path.resolve(openSearchDir(options.dataDir), this.pipeline);
    this.template = openSearchIndexTemplate(options.model);
    const url = options.url === undefined ? process.env.OPENSEARCH_URL : options.url;
    if (url) {
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new Error(`OPENSEARCH_URL ${JSON.stringify(url)} is not a URL; expected e.g. http://127.0.0.1:9200`);
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`OPENSEARCH_URL must be http(s), got ${parsed.protocol}`);
      if (parsed.username || parsed.password) {
        const user = decodeURIComponent(parsed.username);
        const password = decodeURIComponent(parsed.password);
        this.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
        parsed.username = '';
        parsed.password = '';
      }
      if (!parsed.pathname.endsWith('/')) parsed.pathname += '/';
      this.endpoint = parsed.toString();
    }
  }

  /** The index a document arriving at this time goes to. */
  indexFor(arrivalTimestamp: number): string {
    return rotatedIndexName(this.indexName, this.rotation, arrivalTimestamp);
  }

  /**
   * Indexes documents. Resolves with what was indexed and what failed for good (to be backed up);
   * throws only when bulk files cannot be written (file mode), which the caller retries.
   */
  async deliver(documents: readonly SearchDocument[]): Promise<SearchDelivery> {
    const failed: SearchFailure[] = [];
    const items: BulkItem[] = [];
    for (const document of documents) {
      const item = this.bulkItem(document);
      if ('error' in item) {
        failed.push({ document, attemptsMade: 0, errorCode: '400', errorMessage: item.error, attemptEndingTimestamp: this.now(), esDocumentId: item.id, esIndexName: item.index });
      } else {
        items.push(item);
      }
    }
    if (items.length === 0) return { indexed: 0, requests: 0, bytes: 0, failed };
    if (this.endpoint === undefined) {
      const written = await this.writeBulkFiles(items);
      return { indexed: items.length, requests: written.files, bytes: written.bytes, failed };
    }
    return this.sendWithRetries(items, failed);
  }

  async close(): Promise<void> {
    // Nothing held open: requests use fetch's pooled connections, files are closed after each write.
  }

  private bulkItem(document: SearchDocument): BulkItem | { error: string; id: string; index: string } {
    const index = this.indexFor(document.arrivalTimestamp);
    let parsed: unknown;
    try {
      parsed = JSON.parse(document.data.toString('utf8'));
    } catch (error) {
      return { error: JSON.stringify({ type: 'mapper_parsing_exception', reason: `failed to parse: ${(error as Error).message}` }), id: document.recordId, index };
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      return { error: JSON.stringify({ type: 'mapper_parsing_exception', reason: 'a document must be one JSON object' }), id: document.recordId, index };
    }
    // FIREHOSE_DEFAULT: Firehose's own id for the record, not a field of it (Firehose cannot take one from the record).
    const id = document.recordId;
    const action = JSON.stringify({ index: { _index: index, _id: id } });
    const raw = trimTrailingNewlines(document.data);
    const body = raw.includes(0x0a) || raw.includes(0x0d) ? Buffer.from(JSON.stringify(parsed)) : raw;
    return { document, index, id, lines: Buffer.concat([Buffer.from(`${action}\n`), body, NEWLINE]) };
  }

  private async sendWithRetries(items: readonly BulkItem[], failed: SearchFailure[]): Promise<SearchDelivery> {
    const started = this.now();
    const deadline = started + this.retryMs;
    let indexed = 0;
    let requests = 0;
    let bytes = 0;
    let attempts = 0;
    let delay = this.baseDelayMs;
    let pending: Array<{ item: BulkItem; error: ItemError }> = items.map((item) => ({ item, error: { code: '', message: '' } }));
    for (;;) {
      attempts++;
      const templateError = await this.applyTemplate();
      let retry: Array<{ item: BulkItem; error: ItemError }> = [];
      if (templateError) {
        retry = pending.map(({ item }) => ({ item, error: templateError }));
      } else {
        for (const chunk of bulkChunks(pending.map((p) => p.item), this.maxBulkBytes)) {
          const body = Buffer.concat(chunk.map((i) => i.lines));
          requests++;
          bytes += body.length;
          const outcome = await this.postBulk(body, chunk.length);
          if ('requestError' in outcome) {
            retry.push(...chunk.map((item) => ({ item, error: outcome.requestError })));
            continue;
          }
          chunk.forEach((item, i) => {
            const result = outcome.items[i];
            if (result === undefined) {
              indexed++;
            } else if (result.retryable) {
              retry.push({ item, error: result.error });
            } else {
              failed.push(this.failure(item, attempts, result.error));
            }
          });
        }
      }
      pending = retry;
      if (pending.length === 0) break;
      const now = this.now();
      if (now + delay > deadline) {
        for (const { item, error } of pending) failed.push(this.failure(item, attempts, error));
        break;
      }
      if (delay > 0) await sleep(delay);
      // A busy machine can oversleep the backoff past the deadline: no attempt starts once the retry duration is over.
      if (this.now() > deadline) {
        for (const { item, error } of pending) failed.push(this.failure(item, attempts, error));
        break;
      }
      delay = Math.min(delay * 2, this.maxDelayMs);
    }
    return { indexed, requests, bytes, failed };
  }

  private failure(item: BulkItem, attemptsMade: number, error: ItemError): SearchFailure {
    return {
      document: item.document,
      attemptsMade,
      errorCode: error.code,
      errorMessage: error.message,
      attemptEndingTimestamp: this.now(),
      esDocumentId: item.id,
      esIndexName: item.index,
    };
  }

  /**
   * PUT the index template once, and its fields to the indices that already match it; returns the error to retry
   * with, or undefined when applied. A field an existing index refuses (a changed type) is said, not retried: no
   * retry can change an existing field's type, and the next index gets it from the template.
   */
  private async applyTemplate(): Promise<ItemError | undefined> {
    if (this.templateApplied) return undefined;
    const response = await this.request('PUT', `_index_template/${encodeURIComponent(this.pipeline)}`, 'application/json', Buffer.from(JSON.stringify(this.template)));
    if ('requestError' in response) return response.requestError;
    if (response.status < 200 || response.status > 299) {
      return { code: String(response.status), message: `could not apply index template ${this.pipeline}: ${response.body.slice(0, 2000)}` };
    }
    let requestError: ItemError | undefined;
    try {
      const update = await updateExistingMappings(this.template, async (relative, body) => {
        const answer = await this.request('PUT', relative, 'application/json', Buffer.from(body));
        if (!('requestError' in answer)) return answer;
        requestError = answer.requestError;
        throw new Error(answer.requestError.message);
      });
      for (const { field, reason } of update?.refused ?? []) {
        this.warn(`sluice: ${this.pipeline} search: the existing indices ${this.pipeline}-* refused field "${field}" of the index template (${reason}); `
          + `documents whose "${field}" does not fit their mapping are refused (and backed up) until the next index rotation`);
      }
    } catch (error) {
      if (requestError) return requestError;
      if (error instanceof MappingUpdateError) return { code: String(error.status), message: `could not update the mappings of existing indices: ${error.message}` };
      throw error;
    }
    this.templateApplied = true;
    await this.applyRetention();
    return undefined;
  }

  /** The retention policy, as the deploy applies it; what fails is said (retention is no reason to hold documents back). */
  private async applyRetention(): Promise<void> {
    if (this.retentionDays === undefined || this.rotation === 'NoRotation') return;
    const policyId = retentionPolicyId(this.indexName);
    const policy = this.retentionDays === 'forever' ? undefined : retentionPolicyFor(this.indexName, this.retentionDays, this.rotation);
    try {
      await applyRetentionPolicy(async (method, relative, body) => {
        const answer = await this.request(method, relative, 'application/json', body === undefined ? undefined : Buffer.from(body));
        if ('requestError' in answer) throw new Error(answer.requestError.message);
        return answer;
      }, policyId, this.indexName, policy);
    } catch (error) {
      this.warn(`sluice: ${this.pipeline} search: could not apply the index retention (search.retentionDays ${this.retentionDays}) at ${this.endpoint}: `
        + `${(error as Error).message.slice(0, 500)}; indices ${this.indexName}-* are kept until you delete them (an OpenSearch without the Index State Management plugin has no retention)`);
    }
  }

  /** Sends one bulk body; per-item errors by position (undefined = indexed), or a request-level error. */
  private async postBulk(body: Buffer, count: number): Promise<{ items: Array<{ retryable: boolean; error: ItemError } | undefined> } | { requestError: ItemError }> {
    const response = await this.request('POST', '_bulk', 'application/x-ndjson', body);
    if ('requestError' in response) return response;
    if (response.status !== 200) {
      return { requestError: { code: String(response.status), message: response.body.slice(0, 2000) || `HTTP ${response.status}` } };
    }
    let parsed: { errors?: unknown; items?: unknown };
    try {
      parsed = JSON.parse(response.body) as { errors?: unknown; items?: unknown };
    } catch {
      return { requestError: { code: '500', message: `the _bulk response is not JSON: ${response.body.slice(0, 200)}` } };
    }
    if (!Array.isArray(parsed.items) || parsed.items.length !== count) {
      return { requestError: { code: '500', message: `the _bulk response lists ${Array.isArray(parsed.items) ? parsed.items.length : 'no'} items for ${count} actions` } };
    }
    const items = parsed.items.map((entry: unknown) => {
      const result = (entry as { index?: { status?: unknown; error?: unknown } } | null)?.index;
      const status = typeof result?.status === 'number' ? result.status : 500;
      if (status >= 200 && status <= 299) return undefined;
      const error = result?.error;
      return { retryable: RETRYABLE_STATUS(status), error: { code: String(status), message: typeof error === 'string' ? error : JSON.stringify(error ?? { status }) } };
    });
    return { items };
  }

  private async request(method: string, relative: string, contentType: string, body: Buffer | undefined): Promise<{ status: number; body: string } | { requestError: ItemError }> {
    const headers: Record<string, string> = { 'content-type': contentType };
    if (this.authorization) headers.authorization = this.authorization;
    try {
      const response = await fetch(new URL(relative, this.endpoint), {
        method, headers, body, signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
      return { status: response.status, body: await response.text() };
    } catch (error) {
      const timedOut = (error as Error).name === 'TimeoutError';
      const cause = (error as { cause?: { message?: string } }).cause?.message;
      return {
        requestError: timedOut
          ? { code: 'OS.RequestTimeout', message: `no answer from ${this.endpoint} within ${this.requestTimeoutMs} ms` }
          : { code: 'OS.ConnectionFailed', message: `could not reach ${this.endpoint}: ${cause ?? (error as Error).message}` },
      };
    }
  }

  private async writeBulkFiles(items: readonly BulkItem[]): Promise<{ files: number; bytes: number }> {
    await this.writeTemplateFile();
    const byIndex = new Map<string, BulkItem[]>();
    for (const item of items) {
      const list = byIndex.get(item.index);
      if (list) list.push(item);
      else byIndex.set(item.index, [item]);
    }
    let files = 0;
    let bytes = 0;
    for (const [index, indexItems] of byIndex) {
      const dir = path.join(this.fileRoot, index);
      await fs.promises.mkdir(dir, { recursive: true });
      for (const chunk of bulkChunks(indexItems, this.maxBulkBytes)) {
        const body = Buffer.concat(chunk.map((i) => i.lines));
        const n = await this.takeFileNumber(index, dir);
        await writeFileAtomic(path.join(dir, `${String(n).padStart(8, '0')}.ndjson`), body);
        files++;
        bytes += body.length;
      }
    }
    // Indices rotate with arrival time: one this delivery did not write to is an earlier period's, written to again
    // only by records a restart recovers, whose numbering reads its folder anew. Kept, it is an entry per period forever.
    for (const index of this.nextFileNumber.keys()) if (!byIndex.has(index)) this.nextFileNumber.delete(index);
    return { files, bytes };
  }

  private async writeTemplateFile(): Promise<void> {
    if (this.templateApplied) return;
    await fs.promises.mkdir(this.fileRoot, { recursive: true });
    await writeFileAtomic(path.join(this.fileRoot, '_index_template.json'), Buffer.from(`${JSON.stringify(this.template, null, 2)}\n`));
    this.templateApplied = true;
  }

  private async takeFileNumber(index: string, dir: string): Promise<number> {
    let next = this.nextFileNumber.get(index);
    if (next === undefined) {
      // Continue after what an earlier run wrote.
      const existing = (await fs.promises.readdir(dir)).map((f) => /^(\d+)\.ndjson$/.exec(f)).filter((m) => m !== null).map((m) => Number(m[1]));
      next = existing.reduce((max, n) => Math.max(max, n), 0) + 1;
    }
    this.nextFileNumber.set(index, next + 1);
    return next;
  }
}

const NEWLINE = Buffer.from('\n');

function* bulkChunks(items: readonly BulkItem[], maxBytes: number): Generator<BulkItem[]> {
  let chunk: BulkItem[] = [];
  let size = 0;
  for (const item of items) {
    if (chunk.length > 0 && size + item.lines.length > maxBytes) {
      yield chunk;
      chunk = [];
      size = 0;
    }
    chunk.push(item);
    size += item.lines.length;
  }
  if (chunk.length > 0) yield chunk;
}

function trimTrailingNewlines(data: Buffer): Buffer {
  let end = data.length;
  while (end > 0 && (data[end - 1] === 0x0a || data[end - 1] === 0x0d || data[end - 1] === 0x20 || data[end - 1] === 0x09)) end--;
  return data.subarray(0, end);
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/** ISO-8601 week and week-based year (weeks start on Monday; week 1 holds the year's first Thursday). */
function isoWeek(date: Date): { weekYear: number; week: number } {
  const d = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const weekYear = d.getUTCFullYear();
  const yearStart = Date.UTC(weekYear, 0, 1);
  return { weekYear, week: Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7) };
}
