import { memoryGrowth, MEMORY_LIMITS, runSoak, soakProblems, SOAK_FAULTS, type SoakReport } from './soak';

/**
 * The soak test at the size `npm test` can afford (`npm run soak` sends 1,000,000): 50,000 records,
 * 5 % bad and 1 % blank, through Firehose PutRecordBatch and Kinesis PutRecords, with transform,
 * storage and DynamoDB faults switched on. Checked through the public surfaces: the twin's counters,
 * DuckDB over the Parquet files (LocalAthena), the DLQ file.
 */
describe('soak: 50,000 records with faults switched on', () => {
  let report: SoakReport;

  beforeAll(async () => {
    report = await runSoak({ records: 50_000, kinesisRecords: 1_000, faults: SOAK_FAULTS, samples: 40 });
  }, 240_000);

  test('every record is accounted for exactly: sent = Parquet rows + failed + dropped by rule', () => {
    for (const p of report.pipelines) {
      expect({ pipeline: p.pipeline, accounted: p.rows + p.failed + p.dropped }).toEqual({ pipeline: p.pipeline, accounted: p.sent });
      // And each record in the place its content sends it to: the retried faults changed nothing.
      expect({ pipeline: p.pipeline, rows: p.rows, failed: p.failed, dropped: p.dropped })
        .toEqual({ pipeline: p.pipeline, rows: p.expected.row, failed: p.expected.failed, dropped: p.expected.dropped });
    }
    expect(report.pipelines.reduce((a, p) => a + p.sent, 0)).toBe(50_000);
    // Every failed record has its DLQ message, once.
    expect(report.dlqMessages).toBe(report.pipelines.reduce((a, p) => a + p.failed, 0));
  });

  test('no event id twice in the Parquet, and exactly the valid records\' ids', () => {
    for (const p of report.pipelines) {
      expect(p.parquet.rows).toBe(p.rows);
      expect(p.parquet.distinctIds).toBe(p.parquet.rows);
      expect(p.parquet.idChecksum).toBe(p.parquet.expectedIdChecksum);
    }
  });

  test('the faults were really met', () => {
    const f = report.faults!;
    expect(Object.values(f.transform).reduce((a, n) => a + n, 0)).toBeGreaterThan(0);
    expect(f.storage + f.dynamo).toBeGreaterThan(0);
  });

  test('memory stays flat: live heap and RSS from the second quarter of the run to its end', () => {
    const growth = memoryGrowth(report.memory);
    expect(growth.heapBytes).toBeLessThanOrEqual(MEMORY_LIMITS.heapBytes);
    expect(growth.rssBytes).toBeLessThanOrEqual(MEMORY_LIMITS.rssBytes);
    expect(soakProblems(report)).toEqual([]);
  });
});
