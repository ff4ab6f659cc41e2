/**
 * What a domain Sluice creates can be: the checks `cdk synth` (SearchDomain) and the configuration (so the CLI,
 * `sluice cost` included, refuses what synth refuses) share.
 */

/** The EBS volume limits of the T3 sizes (OpenSearch Service quotas); other types allow at least 512 GiB. */
export const T3_MAX_VOLUME_GIB: Readonly<Record<string, number>> = {
  't3.small.search': 100,
  't3.medium.search': 200,
};

/** Families the domain Sluice creates cannot use: it always encrypts at rest and gives every node an EBS volume. */
const UNSUPPORTED_FAMILIES: ReadonlyArray<{ readonly families: readonly string[]; readonly why: string }> = [
  { families: ['t2', 'm3', 'r3'], why: 'does not support encryption at rest, which Sluice always enables' },
  { families: ['i3', 'i4g', 'i4i', 'i8g', 'im4gn', 'r6gd', 'r7gd', 'r8gd', 'oi2'], why: 'uses instance storage, not the EBS volume Sluice gives every data node' },
];

/** Zones to spread `count` data nodes over: undefined for one node or a count no zone layout divides evenly. */
export function zoneCount(count: number): 2 | 3 | undefined {
  if (count <= 1) return undefined;
  if (count % 3 === 0) return 3;
  if (count % 2 === 0) return 2;
  return undefined;
}

/** Why a domain of this size cannot be created, one line each; `key` prefixes the setting names ("opensearch." in the configuration). */
export function domainSizeProblems(o: { readonly instanceType: string; readonly instanceCount: number; readonly volumeGiB: number }, key = ''): string[] {
  const problems: string[] = [];
  const family = o.instanceType.split('.')[0];
  const unsupported = UNSUPPORTED_FAMILIES.find((u) => u.families.includes(family));
  if (unsupported) problems.push(`${key}instanceType "${o.instanceType}": the ${family.toUpperCase()} family ${unsupported.why}; choose another, e.g. t3.small.search or r6g.large.search`);
  if (Number.isInteger(o.instanceCount) && o.instanceCount > 1 && zoneCount(o.instanceCount) === undefined) {
    problems.push(`${key}instanceCount ${o.instanceCount} cannot be spread evenly over availability zones; use 1, an even number (two zones) or a multiple of 3 (three zones)`);
  }
  const t3Limit = T3_MAX_VOLUME_GIB[o.instanceType];
  if (t3Limit !== undefined && o.volumeGiB > t3Limit) {
    problems.push(`${key}volumeGiB ${o.volumeGiB} exceeds the ${t3Limit} GiB EBS limit of ${o.instanceType}; choose a larger instance type or a smaller volume`);
  }
  return problems;
}
