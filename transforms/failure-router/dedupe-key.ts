/**
 * How the failure router names a failed record, apart from the handler so that the twin's DLQ file (which drops the
 * keys of error objects wholly routed) can derive them without loading the router's AWS clients.
 */
import { createHash } from 'node:crypto';

/**
 * The dedupe key of one line of one object. `version` (the version read: its versionId, or else its ETag) tells apart
 * another object later written at the same key (an operator putting back a mended error object): its lines are new
 * records, not a redelivery of the first object's.
 */
export function dedupeKeyOf(bucket: string, key: string, line: number, version?: string): string {
  return createHash('sha256').update(`s3://${bucket}/${key}#${line}${version ? `@${version}` : ''}`).digest('hex');
}

/** The version an ETag names in dedupe keys: the ETag without the quotes S3 puts around it. */
export function versionOfEtag(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}
