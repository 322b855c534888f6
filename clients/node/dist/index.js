// TypeScript/Node.js client of the CWP license export gateway.
//
// The generated API (protobuf-es messages and the LicenseExportService
// descriptor) is re-exported from here; CwpExportClient adds a small helper
// around Connect's gRPC transport: export with a request id, watch with
// automatic resume after Unavailable, download with a SHA-256 check, the
// field violations of an InvalidArgument, and the reason of any error (the
// ErrorReason enum).
import { createHash, randomUUID } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ExportLicenseDetailRequestSchema, ExportTaskState, FilterSchema, LicenseExportService, TagSchema, } from "./gen/cwpexport/v1/license_export_pb.js";
import { ErrorReason } from "./gen/cwpexport/v1/error_reason_pb.js";
import { BadRequestSchema, ErrorInfoSchema, } from "./gen/google/rpc/error_details_pb.js";
export * from "./gen/cwpexport/v1/license_export_pb.js";
export * from "./gen/cwpexport/v1/error_reason_pb.js";
export { BadRequestSchema, ErrorInfoSchema };
export { Code, ConnectError };
export { create } from "@bufbuild/protobuf";
/** The field violations of an InvalidArgument (google.rpc.BadRequest); empty when there are none. */
export function fieldViolations(err) {
    return ConnectError.from(err).findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations);
}
/** The error's google.rpc.ErrorInfo (reason, domain, metadata), if it carries one. */
export function errorInfo(err) {
    return ConnectError.from(err).findDetails(ErrorInfoSchema)[0];
}
/** The ErrorInfo domain of the service's errors. */
export const errorDomain = "cwpexport.v1";
/**
 * The service's reason for an error, as an ErrorReason value (its name is
 * the reason string: `ErrorReason[r]`); ERROR_REASON_UNSPECIFIED when the
 * error carries none, or one this package does not know (a newer server's).
 */
export function errorReason(err) {
    const info = ConnectError.from(err).findDetails(ErrorInfoSchema).find((i) => i.domain === errorDomain);
    const value = info && ErrorReason[info.reason];
    return typeof value === "number" ? value : ErrorReason.ERROR_REASON_UNSPECIFIED;
}
/** The service answered InvalidArgument; `violations` lists what to fix. */
export class InvalidRequestError extends Error {
    cause;
    violations;
    reason;
    constructor(cause) {
        super(cause.rawMessage || "invalid request");
        this.cause = cause;
        this.name = "InvalidRequestError";
        this.violations = fieldViolations(cause);
        this.reason = errorInfo(cause)?.reason ?? "";
    }
}
/** The export ended in ERROR; `task` is the task as last observed. */
export class ExportFailedError extends Error {
    task;
    constructor(task) {
        super(`export task ${task.taskId} ended in ERROR: ${task.errorMessage || "no reason given"}`);
        this.task = task;
        this.name = "ExportFailedError";
    }
}
/** The downloaded bytes do not match what the service announced; the partial file was removed. */
export class ChecksumMismatchError extends Error {
    constructor(message) {
        super(message);
        this.name = "ChecksumMismatchError";
    }
}
const terminal = new Set([ExportTaskState.FINISHED, ExportTaskState.ERROR]);
/** A client of the service's gRPC port. */
export class CwpExportClient {
    /** The generated client of every RPC, for calls the helper does not wrap. */
    service;
    headers;
    timeoutMs;
    /**
     * @param address `host:port` (plain HTTP/2) or a URL (`https://host:port` for TLS).
     * Connect's transport talks to this one address and takes no gRPC service
     * config: for a fleet, give the address of a load balancer that spreads
     * requests (docs/clients.md: "Running clients against a fleet"). The helper itself
     * resumes watches and retries reads and creations after Unavailable.
     */
    constructor(address = "127.0.0.1:9090", options = {}) {
        const baseUrl = /^https?:\/\//.test(address) ? address : `http://${address}`;
        const transport = options.transport ?? createGrpcTransport({ baseUrl });
        this.service = createClient(LicenseExportService, transport);
        this.headers = options.token ? { authorization: `Bearer ${options.token}` } : {};
        this.timeoutMs = options.timeoutMs ?? 30_000;
    }
    /**
     * Starts an export and returns its pending task. A request id is generated
     * when none is given, so an Unavailable answer is retried without creating
     * a second task. Throws InvalidRequestError on InvalidArgument.
     */
    async export(params = {}) {
        const req = create(ExportLicenseDetailRequestSchema, {
            filters: toFilters(params.filters),
            tags: toTags(params.tags),
            isHistory: params.isHistory ?? false,
            exportMonth: params.exportMonth ?? "",
            requestId: params.requestId ?? randomUUID(),
        });
        const res = await retryUnavailable(params.retries ?? 3, () => this.service.exportLicenseDetail(req, { headers: this.headers, timeoutMs: this.timeoutMs }));
        return res.task;
    }
    /**
     * The task's current state and the progress the service observed. An
     * Unavailable answer (a replica going away) is retried `retries` times
     * (default 4), as the gRPC service config retries reads for clients whose
     * library applies it; Connect's transport does not.
     */
    async get(taskId, retries = 4) {
        return retryUnavailable(retries, () => this.service.getExportTask({ taskId }, { headers: this.headers, timeoutMs: this.timeoutMs }));
    }
    /**
     * Yields the task's watch messages until its FINISHED or ERROR message.
     * When the stream breaks with Unavailable (the service restarted, the
     * connection dropped) it is opened again for the same task after a short
     * backoff; the new stream starts with a SNAPSHOT of the current state.
     */
    async *watch(taskId, options = {}) {
        const maxReconnects = options.maxReconnects ?? 10;
        let failures = 0;
        for (;;) {
            const ctl = new AbortController();
            const abort = () => ctl.abort();
            options.signal?.addEventListener("abort", abort);
            let broke;
            try {
                for await (const msg of this.service.watchExportTask({ taskId }, { headers: this.headers, signal: ctl.signal })) {
                    failures = 0;
                    yield msg;
                    if (msg.task && terminal.has(msg.task.state))
                        return;
                }
            }
            catch (e) {
                const err = ConnectError.from(e);
                if (err.code === Code.InvalidArgument)
                    throw new InvalidRequestError(err);
                if (err.code !== Code.Unavailable || options.signal?.aborted)
                    throw err;
                broke = err;
            }
            finally {
                options.signal?.removeEventListener("abort", abort);
                ctl.abort();
            }
            // Unavailable, or the stream ended before a terminal message: reopen.
            failures++;
            broke ??= new ConnectError(`the watch of task ${taskId} ended before FINISHED or ERROR`, Code.Unavailable);
            if (failures > maxReconnects)
                throw broke;
            options.onReconnect?.(broke, failures);
            await sleep(backoff(failures));
        }
    }
    /** Watches the task to its end; returns it once FINISHED, throws ExportFailedError on ERROR. */
    async wait(taskId, options = {}) {
        let last;
        for await (const msg of this.watch(taskId, options))
            last = msg;
        if (last?.task?.state !== ExportTaskState.FINISHED) {
            throw new ExportFailedError(last?.task ?? { taskId });
        }
        return last.task;
    }
    /**
     * Downloads a FINISHED task's file to `path`. The chunks go to a temporary
     * file beside it, which is renamed to `path` only when every offset follows
     * on, the size matches and the SHA-256 equals the one in the stream's last
     * message; otherwise ChecksumMismatchError is thrown and nothing is left.
     */
    async download(taskId, path) {
        const part = join(dirname(path), `.${basename(path)}.${randomUUID()}.part`);
        const file = await open(part, "wx");
        const hash = createHash("sha256");
        let size = 0n;
        let wantSize;
        let wantSha = "";
        let fileName = "";
        let contentType = "";
        try {
            try {
                for await (const chunk of this.service.downloadExport({ taskId }, { headers: this.headers })) {
                    if (chunk.fileName)
                        [fileName, contentType] = [chunk.fileName, chunk.contentType];
                    wantSize ??= chunk.totalSize; // -1: not known
                    if (chunk.data.length > 0) {
                        if (chunk.offset !== size)
                            throw new ChecksumMismatchError(`chunk at offset ${chunk.offset}, expected ${size}`);
                        await file.write(chunk.data);
                        hash.update(chunk.data);
                        size += BigInt(chunk.data.length);
                    }
                    if (chunk.sha256)
                        wantSha = chunk.sha256;
                }
            }
            catch (e) {
                throw e instanceof ChecksumMismatchError ? e : invalidOr(e);
            }
            finally {
                await file.close();
            }
            const got = hash.digest("hex");
            if (!wantSha)
                throw new ChecksumMismatchError("the stream ended without the file's SHA-256");
            if (got !== wantSha.toLowerCase()) {
                throw new ChecksumMismatchError(`SHA-256 of the received bytes is ${got}, the service announced ${wantSha}`);
            }
            if (wantSize !== undefined && wantSize >= 0n && size !== wantSize) {
                throw new ChecksumMismatchError(`received ${size} bytes, the service announced ${wantSize}`);
            }
            await rename(part, path);
            return { path, size: Number(size), sha256: got, fileName, contentType };
        }
        catch (e) {
            await rm(part, { force: true });
            throw e;
        }
    }
}
function toFilters(filters) {
    if (!filters)
        return [];
    if (Array.isArray(filters))
        return filters;
    return Object.entries(filters).map(([name, values]) => create(FilterSchema, { name, values }));
}
function toTags(tags) {
    if (!tags)
        return [];
    if (Array.isArray(tags))
        return tags;
    return Object.entries(tags).map(([tagKey, tagValue]) => create(TagSchema, { tagKey, tagValue }));
}
/**
 * Calls `call`, again after an Unavailable answer up to `retries` times with
 * backoff; InvalidArgument becomes InvalidRequestError. Only for reads, and
 * for creations that carry a request id.
 */
async function retryUnavailable(retries, call) {
    for (let attempt = 1;; attempt++) {
        try {
            return await call();
        }
        catch (e) {
            const err = ConnectError.from(e);
            if (err.code === Code.InvalidArgument)
                throw new InvalidRequestError(err);
            if (err.code !== Code.Unavailable || attempt > retries)
                throw err;
            await sleep(backoff(attempt));
        }
    }
}
function invalidOr(e) {
    const err = ConnectError.from(e);
    return err.code === Code.InvalidArgument ? new InvalidRequestError(err) : err;
}
/** Exponential backoff with full jitter: up to 200 ms, 400 ms, ... 5 s. */
function backoff(attempt) {
    return Math.random() * Math.min(5000, 200 * 2 ** (attempt - 1));
}
function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}
