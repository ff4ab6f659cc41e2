import type { SluiceConfig } from './types';

/** Physical names, decided in one place so the stack, the twin and the CLI agree. */
export interface ResourceNames {
  readonly stream: string;
  readonly lakeDeliveryStream: string;
  readonly searchDeliveryStream: string;
  /** Glue database (underscores: Athena identifiers do not take "-"). */
  readonly glueDatabase: string;
  /** Glue table for the pipeline. */
  readonly glueTable: string;
  readonly indexPrefix: string;
  /** Queue of failed records (from error objects), redriven by `sluice replay`. */
  readonly dlq: string;
  /** On-failure destination of the metadata consumer's event source mapping (batch metadata only). */
  readonly consumerDlq: string;
  /** On-failure destination of the failure router's asynchronous invocations (S3 events it gave up on). */
  readonly routerFailedEvents: string;
  /** Athena workgroup the lake is queried in (one per stack). */
  readonly athenaWorkGroup: string;
  /**
   * OpenSearch domain the stack creates (one per stack). Named, so the domain's access policy can name
   * the domain's ARN without referring to the domain itself. OpenSearch allows 3–28 characters.
   */
  readonly searchDomain: string;
}

/**
 * A pipeline's name, in cdk.json and as its schema file's (`schemas/<pipeline>.schema.json`): it names its stream,
 * delivery streams, Glue table and index. {@link PIPELINE_NAME_RULE} says it in words.
 */
export const PIPELINE_NAME = /^[a-z][a-z0-9-]{0,30}$/;
export const PIPELINE_NAME_RULE = 'lower-case letters, digits and "-", starting with a letter, at most 31 characters';

/** Longest OpenSearch domain name (CreateDomain: 3–28 lower-case letters, digits and hyphens). */
export const SEARCH_DOMAIN_MAX_LENGTH = 28;

export function resourceNames(config: Pick<SluiceConfig, 'prefix' | 'env'>, pipeline: string): ResourceNames {
  const base = `${config.prefix}-${config.env}-${pipeline}`;
  return {
    stream: base,
    lakeDeliveryStream: `${base}-lake`,
    searchDeliveryStream: `${base}-search`,
    glueDatabase: `${config.prefix}_${config.env}`.replace(/-/g, '_'),
    glueTable: pipeline.replace(/-/g, '_'),
    indexPrefix: pipeline,
    dlq: `${config.prefix}-${config.env}-dlq`,
    consumerDlq: `${config.prefix}-${config.env}-consumer-dlq`,
    routerFailedEvents: `${config.prefix}-${config.env}-dlq-router-failed`,
    athenaWorkGroup: `${config.prefix}-${config.env}`,
    searchDomain: `${config.prefix}-${config.env}`,
  };
}
