/**
 * The ws and wss transports: WebSocket (RFC 6455) as a layer over another stream transport's
 * sockets -- `ws` over tcp, `wss` over tls (whose server domains give wss its certificates, by
 * listener and SNI name, reloaded live). This is the worker side, {@link webSocketWorker}; each
 * plugin is a thin shell: plugins/ws_worker.ts and plugins/wss_worker.ts (what reader workers
 * import, no zod), plugins/ws.ts and plugins/wss.ts (the definitions, ./definition.ts).
 * @module
 */
import type { PluginWorker, WorkerContext } from "../../core/plugin/types.ts";
import {
  isDatagram,
  type StreamListener,
  type StreamSocket,
  type StreamTransport,
} from "../../core/transport/types.ts";
import { connectWebSocket, WebSocketListener } from "./socket.ts";
import { normalizedOrigins } from "./origins.ts";
import type { WebSocketSettings } from "./settings.ts";

/** What differs between ws and wss. */
export interface WebSocketFlavour {
  name: "ws" | "wss";
  viaName: "WS" | "WSS";
  /** The stream transport plugin underneath. */
  layeredOn: "tcp" | "tls";
  secure: boolean;
  /** RFC 7118 §7: 80 for ws, 443 for wss. */
  defaultPort: number;
}

/** A ws/wss plugin's `worker` hook. */
export function webSocketWorker(flavour: WebSocketFlavour): PluginWorker<WebSocketSettings> {
  return (config, context) => {
    // One settings object shared by the transport and its listeners: a reload changes it in
    // place, so the next handshake and the next ping sweep use the new values.
    const settings = { ...config };
    return {
      transport: webSocketTransport(flavour, settings, context),
      reload: (next) => () => Object.assign(settings, next),
    };
  };
}

function webSocketTransport(
  flavour: WebSocketFlavour,
  settings: WebSocketSettings,
  context: WorkerContext,
): StreamTransport {
  const inner = (): StreamTransport => {
    const transport = context.transport(flavour.layeredOn);
    if (transport === undefined || isDatagram(transport)) {
      throw new Error(`${flavour.name} needs the ${flavour.layeredOn} transport plugin`);
    }
    return transport;
  };
  const acceptOptions = () => ({
    policy: { paths: settings.paths, allowedOrigins: normalizedOrigins(settings) },
    timeout: settings.handshake_timeout,
    log: context.logger,
  });
  return {
    name: flavour.name,
    viaName: flavour.viaName,
    secure: flavour.secure,
    defaultPort: flavour.defaultPort,
    flowsOnly: true,
    // Read by the timer sweep for every connection: one object, its values live from settings.
    keepalive: {
      get interval() {
        return settings.ping_interval;
      },
      get timeout() {
        return settings.ping_timeout;
      },
    },
    listen: async (address): Promise<StreamListener> =>
      new WebSocketListener(await inner().listen(address), acceptOptions),
    connect: async (options): Promise<StreamSocket> => {
      const stream = await inner().connect(options);
      return await connectWebSocket(stream, {
        hostname: options.hostname,
        port: options.port,
        defaultPort: flavour.defaultPort,
        path: settings.connect_path,
        signal: options.signal,
      });
    },
  };
}
