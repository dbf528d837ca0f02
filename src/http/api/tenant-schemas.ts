import { z } from 'zod';
import { SLUG_PATTERN } from '../../domain/tenants/tenants.ts';
import { displayText } from './schemas.ts';

// /api/v1/tenants: the platform's tenants (platform callers only: the default tenant's iam.tenants:* holders).

const slug = z.string().min(2).max(63).regex(SLUG_PATTERN, 'lower-case letters, digits and hyphens, 2-63, starting and ending with a letter or digit')
  .describe('Names the tenant next to its id (X-Tenant-Id, the organization authorization parameter); never shaped like a UUID');

export const tenantCreate = z.strictObject({
  name: displayText(200),
  slug,
});

export const tenantUpdate = z.strictObject({
  name: displayText(200).optional(),
  slug: slug.optional().describe('A new slug; the default tenant keeps "default"'),
});

export const tenant = z.object({
  id: z.string().describe('A UUID (the default tenant: "default")'),
  name: z.string(),
  slug: z.string(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
