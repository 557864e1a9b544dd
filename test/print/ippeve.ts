/**
 * Starts CUPS's `ippeveprinter` (Debian cups-ipp-utils) on localhost with a free port.
 *
 * ippeveprinter 2.4.2 always creates an Avahi client at start-up, and that needs a
 * D-Bus *system* bus: without one it exits with "Unable to initialize DNS-SD" even with
 * `-r off`. The Avahi daemon itself is not needed (the client is created with
 * AVAHI_CLIENT_NO_FAIL and waits in state 101, "connecting"), and `-r off` skips the
 * service registration (which would otherwise abort on a NULL entry group). So each
 * printer gets a private dbus-daemon on a socket in its temp folder, passed in
 * DBUS_SYSTEM_BUS_ADDRESS; nothing system-wide is started. `-n localhost` makes it
 * listen on 127.0.0.1 and ::1 only.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { join } from "node:path";
import { ippCapabilities } from "../../servers/print/device/ipp-device.js";
import { eventually, onCleanup, tempDir } from "../helpers/nodes.js";

/** A running ippeveprinter. */
export interface IppEvePrinter {
  uri: string;
  port: number;
  /** Spool folder (-d): received documents (kept with -k) and the command's output. */
  spool: string;
  /** What ippeveprinter wrote to stderr so far. */
  log(): string;
  /** Files in the spool folder. */
  files(): string[];
  /** The same printer over TLS (ippeveprinter answers both on one port, with a self-signed certificate). */
  ippsUri: string;
  /** The printer's self-signed certificate (PEM) and its SHA-256 fingerprint; ippeveprinter makes it at the first TLS connection. */
  certificate(): Promise<{ pem: string; sha256: string }>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    c.once("exit", () => resolve());
    c.kill("SIGTERM");
    setTimeout(() => c.kill("SIGKILL"), 3000).unref();
  });
}

/** Starts a private D-Bus bus; returns its address. */
async function privateBus(dir: string): Promise<{ address: string; child: ChildProcess }> {
  const socket = join(dir, "bus.sock");
  const config = join(dir, "bus.conf");
  writeFileSync(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/>
    <allow send_type="method_call"/><allow send_type="signal"/><allow send_type="method_return"/><allow send_type="error"/>
    <allow receive_type="method_call"/><allow receive_type="signal"/><allow receive_type="method_return"/><allow receive_type="error"/>
  </policy>
</busconfig>
`,
  );
  const child = spawn("dbus-daemon", ["--config-file", config, "--nofork", "--nopidfile"], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const failed = new Promise<never>((_, reject) => {
    child.once("error", (e) => reject(new Error(`dbus-daemon: ${e.message} (install the dbus-daemon package: tools/scripts/install-system-deps.sh)`)));
    child.once("exit", (code) => reject(new Error(`dbus-daemon exited ${code}: ${err}`)));
  });
  failed.catch(() => undefined);
  await Promise.race([eventually(() => existsSync(socket), 10_000), failed]);
  return { address: `unix:path=${socket}`, child };
}

/** Options of startIppEvePrinter. */
export interface IppEveOptions {
  /** Colour printer (`-s 10,5`: srgb_8 besides black_1/sgray_8). */
  color?: boolean;
  /** Print command (`-c`), e.g. /usr/sbin/ippevepcl; without one ippeveprinter "prints" by sleeping 5–15 s. */
  command?: string;
  /** Document formats (`-f`). */
  formats?: string;
}

/** Starts an ippeveprinter (and its private bus), stopped after the test. */
export async function startIppEvePrinter(o: IppEveOptions = {}): Promise<IppEvePrinter> {
  const dir = tempDir();
  const spool = join(dir, "spool");
  mkdirSync(spool);
  const bus = await privateBus(dir);
  const port = await freePort();
  const keys = join(dir, "keys");
  mkdirSync(keys);
  // -K: its TLS key and self-signed certificate go here, not into a shared keychain.
  const args = ["-p", String(port), "-n", "localhost", "-r", "off", "-d", spool, "-k", "-K", keys];
  if (o.color) args.push("-s", "10,5");
  if (o.command) args.push("-c", o.command);
  if (o.formats) args.push("-f", o.formats);
  args.push("Switchyard Test");
  const child = spawn("ippeveprinter", args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus.address } });
  let log = "";
  child.stdout?.on("data", (d: Buffer) => (log += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (log += d.toString()));
  const stop = async (): Promise<void> => {
    await stopChild(child);
    await stopChild(bus.child);
  };
  onCleanup(stop);
  const uri = `ipp://localhost:${port}/ipp/print`;
  const exited = new Promise<never>((_, reject) => {
    child.once("error", (e) => reject(new Error(`ippeveprinter: ${e.message} (install cups-ipp-utils: tools/scripts/install-system-deps.sh)`)));
    child.once("exit", (code) => reject(new Error(`ippeveprinter exited ${code}: ${log.slice(-2000)}`)));
  });
  exited.catch(() => undefined);
  await Promise.race([eventually(() => ippCapabilities(uri, { timeoutMs: 2000 }), 15_000), exited]);
  const certificate = (): Promise<{ pem: string; sha256: string }> =>
    new Promise((resolve, reject) => {
      const s = tlsConnect({ host: "localhost", port, rejectUnauthorized: false }, () => {
        const cert = s.getPeerCertificate();
        s.destroy();
        const pem = `-----BEGIN CERTIFICATE-----\n${(cert.raw.toString("base64").match(/.{1,64}/g) ?? []).join("\n")}\n-----END CERTIFICATE-----\n`;
        resolve({ pem, sha256: cert.fingerprint256 });
      });
      s.once("error", reject);
      // Its first TLS connection makes the certificate; a handshake that never ends fails here, with its log.
      s.setTimeout(20_000, () => {
        s.destroy();
        reject(new Error(`no TLS handshake from ippeveprinter within 20 s: ${log.slice(-2000)}`));
      });
    });
  return { uri, ippsUri: uri.replace(/^ipp:/, "ipps:"), port, spool, log: () => log, files: () => readdirSync(spool).sort(), certificate, stop };
}
