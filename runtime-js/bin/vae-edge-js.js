#!/usr/bin/env node
// vae-edge-js selftest BUNDLE [--threads N]: the JavaScript runtime against a bundle's
// conformance set. Exit 0 ok, 1 a mismatch or a refused bundle, 2 bad usage (as vae-run).
import { BundleError, InputError, selftest } from '../src/node.js';

const USAGE = 'usage: vae-edge-js selftest BUNDLE [--threads N]';

function fail(message, code) {
  process.stderr.write(`Error: ${message}\n`);
  process.exit(code);
}

async function main(argv) {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(`${USAGE}\n  Check this runtime against BUNDLE's golden.json: every output of every variant.\n`);
    return 0;
  }
  const [command, ...rest] = argv;
  if (command !== 'selftest') fail(command === undefined ? `no command; ${USAGE}` : `unknown command "${command}"; ${USAGE}`, 2);
  const positional = [];
  let threads = 1;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === '--threads') {
      threads = Number(rest[++i]);
      if (!Number.isInteger(threads) || threads < 1) fail(`--threads: expected a positive integer, got ${rest[i]}`, 2);
    } else if (rest[i].startsWith('-')) {
      fail(`unknown option ${rest[i]}; ${USAGE}`, 2);
    } else {
      positional.push(rest[i]);
    }
  }
  if (positional.length !== 1) fail(`expected one BUNDLE folder, got ${positional.length}; ${USAGE}`, 2);
  const { lines, mismatches } = await selftest(positional[0], { threads });
  for (const line of lines) process.stdout.write(`${line}\n`);
  if (mismatches.length) {
    fail(`${mismatches.length} of ${lines.length} outputs differ from the conformance set: ${mismatches.map((m) => `${m.variant} ${m.output}`).join('; ')}`, 1);
  }
  process.stdout.write(`selftest passed: ${lines.length} outputs match the conformance set\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof BundleError) fail(err.message, 1);
    if (err instanceof InputError) fail(err.message, 2);
    fail(err?.message ?? String(err), 1);
  },
);
