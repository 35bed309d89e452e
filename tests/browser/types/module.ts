// The declarations as an importer of the package uses them; every option,
// state and method once. Compiled, never run.
import { connect, subscribe, applyDelta, VERSION } from "statecast-client";
import type { Connection, Link, Message, ServerError, State, Subscription, Transport } from "statecast-client";

const version: string = VERSION;
const conn: Connection = connect({
  url: "wss://example.test",
  topics: ["queue", "system-status"],
  getToken: async () => "token",
  delta: "json-patch",
  transport: "auto",
  staleAfter: 30000,
  baseDelay: 500,
  maxDelay: 30000,
  onMessage: (msg: Message) => {
    const topic: string | undefined = msg.topic;
    const seq: number | undefined = msg.seq;
    void [topic, seq, msg.data, msg.type];
  },
  onState: (state: State, reason: string | null) => void [state, reason],
  onStale: (stale: boolean) => void stale,
  onError: (e: ServerError) => void [e.status, e.reason, e.topic],
});
conn.subscribe(["workflows"]);
conn.subscribe("routes");
conn.unsubscribe("queue");
const topics: string[] = conn.topics;
const seq: number | undefined = conn.seq("queue");
const transport: Transport | null = conn.transport;
void [topics, seq, transport, conn.data("queue"), conn.state, conn.reason, conn.stale, conn.closed];
conn.close();

const sub: Subscription = subscribe("/api/v1/ws/queue", { token: () => null, transport: "websocket" });
const later: Link = connect();
const byPromise: Link = subscribe("/api/v1/ws/queue", { token: async () => "token", delta: null });
void [later.state, byPromise.state];
// @ts-expect-error: a delta format the server does not offer.
connect({ delta: "merge-patch" });
const last: number | null = sub.seq;
void [last, sub.data(), applyDelta("json-patch", {}, []), version];
sub.close();

// @ts-expect-error: a transport that does not exist.
connect({ transport: "carrier-pigeon" });
