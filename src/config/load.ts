import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { configSchema, type AppConfig } from './schema.ts';

export class ConfigError extends Error {}

/**
 * Settings come from the schema defaults, then an optional JSON file (CONFIG_FILE, or
 * config/<NODE_ENV>.json when present), then the environment. Every problem is reported at once
 * with the setting's name, and the boot stops.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): AppConfig {
  const nodeEnv = env.NODE_ENV ?? 'development';
  const file = env.CONFIG_FILE ?? path.join(cwd, 'config', `${nodeEnv}.json`);
  let fromFile: Record<string, unknown> = {};
  if (existsSync(file)) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`CONFIG_FILE ${file}: ${(err as Error).message}`);
    }
  } else if (env.CONFIG_FILE) {
    throw new ConfigError(`CONFIG_FILE: ${file} does not exist`);
  }

  const keys = Object.keys(configSchema.shape);
  const fromEnv = Object.fromEntries(
    keys.filter((k) => env[k] !== undefined && env[k] !== '').map((k) => [k, env[k]]),
  );
  const result = configSchema.safeParse({ ...fromFile, ...fromEnv });
  if (!result.success) {
    const lines = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    // One problem: one line. Several: one line each.
    throw new ConfigError(lines.length === 1 ? `invalid configuration: ${lines[0]}` : `invalid configuration:\n${lines.map((l) => `  ${l}`).join('\n')}`);
  }
  const cfg = result.data;
  return Object.freeze({ ...cfg, ISSUER: (cfg.ISSUER ?? `http://localhost:${cfg.PORT}`).replace(/\/$/, '') });
}
