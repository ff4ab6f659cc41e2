/**
 * A value as an SQS message body: compact JSON (no raw line breaks) with U+FFFE and U+FFFF escaped, the two
 * characters JSON.stringify leaves raw that SQS refuses (InvalidMessageContents: SQS takes #x9, #xA, #xD,
 * #x20–#xD7FF, #xE000–#xFFFD and #x10000–#x10FFFF; JSON.stringify escapes the rest). JSON.parse gives the value back.
 * The failure router sends its messages with it, and the twin's dead-letter file takes only such bodies.
 */
export function toSqsBody(value: unknown): string {
  const json = JSON.stringify(value);
  if (json === undefined) throw new Error(`toSqsBody: ${typeof value} has no JSON form.`);
  return json.replace(/[\ufffe\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}
