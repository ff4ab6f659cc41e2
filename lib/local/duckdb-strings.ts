/**
 * Loaded for its effect: @duckdb/node-api decodes every VARCHAR it reads with one default TextDecoder, which takes a
 * leading U+FEFF for a byte order mark and drops it, so a value the lake holds as "\uFEFF3.2.1" came back as "3.2.1"
 * (its length() still 6). Athena returns it whole; so does DuckDB here once the decoder keeps it. The client's version
 * is pinned in package.json, and the decoder is an export of the module its string readers call through.
 */
(require('@duckdb/node-api/lib/vectors/dataAccessors') as { textDecoder: InstanceType<typeof TextDecoder> }).textDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
