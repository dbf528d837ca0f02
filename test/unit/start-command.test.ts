import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { startCommand } from '../../bench/servers.ts';

// `npm start` and the image's CMD must run the server the same way: the bench measures the first
// (bench/servers.ts reads its flags and environment), operators run the second.
const start = startCommand();
const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));

describe('the start command', () => {
  it('runs the image with the flags of npm start', () => {
    const cmd = /^CMD (\[.*\])$/m.exec(runtimeStage);
    assert.ok(cmd, 'the runtime stage has an exec-form CMD');
    const argv = JSON.parse(cmd[1]!) as string[];
    assert.deepEqual(argv, start.argv);
  });

  it('sets the environment of npm start in the image', () => {
    const assignments = Object.entries(start.env).map(([name, value]) => `${name}=${value}`);
    assert.ok(assignments.length > 0, 'npm start sets MALLOC_ARENA_MAX');
    const env = [...runtimeStage.matchAll(/^ENV (.+)$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    for (const assignment of assignments) assert.ok(env.includes(assignment), `the runtime stage sets ${assignment}`);
  });
});
