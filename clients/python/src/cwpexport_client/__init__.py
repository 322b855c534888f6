"""Python client of the CWP license export gateway.

The generated API lives in :mod:`cwpexport.v1` (``license_export_pb2`` and
``license_export_pb2_grpc``); this module adds a small helper around it::

    from cwpexport_client import Client, InvalidRequest

    with Client("127.0.0.1:9090") as client:
        task = client.export(filters={"LicenseType": ["1"]})
        for msg in client.watch(task.task_id):   # resumes after Unavailable
            print(msg.kind, msg.task.state)
        result = client.download(task.task_id, "licenses.csv")  # SHA-256 checked
"""

from cwpexport.v1 import license_export_pb2 as pb
from cwpexport.v1 import license_export_pb2_grpc as pb_grpc

from ._client import (
    ERROR_DOMAIN,
    SERVICE_CONFIG,
    ChecksumMismatch,
    Client,
    Download,
    ErrorReason,
    ExportFailed,
    InvalidRequest,
    error_info,
    error_reason,
    field_violations,
)

__all__ = [
    "ERROR_DOMAIN",
    "SERVICE_CONFIG",
    "ChecksumMismatch",
    "Client",
    "Download",
    "ErrorReason",
    "ExportFailed",
    "InvalidRequest",
    "error_info",
    "error_reason",
    "field_violations",
    "pb",
    "pb_grpc",
]
