import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from './logger.ts';

/**
 * KEY_ENCRYPTION_KEY when set; otherwise one generated once into DATA_DIR with mode 0600. The
 * generated one suits a single machine only: several instances must share the configured key.
 */
export function resolveKeyEncryptionKey(configured: string | undefined, dataDir: string, logger: Logger): Buffer {
  if (configured) return Buffer.from(configured, 'base64url');
  const file = path.resolve(dataDir, 'key-encryption-key');
  if (existsSync(file)) return Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url');
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
  logger.warn({ file }, 'KEY_ENCRYPTION_KEY not set: generated one into DATA_DIR (mode 0600); set KEY_ENCRYPTION_KEY to share it between instances');
  return Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url');
}
