// Preloaded (node --require) into `sluice local up` by test/faults/sigterm.test.ts: when the process writes the line
// that says it runs, it says on stderr how many SIGTERM listeners it has at that moment. A supervisor (or a test) may
// send SIGTERM as soon as it reads that line; without a listener by then the process dies by the signal, unflushed.
const write = process.stdout.write;
let told = false;
process.stdout.write = function (chunk, ...rest) {
  if (!told && String(chunk).includes('Running. Ctrl-C')) {
    told = true;
    process.stderr.write(`stop-listeners: SIGTERM ${process.listenerCount('SIGTERM')} SIGINT ${process.listenerCount('SIGINT')}\n`);
  }
  return write.call(this, chunk, ...rest);
};
