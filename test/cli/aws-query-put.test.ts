/**
 * `--aws` for put and query: no account is reachable here, so the SDK clients are mocked
 * (aws-sdk-client-mock) and the tests check the calls the CLI makes and their parameters.
 */
import {
  AthenaClient,
  BatchGetNamedQueryCommand,
  GetQueryExecutionCommand,
  GetQueryResultsCommand,
  ListNamedQueriesCommand,
  StartQueryExecutionCommand,
  StopQueryExecutionCommand,
} from '@aws-sdk/client-athena';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { FirehoseClient, PutRecordBatchCommand, PutRecordCommand } from '@aws-sdk/client-firehose';
import { KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { mockClient } from 'aws-sdk-client-mock';
import { ctrlCWhileCredentialsHang, hungServer, onlyContainerCredentials, sluice, type HungCredentialsRun } from './helpers';

const cfn = mockClient(CloudFormationClient);
const athena = mockClient(AthenaClient);
const kinesis = mockClient(KinesisClient);
const firehose = mockClient(FirehoseClient);

const OUTPUTS = {
  DataBucketName: 'sluice-dev-databucket-1a2b3c',
  GlueDatabaseName: 'sluice_dev',
  AthenaWorkGroupName: 'sluice-dev-wg',
  IotStreamName: 'sluice-dev-iot',
  AppEventsLakeDeliveryStreamName: 'sluice-dev-app-events-lake',
};

const savedEnv = { ...process.env };
beforeAll(() => {
  process.env.AWS_REGION = 'eu-west-1';
  // The caller's credentials are asked first (a stage of their own, before the mocked clients): from the environment,
  // unless a test sets others.
  process.env.AWS_ACCESS_KEY_ID = 'AKIDEXAMPLE';
  process.env.AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
});
afterAll(() => {
  process.env = savedEnv;
});
beforeEach(() => {
  for (const m of [cfn, athena, kinesis, firehose]) m.reset();
  cfn.on(DescribeStacksCommand).resolves({
    Stacks: [{
      StackName: 'sluice-dev',
      StackStatus: 'UPDATE_COMPLETE',
      CreationTime: new Date(),
      Outputs: Object.entries(OUTPUTS).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })),
    }],
  });
});

/** Athena that runs a query in one poll and answers with `pages` of rows (first page with the header row). */
function athenaAnswers(columns: Array<{ Name: string; Type: string; Precision?: number; Scale?: number }>, pages: string[][][], scanned = 1_572_864): void {
  athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-1' });
  athena.on(GetQueryExecutionCommand)
    .resolvesOnce({ QueryExecution: { Status: { State: 'RUNNING' }, Statistics: { DataScannedInBytes: 0 } } })
    .resolves({ QueryExecution: { Status: { State: 'SUCCEEDED' }, Statistics: { DataScannedInBytes: scanned } } });
  const toRow = (values: string[]) => ({ Data: values.map((v) => (v === 'NULL' ? {} : { VarCharValue: v })) });
  const chain = athena.on(GetQueryResultsCommand);
  pages.forEach((rows, i) => {
    const page = {
      ResultSet: {
        ResultSetMetadata: { ColumnInfo: columns },
        Rows: [...(i === 0 ? [toRow(columns.map((c) => c.Name))] : []), ...rows.map(toRow)],
      },
      NextToken: i < pages.length - 1 ? `page-${i + 1}` : undefined,
    };
    chain.resolvesOnce(page);
  });
}

describe('sluice query --aws (Athena)', () => {
  test('the time the query took counts on the monotonic clock: the wall clock set forward an hour once it started adds nothing to it', async () => {
    athenaAnswers([{ Name: 'n', Type: 'bigint' }], [[['3']]]);
    const realNow = Date.now.bind(Date);
    let setForward = 0;
    const wallClock = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + setForward);
    athena.on(StartQueryExecutionCommand).callsFake(async () => {
      setForward = 3_600_000;
      return { QueryExecutionId: 'q-1' };
    });
    try {
      const { code, stderr } = await sluice('query', '--aws', 'SELECT count(*) AS n FROM iot', '--json');
      expect(code).toBe(0);
      expect(setForward).toBe(3_600_000);
      // The statistics line ends with the time taken: milliseconds or seconds, not the hour the wall clock moved.
      expect(stderr).toMatch(/^1 row · scanned .* · query q-1 · \d+(\.\d)? m?s\n$/);
    } finally {
      wallClock.mockRestore();
    }
  });

  test('starts the query in the stack\'s workgroup and database, polls, pages through the results', async () => {
    athenaAnswers([{ Name: 'event_type', Type: 'varchar' }, { Name: 'events', Type: 'bigint' }], [[['alert', '3'], ['telemetry', '40']], [['heartbeat', 'NULL']]]);
    const { code, stdout, stderr } = await sluice('query', '--aws', 'SELECT event_type, count(*) AS events FROM iot GROUP BY 1', '--json');
    expect(code).toBe(0);
    expect(cfn.commandCalls(DescribeStacksCommand)[0].args[0].input).toEqual({ StackName: 'sluice-dev' });
    expect(athena.commandCalls(StartQueryExecutionCommand)[0].args[0].input).toEqual({
      QueryString: 'SELECT event_type, count(*) AS events FROM iot GROUP BY 1',
      WorkGroup: 'sluice-dev-wg',
      QueryExecutionContext: { Database: 'sluice_dev' },
    });
    expect(athena.commandCalls(GetQueryExecutionCommand)).toHaveLength(2);
    expect(athena.commandCalls(GetQueryResultsCommand).map((c) => c.args[0].input.NextToken)).toEqual([undefined, 'page-1']);
    expect(JSON.parse(stdout)).toEqual([
      { event_type: 'alert', events: 3 },
      { event_type: 'telemetry', events: 40 },
      { event_type: 'heartbeat', events: null },
    ]);
    expect(stderr).toMatch(/3 rows · scanned 1\.5 MiB \(≈ \$0\.000050 at \$5\/TB, 10 MB minimum\) · query q-1 · /);
  });

  test('a table for people, with bytes scanned under it', async () => {
    athenaAnswers([{ Name: 'n', Type: 'integer' }], [[['7']]], 25_000_000);
    const { code, stdout } = await sluice('query', '--aws', '--stack', 'sluice-prod', '--region', 'us-east-1', 'SELECT 7 AS n');
    expect(code).toBe(0);
    expect(cfn.commandCalls(DescribeStacksCommand)[0].args[0].input).toEqual({ StackName: 'sluice-prod' });
    expect(await cfn.commandCalls(DescribeStacksCommand)[0].thisValue.config.region()).toBe('us-east-1');
    expect(stdout).toMatch(/n\n─\n7\n\n1 row · scanned 23\.8 MiB/);
  });

  test('a double column prints grouped with one number of decimals, a decimal with its scale, an integer as it is', async () => {
    athenaAnswers(
      [{ Name: 'year', Type: 'integer' }, { Name: 'amount', Type: 'double' }, { Name: 'price', Type: 'decimal', Precision: 10, Scale: 2 }],
      [[['2026', '1000000.0', '12.00'], ['2026', '999999.99', '3.50']]],
    );
    const { code, stdout } = await sluice('query', '--aws', 'SELECT year, amount, price FROM transactions');
    expect(code).toBe(0);
    expect(stdout.split('\n').slice(0, 4)).toEqual([
      'year        amount  price',
      '────  ────────────  ─────',
      '2026  1,000,000.00  12.00',
      '2026    999,999.99   3.50',
    ]);
  });

  test('a failed query exits 1 with Athena\'s reason', async () => {
    athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-2' });
    athena.on(GetQueryExecutionCommand).resolves({
      QueryExecution: { Status: { State: 'FAILED', AthenaError: { ErrorMessage: "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved" } } },
    });
    const { code, stderr } = await sluice('query', '--aws', 'SELECT nope FROM iot');
    expect(code).toBe(1);
    expect(stderr).toBe("sluice: Athena query q-2 failed: COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved\n");
  });

  test('--progress while Athena runs; Ctrl-C stops the query in Athena too and exits 130', async () => {
    athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-3' });
    let polls = 0;
    let stopped = false;
    athena.on(GetQueryExecutionCommand).callsFake(async () => {
      polls++;
      const answer = stopped
        ? { QueryExecution: { Status: { State: 'CANCELLED', StateChangeReason: 'Query was cancelled by user' }, Statistics: { DataScannedInBytes: 3_145_728 } } }
        : { QueryExecution: { Status: { State: 'RUNNING' }, Statistics: { DataScannedInBytes: polls * 1_048_576 } } };
      // The user presses Ctrl-C once progress has shown (the fourth poll is two seconds in): the fifth poll ends it.
      if (polls === 5) process.emit('SIGINT', 'SIGINT');
      return answer;
    });
    athena.on(StopQueryExecutionCommand).callsFake(async () => {
      stopped = true;
      return {};
    });
    const sigintListeners = process.listenerCount('SIGINT');
    const { code, stdout, stderr } = await sluice('query', '--aws', 'SELECT count(*) FROM iot', '--progress');
    expect(code).toBe(130);
    expect(stdout).toBe('');
    expect(athena.commandCalls(StopQueryExecutionCommand).map((c) => c.args[0].input)).toEqual([{ QueryExecutionId: 'q-3' }]);
    expect(stderr).toMatch(/^Athena running · \d+ s · 4\.0 MiB scanned · q-3\n/);
    expect(stderr).toMatch(/\nsluice: interrupted \(Ctrl-C\): Athena query q-3 was stopped\n$/);
    expect(process.listenerCount('SIGINT')).toBe(sigintListeners);
  });

  test('Ctrl-C while the query is being started stops it once it has an id; while results are paged, ends there: exit 130 both', async () => {
    athena.on(StartQueryExecutionCommand).callsFake(async () => {
      process.emit('SIGINT', 'SIGINT');
      return { QueryExecutionId: 'q-4' };
    });
    athena.on(StopQueryExecutionCommand).resolves({});
    const starting = await sluice('query', '--aws', 'SELECT 1');
    expect(starting).toMatchObject({ code: 130, stdout: '', stderr: 'sluice: interrupted (Ctrl-C): Athena query q-4 was stopped\n' });
    expect(athena.commandCalls(StopQueryExecutionCommand).map((c) => c.args[0].input)).toEqual([{ QueryExecutionId: 'q-4' }]);
    expect(athena.commandCalls(GetQueryExecutionCommand)).toHaveLength(0);

    athena.reset();
    athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-5' });
    athena.on(GetQueryExecutionCommand).resolves({ QueryExecution: { Status: { State: 'SUCCEEDED' } } });
    athena.on(StopQueryExecutionCommand).resolves({});
    athena.on(GetQueryResultsCommand).callsFake(async () => {
      process.emit('SIGINT', 'SIGINT');
      return { ResultSet: { ResultSetMetadata: { ColumnInfo: [{ Name: 'n', Type: 'integer' }] }, Rows: [{ Data: [{ VarCharValue: 'n' }] }, { Data: [{ VarCharValue: '1' }] }] }, NextToken: 'more' };
    });
    const paging = await sluice('query', '--aws', 'SELECT n FROM t');
    expect(paging).toMatchObject({ code: 130, stdout: '', stderr: 'sluice: interrupted (Ctrl-C): Athena query q-5 was stopped\n' });
    expect(athena.commandCalls(GetQueryResultsCommand)).toHaveLength(1);

    // Athena refusing the stop is said, not taken for done.
    athena.on(StopQueryExecutionCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }));
    const unconfirmed = await sluice('query', '--aws', 'SELECT n FROM t');
    expect(unconfirmed).toMatchObject({ code: 130, stderr: 'sluice: interrupted (Ctrl-C): Athena did not confirm stopping query q-5; check it in the Athena console\n' });
  });

  test('polling that fails for good (Athena throttling past the retries) stops the query and names it, with the service', async () => {
    athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-7' });
    athena.on(GetQueryExecutionCommand).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $fault: 'client', $retryable: { throttling: true } }));
    athena.on(StopQueryExecutionCommand).resolves({});
    const { code, stderr } = await sluice('query', '--aws', 'SELECT 1');
    expect(code).toBe(1);
    expect(stderr).toBe('sluice: Athena is throttling requests (workgroup sluice-dev-wg) (ThrottlingException: Rate exceeded), past the retries: try again later; Athena query q-7 was stopped\n');
    expect(athena.commandCalls(StopQueryExecutionCommand).map((c) => c.args[0].input)).toEqual([{ QueryExecutionId: 'q-7' }]);
  });

  test('--max-rows filled by the first page asks for no second one', async () => {
    athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-8' });
    athena.on(GetQueryExecutionCommand).resolves({ QueryExecution: { Status: { State: 'SUCCEEDED' } } });
    athena.on(GetQueryResultsCommand).resolves({
      ResultSet: { ResultSetMetadata: { ColumnInfo: [{ Name: 'n', Type: 'integer' }] }, Rows: [{ Data: [{ VarCharValue: 'n' }] }, { Data: [{ VarCharValue: '1' }] }, { Data: [{ VarCharValue: '2' }] }] },
      NextToken: 'more',
    });
    const { code, stdout } = await sluice('query', '--aws', 'SELECT n FROM t', '--max-rows', '2', '--json');
    expect(code).toBe(0);
    expect(athena.commandCalls(GetQueryResultsCommand)).toHaveLength(1);
    expect(JSON.parse(stdout)).toEqual([{ n: 1 }, { n: 2 }]);
  });

  test('--saved runs a named query of the workgroup, in its database', async () => {
    athena.on(ListNamedQueriesCommand)
      .resolvesOnce({ NamedQueryIds: ['a', 'b'], NextToken: 'more' })
      .resolves({ NamedQueryIds: ['c'] });
    athena.on(BatchGetNamedQueryCommand).resolves({
      NamedQueries: [
        { Name: 'iot: events per event_type per hour (today, UTC)', QueryString: 'SELECT 1', Database: 'sluice_dev', NamedQueryId: 'a' },
        { Name: 'iot: failed records by error code', QueryString: 'SELECT 2 AS failed', Database: 'sluice_dev', NamedQueryId: 'b' },
        { Name: 'iot: top device_id by events (today, UTC)', QueryString: 'SELECT 3', Database: 'sluice_dev', NamedQueryId: 'c' },
      ],
    });
    athenaAnswers([{ Name: 'failed', Type: 'integer' }], [[['2']]]);
    const { code, stdout } = await sluice('query', '--aws', '--saved', 'failed records', '--json');
    expect(code).toBe(0);
    expect(athena.commandCalls(ListNamedQueriesCommand).map((c) => c.args[0].input)).toEqual([
      { WorkGroup: 'sluice-dev-wg', NextToken: undefined, MaxResults: 50 },
      { WorkGroup: 'sluice-dev-wg', NextToken: 'more', MaxResults: 50 },
    ]);
    expect(athena.commandCalls(BatchGetNamedQueryCommand)[0].args[0].input).toEqual({ NamedQueryIds: ['a', 'b', 'c'] });
    expect(athena.commandCalls(StartQueryExecutionCommand)[0].args[0].input).toMatchObject({ QueryString: 'SELECT 2 AS failed', QueryExecutionContext: { Database: 'sluice_dev' } });
    expect(JSON.parse(stdout)).toEqual([{ failed: 2 }]);
  });

  test('a stack that does not exist, or no credentials, are usage errors', async () => {
    cfn.on(DescribeStacksCommand).rejects(Object.assign(new Error('Stack with id sluice-dev does not exist'), { name: 'ValidationError' }));
    const missing = await sluice('query', '--aws', 'SELECT 1');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('sluice: stack "sluice-dev" does not exist in eu-west-1: deploy it with `npx cdk deploy`, or name yours with --stack NAME (or --region)\n');

    cfn.on(DescribeStacksCommand).rejects(Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }));
    const noCredentials = await sluice('query', '--aws', 'SELECT 1');
    expect(noCredentials.code).toBe(2);
    expect(noCredentials.stderr).toMatch(/^sluice: no AWS credentials found: configure them as for the AWS CLI/);
  });

  test('a stack still being created is not used', async () => {
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: 'sluice-dev', StackStatus: 'CREATE_IN_PROGRESS', CreationTime: new Date() }] });
    const { code, stderr } = await sluice('query', '--aws', 'SELECT 1');
    expect(code).toBe(2);
    expect(stderr).toMatch(/stack "sluice-dev" is CREATE_IN_PROGRESS/);
  });

  test('a stack a change set created and none executed is said never deployed; one whose update rollback failed is used, with a warning', async () => {
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: 'sluice-dev', StackStatus: 'REVIEW_IN_PROGRESS', CreationTime: new Date() }] });
    const review = await sluice('query', '--aws', 'SELECT 1');
    expect([review.code, review.stderr]).toEqual([2, 'sluice: stack "sluice-dev" was never deployed (REVIEW_IN_PROGRESS: a change set created it and none was executed): deploy it with `npx cdk deploy`\n']);
    cfn.on(DescribeStacksCommand).resolves({ Stacks: [{ StackName: 'sluice-dev', StackStatus: 'UPDATE_ROLLBACK_FAILED', CreationTime: new Date(), Outputs: [] }] });
    athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-1' });
    athena.on(GetQueryExecutionCommand).resolves({ QueryExecution: { Status: { State: 'SUCCEEDED' } } });
    athena.on(GetQueryResultsCommand).resolves({ ResultSet: { ResultSetMetadata: { ColumnInfo: [{ Name: 'n', Type: 'integer' }] }, Rows: [{ Data: [{ VarCharValue: 'n' }] }, { Data: [{ VarCharValue: '1' }] }] } });
    const failed = await sluice('query', '--aws', 'SELECT 1');
    expect(failed.code).toBe(0);
    expect(failed.stderr).toContain('sluice: warning: stack "sluice-dev" is UPDATE_ROLLBACK_FAILED: its resources may not match its outputs. Continue the rollback '
      + '(aws cloudformation continue-update-rollback --stack-name sluice-dev) and deploy again\n');
  });
});

describe('sluice put --aws', () => {
  test('Kinesis PutRecords to the stream the stack names; only the records a call failed are sent again', async () => {
    kinesis.on(PutRecordsCommand)
      .resolvesOnce({ FailedRecordCount: 1, Records: [{ SequenceNumber: '1', ShardId: 's' }, { ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: 'Rate exceeded' }, { SequenceNumber: '3', ShardId: 's' }] })
      .resolves({ FailedRecordCount: 0, Records: [{ SequenceNumber: '4', ShardId: 's' }] });
    const { code, stdout } = await sluice('put', 'iot', '--aws', '--count', '3');
    expect(code).toBe(0);
    const calls = kinesis.commandCalls(PutRecordsCommand).map((c) => c.args[0].input);
    expect(calls).toHaveLength(2);
    expect(calls[0].StreamName).toBe('sluice-dev-iot');
    expect(calls[0].Records).toHaveLength(3);
    for (const r of calls[0].Records!) expect(r.PartitionKey).toBe((JSON.parse(Buffer.from(r.Data!).toString()) as { device_id: string }).device_id);
    expect(calls[1].Records).toEqual([calls[0].Records![1]]);
    expect(stdout).toMatch(/accepted 3 · failed 0 · retried 1/);
  });

  test('Firehose PutRecord for one record, PutRecordBatch (≤ 500 each) for more, to the DirectPut stream', async () => {
    firehose.on(PutRecordCommand).resolves({ RecordId: 'r' });
    firehose.on(PutRecordBatchCommand).callsFake((input: { Records: unknown[] }) => ({ FailedPutCount: 0, RequestResponses: input.Records.map(() => ({ RecordId: 'r' })) }));
    expect((await sluice('put', 'app-events', '--aws', '--count', '1')).code).toBe(0);
    expect(firehose.commandCalls(PutRecordCommand).map((c) => c.args[0].input.DeliveryStreamName)).toEqual(['sluice-dev-app-events-lake']);
    expect((await sluice('put', 'app-events', '--aws', '--count', '600')).code).toBe(0);
    expect(firehose.commandCalls(PutRecordBatchCommand).map((c) => c.args[0].input.Records?.length)).toEqual([500, 100]);
  });

  test('stopped mid-run on AWS (credentials expired after a first call): the summary, and no word of the twin', async () => {
    firehose.on(PutRecordBatchCommand)
      .callsFakeOnce((input: { Records: unknown[] }) => ({ FailedPutCount: 0, RequestResponses: input.Records.map(() => ({ RecordId: 'r' })) }))
      .rejects(Object.assign(new Error('The security token included in the request is expired'), { name: 'ExpiredTokenException', $fault: 'client' }));
    const { code, stdout, stderr } = await sluice('put', 'app-events', '--aws', '--count', '300', '--batch-size', '100');
    expect(code).toBe(1);
    expect(stdout).toMatch(/accepted 100 · failed 100/);
    expect(stderr).toMatch(/^sluice: Firehose delivery stream sluice-dev-app-events-lake refused a call mid-run \(your AWS credentials have expired \(ExpiredTokenException\).*; 100 of the 300 records were never sent\. The summary counts what was sent until then; fix what stopped it and send again\.\n$/);
    expect(stderr).not.toMatch(/twin/);
  });

  test('a --file whose batch takes three calls, the second refused for good: the records of the third, which never went out, count as never sent, not as refused', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-big-'));
    try {
      // Fifteen records of 700 KB: five fill a 4 MiB PutRecordBatch, so the batch takes three calls.
      const file = path.join(dir, 'big.ndjson');
      fs.writeFileSync(file, Array.from({ length: 15 }, (_, i) => JSON.stringify({ event_id: `e-${i}`, pad: 'x'.repeat(700_000) })).join('\n'));
      firehose.on(PutRecordBatchCommand)
        .callsFakeOnce((input: { Records: unknown[] }) => ({ FailedPutCount: 0, RequestResponses: input.Records.map(() => ({ RecordId: 'r' })) }))
        .rejects(Object.assign(new Error('The security token included in the request is expired'), { name: 'ExpiredTokenException', $fault: 'client' }));
      const { code, stdout } = await sluice('put', 'app-events', '--aws', '--file', file, '--json');
      expect(code).toBe(1);
      expect(firehose.commandCalls(PutRecordBatchCommand).map((c) => c.args[0].input.Records?.length)).toEqual([5, 5]);
      expect(JSON.parse(stdout)).toMatchObject({ sent: 10, accepted: 5, failed: 5, failedByCode: { ExpiredTokenException: 5 }, neverSent: 5 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--verify asks Athena for the ids it sent, within their partitions, until all are there', async () => {
    firehose.on(PutRecordBatchCommand).callsFake((input: { Records: unknown[] }) => ({ FailedPutCount: 0, RequestResponses: input.Records.map(() => ({ RecordId: 'r' })) }));
    const queries: string[] = [];
    athena.on(StartQueryExecutionCommand).callsFake((input: { QueryString: string }) => {
      queries.push(input.QueryString);
      return { QueryExecutionId: `q-${queries.length}` };
    });
    athena.on(GetQueryExecutionCommand).resolves({ QueryExecution: { Status: { State: 'SUCCEEDED' }, Statistics: { DataScannedInBytes: 10 } } });
    // First poll: two of the five ids are there; second poll: the rest.
    athena.on(GetQueryResultsCommand).callsFake(() => {
      const sql = queries[queries.length - 1];
      const ids = [...(/IN \(([^)]*)\)$/.exec(sql)?.[1] ?? '').matchAll(/'([^']+)'/g)].map((m) => m[1]);
      const found = queries.length === 1 ? ids.slice(0, 2) : ids;
      return { ResultSet: { ResultSetMetadata: { ColumnInfo: [{ Name: 'id', Type: 'varchar' }] }, Rows: [{ Data: [{ VarCharValue: 'id' }] }, ...found.map((id) => ({ Data: [{ VarCharValue: id }] }))] } };
    });
    const { code, stdout } = await sluice('put', 'app-events', '--aws', '--count', '5', '--verify', '--poll', '10ms');
    expect(code).toBe(0);
    expect(queries).toHaveLength(2);
    expect(queries[0]).toMatch(/^SELECT DISTINCT "event_id" AS id FROM "sluice_dev"\."app_events" WHERE \(\("event_type" = '[a-z]+' AND "year" = \d{4} AND "month" = \d+ AND "day" = \d+ AND "hour" = \d+\)( OR .*)?\) AND "sluice"\."arrival_time" >= TIMESTAMP '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}' AND "event_id" IN \(('[0-9a-f-]{36}'(, )?){5}\)$/);
    expect([...queries[1].matchAll(/'[0-9a-f-]{36}'/g)]).toHaveLength(3);
    expect(athena.commandCalls(StartQueryExecutionCommand)[0].args[0].input.WorkGroup).toBe('sluice-dev-wg');
    expect(stdout).toMatch(/verify lake \(sluice_dev\.app_events\): 5\/5 after/);
    expect(stdout).toMatch(/PASS: 5 of 5 records queryable/);
  });

  test('--verify that cannot run (Athena fails its query) still reports the records accepted: --json prints its JSON, text says verify could not run', async () => {
    firehose.on(PutRecordBatchCommand).callsFake((input: { Records: unknown[] }) => ({ FailedPutCount: 0, RequestResponses: input.Records.map(() => ({ RecordId: 'r' })) }));
    athena.on(StartQueryExecutionCommand).resolves({ QueryExecutionId: 'q-1' });
    athena.on(GetQueryExecutionCommand).resolves({ QueryExecution: { Status: { State: 'FAILED', AthenaError: { ErrorMessage: 'HIVE_BAD_DATA: malformed Parquet file' } } } });
    const failed = 'Athena query q-1 failed: HIVE_BAD_DATA: malformed Parquet file';
    const json = await sluice('put', 'app-events', '--aws', '--count', '5', '--verify', '--poll', '10ms', '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ sent: 5, accepted: 5, verify: { passed: false, error: failed, results: [] } });
    expect(json.stderr).toBe(`sluice: 5 of 5 records accepted; verify could not run: ${failed}\n`);
    const text = await sluice('put', 'app-events', '--aws', '--count', '5', '--verify', '--poll', '10ms');
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/accepted 5 · failed 0/);
    expect(text.stderr).toBe(`sluice: 5 of 5 records accepted; verify could not run: ${failed}\n`);
    // Interrupted while sending, then unable to verify: the signal's status, and the message says both.
    firehose.reset();
    let calls = 0;
    firehose.on(PutRecordBatchCommand).callsFake((input: { Records: unknown[] }) => {
      if (++calls === 1) process.emit('SIGINT', 'SIGINT');
      return { FailedPutCount: 0, RequestResponses: input.Records.map(() => ({ RecordId: 'r' })) };
    });
    const interrupted = await sluice('put', 'app-events', '--aws', '--count', '10', '--batch-size', '5', '--verify', '--poll', '10ms');
    expect(interrupted.code).toBe(130);
    expect(interrupted.stderr).toMatch(new RegExp(`^sluice: interrupted \\(Ctrl-C\\) after [^:]+: 5 of 10 records sent; 5 of 5 records accepted; verify could not run: ${failed}\n$`));
  });
});

describe('query --aws and put --aws: the caller\'s credentials first, named when their source hangs', () => {
  /** The run's endpoint, as the CLI names it. */
  const endpointOf = (run: HungCredentialsRun) => `the container credentials endpoint http://127.0.0.1:${run.port}/v1/credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI)`;

  /** One notice naming the source while it hangs, then Ctrl-C: exit 130 at once, the source named, nothing else said. */
  function expectNoticeThenInterrupted(run: HungCredentialsRun, command: 'query' | 'put'): void {
    const notice = `sluice: still waiting for your AWS credentials from ${endpointOf(run)}… (Ctrl-C to stop)\n`;
    expect(run.beforeCtrlC.split('\n').filter((line) => /still waiting/.test(line))).toHaveLength(1);
    expect(run.beforeCtrlC).toContain(notice);
    // The SDK's own warning that its request passed its 1 s requestTimeout (and waits on) is not shown: the notice says it.
    expect(run.stderr).not.toMatch(/requestTimeout/);
    expect(run.code).toBe(130);
    expect(run.stderr.slice(run.beforeCtrlC.length)).toBe(`sluice: interrupted (Ctrl-C) while waiting for your AWS credentials from ${endpointOf(run)}, which sign every request of the ${command}: `
      + 'check that it runs, or use other credentials (AWS_PROFILE, aws sso login, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)\n');
    // The SDK's request to the endpoint is left waiting (nothing can end it); the process does not wait for it.
    expect(run.exitMs).toBeLessThan(5_000);
  }

  // No deadline: the notice comes after SLUICE_CREDENTIALS_NOTICE_MS (5 s when unset), long enough here for the chain to
  // have reached the endpoint on a busy machine.
  test('query --aws says once what it waits on, and Ctrl-C ends the wait (exit 130) naming the source', async () => {
    expectNoticeThenInterrupted(await ctrlCWhileCredentialsHang(['query', '--aws', 'SELECT 1'], 2_000), 'query');
  }, 60_000);

  test('put --aws (no --verify, so no deadline) does the same', async () => {
    expectNoticeThenInterrupted(await ctrlCWhileCredentialsHang(['put', 'app-events', '--aws', '--count', '1'], 2_000), 'put');
  }, 60_000);

  test('put --aws --verify: --timeout bounds the wait, and the message names the source, not CloudFormation or Firehose', async () => {
    const hung = await hungServer();
    const saved = { ...process.env };
    process.env = { ...onlyContainerCredentials(`http://127.0.0.1:${hung.port}/v1/credentials`), AWS_REGION: 'eu-west-1' };
    // The SDK's own request to the endpoint warns (console.warn) when it passes its 1 s requestTimeout, and waits on: kept quiet.
    const sdkWarning = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      // Long enough for the SDK's chain to reach the endpoint on a busy machine, as search's test of the same waits.
      const { code, stdout, stderr } = await sluice('put', 'app-events', '--aws', '--count', '1', '--verify', '--timeout', '5s');
      expect(sdkWarning).not.toHaveBeenCalled();
      expect({ code, stdout }).toEqual({ code: 2, stdout: '' });
      expect(stderr).toMatch(new RegExp(`^sluice: the container credentials endpoint http://127\\.0\\.0\\.1:${hung.port}/v1/credentials \\(AWS_CONTAINER_CREDENTIALS_FULL_URI\\) gave no answer in [\\d.]+ m?s \\(--timeout 5\\.0 s\\) when asked for your AWS credentials, which sign every request of the put: `
        + 'check that it runs, or use other credentials \\(AWS_PROFILE, aws sso login, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY\\), or raise --timeout to wait longer\n$'));
      expect(hung.connections()).toBeGreaterThan(0);
      expect(cfn.commandCalls(DescribeStacksCommand)).toHaveLength(0);
      expect(firehose.commandCalls(PutRecordCommand)).toHaveLength(0);
    } finally {
      sdkWarning.mockRestore();
      process.env = saved;
      await hung.close();
    }
  });

  test('a credential_process that hangs is ended with the command, by --timeout or by a Ctrl-C sent to sluice alone', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-process-'));
    try {
      // Through a shell, as the SDK runs it: the shell and the process it starts must both end.
      const script = path.join(home, 'hang.js');
      fs.writeFileSync(script, "require('fs').appendFileSync(process.argv[2], process.pid + '\\n'); setInterval(() => undefined, 60000);\n");
      const pids = path.join(home, 'pids');
      fs.writeFileSync(path.join(home, 'config'), `[profile hung]\ncredential_process = "${process.execPath}" "${script}" "${pids}"\n`);
      const env: NodeJS.ProcessEnv = { ...onlyContainerCredentials('http://127.0.0.1:1/unused'), AWS_CONFIG_FILE: path.join(home, 'config'), AWS_PROFILE: 'hung', AWS_REGION: 'eu-west-1' };
      delete env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
      const alive = (pid: number): boolean => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      const startedPids = (): number[] => (fs.existsSync(pids) ? fs.readFileSync(pids, 'utf8').split('\n').filter(Boolean).map(Number) : []);
      const run = async (argv: string[], ctrlC: boolean): Promise<{ code: number | null; stderr: string; left: number[] }> => {
        const child = spawn(process.execPath, [path.resolve(__dirname, '../../bin/sluice.js'), ...argv], { env, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
        const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
        const before = startedPids().length;
        // Guards, not waits: a binary that never starts the process, or never ends, fails the test instead of outliving it.
        for (const deadline = Date.now() + 30_000; ctrlC && startedPids().length === before && child.exitCode === null && Date.now() < deadline;) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        if (ctrlC) child.kill('SIGINT');
        const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
        const code = await exited.finally(() => clearTimeout(guard));
        const started = startedPids().slice(before);
        expect(started).toHaveLength(1);
        for (const deadline = Date.now() + 10_000; started.some(alive) && Date.now() < deadline;) await new Promise((resolve) => setTimeout(resolve, 20));
        return { code, stderr, left: started.filter(alive) };
      };
      const source = 'the credential_process of AWS profile hung';

      const timedOut = await run(['put', 'app-events', '--aws', '--count', '1', '--verify', '--timeout', '3s'], false);
      expect(timedOut.stderr).toContain(`sluice: ${source} gave no answer in `);
      expect({ code: timedOut.code, left: timedOut.left }).toEqual({ code: 2, left: [] });

      const interrupted = await run(['query', '--aws', 'SELECT 1'], true);
      expect(interrupted.stderr).toContain(`sluice: interrupted (Ctrl-C) while waiting for your AWS credentials from ${source}`);
      expect({ code: interrupted.code, left: interrupted.left }).toEqual({ code: 130, left: [] });
    } finally {
      for (const pid of fs.existsSync(path.join(home, 'pids')) ? fs.readFileSync(path.join(home, 'pids'), 'utf8').split('\n').filter(Boolean).map(Number) : []) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Ended, as it should be.
        }
      }
      fs.rmSync(home, { recursive: true, force: true });
    }
  }, 90_000);

  test('an expired SSO login is said as such before anything is asked of CloudFormation or Athena', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-sso-'));
    const saved = { ...process.env };
    try {
      const startUrl = 'https://example.awsapps.com/start';
      fs.writeFileSync(path.join(home, 'config'), `[profile dev]\nsso_start_url = ${startUrl}\nsso_region = us-east-1\nsso_account_id = 123456789012\nsso_role_name = Dev\n`);
      fs.mkdirSync(path.join(home, '.aws', 'sso', 'cache'), { recursive: true });
      fs.writeFileSync(path.join(home, '.aws', 'sso', 'cache', `${createHash('sha1').update(startUrl).digest('hex')}.json`),
        JSON.stringify({ accessToken: 'token', expiresAt: '2020-01-01T00:00:00Z', region: 'us-east-1', startUrl }));
      process.env = {
        PATH: saved.PATH, HOME: home, AWS_REGION: 'eu-west-1', AWS_PROFILE: 'dev', AWS_EC2_METADATA_DISABLED: 'true',
        AWS_CONFIG_FILE: path.join(home, 'config'), AWS_SHARED_CREDENTIALS_FILE: path.join(home, 'no-credentials'),
      };
      const { code, stdout, stderr } = await sluice('query', '--aws', 'SELECT 1');
      expect({ code, stdout, stderr }).toEqual({ code: 2, stdout: '', stderr: 'sluice: your AWS SSO session has expired (AWS profile dev): run aws sso login --profile dev and try again\n' });
      expect(cfn.commandCalls(DescribeStacksCommand)).toHaveLength(0);
      expect(athena.commandCalls(StartQueryExecutionCommand)).toHaveLength(0);
    } finally {
      process.env = saved;
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
