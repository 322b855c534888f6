import type { GenEnum, GenFile, GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import type { Message } from "@bufbuild/protobuf";
/**
 * Describes the file cwpexport/v1/license_export.proto.
 */
export declare const file_cwpexport_v1_license_export: GenFile;
/**
 * Filter is one export condition. Filters are combined with AND; the values of
 * one filter with OR.
 *
 * @generated from message cwpexport.v1.Filter
 */
export type Filter = Message<"cwpexport.v1.Filter"> & {
    /**
     * Name of the condition: one of LicenseStatus, DeadlineStatus, ResourceId,
     * Keywords, LicenseType.
     *
     * @generated from field: string name = 1;
     */
    name: string;
    /**
     * Values to match; at least one. For LicenseType: "0" (Pro Edition,
     * pay-as-you-go), "1" (Pro Edition, monthly subscription) or "2" (Ultimate
     * Edition, monthly subscription).
     *
     * @generated from field: repeated string values = 2;
     */
    values: string[];
    /**
     * ExactMatch asks for exact matching instead of fuzzy matching.
     *
     * @generated from field: bool exact_match = 3;
     */
    exactMatch: boolean;
};
/**
 * Describes the message cwpexport.v1.Filter.
 * Use `create(FilterSchema)` to create a new message.
 */
export declare const FilterSchema: GenMessage<Filter>;
/**
 * Tag is a platform tag condition.
 *
 * @generated from message cwpexport.v1.Tag
 */
export type Tag = Message<"cwpexport.v1.Tag"> & {
    /**
     * Tag key; required.
     *
     * @generated from field: string tag_key = 1;
     */
    tagKey: string;
    /**
     * Tag value; empty matches any value of the key.
     *
     * @generated from field: string tag_value = 2;
     */
    tagValue: string;
};
/**
 * Describes the message cwpexport.v1.Tag.
 * Use `create(TagSchema)` to create a new message.
 */
export declare const TagSchema: GenMessage<Tag>;
/**
 * ExportParameters are the conditions of an export, as sent to the cloud.
 *
 * @generated from message cwpexport.v1.ExportParameters
 */
export type ExportParameters = Message<"cwpexport.v1.ExportParameters"> & {
    /**
     * Filters ANDed together.
     *
     * @generated from field: repeated cwpexport.v1.Filter filters = 1;
     */
    filters: Filter[];
    /**
     * IsHistory exports all authorization details (the usage history).
     *
     * @generated from field: bool is_history = 2;
     */
    isHistory: boolean;
    /**
     * Tags filter by platform tags.
     *
     * @generated from field: repeated cwpexport.v1.Tag tags = 3;
     */
    tags: Tag[];
    /**
     * ExportMonth is the month to export, as YYYY-MM; only with is_history.
     *
     * @generated from field: string export_month = 4;
     */
    exportMonth: string;
};
/**
 * Describes the message cwpexport.v1.ExportParameters.
 * Use `create(ExportParametersSchema)` to create a new message.
 */
export declare const ExportParametersSchema: GenMessage<ExportParameters>;
/**
 * ExportTask is an export task as this service last observed it.
 *
 * @generated from message cwpexport.v1.ExportTask
 */
export type ExportTask = Message<"cwpexport.v1.ExportTask"> & {
    /**
     * Task id assigned by the cloud (a decimal integer, as a string).
     *
     * @generated from field: string task_id = 1;
     */
    taskId: string;
    /**
     * State the cloud last reported.
     *
     * @generated from field: cwpexport.v1.ExportTaskState state = 2;
     */
    state: ExportTaskState;
    /**
     * Download URL, set when the state is FINISHED. It is pre-signed by the
     * cloud and expires; DownloadExport fetches the file through the service.
     *
     * @generated from field: string download_url = 3;
     */
    downloadUrl: string;
    /**
     * When the task was created through this service, or first seen by it.
     *
     * @generated from field: google.protobuf.Timestamp create_time = 4;
     */
    createTime?: Timestamp | undefined;
    /**
     * When the service last observed a change of state.
     *
     * @generated from field: google.protobuf.Timestamp update_time = 5;
     */
    updateTime?: Timestamp | undefined;
    /**
     * When the cloud was last asked for the task's state successfully.
     *
     * @generated from field: google.protobuf.Timestamp observe_time = 6;
     */
    observeTime?: Timestamp | undefined;
    /**
     * RequestId of the last cloud response about this task.
     *
     * @generated from field: string last_upstream_request_id = 7;
     */
    lastUpstreamRequestId: string;
    /**
     * Why the task ended in ERROR, when known.
     *
     * @generated from field: string error_message = 8;
     */
    errorMessage: string;
    /**
     * Conditions the export was started with, when it was created through this
     * service.
     *
     * @generated from field: cwpexport.v1.ExportParameters parameters = 9;
     */
    parameters?: ExportParameters | undefined;
    /**
     * Client-chosen request id the task was created with, if any.
     *
     * @generated from field: string request_id = 10;
     */
    requestId: string;
    /**
     * Identity of the caller that created the task, when callers authenticate.
     *
     * @generated from field: string creator = 11;
     */
    creator: string;
};
/**
 * Describes the message cwpexport.v1.ExportTask.
 * Use `create(ExportTaskSchema)` to create a new message.
 */
export declare const ExportTaskSchema: GenMessage<ExportTask>;
/**
 * Progress is what the service observed of a pending task. The cloud reports
 * no percentage, so none is given.
 *
 * @generated from message cwpexport.v1.Progress
 */
export type Progress = Message<"cwpexport.v1.Progress"> & {
    /**
     * Number of times this service has asked the cloud for the task's state.
     *
     * @generated from field: int64 poll_count = 1;
     */
    pollCount: bigint;
    /**
     * The task's age as this service observed it: from its creation time to
     * now, or to when its end was observed once it is FINISHED or ERROR.
     *
     * @generated from field: google.protobuf.Duration task_elapsed = 2;
     */
    taskElapsed?: Duration | undefined;
    /**
     * Time since this watch began.
     *
     * @generated from field: google.protobuf.Duration watch_elapsed = 3;
     */
    watchElapsed?: Duration | undefined;
    /**
     * When the cloud was last asked.
     *
     * @generated from field: google.protobuf.Timestamp last_poll_time = 4;
     */
    lastPollTime?: Timestamp | undefined;
    /**
     * When the cloud will next be asked, as scheduled now; absent once the
     * task ended.
     *
     * @generated from field: google.protobuf.Timestamp next_poll_time = 5;
     */
    nextPollTime?: Timestamp | undefined;
    /**
     * Number of polls in a row that failed; zero when the last poll succeeded.
     *
     * @generated from field: int32 consecutive_poll_failures = 6;
     */
    consecutivePollFailures: number;
    /**
     * What went wrong with the last poll, when it failed. The watch goes on.
     *
     * @generated from field: string last_poll_error = 7;
     */
    lastPollError: string;
    /**
     * Number of tasks currently sharing the cloud's read budget with this one;
     * with the budget it explains the poll interval.
     *
     * @generated from field: int32 pending_tasks = 8;
     */
    pendingTasks: number;
    /**
     * The read budget now, in polls per second for all tasks together: the
     * configured rate, or less while the cloud throttles the service's polls
     * (other programs share the account's quota). With pending_tasks it
     * explains the poll interval.
     *
     * @generated from field: double read_budget_rate = 9;
     */
    readBudgetRate: number;
};
/**
 * Describes the message cwpexport.v1.Progress.
 * Use `create(ProgressSchema)` to create a new message.
 */
export declare const ProgressSchema: GenMessage<Progress>;
/**
 * ExportLicenseDetailRequest starts an export.
 *
 * @generated from message cwpexport.v1.ExportLicenseDetailRequest
 */
export type ExportLicenseDetailRequest = Message<"cwpexport.v1.ExportLicenseDetailRequest"> & {
    /**
     * Filters ANDed together; at most 16, each with at most 100 values.
     *
     * @generated from field: repeated cwpexport.v1.Filter filters = 1;
     */
    filters: Filter[];
    /**
     * IsHistory exports all authorization details (the usage history).
     *
     * @generated from field: bool is_history = 2;
     */
    isHistory: boolean;
    /**
     * Tags filter by platform tags; at most 16.
     *
     * @generated from field: repeated cwpexport.v1.Tag tags = 3;
     */
    tags: Tag[];
    /**
     * ExportMonth is the month to export, as YYYY-MM; only with is_history.
     *
     * @generated from field: string export_month = 4;
     */
    exportMonth: string;
    /**
     * Optional client-chosen UUID that identifies this request: a retry with
     * the same request_id returns the first task instead of creating another.
     *
     * @generated from field: string request_id = 5;
     */
    requestId: string;
};
/**
 * Describes the message cwpexport.v1.ExportLicenseDetailRequest.
 * Use `create(ExportLicenseDetailRequestSchema)` to create a new message.
 */
export declare const ExportLicenseDetailRequestSchema: GenMessage<ExportLicenseDetailRequest>;
/**
 * ExportLicenseDetailResponse carries the created task.
 *
 * @generated from message cwpexport.v1.ExportLicenseDetailResponse
 */
export type ExportLicenseDetailResponse = Message<"cwpexport.v1.ExportLicenseDetailResponse"> & {
    /**
     * The created task, pending.
     *
     * @generated from field: cwpexport.v1.ExportTask task = 1;
     */
    task?: ExportTask | undefined;
    /**
     * RequestId of the cloud's answer.
     *
     * @generated from field: string upstream_request_id = 2;
     */
    upstreamRequestId: string;
};
/**
 * Describes the message cwpexport.v1.ExportLicenseDetailResponse.
 * Use `create(ExportLicenseDetailResponseSchema)` to create a new message.
 */
export declare const ExportLicenseDetailResponseSchema: GenMessage<ExportLicenseDetailResponse>;
/**
 * GetExportTaskRequest names a task.
 *
 * @generated from message cwpexport.v1.GetExportTaskRequest
 */
export type GetExportTaskRequest = Message<"cwpexport.v1.GetExportTaskRequest"> & {
    /**
     * Task id, a positive decimal integer.
     *
     * @generated from field: string task_id = 1;
     */
    taskId: string;
};
/**
 * Describes the message cwpexport.v1.GetExportTaskRequest.
 * Use `create(GetExportTaskRequestSchema)` to create a new message.
 */
export declare const GetExportTaskRequestSchema: GenMessage<GetExportTaskRequest>;
/**
 * GetExportTaskResponse carries the task's current state.
 *
 * @generated from message cwpexport.v1.GetExportTaskResponse
 */
export type GetExportTaskResponse = Message<"cwpexport.v1.GetExportTaskResponse"> & {
    /**
     * The task as last observed.
     *
     * @generated from field: cwpexport.v1.ExportTask task = 1;
     */
    task?: ExportTask | undefined;
    /**
     * Progress observed so far.
     *
     * @generated from field: cwpexport.v1.Progress progress = 2;
     */
    progress?: Progress | undefined;
};
/**
 * Describes the message cwpexport.v1.GetExportTaskResponse.
 * Use `create(GetExportTaskResponseSchema)` to create a new message.
 */
export declare const GetExportTaskResponseSchema: GenMessage<GetExportTaskResponse>;
/**
 * WatchExportTaskRequest names a task to follow.
 *
 * @generated from message cwpexport.v1.WatchExportTaskRequest
 */
export type WatchExportTaskRequest = Message<"cwpexport.v1.WatchExportTaskRequest"> & {
    /**
     * Task id, a positive decimal integer.
     *
     * @generated from field: string task_id = 1;
     */
    taskId: string;
};
/**
 * Describes the message cwpexport.v1.WatchExportTaskRequest.
 * Use `create(WatchExportTaskRequestSchema)` to create a new message.
 */
export declare const WatchExportTaskRequestSchema: GenMessage<WatchExportTaskRequest>;
/**
 * WatchExportTaskResponse is one message of a watch.
 *
 * @generated from message cwpexport.v1.WatchExportTaskResponse
 */
export type WatchExportTaskResponse = Message<"cwpexport.v1.WatchExportTaskResponse"> & {
    /**
     * Why this message was sent.
     *
     * @generated from field: cwpexport.v1.WatchEventKind kind = 1;
     */
    kind: WatchEventKind;
    /**
     * The task as last observed.
     *
     * @generated from field: cwpexport.v1.ExportTask task = 2;
     */
    task?: ExportTask | undefined;
    /**
     * Progress observed so far.
     *
     * @generated from field: cwpexport.v1.Progress progress = 3;
     */
    progress?: Progress | undefined;
};
/**
 * Describes the message cwpexport.v1.WatchExportTaskResponse.
 * Use `create(WatchExportTaskResponseSchema)` to create a new message.
 */
export declare const WatchExportTaskResponseSchema: GenMessage<WatchExportTaskResponse>;
/**
 * ExportLicenseDetailAndWatchRequest starts an export and follows it.
 *
 * @generated from message cwpexport.v1.ExportLicenseDetailAndWatchRequest
 */
export type ExportLicenseDetailAndWatchRequest = Message<"cwpexport.v1.ExportLicenseDetailAndWatchRequest"> & {
    /**
     * Filters ANDed together; at most 16, each with at most 100 values.
     *
     * @generated from field: repeated cwpexport.v1.Filter filters = 1;
     */
    filters: Filter[];
    /**
     * IsHistory exports all authorization details (the usage history).
     *
     * @generated from field: bool is_history = 2;
     */
    isHistory: boolean;
    /**
     * Tags filter by platform tags; at most 16.
     *
     * @generated from field: repeated cwpexport.v1.Tag tags = 3;
     */
    tags: Tag[];
    /**
     * ExportMonth is the month to export, as YYYY-MM; only with is_history.
     *
     * @generated from field: string export_month = 4;
     */
    exportMonth: string;
    /**
     * Optional client-chosen UUID; see ExportLicenseDetailRequest.request_id.
     *
     * @generated from field: string request_id = 5;
     */
    requestId: string;
};
/**
 * Describes the message cwpexport.v1.ExportLicenseDetailAndWatchRequest.
 * Use `create(ExportLicenseDetailAndWatchRequestSchema)` to create a new message.
 */
export declare const ExportLicenseDetailAndWatchRequestSchema: GenMessage<ExportLicenseDetailAndWatchRequest>;
/**
 * ExportLicenseDetailAndWatchResponse is one message of an export-and-watch.
 *
 * @generated from message cwpexport.v1.ExportLicenseDetailAndWatchResponse
 */
export type ExportLicenseDetailAndWatchResponse = Message<"cwpexport.v1.ExportLicenseDetailAndWatchResponse"> & {
    /**
     * Why this message was sent.
     *
     * @generated from field: cwpexport.v1.WatchEventKind kind = 1;
     */
    kind: WatchEventKind;
    /**
     * The task as last observed; the first message carries its new task_id.
     *
     * @generated from field: cwpexport.v1.ExportTask task = 2;
     */
    task?: ExportTask | undefined;
    /**
     * Progress observed so far.
     *
     * @generated from field: cwpexport.v1.Progress progress = 3;
     */
    progress?: Progress | undefined;
    /**
     * RequestId of the cloud's answer to the creation; set on the first message.
     *
     * @generated from field: string upstream_request_id = 4;
     */
    upstreamRequestId: string;
};
/**
 * Describes the message cwpexport.v1.ExportLicenseDetailAndWatchResponse.
 * Use `create(ExportLicenseDetailAndWatchResponseSchema)` to create a new message.
 */
export declare const ExportLicenseDetailAndWatchResponseSchema: GenMessage<ExportLicenseDetailAndWatchResponse>;
/**
 * ListExportTasksRequest pages through the tasks this service created.
 *
 * @generated from message cwpexport.v1.ListExportTasksRequest
 */
export type ListExportTasksRequest = Message<"cwpexport.v1.ListExportTasksRequest"> & {
    /**
     * Maximum number of tasks to return: 1 to 1000; 0 means 50.
     *
     * @generated from field: int32 page_size = 1;
     */
    pageSize: number;
    /**
     * Token from a previous response's next_page_token; empty for the first page.
     *
     * @generated from field: string page_token = 2;
     */
    pageToken: string;
    /**
     * Only tasks in this state; unspecified means all.
     *
     * @generated from field: cwpexport.v1.ExportTaskState state = 3;
     */
    state: ExportTaskState;
};
/**
 * Describes the message cwpexport.v1.ListExportTasksRequest.
 * Use `create(ListExportTasksRequestSchema)` to create a new message.
 */
export declare const ListExportTasksRequestSchema: GenMessage<ListExportTasksRequest>;
/**
 * ListExportTasksResponse is one page of tasks.
 *
 * @generated from message cwpexport.v1.ListExportTasksResponse
 */
export type ListExportTasksResponse = Message<"cwpexport.v1.ListExportTasksResponse"> & {
    /**
     * Tasks, newest first.
     *
     * @generated from field: repeated cwpexport.v1.ExportTask tasks = 1;
     */
    tasks: ExportTask[];
    /**
     * Token for the next page; empty on the last page.
     *
     * @generated from field: string next_page_token = 2;
     */
    nextPageToken: string;
};
/**
 * Describes the message cwpexport.v1.ListExportTasksResponse.
 * Use `create(ListExportTasksResponseSchema)` to create a new message.
 */
export declare const ListExportTasksResponseSchema: GenMessage<ListExportTasksResponse>;
/**
 * DownloadExportRequest names a finished task whose file to fetch.
 *
 * @generated from message cwpexport.v1.DownloadExportRequest
 */
export type DownloadExportRequest = Message<"cwpexport.v1.DownloadExportRequest"> & {
    /**
     * Task id, a positive decimal integer.
     *
     * @generated from field: string task_id = 1;
     */
    taskId: string;
};
/**
 * Describes the message cwpexport.v1.DownloadExportRequest.
 * Use `create(DownloadExportRequestSchema)` to create a new message.
 */
export declare const DownloadExportRequestSchema: GenMessage<DownloadExportRequest>;
/**
 * DownloadExportResponse is one chunk of the exported file.
 *
 * @generated from message cwpexport.v1.DownloadExportResponse
 */
export type DownloadExportResponse = Message<"cwpexport.v1.DownloadExportResponse"> & {
    /**
     * The chunk's bytes.
     *
     * @generated from field: bytes data = 1;
     */
    data: Uint8Array;
    /**
     * Offset of the chunk's first byte in the file.
     *
     * @generated from field: int64 offset = 2;
     */
    offset: bigint;
    /**
     * Size of the whole file in bytes, when known; -1 when not.
     *
     * @generated from field: int64 total_size = 3;
     */
    totalSize: bigint;
    /**
     * Hex SHA-256 of the whole file; set on the last message only.
     *
     * @generated from field: string sha256 = 4;
     */
    sha256: string;
    /**
     * Suggested file name; set on the first message.
     *
     * @generated from field: string file_name = 5;
     */
    fileName: string;
    /**
     * Media type of the file; set on the first message.
     *
     * @generated from field: string content_type = 6;
     */
    contentType: string;
};
/**
 * Describes the message cwpexport.v1.DownloadExportResponse.
 * Use `create(DownloadExportResponseSchema)` to create a new message.
 */
export declare const DownloadExportResponseSchema: GenMessage<DownloadExportResponse>;
/**
 * GetBudgetStatusRequest asks for the cloud budget's status; it has no fields.
 *
 * @generated from message cwpexport.v1.GetBudgetStatusRequest
 */
export type GetBudgetStatusRequest = Message<"cwpexport.v1.GetBudgetStatusRequest"> & {};
/**
 * Describes the message cwpexport.v1.GetBudgetStatusRequest.
 * Use `create(GetBudgetStatusRequestSchema)` to create a new message.
 */
export declare const GetBudgetStatusRequestSchema: GenMessage<GetBudgetStatusRequest>;
/**
 * GetBudgetStatusResponse is the cloud budget as the service measures it.
 *
 * @generated from message cwpexport.v1.GetBudgetStatusResponse
 */
export type GetBudgetStatusResponse = Message<"cwpexport.v1.GetBudgetStatusResponse"> & {
    /**
     * One entry per cloud action the service calls: ExportTasks (the read
     * budget that polls share) and ExportLicenseDetail (the export budget).
     *
     * @generated from field: repeated cwpexport.v1.ActionBudget actions = 1;
     */
    actions: ActionBudget[];
    /**
     * Number of tasks being polled now, sharing the ExportTasks budget; 0 for
     * callers who are not operators.
     *
     * @generated from field: int32 read_budget_tasks = 2;
     */
    readBudgetTasks: number;
    /**
     * End of the measured window: calls_per_second and throttled_calls cover
     * the whole seconds before this instant.
     *
     * @generated from field: google.protobuf.Timestamp window_end_time = 3;
     */
    windowEndTime?: Timestamp | undefined;
    /**
     * True when the account's activity (calls_per_second, throttled_calls,
     * read_budget_tasks) is withheld because the caller is not an operator:
     * the empty list and zero counts then say nothing about the account.
     *
     * @generated from field: bool activity_withheld = 4;
     */
    activityWithheld: boolean;
};
/**
 * Describes the message cwpexport.v1.GetBudgetStatusResponse.
 * Use `create(GetBudgetStatusResponseSchema)` to create a new message.
 */
export declare const GetBudgetStatusResponseSchema: GenMessage<GetBudgetStatusResponse>;
/**
 * ActionBudget is one cloud action's request budget and its recent use.
 *
 * @generated from message cwpexport.v1.ActionBudget
 */
export type ActionBudget = Message<"cwpexport.v1.ActionBudget"> & {
    /**
     * Cloud action name: ExportTasks or ExportLicenseDetail.
     *
     * @generated from field: string action = 1;
     */
    action: string;
    /**
     * Calls per second the service was configured to make at most.
     *
     * @generated from field: double configured_rate = 2;
     */
    configuredRate: number;
    /**
     * Calls per second the service allows itself now; at most the configured
     * rate, lower while the service holds back after the cloud throttled it.
     *
     * @generated from field: double effective_rate = 3;
     */
    effectiveRate: number;
    /**
     * Calls per second the cloud allows per action, as it documents (20).
     *
     * @generated from field: double cloud_quota = 4;
     */
    cloudQuota: number;
    /**
     * Calls made to the cloud in each of the last 60 whole seconds, oldest
     * first, whatever their outcome; empty for callers who are not operators.
     *
     * @generated from field: repeated int32 calls_per_second = 5;
     */
    callsPerSecond: number[];
    /**
     * Calls in the same 60 seconds that the cloud answered with
     * RequestLimitExceeded; 0 for callers who are not operators.
     *
     * @generated from field: int32 throttled_calls = 6;
     */
    throttledCalls: number;
};
/**
 * Describes the message cwpexport.v1.ActionBudget.
 * Use `create(ActionBudgetSchema)` to create a new message.
 */
export declare const ActionBudgetSchema: GenMessage<ActionBudget>;
/**
 * ExportTaskState is the cloud's state of an export task.
 *
 * @generated from enum cwpexport.v1.ExportTaskState
 */
export declare enum ExportTaskState {
    /**
     * EXPORT_TASK_STATE_UNSPECIFIED means the state is not known yet.
     *
     * @generated from enum value: EXPORT_TASK_STATE_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * EXPORT_TASK_STATE_PENDING means the cloud is still generating the file.
     *
     * @generated from enum value: EXPORT_TASK_STATE_PENDING = 1;
     */
    PENDING = 1,
    /**
     * EXPORT_TASK_STATE_FINISHED means the file is ready at download_url.
     *
     * @generated from enum value: EXPORT_TASK_STATE_FINISHED = 2;
     */
    FINISHED = 2,
    /**
     * EXPORT_TASK_STATE_ERROR means the export failed.
     *
     * @generated from enum value: EXPORT_TASK_STATE_ERROR = 3;
     */
    ERROR = 3
}
/**
 * Describes the enum cwpexport.v1.ExportTaskState.
 */
export declare const ExportTaskStateSchema: GenEnum<ExportTaskState>;
/**
 * WatchEventKind says why a watch message was sent.
 *
 * @generated from enum cwpexport.v1.WatchEventKind
 */
export declare enum WatchEventKind {
    /**
     * WATCH_EVENT_KIND_UNSPECIFIED is never sent.
     *
     * @generated from enum value: WATCH_EVENT_KIND_UNSPECIFIED = 0;
     */
    UNSPECIFIED = 0,
    /**
     * WATCH_EVENT_KIND_SNAPSHOT is the first message: the current state.
     *
     * @generated from enum value: WATCH_EVENT_KIND_SNAPSHOT = 1;
     */
    SNAPSHOT = 1,
    /**
     * WATCH_EVENT_KIND_STATE_CHANGED reports a new state.
     *
     * @generated from enum value: WATCH_EVENT_KIND_STATE_CHANGED = 2;
     */
    STATE_CHANGED = 2,
    /**
     * WATCH_EVENT_KIND_HEARTBEAT is sent while the task is pending.
     *
     * @generated from enum value: WATCH_EVENT_KIND_HEARTBEAT = 3;
     */
    HEARTBEAT = 3
}
/**
 * Describes the enum cwpexport.v1.WatchEventKind.
 */
export declare const WatchEventKindSchema: GenEnum<WatchEventKind>;
/**
 * LicenseExportService starts license-detail exports in the cloud and reports
 * what the service observes of them. The cloud itself reports only three
 * states (pending, finished, error); everything else a response carries, such
 * as poll counts and timings, is what this service observed.
 *
 * @generated from service cwpexport.v1.LicenseExportService
 */
export declare const LicenseExportService: GenService<{
    /**
     * ExportLicenseDetail starts one asynchronous export and returns its task at
     * once, before the export has finished.
     *
     * @generated from rpc cwpexport.v1.LicenseExportService.ExportLicenseDetail
     */
    exportLicenseDetail: {
        methodKind: "unary";
        input: typeof ExportLicenseDetailRequestSchema;
        output: typeof ExportLicenseDetailResponseSchema;
    };
    /**
     * GetExportTask returns the task's current state: an observation fresh
     * enough to need no new cloud call, or the result of one poll.
     *
     * @generated from rpc cwpexport.v1.LicenseExportService.GetExportTask
     */
    getExportTask: {
        methodKind: "unary";
        input: typeof GetExportTaskRequestSchema;
        output: typeof GetExportTaskResponseSchema;
    };
    /**
     * WatchExportTask streams the task's progress: the current state at once,
     * a message on every state change, heartbeats while it is pending, and ends
     * after the terminal message (finished or error).
     *
     * @generated from rpc cwpexport.v1.LicenseExportService.WatchExportTask
     */
    watchExportTask: {
        methodKind: "server_streaming";
        input: typeof WatchExportTaskRequestSchema;
        output: typeof WatchExportTaskResponseSchema;
    };
    /**
     * ExportLicenseDetailAndWatch starts an export and streams the same messages
     * as WatchExportTask. The first message carries the new task id, so a client
     * that loses the stream resumes with WatchExportTask.
     *
     * @generated from rpc cwpexport.v1.LicenseExportService.ExportLicenseDetailAndWatch
     */
    exportLicenseDetailAndWatch: {
        methodKind: "server_streaming";
        input: typeof ExportLicenseDetailAndWatchRequestSchema;
        output: typeof ExportLicenseDetailAndWatchResponseSchema;
    };
    /**
     * ListExportTasks lists the tasks this service created, newest first.
     *
     * @generated from rpc cwpexport.v1.LicenseExportService.ListExportTasks
     */
    listExportTasks: {
        methodKind: "unary";
        input: typeof ListExportTasksRequestSchema;
        output: typeof ListExportTasksResponseSchema;
    };
    /**
     * GetBudgetStatus reports the cloud's request budget as this service
     * measures it: per cloud action, the configured and effective rates, the
     * cloud's quota, the calls made in each of the last 60 seconds and how many
     * the cloud refused as over its limit; and how many tasks share the read
     * budget. The calls and the tasks are every caller's activity: they are
     * told only to operators (and to everyone when callers are not
     * authenticated); other callers get the rates and the quota, empty
     * calls_per_second and zero counts.
     *
     * @generated from rpc cwpexport.v1.LicenseExportService.GetBudgetStatus
     */
    getBudgetStatus: {
        methodKind: "unary";
        input: typeof GetBudgetStatusRequestSchema;
        output: typeof GetBudgetStatusResponseSchema;
    };
    /**
     * DownloadExport streams the exported file of a finished task through the
     * service. Over REST the body is the file's exact bytes.
     *
     * @generated from rpc cwpexport.v1.LicenseExportService.DownloadExport
     */
    downloadExport: {
        methodKind: "server_streaming";
        input: typeof DownloadExportRequestSchema;
        output: typeof DownloadExportResponseSchema;
    };
}>;
