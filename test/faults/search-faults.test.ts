import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { resourceNames } from '../../lib/config';
import { readSchema } from '../../lib/schema';
import { createRng, sampleRecord } from '../../lib/schema/sample';
import { kinesisClient } from '../../lib/local/aws-clients';
import {
  configWith, dlqMessages, errorLines, lakeColumn, rawOf, removeDir, repeated, sorted, startFakeOpenSearch, startFaultTwin,
  type FakeOpenSearch, type FaultTwin,
} from './helpers';

/**
 * OpenSearch answers 429, 5xx and partial bulk failures. Firehose retries the failed documents
 * (only those) for the retry duration; documents refused (4xx) or still failing when it runs out are
 * backed up as AmazonOpenSearchService-failed error objects, which reach the DLQ. The lake, a
 * separate delivery stream, is unaffected.
 */
describe('faults: OpenSearch throttles and fails', () => {
  const RETRY_SECONDS = 9;
  const config = configWith(
    { clickstream: { shards: 1, destinations: ['lake', 'search'] } },
    [`pipelines.clickstream.search.retrySeconds=${RETRY_SECONDS}`],
  );
  let run: FaultTwin | undefined;
  let search: FakeOpenSearch | undefined;

  afterAll(async () => {
    await run?.stop();
    await search?.close();
    removeDir(run?.dataDir);
  }, 60_000);

  test('retries within the retry duration, backs up what still failed, and the lake has every record once', async () => {
    const schema = readSchema('clickstream');
    const rng = createRng(5);
    const records = Array.from({ length: 300 }, () => sampleRecord(schema, rng));
    const ids = records.map((r) => String(r.event_id));
    // Per document: flaky ones are throttled twice then indexed; refused ones are a mapping error
    // (never retried); down ones answer 503 until the retry duration runs out.
    const flaky = new Set(ids.filter((_, i) => i % 10 === 1));
    const refused = new Set(ids.filter((_, i) => i % 10 === 2));
    const down = new Set(ids.filter((_, i) => i % 30 === 3));
    search = await startFakeOpenSearch({
      // The first two bulk requests fail whole: throttled, then a server error.
      request: (n) => (n === 0 ? 429 : n === 1 ? 503 : undefined),
      item: (id, attempt) => (flaky.has(id) && attempt < 2 ? 429 : refused.has(id) ? 400 : down.has(id) ? 503 : 201),
    });
    run = await startFaultTwin(config, { openSearchUrl: search.url });

    const kinesis = kinesisClient(run.twin.endpoints.kinesis);
    const out = await kinesis.send(new PutRecordsCommand({
      StreamName: resourceNames(config, 'clickstream').stream,
      Records: records.map((r) => ({ Data: Buffer.from(JSON.stringify(r)), PartitionKey: String(r.user_id) })),
    }));
    expect(out.FailedRecordCount ?? 0).toBe(0);
    await run.twin.settle(45_000);

    // Indexed: every document but the refused and the down ones, each answered 2xx exactly once.
    const indexed = [...search.answers].filter(([, statuses]) => statuses.some((s) => s < 300)).map(([id]) => id);
    for (const [id, statuses] of search.answers) expect([id, statuses.filter((s) => s < 300).length]).toEqual([id, statuses.some((s) => s < 300) ? 1 : 0]);
    const failed = new Set([...refused, ...down]);
    expect(sorted(indexed)).toEqual(sorted(ids.filter((id) => !failed.has(id))));
    // Only failed documents were sent again: the flaky ones three times, the refused once.
    for (const id of flaky) expect(search.answers.get(id)).toEqual([429, 429, 201]);
    for (const id of refused) expect(search.answers.get(id)).toEqual([400]);

    // Backed up: one AmazonOpenSearchService-failed line per failed document, with the document.
    const lines = errorLines(run.dataDir, run.twin.bucket, 'search-backup/clickstream/');
    const eventOf = (l: (typeof lines)[number]) => (JSON.parse(rawOf(l)) as { event_id: string }).event_id;
    expect(sorted(lines.map(eventOf))).toEqual(sorted(failed));
    // The document id is Firehose's (FIREHOSE_DEFAULT): one per record, not the event's id.
    expect(new Set(lines.map((l) => l.esDocumentId)).size).toBe(lines.length);
    for (const l of lines) {
      expect(l.key).toMatch(/^search-backup\/clickstream\/AmazonOpenSearchService-failed\/\d{4}\/\d{2}\/\d{2}\/\d{2}\//);
      expect(l.esDocumentId).not.toBe(eventOf(l));
      expect(l.esIndexName).toMatch(/^clickstream-\d{4}-\d{2}-\d{2}$/);
      expect(l.errorCode).toBe(refused.has(eventOf(l)) ? '400' : '503');
    }
    // The down documents were retried for the retry duration, not longer.
    const downLines = lines.filter((l) => down.has(eventOf(l)));
    expect(Math.min(...downLines.map((l) => Number(l.attemptsMade)))).toBeGreaterThanOrEqual(3);
    for (const id of down) expect(search.answers.get(id)!.every((s) => s === 503)).toBe(true);
    for (const id of down) {
      const at = search.answeredAt.get(id)!;
      expect(at[at.length - 1] - at[0]).toBeLessThan(RETRY_SECONDS * 1000);
    }

    // One DLQ message per backed-up document.
    const dlq = dlqMessages(run.dataDir, config);
    expect(dlq.map((m) => m.errorType)).toEqual(lines.map(() => 'AmazonOpenSearchService-failed'));
    expect(repeated(dlq.map((m) => m.dedupeKey))).toEqual([]);

    // The lake has every record exactly once.
    const lake = await lakeColumn(run.dataDir, config, 'clickstream');
    expect(repeated(lake)).toEqual([]);
    expect(sorted(lake)).toEqual(sorted(ids));

    const [summary] = run.twin.summary();
    expect(summary.search).toMatchObject({ received: 300, deliveredRows: 300 - failed.size, searchFailed: failed.size, pending: 0 });
    expect(summary.lake).toMatchObject({ received: 300, deliveredRows: 300, pending: 0 });
    expect(search.requests.slice(0, 2).map((r) => r.status)).toEqual([429, 503]);
  }, 60_000);
});
