import type { Command } from '../command.ts';
import { adminApiCommands } from './api-commands.ts';
import { clientCommands } from './clients.ts';
import { demoCommand } from './demo.ts';
import { localCommands } from './local.ts';
import { resourceServerCommands } from './resource-servers.ts';
import { userCommands } from './users.ts';

/**
 * Every command, in the order help lists them: the local ones, one for each admin API operation
 * (hand-written where friendlier options help, else made from the operations table), the demo.
 */
export const commands: Command[] = [
  ...localCommands,
  ...adminApiCommands([...clientCommands, ...resourceServerCommands, ...userCommands]),
  demoCommand,
];
