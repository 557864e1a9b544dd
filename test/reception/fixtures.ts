/** Test fixtures: a reception with content servers, keys derived the way operators do. */
import { randomBytes } from "node:crypto";
import type { RunningNode } from "../../servers/runtime/node.js";
import { contentServerRole, receptionRole, deriveServerKey, type ContentServerInstance, type ReceptionInstance } from "../../servers/reception/index.js";
import { ReceptionClient, ContentServerClient } from "../../clients/reception/index.js";
import { eventually, onCleanup, startTestNode } from "../helpers/nodes.js";

/** A fresh master key (hex). */
export function masterKey(): string {
  return randomBytes(32).toString("hex");
}

/** The ticketKeys section a content server gets for `serverId`. */
export function serverKeys(master: string, serverId: string, keyId = "k1"): { id: string; secret: string }[] {
  return [{ id: keyId, secret: deriveServerKey(Buffer.from(master, "hex"), keyId, serverId).toString("hex") }];
}

/** A small test cluster. */
export interface TestCluster {
  master: string;
  reception: RunningNode;
  servers: RunningNode[];
  rc: ReceptionClient;
  content: (i: number) => ContentServerClient;
  core: (i: number) => ContentServerInstance["core"];
  rcore: ReceptionInstance["reception"];
}

/** Options of `startCluster`. */
export interface ClusterOptions {
  servers?: number;
  capacity?: number;
  reception?: Record<string, unknown>;
  content?: Record<string, unknown>;
  /** Items every server gets (seeded). */
  seed?: { itemId: string; kind: string; bytes: number }[];
}

/** Starts a reception and `servers` content servers in this process; waits until all are active. */
export async function startCluster(o: ClusterOptions = {}): Promise<TestCluster> {
  const master = masterKey();
  const reception = await startTestNode(receptionRole, {
    id: "reception-t",
    roleConfig: { masterKeys: [{ id: "k1", secret: master }], staleAfter: "1500ms", reportInterval: "300ms", ...o.reception },
  });
  const servers: RunningNode[] = [];
  for (let i = 0; i < (o.servers ?? 2); i++) {
    const id = `content-${i + 1}`;
    servers.push(
      await startTestNode(contentServerRole, {
        id,
        roleConfig: {
          receptions: [reception.address],
          capacity: o.capacity ?? 4,
          ticketKeys: serverKeys(master, id),
          reportInterval: "300ms",
          seed: o.seed ?? [{ itemId: "hello.txt", kind: "text", bytes: 3000 }],
          ...o.content,
        },
      }),
    );
  }
  const rc = new ReceptionClient(reception.address);
  onCleanup(() => rc.close());
  const clients = new Map<number, ContentServerClient>();
  const rcore = (reception.role as ReceptionInstance).reception;
  await eventually(() => servers.every((s) => rcore.table.entries.get(s.config.node.id)?.load !== undefined), 10_000);
  return {
    master,
    reception,
    servers,
    rc,
    rcore,
    core: (i) => (servers[i]?.role as ContentServerInstance).core,
    content: (i) => {
      let c = clients.get(i);
      if (!c) {
        c = new ContentServerClient(servers[i]?.address as string);
        clients.set(i, c);
        onCleanup(() => c?.close());
      }
      return c;
    },
  };
}
