/**
 * How long a replaced credential (an API key, a service account's client secret) keeps working
 * after a rotation: a day by default, to roll the new one out; at most 30 days; 0 ends it at once.
 */
export const DEFAULT_OVERLAP_SECONDS = 24 * 3600;
export const MAX_OVERLAP_SECONDS = 30 * 24 * 3600;
