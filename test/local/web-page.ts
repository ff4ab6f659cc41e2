/** What a web page in the user's browser would send a local server, written raw, for the request-guard tests. */
import * as net from 'node:net';

export interface RawResponse {
  readonly status: number;
  /** Header block, lower-cased. */
  readonly headers: string;
  readonly body: string;
}

/**
 * Writes each of `writes` as it is on one connection, and reads `count` responses, or what came before the server
 * closed the connection. Between writes it pauses (so a request head can arrive in two pieces), or with
 * `oneByOne` waits for the answer to the previous write (a client that does not pipeline).
 */
export function rawExchange(port: number, writes: readonly string[], count: number, oneByOne = false): Promise<RawResponse[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    const responses: RawResponse[] = [];
    const done = () => {
      socket.destroy();
      resolve(responses);
    };
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      for (;;) {
        const end = data.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = data.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (data.length < end + 4 + length) return;
        responses.push({ status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body: data.subarray(end + 4, end + 4 + length).toString('utf8') });
        data = data.subarray(end + 4 + length);
        if (responses.length === count) return done();
      }
    });
    socket.on('close', done);
    socket.on('error', (err) => (responses.length > 0 ? done() : reject(err)));
    socket.on('connect', async () => {
      for (const [i, text] of writes.entries()) {
        if (i > 0 && oneByOne) while (responses.length < i && !socket.destroyed) await new Promise((r) => setTimeout(r, 10));
        else if (i > 0) await new Promise((r) => setTimeout(r, 50));
        if (!socket.destroyed) socket.write(text);
      }
    });
  });
}

/** One AWS JSON POST as an SDK sends it (signed with made-up credentials); `extra` header lines end with \r\n. */
export function awsJsonRequest(port: number, target: string, extra = '', host = `127.0.0.1:${port}`): string {
  // DynamoDB speaks JSON 1.0, Kinesis and Firehose 1.1.
  const version = target.startsWith('DynamoDB') ? '1.0' : '1.1';
  const service = target.startsWith('DynamoDB') ? 'dynamodb' : target.startsWith('Kinesis') ? 'kinesis' : 'firehose';
  const auth = `Authorization: AWS4-HMAC-SHA256 Credential=local/20261203/us-east-1/${service}/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=${'0'.repeat(64)}\r\nX-Amz-Date: 20261203T000000Z\r\n`;
  return `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-amz-json-${version}\r\nX-Amz-Target: ${target}\r\n${auth}${extra}Content-Length: 2\r\n\r\n{}`;
}

/**
 * The web-page cases every local server refuses, each on a connection of its own, and an SDK-like request then a
 * page's on one kept-alive connection. Returns the statuses and whether any answer allowed a cross-origin read.
 */
export async function webPageCases(port: number, target: string): Promise<Record<string, unknown>> {
  const preflight = `OPTIONS / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-amz-target,content-type\r\n\r\n`;
  const fromPage = awsJsonRequest(port, target, 'Origin: https://evil.example\r\n');
  const cut = fromPage.indexOf('Origin') + 3;
  const results = {
    preflight: await rawExchange(port, [preflight], 1),
    origin: await rawExchange(port, [fromPage], 1),
    originInTwoPieces: await rawExchange(port, [fromPage.slice(0, cut), fromPage.slice(cut)], 1),
    rebinding: await rawExchange(port, [awsJsonRequest(port, target, '', `rebind.evil.example:${port}`)], 1),
    sdkThenPage: await rawExchange(port, [awsJsonRequest(port, target), fromPage], 2, true),
  };
  const all = Object.values(results).flat();
  return {
    ...Object.fromEntries(Object.entries(results).map(([name, answers]) => [name, answers.map((a) => a.status)])),
    refusals: all.filter((a) => a.status === 403).every((a) => /"__type":"AccessDeniedException"/.test(a.body) && /not from web pages/.test(a.body)),
    allowsCrossOriginRead: all.some((a) => a.headers.includes('access-control-allow-origin')),
  };
}

/** What `webPageCases` gives for a server that refuses web pages and answers the SDK-like request `sdkStatus`. */
export function refusedWebPages(sdkStatus: number): Record<string, unknown> {
  return { preflight: [403], origin: [403], originInTwoPieces: [403], rebinding: [403], sdkThenPage: [sdkStatus, 403], refusals: true, allowsCrossOriginRead: false };
}
