/**
 * StackOutputs.load against a CloudFormation endpoint on loopback that takes the connection and never answers:
 * the caller's signal ends the read, and the HTTP request with it.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { StackOutputs } from '../../lib/cli/stack-outputs';

let hung: Server;
let endpoint: string;
const sockets = new Set<Socket>();

beforeAll(async () => {
  // Reads the request, never answers.
  hung = createServer((socket) => {
    socket.resume();
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(hung.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => hung.close(() => resolve()));
});

const hungClient = () => new CloudFormationClient({
  endpoint,
  region: 'eu-west-1',
  credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
  maxAttempts: 1,
});

test('a read that has not answered when the signal aborts rejects with the signal\'s reason, and its request is given up', async () => {
  const client = hungClient();
  try {
    // Aborted once the request is in the hung endpoint's hands, so it is the abort that ends it (a read the signal did
    // not end would hang until Jest's timeout).
    const controller = new AbortController();
    const loading = StackOutputs.load(client, 'sluice-dev', controller.signal).catch((err: unknown) => err);
    for (const deadline = Date.now() + 10_000; sockets.size === 0 && Date.now() < deadline;) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sockets.size).toBe(1);
    controller.abort(new Error('gave up'));
    expect(await loading).toBe(controller.signal.reason);
    // Its connection closes (waited for; a busy machine may take a while to tell).
    for (const deadline = Date.now() + 10_000; sockets.size > 0 && Date.now() < deadline;) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sockets.size).toBe(0);
  } finally {
    client.destroy();
  }
});

test('a signal that has already aborted sends nothing', async () => {
  const client = hungClient();
  const send = jest.spyOn(client, 'send');
  try {
    const controller = new AbortController();
    controller.abort(new Error('gave up'));
    await expect(StackOutputs.load(client, 'sluice-dev', controller.signal)).rejects.toThrow('gave up');
    expect(send).not.toHaveBeenCalled();
  } finally {
    client.destroy();
  }
});
