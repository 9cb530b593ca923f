#!/usr/bin/env node
// Deterministic, offline build of the escrow contracts with the pinned npm `solc` (solcjs).
//
//   node compile.mjs          compile and (re)write the committed artifacts
//   node compile.mjs --check  compile in memory; exit 1 if a committed artifact differs
//
// No network access: solcjs runs the bundled soljson.js. Imports resolve only to the pinned
// `@openzeppelin/contracts` package in node_modules (by its npm name); anything else is refused.

import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC_ARTIFACTS = join(HERE, "..", "src", "pact_settlement", "rails", "evm_artifact");
// Contract name -> its source (name inside the standard JSON, relative to this folder: no
// absolute paths in metadata) and where its artifact is committed. The test token is built
// for the tests and development chains only, so its artifact lives with the test fixtures.
const CONTRACTS = {
  PactEscrow: { source: "PactEscrow.sol", evmVersion: "shanghai", artifact: join(SRC_ARTIFACTS, "PactEscrow.json") },
  PactTokenEscrow: {
    source: "PactTokenEscrow.sol",
    evmVersion: "cancun",
    artifact: join(SRC_ARTIFACTS, "PactTokenEscrow.json"),
  },
  PactTestToken: {
    source: "test/PactTestToken.sol",
    evmVersion: "cancun",
    artifact: join(HERE, "..", "..", "..", "tests", "fixtures", "evm_artifact", "PactTestToken.json"),
  },
};
const IMPORTABLE = ["@openzeppelin/contracts/"]; // npm packages an import may name

// Compilation settings that determine the bytecode. Recorded verbatim in the artifact.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  // evmVersion is per contract (CONTRACTS): PactEscrow stays on shanghai (no Cancun opcodes: it
  // also runs on eth-tester); the ERC-20 contracts need cancun (OpenZeppelin 5 uses `mcopy`),
  // which every chain that carries USDC, and anvil, supports.
  viaIR: false,
  metadata: { bytecodeHash: "ipfs", appendCBOR: true },
  remappings: [],
  libraries: {},
};

const OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"];

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
  for (const prefix of IMPORTABLE) {
    const pkgName = prefix.replace(/\/$/, "");
    const wanted = pkg.dependencies?.[pkgName];
    if (!/^\d+\.\d+\.\d+$/.test(wanted ?? "")) fail(`package.json must pin an exact ${pkgName} version`);
    const got = require(`${pkgName}/package.json`).version;
    if (got !== wanted) fail(`installed ${pkgName} ${got} != pinned ${wanted}; run \`npm ci\``);
  }
  const solc = require("solc");
  const version = solc.version();
  if (!version.startsWith(`${pinned}+`)) fail(`solc reports version ${version}, expected ${pinned}`);
  return { solc, version };
}

function resolveImport(path) {
  if (!IMPORTABLE.some((prefix) => path.startsWith(prefix)) || path.split("/").includes("..")) {
    return { error: `import ${path} is not allowed (only ${IMPORTABLE.join(", ")} from node_modules)` };
  }
  const file = join(HERE, "node_modules", path);
  if (!existsSync(file)) return { error: `import ${path} not found in node_modules; run \`npm ci\`` };
  return { contents: readFileSync(file, "utf8") };
}

function compileOne(solc, name, c) {
  const content = readFileSync(join(HERE, c.source), "utf8");
  const settings = { ...SETTINGS, evmVersion: c.evmVersion };
  const input = {
    language: "Solidity",
    sources: { [c.source]: { content } },
    settings: { ...settings, outputSelection: { [c.source]: { [name]: OUTPUTS } } },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: resolveImport }));

  const diagnostics = output.errors ?? [];
  for (const d of diagnostics) process.stderr.write(`${d.formattedMessage ?? d.message}\n`);
  // Warnings are fatal as well: the pinned compiler must build the contracts cleanly.
  if (diagnostics.some((d) => d.severity !== "info")) fail(`compiling ${c.source} produced errors or warnings`);

  const contract = output.contracts?.[c.source]?.[name];
  if (!contract) fail(`no ${name} in compiler output`);
  const bytecode = contract.evm.bytecode.object;
  const deployedBytecode = contract.evm.deployedBytecode.object;
  if (!bytecode || !deployedBytecode) fail(`empty bytecode for ${name} in compiler output`);
  const artifact = {
    contractName: name,
    compiler: { version: solc.version(), settings },
    sourceSha256: createHash("sha256").update(content, "utf8").digest("hex"),
    abi: contract.abi,
    bytecode: `0x${bytecode}`,
    deployedBytecode: `0x${deployedBytecode}`,
  };
  return `${JSON.stringify(artifact, null, 2)}\n`;
}

function build() {
  const { solc } = loadSolc();
  return Object.fromEntries(Object.entries(CONTRACTS).map(([name, c]) => [name, compileOne(solc, name, c)]));
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

const built = build();
let stale = false;
for (const [name, c] of Object.entries(CONTRACTS)) {
  const fresh = built[name];
  const shown = relative(process.cwd(), c.artifact);
  if (args.includes("--check")) {
    if (!existsSync(c.artifact)) {
      process.stderr.write(`compile.mjs: artifact ${shown} is missing; run \`node compile.mjs\`\n`);
      stale = true;
      continue;
    }
    const committed = readFileSync(c.artifact, "utf8");
    if (committed !== fresh) {
      process.stderr.write(
        `compile.mjs: artifact ${shown} is out of date with ${c.source} (${describeDiff(committed, fresh).join(", ")}); ` +
          "run `node compile.mjs` and commit the result\n",
      );
      stale = true;
      continue;
    }
    process.stdout.write(`OK: ${shown} matches a fresh build of ${c.source}\n`);
  } else {
    mkdirSync(dirname(c.artifact), { recursive: true });
    writeFileSync(c.artifact, fresh);
    process.stdout.write(`wrote ${shown}\n`);
  }
}
if (stale) process.exit(1);
