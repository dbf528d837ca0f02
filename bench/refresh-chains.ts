/**
 * Profiling aid: refresh throughput with N chains, each presenting the token the previous refresh
 * returned (as N clients would). Usage: node bench/refresh-chains.ts <issuer> <seed-json> [chains] [seconds]
 */
import { Browser, basicAuth, codeFlow, rotateRefreshToken } from './flows.ts';

const [issuer, seedJson, chainsArg = '10', secondsArg = '8'] = process.argv.slice(2);
const seed = JSON.parse(seedJson!) as { clientId: string; clientSecret: string; redirectUri: string; user: { email: string; password: string } };
const target = { issuer: issuer!, clientId: seed.clientId, clientSecret: seed.clientSecret, redirectUri: seed.redirectUri };
const auth = basicAuth(seed.clientId, seed.clientSecret);
let done = 0;
const until = Date.now() + Number(secondsArg) * 1000;

async function chain() {
  const first = await codeFlow(new Browser(), target, { scope: 'openid offline_access', prompt: 'consent', user: seed.user });
  let rt = first.tokens.refresh_token as string;
  while (Date.now() < until) {
    rt = await rotateRefreshToken(issuer!, auth, rt);
    done++;
  }
}
const started = Date.now();
await Promise.all(Array.from({ length: Number(chainsArg) }, chain));
console.log(`refreshes: ${done} in ${((Date.now() - started) / 1000).toFixed(1)}s = ${(done / ((Date.now() - started) / 1000)).toFixed(0)}/s`);
