import type { AdminScope } from '../domain/clients/admin-scopes.ts';
import type { AdminApi } from './api.ts';
import type { Args, Options } from './args.ts';

interface CommandBase {
  /** The words that select it, e.g. "clients create". */
  name: string;
  summary: string;
  /** Positional arguments, e.g. ["<client-id>"]; all required. */
  args?: string[];
  options?: Options;
}

export interface LocalContext {
  args: Args;
  /** --json: print JSON instead of tables. */
  json: boolean;
}

export interface RemoteContext extends LocalContext {
  api: AdminApi;
}

/** Works on the server's own store, with the server's settings. */
export interface LocalCommand extends CommandBase {
  scopes?: undefined;
  run(ctx: LocalContext): Promise<void>;
}

/** Talks to the admin API over HTTP. */
export interface RemoteCommand extends CommandBase {
  /**
   * The admin scopes to request, so the token carries no more than the command needs (and a
   * client that lacks one gets a clear invalid_scope).
   */
  scopes(args: Args): AdminScope[];
  /**
   * Admin scopes asked for as well when the CLI's client holds them (the token request is
   * repeated without them if not): a client that holds admin scopes can be seen or managed only
   * with a token that carries all of them.
   */
  scopesIfHeld?(args: Args): AdminScope[];
  /** The admin API operation it calls (set from the operations table). */
  operation?: { method: string; path: string };
  run(ctx: RemoteContext): Promise<void>;
}

export type Command = LocalCommand | RemoteCommand;
