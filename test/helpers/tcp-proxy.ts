import net from 'node:net';

/**
 * A TCP proxy in front of a real server whose traffic the test can hold: paused, connections stay
 * open and nothing goes either way (a partition, or a server that stopped answering); resumed, what
 * was held is delivered, as TCP would once the network heals. New connections made while paused are
 * accepted and held too.
 */
export async function startTcpProxy(target: { host: string; port: number }) {
  let paused = false;
  const flushes = new Set<() => void>();
  const sockets = new Set<net.Socket>();

  /** Forwards `from` to `to`, holding chunks while paused. */
  function forward(from: net.Socket, to: net.Socket) {
    const held: Buffer[] = [];
    const flush = () => {
      while (held.length && !to.destroyed) to.write(held.shift()!);
    };
    flushes.add(flush);
    from.on('data', (chunk: Buffer) => {
      if (paused) held.push(chunk);
      else to.write(chunk);
    });
    from.on('close', () => {
      flushes.delete(flush);
      to.destroy();
    });
    from.on('error', () => to.destroy());
  }

  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    forward(client, upstream);
    forward(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;

  return {
    port,
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      for (const flush of flushes) flush();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
