#!/usr/bin/env node
// Deterministic, offline build of PactEscrow.sol with the pinned npm `solc` (solcjs).
//
//   node compile.mjs          compile and (re)write the committed artifact
//   node compile.mjs --check  compile in memory; exit 1 if the committed artifact differs
//
// No network access: solcjs runs the bundled soljson.js, and imports are refused.

import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const CONTRACT_NAME = "PactEscrow";
const SOURCE_NAME = "PactEscrow.sol"; // name inside the standard JSON (no absolute paths in metadata)
const SOURCE_PATH = join(HERE, SOURCE_NAME);
const ARTIFACT_PATH = join(HERE, "..", "src", "pact_settlement", "rails", "evm_artifact", `${CONTRACT_NAME}.json`);

// Compilation settings that determine the bytecode. Recorded verbatim in the artifact.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "shanghai", // no Cancun opcodes: runs on ganache 7, eth-tester and current chains
  viaIR: false,
  metadata: { bytecodeHash: "ipfs", appendCBOR: true },
  remappings: [],
  libraries: {},
};

const OUTPUT_SELECTION = {
  [SOURCE_NAME]: { [CONTRACT_NAME]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
};

function fail(message) {
  process.stderr.write(`compile.mjs: ${message}\n`);
  process.exit(1);
}

function loadSolc() {
  const pkg = JSON.parse(readFileSync(join(HERE, "package.json"), "utf8"));
  const pinned = pkg.dependencies?.solc;
  if (!/^\d+\.\d+\.\d+$/.test(pinned ?? "")) fail(`package.json must pin an exact solc version, found ${pinned}`);
  if (!existsSync(join(HERE, "node_modules", "solc", "package.json"))) {
    fail(`solc is not installed; run \`npm ci\` in ${relative(process.cwd(), HERE) || "."}`);
  }
  const require = createRequire(join(HERE, "package.json"));
  const installed = require("solc/package.json").version;
  if (installed !== pinned) fail(`installed solc ${installed} != pinned ${pinned}; run \`npm ci\``);
  const solc = require("solc");
  const version = solc.version();
  if (!version.startsWith(`${pinned}+`)) fail(`solc reports version ${version}, expected ${pinned}`);
  return { solc, version };
}

function build() {
  const { solc, version } = loadSolc();
  const source = readFileSync(SOURCE_PATH, "utf8");
  const input = {
    language: "Solidity",
    sources: { [SOURCE_NAME]: { content: source } },
    settings: { ...SETTINGS, outputSelection: OUTPUT_SELECTION },
  };
  const refuseImports = (path) => ({ error: `imports are not allowed (${path})` });
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: refuseImports }));

  const diagnostics = output.errors ?? [];
  for (const d of diagnostics) process.stderr.write(`${d.formattedMessage ?? d.message}\n`);
  // Warnings are fatal as well: the pinned compiler must build the contract cleanly.
  if (diagnostics.some((d) => d.severity !== "info")) fail("compilation produced errors or warnings");

  const contract = output.contracts?.[SOURCE_NAME]?.[CONTRACT_NAME];
  if (!contract) fail(`no ${CONTRACT_NAME} in compiler output`);
  const bytecode = contract.evm.bytecode.object;
  const deployedBytecode = contract.evm.deployedBytecode.object;
  if (!bytecode || !deployedBytecode) fail("empty bytecode in compiler output");

  const artifact = {
    contractName: CONTRACT_NAME,
    compiler: { version, settings: SETTINGS },
    sourceSha256: createHash("sha256").update(source, "utf8").digest("hex"),
    abi: contract.abi,
    bytecode: `0x${bytecode}`,
    deployedBytecode: `0x${deployedBytecode}`,
  };
  return `${JSON.stringify(artifact, null, 2)}\n`;
}

function describeDiff(committedText, fresh) {
  let committed;
  try {
    committed = JSON.parse(committedText);
  } catch {
    return ["committed artifact is not valid JSON"];
  }
  const rebuilt = JSON.parse(fresh);
  const keys = new Set([...Object.keys(committed), ...Object.keys(rebuilt)]);
  const differing = [...keys].filter((k) => JSON.stringify(committed[k]) !== JSON.stringify(rebuilt[k]));
  return differing.length ? differing.map((k) => `field "${k}" differs`) : ["formatting differs"];
}

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== "--check");
if (unknown.length) fail(`unknown argument(s): ${unknown.join(" ")} (usage: node compile.mjs [--check])`);

const fresh = build();
const shown = relative(process.cwd(), ARTIFACT_PATH);

if (args.includes("--check")) {
  if (!existsSync(ARTIFACT_PATH)) fail(`artifact ${shown} is missing; run \`node compile.mjs\``);
  const committed = readFileSync(ARTIFACT_PATH, "utf8");
  if (committed !== fresh) {
    fail(
      `artifact ${shown} is out of date with PactEscrow.sol (${describeDiff(committed, fresh).join(", ")}); ` +
        "run `node compile.mjs` and commit the result",
    );
  }
  process.stdout.write(`OK: ${shown} matches a fresh build of ${SOURCE_NAME}\n`);
} else {
  mkdirSync(dirname(ARTIFACT_PATH), { recursive: true });
  writeFileSync(ARTIFACT_PATH, fresh);
  process.stdout.write(`wrote ${shown}\n`);
}
