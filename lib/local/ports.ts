/**
 * Ports for the local servers: free ones to pick, and whether one can be listened on.
 */
import * as fs from 'fs';
import * as net from 'net';
import { LOOPBACK } from './endpoint';

/**
 * A port that is free right now on `host`, chosen below the OS's ephemeral range: the OS hands ports
 * from that range to outgoing connections on its own, and one could take a port picked there (as
 * listen(0) picks) before the emulator binds it. Where Linux does not say where that range starts, it is
 * taken to start at 32768 (macOS and Windows start theirs at 49152); should it start too low to leave
 * room below it, the OS picks.
 */
export async function freePort(host: string = LOOPBACK): Promise<number> {
  const top = Math.min(EPHEMERAL_FLOOR, ephemeralRangeStart()) - 1;
  const bottom = Math.max(1024, top - 12_000);
  for (let attempt = 0; attempt < 50 && top - bottom >= 1000; attempt++) {
    const port = bottom + Math.floor(Math.random() * (top - bottom + 1));
    if ((await listenProblem(host, port)) === undefined) return port;
  }
  const server = net.createServer();
  await listen(server, 0, host);
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Where ephemeral ranges start by default: 32768 on Linux, 49152 on macOS and Windows (IANA's). */
const EPHEMERAL_FLOOR = 32_768;

/** The first port of Linux's ephemeral range; EPHEMERAL_FLOOR where it cannot be read. */
export function ephemeralRangeStart(): number {
  try {
    const start = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(start) && start > 0 ? start : EPHEMERAL_FLOOR;
  } catch {
    return EPHEMERAL_FLOOR;
  }
}

/** Why nothing can listen on host:port now (EADDRINUSE, EADDRNOTAVAIL, ENOTFOUND, …), or undefined when it can. */
export async function listenProblem(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  const probe = net.createServer();
  try {
    await listen(probe, port, host);
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return undefined;
}

/** server.listen as a promise: rejects with the listen error (EADDRINUSE, …). */
export function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
}
