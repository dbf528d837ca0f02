import { z } from 'zod';
import * as s from './schemas.ts';

// POST /api/v1/users/:id/merge: two accounts of one person become one (user-merge-routes.ts).

export const userMergeBody = z.strictObject({
  sourceUserId: z.uuid().describe('The user merged into the one in the path: its upstream links, second factors and roles move, then it is deactivated'),
});

export const userMergeSpecs = {
  'users merge': {
    method: 'post', path: '/users/:id/merge', scope: 'iam.users:update', idempotent: true,
    summary: "Merge another user of the tenant into this one: this user keeps its id, sub and email; the source's upstream links, second factors and roles move to it, the source is deactivated and its sessions and tokens revoked",
    body: userMergeBody, response: { status: 200, schema: s.userDetail },
  },
} as const;

export type UserMergeCommand = keyof typeof userMergeSpecs;
