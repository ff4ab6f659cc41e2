import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { resourceNames } from '../../lib/config';
import { bulkDocuments } from '../../lib/cli/search-backend';
import { kinesisClient } from '../../lib/local/aws-clients';
import { FaultInjector } from '../../lib/local/faults';
import { readSchema } from '../../lib/schema';
import { createRng } from '../../lib/schema/sample';
import { config as cliConfig, sluice, sluiceAfresh } from '../cli/helpers';
import { configWith, dlqMessages, eventIdOf, lakeColumn, removeDir, repeated, sampleRecordBytes, sorted, startFaultTwin, type FaultTwin } from './helpers';

/**
 * A record one of a pipeline's two delivery streams failed (its transform invocation threw) reached the other. Both
 * streams read the same Kinesis stream, so `sluice replay` re-putting it there would deliver it to both: a second lake
 * row, or a second OpenSearch document. Replay keeps those messages, said why, and re-puts only the records that
 * neither destination holds.
 */
describe('faults: replaying records that failed for one destination only', () => {
  const config = configWith({ clickstream: { shards: 1, destinations: ['lake', 'search'] } });
  let run: FaultTwin | undefined;

  afterAll(async () => {
    await run?.stop();
    removeDir(run?.dataDir);
  }, 60_000);

  test('a record the lake has (its search delivery failed) or OpenSearch has (its lake delivery failed) is kept; one both failed is re-put once', async () => {
    let failing: 'lake' | 'search' | 'both' | 'none' = 'none';
    const faults = new FaultInjector({ transform: { decide: (inv) => (failing === 'both' || inv.destination === failing ? 'throw' : undefined) } });
    run = await startFaultTwin(config, { faults });
    const kinesis = kinesisClient(run.twin.endpoints.kinesis);
    const rng = createRng(17);
    const phases = { search: sampleRecordBytes(readSchema('clickstream'), rng, 5), lake: sampleRecordBytes(readSchema('clickstream'), rng, 3), both: sampleRecordBytes(readSchema('clickstream'), rng, 2) };
    let lastPut = 0;
    for (const phase of ['search', 'lake', 'both'] as const) {
      failing = phase;
      lastPut = Date.now();
      const out = await kinesis.send(new PutRecordsCommand({
        StreamName: resourceNames(config, 'clickstream').stream,
        Records: phases[phase].map((data) => ({ Data: data, PartitionKey: eventIdOf(data) })),
      }));
      expect(out.FailedRecordCount ?? 0).toBe(0);
      await run.twin.settle(60_000);
    }
    failing = 'none';
    const ids = (phase: keyof typeof phases) => sorted(phases[phase].map(eventIdOf));
    const searchDocs = () => [...bulkDocuments(run!.dataDir, 'clickstream')].map(({ doc }) => String(doc.event_id));
    expect(sorted(await lakeColumn(run.dataDir, config, 'clickstream'))).toEqual(sorted([...ids('search')]));
    expect(sorted(searchDocs())).toEqual(ids('lake'));
    expect(dlqMessages(run.dataDir, config)).toHaveLength(5 + 3 + 2 * 2);

    const endpoints = ['--data-dir', run.dataDir, '--endpoint-firehose', run.twin.endpoints.firehose, '--endpoint-kinesis', run.twin.endpoints.kinesis];
    const outcomes = (stdout: string) => {
      const report = JSON.parse(stdout) as { messages: Array<{ outcome: string; reason: string; dedupeKey: string }> };
      const byId = new Map(dlqMessages(run!.dataDir, config).map((m) => [m.dedupeKey, eventIdOf(Buffer.from(m.rawData!, 'base64'))]));
      const of = (outcome: string) => sorted(report.messages.filter((m) => m.outcome === outcome).map((m) => byId.get(m.dedupeKey)!));
      return { of, reasons: (outcome: string) => report.messages.filter((m) => m.outcome === outcome).map((m) => m.reason) };
    };

    // Until the other stream's buffer interval (the twin's, as the CLI's configuration has it) and the twin's margin
    // (5 s) have passed since a failure arrived, replay cannot tell a one-sided one (as the first of a pair read looks)
    // from a record still buffered there (see the --aws tests): wait them out.
    const holds = (cliConfig.local.bufferIntervalSeconds + 5) * 1000 + 500;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, lastPut + holds - Date.now())));

    // A dry run says the same, and puts nothing.
    const dry = await sluice('replay', '--dry-run', '--json', ...endpoints);
    expect(dry.code).toBe(1);
    const judged = outcomes(dry.stdout);
    expect(judged.of('not-replayable')).toEqual(sorted([...ids('search'), ...ids('lake')]));
    expect(judged.of('would-replay')).toEqual(ids('both'));

    // A new process, as a user's next command is: the dry run's hold on the messages it read is gone.
    const result = await sluiceAfresh('replay', '--json', ...endpoints);
    expect([result.code, result.stderr]).toEqual([1, 'sluice: 8 of 12 dead-letter messages not replayed; they stay in the queue\n']);
    const replayed = outcomes(result.stdout);
    expect(replayed.of('replayed')).toEqual(ids('both'));
    expect(replayed.of('duplicate')).toEqual(ids('both'));
    expect(replayed.of('not-replayable')).toEqual(sorted([...ids('search'), ...ids('lake')]));
    const reasons = replayed.reasons('not-replayable');
    expect(reasons.filter((r) => /^the lake has this record \(event_id .+\); only its search delivery failed it \(Lambda\.FunctionError\), and re-putting it would add a second lake row$/.test(r))).toHaveLength(5);
    expect(reasons.filter((r) => /^OpenSearch has this record \(event_id .+\); only its lake delivery failed it \(Lambda\.FunctionError\), and re-putting it would add a second document$/.test(r))).toHaveLength(3);
    await run.twin.settle(60_000);

    // Each record once in each destination it reached.
    const lake = await lakeColumn(run.dataDir, config, 'clickstream');
    expect(repeated(lake)).toEqual([]);
    expect(sorted(lake)).toEqual(sorted([...ids('search'), ...ids('both')]));
    expect(repeated(searchDocs())).toEqual([]);
    expect(sorted(searchDocs())).toEqual(sorted([...ids('lake'), ...ids('both')]));

    // The kept messages stay in the queue, and the next run keeps them again.
    const again = await sluiceAfresh('replay', '--json', ...endpoints);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout).outcomes).toEqual({ 'not-replayable': 8 });
    expect(outcomes(again.stdout).of('not-replayable')).toEqual(sorted([...ids('search'), ...ids('lake')]));
  }, 240_000);
});
