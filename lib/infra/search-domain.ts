import { Aws, CfnDeletionPolicy, Duration, Fn, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as opensearch from 'aws-cdk-lib/aws-opensearchservice';
import { Construct } from 'constructs';
import { domainSizeProblems, zoneCount } from '../config/opensearch';
import { acknowledgeRule, acknowledgeWildcards } from './nag';
import { assertValidProps } from './errors';

/** A domain Sluice creates: a small single-node dev size unless configured otherwise. */
export interface NewDomainOptions {
  /** 3–28 lower-case letters, digits and hyphens; its ARN is built from it for the access policy. */
  readonly domainName: string;
  /** e.g. "OpenSearch_2.19" */
  readonly engineVersion: string;
  /** e.g. "t3.small.search" */
  readonly instanceType: string;
  /** Data nodes: 1, an even number (two zones) or a multiple of 3 (three zones). */
  readonly instanceCount: number;
  /** EBS gp3 volume per data node, GiB. */
  readonly volumeGiB: number;
  readonly removalPolicy: RemovalPolicy;
}

/** A domain that already exists (its access policy is the owner's to edit). */
export interface ExistingDomainOptions {
  /** https:// endpoint of the domain. */
  readonly endpoint: string;
  readonly domainArn: string;
}

export interface SearchDomainProps {
  /** A domain to create. Exactly one of `create` and `existing`. @default - none */
  readonly create?: NewDomainOptions;
  /** A domain that exists. Exactly one of `create` and `existing`. @default - none */
  readonly existing?: ExistingDomainOptions;
}

/** HTTP actions a role may send to the domain. */
export type DomainAccess = 'deliver' | 'monitor' | 'read' | 'manage-templates' | 'update-mappings' | 'manage-retention-policies' | 'apply-retention-policies';

/**
 * Searches are POSTs too, but so are `_bulk`, `_doc`, `_delete_by_query` and `_update_by_query`: a
 * reader may POST to these search endpoints only (the paths are the domain ARN's suffixes).
 */
export const SEARCH_POST_PATHS: readonly string[] = ['_search', '*/_search', '_msearch', '*/_msearch', '_count', '*/_count'];

/**
 * In an IAM resource `*` matches `/` too, so `*\/_search` also matches `<index>/_doc/_search`: a document
 * write whose id is `_search`. A reader is denied POSTs to the document APIs outright.
 */
export const DOCUMENT_WRITE_PATHS: readonly string[] = ['*/_doc/*', '*/_create/*', '*/_update/*'];

/** Every HTTP method OpenSearch Service authorizes, for a Deny. */
const ALL_HTTP_ACTIONS = ['es:ESHttpDelete', 'es:ESHttpGet', 'es:ESHttpHead', 'es:ESHttpPatch', 'es:ESHttpPost', 'es:ESHttpPut'];

/** A path that names a comma list of indices or patterns (the domain ARN's suffix). */
export const COMMA_LIST_PATHS: readonly string[] = ['*,*'];

/**
 * The GETs AWS's policy for a Firehose OpenSearch destination role lists ("Grant Firehose access to a public OpenSearch
 * Service destination"): the cluster's and the nodes' settings and stats, and the index's mappings and stats.
 */
export function firehoseMonitorPaths(indexPattern: string): string[] {
  return ['', '_all/_settings', '_cluster/stats', '_nodes', '_nodes/stats', '_nodes/*/stats', '_stats', `${indexPattern}/_mapping`, `${indexPattern}/_mapping/*`, `${indexPattern}/_stats`];
}

/**
 * HTTP actions per access kind; `paths` fixes where an action applies, otherwise the paths given to `grant`, each
 * under every one of `under` when it is set (`_plugins/_ism/add/` + `iot-*`).
 */
const ACCESS_RULES: Record<DomainAccess, ReadonlyArray<{ readonly actions: string[]; readonly paths?: readonly string[]; readonly under?: readonly string[]; readonly deny?: true }>> = {
  // A delivery stream writes with POST and PUT (_bulk, its own indices); `grant` gives the paths.
  deliver: [{ actions: ['es:ESHttpPost', 'es:ESHttpPut'] }],
  // GETs only: a delivery stream's checks of the cluster and its indices (firehoseMonitorPaths).
  monitor: [{ actions: ['es:ESHttpGet'] }],
  read: [
    { actions: ['es:ESHttpGet', 'es:ESHttpHead'] },
    { actions: ['es:ESHttpPost'], paths: SEARCH_POST_PATHS },
    { actions: ['es:ESHttpPost', 'es:ESHttpPut', 'es:ESHttpDelete'], paths: DOCUMENT_WRITE_PATHS, deny: true },
  ],
  'manage-templates': [{ actions: ['es:ESHttpGet', 'es:ESHttpHead', 'es:ESHttpPut', 'es:ESHttpDelete'] }],
  // PUT <pattern>/_mapping: adds fields to existing indices, which is all the index-template function does to them.
  'update-mappings': [{ actions: ['es:ESHttpPut'] }],
  // Index State Management policies, by id: read one (its version, for an update), create or update it, delete it.
  'manage-retention-policies': [{ actions: ['es:ESHttpGet', 'es:ESHttpPut', 'es:ESHttpDelete'], under: ['_plugins/_ism/policies/'] }],
  // The indices of a pattern: which policy manages each, attach a policy, move them to its new version, detach it.
  // Nothing here deletes an index: ISM does that, as the cluster, by the policy.
  'apply-retention-policies': [
    { actions: ['es:ESHttpGet'], under: ['_plugins/_ism/explain/'] },
    { actions: ['es:ESHttpPost'], under: ['_plugins/_ism/add/', '_plugins/_ism/change_policy/', '_plugins/_ism/remove/'] },
    // `*` matches `,` too: `add/<pipeline>-*` would also match `add/<pipeline>-x,<other index>`. The function sends one
    // index or pattern per request, so a comma anywhere in a path is denied.
    { actions: ALL_HTTP_ACTIONS, paths: COMMA_LIST_PATHS, deny: true },
  ],
};

/**
 * Why each access kind's wildcard paths are there, for its cdk-nag acknowledgement: what the `*` stands for differs
 * (rotating indices, node ids, the whole domain), and so does what the grant amounts to.
 */
const WILDCARD_REASONS: Record<DomainAccess, string> = {
  deliver: 'The delivery stream writes its pipeline\'s indices, one per rotation period (so they cannot be listed in advance), as AWS\'s policy for a Firehose OpenSearch role allows.',
  monitor: 'The GETs AWS\'s policy for a Firehose OpenSearch role lists: every node\'s stats (_nodes/*/stats: node ids are the cluster\'s), and the mappings and stats of its pipeline\'s indices, one per rotation period.',
  read: 'Read-only on purpose: GET and HEAD anywhere on this domain and POST to the search endpoints of any index, for queries; POSTs, PUTs and DELETEs to the document APIs are denied.',
  'manage-templates': 'The index templates of this domain the stack applies.',
  'update-mappings': 'Adds the template\'s new fields to its pipeline\'s existing indices, one per rotation period (so they cannot be listed in advance).',
  'manage-retention-policies': 'The ISM retention policies the stack applies, by id.',
  'apply-retention-policies': 'ISM explain, add, change_policy and remove on its pipeline\'s indices, one per rotation period. Attaching the retention policy lets ISM delete those indices, as the cluster: this grant amounts to deleting <pipeline>-* indices.',
};

/** Domain log retention. */
const DOMAIN_LOG_RETENTION = logs.RetentionDays.ONE_MONTH;

/**
 * The OpenSearch domain search pipelines deliver to — created here (encrypted at rest, node-to-node encryption,
 * HTTPS with TLS 1.2+, access limited to the roles granted through this construct) or imported from configuration —
 * and the role users assume to query it.
 */
export class SearchDomain extends Construct {
  readonly domainArn: string;
  /** Host name of the domain endpoint, without https://. */
  readonly endpointHostname: string;
  /** The domain, when this construct created it. */
  readonly domain?: opensearch.Domain;
  /** Role for people and tools that query the domain (`sluice search`); anyone in the account allowed to assume it. */
  readonly queryRole: iam.Role;
  /** EBS volume per data node, GiB, for the free-storage alarm; undefined for an existing domain. */
  readonly volumeGiB?: number;
  /** Data nodes of a domain created here; undefined for an existing domain. */
  readonly dataNodes?: number;
  /** Data node instance type of a domain created here (e.g. "t3.small.search"); undefined for an existing domain. */
  readonly instanceType?: string;
  /**
   * The access policy of a domain created here, written into the domain resource itself. The L2's
   * `addAccessPolicies` applies it with a custom resource calling UpdateDomainConfig once, right after
   * the domain is created, which fails a deployment when IAM has not caught up yet or the domain is
   * still processing a change (aws/aws-cdk#37939).
   */
  private readonly accessPolicy?: iam.PolicyDocument;

  constructor(scope: Construct, id: string, props: SearchDomainProps) {
    super(scope, id);
    if ((props.create === undefined) === (props.existing === undefined)) {
      assertValidProps(this, ['give exactly one of "create" (a new domain) and "existing" (endpoint and ARN of a domain)']);
    }

    if (props.existing) {
      const endpoint = props.existing.endpoint.replace(/\/+$/, '');
      const problems: string[] = [];
      if (!/^https:\/\/[A-Za-z0-9.-]+(:\d+)?$/.test(endpoint)) {
        problems.push(`existing endpoint "${props.existing.endpoint}" must be the domain's https:// URL`);
      }
      if (!/^arn:aws[a-z-]*:es:[a-z0-9-]+:\d{12}:domain\/[a-z][a-z0-9-]{2,27}$/.test(props.existing.domainArn)) {
        problems.push(`existing domainArn "${props.existing.domainArn}" must look like arn:aws:es:<region>:<account>:domain/<name>`);
      }
      assertValidProps(this, problems);
      this.domainArn = props.existing.domainArn;
      this.endpointHostname = endpoint.replace(/^https:\/\//, '');
    } else {
      this.domain = this.createDomain(props.create!);
      this.accessPolicy = new iam.PolicyDocument();
      (this.domain.node.defaultChild as opensearch.CfnDomain).accessPolicies = this.accessPolicy;
      // From the name, not the resource: the domain's own access policy names it.
      this.domainArn = Stack.of(this).formatArn({ service: 'es', resource: 'domain', resourceName: props.create!.domainName });
      this.endpointHostname = this.domain.domainEndpoint;
      this.volumeGiB = props.create!.volumeGiB;
      this.dataNodes = props.create!.instanceCount;
      this.instanceType = props.create!.instanceType;
    }

    this.queryRole = new iam.Role(this, 'QueryRole', {
      description: 'Queries the Sluice OpenSearch domain (read-only: GET and HEAD, POST only to _search, _msearch and _count)',
      assumedBy: new iam.AccountRootPrincipal(),
      maxSessionDuration: Duration.hours(1),
    });
    this.grant(this.queryRole, 'read');
  }

  /**
   * Lets `role` send the given HTTP actions to the domain: an identity policy on the role, and — for a domain
   * created here — a statement naming the role in the domain's access policy.
   */
  grant(role: iam.IRole, access: DomainAccess, paths: readonly string[] = ['*']): void {
    const wildcards = new Set<string>();
    for (const rule of ACCESS_RULES[access]) {
      const resources = (rule.paths ?? paths.flatMap((p) => (rule.under ?? ['']).map((u) => `${u}${p}`))).map((p) => `${this.domainArn}/${p}`);
      const effect = rule.deny ? iam.Effect.DENY : iam.Effect.ALLOW;
      role.addToPrincipalPolicy(new iam.PolicyStatement({ effect, actions: rule.actions, resources }));
      this.accessPolicy?.addStatements(new iam.PolicyStatement({ effect, principals: [new iam.ArnPrincipal(role.roleArn)], actions: rule.actions, resources }));
      if (!rule.deny) for (const r of resources) if (r.includes('*')) wildcards.add(r);
    }
    acknowledgeWildcards(role, [...wildcards].map((resource) => ({ resource, reason: `HTTP paths of this one OpenSearch domain. ${WILDCARD_REASONS[access]}` })));
  }

  /** Cluster health: 1 when red (a primary shard is unassigned). */
  metricClusterRed(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.domain?.metricClusterStatusRed({ statistic: 'Maximum', period: Duration.minutes(1), ...props });
  }

  /** Cluster health: 1 when yellow (a replica shard is unassigned). */
  metricClusterYellow(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.domain?.metricClusterStatusYellow({ statistic: 'Maximum', period: Duration.minutes(1), ...props });
  }

  /** Share of the JVM heap in use on the fullest data node, percent. */
  metricJvmMemoryPressure(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.domain?.metricJVMMemoryPressure({ statistic: 'Maximum', period: Duration.minutes(1), ...props });
  }

  /** Share of the old generation of the JVM heap in use on the fullest data node, percent: what garbage collection cannot free. */
  metricOldGenJvmMemoryPressure(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.domain?.metric('OldGenJVMMemoryPressure', { statistic: 'Maximum', period: Duration.minutes(1), ...props });
  }

  /** CPU use of the busiest data node, percent. */
  metricCpuUtilization(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.domain?.metricCPUUtilization({ statistic: 'Maximum', period: Duration.minutes(15), ...props });
  }

  /** Nodes in the cluster, the fewest over a day. */
  metricNodes(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.domain?.metricNodes({ statistic: 'Minimum', period: Duration.days(1), ...props });
  }

  /** 1 when an automated snapshot failed. */
  metricSnapshotFailure(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.domain?.metricAutomatedSnapshotFailure({ statistic: 'Maximum', period: Duration.minutes(1), ...props });
  }

  /** Free storage of the fullest node, MiB. */
  metricFreeStorage(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.domain?.metricFreeStorageSpace({ statistic: 'Minimum', period: Duration.minutes(5), ...props });
  }

  /** 1 when the cluster blocks writes (out of storage or memory pressure). */
  metricWritesBlocked(props?: cloudwatch.MetricOptions): cloudwatch.Metric | undefined {
    return this.domain?.metricClusterIndexWritesBlocked({ statistic: 'Maximum', period: Duration.minutes(1), ...props });
  }

  private createDomain(o: NewDomainOptions): opensearch.Domain {
    const problems: string[] = [];
    const version = /^OpenSearch_(\d+\.\d+)$/.exec(o.engineVersion);
    if (!version) problems.push(`engineVersion "${o.engineVersion}" must look like "OpenSearch_2.19"`);
    if (!/^[a-z][a-z0-9-]{2,27}$/.test(o.domainName)) problems.push(`domainName "${o.domainName}" must be 3–28 lower-case letters, digits and "-", starting with a letter`);
    if (!/^[a-z0-9]+\.[a-z0-9]+\.search$/.test(o.instanceType)) problems.push(`instanceType "${o.instanceType}" must be an OpenSearch instance type such as "t3.small.search"`);
    if (!Number.isInteger(o.instanceCount) || o.instanceCount < 1) problems.push(`instanceCount must be a whole number ≥ 1, got ${o.instanceCount}`);
    if (!Number.isInteger(o.volumeGiB) || o.volumeGiB < 10) problems.push(`volumeGiB must be a whole number ≥ 10, got ${o.volumeGiB}`);
    problems.push(...domainSizeProblems(o));
    assertValidProps(this, problems);
    const zones = zoneCount(o.instanceCount);

    const retainLogs = o.removalPolicy;
    const appLogs = new logs.LogGroup(this, 'AppLogs', { retention: DOMAIN_LOG_RETENTION, removalPolicy: retainLogs });
    const slowSearchLogs = new logs.LogGroup(this, 'SlowSearchLogs', { retention: DOMAIN_LOG_RETENTION, removalPolicy: retainLogs });
    const slowIndexLogs = new logs.LogGroup(this, 'SlowIndexLogs', { retention: DOMAIN_LOG_RETENTION, removalPolicy: retainLogs });
    // A native resource policy instead of the L2's custom resource: OpenSearch may write to these three groups only.
    // Its name ends in the stack's id (a UUID CloudFormation gives each stack it creates): one kept by an earlier stack
    // of the same name (below) would otherwise fail this one's creation, as CloudFormation creates no resource policy
    // whose name exists (AlreadyExists).
    const stackUuid = Fn.select(2, Fn.split('/', Aws.STACK_ID));
    const logPolicy = new logs.CfnResourcePolicy(this, 'LogPublishingPolicy', {
      policyName: `${Stack.of(this).stackName}-opensearch-logs-${stackUuid}`,
      policyDocument: Stack.of(this).toJsonString({
        Version: '2012-10-17',
        Statement: [{
          Effect: 'Allow',
          Principal: { Service: 'es.amazonaws.com' },
          Action: ['logs:PutLogEvents', 'logs:CreateLogStream'],
          Resource: [appLogs.logGroupArn, slowSearchLogs.logGroupArn, slowIndexLogs.logGroupArn],
          Condition: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
        }],
      }),
    });

    // Kept with a kept domain, which without it can no longer publish to its kept log groups. Like the domain, not kept
    // when the stack's own creation rolls back (the domain goes then). On a replacement (a new name) the new policy
    // names the same groups, so the old one is deleted: each one kept counts toward the account's 10 per region.
    if (o.removalPolicy === RemovalPolicy.RETAIN) {
      logPolicy.cfnOptions.deletionPolicy = CfnDeletionPolicy.RETAIN_EXCEPT_ON_CREATE;
      logPolicy.cfnOptions.updateReplacePolicy = CfnDeletionPolicy.DELETE;
    }

    const domain = new opensearch.Domain(this, 'Domain', {
      domainName: o.domainName,
      version: opensearch.EngineVersion.openSearch(version![1]),
      capacity: {
        dataNodes: o.instanceCount,
        dataNodeInstanceType: o.instanceType,
        // Multi-AZ with standby needs three zones, dedicated masters and no T3: not the dev size.
        multiAzWithStandbyEnabled: false,
      },
      ebs: { enabled: true, volumeSize: o.volumeGiB, volumeType: ec2.EbsDeviceVolumeType.GP3 },
      zoneAwareness: zones ? { enabled: true, availabilityZoneCount: zones } : { enabled: false },
      encryptionAtRest: { enabled: true },
      nodeToNodeEncryption: true,
      enforceHttps: true,
      // TLS 1.2 or 1.3, and only cipher suites with forward secrecy (ECDHE), which AWS asks of its clients anyway.
      tlsSecurityPolicy: opensearch.TLSSecurityPolicy.TLS_1_2_PFS,
      logging: {
        appLogEnabled: true,
        appLogGroup: appLogs,
        slowSearchLogEnabled: true,
        slowSearchLogGroup: slowSearchLogs,
        slowIndexLogEnabled: true,
        slowIndexLogGroup: slowIndexLogs,
      },
      suppressLogsResourcePolicy: true,
      offPeakWindowEnabled: true,
      // A new opensearch.engineVersion is an in-place upgrade (UpgradeDomain). Without this update policy
      // CloudFormation replaces the domain instead, which its fixed name refuses: the deploy would fail.
      enableVersionUpgrade: true,
      removalPolicy: o.removalPolicy,
    });
    domain.node.addDependency(logPolicy);

    acknowledgeRule(domain, 'AwsSolutions-OS1',
      'Public endpoint on purpose: Firehose delivers to it without a VPC, NAT or interface endpoints; every request must be SigV4-signed by a role named in the access policy.');
    acknowledgeRule(domain, 'AwsSolutions-OS3',
      'Access is by IAM principal (the delivery, query and index-template roles), not by source IP: Firehose and Lambda have no fixed addresses.');
    acknowledgeRule(domain, 'AwsSolutions-OS4',
      'No dedicated master nodes at the configured size; add them (and more data nodes) for production clusters beyond a few nodes.');
    if (!zones) {
      acknowledgeRule(domain, 'AwsSolutions-OS7',
        'A single data node (the dev size) cannot be zone-aware; set opensearch.instanceCount to an even number or a multiple of 3 to spread over zones.');
    }
    return domain;
  }
}

