import type { RunningService } from '../../lib/local/emulators';
import { superviseKinesis } from '../../lib/local/twin';

/** A stand-in for a kinesis-mock child: `die(how)` ends it as the process's exit would. */
function fakeService(pid: number): RunningService & { die(how: string): void; stopped: boolean } {
  let die!: (how: string) => void;
  const exited = new Promise<string>((resolve) => (die = resolve));
  const service = {
    name: 'kinesis-mock', endpoint: 'http://127.0.0.1:4568', port: 4568, pid, exited, stopped: false,
    die: (how: string) => die(how),
    stop: async () => {
      service.stopped = true;
      die('signal SIGTERM.');
    },
  };
  return service;
}

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

describe('superviseKinesis', () => {
  test('starts kinesis-mock again when it dies, says so, and recreates the streams; a SIGKILL warns of loss, a SIGTERM does not', async () => {
    const services = [fakeService(1), fakeService(2), fakeService(3)];
    let started = 0;
    const log: string[] = [];
    let recreated = 0;
    const kinesis = await superviseKinesis(async () => services[started++], { log: (l) => log.push(l), afterRestart: async () => void recreated++ });
    expect(kinesis.available()).toBe(true);

    services[0].die('signal SIGKILL. It wrote nothing.');
    await tick(10);
    expect(started).toBe(2);
    expect(recreated).toBe(1);
    expect(kinesis.available()).toBe(true);
    expect(log[0]).toMatch(/^sluice: kinesis-mock \(pid 1\) exited while the twin ran; starting it again on http:\/\/127\.0\.0\.1:4568\. Records put to a stream in its last 5 s may be lost/);
    expect(log[0]).toMatch(/It ended with signal SIGKILL\. It wrote nothing\.$/);
    expect(log[1]).toBe('sluice: kinesis-mock is back on http://127.0.0.1:4568 (pid 2).');

    services[1].die('exit code 143. It wrote nothing.');
    await tick(10);
    expect(log[2]).toMatch(/It saved its streams on the way out; readers go on/);
    await kinesis.stop();
    expect(services[2].stopped).toBe(true);
  });

  test('one that dies while its streams are created again is not called back, and is started again in turn (no crash)', async () => {
    const services = [fakeService(1), fakeService(2), fakeService(3)];
    let started = 0;
    const log: string[] = [];
    let release!: () => void;
    const firstRecreation = new Promise<void>((resolve) => (release = resolve));
    let recreations = 0;
    const kinesis = await superviseKinesis(async () => services[started++], {
      log: (l) => log.push(l),
      afterRestart: async () => {
        if (recreations++ === 0) {
          await firstRecreation;
          throw new Error('socket hang up');
        }
      },
    });
    services[0].die('signal SIGKILL.');
    await tick(10);
    expect(started).toBe(2);
    // The second dies while the twin creates its streams: the exit comes first, then the failed request.
    services[1].die('signal SIGKILL.');
    await tick(10);
    expect(started).toBe(3);
    release();
    await tick(10);
    expect(log.filter((l) => l.includes('is back on'))).toEqual(['sluice: kinesis-mock is back on http://127.0.0.1:4568 (pid 3).']);
    expect(kinesis.available()).toBe(true);
    await kinesis.stop();
  });

  test('gives up after five failed starts, says the Kinesis pipelines are stalled, and is then not available; stop() still ends', async () => {
    const first = fakeService(1);
    let calls = 0;
    const log: string[] = [];
    const kinesis = await superviseKinesis(async () => {
      if (calls++ === 0) return first;
      throw new Error('port 4568 on 127.0.0.1 is already in use');
    }, { log: (l) => log.push(l), afterRestart: async () => undefined });
    first.die('signal SIGKILL.');
    await tick(10);
    expect(kinesis.available()).toBe(false);
    for (const deadline = Date.now() + 15_000; !log.at(-1)?.includes('did not start again') && Date.now() < deadline;) await tick(50);
    expect(calls).toBe(6);
    expect(log.at(-1)).toBe('sluice: kinesis-mock did not start again (port 4568 on 127.0.0.1 is already in use); Kinesis-sourced pipelines are stalled until the twin is restarted.');
    expect(kinesis.available()).toBe(false);
    await kinesis.stop();
  }, 20_000);

  test('stop() during failing restarts ends them: no further start is tried', async () => {
    const first = fakeService(1);
    let calls = 0;
    let failInHand!: () => void;
    const kinesis = await superviseKinesis(async () => {
      if (calls++ === 0) return first;
      await new Promise<void>((resolve) => (failInHand = resolve));
      throw new Error('not ready');
    }, { log: () => undefined, afterRestart: async () => undefined });
    first.die('signal SIGKILL.');
    for (let i = 0; i < 100 && calls < 2; i++) await tick(10);
    expect(calls).toBe(2);
    let stopped = false;
    const stopping = kinesis.stop().then(() => (stopped = true));
    await tick(50);
    // It waits for the start in hand, and once that fails tries no other: stopped with none of the four more started.
    expect(stopped).toBe(false);
    failInHand();
    await stopping;
    expect(calls).toBe(2);
    // Nor later: a pause between tries left running would start one after stop() returned.
    await tick(1500);
    expect(calls).toBe(2);
  });
});
