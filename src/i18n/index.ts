import { en, type MessageKey, type Messages } from './en.ts';
import { vi } from './vi.ts';

export type { MessageKey };
export const LOCALES = ['en', 'vi'] as const;
export type Locale = (typeof LOCALES)[number];

const catalogs: Record<Locale, Messages> = { en, vi };

/**
 * First supported tag of a space-separated ui_locales or an Accept-Language header, else 'en'.
 * Anything but a string (a repeated query parameter arrives as an array) is skipped, never split.
 */
export function negotiate(...candidates: unknown[]): Locale {
  return supportedLocale(...candidates) ?? 'en';
}

/** As negotiate(), but undefined when no candidate names a supported locale. */
export function supportedLocale(...candidates: unknown[]): Locale | undefined {
  for (const candidate of candidates) {
    if (typeof candidate !== 'string' || !candidate) continue;
    const tags = candidate
      .split(/[\s,]+/)
      .map((part) => {
        const [tag = '', ...params] = part.trim().split(';');
        const q = params.find((p) => p.trim().startsWith('q='));
        return { tag: tag.toLowerCase(), q: q ? Number(q.trim().slice(2)) : 1 };
      })
      .filter((t) => t.tag && t.q > 0)
      .sort((a, b) => b.q - a.q);
    for (const { tag } of tags) {
      const base = tag.split('-')[0] as Locale;
      if (LOCALES.includes(base)) return base;
    }
  }
  return undefined;
}

export function translate(locale: Locale, key: MessageKey, params: Record<string, string> = {}): string {
  const template = catalogs[locale][key] ?? en[key];
  return template.replace(/\{(\w+)\}/g, (_, name: string) => params[name] ?? `{${name}}`);
}
