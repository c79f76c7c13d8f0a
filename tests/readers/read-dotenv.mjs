#!/usr/bin/env node
// Test reader: how npm `dotenv` (pinned in package.json) reads a .env file.
// usage: node tests/readers/read-dotenv.mjs FILE
// Prints JSON.stringify(dotenv.parse(<file bytes>)) as one line on stdout (JSON escapes any
// newline inside values). dotenv.parse uses dotenv's default ("classic") parser; it takes no
// options from the environment.
import fs from 'node:fs';
import dotenv from 'dotenv';

const file = process.argv[2];
if (!file || process.argv.length !== 3) {
  process.stderr.write('usage: read-dotenv.mjs FILE\n');
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(dotenv.parse(fs.readFileSync(file)))}\n`);
