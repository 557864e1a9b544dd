/** The Relay subsystem: roles `stream-source` and `relay` (see docs/relay.md). */
export { streamSourceRole, type StreamSourceConfig } from "./role-stream-source.js";
export { relayRole, type RelayConfig } from "./role-relay.js";
export { RelayCore, type RelayOptions } from "./relay.js";
export { StreamSourceCore, LiveStream } from "./source.js";
export { Subscriber, type SlowSubscriberPolicy, type FanoutOptions } from "./fanout.js";
export { UsageOutbox } from "./outbox.js";
