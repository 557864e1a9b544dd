/**
 * The child side of the control channel: dials the parent, says Hello, keeps the stream
 * open (reconnecting with backoff), sends status every `statusInterval`, drains the outbox
 * (usage records, data diffs) and carries out the parent's commands.
 *
 * `connected` is true only between the parent's Welcome and the end of the stream; pass-on
 * is refused with UNAVAILABLE while it is false.
 */
import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { ConnectRequest, ConnectResponse, Command, CommandResult, Status, TrustedKey } from "../../gen/switchyard/passon/v1/control_service.js";
import type { ControlServiceClient } from "../../clients/passon/index.js";
import { parseRichError } from "../../clients/grpc/rich-error.js";
import { sleep } from "../../clients/grpc/retry.js";
import { SwitchyardError } from "../runtime/errors.js";
import type { PublicKeyEntry, TrustDirectory } from "./keys.js";
import { convert, type Outbox } from "./ledger.js";
import type { DiffResult } from "../../gen/switchyard/passon/v1/control_service.js";

/** What the uplink needs from its node. */
export interface UplinkDeps {
  nodeId: string;
  role: string;
  parent: string;
  control: ControlServiceClient;
  trust: TrustDirectory;
  /** Undefined on nodes that keep their own billing (centers). */
  outbox: Outbox | undefined;
  statusIntervalMs: number;
  log: Logger;
  shutdown: AbortSignal;
  /** The node's current status (apps, queues, delegation, descendants). */
  status(): Status;
  /** Carries out a command; throws a SwitchyardError on failure. */
  execute(cmd: Command): Promise<Partial<CommandResult>>;
  /** Applies the parent's diff outcomes to the cache and forgets the diffs. */
  settleDiffs(results: DiffResult[]): Promise<void>;
}

/** Converts keys between the contract and the trust directory. */
export function keysToProto(keys: PublicKeyEntry[]): TrustedKey[] {
  return keys.map((k) => ({ keyId: k.keyId, nodeId: k.nodeId, publicKey: k.publicKey }));
}
/** Converts contract keys to trust entries. */
export function keysFromProto(keys: TrustedKey[]): PublicKeyEntry[] {
  return keys.filter((k) => k.publicKey.length === 32 && k.keyId).map((k) => ({ keyId: k.keyId, nodeId: k.nodeId, publicKey: Buffer.from(k.publicKey) }));
}

const BATCH = 500;
/**
 * Billing records wait at most this long (durable in the outbox) to travel with others:
 * under load one message then carries many calls' records, which the parent counts in one
 * write, instead of one message and one write per call.
 */
const BILLING_EVERY_MS = 20;

/** The child's end of the control channel. */
export class Uplink {
  /** True while the channel is open and welcomed. */
  connected = false;
  /** When the channel was last welcomed / lost. */
  lastChange = 0;
  private call: ClientDuplexStream<ConnectRequest, ConnectResponse> | undefined;
  private readonly inFlightRecords = new Set<string>();
  private readonly inFlightDiffs = new Set<string>();
  private flushing = false;
  private lastBilling = 0;
  private billingTimer: NodeJS.Timeout | undefined;
  private again = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly d: UplinkDeps) {}

  /** Starts the connect loop (returns at once). */
  start(): void {
    this.loop = this.run();
  }

  /** Waits for the loop to end after shutdown. */
  async stop(): Promise<void> {
    this.call?.cancel();
    await this.loop;
  }

  private async run(): Promise<void> {
    let backoff = 100;
    while (!this.d.shutdown.aborted) {
      const welcomed = await this.session().catch((err: unknown) => {
        if (!this.d.shutdown.aborted) this.d.log.debug({ err: parseRichError(err).message }, "control channel ended");
        return false;
      });
      this.setConnected(false);
      if (this.d.shutdown.aborted) break;
      backoff = welcomed ? 100 : Math.min(2000, backoff * 2);
      await sleep(backoff, this.d.shutdown).catch(() => undefined);
    }
  }

  private setConnected(v: boolean): void {
    if (this.connected === v) return;
    this.connected = v;
    this.lastChange = Date.now();
    if (!v) {
      this.inFlightRecords.clear();
      this.inFlightDiffs.clear();
    }
    this.d.log.info({ parent: this.d.parent, connected: v }, v ? "control channel to parent open" : "control channel to parent lost");
  }

  /** One connection; resolves true when it got as far as Welcome. */
  private session(): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const call = this.d.control.connect();
      this.call = call;
      let welcomed = false;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => call.cancel();
      this.d.shutdown.addEventListener("abort", onAbort, { once: true });
      const end = (err?: unknown): void => {
        clearInterval(timer);
        this.d.shutdown.removeEventListener("abort", onAbort);
        if (this.call === call) this.call = undefined;
        this.setConnected(false);
        if (err && !welcomed) reject(err);
        else resolve(welcomed);
      };
      call.on("error", (err) => end(err));
      call.on("end", () => end());
      call.on("data", (msg: ConnectResponse) => {
        void this.onMessage(call, msg)
          .then(() => {
            if (msg.message?.$case === "welcome" && !welcomed) {
              welcomed = true;
              this.setConnected(true);
              timer = setInterval(() => this.sendStatus(call), this.d.statusIntervalMs);
              timer.unref();
              this.kick();
            }
          })
          .catch((err: unknown) => this.d.log.warn({ err }, "control message failed"));
      });
      const status = this.d.status();
      call.write({
        message: {
          $case: "hello",
          value: { nodeId: this.d.nodeId, role: this.d.role, keys: keysToProto(this.d.trust.selfAndDescendants()), status },
        },
      });
    });
  }

  private sendStatus(call: ClientDuplexStream<ConnectRequest, ConnectResponse>): void {
    if (this.call !== call) return;
    call.write({ message: { $case: "status", value: this.d.status() } });
    this.kick();
  }

  private async onMessage(call: ClientDuplexStream<ConnectRequest, ConnectResponse>, msg: ConnectResponse): Promise<void> {
    const m = msg.message;
    if (!m) return;
    switch (m.$case) {
      case "welcome":
        await this.d.trust.setAncestors(keysFromProto(m.value.keys));
        return;
      case "billingAck":
        await this.d.outbox?.ackRecords(m.value.recordIds);
        for (const id of m.value.recordIds) this.inFlightRecords.delete(id);
        this.kick();
        return;
      case "diffAck":
        await this.d.settleDiffs(m.value.results);
        for (const r of m.value.results) this.inFlightDiffs.delete(r.diffId);
        this.kick();
        return;
      case "command": {
        const cmd = m.value;
        let result: CommandResult;
        try {
          const r = await this.d.execute(cmd);
          result = { commandId: cmd.commandId, code: 0, message: r.message ?? "ok", reason: "", ...(r.app ? { app: r.app } : {}) };
        } catch (err) {
          const e = err instanceof SwitchyardError ? err : undefined;
          if (!e) this.d.log.error({ err }, "command failed");
          result = { commandId: cmd.commandId, code: e?.code ?? 2, message: e?.message ?? "command failed on the child", reason: e?.reason ?? "INTERNAL_ERROR" };
        }
        if (this.call === call) call.write({ message: { $case: "result", value: result } });
        return;
      }
    }
  }

  /** Sends queued records and diffs soon (coalesced). */
  kick(): void {
    if (this.flushing) {
      this.again = true;
      return;
    }
    this.flushing = true;
    setImmediate(() => {
      void this.flush()
        .catch((err: unknown) => this.d.log.warn({ err }, "outbox flush failed"))
        .finally(() => {
          this.flushing = false;
          if (this.again) {
            this.again = false;
            this.kick();
          }
        });
    });
  }

  private async flush(): Promise<void> {
    const call = this.call;
    const outbox = this.d.outbox;
    if (!call || !this.connected || !outbox) return;
    if (this.inFlightRecords.size === 0 && outbox.queued.records > 0) {
      // One billing batch in flight at a time, at most one every BILLING_EVERY_MS unless a
      // full batch is waiting: under load the records of many calls travel (and are counted
      // by the parent) together instead of one message per call.
      const wait = this.lastBilling + BILLING_EVERY_MS - Date.now();
      const records = wait > 0 && outbox.queued.records < BATCH ? [] : await outbox.pendingRecords(BATCH);
      if (wait > 0 && !records.length && !this.billingTimer) {
        this.billingTimer = setTimeout(() => {
          this.billingTimer = undefined;
          this.kick();
        }, wait);
        this.billingTimer.unref();
      }
      if (records.length) {
        this.lastBilling = Date.now();
        for (const r of records) this.inFlightRecords.add(r.recordId);
        call.write({ message: { $case: "billing", value: { records: records.map(convert.recordToProto) } } });
      }
    }
    if (this.inFlightDiffs.size === 0) {
      // Diffs go one batch at a time, in order, so the master sees them as they were made.
      const diffs = await outbox.pendingDiffs(BATCH);
      if (diffs.length) {
        for (const x of diffs) this.inFlightDiffs.add(x.diffId);
        call.write({ message: { $case: "diffs", value: { diffs: diffs.map(convert.diffToProto) } } });
      }
    }
  }
}
