/** Messages between a worker and its render child processes (IPC, advanced serialization). */

/** Opens a document in the child (kept until closed or evicted). */
export interface OpenRequest {
  id: number;
  op: "open";
  /** Key the parent uses for this document (e.g. result id). */
  key: string;
  data: Uint8Array;
  password: string;
}

/** Renders one page of an open document to JPEG. */
export interface RenderRequest {
  id: number;
  op: "render";
  key: string;
  /** 1-based page number. */
  page: number;
  dpi: number;
  mono: boolean;
  quality: number;
  /** Largest width × height allowed, checked before a canvas is created. */
  maxPixels: number;
  /** Write the JPEG to this file and answer with its size instead of its bytes. */
  out?: string;
}

/** Forgets a document. */
export interface CloseRequest {
  id: number;
  op: "close";
  key: string;
}

/** Anything the parent sends. */
export type ChildRequest = OpenRequest | RenderRequest | CloseRequest;

/** Failure kinds the child reports (mapped to ConvertErrors by the parent). */
export type RenderFailure =
  | { kind: "CORRUPT"; message: string }
  | { kind: "PASSWORD_REQUIRED" }
  | { kind: "PASSWORD_INCORRECT" }
  | { kind: "PRINTING_NOT_ALLOWED" }
  | { kind: "PAGE_TOO_LARGE"; pixels: number }
  | { kind: "NOT_OPEN" }
  | { kind: "ERROR"; message: string };

/** The child's answer to one request. */
export type ChildResponse =
  | { id: number; ok: true; numPages?: number; jpeg?: Uint8Array; size?: number; width?: number; height?: number; renderMs?: number; encodeMs?: number }
  | { id: number; ok: false; failure: RenderFailure };
