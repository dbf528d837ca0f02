/**
 * node bench/profile-summary.ts <file.cpuprofile | dir> [top]
 *
 * Where a V8 CPU profile (node --cpu-prof) spent its samples: self time by area (an npm package,
 * a folder of ours under src/, node's own code, GC, idle) and the top functions by self time.
 * `npm run bench -- --profile` prints it for our server; run it by hand on any profile.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The area a script belongs to: the npm package, our src/<folder>, or node's internals. */
function areaOf(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  const ours = /\/(?:dist\/)?src\/(.+)$/.exec(url);
  if (ours) {
    const parts = ours[1]!.split('/');
    return 'src/' + (parts.length > 1 ? parts.slice(0, -1).join('/') : parts[0]);
  }
  return path.basename(url);
}

export function summarize(profile: CpuProfile, top = 20): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    const area = areaOf(url, functionName);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const fn = `${functionName || '(anonymous)'} ${url ? `${area}:${path.basename(url)}:${lineNumber + 1}` : ''}`.trim();
    fns.set(fn, (fns.get(fn) ?? 0) + us);
  }
  const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)}%`;
  const lines = [
    `busy ${(total / 1e6).toFixed(1)} s, idle ${(idle / 1e6).toFixed(1)} s; self time by area:`,
    ...[...areas].sort((a, b) => b[1] - a[1]).slice(0, top).map(([a, us]) => `  ${pct(us)}  ${a}`),
    `top functions by self time:`,
    ...[...fns].sort((a, b) => b[1] - a[1]).slice(0, top).map(([f, us]) => `  ${pct(us)}  ${f}`),
  ];
  return lines.join('\n');
}

/** The newest .cpuprofile in a directory (or the file itself). */
export function profileFile(target: string): string | undefined {
  if (!statSync(target, { throwIfNoEntry: false })?.isDirectory()) return target;
  const files = readdirSync(target).filter((f) => f.endsWith('.cpuprofile'));
  files.sort((a, b) => statSync(path.join(target, b)).mtimeMs - statSync(path.join(target, a)).mtimeMs);
  return files[0] ? path.join(target, files[0]) : undefined;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [target, top] = process.argv.slice(2);
  if (!target) {
    process.stderr.write('usage: node bench/profile-summary.ts <file.cpuprofile | dir> [top]\n');
    process.exit(2);
  }
  const file = profileFile(target);
  if (!file) throw new Error(`no .cpuprofile in ${target}`);
  process.stdout.write(`${file}\n${summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(top) || 20)}\n`);
}
