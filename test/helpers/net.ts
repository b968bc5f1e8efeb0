/** Real loopback sockets for transport tests. */
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';

/** Two connected TCP sockets on 127.0.0.1: `a` dialled, `b` accepted. */
export async function socketPair(): Promise<{ a: Socket; b: Socket }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection');
  const a = connect(port, '127.0.0.1');
  await once(a, 'connect');
  const [b] = (await accepted) as [Socket];
  server.close();
  return { a, b };
}
