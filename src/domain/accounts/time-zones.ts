/**
 * Time-zone names. ICU's list (Intl.supportedValuesOf) follows CLDR, which keeps some renamed IANA
 * zones under their old spelling (Asia/Saigon, Asia/Calcutta, Europe/Kiev). People look for the
 * current names, so those are offered and stored; the old ones are still accepted as aliases.
 * Only renames are here: zones tzdata merged into another (Europe/Vatican) stay as they are.
 */
const RENAMED: Readonly<Record<string, string>> = {
  'Africa/Asmera': 'Africa/Asmara',
  'America/Buenos_Aires': 'America/Argentina/Buenos_Aires',
  'America/Catamarca': 'America/Argentina/Catamarca',
  'America/Coral_Harbour': 'America/Atikokan',
  'America/Cordoba': 'America/Argentina/Cordoba',
  'America/Godthab': 'America/Nuuk',
  'America/Indianapolis': 'America/Indiana/Indianapolis',
  'America/Jujuy': 'America/Argentina/Jujuy',
  'America/Louisville': 'America/Kentucky/Louisville',
  'America/Mendoza': 'America/Argentina/Mendoza',
  'Asia/Calcutta': 'Asia/Kolkata',
  'Asia/Katmandu': 'Asia/Kathmandu',
  'Asia/Rangoon': 'Asia/Yangon',
  'Asia/Saigon': 'Asia/Ho_Chi_Minh',
  'Atlantic/Faeroe': 'Atlantic/Faroe',
  'Europe/Kiev': 'Europe/Kyiv',
  'Pacific/Enderbury': 'Pacific/Kanton',
  'Pacific/Ponape': 'Pacific/Pohnpei',
  'Pacific/Truk': 'Pacific/Chuuk',
};

/** The current IANA name of a zone (a legacy spelling becomes its current one; others unchanged). */
export function currentTimeZoneName(zone: string): string {
  return RENAMED[zone] ?? zone;
}

/** The zones a person picks from: UTC first, then every zone the runtime knows, by current name. */
export const TIME_ZONES: readonly string[] = [
  'UTC',
  ...[...new Set(Intl.supportedValuesOf('timeZone').map(currentTimeZoneName))].filter((z) => z !== 'UTC').sort(),
];
