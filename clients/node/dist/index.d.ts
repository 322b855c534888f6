import { Code, ConnectError, type Client, type Transport } from "@connectrpc/connect";
import { LicenseExportService, type ExportTask, type Filter, type GetExportTaskResponse, type Tag, type WatchExportTaskResponse } from "./gen/cwpexport/v1/license_export_pb.js";
import { ErrorReason } from "./gen/cwpexport/v1/error_reason_pb.js";
import { BadRequestSchema, ErrorInfoSchema, type BadRequest_FieldViolation, type ErrorInfo } from "./gen/google/rpc/error_details_pb.js";
export * from "./gen/cwpexport/v1/license_export_pb.js";
export * from "./gen/cwpexport/v1/error_reason_pb.js";
export { BadRequestSchema, ErrorInfoSchema, type BadRequest_FieldViolation, type ErrorInfo };
export { Code, ConnectError };
export { create } from "@bufbuild/protobuf";
/** The field violations of an InvalidArgument (google.rpc.BadRequest); empty when there are none. */
export declare function fieldViolations(err: unknown): BadRequest_FieldViolation[];
/** The error's google.rpc.ErrorInfo (reason, domain, metadata), if it carries one. */
export declare function errorInfo(err: unknown): ErrorInfo | undefined;
/** The ErrorInfo domain of the service's errors. */
export declare const errorDomain = "cwpexport.v1";
/**
 * The service's reason for an error, as an ErrorReason value (its name is
 * the reason string: `ErrorReason[r]`); ERROR_REASON_UNSPECIFIED when the
 * error carries none, or one this package does not know (a newer server's).
 */
export declare function errorReason(err: unknown): ErrorReason;
/** The service answered InvalidArgument; `violations` lists what to fix. */
export declare class InvalidRequestError extends Error {
    readonly cause: ConnectError;
    readonly violations: BadRequest_FieldViolation[];
    readonly reason: string;
    constructor(cause: ConnectError);
}
/** The export ended in ERROR; `task` is the task as last observed. */
export declare class ExportFailedError extends Error {
    readonly task: ExportTask;
    constructor(task: ExportTask);
}
/** The downloaded bytes do not match what the service announced; the partial file was removed. */
export declare class ChecksumMismatchError extends Error {
    constructor(message: string);
}
/** Where and how to reach the service. */
export interface ClientOptions {
    /** Bearer token sent as `authorization: Bearer <token>` on every call. */
    token?: string;
    /** Deadline of unary calls in milliseconds (default 30000). */
    timeoutMs?: number;
    /** A ready transport (for TLS options, interceptors); replaces the address. */
    transport?: Transport;
}
/** The conditions of an export. */
export interface ExportParams {
    /** Filter name to values (`{LicenseType: ["1"]}`), or Filter messages. */
    filters?: Record<string, string[]> | Filter[];
    /** Tag key to value, or Tag messages. */
    tags?: Record<string, string> | Tag[];
    isHistory?: boolean;
    /** YYYY-MM; only with isHistory. */
    exportMonth?: string;
    /** A UUID that makes the call idempotent; generated when absent. */
    requestId?: string;
    /** How often to retry an Unavailable answer with the same request id (default 3). */
    retries?: number;
}
/** Options of a watch. */
export interface WatchOptions {
    /** Failures in a row without a message before the last error is thrown (default 10). */
    maxReconnects?: number;
    /** Called before each reopening of the stream. */
    onReconnect?: (err: ConnectError, attempt: number) => void;
    /** Ends the watch. */
    signal?: AbortSignal;
}
/** A file saved by CwpExportClient.download. */
export interface Download {
    path: string;
    size: number;
    sha256: string;
    fileName: string;
    contentType: string;
}
/** A client of the service's gRPC port. */
export declare class CwpExportClient {
    /** The generated client of every RPC, for calls the helper does not wrap. */
    readonly service: Client<typeof LicenseExportService>;
    private readonly headers;
    private readonly timeoutMs;
    /**
     * @param address `host:port` (plain HTTP/2) or a URL (`https://host:port` for TLS).
     * Connect's transport talks to this one address and takes no gRPC service
     * config: for a fleet, give the address of a load balancer that spreads
     * requests (docs/clients.md: "Running clients against a fleet"). The helper itself
     * resumes watches and retries reads and creations after Unavailable.
     */
    constructor(address?: string, options?: ClientOptions);
    /**
     * Starts an export and returns its pending task. A request id is generated
     * when none is given, so an Unavailable answer is retried without creating
     * a second task. Throws InvalidRequestError on InvalidArgument.
     */
    export(params?: ExportParams): Promise<ExportTask>;
    /**
     * The task's current state and the progress the service observed. An
     * Unavailable answer (a replica going away) is retried `retries` times
     * (default 4), as the gRPC service config retries reads for clients whose
     * library applies it; Connect's transport does not.
     */
    get(taskId: string, retries?: number): Promise<GetExportTaskResponse>;
    /**
     * Yields the task's watch messages until its FINISHED or ERROR message.
     * When the stream breaks with Unavailable (the service restarted, the
     * connection dropped) it is opened again for the same task after a short
     * backoff; the new stream starts with a SNAPSHOT of the current state.
     */
    watch(taskId: string, options?: WatchOptions): AsyncGenerator<WatchExportTaskResponse>;
    /** Watches the task to its end; returns it once FINISHED, throws ExportFailedError on ERROR. */
    wait(taskId: string, options?: WatchOptions): Promise<ExportTask>;
    /**
     * Downloads a FINISHED task's file to `path`. The chunks go to a temporary
     * file beside it, which is renamed to `path` only when every offset follows
     * on, the size matches and the SHA-256 equals the one in the stream's last
     * message; otherwise ChecksumMismatchError is thrown and nothing is left.
     */
    download(taskId: string, path: string): Promise<Download>;
}
