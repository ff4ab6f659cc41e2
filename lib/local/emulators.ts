/**
 * The emulators the local twin runs: kinesis-mock (npm `kinesis-local`) as a child process we own,
 * and dynalite in-process. Both listen on loopback only unless a host says otherwise.
 */
import { ChildProcess, spawn } from 'child_process';
import { mkdir, open } from 'fs/promises';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { setTimeout as delay } from 'node:timers/promises';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { dynamoClient, kinesisClient, localRegion } from './aws-clients';
import { endpointFor, LOOPBACK } from './endpoint';
import { freePort, listen, listenProblem } from './ports';
import { CODE_CACHE_MARK_MS, CODE_CACHE_PARTIAL_MS, CODE_CACHE_UNUSED_MS, pruneCodeCaches } from './code-cache';
import { isLoopbackBinding, refuseWebPageRequest, webPageProblem, webPageRefusal, webPageRequest } from './request-guard';
import { EmulatorStateError } from './state-error';

export interface RunningService {
  /** What runs, for messages: `kinesis-mock`, `dynalite`. */
  readonly name: string;
  /** Where AWS SDK clients point, e.g. `http://127.0.0.1:4568`. */
  readonly endpoint: string;
  readonly port: number;
  /** Where the emulator keeps its state on disk; undefined when it lives in memory only. */
  readonly stateDir?: string;
  /** The child process, for emulators that run out of process. */
  readonly pid?: number;
  /** For a child process: resolves once it has exited, however that came about, saying how (`signal SIGKILL.` and its last output). */
  readonly exited?: Promise<string>;
  /** Shuts the emulator down (flushing what it persists); safe to call more than once. */
  stop(): Promise<void>;
  /** kinesis-mock: the names of its source patches applied as it loaded, and of those its main.js had no place for. */
  readonly sourcePatches?: { readonly applied: readonly string[]; readonly missing: readonly string[] };
}

export interface KinesisEmulatorOptions {
  /** Address to listen on. @default '127.0.0.1' */
  readonly host?: string;
  /**
   * Plain-HTTP port, the one clients use. 0 picks a free one (below the OS's ephemeral range, see freePort)
   * and picks again should something else bind it before kinesis-mock does. @default 4568
   */
  readonly port?: number;
  /** kinesis-mock always serves TLS too (nothing here uses it). @default 0: the OS picks a free port as it binds */
  readonly tlsPort?: number;
  /**
   * The twin's data dir; streams and records are persisted in `<dataDir>/kinesis/kinesis-data.json`,
   * written every 5 s and on stop(). @default none
   */
  readonly dataDir?: string;
  /** Persist streams and records across restarts. @default true when dataDir is given */
  readonly persist?: boolean;
  /** Seconds between kinesis-mock's saves while it runs (it also saves when it stops). @default kinesis-mock's 5 */
  readonly persistIntervalSeconds?: number;
  /** Where V8's code cache for kinesis-mock's main.js is kept, which spares its compile from the second start on; a start that writes one there deletes the caches of other versions no start has used for 30 days (code-cache.ts). @default kinesisCodeCacheDir() */
  readonly codeCacheDir?: string;
  /** How long to wait for the emulator to answer ListStreams. @default 30_000 */
  readonly readyTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. @default 30_000 (kinesis-mock exits by itself 25 s after SIGTERM at the latest, later only while it writes its state) */
  readonly stopGraceMs?: number;
  /** Told when a save of the state fails (a full or read-only disk), and when one works again. @default nothing */
  readonly onSaveProblem?: (line: string) => void;
  /** The changes made to kinesis-mock's main.js as it is loaded. @default KINESIS_SOURCE_PATCHES */
  readonly sourcePatches?: readonly KinesisSourcePatch[];
}

export interface DynamoEmulatorOptions {
  /** Address to listen on. @default '127.0.0.1' */
  readonly host?: string;
  /** @default 4569 */
  readonly port?: number;
  /** The twin's data dir; tables live in the LevelDB store `<dataDir>/dynamodb/`. @default in memory */
  readonly dataDir?: string;
}

export const KINESIS_DEFAULT_PORT = 4568;
export const DYNAMO_DEFAULT_PORT = 4569;
const KINESIS_STATE_FILE = 'kinesis-data.json';
/** How long after kinesis-mock's code ran its start writes V8's code cache for it (when there was none it could use). */
const KINESIS_CODE_CACHE_WRITE_DELAY_MS = 1000;

/** How the bootstrap's last-resort exit begins the line it writes to stderr. */
const KINESIS_LAST_RESORT = 'kinesis-mock: still running';
/** How the bootstrap begins the line it writes when a save of kinesis-mock's state fails, and the one when a save works again. */
const KINESIS_SAVE_FAILED = 'kinesis-mock: could not save its streams';
const KINESIS_SAVED_AGAIN = 'kinesis-mock: saved its streams again';

/** The key of the message the bootstrap sends over IPC once kinesis-mock listens on its plain port. */
const KINESIS_LISTENING = 'sluiceListening';

/**
 * Why AWS's JSON decoder refuses `value` as a blob (base64), in its words, or undefined for standard padded base64
 * ('' included). KINESIS_BOOTSTRAP embeds it by its source: it uses nothing from outside itself.
 * AWS checks the length first; its answer for that ("'Foo' can not be converted to a Blob: Base64 encoded length is
 * expected a multiple of 4 bytes but found: 3") is seen in public bug reports. Its words for the other cases come from
 * kinesalite's tests (a public Kinesis emulator whose tests were run against AWS years ago), typo included, and are
 * unverified against AWS today: a character outside the standard alphabet, or an '=' before the padding (reported as
 * '='), comes next; then the padding: more than two '=', or a last character before them whose bits past the data are
 * not zero (the value is then not the one encoding of its bytes). What passes is exactly what Node's decoder reads back
 * as the same text.
 */
export function base64Problem(value: string): string | undefined {
  if (value.length % 4 !== 0) return `Base64 encoded length is expected a multiple of 4 bytes but found: ${value.length}`;
  const bad = /[^A-Za-z0-9+/=]|=[^=]/u.exec(value);
  if (bad !== null) return `Invalid Base64 character: '${String.fromCodePoint(bad[0].codePointAt(0) as number)}'`;
  let pad = 0;
  while (pad < value.length && value[value.length - 1 - pad] === '=') pad++;
  if (pad === 0) return undefined;
  const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.indexOf(value[value.length - 1 - pad]);
  if (pad > 2 || (last & (pad === 1 ? 0x03 : 0x0f)) !== 0) return 'Invalid last non-pad Base64 character dectected';
  return undefined;
}

/** A change to kinesis-mock's main.js as it is loaded: `find` occurs exactly once in the file it was written for. */
export interface KinesisSourcePatch {
  readonly name: string;
  readonly find: string;
  readonly replace: string;
}

/**
 * The source patches kinesis-mock 0.6.2's main.js (kinesis-local's, compiled Scala.js) is loaded with.
 *
 * put-records-grouping: PutRecords groups a request's records by shard with a key of the shard and the shard's records
 * so far (a Scala tuple of the shard and a Vector), and Scala hashes such a key whole: every record put hashed every
 * record its shard held, twice, so a put slowed down as its stream grew (`npm run bench -- kinesis`, kinesis-mock alone,
 * 4 shards, 500-record requests: as published 2,075–2,133 records/s into an empty stream, 297–420 once it held 15,000,
 * patched 7,278–8,995 there; in a CPU profile three quarters of its time was KinesisRecord's and SequenceNumber's
 * hashCode). The patch gives that key the hash of its shard alone.
 * Equal keys have equal shards, so they still hash alike, and equality is unchanged (the tuple's, whose Vector
 * compares by reference first): the groups, and the order and shard of every record, are the same
 * (test/local/emulators.test.ts compares a patched and an unpatched kinesis-mock).
 *
 * trace-log-context, trace-log-context-skip: every API call encoded its whole request, and its whole response, to JSON
 * and printed that to a string for a log context (LoggingContext.bM), whose only use is the trace-level "Logging
 * request" / "Logging response" lines, printed at LOG_LEVEL=TRACE alone (the twin runs at WARN): a GetRecords of 10,000
 * records printed its response twice, a PutRecords its 500 records once more. The first patch notes, as each ConsoleLogger
 * is made, whether any is at the trace level (Scala's own test: the level, not null, is Trace); the second returns the
 * context unchanged from bM for the keys "request" and "response" only once the first has noted that none is (without
 * the first, it skips nothing): at the trace level everything runs as published. Every
 * bM call with those keys (52, all in kinesis.mock.cache.Cache) is an argument of the trace call (its `this.M`, a
 * ConsoleLogger) and nothing else, and encoding and printing have no effect but the string, so only unprinted work is
 * skipped (the three other bM calls, "resourceArn", whose contexts warnings use, are untouched). Measured with a scratch
 * script (kinesis-mock alone, 1 shard, 10,000 records, two runs of each in one session, put-records-grouping on in
 * both; the benchmark's GetRecords floor measures this patch and the next together: 3,256 records/s before, 7,394–9,319
 * after): one GetRecords of
 * all 10,000 records 2.30 / 1.90 s before, 1.24 / 1.24 s after; putting them (500-record batches, 2 in flight) 2.85 /
 * 2.44 s before, 2.02 / 1.90 s after.
 *
 * data-base64: a record's Data was written to JSON (GetRecords' answers, the saved state) by java.util.Base64's encoder
 * into a byte array, then decoded from UTF-8 into a string by Scala.js's java.nio charset code, byte by byte. The patch
 * has Node's Buffer write the same standard, padded base64 (what Base64.getEncoder() writes) from the same bytes. One
 * GetRecords of 10,000 records (as above, the patches before it on in both): 1.32 / 1.46 s before, 0.54 / 0.64 s after.
 */
export const KINESIS_SOURCE_PATCHES: readonly KinesisSourcePatch[] = [
  {
    name: 'put-records-grouping',
    find: 'var key = $ct_T2__O__O__(new $c_T2(), elem.ev, elem.e2);',
    replace: 'var key = $ct_T2__O__O__(new $c_T2(), elem.ev, elem.e2); key.g = function () { return $m_sr_Statics$().E(this.m()); };',
  },
  {
    name: 'trace-log-context',
    find: '  this.vd = logLevel;',
    replace: '  this.vd = logLevel; $c_Lkinesis_mock_LoggingContext.sluiceTrace = $c_Lkinesis_mock_LoggingContext.sluiceTrace === true || (logLevel !== null && logLevel === $m_Lkinesis_mock_ConsoleLogger$LogLevel$Trace$());',
  },
  {
    name: 'trace-log-context-skip',
    find: '$p.bM = (function(key, a, isCbor, evidence$1) {',
    replace: '$p.bM = (function(key, a, isCbor, evidence$1) { if ((key === "request" || key === "response") && $c_Lkinesis_mock_LoggingContext.sluiceTrace === false) return this;',
  },
  {
    name: 'data-base64',
    find: '(((str) => $m_jl_String$().asW($m_ju_Base64$().Q4.ar1(str), "UTF-8")))',
    replace: '(((str) => Buffer.from(str.a.buffer, str.a.byteOffset, str.a.length).toString("base64")))',
  },
];

/**
 * `source` with each patch whose `find` occurs exactly once in it applied, and the names of those applied and of
 * those not (a `find` absent or repeated: another kinesis-mock). KINESIS_BOOTSTRAP embeds it by its source.
 */
export function patchKinesisSource(source: string, patches: readonly KinesisSourcePatch[]): { source: string; applied: string[]; missing: string[] } {
  const applied: string[] = [];
  const missing: string[] = [];
  let patched = source;
  for (const patch of patches) {
    const at = patched.indexOf(patch.find);
    if (at === -1 || patched.indexOf(patch.find, at + 1) !== -1) {
      missing.push(patch.name);
      continue;
    }
    // Sliced, not String.replace: its replacement would read the patch's '$' sequences as patterns.
    patched = patched.slice(0, at) + patch.replace + patched.slice(at + patch.find.length);
    applied.push(patch.name);
  }
  return { source: patched, applied, missing };
}

// kinesis-mock hard-codes its listen address (ip4s Host "0.0.0.0", passed to Node as listen(port),
// i.e. every interface, IPv4 and IPv6) and has no setting for it in 0.6.2. This bootstrap, run with
// `node -e` before its main.js, rewrites those listen(port) calls to listen on SLUICE_BIND_HOST.
// It also makes shutdown prompt and certain, and its state file safe:
// - when the IPC channel to the parent closes (the parent exited or was killed), the mock gets SIGTERM;
// - on SIGTERM it stops accepting connections and fails the open ones at once: a producer that keeps
//   retrying would otherwise hold the HTTP server open past the last-resort exit, cutting off the final
//   persist; a request answered while the final persist runs could be acknowledged and still miss it;
//   the HTTP server waits 30 s for idle keep-alive connections before its final persist, and only notices
//   a socket is gone when the socket errors (a plain destroy() is not enough);
// - the state file is written whole to a temporary file and renamed over the old one, so a save that
//   is cut off leaves the previous state, never a truncated file kinesis-mock cannot load (its own
//   writer truncates the file, then writes it asynchronously, and the process may exit in between);
// - a save that cannot be written (a full or read-only disk) is said once on stderr, and again when a save
//   works again, but not reported to kinesis-mock: its writer has no 'error' listener, so an error event
//   would crash it, and a restart would load the previous save, losing what it acknowledged since. Its
//   streams are all in memory; the next save (every 5 s, and at shutdown) writes them whole;
// - output to a parent that died (EPIPE) is dropped, not a crash before the final save;
// - it tells the parent (IPC) once it listens on its plain port, so an answer there before is known to be another program's;
//   a parent gone by then cannot be told, and that failed send does not crash it: the channel's closing stops it, as above;
// - the last-resort exit, for a shutdown that hangs, comes 25 s after SIGTERM (inside the twin's 30 s
//   stopGraceMs): on a loaded machine the graceful shutdown can take several seconds before its final
//   save, and an exit before it loses what was acknowledged since the last periodic save (every 5 s).
//   It says so on stderr, and uses the real process.exit, which cats-effect replaces with a graceful one.
export const KINESIS_BOOTSTRAP = `
'use strict';
const fs = require('fs');
const net = require('net');
const path = require('path');
const { Writable } = require('stream');
const host = process.env.SLUICE_BIND_HOST;
const stateFile = process.env.PERSIST_PATH ? path.resolve(process.env.PERSIST_PATH, process.env.PERSIST_FILE_NAME) : undefined;
const shutdown = new Error('kinesis-mock is shutting down');
const servers = new Set();
const sockets = new Set();
let stopping = false;
const lastResortMs = Number(process.env.SLUICE_KINESIS_LAST_RESORT_MS || 25000);
let saveFailing = false;
for (const out of [process.stdout, process.stderr]) out.on('error', () => undefined);
const createWriteStream = fs.createWriteStream;
// kinesis-mock writes its state with write() calls (one chunk), then end(), and may exit right after: the
// state is gathered in memory (it is all in memory already) and written at end(), synchronously.
fs.createWriteStream = function (file) {
  if (stateFile === undefined || typeof file !== 'string' || path.resolve(file) !== stateFile) return createWriteStream.apply(this, arguments);
  const chunks = [];
  const take = (chunk, encoding) => { if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') chunks.push(Buffer.from(chunk, typeof encoding === 'string' ? encoding : undefined)); };
  const stream = new Writable({ write(_chunk, _encoding, callback) { callback(); } });
  const write = stream.write;
  stream.write = function (chunk, encoding, callback) { take(chunk, encoding); return write.call(this, chunk, encoding, callback); };
  const end = stream.end;
  stream.end = function (chunk, encoding, callback) {
    take(chunk, encoding);
    const partial = stateFile + '.saving';
    try {
      fs.writeFileSync(partial, Buffer.concat(chunks));
      fs.renameSync(partial, stateFile);
      if (saveFailing) process.stderr.write('${KINESIS_SAVED_AGAIN} to ' + stateFile + '\\n');
      saveFailing = false;
    } catch (error) {
      try { fs.rmSync(partial, { force: true }); } catch (_) { /* the disk that refused the save may refuse this too */ }
      if (!saveFailing) {
        process.stderr.write('${KINESIS_SAVE_FAILED} to ' + stateFile + ' (' + (error.code || error.message) + '); they stay in memory, and its next save (every 5 s, and at shutdown) writes them whole\\n');
      }
      saveFailing = true;
    }
    return end.call(this, typeof chunk === 'function' ? chunk : typeof encoding === 'function' ? encoding : callback);
  };
  // fs.WriteStream's events, which kinesis-mock's writer may wait for.
  process.nextTick(() => { stream.emit('open', -1); stream.emit('ready'); });
  return stream;
};
// Web pages are refused before kinesis-mock sees their bytes (it answers any origin's CORS preflight with
// Access-Control-Allow-Origin: *): each request head on the plain port is read as it arrives, and a refused
// request is never handed on. The rule is request-guard.ts's own function. A refusal drops the whole chunk it came
// in and ends the connection, so a request pipelined before it in that chunk goes unanswered (no SDK pipelines, and
// a page never shares an SDK's connection). Connections to its TLS port are closed unread (see 'connection' below).
// The guard also holds a JSON PutRecords or PutRecord body until it is whole and refuses, with AWS's ValidationException
// and its wording, what AWS refuses so and kinesis-mock 0.6.2 does not: a PutRecords whose Records are missing or null
// (kinesis-mock: SerializationException), empty (it answers 200) or more than 500 (it accepts them); a record whose
// PartitionKey is missing or null (SerializationException), empty or over 256 characters (InvalidArgumentException);
// whose ExplicitHashKey is not in AWS's pattern, 0|([1-9]\\d{0,38}) (an empty or non-digit one: a 500 with an empty
// body; a leading zero, a sign or 40 digits: InvalidArgumentException); whose Data is missing or null
// (SerializationException) or over 10 MiB decoded, AWS's model limit since streams take records up to 10 MiB
// (kinesis-mock refuses it only as over the stream's maximum record size, 1 MiB unless raised, which AWS checks after
// validation). A producer that batches past the limit, or sends such a record, would otherwise see locally another
// answer than on AWS. Before those (AWS decodes a body before it validates it) it refuses with AWS's SerializationException
// a body with a Data string that is no standard padded base64 (base64Problem): kinesis-mock stores one of a wrong length
// (its decoder reads "Foo" as bytes) and answers a 500 with an empty body for a character outside the alphabet. A
// PutRecords is refused whole, for its first such record. A body AWS would not decode otherwise (no JSON; a record, or a
// member the guard reads, of the wrong type) is kinesis-mock's to answer (SerializationException, as AWS); where such a
// body also holds a Data string that is no base64, the guard answers for that Data (kinesis-mock answers a 500 for a
// character outside the alphabet, wherever it is), although AWS, reading the body in order, may name a member of the
// wrong type before it (a SerializationException too). Reading the keys
// needs the parse: a scan of the bytes for "PartitionKey" is fooled by escapes ("Partition\\u004bey"), a key repeated
// in a record or inside an unknown member's object, and counts bytes or escapes, not characters.
// A CBOR body, a chunked one, or one over 64 MiB, passes unread (kinesis-mock answers it). Like a web
// page's, this refusal is written at once and ends the connection: a client that pipelined a request before it, which
// kinesis-mock has not answered yet, reads the refusal as that request's answer although kinesis-mock may store it (no
// SDK pipelines).
const webPageRequest = ${webPageRequest.toString()};
const base64Problem = ${base64Problem.toString()};
const webPageRefusal = ${webPageRefusal.toString()};
const plainPort = Number(process.env.KINESIS_MOCK_PLAIN_PORT);
const checkHost = process.env.SLUICE_CHECK_HOST === '1';
// Answers the request itself (an AWS JSON error, \`status\` as "403 Forbidden") and ends the connection.
function endWith(socket, status, text, headers) {
  socket.end('HTTP/1.1 ' + status + '\\r\\nContent-Type: application/x-amz-json-1.1\\r\\n' + headers + 'Content-Length: ' + Buffer.byteLength(text) + '\\r\\nConnection: close\\r\\n\\r\\n' + text);
}
function refuse(socket, problem) {
  endWith(socket, '403 Forbidden', webPageRefusal(problem), '');
}
const PUT_RECORDS_MAX = 500;
const PARTITION_KEY_MAX = 256;
// AWS's pattern for an explicit hash key, matched whole, and as its message prints it.
const HASH_KEY_PATTERN = /^(?:0|[1-9]\\d{0,38})$/;
const HASH_KEY_PATTERN_TEXT = '0|([1-9]\\\\d{0,38})';
// The most decoded bytes AWS's model takes in a record's data (10 MiB); a stream's own maximum record size is 1 MiB
// unless raised (up to this), which kinesis-mock applies.
const DATA_MAX = 10 * 1024 * 1024;
// AWS quotes the whole Data value in a SerializationException's message; the guard quotes at most this many of its
// characters, then '...', so that a refusal of up to 64 MiB of Data stays small (a length it reports is the whole value's).
const QUOTED_DATA_MAX = 1000;
// AWS lists at most this many validation errors, and counts only those it lists.
const VALIDATION_ERRORS_LISTED = 10;
const HELD_BODY_MAX = 64 * 1024 * 1024;
// The operations whose JSON bodies the guard holds until whole, by X-Amz-Target.
const HELD_TARGETS = new Map([['Kinesis_20131202.PutRecords', 'PutRecords'], ['Kinesis_20131202.PutRecord', 'PutRecord']]);
// Refuses the request for \`problem\`: a ValidationException, or a SerializationException (whose message AWS names Message).
function invalid(socket, problem) {
  const body = problem.type === 'SerializationException' ? { __type: problem.type, Message: problem.message } : { __type: problem.type, message: problem.message };
  endWith(socket, '400 Bad Request', JSON.stringify(body), 'x-amzn-ErrorType: ' + problem.type + '\\r\\n');
}
function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
// Whether each of these members is one AWS decodes as a string (a blob is a base64 string): absent, null (read as
// absent), or a string. Any other type is a SerializationException, on AWS as in kinesis-mock.
function decodable(object, names) {
  return names.every((name) => object[name] === undefined || object[name] === null || typeof object[name] === 'string');
}
// AWS's words for a member at \`at\` (its path, as 'records.2.member.data') whose value, as AWS prints it, fails a constraint.
function violation(value, at, constraint) {
  return 'Value ' + value + " at '" + at + "' failed to satisfy constraint: Member must " + constraint;
}
// What AWS says of a partition key at \`at\`, or undefined for a good one. Its length is counted as AWS's and
// kinesis-mock's Java and Scala strings count it, in UTF-16 units.
function partitionKeyProblem(key, at) {
  if (key === undefined || key === null) return violation('null', at, 'not be null');
  if (key.length < 1) return violation("''", at, 'have length greater than or equal to 1');
  if (key.length > PARTITION_KEY_MAX) return violation("'" + key + "'", at, 'have length less than or equal to ' + PARTITION_KEY_MAX);
  return undefined;
}
// What AWS says of an explicit hash key (optional) at \`at\`, or undefined. One in the pattern but over 2^128-1 is
// kinesis-mock's to refuse (InvalidArgumentException, as AWS, after the stream is found).
function hashKeyProblem(key, at) {
  if (key === undefined || key === null || HASH_KEY_PATTERN.test(key)) return undefined;
  return violation("'" + key + "'", at, 'satisfy regular expression pattern: ' + HASH_KEY_PATTERN_TEXT);
}
// What AWS says of a record's data (a base64 string) at \`at\`, or undefined. Its decoded length comes from the string's
// length, without decoding it; AWS prints the decoded bytes as the Java buffer it holds them in. Data over the stream's
// own maximum record size (1 MiB unless raised) but within AWS's 10 MiB is kinesis-mock's to refuse, as AWS does after
// validation. A string here is base64 already (blobProblem came first).
function dataProblem(data, at) {
  if (data === undefined || data === null) return violation('null', at, 'not be null');
  if (data.length <= DATA_MAX) return undefined; // its decoded length is at most 3/4 of that
  const pad = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0;
  const length = Math.floor(data.length * 3 / 4) - pad;
  if (length <= DATA_MAX) return undefined;
  return violation("'java.nio.HeapByteBuffer[pos=0 lim=" + length + ' cap=' + length + "]'", at, 'have length less than or equal to ' + DATA_MAX);
}
// What AWS's SerializationException says of the first Data string (of a PutRecord, or of a PutRecords' records in
// order) that is no base64, or undefined.
function blobProblem(operation, request) {
  const records = operation === 'PutRecord' ? [request] : Array.isArray(request.Records) ? request.Records : [];
  for (const record of records) {
    if (!isObject(record) || typeof record.Data !== 'string') continue;
    const reason = base64Problem(record.Data);
    if (reason === undefined) continue;
    const quoted = record.Data.length > QUOTED_DATA_MAX ? record.Data.slice(0, QUOTED_DATA_MAX) + '...' : record.Data;
    return "'" + quoted + "' can not be converted to a Blob: " + reason;
  }
  return undefined;
}
// Why a whole PutRecords or PutRecord body is one AWS refuses before kinesis-mock sees it, as { type, message }: a
// SerializationException for Data that is no base64, else a ValidationException in AWS's words and order (a record's
// partition key, explicit hash key, then data); or undefined.
function heldBodyProblem(operation, body) {
  let request;
  try { request = JSON.parse(body.toString('utf8')); } catch { return undefined; }
  if (!isObject(request)) return undefined;
  const serialization = blobProblem(operation, request);
  if (serialization !== undefined) return { type: 'SerializationException', message: serialization };
  if (!decodable(request, ['StreamName', 'StreamARN'])) return undefined;
  const problems = [];
  const add = (problem) => { if (problem !== undefined && problems.length < VALIDATION_ERRORS_LISTED) problems.push(problem); };
  if (operation === 'PutRecord') {
    if (!decodable(request, ['Data', 'PartitionKey', 'ExplicitHashKey', 'SequenceNumberForOrdering'])) return undefined;
    add(partitionKeyProblem(request.PartitionKey, 'partitionKey'));
    add(hashKeyProblem(request.ExplicitHashKey, 'explicitHashKey'));
    add(dataProblem(request.Data, 'data'));
  } else {
    const records = request.Records;
    if (records === undefined || records === null) {
      add(violation('null', 'records', 'not be null'));
    } else {
      if (!Array.isArray(records) || !records.every((record) => isObject(record) && decodable(record, ['Data', 'PartitionKey', 'ExplicitHashKey']))) return undefined;
      if (records.length < 1) add(violation("'[]'", 'records', 'have length greater than or equal to 1'));
      if (records.length > PUT_RECORDS_MAX) add(violation("'[" + records.length + " records]'", 'records', 'have length less than or equal to ' + PUT_RECORDS_MAX));
      for (let i = 0; i < records.length && problems.length < VALIDATION_ERRORS_LISTED; i++) {
        const at = 'records.' + (i + 1) + '.member.';
        add(partitionKeyProblem(records[i].PartitionKey, at + 'partitionKey'));
        add(hashKeyProblem(records[i].ExplicitHashKey, at + 'explicitHashKey'));
        add(dataProblem(records[i].Data, at + 'data'));
      }
    }
  }
  if (problems.length === 0) return undefined;
  return { type: 'ValidationException', message: problems.length + (problems.length === 1 ? ' validation error' : ' validation errors') + ' detected: ' + problems.join('; ') };
}
function guard(socket) {
  let head = Buffer.alloc(0); // the request head read so far
  let body = 0; // body bytes to pass before the next request's head
  let held; // the pieces of a PutRecords or PutRecord body read so far, held back until it is whole
  let heldFor; // which of the two it is
  let opaque = false; // a chunked body: its end is not known here, so the rest of the connection passes
  let refused = false;
  const push = socket.push;
  socket.push = function (chunk, encoding) {
    if (chunk === null || opaque || !Buffer.isBuffer(chunk)) return push.call(this, chunk, encoding);
    if (refused) return true;
    const out = []; // what of this chunk goes on to kinesis-mock now
    let at = 0;
    while (at < chunk.length) {
      if (opaque) { out.push(chunk.subarray(at)); break; }
      if (body > 0) {
        const n = Math.min(body, chunk.length - at);
        const piece = chunk.subarray(at, at + n);
        body -= n;
        at += n;
        if (!held) { out.push(piece); continue; }
        held.push(piece);
        if (body > 0) continue;
        const whole = Buffer.concat(held);
        held = undefined;
        const problem = heldBodyProblem(heldFor, whole);
        if (problem) { refused = true; invalid(this, problem); return true; }
        out.push(whole);
        continue;
      }
      const prior = head.length;
      head = Buffer.concat([head, chunk.subarray(at)]);
      const end = head.indexOf('\\r\\n\\r\\n');
      if (end === -1) {
        if (head.length > 65536) { refused = true; refuse(this, 'a request head over 64 KiB'); return true; }
        out.push(chunk.subarray(at));
        break;
      }
      const headEnd = at + end + 4 - prior;
      out.push(chunk.subarray(at, headEnd));
      at = headEnd;
      const lines = head.subarray(0, end).toString('latin1').split('\\r\\n');
      head = Buffer.alloc(0);
      const fields = new Map();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const problem = webPageRequest(lines[0].split(' ')[0], (name) => fields.get(name), checkHost);
      if (problem) { refused = true; refuse(this, problem); return true; }
      if (fields.has('transfer-encoding')) { opaque = true; continue; }
      body = Math.max(0, Number(fields.get('content-length')) || 0);
      const json = /json/i.test(fields.get('content-type') || '');
      heldFor = HELD_TARGETS.get(fields.get('x-amz-target'));
      if (body > 0 && body <= HELD_BODY_MAX && json && heldFor !== undefined) held = [];
    }
    if (out.length === 0) return true;
    return push.call(this, out.length === 1 ? out[0] : Buffer.concat(out), encoding);
  };
}
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  servers.add(this);
  // The parent probes the plain port only once this process listens there: an answer sooner is another program's.
  this.once('listening', () => {
    const address = this.address();
    // A parent gone by now cannot be told (ERR_IPC_CHANNEL_CLOSED, or EPIPE before this process read the channel close):
    // the callback takes that error, which would otherwise be an uncaught 'error' event; 'disconnect' stops the mock.
    if (address && address.port === plainPort && process.send) process.send({ ${KINESIS_LISTENING}: plainPort, patches: kinesisPatches }, () => undefined);
  });
  this.on('connection', (socket) => {
    if (stopping) return socket.destroy(shutdown);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const address = this.address();
    if (address && address.port === plainPort) guard(socket);
    // kinesis-mock always serves TLS too; nothing of Sluice's uses it, and a guard would have to read inside TLS:
    // its connections are closed unread, so nothing (a web page that got past the certificate warning) reaches it.
    else socket.destroy();
  });
  if (typeof args[0] === 'number') {
    const callback = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
    return listen.call(this, { port: args[0], host }, callback);
  }
  return listen.apply(this, args);
};
const exit = process.exit.bind(process);
process.once('SIGTERM', () => {
  stopping = true;
  for (const server of servers) server.close(() => undefined);
  // At once: a request answered after this may miss kinesis-mock's final save, so none is answered.
  for (const socket of sockets) socket.destroy(shutdown);
  setTimeout(() => {
    process.stderr.write('${KINESIS_LAST_RESORT} ' + lastResortMs + ' ms after SIGTERM; exiting (if its final save had not run, records acknowledged since its last save are lost)\\n');
    exit(143);
  }, lastResortMs).unref();
});
process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
// code-cache.ts's own function.
const pruneCodeCaches = ${pruneCodeCaches.toString()};
// The function that applies the source patches (KINESIS_SOURCE_PATCHES, passed in SLUICE_KINESIS_PATCHES).
const patchKinesisSource = ${patchKinesisSource.toString()};
// The names of the source patches applied to main.js as it was loaded, and of those not (another kinesis-mock): told
// to the parent with the message that kinesis-mock listens.
const kinesisPatches = { applied: [], missing: [] };
runKinesisMain(process.env.SLUICE_KINESIS_MAIN, process.env.SLUICE_KINESIS_CODE_CACHE || undefined, JSON.parse(process.env.SLUICE_KINESIS_PATCHES || '[]'));
// kinesis-mock's main.js, loaded as Node's loader would, with the source patches applied. It is 9 MB of JavaScript:
// compiling it is most of its start. V8's code cache for it, kept in dir under a hash of the source, the patches and
// this Node, spares that from the second start on (the caches of other versions that no start has used for 30 days
// are pruned: code-cache.ts). Any problem with the cache (none yet, unreadable, damaged, rejected by V8, a folder that
// cannot be written) only costs the compile; one with the file itself is said as Node's require says it.
function runKinesisMain(file, dir, patches) {
  const vm = require('vm');
  const Module = require('module');
  const zlib = require('zlib');
  let script;
  let cacheFile;
  let cachedData;
  try {
    const bytes = fs.readFileSync(file);
    const patched = patchKinesisSource(bytes.toString('utf8'), patches);
    kinesisPatches.applied = patched.applied;
    kinesisPatches.missing = patched.missing;
    if (dir !== undefined) {
      // The bytes hashed, not the string: hashing that would encode its 9 MB to UTF-8 again.
      const hash = require('crypto').createHash('sha256').update(process.version + ' ' + process.arch + '\\0');
      hash.update(JSON.stringify(patches.filter((patch) => patched.applied.includes(patch.name))) + '\\0');
      cacheFile = path.join(dir, 'kinesis-mock-' + hash.update(bytes).digest('hex').slice(0, 32) + '.v8cache');
      // V8 checks a cache's version, flags, source length and size, but not its bytes (outside debug builds): a
      // damaged one of the right size crashes the process (SIGTRAP) at every start, or runs. The file begins with a
      // CRC-32 of the rest; a cache that does not match it is none.
      try {
        const kept = fs.readFileSync(cacheFile);
        if (kept.length > 4 && kept.readUInt32BE(0) === zlib.crc32(kept.subarray(4))) cachedData = kept.subarray(4);
      } catch (_) { /* not made yet */ }
    }
    // Node's own module wrapper. Its loader drops a #! first line, which inside the wrapper would not parse (kept as a
    // comment, for line numbers).
    const wrapped = '(function (exports, require, module, __filename, __dirname) { ' + patched.source.replace(/^#!/, '//#!') + '\\n});';
    script = new vm.Script(wrapped, { filename: file, cachedData });
  } catch (_) {
    kinesisPatches.applied = [];
    kinesisPatches.missing = patches.map((patch) => patch.name);
    require(file); // unpatched: whatever went wrong is said as Node says it
    return;
  }
  const mod = new Module(file, null);
  mod.filename = file;
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  mod.loaded = true;
  if (dir === undefined) return;
  if (cachedData !== undefined && !script.cachedDataRejected) {
    // Marked used (its modification time), so a start of another Node.js or kinesis-mock version does not prune it
    // (pruneCodeCaches, below); once a day at most.
    try {
      const now = Date.now();
      if (Math.abs(now - fs.statSync(cacheFile).mtimeMs) > ${CODE_CACHE_MARK_MS}) fs.utimesSync(cacheFile, now / 1000, now / 1000);
    } catch (_) { /* pruned meanwhile by another start, or a read-only folder: not marked */ }
    return;
  }
  // Once it has started: the cache then holds the functions its start compiled too.
  setTimeout(() => {
    const partial = cacheFile + '.' + process.pid + '.tmp';
    try {
      fs.mkdirSync(dir, { recursive: true });
      const data = script.createCachedData();
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(zlib.crc32(data));
      fs.writeFileSync(partial, Buffer.concat([crc, data]));
      fs.renameSync(partial, cacheFile);
    } catch (_) {
      try { fs.rmSync(partial, { force: true }); } catch (_) { /* as above */ }
    }
    // Each Node.js or kinesis-mock version, and each set of source patches applied (tests and bench/kinesis.ts also run
    // it unpatched), has its own cache (about 10 MB): those no start has used for 30 days go, and partials a writer that
    // died left over an hour ago; a cache in use (another Node.js's, sharing the folder) stays.
    // Written or not (a full disk): the space freed serves the next start.
    try {
      pruneCodeCaches(fs, dir, 'kinesis-mock-', path.basename(cacheFile), ${CODE_CACHE_UNUSED_MS}, ${CODE_CACHE_PARTIAL_MS}, Date.now());
    } catch (_) { /* only housekeeping */ }
  }, ${KINESIS_CODE_CACHE_WRITE_DELAY_MS}).unref();
}
`;

/** Where kinesis-mock's start keeps V8's code cache for its main.js: beside the installed packages, as build tools keep theirs. */
export function kinesisCodeCacheDir(): string {
  return path.join(path.dirname(kinesisPackageDir()), '.cache', 'sluice');
}

/** The installed kinesis-local package's folder: kinesis-mock's working directory (it reads server.json there). */
function kinesisPackageDir(): string {
  return path.dirname(require.resolve('kinesis-local/package.json'));
}

/** kinesis-mock's simulated delays (500 ms each by default), shortened so local streams settle at once. */
const KINESIS_FAST_TRANSITIONS = Object.fromEntries(
  [
    'CREATE_STREAM_DURATION',
    'DELETE_STREAM_DURATION',
    'REGISTER_STREAM_CONSUMER_DURATION',
    'DEREGISTER_STREAM_CONSUMER_DURATION',
    'START_STREAM_ENCRYPTION_DURATION',
    'STOP_STREAM_ENCRYPTION_DURATION',
    'MERGE_SHARDS_DURATION',
    'SPLIT_SHARD_DURATION',
    'UPDATE_SHARD_COUNT_DURATION',
    'UPDATE_STREAM_MODE_DURATION',
  ].map((name) => [name, '10ms']),
);

/**
 * Starts kinesis-mock as a child process and resolves once it answers ListStreams.
 * The child is stopped when this process exits, and stops itself if this process dies.
 */
export async function startKinesis(options: KinesisEmulatorOptions = {}): Promise<RunningService> {
  if (options.port !== 0) return launchKinesis(options);
  // A port free when picked can be bound by another process in the second before kinesis-mock binds it.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort(options.host ?? LOOPBACK);
    try {
      return await launchKinesis({ ...options, port });
    } catch (error) {
      if (!(error instanceof PortTakenError && error.port === port) || attempt === KINESIS_PORT_PICKS) throw error;
    }
  }
}

/** How many free ports startKinesis({ port: 0 }) tries, each taken by another process before kinesis-mock bound it. */
const KINESIS_PORT_PICKS = 5;

/** kinesis-mock exited because a port it was to listen on was taken. */
class PortTakenError extends Error {
  constructor(message: string, readonly port: number, options?: ErrorOptions) {
    super(message, options);
  }
}

async function launchKinesis(options: KinesisEmulatorOptions): Promise<RunningService> {
  const name = 'kinesis-mock';
  const host = options.host ?? LOOPBACK;
  const port = options.port ?? KINESIS_DEFAULT_PORT;
  const persist = options.persist ?? options.dataDir !== undefined;
  if (persist && options.dataDir === undefined) {
    throw new Error(`${name}: persist is on but no dataDir was given; pass dataDir or set persist: false`);
  }
  const stateDir = persist ? path.resolve(options.dataDir as string, 'kinesis') : undefined;

  await assertPortFree(name, host, port);
  if (stateDir) await assertKinesisStateLoads(path.join(stateDir, KINESIS_STATE_FILE));
  const tlsPort = options.tlsPort ?? 0;
  if (tlsPort !== 0) await assertPortFree(`${name} (TLS)`, host, tlsPort);
  if (stateDir) await mkdir(stateDir, { recursive: true });

  const packageDir = kinesisPackageDir();
  // A clean environment, so a user's AWS_ACCOUNT_ID, LOG_LEVEL or INITIALIZE_STREAMS does not leak in.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    SystemRoot: process.env.SystemRoot, // Node on Windows needs it
    SLUICE_BIND_HOST: host,
    SLUICE_CHECK_HOST: isLoopbackBinding(host) ? '1' : '0',
    SLUICE_KINESIS_MAIN: path.join(packageDir, 'main.js'),
    SLUICE_KINESIS_CODE_CACHE: options.codeCacheDir ?? kinesisCodeCacheDir(),
    SLUICE_KINESIS_PATCHES: JSON.stringify(options.sourcePatches ?? KINESIS_SOURCE_PATCHES),
    KINESIS_MOCK_PLAIN_PORT: String(port),
    KINESIS_MOCK_TLS_PORT: String(tlsPort),
    AWS_REGION: localRegion(),
    LOG_LEVEL: 'WARN',
    ...KINESIS_FAST_TRANSITIONS,
    SHOULD_PERSIST_DATA: String(persist),
    LOAD_DATA_IF_EXISTS: String(persist),
    ...(stateDir ? { PERSIST_PATH: stateDir, PERSIST_FILE_NAME: KINESIS_STATE_FILE } : {}),
    ...(options.persistIntervalSeconds !== undefined ? { PERSIST_INTERVAL: `${options.persistIntervalSeconds}s` } : {}),
  };

  // kinesis-mock reads its TLS certificate (server.json) from the working directory.
  const child = spawn(process.execPath, ['-e', KINESIS_BOOTSTRAP], {
    cwd: packageDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    // Its own process group: a terminal's Ctrl-C goes to the whole foreground group, and the mock must
    // outlive it until the twin has drained its streams and stops it (SIGTERM, or the IPC channel closing).
    detached: process.platform !== 'win32',
  });
  const output = new OutputTail();
  let lastResort = false;
  // What the bootstrap said of the last save that ran: a failure stands until a save works again.
  let saveFailure: string | undefined;
  child.stdout?.on('data', (chunk: Buffer) => output.add('stdout', chunk));
  child.stderr?.on('data', (chunk: Buffer) => {
    for (const line of output.add('stderr', chunk)) {
      if (line.startsWith(KINESIS_LAST_RESORT)) lastResort = true;
      if (line.startsWith(KINESIS_SAVE_FAILED)) saveFailure = line;
      if (line.startsWith(KINESIS_SAVED_AGAIN)) saveFailure = undefined;
      if (line.startsWith(KINESIS_SAVE_FAILED) || line.startsWith(KINESIS_SAVED_AGAIN)) options.onSaveProblem?.(line);
    }
  });

  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  // Its output read to the end: what it said of its final save comes just before it exits, and 'exit' may come first.
  const outputRead = new Promise<void>((resolve) => {
    child.once('close', () => resolve());
    child.once('error', () => resolve());
  });
  let sourcePatches: RunningService['sourcePatches'];
  const listening = new Promise<void>((resolve) => {
    const onMessage = (message: unknown): void => {
      const told = message as Record<string, unknown> | null;
      if (told?.[KINESIS_LISTENING] !== port) return;
      child.removeListener('message', onMessage);
      sourcePatches = told.patches as RunningService['sourcePatches'];
      resolve();
    };
    child.on('message', onMessage);
  });
  const killOnExit = (): void => {
    child.kill('SIGTERM');
  };
  process.once('exit', killOnExit);
  void exited.then(() => process.removeListener('exit', killOnExit));

  const endpoint = endpointFor(host, port);
  // Past the bootstrap's own last resort (25 s), which a long synchronous save can delay.
  const stop = runOnce(async () => {
    await stopChild(child, exited, options.stopGraceMs ?? 30_000);
    // Said where the twin's stop is logged: records acknowledged since the last save (every 5 s) may be gone.
    if (lastResort || child.signalCode === 'SIGKILL') {
      throw new Error(`${name} did not stop by itself (${lastResort ? 'its last-resort exit' : 'killed'}), perhaps before its final save: `
        + `records acknowledged in the 5 s before the stop may be lost.${output.describe()}`);
    }
    // Bounded: a descendant holding its pipes open must not hold the stop. The timer goes once the output is read: a
    // pending one would keep the process alive for its 2 s after everything else has ended.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2_000);
      void outputRead.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (saveFailure !== undefined && persist) {
      const why = /\(([^()]*)\); they stay in memory/.exec(saveFailure)?.[1] ?? 'see its output';
      throw new Error(`${name} could not write its final save to ${path.join(stateDir ?? '', KINESIS_STATE_FILE)} (${why}): its streams hold what it `
        + 'saved last; records it acknowledged since are lost, and the readers say so when they reach them at the next start.');
    }
  });
  try {
    await waitForKinesis(child, exited, listening, endpoint, options.readyTimeoutMs ?? 30_000, output);
  } catch (err) {
    await stop();
    throw err;
  }
  const how = exited.then(() => `${child.signalCode ? `signal ${child.signalCode}` : `exit code ${child.exitCode}`}.${output.describe()}`);
  return { name, endpoint, port, stateDir, pid: child.pid, exited: how, stop, sourcePatches };
}

/**
 * Size of kinesis-mock's saved state past which the twin warns, as it starts and while it runs. kinesis-mock keeps every record put since
 * the data dir was made (it stores a stream's retention and never applies it) and writes and reads its state as one
 * JSON string, whose length V8 caps at 2^29 − 24 characters (~512 MiB): past that its saves fail, and the state no
 * longer loads. Every save (each 5 s) writes it whole before then.
 */
export const KINESIS_STATE_WARN_BYTES = 128 * 1024 * 1024;

/**
 * A check to run while the twin runs, for a state that grows past KINESIS_STATE_WARN_BYTES after the start: it answers
 * the warning the first time the state is that size or more, then again only once it has doubled since (at ~50 records/s
 * through Kinesis the state gains ~100 MiB an hour, so a twin left running reaches the ~512 MiB ceiling within hours).
 */
export function kinesisStateWatch(dataDir: string, warnBytes = KINESIS_STATE_WARN_BYTES): () => string | undefined {
  const file = path.join(dataDir, 'kinesis', KINESIS_STATE_FILE);
  let next = Math.max(1, warnBytes);
  return () => {
    let size: number;
    try {
      size = fs.statSync(file).size;
    } catch {
      return undefined;
    }
    if (size < next) return undefined;
    while (next <= size) next *= 2;
    return stateWarning(file, size);
  };
}

function stateWarning(file: string, size: number): string {
  const mib = (n: number): string => `${Math.round(n / (1024 * 1024))} MiB`;
  return `${file} holds ${mib(size)}: kinesis-mock keeps every record put to the streams since this data dir was made (it does not`
    + ` apply a stream's retention) and writes them whole every 5 s; at about 512 MiB its saves fail and the state no longer loads.`
    + ' Once what was sent is delivered (a stop flushes), start again on a new --data-dir (or move this one away)';
}

/**
 * kinesis-mock fails to start, with a Scala stack trace, on a state file it cannot read: one left empty
 * or cut short by a save that was interrupted before this twin wrote it whole. Only the ends are looked
 * at (the file holds every retained record): it is empty, or its JSON does not end.
 */
async function assertKinesisStateLoads(file: string): Promise<void> {
  let handle: import('fs/promises').FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  let problem: string | undefined;
  try {
    const { size } = await handle.stat();
    const tail = Buffer.alloc(Math.min(size, 64));
    await handle.read(tail, 0, tail.length, size - tail.length);
    if (tail.toString('latin1').trim() === '') problem = 'is empty';
    else if (!tail.toString('latin1').trimEnd().endsWith('}')) problem = 'is cut short';
  } finally {
    await handle.close();
  }
  if (problem) {
    throw new EmulatorStateError(`kinesis-mock's saved streams ${file} ${problem} (a save was cut off): move it away to start with `
      + 'no streams (the twin creates them again; records that were only in them are lost)');
  }
}

/** How long one readiness probe waits for kinesis-mock's answer (it answers a ListStreams in milliseconds). */
const KINESIS_PROBE_TIMEOUT_MS = 2_000;

/**
 * Resolves once kinesis-mock answers ListStreams, probing only after it said it listens on its plain port (`listening`):
 * another program that bound the port first could answer the probe while kinesis-mock exits with EADDRINUSE.
 */
async function waitForKinesis(
  child: ChildProcess,
  exited: Promise<void>,
  listening: Promise<void>,
  endpoint: string,
  timeoutMs: number,
  output: OutputTail,
): Promise<void> {
  const client = kinesisClient(endpoint, { maxAttempts: 1 });
  const deadline = performance.now() + timeoutMs;
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  let childGone = false;
  void exited.then(() => (childGone = true));
  let bound = false;
  void listening.then(() => (bound = true));
  try {
    for (;;) {
      if (childGone) {
        const how = spawnError
          ? `could not be started (${spawnError.message})`
          : `exited (${child.signalCode ?? `code ${child.exitCode}`})`;
        const message = `kinesis-mock ${how} before it answered on ${endpoint}.${output.describe()}`;
        const taken = /EADDRINUSE: address already in use \S+:(\d+)/.exec(message);
        throw taken ? new PortTakenError(message, Number(taken[1])) : new Error(message);
      }
      // Not answered: not listening yet. A probe that hangs ends with its timeout or the child's exit, whichever comes first.
      if (bound) {
        const probe = client.send(new ListStreamsCommand({ Limit: 1 }), { abortSignal: AbortSignal.timeout(KINESIS_PROBE_TIMEOUT_MS) });
        if (await Promise.race([probe.then(() => true, () => false), exited.then(() => false)])) return;
      }
      if (performance.now() > deadline) {
        throw new Error(
          `kinesis-mock did not answer ListStreams on ${endpoint} within ${timeoutMs} ms.${output.describe()}`,
        );
      }
      await Promise.race([delay(100), exited]);
    }
  } finally {
    client.destroy();
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const forceKill = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(forceKill);
}

/** Options dynalite takes (it ships no types). */
interface DynaliteOptions {
  path?: string;
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
}
type Dynalite = (options: DynaliteOptions) => http.Server;

/** Starts dynalite in this process; tables persist in `<dataDir>/dynamodb/` when a dataDir is given. */
export async function startDynamo(options: DynamoEmulatorOptions = {}): Promise<RunningService> {
  const name = 'dynalite';
  const host = options.host ?? LOOPBACK;
  const port = options.port ?? DYNAMO_DEFAULT_PORT;
  const stateDir = options.dataDir === undefined ? undefined : path.resolve(options.dataDir, 'dynamodb');

  await assertPortFree(name, host, port);
  if (stateDir) await assertLevelDbOpens(stateDir);

  // Loaded here, not at import: it pulls in LevelDB's native binding, which Kinesis-only users never need.
  const dynalite = require('dynalite') as Dynalite;
  // Short, not zero: tables still pass through CREATING, so code that skips the wait fails here too.
  const server = dynalite({ path: stateDir, createTableMs: 10, deleteTableMs: 10, updateTableMs: 10 });
  // dynalite answers any origin's preflight with Access-Control-Allow-Origin: *; web pages are refused before it.
  const checkHost = isLoopbackBinding(host);
  const answer = server.listeners('request') as Array<(req: http.IncomingMessage, res: http.ServerResponse) => void>;
  server.removeAllListeners('request');
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const problem = webPageProblem(req, checkHost);
    if (problem !== undefined) return refuseWebPageRequest(res, problem);
    for (const listener of answer) listener.call(server, req, res);
  });
  try {
    await listen(server, port, host);
  } catch (err) {
    throw new Error(`${name} cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
  }

  const endpoint = endpointFor(host, port);
  const stop = runOnce(
    () =>
      new Promise<void>((resolve, reject) => {
        // dynalite's close() waits for open requests and then closes its LevelDB store.
        server.close((err?: Error) => (err ? reject(err) : resolve()));
      }),
  );
  const client = dynamoClient(endpoint, { maxAttempts: 1 });
  try {
    await client.send(new ListTablesCommand({ Limit: 1 }));
  } catch (err) {
    await stop();
    throw new Error(`${name} started on ${endpoint} but does not answer ListTables: ${(err as Error).message}`, {
      cause: err,
    });
  } finally {
    client.destroy();
  }
  return { name, endpoint, port, stateDir, stop };
}

/**
 * dynalite opens its store lazily and, if that fails, throws from inside its request handler, which
 * crashes the process. Opening the store first turns a held lock (another twin on the same data dir)
 * or a broken native binding into an error the caller can report.
 */
async function assertLevelDbOpens(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  try {
    // The same `level` dynalite itself resolves, so this checks the binding it will use.
    const levelPath = require.resolve('level', { paths: [path.dirname(require.resolve('dynalite'))] });
    const { Level } = require(levelPath) as {
      Level: new (location: string) => { open(): Promise<void>; close(): Promise<void> };
    };
    const db = new Level(dir);
    await db.open();
    await db.close();
  } catch (err) {
    // classic-level says only "Database failed to open"; the reason (e.g. the lock) is its cause.
    const reason = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message;
    throw new Error(
      `dynalite cannot open its LevelDB store in ${dir}: ${reason}. ` +
        'If another local twin uses this data dir, stop it or pass a different data dir.',
      { cause: err },
    );
  }
}

async function assertPortFree(name: string, host: string, port: number): Promise<void> {
  const err = await listenProblem(host, port);
  if (err === undefined) return;
  const taken = err.code === 'EADDRINUSE';
  const message = `${name} cannot listen on ${host}:${port}: ${taken ? 'the port is already in use' : err.message}. Stop whatever holds the port or choose another port.`;
  throw taken ? new PortTakenError(message, port, { cause: err }) : new Error(message, { cause: err });
}

function runOnce(action: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= action());
}


/** The last lines a child wrote, kept so a failed start can say why. */
class OutputTail {
  private static readonly MAX_LINES = 20;
  private readonly lines: string[] = [];
  private partial: Record<'stdout' | 'stderr', string> = { stdout: '', stderr: '' };

  /** Keeps the lines `chunk` completes, and returns them. */
  add(stream: 'stdout' | 'stderr', chunk: Buffer): string[] {
    const text = this.partial[stream] + chunk.toString('utf8');
    const complete = text.split('\n');
    this.partial[stream] = complete.pop() ?? '';
    for (const line of complete) this.push(stream, line);
    return complete;
  }

  describe(): string {
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.partial[stream]) this.push(stream, this.partial[stream]);
      this.partial[stream] = '';
    }
    return this.lines.length === 0 ? ' It wrote nothing.' : `\nLast output:\n${this.lines.join('\n')}`;
  }

  private push(stream: 'stdout' | 'stderr', line: string): void {
    if (line.trim() === '') return;
    this.lines.push(`  [${stream}] ${line}`);
    if (this.lines.length > OutputTail.MAX_LINES) this.lines.shift();
  }
}
