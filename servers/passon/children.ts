/**
 * The parent side of the control channel: one session per connected child, commands with
 * results, and the children's last known state (persisted, so `passon tree` shows a child
 * that is down as offline with its last report, never as healthy).
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { ChildState, QueuedCommandKind, QueuedCommandOutcome } from "../../gen/switchyard/passon/v1/app.js";
import { Command as CommandCodec, type Command, type CommandResult, type ConnectResponse, type Status } from "../../gen/switchyard/passon/v1/control_service.js";
import type { Collection, NodeStore } from "../runtime/store.js";
import { DeadlineExceededError, NotFoundError } from "../runtime/errors.js";
import type { StreamSink } from "../runtime/service.js";
import { DOMAIN, ForwardedError, UnavailableError } from "./errors.js";

/** How often a child's reported state is written through at most (see update()). */
const PERSIST_EVERY_MS = 1000;
/** Outcomes of delivered queued commands kept per child (ChildState.queued_outcomes). */
const KEPT_OUTCOMES = 10;

/** A queued command as stored: the command and when it was queued. */
interface StoredQueued {
  command: unknown;
  queuedAtMs: number;
}

/** Queue keys are "<child>\0<16-digit sequence>": in order per child. */
const seqKey = (id: string, seq: number): string => `${id}\u0000${String(seq).padStart(16, "0")}`;
/** The child and the sequence number of a seqKey. */
function parseSeqKey(k: string): { id: string; seq: number } {
  const sep = k.indexOf("\u0000");
  return { id: k.slice(0, sep), seq: Number(k.slice(sep + 1)) };
}

/** One open control channel. */
export interface ChildSession {
  nodeId: string;
  role: string;
  sink: StreamSink<ConnectResponse>;
  connectedAt: number;
  lastReport: number;
  status: Status | undefined;
  pending: Map<string, (r: CommandResult) => void>;
  open: boolean;
  /** Ends the stream (when a newer session for the same child replaces it). */
  close: () => void;
}

/** The children of a center. */
export class Children {
  private readonly sessions = new Map<string, ChildSession>();
  private readonly known = new Map<string, ChildState>();
  private readonly col: Collection<unknown>;
  /** Commands waiting for offline children: "<child>\0<16-digit seq>" → Command JSON. */
  private readonly queue: Collection<unknown>;
  private readonly queuedCount = new Map<string, number>();
  private queueSeq = 0;
  /** How delivered queued commands ended, per child, newest first ("<child>\0<seq>" keys). */
  private readonly outcomesCol: Collection<unknown>;
  private readonly outcomes = new Map<string, { key: string; outcome: QueuedCommandOutcome }[]>();
  private outcomeSeq = 0;
  private readonly persistedAt = new Map<string, number>();
  private readonly persistedStatus = new Map<string, Status | undefined>();

  constructor(
    private readonly store: NodeStore,
    private readonly offlineAfterMs: number,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.col = store.collection<unknown>("passon-children");
    this.queue = store.collection<unknown>("passon-queued-commands");
    this.outcomesCol = store.collection<unknown>("passon-queued-outcomes");
  }

  /** Loads the last known state of every child and the commands queued for them. */
  async open(): Promise<void> {
    for await (const [id, v] of this.col.entries()) this.known.set(id, { ...ChildState.fromJSON(v), online: false });
    for await (const [k] of this.queue.entries()) {
      const { id, seq } = parseSeqKey(k);
      this.queuedCount.set(id, (this.queuedCount.get(id) ?? 0) + 1);
      this.queueSeq = Math.max(this.queueSeq, seq);
    }
    for await (const [k, v] of this.outcomesCol.entries()) {
      const { id, seq } = parseSeqKey(k);
      const list = this.outcomes.get(id) ?? [];
      list.unshift({ key: k, outcome: QueuedCommandOutcome.fromJSON(v) }); // keys ascend: newest ends first
      this.outcomes.set(id, list);
      this.outcomeSeq = Math.max(this.outcomeSeq, seq);
    }
  }

  /** Stores a command for a child that is offline; drain() delivers it once it reconnects. */
  async enqueue(id: string, action: Command["action"]): Promise<void> {
    const stored: StoredQueued = { command: CommandCodec.toJSON({ commandId: "", action }), queuedAtMs: this.now() };
    await this.queue.put(seqKey(id, ++this.queueSeq), stored);
    this.queuedCount.set(id, (this.queuedCount.get(id) ?? 0) + 1);
  }

  /**
   * Delivers a child's queued commands in order, each forgotten once the child answered it
   * and its outcome recorded (ChildState.queued_outcomes: applied, or refused with the
   * child's reason — a queued install whose lease ended meanwhile, a version that is no
   * longer newer). Stops, keeping the rest, when the child goes offline or does not answer
   * in time; the next connect resumes.
   */
  async drain(id: string, timeoutMs: number): Promise<void> {
    if (!this.queuedCount.get(id)) return;
    for await (const [k, v] of this.queue.prefixed(`${id}\u0000`)) {
      // Entries queued before outcomes were kept are the bare Command.
      const stored = v as Partial<StoredQueued>;
      const action = CommandCodec.fromJSON(stored.command ?? v).action;
      const queuedAt = stored.queuedAtMs !== undefined ? new Date(stored.queuedAtMs) : undefined;
      let refusal: { reason: string; message: string } | undefined;
      try {
        await this.command(id, action, timeoutMs);
        this.log.info({ child: id, command: action?.$case }, "queued command delivered");
      } catch (err) {
        if (err instanceof UnavailableError || err instanceof DeadlineExceededError) return;
        refusal = { reason: (err as { reason?: string }).reason ?? "CHILD_FAILED", message: (err as Error).message };
        this.log.warn({ child: id, command: action?.$case, err: refusal.message }, "queued command refused by the child");
      }
      const outcome: QueuedCommandOutcome = {
        kind: action?.$case === "install" ? QueuedCommandKind.INSTALL : QueuedCommandKind.EXPIRE,
        app: action?.$case === "install" || action?.$case === "expire" ? action.value.name : "",
        version: action?.$case === "install" ? action.value.version : 0,
        ...(queuedAt ? { queuedAt } : {}),
        answeredAt: new Date(this.now()),
        applied: refusal === undefined,
        errorReason: refusal?.reason ?? "",
        errorMessage: refusal?.message ?? "",
      };
      await this.recordOutcome(id, k, outcome);
      this.queuedCount.set(id, Math.max(0, (this.queuedCount.get(id) ?? 1) - 1));
    }
  }

  /** Forgets queue entry `queueKey` and records how it ended, in one batch; keeps the newest KEPT_OUTCOMES. */
  private async recordOutcome(id: string, queueKey: string, outcome: QueuedCommandOutcome): Promise<void> {
    const key = seqKey(id, ++this.outcomeSeq);
    const list = [{ key, outcome }, ...(this.outcomes.get(id) ?? [])];
    const dropped = list.splice(KEPT_OUTCOMES);
    const b = this.store.batch().del(this.queue, queueKey).put(this.outcomesCol, key, QueuedCommandOutcome.toJSON(outcome));
    for (const d of dropped) b.del(this.outcomesCol, d.key);
    await b.write();
    this.outcomes.set(id, list);
  }

  /** Registers a child's new session, replacing (and closing) an older one. */
  attach(s: ChildSession): void {
    const old = this.sessions.get(s.nodeId);
    if (old && old !== s) {
      this.log.info({ child: s.nodeId }, "child reconnected; closing its previous control channel");
      old.open = false;
      old.close();
    }
    this.sessions.set(s.nodeId, s);
    this.update(s);
  }

  /** Marks a session closed. */
  detach(s: ChildSession): void {
    s.open = false;
    for (const resolve of s.pending.values()) resolve({ commandId: "", code: 14, message: `child ${s.nodeId} went offline before answering`, reason: "CHILD_OFFLINE" });
    s.pending.clear();
    if (this.sessions.get(s.nodeId) === s) this.sessions.delete(s.nodeId);
    void this.persist(s.nodeId);
  }

  /** Records a report from the child. */
  update(s: ChildSession): void {
    s.lastReport = this.now();
    const st = s.status;
    this.known.set(s.nodeId, {
      nodeId: s.nodeId,
      role: s.role,
      online: true,
      lastReport: new Date(s.lastReport),
      connectedAt: new Date(s.connectedAt),
      apps: st?.apps ?? [],
      queuedRecords: st?.queuedRecords ?? 0n,
      queuedDiffs: st?.queuedDiffs ?? 0n,
      queuedCommands: BigInt(this.queuedCount.get(s.nodeId) ?? 0),
      queuedOutcomes: [],
      ...(st?.delegationNotAfter ? { delegationNotAfter: st.delegationNotAfter } : {}),
      descendants: (st?.descendants ?? []).map((d) => d.nodeId),
    });
    // Every control message is a report, billing batches included (many a second under
    // load): write the state through at most once a second per child (detach writes the
    // final state), so the persisted last report is at most a second old.
    const last = this.persistedAt.get(s.nodeId) ?? 0;
    if (s.lastReport - last >= PERSIST_EVERY_MS || s.status !== this.persistedStatus.get(s.nodeId)) {
      this.persistedAt.set(s.nodeId, s.lastReport);
      this.persistedStatus.set(s.nodeId, s.status);
      void this.persist(s.nodeId);
    }
  }

  private async persist(id: string): Promise<void> {
    const k = this.known.get(id);
    if (k) await this.col.put(id, ChildState.toJSON({ ...k, online: false })).catch((err: unknown) => this.log.warn({ err }, "could not persist child state"));
  }

  /** The open session of a child whose reports are fresh, or undefined. */
  live(id: string): ChildSession | undefined {
    const s = this.sessions.get(id);
    return s && s.open && this.now() - s.lastReport < this.offlineAfterMs ? s : undefined;
  }

  /** True when `id` has ever connected. */
  knows(id: string): boolean {
    return this.known.has(id);
  }

  /** Every known child with its true online state, plus what it reported of its descendants. */
  states(): ChildState[] {
    const out: ChildState[] = [];
    for (const [id, k] of [...this.known].sort(([a], [b]) => a.localeCompare(b))) {
      out.push({ ...k, online: this.live(id) !== undefined, queuedCommands: BigInt(this.queuedCount.get(id) ?? 0), queuedOutcomes: (this.outcomes.get(id) ?? []).map((o) => o.outcome) });
      const s = this.sessions.get(id);
      for (const d of s?.status?.descendants ?? []) out.push({ ...d, online: d.online && this.live(id) !== undefined });
    }
    return out;
  }

  /** Sends a command to a child and waits for its result; failures become errors with the child's status. */
  async command(id: string, action: Command["action"], timeoutMs: number): Promise<CommandResult> {
    const s = this.live(id);
    if (!s) {
      if (!this.knows(id)) throw new NotFoundError(`no child node ${id}`, { reason: "NODE_NOT_FOUND", domain: DOMAIN, metadata: { node: id } });
      throw new UnavailableError(`child ${id} is offline (its control channel is closed)`, { reason: "CHILD_OFFLINE", domain: DOMAIN, metadata: { node: id }, retryDelayMs: 2000 });
    }
    const commandId = randomUUID();
    const result = await new Promise<CommandResult | undefined>((resolve) => {
      const timer = setTimeout(() => {
        s.pending.delete(commandId);
        resolve(undefined);
      }, timeoutMs);
      timer.unref();
      s.pending.set(commandId, (r) => {
        clearTimeout(timer);
        s.pending.delete(commandId);
        resolve(r);
      });
      s.sink.write({ message: { $case: "command", value: { commandId, action } } });
    });
    if (!result) throw new DeadlineExceededError(`child ${id} did not answer within ${timeoutMs} ms`, { reason: "CHILD_TIMEOUT", domain: DOMAIN });
    if (result.code !== 0) {
      throw new ForwardedError({ code: result.code, message: `${id}: ${result.message}`, errorInfo: { reason: result.reason || "CHILD_FAILED", domain: DOMAIN, metadata: { node: id } } });
    }
    return result;
  }

  /** Resolves a pending command with the child's result. */
  resolve(s: ChildSession, r: CommandResult): void {
    s.pending.get(r.commandId)?.(r);
  }

  /** Open sessions. */
  get online(): ChildSession[] {
    return [...this.sessions.values()].filter((s) => this.live(s.nodeId));
  }
}
