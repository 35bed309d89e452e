// Declarations for statecast.mjs, written by hand beside it; as a classic
// script (/statecast.js) the same names are on the `statecast` global.
// docs/client.md is the reference.

export as namespace statecast;

/** The module's version. */
export const VERSION: string;

/**
 * "connecting": an attempt is under way (a probe included);
 * "open": connected, messages flow;
 * "closed": cut off and a retry is scheduled, or closed by the page
 * (`reason` says which);
 * "refused": stopped for good, `reason` says why (an HTTP status and the
 * server's words, or a close code and its reason).
 */
export type State = "connecting" | "open" | "closed" | "refused";

/** The transport in use. */
export type Transport = "websocket" | "sse";

/** A topic's message or a broadcast event, as the server sent it (a delta already applied). */
export interface Message {
  /** `<topic>_update` with dashes as underscores for a topic; a broadcast's own type. */
  type: string;
  /** The topic, on a multiplexed connection; absent on a broadcast and on a per-topic route. */
  topic?: string;
  /**
   * The topic's seq: it counts publishes to the topic, per server process
   * (a preset's default values have seq 0); under `--redis`, cluster-wide.
   */
  seq?: number;
  data?: unknown;
  /** For adw-state/* topics. */
  adw_id?: string;
  [field: string]: unknown;
}

/** `statecast.error`: a command the server refused, a topic it would not add. */
export interface ServerError {
  type: "statecast.error";
  topic?: string;
  /** The HTTP status the connect would have got (400, 403, 404, 503). */
  status: number;
  reason: string;
}

/** A token, or `null`/`undefined` for none. */
export type Token = string | null | undefined;

export interface Options {
  /** `http(s)://` or `ws(s)://` host and port; default: the page's own (required outside a browser). */
  url?: string;
  /** Sent as `?token=`; a function is called on every (re)connect. */
  token?: Token | (() => Token | Promise<Token>);
  /** Called on every (re)connect, and again after a token-expired close (4001); may return a promise. Wins over `token`. */
  getToken?: () => Token | Promise<Token>;
  /** `"json-patch"` for deltas the client applies (`delta=` in the URL), or none for full snapshots only. */
  delta?: "json-patch" | null;
  /** "auto" (WebSocket, SSE when WebSockets are blocked), "websocket" or "sse". */
  transport?: "auto" | Transport;
  /** Each snapshot (once per seq) and broadcast event. */
  onMessage?: (message: Message) => void;
  /** Each change of state, with its reason. */
  onState?: (state: State, reason: string | null) => void;
  /** `true` after `staleAfter` ms of silence, `false` when something is heard. */
  onStale?: (stale: boolean) => void;
  /** A `statecast.error` from the server. */
  onError?: (error: ServerError) => void;
  /** ms of silence before `stale`; default 30000. */
  staleAfter?: number;
  /** The first retry's cap, ms; doubles each attempt; default 500. */
  baseDelay?: number;
  /** The retry cap, ms; default 30000. */
  maxDelay?: number;
  /** ms a connection must stay up for the backoff to start again; default 30000. */
  resetAfter?: number;
}

export interface ConnectOptions extends Options {
  /** The topics to open with; more with `subscribe`. */
  topics?: string | string[];
}

/** What `connect` and `subscribe` both return. */
export interface Link {
  readonly state: State;
  readonly reason: string | null;
  readonly stale: boolean;
  /** The transport of the last connection, `null` before the first. */
  readonly transport: Transport | null;
  /** `true` once `close()` was called. */
  readonly closed: boolean;
  /** Closes it for good. */
  close(): void;
}

/** One multiplexed connection, from `connect`. */
export interface Connection extends Link {
  /** The topics subscribed to. */
  readonly topics: string[];
  /** The topic's last seq, if any. */
  seq(topic: string): number | undefined;
  /** The topic's last data, if any. */
  data(topic: string): unknown;
  /** Adds topics: a command on a WebSocket, the stream opened again on SSE. */
  subscribe(topics: string | string[]): void;
  /** Removes topics. */
  unsubscribe(topics: string | string[]): void;
}

/** One topic on its own route, from `subscribe`. */
export interface Subscription extends Link {
  /** The last seq, `null` before the first message. */
  readonly seq: number | null;
  /** The last data, if any. */
  data(): unknown;
}

/** Opens one connection for all `topics`. */
export function connect(options?: ConnectOptions): Connection;

/** Opens one topic's own route, `/api/v1/ws/<topic>` (transport "websocket" unless given). */
export function subscribe(path: string, options?: Options): Subscription;

/** Applies a server delta to `base`, giving the new data. */
export function applyDelta(format: string, base: unknown, delta: unknown): unknown;
