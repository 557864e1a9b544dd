/** Test certificates made with openssl: a CA, a server certificate for 127.0.0.1/localhost, client certificates by CN. */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

/** Files of a test PKI; `clients[cn]` holds each client certificate and key. */
export interface TestPki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clients: Record<string, { cert: string; key: string }>;
}

/** Makes a CA, a server certificate and one client certificate per CN in `dir`. */
export function makePki(dir: string, clientCns: readonly string[] = ["operator-1"]): TestPki {
  const p = (f: string): string => join(dir, f);
  const ssl = (...args: string[]): void => {
    execFileSync("openssl", args, { stdio: "ignore" });
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  ssl("req", "-x509", ...ec, "-days", "2", "-subj", "/CN=switchyard-test-ca", "-keyout", p("ca.key"), "-out", p("ca.pem"));
  writeFileSync(p("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  const issue = (file: string, cn: string, ext: string[]): void => {
    // -subj needs '/' and '\' escaped inside a value; test CNs avoid both.
    ssl("req", ...ec, "-subj", `/CN=${cn}`, "-keyout", p(`${file}.key`), "-out", p(`${file}.csr`));
    ssl("x509", "-req", "-in", p(`${file}.csr`), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "2", "-out", p(`${file}.pem`), ...ext);
  };
  issue("server", "localhost", ["-extfile", p("server.ext")]);
  const clients: TestPki["clients"] = {};
  clientCns.forEach((cn, i) => {
    issue(`client-${i}`, cn, []);
    clients[cn] = { cert: p(`client-${i}.pem`), key: p(`client-${i}.key`) };
  });
  return { ca: p("ca.pem"), serverCert: p("server.pem"), serverKey: p("server.key"), clients };
}

/** Client TLS settings (CA + the client certificate of `cn`, or none) for a channel or a node's clientTls. */
export function clientTls(pki: TestPki, cn?: string): { caFile: string; certFile?: string; keyFile?: string } {
  if (cn === undefined) return { caFile: pki.ca };
  const c = pki.clients[cn];
  if (!c) throw new Error(`no client certificate for ${cn} in this PKI`);
  return { caFile: pki.ca, certFile: c.cert, keyFile: c.key };
}

/** Server TLS settings of a node requiring client certificates from the test CA (mTLS). */
export function mtlsServer(pki: TestPki): { certFile: string; keyFile: string; clientCaFile: string; requireClientCert: true } {
  return { certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.ca, requireClientCert: true };
}
