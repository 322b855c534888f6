"""The helper: export, watch with resume, download with a SHA-256 check, the
details of an InvalidArgument, and the reason of any error."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import grpc
from google.rpc import error_details_pb2, status_pb2

from cwpexport.v1 import error_reason_pb2
from cwpexport.v1 import license_export_pb2 as pb
from cwpexport.v1 import license_export_pb2_grpc as pb_grpc

# States after which a task never changes.
_TERMINAL = (pb.EXPORT_TASK_STATE_FINISHED, pb.EXPORT_TASK_STATE_ERROR)

def _read_service_config() -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "service_config.json"), encoding="utf-8") as f:
        return f.read()


#: The gRPC service config of the service's clients (JSON, the same as
#: clients/service-config.json): round_robin over every address the target
#: resolves to, and retries on UNAVAILABLE for the read methods before a
#: stream's first message, never for creations. :class:`Client` dials with it.
SERVICE_CONFIG: str = _read_service_config()

Filters = Union[Mapping[str, Sequence[str]], Iterable[pb.Filter]]
Tags = Union[Mapping[str, str], Iterable[pb.Tag]]


def _status(err: grpc.RpcError) -> Optional[status_pb2.Status]:
    """The google.rpc.Status the service sent in the grpc-status-details-bin
    trailer, or None."""
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return None


def field_violations(err: grpc.RpcError) -> list:
    """The ``google.rpc.BadRequest.FieldViolation`` entries of an error (each
    with ``field`` and ``description``); empty when it carries none."""
    out = []
    st = _status(err)
    for detail in st.details if st else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.extend(bad.field_violations)
    return out


def error_info(err: grpc.RpcError) -> Optional[error_details_pb2.ErrorInfo]:
    """The error's ``google.rpc.ErrorInfo`` (``reason``, ``domain``,
    ``metadata``), or None."""
    st = _status(err)
    for detail in st.details if st else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


#: The catalog of the reasons the service's errors carry:
#: ``ErrorReason.Name(value)`` is the reason string, ``ErrorReason.Value(name)``
#: its value; the values are also constants of :mod:`cwpexport.v1.error_reason_pb2`.
ErrorReason = error_reason_pb2.ErrorReason

#: The ErrorInfo domain of the service's errors.
ERROR_DOMAIN = "cwpexport.v1"


def error_reason(err: grpc.RpcError) -> int:
    """The service's reason for an error, as an :data:`ErrorReason` value;
    ``ERROR_REASON_UNSPECIFIED`` when it carries none, or one this package
    does not know (a newer server's)."""
    info = error_info(err)
    if info is None or info.domain != ERROR_DOMAIN:
        return error_reason_pb2.ERROR_REASON_UNSPECIFIED
    try:
        return ErrorReason.Value(info.reason)
    except ValueError:
        return error_reason_pb2.ERROR_REASON_UNSPECIFIED


class InvalidRequest(Exception):
    """The service answered InvalidArgument; ``violations`` lists what to fix."""

    def __init__(self, err: grpc.RpcError):
        self.error = err
        self.violations = field_violations(err)
        info = error_info(err)
        self.reason = info.reason if info else ""
        super().__init__(err.details() or "invalid request")


class ExportFailed(Exception):
    """The export ended in ERROR; ``task`` is the task as last observed."""

    def __init__(self, task: pb.ExportTask):
        self.task = task
        super().__init__(f"export task {task.task_id} ended in ERROR: {task.error_message or 'no reason given'}")


class ChecksumMismatch(Exception):
    """The downloaded bytes do not match what the service announced; the
    partial file has been removed."""


@dataclass(frozen=True)
class Download:
    """A file saved by :meth:`Client.download`."""

    path: str
    size: int
    sha256: str
    file_name: str
    content_type: str


def _filters(filters: Filters) -> list:
    if isinstance(filters, Mapping):
        return [pb.Filter(name=name, values=list(values)) for name, values in filters.items()]
    return list(filters)


def _tags(tags: Tags) -> list:
    if isinstance(tags, Mapping):
        return [pb.Tag(tag_key=key, tag_value=value) for key, value in tags.items()]
    return list(tags)


class Client:
    """A connection to the service's gRPC port.

    ``target`` is ``host:port``, or any gRPC target: ``dns:///host:port``
    (every address the name resolves to), or ``ipv4:10.0.0.1:9090,10.0.0.2:9090``
    (a fixed list of replicas). The channel uses :data:`SERVICE_CONFIG`: calls
    go round-robin to the addresses that answer, and reads that fail
    UNAVAILABLE before their first message are retried. ``options`` are more
    channel options (they may replace ``grpc.service_config``).
    ``credentials`` (``grpc.ssl_channel_credentials``) selects TLS; ``token`` is
    sent as ``authorization: Bearer <token>`` on every call. A ready
    ``channel`` can be passed instead of a target. ``timeout`` is the deadline
    of unary calls in seconds.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:9090",
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        token: Optional[str] = None,
        channel: Optional[grpc.Channel] = None,
        timeout: float = 30.0,
        options: Sequence[Tuple[str, Any]] = (),
    ):
        if channel is None:
            opts = [("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
            opts = [o for o in opts if o[0] not in {k for k, _ in options}] + list(options)
            if credentials:
                channel = grpc.secure_channel(target, credentials, options=opts)
            else:
                channel = grpc.insecure_channel(target, options=opts)
            self._owned = True
        else:
            self._owned = False
        self.channel = channel
        self.stub = pb_grpc.LicenseExportServiceStub(channel)
        self.timeout = timeout
        self._metadata: Tuple[Tuple[str, str], ...] = (("authorization", "Bearer " + token),) if token else ()

    def close(self) -> None:
        """Closes the channel if this client opened it."""
        if self._owned:
            self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def export(
        self,
        filters: Filters = (),
        *,
        tags: Tags = (),
        is_history: bool = False,
        export_month: str = "",
        request_id: Optional[str] = None,
        retries: int = 3,
    ) -> pb.ExportTask:
        """Starts an export and returns its pending task.

        ``filters`` maps a filter name to its values (or is a list of
        ``pb.Filter``); ``tags`` maps tag keys to values. ``request_id`` (a
        UUID) makes the call idempotent: the service answers a repeated id
        with the first task. When none is given one is generated, so the
        helper can retry an Unavailable answer ``retries`` times without
        creating a second task. Raises :class:`InvalidRequest` on
        InvalidArgument, ``grpc.RpcError`` otherwise.
        """
        req = pb.ExportLicenseDetailRequest(
            filters=_filters(filters),
            tags=_tags(tags),
            is_history=is_history,
            export_month=export_month,
            request_id=request_id or str(uuid.uuid4()),
        )
        for attempt in _attempts(retries):
            try:
                return self.stub.ExportLicenseDetail(req, timeout=self.timeout, metadata=self._metadata).task
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidRequest(err) from None
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt.last:
                    raise
                attempt.sleep()
        raise AssertionError("unreachable")

    def get(self, task_id: str) -> pb.GetExportTaskResponse:
        """The task's current state and the progress the service observed."""
        try:
            return self.stub.GetExportTask(
                pb.GetExportTaskRequest(task_id=task_id), timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidRequest(err) from None
            raise

    def watch(
        self,
        task_id: str,
        *,
        max_reconnects: int = 10,
        on_reconnect: Optional[Callable[[grpc.RpcError, int], None]] = None,
    ) -> Iterator[pb.WatchExportTaskResponse]:
        """Yields the task's watch messages until its FINISHED or ERROR message.

        When the stream breaks with Unavailable (the service restarted, the
        connection dropped) the watch is opened again for the same task after
        a short backoff; the new stream starts with a SNAPSHOT of the current
        state. ``on_reconnect(error, attempt)`` is called before each retry.
        After ``max_reconnects`` failures in a row without a message the last
        error is raised.
        """
        failures = 0
        while True:
            stream = self.stub.WatchExportTask(pb.WatchExportTaskRequest(task_id=task_id), metadata=self._metadata)
            try:
                for msg in stream:
                    failures = 0
                    yield msg
                    if msg.task.state in _TERMINAL:
                        return
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidRequest(err) from None
                if err.code() != grpc.StatusCode.UNAVAILABLE or failures >= max_reconnects:
                    raise
                failures += 1
                if on_reconnect:
                    on_reconnect(err, failures)
                time.sleep(_backoff(failures))
                continue
            finally:
                stream.cancel()
            # The stream ended without a terminal message: the service went
            # away between messages; reopen as for Unavailable.
            failures += 1
            if failures > max_reconnects:
                raise RuntimeError(f"the watch of task {task_id} kept ending before FINISHED or ERROR")
            time.sleep(_backoff(failures))

    def wait(self, task_id: str, **watch_options) -> pb.ExportTask:
        """Watches the task to its end and returns it once FINISHED; raises
        :class:`ExportFailed` if it ended in ERROR."""
        last = None
        for msg in self.watch(task_id, **watch_options):
            last = msg
        if last is None or last.task.state != pb.EXPORT_TASK_STATE_FINISHED:
            raise ExportFailed(last.task if last else pb.ExportTask(task_id=task_id))
        return last.task

    def download(self, task_id: str, path: str) -> Download:
        """Downloads a FINISHED task's file to ``path``.

        The chunks are written to a temporary file beside ``path``; only when
        every offset follows on, the size matches and the SHA-256 equals the
        one in the stream's last message is it renamed to ``path``. Otherwise
        :class:`ChecksumMismatch` is raised and nothing is left behind.
        """
        directory = os.path.dirname(os.path.abspath(path))
        fd, part = tempfile.mkstemp(prefix=".cwpexport-", suffix=".part", dir=directory)
        digest = hashlib.sha256()
        size = 0
        want_sha, want_size, file_name, content_type = "", None, "", ""
        try:
            with os.fdopen(fd, "wb") as out:
                stream = self.stub.DownloadExport(pb.DownloadExportRequest(task_id=task_id), metadata=self._metadata)
                try:
                    for chunk in stream:
                        if chunk.file_name:
                            file_name, content_type = chunk.file_name, chunk.content_type
                        if want_size is None:
                            want_size = chunk.total_size  # -1: not known
                        if chunk.data:
                            if chunk.offset != size:
                                raise ChecksumMismatch(f"chunk at offset {chunk.offset}, expected {size}")
                            out.write(chunk.data)
                            digest.update(chunk.data)
                            size += len(chunk.data)
                        if chunk.sha256:
                            want_sha = chunk.sha256
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                        raise InvalidRequest(err) from None
                    raise
            got = digest.hexdigest()
            if not want_sha:
                raise ChecksumMismatch("the stream ended without the file's SHA-256")
            if got != want_sha.lower():
                raise ChecksumMismatch(f"SHA-256 of the received bytes is {got}, the service announced {want_sha}")
            if want_size is not None and want_size >= 0 and size != want_size:
                raise ChecksumMismatch(f"received {size} bytes, the service announced {want_size}")
            os.replace(part, path)
        except BaseException:
            if os.path.exists(part):
                os.unlink(part)
            raise
        return Download(path=path, size=size, sha256=got, file_name=file_name, content_type=content_type)


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to 0.2 s, 0.4 s, ... 5 s."""
    return random.uniform(0, min(5.0, 0.2 * 2 ** (attempt - 1)))


@dataclass
class _Attempt:
    number: int
    last: bool

    def sleep(self) -> None:
        time.sleep(_backoff(self.number))


def _attempts(retries: int) -> Iterator[_Attempt]:
    for n in range(1, retries + 2):
        yield _Attempt(number=n, last=n == retries + 1)
