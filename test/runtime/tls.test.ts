import assert from "node:assert/strict";
import { status as Status, type ServiceError } from "@grpc/grpc-js";
import { NodeClient, ServingStatus } from "../../clients/node/index.js";
import { bareRole } from "../../servers/bare/role.js";
import { onCleanup, startTestNode, tempDir } from "../helpers/nodes.js";
import { clientTls, makePki, mtlsServer } from "../helpers/pki.js";

function client(address: string, tls?: ConstructorParameters<typeof NodeClient>[1]): NodeClient {
  const c = new NodeClient(address, tls);
  onCleanup(() => c.close());
  return c;
}

describe("TLS", () => {
  it("serves over TLS and, with requireClientCert, admits only clients with a certificate from the CA", async function () {
    this.timeout(30_000);
    const pki = makePki(tempDir());
    const node = await startTestNode(bareRole, {
      config: { tls: mtlsServer(pki) },
    });
    const deadline = (): number => Date.now() + 3000;
    const ok = client(node.address, { tls: clientTls(pki, "operator-1") });
    assert.equal(await ok.check("", { deadline: deadline() }), ServingStatus.SERVING);

    const noCert = client(node.address, { tls: { caFile: pki.ca } });
    await assert.rejects(noCert.check("", { deadline: deadline() }), (e: ServiceError) => e.code === Status.UNAVAILABLE);

    const plaintext = client(node.address);
    await assert.rejects(plaintext.check("", { deadline: deadline() }), (e: ServiceError) => e.code === Status.UNAVAILABLE);
  });

  it("serves TLS without client certificates when requireClientCert is off", async function () {
    this.timeout(30_000);
    const pki = makePki(tempDir());
    const node = await startTestNode(bareRole, { config: { tls: { certFile: pki.serverCert, keyFile: pki.serverKey } } });
    const c = client(node.address, { tls: { caFile: pki.ca } });
    assert.equal((await c.info()).role, "bare");
  });
});
