// The declarations as a classic script sees them: the `statecast` global
// that /statecast.js defines. Compiled, never run.
/// <reference path="../../../src/server/web/statecast.d.ts" />
const page: statecast.Connection = statecast.connect({ topics: ["queue"], token: "t" });
const legacy: statecast.Subscription = statecast.subscribe("/api/v1/ws/queue");
void [page.state, legacy.seq, statecast.VERSION];
