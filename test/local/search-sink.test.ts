/**
 * The search destination against a tiny fake OpenSearch on 127.0.0.1 that answers what a test
 * scripts (200, 429, 500, partial bulk failures), and in file mode against a temp data dir.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { failedDocumentRecord, rotatedIndexName, SearchSink, type SearchDocument } from '../../lib/local/search-sink';
import { openSearchIndexTemplate } from '../../lib/schema/artifacts';
import { loadModel } from '../../lib/schema/registry';
import { retentionPolicyFor } from '../../transforms/index-template/retention';

const model = loadModel('clickstream');
const MAR_1 = Date.UTC(2026, 2, 1, 23, 59, 59);
const MAR_2 = Date.UTC(2026, 2, 2, 0, 0, 1);

interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

type Reply = { status: number; body: unknown } | ((request: SeenRequest) => { status: number; body: unknown });

/** What OpenSearch answers a put-mapping request whose wildcard matches no index. */
const NO_SUCH_INDEX = { status: 404, body: { error: { type: 'index_not_found_exception', reason: 'no such index [clickstream-*]' }, status: 404 } };

/**
 * A scripted OpenSearch: answers bulk requests from `bulkReplies` in order (then 200 OK for all items), and
 * put-mapping requests from `mappingReplies` (then as a cluster without the pipeline's indices).
 */
class FakeOpenSearch {
  readonly requests: SeenRequest[] = [];
  readonly bulkReplies: Reply[] = [];
  readonly mappingReplies: Reply[] = [];
  templateStatus = 200;
  /** Read every request and answer none, as an OpenSearch that hangs. */
  hang = false;
  /** Answers to Index State Management requests, by "METHOD url"; others get 404. */
  ismReplies: Record<string, { status: number; body: unknown }> = {};
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const seen: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
        this.requests.push(seen);
        if (this.hang) return;
        let reply: { status: number; body: unknown };
        if (seen.url.startsWith('/_index_template/')) {
          reply = { status: this.templateStatus, body: this.templateStatus === 200 ? { acknowledged: true } : { error: 'template refused' } };
        } else if (seen.url.endsWith('/_mapping')) {
          const next = this.mappingReplies.shift() ?? NO_SUCH_INDEX;
          reply = typeof next === 'function' ? next(seen) : next;
        } else if (this.ismReplies[`${seen.method} ${seen.url}`]) {
          reply = this.ismReplies[`${seen.method} ${seen.url}`];
        } else if (seen.url === '/_bulk') {
          const next = this.bulkReplies.shift() ?? allOk;
          reply = typeof next === 'function' ? next(seen) : next;
        } else {
          reply = { status: 404, body: { error: 'no handler' } };
        }
        res.writeHead(reply.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(reply.body));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  bulks(): SeenRequest[] {
    return this.requests.filter((r) => r.url === '/_bulk');
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Every action of a bulk body answered with `statusFor(i)`. */
function bulkAnswer(statusFor: (i: number, action: { _index: string; _id: string }) => number): (request: SeenRequest) => { status: number; body: unknown } {
  return (request) => {
    const lines = request.body.trimEnd().split('\n');
    const actions = lines.filter((_, i) => i % 2 === 0).map((l) => (JSON.parse(l) as { index: { _index: string; _id: string } }).index);
    const items = actions.map((a, i) => {
      const status = statusFor(i, a);
      return { index: { _index: a._index, _id: a._id, status, ...(status >= 300 ? { error: { type: status === 429 ? 'es_rejected_execution_exception' : 'mapper_parsing_exception', reason: `status ${status}` } } : {}) } };
    });
    return { status: 200, body: { took: 1, errors: items.some((i) => i.index.status >= 300), items } };
  };
}
const allOk = bulkAnswer(() => 201);

function doc(id: string, arrivalTimestamp = MAR_1, extra: Record<string, unknown> = {}): SearchDocument {
  return { recordId: `rec-${id}`, arrivalTimestamp, data: Buffer.from(`${JSON.stringify({ event_id: id, event_type: 'click', ...extra })}\n`) };
}

let server: FakeOpenSearch;
let dataDir: string;

beforeEach(async () => {
  server = new FakeOpenSearch();
  await server.start();
  dataDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sluice-search-'));
});

afterEach(async () => {
  await server.stop();
  await fs.promises.rm(dataDir, { recursive: true, force: true });
});

const sinkFor = (overrides: Partial<ConstructorParameters<typeof SearchSink>[0]> = {}): SearchSink => new SearchSink({
  model, dataDir, url: server.url, retrySeconds: 1, retryBaseDelayMs: 10, retryMaxDelayMs: 40, ...overrides,
});

describe('SearchSink with an endpoint', () => {
  it('applies the index template, then bulk-indexes into daily indices with Firehose\'s default document id (the record\'s, not a field of it)', async () => {
    const result = await sinkFor().deliver([doc('a'), doc('b', MAR_2), doc('c')]);
    expect(result).toEqual({ indexed: 3, requests: 1, bytes: server.bulks()[0].body.length, failed: [] });
    expect(server.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['PUT /_index_template/clickstream', 'PUT /clickstream-*/_mapping', 'POST /_bulk']);
    expect(JSON.parse(server.requests[0].body)).toEqual(openSearchIndexTemplate(model));
    expect(server.bulks()[0].headers['content-type']).toBe('application/x-ndjson');
    expect(server.bulks()[0].body).toBe([
      '{"index":{"_index":"clickstream-2026-03-01","_id":"rec-a"}}', '{"event_id":"a","event_type":"click"}',
      '{"index":{"_index":"clickstream-2026-03-02","_id":"rec-b"}}', '{"event_id":"b","event_type":"click"}',
      '{"index":{"_index":"clickstream-2026-03-01","_id":"rec-c"}}', '{"event_id":"c","event_type":"click"}',
      '',
    ].join('\n'));
  });

  describe('index retention, as the deploy applies it (search.retentionDays)', () => {
    it('after the template, the ISM policy <index>-retention is created for clickstream-* and the existing indices are given it', async () => {
      const answers: Record<string, { status: number; body: unknown }> = {
        'GET /_plugins/_ism/policies/clickstream-retention': { status: 404, body: { error: { type: 'status_exception', reason: 'Policy not found' } } },
        'GET /_plugins/_ism/explain/clickstream-*': { status: 200, body: { 'clickstream-2026-02-28': { 'index.plugins.index_state_management.policy_id': null }, total_managed_indices: 0 } },
        'PUT /_plugins/_ism/policies/clickstream-retention': { status: 201, body: { _id: 'clickstream-retention', _seq_no: 0, _primary_term: 1 } },
        'POST /_plugins/_ism/add/clickstream-*': { status: 200, body: { updated_indices: 1, failures: false, failed_indices: [] } },
      };
      const ism = new FakeOpenSearch();
      ism.ismReplies = answers;
      await ism.start();
      try {
        const warnings: string[] = [];
        const result = await sinkFor({ url: ism.url, retentionDays: 30, warn: (m) => warnings.push(m) }).deliver([doc('a')]);
        expect(result.indexed).toBe(1);
        expect(warnings).toEqual([]);
        expect(ism.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
          'PUT /_index_template/clickstream', 'PUT /clickstream-*/_mapping', ...Object.keys(answers), 'POST /_bulk',
        ]);
        expect(JSON.parse(ism.requests.find((r) => r.method === 'PUT' && r.url.startsWith('/_plugins/'))!.body)).toEqual(retentionPolicyFor('clickstream', 30, 'OneDay'));
      } finally {
        await ism.stop();
      }
    });

    it('an OpenSearch without the ISM plugin is said once, and the documents are indexed all the same', async () => {
      const warnings: string[] = [];
      const sink = sinkFor({ retentionDays: 30, warn: (m) => warnings.push(m) });
      expect((await sink.deliver([doc('a')])).indexed).toBe(1);
      await sink.deliver([doc('b')]);
      expect(warnings).toEqual([expect.stringMatching(/^sluice: clickstream search: could not apply the index retention \(search\.retentionDays 30\) at .*indices clickstream-\* are kept until you delete them/)]);
      expect(server.bulks()).toHaveLength(2);
    });
  });

  it('applies the template once per sink', async () => {
    const sink = sinkFor();
    await sink.deliver([doc('a')]);
    await sink.deliver([doc('b')]);
    expect(server.requests.map((r) => r.url)).toEqual(['/_index_template/clickstream', '/clickstream-*/_mapping', '/_bulk', '/_bulk']);
  });

  describe('the template\'s fields reach the indices that already exist (a strict mapping refuses new fields until rotation)', () => {
    const { properties } = (openSearchIndexTemplate(model).template as { mappings: { properties: Record<string, unknown> } }).mappings;

    it('puts the template\'s properties to <pipeline>-*/_mapping before the first bulk request', async () => {
      server.mappingReplies.push({ status: 200, body: { acknowledged: true } });
      const result = await sinkFor().deliver([doc('a')]);
      expect(result).toMatchObject({ indexed: 1, failed: [] });
      const mapping = server.requests.find((r) => r.url === '/clickstream-*/_mapping');
      expect(mapping?.method).toBe('PUT');
      expect(JSON.parse(mapping!.body)).toEqual({ properties });
    });

    it('a field whose type changed is refused alone: the others are put one by one, the refused one is named, documents still go', async () => {
      const conflict = { status: 400, body: { error: { type: 'illegal_argument_exception', reason: 'mapper [event_type] cannot be changed from type [text] to [keyword]' }, status: 400 } };
      // The whole mapping refused, then each field alone: only event_type's is.
      server.mappingReplies.push(conflict);
      for (let i = 0; i < Object.keys(properties).length; i++) {
        server.mappingReplies.push((r) => (r.body.includes('{"properties":{"event_type"') ? conflict : { status: 200, body: { acknowledged: true } }));
      }
      const warnings: string[] = [];
      const result = await sinkFor({ warn: (m) => warnings.push(m) }).deliver([doc('a')]);
      expect(result).toMatchObject({ indexed: 1, failed: [] });
      const oneByOne = server.requests.filter((r) => r.url === '/clickstream-*/_mapping').slice(1).map((r) => Object.keys(JSON.parse(r.body).properties));
      expect(oneByOne).toEqual(Object.keys(properties).map((k) => [k]));
      expect(warnings).toEqual([expect.stringMatching(/^sluice: clickstream search: the existing indices clickstream-\* refused field "event_type" of the index template \(mapper \[event_type\] cannot be changed from type \[text\] to \[keyword\]\)/)]);
    });

    it('a mapping update that fails otherwise is retried with the template, as a template failure is', async () => {
      server.mappingReplies.push({ status: 503, body: { error: 'busy' } });
      const result = await sinkFor().deliver([doc('a')]);
      expect(result).toMatchObject({ indexed: 1, failed: [] });
      expect(server.requests.map((r) => r.url)).toEqual(['/_index_template/clickstream', '/clickstream-*/_mapping', '/_index_template/clickstream', '/clickstream-*/_mapping', '/_bulk']);
    });
  });

  it('retries a throttled (429) or failing (500) bulk request until it succeeds', async () => {
    server.bulkReplies.push({ status: 429, body: { error: 'too many requests' } }, { status: 500, body: { error: 'boom' } });
    const result = await sinkFor().deliver([doc('a'), doc('b')]);
    expect(result.indexed).toBe(2);
    expect(result.failed).toEqual([]);
    expect(server.bulks()).toHaveLength(3);
    expect(server.bulks()[2].body).toBe(server.bulks()[0].body);
  });

  it('retries only the retryable items of a partial failure and fails the refused ones at once', async () => {
    server.bulkReplies.push(bulkAnswer((i) => [201, 400, 429, 503][i]));
    const result = await sinkFor().deliver([doc('a'), doc('b'), doc('c'), doc('d')]);
    expect(result.indexed).toBe(3);
    expect(server.bulks()).toHaveLength(2);
    expect(server.bulks()[1].body.split('\n').filter((_, i) => i % 2 === 0 && _ !== '').map((l) => JSON.parse(l).index._id)).toEqual(['rec-c', 'rec-d']);
    expect(result.failed).toHaveLength(1);
    const [failure] = result.failed;
    expect(failure).toMatchObject({ attemptsMade: 1, errorCode: '400', esDocumentId: 'rec-b', esIndexName: 'clickstream-2026-03-01' });
    expect(JSON.parse(failure.errorMessage)).toEqual({ type: 'mapper_parsing_exception', reason: 'status 400' });
    expect(failedDocumentRecord(failure)).toEqual({
      attemptsMade: 1,
      arrivalTimestamp: MAR_1,
      errorCode: '400',
      errorMessage: failure.errorMessage,
      attemptEndingTimestamp: failure.attemptEndingTimestamp,
      rawData: doc('b').data.toString('base64'),
      subsequenceNumber: 0,
      esDocumentId: 'rec-b',
      esIndexName: 'clickstream-2026-03-01',
      esTypeName: '',
    });
    // Firehose's member order, and a KPL user record's subsequence.
    expect(Object.keys(failedDocumentRecord(failure))).toEqual([
      'attemptsMade', 'arrivalTimestamp', 'errorCode', 'errorMessage', 'attemptEndingTimestamp', 'rawData', 'subsequenceNumber', 'esDocumentId', 'esIndexName', 'esTypeName',
    ]);
    expect(failedDocumentRecord({ ...failure, document: { ...failure.document, subsequenceNumber: 3 } }).subsequenceNumber).toBe(3);
  });

  it('gives up after the retry duration and reports every attempt', async () => {
    for (let i = 0; i < 100; i++) server.bulkReplies.push({ status: 500, body: { error: 'still down' } });
    // The sink's clock moves 100 ms with each bulk request: 300 ms run out at the third, whose 40 ms backoff would pass
    // the deadline; it stops there, however fast or slow the machine.
    const started = Date.UTC(2026, 2, 1, 10, 0, 0);
    const result = await sinkFor({ retrySeconds: 0.3, now: () => started + 100 * server.bulks().length }).deliver([doc('a'), doc('b')]);
    expect(result.indexed).toBe(0);
    expect(result.failed).toHaveLength(2);
    expect(server.bulks()).toHaveLength(3);
    expect(result.failed[0]).toMatchObject({ attemptsMade: 3, errorCode: '500', errorMessage: '{"error":"still down"}', attemptEndingTimestamp: started + 300 });
  });

  it('starts no attempt after the retry duration, though the backoff before it seemed to fit: a busy machine overslept it', async () => {
    for (let i = 0; i < 100; i++) server.bulkReplies.push({ status: 500, body: { error: 'still down' } });
    // The 10 ms backoff after the first bulk request fits the 300 ms (the clock says 100 ms); once it is slept, the
    // clock says 1 s: the machine stalled through the wait, past the deadline.
    const started = Date.UTC(2026, 2, 1, 10, 0, 0);
    let checkedAfterFirst = false;
    const now = (): number => {
      if (server.bulks().length === 0) return started;
      if (!checkedAfterFirst) {
        checkedAfterFirst = true;
        return started + 100;
      }
      return started + 1000;
    };
    const result = await sinkFor({ retrySeconds: 0.3, now }).deliver([doc('a')]);
    expect(server.bulks()).toHaveLength(1);
    expect(result.failed[0]).toMatchObject({ attemptsMade: 1, errorCode: '500', esDocumentId: 'rec-a' });
  });

  it('makes one attempt when the retry duration is 0', async () => {
    server.bulkReplies.push({ status: 503, body: {} });
    const result = await sinkFor({ retrySeconds: 0 }).deliver([doc('a')]);
    expect(server.bulks()).toHaveLength(1);
    expect(result.failed[0]).toMatchObject({ attemptsMade: 1, errorCode: '503' });
  });

  it('reports an unreachable endpoint as OS.ConnectionFailed after the retry duration', async () => {
    await server.stop();
    const result = await sinkFor({ retrySeconds: 0.1 }).deliver([doc('a')]);
    expect(result.failed[0]).toMatchObject({ errorCode: 'OS.ConnectionFailed', esDocumentId: 'rec-a' });
    await server.start();
  });

  it('an OpenSearch that never answers fails the documents within the retry duration, not the 60 s request timeout', async () => {
    server.hang = true;
    // The test's own timeout (15 s) is far below the 60 s a request waited before: the wait is the retry duration's.
    const result = await sinkFor({ retrySeconds: 1 }).deliver([doc('a')]);
    expect(result.failed[0]).toMatchObject({ errorCode: 'OS.RequestTimeout', errorMessage: expect.stringMatching(/within 1000 ms$/), esDocumentId: 'rec-a' });
  }, 15_000);

  it('fails every document when the template cannot be applied within the retry duration', async () => {
    server.templateStatus = 500;
    const result = await sinkFor({ retrySeconds: 0.1 }).deliver([doc('a')]);
    expect(server.bulks()).toHaveLength(0);
    expect(result.failed[0]).toMatchObject({ errorCode: '500', errorMessage: expect.stringContaining('could not apply index template clickstream') });
  });

  it('sends credentials from the URL as Basic auth', async () => {
    const url = server.url.replace('http://', 'http://admin:s%3Acret@');
    await sinkFor({ url }).deliver([doc('a')]);
    expect(server.requests.every((r) => r.headers.authorization === `Basic ${Buffer.from('admin:s:cret').toString('base64')}`)).toBe(true);
  });

  it('indexes a document without an idField value, and fails a document that is not a JSON object without sending it', async () => {
    const noId: SearchDocument = { recordId: 'rec-1', arrivalTimestamp: MAR_1, data: Buffer.from('{"event_type":"click"}') };
    const notJson: SearchDocument = { recordId: 'rec-2', arrivalTimestamp: MAR_1, data: Buffer.from('not json') };
    const multiLine: SearchDocument = { recordId: 'rec-3', arrivalTimestamp: MAR_1, data: Buffer.from('{\n"event_id": "m"\n}') };
    const result = await sinkFor().deliver([noId, notJson, multiLine]);
    expect(result.indexed).toBe(2);
    expect(result.failed).toEqual([expect.objectContaining({ errorCode: '400', esDocumentId: 'rec-2', attemptsMade: 0 })]);
    expect(server.bulks()[0].body).toBe([
      '{"index":{"_index":"clickstream-2026-03-01","_id":"rec-1"}}', '{"event_type":"click"}',
      '{"index":{"_index":"clickstream-2026-03-01","_id":"rec-3"}}', '{"event_id":"m"}', '',
    ].join('\n'));
  });

  it('a record sent twice is two documents, as with FIREHOSE_DEFAULT ids in AWS: the id is the Firehose record\'s, not the event\'s', async () => {
    await sinkFor().deliver([doc('a'), { ...doc('a'), recordId: 'rec-a-again' }]);
    const ids = server.bulks()[0].body.split('\n').filter((_, i) => i % 2 === 0 && _ !== '').map((l) => JSON.parse(l).index._id);
    expect(ids).toEqual(['rec-a', 'rec-a-again']);
  });

  it('splits bulk bodies at maxBulkBytes', async () => {
    const result = await sinkFor({ maxBulkBytes: 150 }).deliver([doc('a'), doc('b'), doc('c')]);
    expect(result).toMatchObject({ indexed: 3, requests: 3 });
  });
});

describe('SearchSink without an endpoint', () => {
  it('writes the exact _bulk bodies under <dataDir>/opensearch/<pipeline>/<index>/<n>.ndjson', async () => {
    const sink = new SearchSink({ model, dataDir, url: null });
    expect(sink.endpoint).toBeUndefined();
    const result = await sink.deliver([doc('a'), doc('b', MAR_2), doc('c')]);
    expect(result).toMatchObject({ indexed: 3, requests: 2, failed: [] });
    const root = path.join(dataDir, 'opensearch', 'clickstream');
    expect(fs.readFileSync(path.join(root, 'clickstream-2026-03-01', '00000001.ndjson'), 'utf8')).toBe([
      '{"index":{"_index":"clickstream-2026-03-01","_id":"rec-a"}}', '{"event_id":"a","event_type":"click"}',
      '{"index":{"_index":"clickstream-2026-03-01","_id":"rec-c"}}', '{"event_id":"c","event_type":"click"}', '',
    ].join('\n'));
    expect(fs.readdirSync(path.join(root, 'clickstream-2026-03-02'))).toEqual(['00000001.ndjson']);
    expect(JSON.parse(fs.readFileSync(path.join(root, '_index_template.json'), 'utf8'))).toEqual(openSearchIndexTemplate(model));
    // A later sink (a restarted twin) continues the numbering.
    await new SearchSink({ model, dataDir, url: null }).deliver([doc('d')]);
    expect(fs.readdirSync(path.join(root, 'clickstream-2026-03-01')).sort()).toEqual(['00000001.ndjson', '00000002.ndjson']);
    expect(server.requests).toEqual([]);
  });

  it('keeps the next file number of the indices it writes to now only, and numbers on after files of an earlier one', async () => {
    const sink = new SearchSink({ model, dataDir, url: null, rotation: 'OneHour' });
    const numbers = (sink as unknown as { nextFileNumber: ReadonlyMap<string, number> }).nextFileNumber;
    for (let hour = 0; hour < 48; hour++) await sink.deliver([doc(`h${hour}`, MAR_1 + hour * 3_600_000)]);
    expect([...numbers.keys()]).toEqual([rotatedIndexName('clickstream', 'OneHour', MAR_1 + 47 * 3_600_000)]);
    // A record of an earlier hour (recovered at a restart) still takes the number after that index's files.
    await sink.deliver([doc('late', MAR_1)]);
    const root = path.join(dataDir, 'opensearch', 'clickstream', rotatedIndexName('clickstream', 'OneHour', MAR_1));
    expect(fs.readdirSync(root).sort()).toEqual(['00000001.ndjson', '00000002.ndjson']);
  });

  it('reads OPENSEARCH_URL when no url option is given', () => {
    const saved = process.env.OPENSEARCH_URL;
    try {
      process.env.OPENSEARCH_URL = 'http://127.0.0.1:9200';
      expect(new SearchSink({ model, dataDir }).endpoint).toBe('http://127.0.0.1:9200/');
      delete process.env.OPENSEARCH_URL;
      expect(new SearchSink({ model, dataDir }).endpoint).toBeUndefined();
    } finally {
      if (saved === undefined) delete process.env.OPENSEARCH_URL;
      else process.env.OPENSEARCH_URL = saved;
    }
  });
});

describe('rotatedIndexName', () => {
  // The Firehose guide's example: index "myindex", arrival 2016-02-25T13:00:00Z.
  const at = Date.UTC(2016, 1, 25, 13, 0, 0);
  it.each([
    ['NoRotation', 'myindex'],
    ['OneHour', 'myindex-2016-02-25-13'],
    ['OneDay', 'myindex-2016-02-25'],
    ['OneWeek', 'myindex-2016-w08'],
    ['OneMonth', 'myindex-2016-02'],
  ] as const)('%s → %s', (rotation, expected) => {
    expect(rotatedIndexName('myindex', rotation, at)).toBe(expected);
  });

  it('uses the week-based year around new year', () => {
    expect(rotatedIndexName('i', 'OneWeek', Date.UTC(2021, 0, 1))).toBe('i-2020-w53');
    expect(rotatedIndexName('i', 'OneWeek', Date.UTC(2024, 11, 30))).toBe('i-2025-w01');
  });
});
