import type { Args, Options } from '../args.ts';

export const PAGE_OPTIONS: Options = {
  page: { type: 'string', value: '<n>', description: 'page number, from 1 (default 1)' },
  'page-size': { type: 'string', value: '<n>', description: 'results per page, 1-100 (default 20)' },
};

export function pageQuery(args: Args) {
  return { page: args.int('page', 1, 1_000_000), pageSize: args.int('page-size', 1, 100) };
}
