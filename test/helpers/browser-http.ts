/**
 * A minimal browser over HTTP: a cookie jar and manual redirects, so tests can walk the real
 * authorization flow and sign in through the real login form.
 */
export class HttpBrowser {
  readonly cookies = new Map<string, Map<string, string>>();

  #cookieHeader(url: URL): string {
    return [...(this.cookies.get(url.host) ?? new Map()).entries()].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  #store(url: URL, res: Response) {
    const jar = this.cookies.get(url.host) ?? new Map<string, string>();
    for (const line of res.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(line) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    this.cookies.set(url.host, jar);
  }

  async request(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const target = new URL(url);
    const headers = new Headers(init.headers);
    const cookie = this.#cookieHeader(target);
    if (cookie) headers.set('cookie', cookie);
    if (!headers.has('accept')) headers.set('accept', 'text/html');
    const res = await fetch(target, { ...init, headers, redirect: 'manual' });
    this.#store(target, res);
    return res;
  }

  /**
   * Follows redirects until a page answers or `stopAt` matches the next location (the relying
   * party's callback, which is never fetched); returns the last response and its URL.
   */
  async follow(url: string | URL, init: RequestInit = {}, stopAt?: (u: URL) => boolean) {
    let current = new URL(url);
    if (stopAt?.(current)) return { res: new Response(null, { status: 204 }), url: current };
    let res = await this.request(current, init);
    for (let i = 0; i < 20 && res.status >= 300 && res.status < 400; i++) {
      const next = new URL(res.headers.get('location')!, current);
      if (stopAt?.(next)) return { res, url: next };
      await res.arrayBuffer();
      current = next;
      res = await this.request(current);
    }
    return { res, url: current };
  }

  async postForm(url: string | URL, fields: Record<string, string>) {
    return this.request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }
}

export function formField(html: string, name: string): string | undefined {
  const m = new RegExp(`name="${name}"[^>]*value="([^"]*)"`).exec(html);
  return m?.[1];
}

export function formAction(html: string, contains: string): string | undefined {
  const re = /<form[^>]*action="([^"]+)"/g;
  for (let m = re.exec(html); m; m = re.exec(html)) if (m[1]!.includes(contains)) return m[1]!.replace(/&amp;/g, '&');
  return undefined;
}
