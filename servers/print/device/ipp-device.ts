/**
 * A device that forwards each job to a real IPP printer (IPP Everywhere): it reads the
 * printer's capabilities with Get-Printer-Attributes, turns the pages into the PWG Raster
 * the printer takes (a raster type, resolution and media it lists), sends them with
 * Create-Job + Send-Document (or Print-Job) while later pages are still being fetched,
 * then follows the job with Get-Job-Attributes and reports how it ended. Failures come
 * back as the job's status with a stable reason (IPP_*).
 */
import sharp from "sharp";
import { PrintOutcome, type DeviceHandler, type DeviceResult, type FetchedPage, type PrintRequest } from "../../../clients/printer/index.js";
import { ColorMode } from "../../../gen/switchyard/print/v1/print_job.js";
import { encodeRequest, first, ipp, ippCall, IppError, IppOp, nextId, printerUriValue, strings, Tag, type IppAttributes, type IppCall, type IppRequestOptions, type IppTls, type OutAttribute, type Resolution } from "./ipp.js";
import { pwgHeader, pwgPageData, PWG_SYNC } from "./pwg.js";
import { halftoneGrey, type DevicePage } from "./raster.js";

/** Options of an IPP device. */
export interface IppDeviceOptions {
  /** Printer URI, e.g. ipp://printer.local:631/ipp/print. */
  uri: string;
  /** Send colour when the job is colour and the printer can (false: always monochrome). */
  color: boolean;
  /** Time limit of each IPP request (the document upload's is per page). */
  requestTimeoutMs: number;
  /** How long to follow a job until it completes before reporting IPP_JOB_TIMEOUT. */
  jobTimeoutMs: number;
  /** Interval of Get-Job-Attributes while following a job. */
  pollMs: number;
  /** requesting-user-name. */
  userName: string;
  /** Certificate check of an ipps:// printer. */
  tls?: IppTls;
  /** Media keyword to use instead of matching the page size (must be in media-supported). */
  media?: string;
  /** Called after each page is sent. */
  onPage?: (jobId: string, page: number) => void;
  /** Called when the printer accepted a job (its IPP job id). */
  onJob?: (jobId: string, ippJobId: number) => void;
}

/** What the printer says it takes. */
export interface IppCapabilities {
  formats: string[];
  /** pwg-raster-document-resolution-supported, in dpi (square only). */
  resolutions: number[];
  /** pwg-raster-document-type-supported, e.g. black_1, sgray_8, srgb_8. */
  rasterTypes: string[];
  media: { name: string; widthMm: number; heightMm: number }[];
  mediaDefault: string;
  colorModes: string[];
  printerResolutions: Resolution[];
  operations: number[];
  accepting: boolean;
  state: number;
  stateReasons: string[];
}

const JOB_STATE = { PENDING: 3, HELD: 4, PROCESSING: 5, STOPPED: 6, CANCELED: 7, ABORTED: 8, COMPLETED: 9 } as const;

/** Width and height in mm of a self-describing PWG media name (PWG 5101.1), e.g. iso_a4_210x297mm. */
export function mediaSize(name: string): { widthMm: number; heightMm: number } | undefined {
  const m = /_(\d+(?:\.\d+)?)x(\d+(?:\.\d+)?)(mm|in)$/.exec(name);
  if (!m) return undefined;
  const k = m[3] === "in" ? 25.4 : 1;
  return { widthMm: Number(m[1]) * k, heightMm: Number(m[2]) * k };
}

const toDpi = (r: Resolution): number => (r.units === 4 ? Math.round(r.x * 2.54) : r.x);

/** Reads the printer's capabilities (Get-Printer-Attributes). */
export async function ippCapabilities(uri: string, o: IppRequestOptions): Promise<IppCapabilities> {
  const r = await ipp(
    uri,
    IppOp.GET_PRINTER_ATTRIBUTES,
    [
      {
        tag: Tag.KEYWORD,
        name: "requested-attributes",
        values: [
          "document-format-supported",
          "pwg-raster-document-resolution-supported",
          "pwg-raster-document-type-supported",
          "media-supported",
          "media-ready",
          "media-default",
          "print-color-mode-supported",
          "printer-resolution-supported",
          "operations-supported",
          "printer-is-accepting-jobs",
          "printer-state",
          "printer-state-reasons",
        ],
      },
      { tag: Tag.MIME_TYPE, name: "document-format", values: ["image/pwg-raster"] },
    ],
    o,
  );
  const p: IppAttributes = r.groups.find((g) => g.tag === Tag.PRINTER)?.attrs ?? new Map();
  const res = (p.get("pwg-raster-document-resolution-supported") ?? []).filter((v): v is Resolution => typeof v === "object" && v !== null && "units" in v);
  const names = [...strings(p, "media-ready"), ...strings(p, "media-supported")];
  const media = [...new Set(names)].flatMap((name) => {
    const s = mediaSize(name);
    return s ? [{ name, ...s }] : [];
  });
  return {
    formats: strings(p, "document-format-supported"),
    resolutions: res.filter((v) => v.x === v.y).map(toDpi),
    rasterTypes: strings(p, "pwg-raster-document-type-supported"),
    media,
    mediaDefault: strings(p, "media-default")[0] ?? "",
    colorModes: strings(p, "print-color-mode-supported"),
    printerResolutions: (p.get("printer-resolution-supported") ?? []).filter((v): v is Resolution => typeof v === "object" && v !== null && "units" in v),
    operations: (p.get("operations-supported") ?? []).filter((v): v is number => typeof v === "number"),
    accepting: first(p, "printer-is-accepting-jobs") !== false,
    state: (first(p, "printer-state") as number | undefined) ?? 3,
    stateReasons: strings(p, "printer-state-reasons"),
  };
}

/** How one job is sent: chosen from the capabilities and the first page. */
export interface IppPlan {
  mode: "black" | "sgray" | "srgb";
  dpi: number;
  /** Media keyword ("" when the printer lists none it can describe). */
  media: string;
  widthMm: number;
  heightMm: number;
  colorMode: "color" | "monochrome" | "";
}

/** Whether media `m` takes a page of `pageMm` (within 3 mm, either orientation). */
function mediaFits(m: { widthMm: number; heightMm: number }, pageMm: { widthMm: number; heightMm: number }): boolean {
  return (Math.abs(m.widthMm - pageMm.widthMm) <= 3 && Math.abs(m.heightMm - pageMm.heightMm) <= 3) || (Math.abs(m.widthMm - pageMm.heightMm) <= 3 && Math.abs(m.heightMm - pageMm.widthMm) <= 3);
}

/**
 * The plan for one page of a job: a page of another size than the first (a Legal page in
 * a Letter document) goes on the listed media that fits it, named in its own PWG page
 * header (PageSize, cupsPageSizeName), so a printer that feeds media per page prints it
 * at its size; a page no listed media fits is scaled onto the job's media. A configured
 * media override applies to every page.
 */
export function planForPage(plan: IppPlan, caps: IppCapabilities, pageMm: { widthMm: number; heightMm: number }, mediaOverride?: string): IppPlan {
  if (mediaOverride || mediaFits(plan, pageMm)) return plan;
  const m = caps.media.find((x) => mediaFits(x, pageMm));
  return m ? { ...plan, media: m.name, widthMm: m.widthMm, heightMm: m.heightMm } : plan;
}

/** A page's size in mm from its JPEG (pixels at `dpi`). */
async function jpegPageMm(jpeg: Buffer, dpi: number): Promise<{ widthMm: number; heightMm: number }> {
  const meta = await sharp(jpeg).metadata();
  return { widthMm: ((meta.width ?? 0) / dpi) * 25.4, heightMm: ((meta.height ?? 0) / dpi) * 25.4 };
}

/** Picks raster type, resolution and media for a job whose first page is `pageMm` at `dpi`. */
export function planJob(caps: IppCapabilities, wantColor: boolean, dpi: number, pageMm: { widthMm: number; heightMm: number }, mediaOverride?: string): IppPlan {
  if (!caps.formats.includes("image/pwg-raster")) {
    throw new IppError(`the printer takes ${caps.formats.join(", ") || "no listed format"}, not image/pwg-raster`, "IPP_FORMAT_NOT_SUPPORTED");
  }
  let mode: IppPlan["mode"];
  // The printer screens grey and colour itself (better than our 8×8 ordered dither);
  // black_1 (our halftone) only when it takes nothing else.
  if (wantColor && caps.rasterTypes.includes("srgb_8") && (caps.colorModes.length === 0 || caps.colorModes.includes("color"))) mode = "srgb";
  else if (caps.rasterTypes.includes("sgray_8")) mode = "sgray";
  else if (caps.rasterTypes.includes("black_1")) mode = "black";
  else throw new IppError(`the printer takes PWG raster types ${caps.rasterTypes.join(", ") || "(none listed)"}; need sgray_8, black_1 or srgb_8`, "IPP_RASTER_TYPE_NOT_SUPPORTED");
  const sorted = [...new Set(caps.resolutions)].sort((a, b) => a - b);
  if (sorted.length === 0) throw new IppError("the printer lists no square pwg-raster-document-resolution-supported", "IPP_RESOLUTION_NOT_SUPPORTED");
  const chosenDpi = sorted.includes(dpi) ? dpi : (sorted.find((r) => r >= dpi) ?? (sorted[sorted.length - 1] as number));
  const fits = (m: { widthMm: number; heightMm: number }): boolean => mediaFits(m, pageMm);
  let media: { name: string; widthMm: number; heightMm: number } | undefined;
  if (mediaOverride) {
    const size = mediaSize(mediaOverride);
    if (!size) throw new IppError(`media ${mediaOverride} is not a self-describing PWG media name`, "IPP_MEDIA_NOT_SUPPORTED");
    media = { name: mediaOverride, ...size };
  } else {
    media = caps.media.find(fits) ?? caps.media.find((m) => m.name === caps.mediaDefault);
  }
  const colorMode = mode === "srgb" ? "color" : "monochrome";
  return {
    mode,
    dpi: chosenDpi,
    media: media?.name ?? "",
    widthMm: media?.widthMm ?? pageMm.widthMm,
    heightMm: media?.heightMm ?? pageMm.heightMm,
    colorMode: caps.colorModes.includes(colorMode) ? colorMode : "",
  };
}

/** Renders one fetched page as a PWG page of the plan: scaled to fit the media, centred, rotated if that fits better. */
export async function planPage(jpeg: Buffer, pageDpi: number, plan: IppPlan): Promise<DevicePage> {
  const W = Math.round((plan.widthMm / 25.4) * plan.dpi);
  const H = Math.round((plan.heightMm / 25.4) * plan.dpi);
  const meta = await sharp(jpeg).metadata();
  const landscapePage = (meta.width ?? 1) > (meta.height ?? 1);
  const img = sharp(jpeg).rotate(landscapePage !== W > H ? 90 : 0);
  // Page at the plan's resolution, never larger than the media.
  const scale = plan.dpi / pageDpi;
  const [pw, ph] = landscapePage !== W > H ? [meta.height ?? 1, meta.width ?? 1] : [meta.width ?? 1, meta.height ?? 1];
  const fit = Math.min(scale, W / pw, H / ph);
  const w = Math.max(1, Math.min(W, Math.round(pw * fit)));
  const h = Math.max(1, Math.min(H, Math.round(ph * fit)));
  const left = Math.floor((W - w) / 2);
  const top = Math.floor((H - h) / 2);
  const white = { r: 255, g: 255, b: 255, alpha: 1 };
  const placed = img.resize(w, h, { fit: "fill" }).extend({ left, right: W - w - left, top, bottom: H - h - top, background: white }).flatten({ background: white });
  if (plan.mode === "srgb") {
    const data = await placed.toColourspace("srgb").removeAlpha().raw().toBuffer();
    return { width: W, height: H, dpi: plan.dpi, mode: "srgb", data, bytesPerLine: W * 3 };
  }
  const { data, info } = await placed.toColourspace("b-w").raw().toBuffer({ resolveWithObject: true });
  if (plan.mode === "black") return halftoneGrey(data, W, H, info.channels, plan.dpi);
  const grey = info.channels === 1 ? data : Buffer.from(Array.from({ length: W * H }, (_, i) => data[i * info.channels] as number));
  return { width: W, height: H, dpi: plan.dpi, mode: "sgray", data: grey, bytesPerLine: W };
}

function jobAttrs(plan: IppPlan, caps: IppCapabilities, jobName: string): OutAttribute[] {
  const job: OutAttribute[] = [];
  if (plan.media && caps.media.some((m) => m.name === plan.media)) job.push({ tag: Tag.KEYWORD, name: "media", values: [plan.media] });
  if (plan.colorMode) job.push({ tag: Tag.KEYWORD, name: "print-color-mode", values: [plan.colorMode] });
  const res = caps.printerResolutions.find((r) => r.x === plan.dpi && r.y === plan.dpi && r.units === 3);
  if (res) job.push({ tag: Tag.RESOLUTION, name: "printer-resolution", values: [res] });
  void jobName;
  return job;
}

/** A device handler forwarding every job to the IPP printer at `o.uri`. */
export function ippDevice(o: IppDeviceOptions): DeviceHandler {
  const rq = (signal?: AbortSignal): IppRequestOptions => ({ timeoutMs: o.requestTimeoutMs, ...(signal ? { signal } : {}), ...(o.tls ? { tls: o.tls } : {}) });
  const user: OutAttribute = { tag: Tag.NAME, name: "requesting-user-name", values: [o.userName] };
  const cancel = async (ippJobId: number): Promise<void> => {
    await ipp(o.uri, IppOp.CANCEL_JOB, [{ tag: Tag.INTEGER, name: "job-id", values: [ippJobId] }, user], rq()).catch(() => undefined);
  };
  return async (req, pages, signal): Promise<DeviceResult> => {
    const caps = await ippCapabilities(o.uri, rq(signal));
    if (!caps.accepting) throw new IppError(`the printer is not accepting jobs (${caps.stateReasons.join(", ")})`, "IPP_PRINTER_NOT_ACCEPTING");
    if (caps.state === 5) throw new IppError(`the printer is stopped (${caps.stateReasons.join(", ")})`, "IPP_PRINTER_STOPPED");
    const it = pages[Symbol.asyncIterator]();
    try {
      return await forward(req, it, caps, signal);
    } finally {
      // Ends the metafile watch however the job ended.
      await it.return?.(undefined).catch(() => undefined);
    }
  };

  async function forward(req: PrintRequest, it: AsyncIterator<FetchedPage>, caps: IppCapabilities, signal: AbortSignal): Promise<DeviceResult> {
    const firstPage = await it.next();
    if (firstPage.done) return { outcome: PrintOutcome.DONE, reason: "", pagesPrinted: 0 };
    const p1: FetchedPage = firstPage.value;
    const dpi1 = p1.page.dpi || req.dpi;
    const plan = planJob(caps, o.color && req.colorMode !== ColorMode.MONOCHROME, dpi1, await jpegPageMm(p1.jpeg, dpi1), o.media);
    const jobName: OutAttribute = { tag: Tag.NAME, name: "job-name", values: [`switchyard ${req.jobId}`] };
    const format: OutAttribute = { tag: Tag.MIME_TYPE, name: "document-format", values: ["image/pwg-raster"] };
    const uri: OutAttribute = { tag: Tag.URI, name: "printer-uri", values: [printerUriValue(o.uri)] };
    const job = jobAttrs(plan, caps, req.jobId);
    let ippJobId = 0;
    let call: IppCall;
    if (caps.operations.includes(IppOp.CREATE_JOB) && caps.operations.includes(IppOp.SEND_DOCUMENT)) {
      const created = await ipp(o.uri, IppOp.CREATE_JOB, [user, jobName], { ...rq(signal), job });
      ippJobId = first(created.groups.find((g) => g.tag === Tag.JOB)?.attrs, "job-id") as number;
      if (!ippJobId) throw new IppError("Create-Job returned no job-id", "IPP_BAD_RESPONSE");
      o.onJob?.(req.jobId, ippJobId);
      call = ippCall(o.uri, encodeRequest(IppOp.SEND_DOCUMENT, nextId(), [uri, { tag: Tag.INTEGER, name: "job-id", values: [ippJobId] }, user, format, { tag: Tag.BOOLEAN, name: "last-document", values: [true] }]), rq());
    } else {
      call = ippCall(o.uri, encodeRequest(IppOp.PRINT_JOB, nextId(), [uri, user, jobName, format], job), rq());
    }
    let sent = 0;
    const stop = async (): Promise<void> => {
      call.abort();
      if (ippJobId) await cancel(ippJobId);
    };
    try {
      await call.write(PWG_SYNC);
      const send = async (fp: FetchedPage): Promise<void> => {
        const dpi = fp.page.dpi || req.dpi;
        const pagePlan = fp === p1 ? plan : planForPage(plan, caps, await jpegPageMm(fp.jpeg, dpi), o.media);
        const dp = await planPage(fp.jpeg, dpi, pagePlan);
        await call.write(Buffer.concat([pwgHeader(dp, fp.page.pageNumber, req.pageCount, { mediaName: pagePlan.media }), pwgPageData(dp)]));
        sent++;
        o.onPage?.(req.jobId, fp.page.pageNumber);
      };
      await send(p1);
      for (;;) {
        if (signal.aborted) {
          await stop();
          return { outcome: PrintOutcome.CANCELLED, reason: "JOB_CANCELLED", pagesPrinted: 0 };
        }
        const n = await it.next();
        if (n.done) break;
        await send(n.value);
      }
    } catch (err) {
      await stop();
      throw err;
    }
    const done = await call.finish();
    if (!ippJobId) ippJobId = first(done.groups.find((g) => g.tag === Tag.JOB)?.attrs, "job-id") as number;
    o.onJob?.(req.jobId, ippJobId);
    // Follow the job until the printer says how it ended.
    const deadline = Date.now() + o.jobTimeoutMs;
    for (;;) {
      const r = await ipp(
        o.uri,
        IppOp.GET_JOB_ATTRIBUTES,
        [
          { tag: Tag.INTEGER, name: "job-id", values: [ippJobId] },
          user,
          { tag: Tag.KEYWORD, name: "requested-attributes", values: ["job-state", "job-state-reasons", "job-state-message", "job-impressions", "job-impressions-completed"] },
        ],
        rq(),
      );
      const a = r.groups.find((g) => g.tag === Tag.JOB)?.attrs;
      const state = first(a, "job-state") as number | undefined;
      const reasons = strings(a, "job-state-reasons").join(", ");
      const impressions = (first(a, "job-impressions-completed") as number | undefined) || (first(a, "job-impressions") as number | undefined) || 0;
      if (state === JOB_STATE.COMPLETED) return { outcome: PrintOutcome.DONE, reason: "", pagesPrinted: impressions || sent };
      if (state === JOB_STATE.CANCELED) return { outcome: PrintOutcome.CANCELLED, reason: "IPP_JOB_CANCELED", pagesPrinted: impressions };
      if (state === JOB_STATE.ABORTED) throw new IppError(`the printer aborted job ${ippJobId} (${reasons})`, "IPP_JOB_ABORTED");
      if (signal.aborted) {
        await cancel(ippJobId);
        return { outcome: PrintOutcome.CANCELLED, reason: "JOB_CANCELLED", pagesPrinted: impressions };
      }
      if (Date.now() > deadline) throw new IppError(`job ${ippJobId} still in state ${state} (${reasons}) after ${o.jobTimeoutMs} ms`, "IPP_JOB_TIMEOUT");
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(t);
          signal.removeEventListener("abort", wake);
          resolve();
        };
        const t = setTimeout(wake, o.pollMs);
        signal.addEventListener("abort", wake, { once: true });
      });
    }
  }
}
