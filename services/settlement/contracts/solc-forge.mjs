#!/usr/bin/env node
// forge's solc, offline: the pinned solcjs (npm `solc`) behind solc's command-line interface.
//
// forge normally downloads a native solc; this machine (and CI) reach only package registries,
// so foundry.toml points `solc` here. forge asks `--version`, then sends a standard-JSON
// input on stdin (`--standard-json`, plus path options) and reads the output from stdout.
// Sources arrive inline; any import solc still asks for is read from the file system,
// relative to the working directory forge runs in.

import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(HERE, "package.json"));
const solc = require("solc");
const args = process.argv.slice(2);

if (args.includes("--version")) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
  process.exit(0);
}
if (!args.includes("--standard-json")) {
  process.stderr.write(`solc-forge.mjs: only --version and --standard-json are supported (got ${args.join(" ")})\n`);
  process.exit(2);
}

const roots = [process.cwd()];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--base-path" || args[i] === "--include-path") roots.push(resolve(args[i + 1]));
}

function findImport(path) {
  for (const root of roots) {
    const file = resolve(root, path);
    if (existsSync(file)) return { contents: readFileSync(file, "utf8") };
  }
  return { error: `file not found: ${path}` };
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
process.stdout.write(solc.compile(Buffer.concat(chunks).toString("utf8"), { import: findImport }));
