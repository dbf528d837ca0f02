import path from 'node:path';

/**
 * The boot log's last lines outside production: what to do next, in plain words, for someone who
 * just ran `npm start` (each a log line of its own, so it reads well in JSON too).
 */
export function nextSteps(opts: { issuer: string; adminClientId?: string | undefined; smtp: boolean; dataDir: string }): string[] {
  const steps = [
    `next: open ${opts.issuer}/ (issuer, discovery, account console)`,
    opts.adminClientId
      ? `next: try a sign-in: in another terminal, with BOOTSTRAP_ADMIN_CLIENT_ID=${opts.adminClientId} and its secret set, run npx idp demo`
      : 'next: to try a sign-in, restart with BOOTSTRAP_ADMIN_CLIENT_ID and BOOTSTRAP_ADMIN_CLIENT_SECRET (32+ characters) set, then run npx idp demo with the same two',
    'next: register your own application: README.md, “Register your first application”',
  ];
  if (!opts.smtp) steps.push(`next: mail is not sent without SMTP_URL: it is written under ${path.resolve(opts.dataDir, 'outbox')}, and its code or link logged here`);
  return steps;
}
