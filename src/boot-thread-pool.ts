// Imported first by main.ts: libuv sizes its thread pool from the environment at its first use,
// which any later import may cause (see infra/thread-pool.ts).
import { sizeThreadPool } from './infra/thread-pool.ts';

sizeThreadPool();
