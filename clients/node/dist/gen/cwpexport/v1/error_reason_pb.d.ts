import type { GenEnum, GenExtension, GenFile, GenMessage } from "@bufbuild/protobuf/codegenv2";
import type { EnumValueOptions } from "@bufbuild/protobuf/wkt";
import type { Code } from "../../google/rpc/code_pb.js";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file cwpexport/v1/error_reason.proto.
 */
export declare const file_cwpexport_v1_error_reason: GenFile;
/**
 * ErrorReasonStatus is how the service answers with an ErrorReason: the
 * value of its error_reason_status option.
 *
 * @generated from message cwpexport.v1.ErrorReasonStatus
 */
export type ErrorReasonStatus = Message<"cwpexport.v1.ErrorReasonStatus"> & {
    /**
     * The gRPC status code of the reason's errors.
     *
     * @generated from field: google.rpc.Code code = 1;
     */
    code: Code;
    /**
     * Codes the reason also comes with, in the cases its comment names.
     *
     * @generated from field: repeated google.rpc.Code other_codes = 2;
     */
    otherCodes: Code[];
    /**
     * The HTTP status of the reason's REST answers where the REST gateway does
     * not answer with code's usual one (AIP-193's mapping); 0 where it does.
     *
     * @generated from field: int32 http_status = 3;
     */
    httpStatus: number;
};
/**
 * Describes the message cwpexport.v1.ErrorReasonStatus.
 * Use `create(ErrorReasonStatusSchema)` to create a new message.
 */
export declare const ErrorReasonStatusSchema: GenMessage<ErrorReasonStatus>;
/**
 * ErrorReason is the catalog of the reasons the service's errors carry: every
 * error status (gRPC, and REST's google.rpc.Status body) holds a
 * google.rpc.ErrorInfo whose domain is "cwpexport.v1" and whose reason is the
 * name of one of these values, as the AIP-193 pattern (and
 * google.api.ErrorReason) has it. A client compares the reason string with
 * a value's name, which the generated code of every language carries.
 *
 * Each value's error_reason_status option gives the gRPC code its errors
 * carry and, where the REST gateway answers with another status than the
 * code's usual one, the HTTP status. Metadata keys of the ErrorInfo that a
 * reason carries are named in its comment. A google.rpc.RetryInfo always
 * comes with metadata "retry_after_ms", the same delay in milliseconds, and
 * over REST with a Retry-After header (whole seconds, rounded up).
 *
 * @generated from enum cwpexport.v1.ErrorReason
 */
export declare enum ErrorReason {
    /**
     * ERROR_REASON_UNSPECIFIED is never sent; a client reading a reason it does
     * not know (from a newer server) may map it here.
     *
     * @generated from enum value: ERROR_REASON_UNSPECIFIED = 0;
     */
    ERROR_REASON_UNSPECIFIED = 0,
    /**
     * INVALID_ARGUMENT means the request is invalid and was not sent to the
     * cloud: a field failed validation, or a REST body or query could not be
     * decoded (not JSON, a wrong type, an unknown field or parameter, text that
     * is not UTF-8). A google.rpc.BadRequest names each field (at most 20;
     * metadata "field_violations" counts them all when there are more). Fix the
     * request: sent again unchanged it fails the same way. The REST gateway also
     * gives this reason to any InvalidArgument that carries none.
     *
     * @generated from enum value: INVALID_ARGUMENT = 1;
     */
    INVALID_ARGUMENT = 1,
    /**
     * TASK_NOT_FOUND means the export task does not exist, or the caller may not
     * see it (the two are answered alike, so as to tell a caller nothing about
     * others' tasks). Metadata "task_id"; "cloud_code" and "cloud_request_id"
     * when the cloud said so. Check the id and the credentials; retrying does
     * not help.
     *
     * @generated from enum value: TASK_NOT_FOUND = 2;
     */
    TASK_NOT_FOUND = 2,
    /**
     * TASK_NOT_FINISHED means DownloadExport was asked for a task that is not
     * FINISHED: only a finished export has a file. Metadata "task_id" and
     * "state". Watch the task until it is FINISHED, then download.
     *
     * @generated from enum value: TASK_NOT_FINISHED = 3;
     */
    TASK_NOT_FINISHED = 3,
    /**
     * DOWNLOAD_FAILED means fetching a finished task's file from the cloud's
     * download URL failed before its first bytes were sent. Metadata "task_id".
     * Retry later; a failure after the first bytes ends the stream instead.
     *
     * @generated from enum value: DOWNLOAD_FAILED = 4;
     */
    DOWNLOAD_FAILED = 4,
    /**
     * UPSTREAM_RESOURCE_NOT_FOUND means the cloud answered ResourceNotFound to a
     * call that names no task. Metadata "cloud_code", "cloud_action",
     * "cloud_request_id". Retrying does not help.
     *
     * @generated from enum value: UPSTREAM_RESOURCE_NOT_FOUND = 5;
     */
    UPSTREAM_RESOURCE_NOT_FOUND = 5,
    /**
     * UPSTREAM_INVALID_ARGUMENT means the cloud rejected the request's
     * parameters (InvalidParameter*, MissingParameter, UnknownParameter) though
     * the service's own validation accepted them. Metadata as for every cloud
     * error ("cloud_code", "cloud_action", "cloud_request_id"). Change the
     * request; retrying it unchanged does not help.
     *
     * @generated from enum value: UPSTREAM_INVALID_ARGUMENT = 6;
     */
    UPSTREAM_INVALID_ARGUMENT = 6,
    /**
     * UPSTREAM_RATE_LIMITED means the cloud refused the call for its request
     * rate (RequestLimitExceeded*): other programs may share the account. It
     * comes with a RetryInfo of 1 s; retry after it.
     *
     * @generated from enum value: UPSTREAM_RATE_LIMITED = 7;
     */
    UPSTREAM_RATE_LIMITED = 7,
    /**
     * UPSTREAM_QUOTA_EXCEEDED means a cloud quota was exceeded (LimitExceeded*).
     * Retrying soon does not help: wait for the quota to renew, or have the
     * account's quota raised.
     *
     * @generated from enum value: UPSTREAM_QUOTA_EXCEEDED = 8;
     */
    UPSTREAM_QUOTA_EXCEEDED = 8,
    /**
     * UPSTREAM_CREDENTIALS_REJECTED means the cloud rejected the service's own
     * credentials (AuthFailure*). It is not the caller's fault, hence Internal:
     * an operator must fix the service's configuration; until then every call
     * that reaches the cloud fails alike.
     *
     * @generated from enum value: UPSTREAM_CREDENTIALS_REJECTED = 9;
     */
    UPSTREAM_CREDENTIALS_REJECTED = 9,
    /**
     * UPSTREAM_PERMISSION_DENIED means the service's cloud account is not
     * authorized for the action (UnauthorizedOperation*). An operator must grant
     * it; retrying does not help until then.
     *
     * @generated from enum value: UPSTREAM_PERMISSION_DENIED = 10;
     */
    UPSTREAM_PERMISSION_DENIED = 10,
    /**
     * UPSTREAM_UNAVAILABLE means the cloud failed or could not be reached
     * (InternalError*, ServiceUnavailable*, ResourceUnavailable*, no connection,
     * an unreadable answer). Retry with backoff. For a creation, metadata
     * "creation_outcome" = "unknown" says the cloud may have created the export:
     * retry with the same request_id, which never creates a second one.
     *
     * @generated from enum value: UPSTREAM_UNAVAILABLE = 11;
     */
    UPSTREAM_UNAVAILABLE = 11,
    /**
     * UPSTREAM_FAILED_OPERATION means the cloud refused the operation
     * (FailedOperation*, UnsupportedOperation*, InvalidAction). Retrying helps
     * only once what the cloud's message names has changed.
     *
     * @generated from enum value: UPSTREAM_FAILED_OPERATION = 12;
     */
    UPSTREAM_FAILED_OPERATION = 12,
    /**
     * UPSTREAM_UNKNOWN_ERROR means the cloud answered with an error code the
     * service does not know ("cloud_code" names it). A retry may help; report
     * the code and "cloud_request_id" if it persists.
     *
     * @generated from enum value: UPSTREAM_UNKNOWN_ERROR = 13;
     */
    UPSTREAM_UNKNOWN_ERROR = 13,
    /**
     * EXPORT_BUDGET_EXHAUSTED means the export budget (the cloud's limit on
     * ExportLicenseDetail calls, -create-rate, 18 per second by default) cannot
     * start this export before the call's deadline (less the 0.5 s a creation
     * keeps for its cloud call) or, without a deadline, within the 30 s an
     * export may wait in the queue. Metadata "retry_after_ms" and a RetryInfo:
     * retry after that delay, or with a longer deadline. Unavailable (HTTP 503)
     * without a delay when the budget shared by a fleet cannot be reached:
     * retry with backoff.
     *
     * @generated from enum value: EXPORT_BUDGET_EXHAUSTED = 14;
     */
    EXPORT_BUDGET_EXHAUSTED = 14,
    /**
     * CALLER_SHARE_EXHAUSTED means an authenticated caller started exports
     * faster than its share of the export budget (-caller-share of
     * -create-rate, half by default, in bursts of as many), which keeps the rest
     * for other callers. Metadata "retry_after_ms" and a RetryInfo: retry after
     * that delay.
     *
     * @generated from enum value: CALLER_SHARE_EXHAUSTED = 15;
     */
    CALLER_SHARE_EXHAUSTED = 15,
    /**
     * CALLER_READ_RATE_EXCEEDED means an authenticated caller called
     * GetExportTask and ListExportTasks faster than one caller may
     * (-reads-per-caller, 10 per second by default, in bursts of -read-burst,
     * 20). Metadata "retry_after_ms" and a RetryInfo: retry after that delay,
     * or watch a task rather than poll it.
     *
     * @generated from enum value: CALLER_READ_RATE_EXCEEDED = 16;
     */
    CALLER_READ_RATE_EXCEEDED = 16,
    /**
     * CALLER_STREAM_LIMIT_EXCEEDED means a caller already holds the most open
     * streams one caller may (-max-streams-per-caller, 1000 by default). Close
     * a stream first (one watch per task is enough); retrying while holding
     * them all fails again.
     *
     * @generated from enum value: CALLER_STREAM_LIMIT_EXCEEDED = 17;
     */
    CALLER_STREAM_LIMIT_EXCEEDED = 17,
    /**
     * REQUEST_ID_REUSED means request_id was already used for an export with
     * other parameters. A field violation names request_id; metadata
     * "request_id", and "task_id" when the first export has a task. Send a new
     * request_id for a different export; retrying does not help.
     *
     * @generated from enum value: REQUEST_ID_REUSED = 18;
     */
    REQUEST_ID_REUSED = 18,
    /**
     * REGISTRY_FAILED means the task registry (SQLite or PostgreSQL) could not
     * be read or written: no cloud call was made; retry with backoff. Internal
     * (HTTP 500) with metadata "task_id" when the cloud created the task but
     * the service could not record it: do not retry the creation, watch the
     * task by its id.
     *
     * @generated from enum value: REGISTRY_FAILED = 19;
     */
    REGISTRY_FAILED = 19,
    /**
     * CREATION_IN_PROGRESS means a creation was retried with a request_id whose
     * first call still waits for the cloud's answer. Metadata "request_id" and
     * a RetryInfo of 1 s: retry with the same request_id after it to get the
     * task.
     *
     * @generated from enum value: CREATION_IN_PROGRESS = 20;
     */
    CREATION_IN_PROGRESS = 20,
    /**
     * CREATION_OUTCOME_UNKNOWN means a creation was retried with a request_id
     * whose first call ended without a clear answer from the cloud: the cloud
     * may or may not hold the export. Metadata "request_id". The same
     * request_id answers this every time and never creates another export; to
     * export anyway send a new request_id (the cloud may then hold two).
     *
     * @generated from enum value: CREATION_OUTCOME_UNKNOWN = 21;
     */
    CREATION_OUTCOME_UNKNOWN = 21,
    /**
     * DEADLINE_EXCEEDED means the call's deadline passed before the cloud
     * answered. A creation cut short this way goes on and is recorded: retry
     * with the same request_id to get its task (without one, it is listed by
     * ListExportTasks). Retry with a longer deadline. The REST gateway also
     * gives this reason to any DeadlineExceeded that carries none.
     *
     * @generated from enum value: DEADLINE_EXCEEDED = 22;
     */
    DEADLINE_EXCEEDED = 22,
    /**
     * CANCELED means the caller canceled the call; nobody is left to read it.
     * The REST gateway also gives this reason to any Canceled that carries
     * none.
     *
     * @generated from enum value: CANCELED = 23;
     */
    CANCELED = 23,
    /**
     * SHUTTING_DOWN means the server is shutting down and ended a watch.
     * Metadata "task_id". Resume at once with WatchExportTask for that task:
     * another replica, or the restarted server, answers.
     *
     * @generated from enum value: SHUTTING_DOWN = 24;
     */
    SHUTTING_DOWN = 24,
    /**
     * UNAUTHENTICATED means the call carried no valid credentials: the server
     * wants "Authorization: Bearer <token>" (gRPC metadata "authorization") or a
     * client certificate, and the message says which was missing or wrong.
     * Retrying without valid credentials does not help.
     *
     * @generated from enum value: UNAUTHENTICATED = 25;
     */
    UNAUTHENTICATED = 25,
    /**
     * BUDGET_NOT_MEASURED means GetBudgetStatus was called on a server that
     * does not measure its cloud calls. Retrying does not help.
     *
     * @generated from enum value: BUDGET_NOT_MEASURED = 26;
     */
    BUDGET_NOT_MEASURED = 26,
    /**
     * INTERNAL means the service failed in a way it did not expect (a handler
     * panicked, a REST stream ended before its first message). The service
     * logs it; a retry may help; report it if it persists. The REST gateway
     * also gives this reason to any Internal that carries none.
     *
     * @generated from enum value: INTERNAL = 27;
     */
    INTERNAL = 27,
    /**
     * UNKNOWN_PATH means the REST gateway has no endpoint at the request's
     * path. /openapi.json lists the endpoints. Retrying does not help.
     *
     * @generated from enum value: UNKNOWN_PATH = 28;
     */
    UNKNOWN_PATH = 28,
    /**
     * METHOD_NOT_ALLOWED means the REST endpoint exists but not with the
     * request's HTTP method. /openapi.json lists the methods. Retrying does
     * not help.
     *
     * @generated from enum value: METHOD_NOT_ALLOWED = 29;
     */
    METHOD_NOT_ALLOWED = 29,
    /**
     * UNSUPPORTED_MEDIA_TYPE means a REST POST's body is not declared as JSON:
     * send "Content-Type: application/json" (a charset, if any, must be
     * utf-8).
     *
     * @generated from enum value: UNSUPPORTED_MEDIA_TYPE = 30;
     */
    UNSUPPORTED_MEDIA_TYPE = 30,
    /**
     * HOST_NOT_ALLOWED means the REST request's Host header names this service
     * by a name it does not answer to (a defence against DNS rebinding): use
     * localhost or 127.0.0.1, or have the operator allow the name
     * (-rest-allowed-hosts).
     *
     * @generated from enum value: HOST_NOT_ALLOWED = 31;
     */
    HOST_NOT_ALLOWED = 31,
    /**
     * ORIGIN_NOT_ALLOWED means the REST request came from a web page of an
     * origin the service does not accept requests from. Retrying does not
     * help.
     *
     * @generated from enum value: ORIGIN_NOT_ALLOWED = 32;
     */
    ORIGIN_NOT_ALLOWED = 32,
    /**
     * REQUEST_TOO_LARGE means the REST request's body is larger than the
     * service accepts (the message gives the limit). Send a smaller request.
     *
     * @generated from enum value: REQUEST_TOO_LARGE = 33;
     */
    REQUEST_TOO_LARGE = 33,
    /**
     * REQUEST_BODY_TIMEOUT means the REST request's body did not arrive within
     * the time the service waits for it (the message gives it). Retry over a
     * better connection.
     *
     * @generated from enum value: REQUEST_BODY_TIMEOUT = 34;
     */
    REQUEST_BODY_TIMEOUT = 34,
    /**
     * REQUEST_BODY_UNREADABLE means the REST request's body could not be read
     * (the connection failed while it arrived). Retry.
     *
     * @generated from enum value: REQUEST_BODY_UNREADABLE = 35;
     */
    REQUEST_BODY_UNREADABLE = 35,
    /**
     * UNKNOWN is a REST answer of code Unknown without a reason of its own. A
     * retry may help.
     *
     * @generated from enum value: UNKNOWN = 36;
     */
    UNKNOWN = 36,
    /**
     * NOT_FOUND is a REST answer of code NotFound without a reason of its own.
     *
     * @generated from enum value: NOT_FOUND = 37;
     */
    NOT_FOUND = 37,
    /**
     * ALREADY_EXISTS is a REST answer of code AlreadyExists without a reason of
     * its own.
     *
     * @generated from enum value: ALREADY_EXISTS = 38;
     */
    ALREADY_EXISTS = 38,
    /**
     * PERMISSION_DENIED is a REST answer of code PermissionDenied without a
     * reason of its own.
     *
     * @generated from enum value: PERMISSION_DENIED = 39;
     */
    PERMISSION_DENIED = 39,
    /**
     * RESOURCE_EXHAUSTED is a REST answer of code ResourceExhausted without a
     * reason of its own, such as a message larger than gRPC accepts. Retrying
     * the same request does not help.
     *
     * @generated from enum value: RESOURCE_EXHAUSTED = 40;
     */
    RESOURCE_EXHAUSTED = 40,
    /**
     * FAILED_PRECONDITION is a REST answer of code FailedPrecondition without a
     * reason of its own.
     *
     * @generated from enum value: FAILED_PRECONDITION = 41;
     */
    FAILED_PRECONDITION = 41,
    /**
     * ABORTED is a REST answer of code Aborted without a reason of its own.
     *
     * @generated from enum value: ABORTED = 42;
     */
    ABORTED = 42,
    /**
     * OUT_OF_RANGE is a REST answer of code OutOfRange without a reason of its
     * own.
     *
     * @generated from enum value: OUT_OF_RANGE = 43;
     */
    OUT_OF_RANGE = 43,
    /**
     * UNIMPLEMENTED is a REST answer of code Unimplemented without a reason of
     * its own: the gRPC server does not have the method (an older server).
     *
     * @generated from enum value: UNIMPLEMENTED = 44;
     */
    UNIMPLEMENTED = 44,
    /**
     * UNAVAILABLE is a REST answer of code Unavailable without a reason of its
     * own: the gateway could not reach the gRPC server, or lost it during the
     * call. Retry with backoff.
     *
     * @generated from enum value: UNAVAILABLE = 45;
     */
    UNAVAILABLE = 45,
    /**
     * DATA_LOSS is a REST answer of code DataLoss without a reason of its own.
     *
     * @generated from enum value: DATA_LOSS = 46;
     */
    DATA_LOSS = 46,
    /**
     * TOO_MANY_AUTHENTICATION_FAILURES means the caller's address made more
     * failed authentications than one address may (-auth-failure-burst at once,
     * then -auth-failures-per-second): its calls without valid credentials are
     * refused unchecked, and a gRPC connection that keeps on is closed. Metadata
     * "retry_after_ms" and a RetryInfo (REST: Retry-After): retry after that
     * delay with valid credentials; calls with valid credentials are not
     * refused.
     *
     * @generated from enum value: TOO_MANY_AUTHENTICATION_FAILURES = 47;
     */
    TOO_MANY_AUTHENTICATION_FAILURES = 47
}
/**
 * Describes the enum cwpexport.v1.ErrorReason.
 */
export declare const ErrorReasonSchema: GenEnum<ErrorReason>;
/**
 * The gRPC code and HTTP status of an ErrorReason value's errors.
 *
 * @generated from extension: cwpexport.v1.ErrorReasonStatus error_reason_status = 50193;
 */
export declare const error_reason_status: GenExtension<EnumValueOptions, ErrorReasonStatus>;
