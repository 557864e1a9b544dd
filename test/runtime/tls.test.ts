import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { status as Status, type ServiceError } from "@grpc/grpc-js";
import { NodeClient, ServingStatus } from "../../clients/node/index.js";
import { bareRole } from "../../servers/bare/role.js";
import { onCleanup, startTestNode, tempDir } from "../helpers/nodes.js";

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
function makePki(dir: string): Record<"ca" | "serverCert" | "serverKey" | "clientCert" | "clientKey", string> {
  const p = (f: string): string => join(dir, f);
  const ssl = (...args: string[]): void => {
    execFileSync("openssl", args, { stdio: "ignore" });
  };
  ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=switchyard-test-ca", "-keyout", p("ca.key"), "-out", p("ca.pem"));
  writeFileSync(p("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  for (const [name, cn, ext] of [["server", "localhost", ["-extfile", p("server.ext")]], ["client", "operator-1", []]] as const) {
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${cn}`, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`));
    ssl("x509", "-req", "-in", p(`${name}.csr`), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "2", "-out", p(`${name}.pem`), ...ext);
  }
  return { ca: p("ca.pem"), serverCert: p("server.pem"), serverKey: p("server.key"), clientCert: p("client.pem"), clientKey: p("client.key") };
}

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
      config: { tls: { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.ca, requireClientCert: true } },
    });
    const deadline = (): number => Date.now() + 3000;
    const ok = client(node.address, { tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } });
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
