from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.rpc import code_pb2 as _code_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Optional as _Optional, Union as _Union

ABORTED: ErrorReason
ALREADY_EXISTS: ErrorReason
BUDGET_NOT_MEASURED: ErrorReason
CALLER_READ_RATE_EXCEEDED: ErrorReason
CALLER_SHARE_EXHAUSTED: ErrorReason
CALLER_STREAM_LIMIT_EXCEEDED: ErrorReason
CANCELED: ErrorReason
CREATION_IN_PROGRESS: ErrorReason
CREATION_OUTCOME_UNKNOWN: ErrorReason
DATA_LOSS: ErrorReason
DEADLINE_EXCEEDED: ErrorReason
DESCRIPTOR: _descriptor.FileDescriptor
DOWNLOAD_FAILED: ErrorReason
ERROR_REASON_STATUS_FIELD_NUMBER: _ClassVar[int]
ERROR_REASON_UNSPECIFIED: ErrorReason
EXPORT_BUDGET_EXHAUSTED: ErrorReason
FAILED_PRECONDITION: ErrorReason
HOST_NOT_ALLOWED: ErrorReason
INTERNAL: ErrorReason
INVALID_ARGUMENT: ErrorReason
METHOD_NOT_ALLOWED: ErrorReason
NOT_FOUND: ErrorReason
ORIGIN_NOT_ALLOWED: ErrorReason
OUT_OF_RANGE: ErrorReason
PERMISSION_DENIED: ErrorReason
REGISTRY_FAILED: ErrorReason
REQUEST_BODY_TIMEOUT: ErrorReason
REQUEST_BODY_UNREADABLE: ErrorReason
REQUEST_ID_REUSED: ErrorReason
REQUEST_TOO_LARGE: ErrorReason
RESOURCE_EXHAUSTED: ErrorReason
SHUTTING_DOWN: ErrorReason
TASK_NOT_FINISHED: ErrorReason
TASK_NOT_FOUND: ErrorReason
TOO_MANY_AUTHENTICATION_FAILURES: ErrorReason
UNAUTHENTICATED: ErrorReason
UNAVAILABLE: ErrorReason
UNIMPLEMENTED: ErrorReason
UNKNOWN: ErrorReason
UNKNOWN_PATH: ErrorReason
UNSUPPORTED_MEDIA_TYPE: ErrorReason
UPSTREAM_CREDENTIALS_REJECTED: ErrorReason
UPSTREAM_FAILED_OPERATION: ErrorReason
UPSTREAM_INVALID_ARGUMENT: ErrorReason
UPSTREAM_PERMISSION_DENIED: ErrorReason
UPSTREAM_QUOTA_EXCEEDED: ErrorReason
UPSTREAM_RATE_LIMITED: ErrorReason
UPSTREAM_RESOURCE_NOT_FOUND: ErrorReason
UPSTREAM_UNAVAILABLE: ErrorReason
UPSTREAM_UNKNOWN_ERROR: ErrorReason
error_reason_status: _descriptor.FieldDescriptor

class ErrorReasonStatus(_message.Message):
    __slots__ = ["code", "http_status", "other_codes"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    OTHER_CODES_FIELD_NUMBER: _ClassVar[int]
    code: _code_pb2.Code
    http_status: int
    other_codes: _containers.RepeatedScalarFieldContainer[_code_pb2.Code]
    def __init__(self, code: _Optional[_Union[_code_pb2.Code, str]] = ..., other_codes: _Optional[_Iterable[_Union[_code_pb2.Code, str]]] = ..., http_status: _Optional[int] = ...) -> None: ...

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
