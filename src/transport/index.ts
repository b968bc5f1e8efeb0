/**
 * Transport: length-prefixed framing over TCP and standard streams, and the Noise XX secure
 * channel on top. See docs/architecture.md.
 */
export {
  formatAddress,
  hostPort,
  parseAddress,
  parseListenAddress,
  type TcpAddress,
} from './address.js';
export { encodeFrame, FrameDecoder, FRAME_HEADER_LEN, MAX_FRAME_LEN } from './frame.js';
export {
  DEFAULT_READ_TIMEOUT_MS,
  FramedConnection,
  MAX_QUEUED_FRAMES,
  type FramedConnectionOptions,
} from './connection.js';
export {
  connectTcp,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  listenTcp,
  SERVER_LINGER_MS,
  type ConnectTcpOptions,
  type ListenTcpOptions,
  type TcpServer,
} from './tcp.js';
export {
  CHILD_EXIT_GRACE_MS,
  spawnConnection,
  stdioConnection,
  type ChildExit,
  type SpawnConnectionOptions,
  type SpawnedChild,
  type SpawnedConnection,
} from './stdio.js';
export {
  acceptChannel,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  initiateChannel,
  MAX_CHANNEL_PAYLOAD,
  type ChannelOptions,
  type SecureChannel,
} from './channel.js';
