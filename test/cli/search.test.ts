/**
 * `sluice search` with the official OpenSearch client against a stand-in OpenSearch on loopback that
 * records each request and answers as OpenSearch does; with --aws the requests must be SigV4-signed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/nested-clients/sts';
import { mockClient } from 'aws-sdk-client-mock';
import { freePort } from '../../lib/local/ports';
import { expectNoStackTrace, hungServer, onlyContainerCredentials, sluice } from './helpers';
import { displayFields } from '../../lib/cli/search-command';
import { loadModel } from '../../lib/schema';

interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

let server: Server;
let url: string;
const seen: SeenRequest[] = [];
let answer: (req: SeenRequest) => { status: number; body: unknown; headers?: Record<string, string> } = () => ({ status: 200, body: hitsResponse([]) });

function hitsResponse(docs: Array<Record<string, unknown>>, total = docs.length, aggregations?: unknown): unknown {
  return {
    took: 3,
    timed_out: false,
    hits: { total: { value: total, relation: 'eq' }, hits: docs.map((d, i) => ({ _index: 'clickstream-2026-11-22', _id: `doc-${i}`, _score: null, _source: d })) },
    ...(aggregations ? { aggregations } : {}),
  };
}

const cfn = mockClient(CloudFormationClient);
const savedEnv = { ...process.env };

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: text ? JSON.parse(text) as Record<string, unknown> : {} };
      seen.push(request);
      const { status, body, headers } = answer(request);
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  process.env.AWS_REGION = 'eu-west-1';
});
afterAll(async () => {
  process.env = savedEnv;
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
beforeEach(() => {
  seen.length = 0;
  answer = () => ({ status: 200, body: hitsResponse([]) });
  cfn.reset();
});

const search = (...args: string[]) => sluice('search', ...args, '--endpoint-opensearch', url);

const bin = path.resolve(__dirname, '../../bin/sluice.js');

/** The real `sluice search` binary with `stdin` written to its standard input, then closed. */
function searchWithStdin(stdin: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'search', ...args, '--endpoint-opensearch', url], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.stdin.on('error', () => undefined); // EPIPE if it exits first
    child.stdin.end(stdin);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** util-linux `script`, to run the binary with a terminal (a pseudo-terminal) as its standard input. */
const hasScript = process.platform === 'linux' && spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

/** The real `sluice search` binary on a terminal: its exit status, and what it printed there. */
function searchOnTerminal(...args: string[]): Promise<{ code: number | null; output: string }> {
  const quote = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
  const command = [process.execPath, bin, 'search', ...args, '--endpoint-opensearch', url].map(quote).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['--quiet', '--return', '--command', command, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output: output.replace(/\r\n/g, '\n') }));
  });
}

describe('sluice search (OPENSEARCH_URL)', () => {
  test('a query string, newest first, hits as a table with the event time, id, partition and entity fields', async () => {
    answer = () => ({
      status: 200,
      body: hitsResponse([
        { event_time: '2026-11-22T10:00:00.000Z', event_id: 'e-1', event_type: 'click', user_id: 'user-1', page: { path: '/a' } },
        { event_time: '2026-11-22T09:59:00.000Z', event_id: 'e-2', event_type: 'click', user_id: 'user-2', page: { path: '/b' } },
      ], 57),
    });
    const { code, stdout, stderr } = await search('clickstream', 'event_type:click AND device.type:mobile', '--since', '1h');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(seen).toHaveLength(1);
    expect(seen[0].method).toBe('POST');
    expect(decodeURIComponent(seen[0].url)).toMatch(/^\/clickstream-\*\/_search\?/);
    expect(seen[0].url).toMatch(/ignore_unavailable=true/);
    expect(seen[0].body).toEqual({
      query: {
        bool: {
          must: [{ query_string: { query: 'event_type:click AND device.type:mobile', default_operator: 'AND', lenient: true } }],
          filter: [{ range: { event_time: { gte: 'now-3600s' } } }],
        },
      },
      size: 20,
      sort: [{ event_time: { order: 'desc', unmapped_type: 'date' } }],
      track_total_hits: true,
    });
    expect(stdout).toMatch(/event_time\s+event_id\s+event_type\s+user_id\n/);
    expect(stdout).toMatch(/2026-11-22T10:00:00\.000Z\s+e-1\s+click\s+user-1/);
    expect(stdout).toMatch(/57 matching documents \(showing 2\) in clickstream-\* · OpenSearch at http:\/\/127\.0\.0\.1:\d+/);
  });

  test('a floating-point field prints as query prints a DOUBLE column: grouped, one number of decimals; integers as they are', async () => {
    answer = () => ({
      status: 200,
      body: hitsResponse([
        { event_id: 'e-1', sluice: { quality_score: 1 }, duration_ms: 2026 },
        { event_id: 'e-2', sluice: { quality_score: 1000000.5 }, duration_ms: 12345 },
        { event_id: 'e-3', sluice: { quality_score: 0.75 }, duration_ms: 7 },
      ]),
    });
    const { code, stdout } = await search('clickstream', '*', '--fields', 'event_id,sluice.quality_score,duration_ms');
    expect(code).toBe(0);
    expect(stdout.split('\n').slice(2, 5)).toEqual([
      'e-1                       1.00         2026',
      'e-2               1,000,000.50        12345',
      'e-3                       0.75            7',
    ]);
  });

  test('--count-by: a terms aggregation (keyword sub-field for text), shown as a table', async () => {
    answer = () => ({
      status: 200,
      body: hitsResponse([], 30, { count_by: { doc_count_error_upper_bound: 0, sum_other_doc_count: 4, buckets: [{ key: 'mobile', doc_count: 20 }, { key: 'desktop', doc_count: 6 }] } }),
    });
    const { code, stdout } = await search('clickstream', '--count-by', 'device.type', '--top', '2');
    expect(code).toBe(0);
    expect(seen[0].body).toMatchObject({ query: { match_all: {} }, size: 0, aggs: { count_by: { terms: { field: 'device.type', size: 2 } } } });
    expect(seen[0].body.sort).toBeUndefined();
    expect(stdout).toMatch(/device\.type\s+documents\n─+\s+─+\nmobile\s+20\ndesktop\s+6\n/);
    expect(stdout).toMatch(/4 more documents in other values; raise --top/);

    await search('clickstream', '--count-by', 'page.title');
    expect(seen[1].body).toMatchObject({ aggs: { count_by: { terms: { field: 'page.title.keyword' } } } });
  });

  test('--dsl: a whole body or a bare query clause, combined with the query string', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-dsl-'));
    fs.writeFileSync(path.join(dir, 'clause.json'), JSON.stringify({ range: { duration_ms: { gte: 5000 } } }));
    fs.writeFileSync(path.join(dir, 'body.json'), JSON.stringify({ query: { term: { event_type: 'click' } }, size: 3, _source: ['event_id'] }));
    expect((await search('clickstream', 'user_id:user-1', '--dsl', path.join(dir, 'clause.json'))).code).toBe(0);
    expect(seen[0].body.query).toEqual({ bool: { must: [{ range: { duration_ms: { gte: 5000 } } }, { query_string: { query: 'user_id:user-1', default_operator: 'AND', lenient: true } }] } });
    expect((await search('clickstream', '--dsl', path.join(dir, 'body.json'), '--json')).code).toBe(0);
    expect(seen[1].body).toMatchObject({ query: { term: { event_type: 'click' } }, size: 3, _source: ['event_id'] });
    fs.writeFileSync(path.join(dir, 'bad.json'), '{ nope');
    const bad = await search('clickstream', '--dsl', path.join(dir, 'bad.json'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--dsl .*bad\.json is not a JSON object/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a --dsl file that cannot be read: a usage error naming the file and why, not a bare ENOENT; nothing is sent', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-dsl-'));
    try {
      const cases: Array<[string, string]> = [[path.join(dir, 'missing.json'), 'no such file'], [dir, 'it is a directory']];
      for (const [file, why] of cases) {
        expect(await search('clickstream', '--dsl', file)).toEqual({ code: 2, stdout: '', stderr: `sluice: cannot read --dsl ${file}: ${why}\n` });
      }
      expect(seen).toHaveLength(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--dsl -: the DSL from standard input (a pipe), as a file would give it', async () => {
    const piped = await searchWithStdin(JSON.stringify({ range: { duration_ms: { gte: 5000 } } }), 'clickstream', 'user_id:user-1', '--dsl', '-');
    expect(piped.stderr).toBe('');
    expect(piped.code).toBe(0);
    expect(seen).toHaveLength(1);
    expect(seen[0].body.query).toEqual({ bool: { must: [{ range: { duration_ms: { gte: 5000 } } }, { query_string: { query: 'user_id:user-1', default_operator: 'AND', lenient: true } }] } });
    expect(piped.stdout).toMatch(/0 matching documents in clickstream-\*/);

    const help = await sluice('search', '--help');
    expect(help.stdout.replace(/\s+/g, ' ')).toContain('--dsl <file.json> a search body (or just a query clause) in OpenSearch Query DSL, from a file or "-" for standard input');
    expect(help.stdout).toContain('| sluice search clickstream --dsl - --since 1d');
  });

  test('--dsl - with nothing or no JSON object on standard input: a usage error saying so; nothing is sent', async () => {
    const cases: Array<[string, string]> = [
      ['', 'sluice: --dsl - (standard input) is empty: expected a JSON object, a search body or a query clause\n'],
      [' \n', 'sluice: --dsl - (standard input) is empty: expected a JSON object, a search body or a query clause\n'],
      ['{ "query": ', 'sluice: --dsl - (standard input) is not a JSON object: Unexpected end of JSON input\n'],
      ['[1, 2]', 'sluice: --dsl - (standard input) is not a JSON object: expected a JSON object\n'],
      // JSON.parse's message quotes the input, its line break too: the message stays one line.
      ['not json\n', 'sluice: --dsl - (standard input) is not a JSON object: unexpected token \'o\'\n'],
    ];
    for (const [stdin, message] of cases) {
      expect({ stdin, ...(await searchWithStdin(stdin, 'clickstream', '--dsl', '-')) }).toEqual({ stdin, code: 2, stdout: '', stderr: message });
    }
    expect(seen).toHaveLength(0);
  });

  (hasScript ? test : test.skip)('--dsl - on a terminal: a usage error saying how to pass the DSL, not a wait for typing', async () => {
    const { code, output } = await searchOnTerminal('clickstream', '--dsl', '-');
    expect(output).toBe('sluice: --dsl -: standard input is a terminal, not the query DSL: pipe the DSL in (--dsl - < query.json) or name its file (--dsl query.json)\n');
    expect(code).toBe(2);
    expect(seen).toHaveLength(0);
  });

  test('the time a search took counts on the monotonic clock: the wall clock set forward an hour while OpenSearch answers adds nothing to it', async () => {
    const realNow = Date.now.bind(Date);
    let setForward = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + setForward);
    answer = () => {
      setForward = 3_600_000;
      return { status: 200, body: hitsResponse([{ event_id: 'e-1' }], 1) };
    };
    try {
      const { code, stdout } = await search('clickstream');
      expect(code).toBe(0);
      expect(setForward).toBe(3_600_000);
      // The summary line ends with the time taken: milliseconds or seconds, not the hour the wall clock moved.
      expect(stdout).toMatch(/matching document.* · \d+(\.\d)? m?s\n/);
    } finally {
      wallClock.mockRestore();
    }
  });

  test('--json prints total, hits and buckets for scripts', async () => {
    answer = () => ({ status: 200, body: hitsResponse([{ event_id: 'e-1' }], 1, { count_by: { buckets: [{ key: 'click', doc_count: 1 }] } }) });
    const { code, stdout } = await search('clickstream', '--count-by', 'event_type', '--size', '1', '--json');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({
      index: 'clickstream-*',
      total: 1,
      hits: [{ _index: 'clickstream-2026-11-22', _id: 'doc-0', event_id: 'e-1' }],
      countBy: { field: 'event_type', buckets: [{ value: 'click', count: 1 }] },
    });
    expect(seen[0].body.size).toBe(1);
  });

  test('what documents and the command line put in the output prints escaped, as a table or as --json; --json parses back to the exact values', async () => {
    const hostile = { event_time: '2026-11-22T10:00:00Z', event_id: 'e-1\u009b31m\u007f', event_type: 'click\u001b]0;pwned\u0007', 'key\u009b': 'v\u0085' };
    answer = () => ({ status: 200, body: hitsResponse([hostile]) });
    const index = 'clickstream-\u009b2J*';
    // eslint-disable-next-line no-control-regex
    const terminalControl = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
    const table = await search('clickstream', '--index', index);
    expect(table.code).toBe(0);
    expect(table.stdout).not.toMatch(terminalControl);
    expect(table.stdout).toContain('e-1\\u009b31m\\u007f');
    expect(table.stdout).toContain('1 matching document in clickstream-\\u009b2J* · ');
    const json = await search('clickstream', '--index', index, '--json');
    expect(json.stdout).not.toMatch(terminalControl);
    expect(JSON.parse(json.stdout)).toMatchObject({ index, hits: [{ _id: 'doc-0', ...hostile }] });
  });

  test('a query OpenSearch refuses exits 1 with its reason', async () => {
    answer = () => ({
      status: 400,
      body: { error: { root_cause: [{ type: 'query_shard_exception', reason: 'Failed to parse query [event_type:(]' }], type: 'search_phase_execution_exception', reason: 'all shards failed' }, status: 400 },
    });
    const { code, stderr } = await search('clickstream', 'event_type:(');
    expect(code).toBe(1);
    expect(stderr).toBe('sluice: OpenSearch refused the query: Failed to parse query [event_type:(]\n');
  });

  test('an endpoint that answers 200 but not as OpenSearch does (a login page, JSON without hits): one line saying so, exit 2', async () => {
    // A proxy's login page: its own server, as the stand-in OpenSearch answers JSON only.
    let reply = { type: 'text/html; charset=utf-8', body: '<!doctype html>\n<html><body>Sign in</body></html>' };
    const proxy = createServer((req, res) => {
      req.resume().on('end', () => res.writeHead(200, { 'content-type': reply.type }).end(reply.body));
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      const html = await sluice('search', 'clickstream', 'event_type:click', '--endpoint-opensearch', proxyUrl);
      expect(html).toEqual({ code: 2, stdout: '', stderr: `sluice: OpenSearch at ${proxyUrl} answered the search (HTTP 200) but not as OpenSearch does (text/html, not a JSON search result): is a proxy or a login page in front of it? Check the endpoint\n` });
      reply = { type: 'application/json', body: '{"ok":true}' };
      const json = await sluice('search', 'clickstream', '--count-by', 'device.type', '--endpoint-opensearch', proxyUrl);
      expect(json).toEqual({ code: 2, stdout: '', stderr: `sluice: OpenSearch at ${proxyUrl} answered the search (HTTP 200) but not as OpenSearch does (application/json, a body without hits): is a proxy or a login page in front of it? Check the endpoint\n` });
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  test('without an OpenSearch, a clear message says how to provide one', async () => {
    const saved = process.env.OPENSEARCH_URL;
    delete process.env.OPENSEARCH_URL;
    try {
      const { code, stderr } = await sluice('search', 'clickstream', 'x');
      expect(code).toBe(2);
      expect(stderr).toMatch(/^sluice: no OpenSearch to ask\. Locally, run one .* pass the same OPENSEARCH_URL \(or --endpoint-opensearch\) here/);
      expect(stderr).toMatch(/Against AWS, add --aws/);
    } finally {
      if (saved !== undefined) process.env.OPENSEARCH_URL = saved;
    }
  });

  test('OPENSEARCH_URL pointing at nothing, a pipeline without search, an unknown field: usage errors', async () => {
    const port = await freePort();
    const down = await sluice('search', 'clickstream', 'x', '--endpoint-opensearch', `http://127.0.0.1:${port}`);
    expect(down.code).toBe(2);
    expect(down.stderr).toMatch(new RegExp(`^sluice: nothing is listening on 127\\.0\\.0\\.1:${port}: start OpenSearch there`));
    expectNoStackTrace(down.stderr);

    const noSearch = await search('iot', 'x');
    expect(noSearch.code).toBe(2);
    expect(noSearch.stderr).toMatch(/pipeline "iot" does not deliver to search \(destinations: lake, metadata\); query its lake with `npx sluice query`/);

    // Control characters in the name print escaped: a name typed or pasted cannot clear or retitle the terminal.
    const unknown = await search('click\u001b]0;owned\u0007stream');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe('sluice: unknown pipeline "click\\u001b]0;owned\\u0007stream"; configured pipelines: clickstream, iot, transactions, app-events\n');

    const field = await search('clickstream', '--count-by', 'colour');
    expect(field.code).toBe(2);
    expect(field.stderr).toMatch(/--count-by colour: not a field of the clickstream index; fields: event_id, event_type, .*device\.type/);
    // --fields as --count-by: a field it would show as empty for every document is named before anything is sent.
    const shown = await search('clickstream', '--fields', 'event_id,colour,device.nope');
    expect(shown.code).toBe(2);
    expect(shown.stderr).toMatch(/^sluice: --fields: colour, device\.nope are not fields of the clickstream index; fields: event_id, event_type, .*device\.type/);
    const none = await search('clickstream', '--fields', ' , ');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^sluice: --fields " , ": no field named; fields: event_id/);
    expect(seen).toHaveLength(0);
  });

  test('values that would quietly change the search are usage errors, and nothing is sent', async () => {
    const cases: Array<[string[], RegExp]> = [
      // Number('') is 0: an unset `--size "$N"` asked for no hits.
      [['--size', ''], /^sluice: --size "": expected a whole number from 0 to 10,000\n$/],
      // 400 nines are Infinity: OpenSearch got `now-Infinitys` and the command exited 1.
      [['--since', `${'9'.repeat(400)}d`], /^sluice: --since "9+d": the duration is too long/],
      [['--since', '99999999999999999999999d'], /^sluice: --since "9+d": the duration is too long/],
      // An empty pattern is `POST /_search`: every index of the cluster.
      [['--index', ''], /^sluice: --index "": expected an index pattern such as clickstream-\*\n$/],
    ];
    for (const [args, message] of cases) {
      const { code, stdout, stderr } = await search('clickstream', ...args);
      expect({ args, code, stdout }).toEqual({ args, code: 2, stdout: '' });
      expect(stderr).toMatch(message);
    }
    expect(seen).toHaveLength(0);
  });

  test('a query that starts with "-" (a NOT query) is read as an option: the error says to put -- before it, and --help says so', async () => {
    const dashed = await search('clickstream', '-event_type:click');
    expect(dashed.code).toBe(2);
    expect(dashed.stderr.split('\n')[0]).toBe("sluice: unknown option '-event_type:click'; a query that starts with '-' is read as options: put -- before it, e.g. npx sluice search clickstream -- '-event_type:click'");
    // A mistyped flag is still a mistyped flag, with commander's suggestion.
    expect((await search('clickstream', '--sise', '5')).stderr.split('\n')[0]).toBe("sluice: unknown option '--sise' (did you mean --size?)");
    expect(seen).toHaveLength(0);

    const afterDashes = await sluice('search', 'clickstream', '--endpoint-opensearch', url, '--', '-event_type:click');
    expect(afterDashes.code).toBe(0);
    expect(seen[0].body.query).toEqual({ query_string: { query: '-event_type:click', default_operator: 'AND', lenient: true } });

    const help = await sluice('search', '--help');
    expect(help.stdout.replace(/\s+/g, ' ')).toContain("a query that starts with '-' (NOT) goes after -- (see the examples)");
    expect(help.stdout).toContain("$ sluice search clickstream --since 1h -- '-event_type:click'");
  });

  test('a dashed query whose first letter is a short option (-c, or the program\'s -V) gets the same error, not that option', async () => {
    // Read as `-c ountry:FR` (a configuration override) and `-V` (print the version, exit 0) before.
    for (const query of ['-country:FR', '-c ountry:FR', '-cat*', '-Vendor:acme', '-country:(FR OR DE)', '-country', '-click']) {
      const { code, stdout, stderr } = await search('clickstream', query);
      expect({ query, code, stdout, error: stderr.split('\n')[0] }).toEqual({
        query, code: 2, stdout: '', error: `sluice: unknown option '${query}'; a query that starts with '-' is read as options: put -- before it, e.g. npx sluice search clickstream -- '-event_type:click'`,
      });
    }
    expect(seen).toHaveLength(0);
    expect((await sluice('search', 'clickstream', '--endpoint-opensearch', url, '--', '-country:FR')).code).toBe(0);
    expect(seen[0].body.query).toEqual({ query_string: { query: '-country:FR', default_operator: 'AND', lenient: true } });
  });

  test('real short options and option values that start with "-" read as before', async () => {
    for (const args of [['-c', 'env=dev'], ['-cenv=dev'], ['-c', 'opensearch.mode=existing', '-c', 'opensearch.endpoint=https://search.example:443', '-c', 'opensearch.domainArn=arn:aws:es:eu-west-1:123456789012:domain/logs']]) {
      expect({ args, code: (await search('clickstream', ...args)).code }).toEqual({ args, code: 0 });
    }
    // A value is the next argument, whatever it looks like: this index pattern is not a dashed query.
    expect((await search('clickstream', '--index', '-clickstream-*:x')).code).toBe(0);
    expect(decodeURIComponent(seen[3].url)).toMatch(/^\/-clickstream-\*:x\/_search\?/);
    expect(await sluice('search', '--help')).toMatchObject({ code: 0, stdout: expect.stringMatching(/^Usage: sluice search /) });
    expect((await sluice('-V')).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  test('--fields and --count-by name fields of the index, never what every object inherits', async () => {
    answer = () => ({ status: 200, body: hitsResponse([{ event_id: 'e-1', page: { path: '/a' } }]) });
    const shown = await search('clickstream', '--fields', 'event_id,constructor,toString,page.path.length');
    expect(shown.code).toBe(2);
    expect(shown.stderr).toMatch(/^sluice: --fields: constructor, toString, page\.path\.length are not fields of the clickstream index/);
    const counted = await search('clickstream', '--count-by', 'constructor');
    expect(counted.code).toBe(2);
    expect(counted.stderr).toMatch(/^sluice: --count-by constructor: not a field of the clickstream index/);
    // An object shows whole.
    const { code, stdout } = await search('clickstream', '--fields', 'event_id,page');
    expect(code).toBe(0);
    expect(stdout.split("\n")[2]).toMatch(/^e-1 +\{ "path": "\/a" \}/);
    // A key inside a map (flat_object) or a geo point's lat is a field of the document too (pipelines whose index has one).
    expect(displayFields(loadModel('app-events'), 'event_id, attributes.plan')).toEqual(['event_id', 'attributes.plan']);
    expect(displayFields(loadModel('iot'), 'location.lat,location')).toEqual(['location.lat', 'location']);
    expect(() => displayFields(loadModel('iot'), 'location.lat.x,device_id.x')).toThrow(/--fields: device_id\.x is not a field of the iot index/);
  });

  test('an OpenSearch that takes the connection and never answers: --timeout bounds the whole search, naming the endpoint', async () => {
    const hung = await hungServer();
    const port = hung.port;
    try {
      const startedAt = Date.now();
      const { code, stdout, stderr } = await sluice('search', 'clickstream', 'x', '--timeout', '400ms', '--endpoint-opensearch', `http://admin:s3cret@127.0.0.1:${port}`);
      const elapsedMs = Date.now() - startedAt;
      expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
      expect(stderr).toMatch(new RegExp(`^sluice: OpenSearch at http://admin:\\*\\*\\*@127\\.0\\.0\\.1:${port} gave no answer in [\\d.]+ m?s \\(--timeout 400 ms\\): is it up and not overloaded\\? Raise --timeout to wait longer\n$`));
      expect(stderr).not.toMatch(/s3cret/);
      expect(elapsedMs).toBeLessThan(10_000);
      // The request was given up, not left open: its connection closes (waited for; a busy machine may take a while to tell).
      expect(await hung.allClosed()).toBe(true);
    } finally {
      await hung.close();
    }
  });

  test('--timeout: the client\'s retries of a 502/503/504 still happen within it; a timeout that is not a duration is a usage error', async () => {
    let calls = 0;
    answer = () => (++calls <= 2 ? { status: 503, body: { error: 'busy' } } : { status: 200, body: hitsResponse([{ event_id: 'e-1' }]) });
    const { code, stdout } = await search('clickstream', '--timeout', '5s', '--json');
    expect(code).toBe(0);
    expect(seen).toHaveLength(3);
    expect(JSON.parse(stdout)).toMatchObject({ total: 1 });

    const bad = await search('clickstream', '--timeout', '0');
    expect(bad).toEqual({ code: 2, stdout: '', stderr: 'sluice: --timeout "0": the duration must be more than zero\n' });
    expect(seen).toHaveLength(3);

    const help = await sluice('search', '--help');
    expect(help.stdout.replace(/\s+/g, ' ')).toContain('--timeout <time> give up when OpenSearch (with --aws, first your AWS credentials\' source, then CloudFormation for the stack\'s outputs, then STS for its query role) has not answered by then, retries included (default: "30s")');
  });

  test('a --timeout longer than a timer can hold (24.8 days) waits for the answer: it neither gives up at once nor crashes', async () => {
    answer = () => ({ status: 200, body: hitsResponse([{ event_id: 'e-1' }]) });
    for (const timeout of ['30d', '60d']) {
      const { code, stdout, stderr } = await search('clickstream', '--timeout', timeout, '--json');
      expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
      expect(JSON.parse(stdout)).toMatchObject({ total: 1 });
    }
  });

  test('a refusal by the domain\'s IAM layer (403 with a Message body, as for es:ESHttpPost) is said in its words, not "Response Error"', async () => {
    const denial = 'User: arn:aws:iam::123456789012:user/x is not authorized to perform: es:ESHttpPost because no identity-based policy allows the es:ESHttpPost action';
    answer = () => ({ status: 403, body: { Message: denial } });
    const out = await search('clickstream', '--timeout', '3s');
    expect(out.code).toBe(2);
    expect(out.stderr).toBe(`sluice: OpenSearch refused the request (HTTP 403): ${denial}. Your identity needs access to the domain (its access policy or fine-grained access control).\n`);
    answer = () => ({ status: 403, body: { message: 'The security token included in the request is expired' } });
    expect((await search('clickstream', '--timeout', '3s')).stderr).toMatch(/^sluice: OpenSearch refused the request \(HTTP 403\): The security token included in the request is expired\./);
  });

  test('a throttled search (429) is asked again, after its Retry-After or a backoff, within --timeout', async () => {
    let calls = 0;
    const throttled = { status: 429, body: { error: { type: 'too_many_requests', reason: 'rejected execution' } } };
    answer = () => (++calls === 1 ? { ...throttled, headers: { 'retry-after': '0' } } : calls === 2 ? throttled : { status: 200, body: hitsResponse([{ event_id: 'e-1' }]) });
    const ok = await search('clickstream', '--json');
    expect(ok.code).toBe(0);
    expect(seen).toHaveLength(3);
    expect(JSON.parse(ok.stdout)).toMatchObject({ total: 1 });

    // Throttled past the deadline: the answer OpenSearch gave is the reason. Asked again at once, then told to wait
    // 30 s: the deadline falls in that wait however slow the machine (a busy one can take more than a 600 ms
    // --timeout for the first two requests), and ends it: no third request.
    seen.length = 0;
    calls = 0;
    answer = () => ({ ...throttled, headers: { 'retry-after': ++calls === 1 ? '0' : '30' } });
    const out = await search('clickstream', '--timeout', '3s');
    expect(out.code).toBe(1);
    expect(out.stderr).toBe('sluice: OpenSearch is throttling requests (HTTP 429: rejected execution), past the retries: try again later\n');
    expect(seen).toHaveLength(2);

    // A query error is not retried.
    seen.length = 0;
    answer = () => ({ status: 400, body: { error: { type: 'query_shard_exception', reason: 'bad query' } } });
    expect((await search('clickstream', 'a:(')).code).toBe(1);
    expect(seen).toHaveLength(1);
  });

  test('a password in OPENSEARCH_URL is sent as Basic auth, never printed', async () => {
    const withPassword = url.replace('http://', 'http://admin:s3cret@');
    const { code, stdout, stderr } = await sluice('search', 'clickstream', '--endpoint-opensearch', withPassword);
    expect(code).toBe(0);
    expect(seen[0].headers.authorization).toBe(`Basic ${Buffer.from('admin:s3cret').toString('base64')}`);
    expect(stdout + stderr).not.toMatch(/s3cret/);
    expect(stdout).toMatch(/in clickstream-\* · OpenSearch at http:\/\/admin:\*\*\*@127\.0\.0\.1:\d+ · /);

    const port = await freePort();
    const down = await sluice('search', 'clickstream', '--endpoint-opensearch', `http://admin:s3cret@127.0.0.1:${port}`);
    expect(down.code).toBe(2);
    expect(down.stderr).not.toMatch(/s3cret/);
    expect(down.stderr).toMatch(/fix OPENSEARCH_URL \/ --endpoint-opensearch \(http:\/\/admin:\*\*\*@127\.0\.0\.1:\d+\)/);
  });
});

describe('sluice search --aws', () => {
  // The caller's credentials come first (a stage of their own): from the environment, unless a test sets others.
  beforeEach(() => {
    process.env.AWS_ACCESS_KEY_ID = 'AKIDEXAMPLE';
    process.env.AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
  });

  test('signs requests with SigV4 for the es service in the stack\'s region, at the stack\'s endpoint', async () => {
    cfn.on(DescribeStacksCommand).resolves({
      Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [{ OutputKey: 'OpenSearchEndpoint', OutputValue: url }] }],
    });
    answer = () => ({ status: 200, body: hitsResponse([{ event_id: 'e-9' }]) });
    const { code, stdout } = await sluice('search', 'clickstream', 'event_id:e-9', '--aws', '--fields', 'event_id');
    expect(code).toBe(0);
    const auth = String(seen[0].headers.authorization);
    expect(auth).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/es\/aws4_request, SignedHeaders=.*host.*x-amz-date.*, Signature=[0-9a-f]{64}$/);
    expect(seen[0].headers['x-amz-content-sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(stdout).toMatch(/event_id\n─+\ne-9\n/);
    expect(stdout).toMatch(/OpenSearch domain http:\/\/127\.0\.0\.1:\d+ \(SigV4, eu-west-1\)/);
  });

  test('assumes the stack\'s OpenSearch query role when it has one', async () => {
    const sts = mockClient(STSClient);
    try {
      sts.on(AssumeRoleCommand).resolves({
        Credentials: { AccessKeyId: 'ASIAQUERYROLE', SecretAccessKey: 'secret', SessionToken: 'token', Expiration: new Date(Date.now() + 3_600_000) },
        AssumedRoleUser: { Arn: 'arn:aws:sts::123456789012:assumed-role/SluiceQueryRole/sluice-search', AssumedRoleId: 'AROA:sluice-search' },
      });
      cfn.on(DescribeStacksCommand).resolves({
        Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [
          { OutputKey: 'OpenSearchEndpoint', OutputValue: url },
          { OutputKey: 'OpenSearchQueryRoleArn', OutputValue: 'arn:aws:iam::123456789012:role/SluiceQueryRole' },
        ] }],
      });
      const { code, stdout } = await sluice('search', 'clickstream', '--aws', '--json');
      expect(code).toBe(0);
      expect(JSON.parse(stdout)).toMatchObject({ total: 0 });
      // Assumed once: before the search (under --timeout), and the search signs with those credentials.
      expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(1);
      expect(sts.commandCalls(AssumeRoleCommand)[0].args[0].input).toMatchObject({ RoleArn: 'arn:aws:iam::123456789012:role/SluiceQueryRole', RoleSessionName: 'sluice-search' });
      expect(String(seen[0].headers.authorization)).toMatch(/^AWS4-HMAC-SHA256 Credential=ASIAQUERYROLE\/\d{8}\/eu-west-1\/es\/aws4_request/);
      expect(seen[0].headers['x-amz-security-token']).toBe('token');
    } finally {
      sts.restore();
    }
  });

  test('an STS that never answers the query role\'s AssumeRole: --timeout bounds it, the message names STS and the role, and its request is given up', async () => {
    const hung = await hungServer();
    process.env.AWS_ENDPOINT_URL_STS = `http://127.0.0.1:${hung.port}`;
    try {
      cfn.on(DescribeStacksCommand).resolves({
        Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [
          { OutputKey: 'OpenSearchEndpoint', OutputValue: url },
          { OutputKey: 'OpenSearchQueryRoleArn', OutputValue: 'arn:aws:iam::123456789012:role/SluiceQueryRole' },
        ] }],
      });
      // Long enough for the STS client to load and connect on a busy machine (the hung STS must have been asked).
      const { code, stdout, stderr } = await sluice('search', 'clickstream', '--aws', '--timeout', '2s');
      expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
      expect(stderr).toMatch(/^sluice: STS gave no answer in [\d.]+ m?s \(--timeout 2\.0 s\) when asked to assume the stack's OpenSearch query role arn:aws:iam::123456789012:role\/SluiceQueryRole \(output OpenSearchQueryRoleArn\), whose credentials sign the search: check your network and AWS credentials, or raise --timeout to wait longer\n$/);
      expect(seen).toHaveLength(0);
      expect(hung.connections()).toBeGreaterThan(0);
      // The AssumeRole request was given up, not left open to hold the process after the message: its connection closes
      // (waited for; a busy machine may take a while to tell).
      expect(await hung.allClosed()).toBe(true);
    } finally {
      delete process.env.AWS_ENDPOINT_URL_STS;
      await hung.close();
    }
  });

  test('a credential source that never answers (a container credentials endpoint): --timeout bounds it, the message names that source, not CloudFormation, STS or OpenSearch', async () => {
    const hung = await hungServer();
    const saved = { ...process.env };
    process.env = onlyContainerCredentials(`http://127.0.0.1:${hung.port}/v1/credentials`);
    // The SDK's own request to the endpoint warns (console.warn) when it passes its 1 s requestTimeout, and waits on: kept quiet.
    const sdkWarning = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      // Without a query role the search signs as the caller; with one, STS is asked as the caller: both wait on the credentials.
      for (const queryRole of [[], [{ OutputKey: 'OpenSearchQueryRoleArn', OutputValue: 'arn:aws:iam::123456789012:role/SluiceQueryRole' }]]) {
        cfn.reset();
        cfn.on(DescribeStacksCommand).resolves({
          Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [{ OutputKey: 'OpenSearchEndpoint', OutputValue: url }, ...queryRole] }],
        });
        const asked = hung.connections();
        // Long enough for the SDK's chain to reach the endpoint on a busy machine (the hung endpoint must have been asked): 5 s, as a busy CI machine needs.
        const { code, stdout, stderr } = await sluice('search', 'clickstream', '--aws', '--timeout', '5s');
        expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
        expect(stderr).toMatch(new RegExp(`^sluice: the container credentials endpoint http://127\\.0\\.0\\.1:${hung.port}/v1/credentials \\(AWS_CONTAINER_CREDENTIALS_FULL_URI\\) gave no answer in [\\d.]+ m?s \\(--timeout 5\\.0 s\\) when asked for your AWS credentials, which sign every request of the search: `
          + 'check that it runs, or use other credentials \\(AWS_PROFILE, aws sso login, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY\\), or raise --timeout to wait longer\n$'));
        expect(hung.connections()).toBeGreaterThan(asked);
        // Nothing else was asked: every request would wait on these credentials.
        expect(cfn.commandCalls(DescribeStacksCommand)).toHaveLength(0);
        expect(seen).toHaveLength(0);
      }
      expect(sdkWarning).not.toHaveBeenCalled();
    } finally {
      sdkWarning.mockRestore();
      process.env = saved;
      await hung.close();
    }
  });

  test('the binary ends once it has named a credential source that never answers: the SDK\'s request there, which nothing can end, does not hold it', async () => {
    const hung = await hungServer();
    try {
      const child = spawn(process.execPath, [bin, 'search', 'clickstream', '--aws', '--region', 'eu-west-1', '--timeout', '5s'], {
        env: onlyContainerCredentials(`http://127.0.0.1:${hung.port}/v1/credentials`),
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
      // Not a wait: a guard, so a binary that never ends fails this test instead of outliving it.
      const guard = setTimeout(() => child.kill(), 40_000);
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve)).finally(() => clearTimeout(guard));
      expect(code).toBe(2);
      expect(stderr).toMatch(/^sluice: the container credentials endpoint http:\/\/127\.0\.0\.1:\d+\/v1\/credentials \(AWS_CONTAINER_CREDENTIALS_FULL_URI\) gave no answer in /m);
      expect(hung.connections()).toBeGreaterThan(0);
    } finally {
      await hung.close();
    }
  }, 60_000);

  test('with the query role assumed, an OpenSearch that never answers is named as what timed out, not STS', async () => {
    const sts = mockClient(STSClient);
    const hung = await hungServer();
    try {
      sts.on(AssumeRoleCommand).resolves({
        Credentials: { AccessKeyId: 'ASIAQUERYROLE', SecretAccessKey: 'secret', SessionToken: 'token', Expiration: new Date(Date.now() + 3_600_000) },
      });
      cfn.on(DescribeStacksCommand).resolves({
        Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [
          { OutputKey: 'OpenSearchEndpoint', OutputValue: `http://127.0.0.1:${hung.port}` },
          { OutputKey: 'OpenSearchQueryRoleArn', OutputValue: 'arn:aws:iam::123456789012:role/SluiceQueryRole' },
        ] }],
      });
      const { code, stdout, stderr } = await sluice('search', 'clickstream', '--aws', '--timeout', '500ms');
      expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
      expect(stderr).toMatch(/^sluice: OpenSearch domain http:\/\/127\.0\.0\.1:\d+ \(SigV4, eu-west-1, as SluiceQueryRole\) gave no answer in [\d.]+ m?s \(--timeout 500 ms\): is it up and not overloaded\? Raise --timeout to wait longer\n$/);
      expect(sts.commandCalls(AssumeRoleCommand)).toHaveLength(1);
    } finally {
      sts.restore();
      await hung.close();
    }
  });

  test('an STS that refuses the AssumeRole is named with the role, and nothing is sent to OpenSearch', async () => {
    const sts = mockClient(STSClient);
    try {
      sts.on(AssumeRoleCommand).rejects(Object.assign(new Error('User: arn:aws:iam::123456789012:user/ana is not authorized to perform: sts:AssumeRole'), { name: 'AccessDenied' }));
      cfn.on(DescribeStacksCommand).resolves({
        Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [
          { OutputKey: 'OpenSearchEndpoint', OutputValue: url },
          { OutputKey: 'OpenSearchQueryRoleArn', OutputValue: 'arn:aws:iam::123456789012:role/SluiceQueryRole' },
        ] }],
      });
      const { code, stdout, stderr } = await sluice('search', 'clickstream', '--aws');
      expect({ code, stdout, stderr }).toEqual({
        code: 2,
        stdout: '',
        stderr: 'sluice: STS denied access (AssumeRole of the stack\'s OpenSearch query role arn:aws:iam::123456789012:role/SluiceQueryRole (output OpenSearchQueryRoleArn)): '
          + 'User: arn:aws:iam::123456789012:user/ana is not authorized to perform: sts:AssumeRole. Your AWS identity needs permission for this call.\n',
      });
      expect(seen).toHaveLength(0);
    } finally {
      sts.restore();
    }
  });

  test('a CloudFormation that never gives the stack\'s outputs: --timeout bounds that too, naming what timed out', async () => {
    cfn.on(DescribeStacksCommand).callsFake(() => new Promise(() => undefined));
    const { code, stdout, stderr } = await sluice('search', 'clickstream', 'x', '--aws', '--region', 'eu-west-1', '--timeout', '300ms');
    expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
    expect(stderr).toMatch(/^sluice: CloudFormation gave no answer in [\d.]+ m?s \(--timeout 300 ms\) when asked for the outputs of stack sluice-dev \(eu-west-1\), which name the OpenSearch endpoint: check your network and AWS credentials, or raise --timeout to wait longer\n$/);
    expect(seen).toHaveLength(0);
  });

  test('a stack without an OpenSearch endpoint gets the same guidance', async () => {
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_COMPLETE', CreationTime: new Date(), Outputs: [] }] });
    const { code, stderr } = await sluice('search', 'clickstream', 'x', '--aws');
    expect(code).toBe(2);
    expect(stderr).toMatch(/no OpenSearch to ask/);
  });
});
