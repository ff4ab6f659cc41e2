/** The rule that keeps web pages off the local servers: what it refuses, and what it must never refuse. */
import { isLoopbackBinding, webPageRequest } from '../../lib/local/request-guard';

const headers = (h: Record<string, string>) => (name: string) => h[name];

test.each([
  ['127.0.0.1:4573', undefined],
  ['127.0.0.1', undefined],
  ['127.1.2.3:4568', undefined],
  ['localhost:4569', undefined],
  ['LOCALHOST', undefined],
  ['[::1]:4573', undefined],
  ['devbox:4573', undefined], // this machine's name, from /etc/hosts: no one can register a one-label name
  ['api.localhost:4573', undefined],
  ['rebind.evil.example:4573', 'a request for another host (Host rebind.evil.example:4573)'],
  ['10.0.0.5:4573', 'a request for another host (Host 10.0.0.5:4573)'],
  ['0.0.0.0:4573', 'a request for another host (Host 0.0.0.0:4573)'],
  ['localhost.:4573', 'a request for another host (Host localhost.:4573)'],
])('Host %s on a loopback server: %s', (host, expected) => {
  expect(webPageRequest('POST', headers({ host }), true)).toBe(expected);
});

test('a server bound beyond loopback (--host) takes any Host; a page is refused there too', () => {
  expect(webPageRequest('POST', headers({ host: '10.0.0.5:4573' }), false)).toBeUndefined();
  expect(webPageRequest('POST', headers({ host: '10.0.0.5:4573', origin: 'https://evil.example' }), false)).toBe('a request from a web page (Origin https://evil.example)');
  expect(webPageRequest('OPTIONS', headers({ host: '127.0.0.1' }), false)).toBe('a CORS preflight (OPTIONS)');
});

test('what an SDK sends passes: no Origin, a loopback Host, or no Host at all (HTTP/1.0)', () => {
  expect(webPageRequest('POST', headers({ host: '127.0.0.1:4568', 'content-type': 'application/x-amz-json-1.1' }), true)).toBeUndefined();
  expect(webPageRequest('GET', headers({}), true)).toBeUndefined();
});

test.each([['127.0.0.1', true], ['127.0.0.2', true], ['localhost', true], ['::1', true], ['0.0.0.0', false], ['::', false], ['192.168.1.10', false]])(
  'binding %s serves this machine alone: %s', (host, expected) => {
    expect(isLoopbackBinding(host)).toBe(expected);
  });
