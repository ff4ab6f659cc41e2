/** The address the twin's servers bind by default: loopback only. */
export const LOOPBACK = '127.0.0.1';

/** The URL a client on this machine dials for a server bound to `host`: a wildcard address becomes loopback. */
export function endpointFor(host: string, port: number): string {
  // Clients cannot usefully dial a wildcard address; loopback reaches the same server.
  const dialHost = host === '0.0.0.0' || host === '::' ? LOOPBACK : host;
  return `http://${dialHost.includes(':') ? `[${dialHost}]` : dialHost}:${port}`;
}
