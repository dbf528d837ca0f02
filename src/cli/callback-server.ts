import http from 'node:http';
import { CliError } from './errors.ts';

const HOST = '127.0.0.1';
const PATH = '/callback';

export interface CallbackServer {
  redirectUri: string;
  /**
   * Waits for the browser to come back with `state`, runs `handle` on its query, answers the
   * browser with the outcome and resolves (or rejects) with it. Gives up after `timeoutMs`.
   */
  waitForCallback<T>(state: string, handle: (params: URLSearchParams) => Promise<T>, timeoutMs: number): Promise<T>;
  close(): void;
}

/** Resolves once the answer is handed to the socket, so closing the server cannot cut it off. */
function answer(res: http.ServerResponse, status: number, text: string): Promise<void> {
  // Plain text: what we echo (an error description) cannot become markup.
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', connection: 'close' });
  return new Promise((resolve) => res.end(`${text}\n`, () => resolve()));
}

/** A loopback redirect URI server (RFC 8252 7.3) for one sign-in. */
export async function openCallbackServer(port: number): Promise<CallbackServer> {
  let onCallback: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    if (req.method !== 'GET' || url.pathname !== PATH || !onCallback) return void answer(res, 404, 'Not found.');
    onCallback(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new CliError(
          err.code === 'EADDRINUSE'
            ? `port ${port} on ${HOST} is in use; choose another with --port`
            : `cannot listen on ${HOST}:${port}: ${err.code ?? err.message}`,
        ),
      ),
    );
    server.listen(port, HOST, () => resolve());
  });

  return {
    redirectUri: `http://${HOST}:${port}${PATH}`,

    waitForCallback<T>(state: string, handle: (params: URLSearchParams) => Promise<T>, timeoutMs: number) {
      return new Promise<T>((resolve, reject) => {
        let busy = false;
        const timer = setTimeout(() => {
          onCallback = undefined;
          reject(new CliError(`no sign-in came back within ${Math.round(timeoutMs / 1000)} s; run the command again`));
        }, timeoutMs);
        onCallback = (req, res) => {
          const params = new URL(req.url ?? '/', `http://${HOST}`).searchParams;
          // Another tab, an old run or another site: not our request, so it cannot end this one.
          if (params.get('state') !== state) return void answer(res, 400, 'This sign-in is not the one the terminal is waiting for.');
          if (busy) return void answer(res, 409, 'This sign-in is already being completed.');
          busy = true;
          clearTimeout(timer);
          handle(params).then(
            (value) => answer(res, 200, 'Signed in. The tokens are in your terminal; you can close this window.').then(() => resolve(value)),
            (err: unknown) => answer(res, 400, `Sign-in failed: ${(err as Error).message}\nSee the terminal.`).then(() => reject(err)),
          );
        };
      });
    },

    close() {
      onCallback = undefined;
      server.close();
      server.closeAllConnections();
    },
  };
}
