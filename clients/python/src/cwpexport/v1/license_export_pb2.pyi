from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EXPORT_TASK_STATE_ERROR: ExportTaskState
EXPORT_TASK_STATE_FINISHED: ExportTaskState
EXPORT_TASK_STATE_PENDING: ExportTaskState
EXPORT_TASK_STATE_UNSPECIFIED: ExportTaskState
WATCH_EVENT_KIND_HEARTBEAT: WatchEventKind
WATCH_EVENT_KIND_SNAPSHOT: WatchEventKind
WATCH_EVENT_KIND_STATE_CHANGED: WatchEventKind
WATCH_EVENT_KIND_UNSPECIFIED: WatchEventKind

class ActionBudget(_message.Message):
    __slots__ = ["action", "calls_per_second", "cloud_quota", "configured_rate", "effective_rate", "throttled_calls"]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CALLS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    CLOUD_QUOTA_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_RATE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_RATE_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_CALLS_FIELD_NUMBER: _ClassVar[int]
    action: str
    calls_per_second: _containers.RepeatedScalarFieldContainer[int]
    cloud_quota: float
    configured_rate: float
    effective_rate: float
    throttled_calls: int
    def __init__(self, action: _Optional[str] = ..., configured_rate: _Optional[float] = ..., effective_rate: _Optional[float] = ..., cloud_quota: _Optional[float] = ..., calls_per_second: _Optional[_Iterable[int]] = ..., throttled_calls: _Optional[int] = ...) -> None: ...

class DownloadExportRequest(_message.Message):
    __slots__ = ["task_id"]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class DownloadExportResponse(_message.Message):
    __slots__ = ["content_type", "data", "file_name", "offset", "sha256", "total_size"]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    data: bytes
    file_name: str
    offset: int
    sha256: str
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ..., sha256: _Optional[str] = ..., file_name: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

class ExportLicenseDetailAndWatchRequest(_message.Message):
    __slots__ = ["export_month", "filters", "is_history", "request_id", "tags"]
    EXPORT_MONTH_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    IS_HISTORY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    export_month: str
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    is_history: bool
    request_id: str
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., is_history: bool = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., export_month: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ExportLicenseDetailAndWatchResponse(_message.Message):
    __slots__ = ["kind", "progress", "task", "upstream_request_id"]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEventKind
    progress: Progress
    task: ExportTask
    upstream_request_id: str
    def __init__(self, kind: _Optional[_Union[WatchEventKind, str]] = ..., task: _Optional[_Union[ExportTask, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., upstream_request_id: _Optional[str] = ...) -> None: ...

class ExportLicenseDetailRequest(_message.Message):
    __slots__ = ["export_month", "filters", "is_history", "request_id", "tags"]
    EXPORT_MONTH_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    IS_HISTORY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    export_month: str
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    is_history: bool
    request_id: str
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., is_history: bool = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., export_month: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ExportLicenseDetailResponse(_message.Message):
    __slots__ = ["task", "upstream_request_id"]
    TASK_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task: ExportTask
    upstream_request_id: str
    def __init__(self, task: _Optional[_Union[ExportTask, _Mapping]] = ..., upstream_request_id: _Optional[str] = ...) -> None: ...

class ExportParameters(_message.Message):
    __slots__ = ["export_month", "filters", "is_history", "tags"]
    EXPORT_MONTH_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    IS_HISTORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    export_month: str
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    is_history: bool
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., is_history: bool = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., export_month: _Optional[str] = ...) -> None: ...

class ExportTask(_message.Message):
    __slots__ = ["create_time", "creator", "download_url", "error_message", "last_upstream_request_id", "observe_time", "parameters", "request_id", "state", "task_id", "update_time"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_URL_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_UPSTREAM_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVE_TIME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    creator: str
    download_url: str
    error_message: str
    last_upstream_request_id: str
    observe_time: _timestamp_pb2.Timestamp
    parameters: ExportParameters
    request_id: str
    state: ExportTaskState
    task_id: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[ExportTaskState, str]] = ..., download_url: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., observe_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_upstream_request_id: _Optional[str] = ..., error_message: _Optional[str] = ..., parameters: _Optional[_Union[ExportParameters, _Mapping]] = ..., request_id: _Optional[str] = ..., creator: _Optional[str] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ["exact_match", "name", "values"]
    EXACT_MATCH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    exact_match: bool
    name: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., exact_match: bool = ...) -> None: ...

class GetBudgetStatusRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetBudgetStatusResponse(_message.Message):
    __slots__ = ["actions", "activity_withheld", "read_budget_tasks", "window_end_time"]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_WITHHELD_FIELD_NUMBER: _ClassVar[int]
    READ_BUDGET_TASKS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_TIME_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[ActionBudget]
    activity_withheld: bool
    read_budget_tasks: int
    window_end_time: _timestamp_pb2.Timestamp
    def __init__(self, actions: _Optional[_Iterable[_Union[ActionBudget, _Mapping]]] = ..., read_budget_tasks: _Optional[int] = ..., window_end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., activity_withheld: bool = ...) -> None: ...

class GetExportTaskRequest(_message.Message):
    __slots__ = ["task_id"]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetExportTaskResponse(_message.Message):
    __slots__ = ["progress", "task"]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    task: ExportTask
    def __init__(self, task: _Optional[_Union[ExportTask, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class ListExportTasksRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "state"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: ExportTaskState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[ExportTaskState, str]] = ...) -> None: ...

class ListExportTasksResponse(_message.Message):
    __slots__ = ["next_page_token", "tasks"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    tasks: _containers.RepeatedCompositeFieldContainer[ExportTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[ExportTask, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ["consecutive_poll_failures", "last_poll_error", "last_poll_time", "next_poll_time", "pending_tasks", "poll_count", "read_budget_rate", "task_elapsed", "watch_elapsed"]
    CONSECUTIVE_POLL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_POLL_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_POLL_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_POLL_TIME_FIELD_NUMBER: _ClassVar[int]
    PENDING_TASKS_FIELD_NUMBER: _ClassVar[int]
    POLL_COUNT_FIELD_NUMBER: _ClassVar[int]
    READ_BUDGET_RATE_FIELD_NUMBER: _ClassVar[int]
    TASK_ELAPSED_FIELD_NUMBER: _ClassVar[int]
    WATCH_ELAPSED_FIELD_NUMBER: _ClassVar[int]
    consecutive_poll_failures: int
    last_poll_error: str
    last_poll_time: _timestamp_pb2.Timestamp
    next_poll_time: _timestamp_pb2.Timestamp
    pending_tasks: int
    poll_count: int
    read_budget_rate: float
    task_elapsed: _duration_pb2.Duration
    watch_elapsed: _duration_pb2.Duration
    def __init__(self, poll_count: _Optional[int] = ..., task_elapsed: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., watch_elapsed: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., last_poll_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., next_poll_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., consecutive_poll_failures: _Optional[int] = ..., last_poll_error: _Optional[str] = ..., pending_tasks: _Optional[int] = ..., read_budget_rate: _Optional[float] = ...) -> None: ...

class Tag(_message.Message):
    __slots__ = ["tag_key", "tag_value"]
    TAG_KEY_FIELD_NUMBER: _ClassVar[int]
    TAG_VALUE_FIELD_NUMBER: _ClassVar[int]
    tag_key: str
    tag_value: str
    def __init__(self, tag_key: _Optional[str] = ..., tag_value: _Optional[str] = ...) -> None: ...

class WatchExportTaskRequest(_message.Message):
    __slots__ = ["task_id"]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class WatchExportTaskResponse(_message.Message):
    __slots__ = ["kind", "progress", "task"]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEventKind
    progress: Progress
    task: ExportTask
    def __init__(self, kind: _Optional[_Union[WatchEventKind, str]] = ..., task: _Optional[_Union[ExportTask, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class ExportTaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class WatchEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
