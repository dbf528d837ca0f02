import type { Command } from '../command.ts';
import { clientCommands } from './clients.ts';
import { demoCommand } from './demo.ts';
import { localCommands } from './local.ts';
import { resourceServerCommands } from './resource-servers.ts';
import { userCommands } from './users.ts';

/** Every command, in the order help lists them. */
export const commands: Command[] = [...localCommands, ...clientCommands, ...resourceServerCommands, ...userCommands, demoCommand];
