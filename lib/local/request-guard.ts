/**
 * The local servers take requests from SDKs, CLIs and scripts on this machine; a web page in the user's browser
 * must not be able to drive them. A page's cross-origin request carries an `Origin` header (and a custom header
 * such as X-Amz-Target makes the browser send an OPTIONS preflight first); a DNS-rebinding page's requests name
 * the attacker's host in `Host`. AWS SDKs and CLIs send neither.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';

/** A loopback name in a Host header: 127.x.x.x, localhost or [::1], with an optional port. */
const LOOPBACK_HOST = /^(?:127(?:\.\d{1,3}){3}|localhost|\[::1\])(?::\d{1,5})?$/i;

/**
 * Why a request looks like a web page's, or undefined. `checkHost` when the server listens on loopback only
 * (bound to another address, the user chose to serve other machines, whose names cannot be known here).
 * Plain JavaScript on purpose: kinesis-mock's bootstrap embeds its source.
 */
export function webPageRequest(method: string, header: (name: string) => string | undefined, checkHost: boolean): string | undefined {
  if (method === 'OPTIONS') return 'a CORS preflight (OPTIONS)';
  const origin = header('origin');
  if (origin !== undefined) return `a request from a web page (Origin ${origin.slice(0, 100)})`;
  const host = header('host');
  // Loopback addresses, and names no one can register for a rebinding page: one label (localhost, this machine's
  // name in /etc/hosts) or under .localhost.
  if (checkHost && host !== undefined && !/^(?:127(?:\.\d{1,3}){3}|\[::1\]|[a-z0-9-]+|[a-z0-9.-]+\.localhost)(?::\d{1,5})?$/i.test(host)) {
    return `a request for another host (Host ${host.slice(0, 100)})`;
  }
  return undefined;
}

/** Whether a server bound to `host` serves this machine alone. */
export function isLoopbackBinding(host: string): boolean {
  return LOOPBACK_HOST.test(host) || host === '::1';
}

/** `webPageRequest` for a Node request. */
export function webPageProblem(req: IncomingMessage, checkHost: boolean): string | undefined {
  const headers: IncomingHttpHeaders = req.headers;
  return webPageRequest(req.method ?? '', (name) => {
    const value = headers[name];
    return Array.isArray(value) ? value.join(', ') : value;
  }, checkHost);
}

/**
 * The AWS JSON error body every local server answers a refused request with. Plain JavaScript on purpose:
 * kinesis-mock's bootstrap embeds its source too.
 */
export function webPageRefusal(problem: string): string {
  return JSON.stringify({ __type: 'AccessDeniedException', message: `refused ${problem}: this local server takes requests from programs on this machine, not from web pages` });
}

/** Answers a refused request 403 and closes its connection; the body is not read. */
export function refuseWebPageRequest(res: ServerResponse, problem: string): void {
  const text = webPageRefusal(problem);
  res.writeHead(403, { 'Content-Type': 'application/x-amz-json-1.1', 'Content-Length': String(Buffer.byteLength(text)), Connection: 'close' });
  res.end(text);
}
