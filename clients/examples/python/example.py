#!/usr/bin/python3
"""Python gRPC client of the CWP license export gateway.

Starts an export, watches it to FINISHED, then sends an invalid request and
prints the InvalidArgument's field violations. Exits non-zero if the service
does not answer as documented, so it doubles as a test.

Needs Debian's python3-grpcio and python3-grpc-tools (run with /usr/bin/python3)
and the third-party protos that `make generate` copies into .third_party/.
The stubs are generated into a temporary directory at start:

    /usr/bin/python3 clients/examples/python/example.py [GRPC_ADDR]   # default 127.0.0.1:9090
"""

import importlib
import os
import sys
import tempfile

from grpc_tools import protoc
import grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PROTOS = [
    "cwpexport/v1/license_export.proto",
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
]


def generate_stubs(out):
    """Generates Python modules for our protos and their imports into out."""
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["grpc_tools.protoc", "-I" + os.path.join(ROOT, "proto"), "-I" + os.path.join(ROOT, ".third_party"),
            "-I" + include, "--python_out=" + out, "--grpc_python_out=" + out] + PROTOS
    if protoc.main(args) != 0:
        sys.exit("protoc failed (did `make generate` create .third_party/?)")
    sys.path.insert(0, out)


def fail(msg):
    sys.exit("FAIL: " + msg)


def main():
    addr = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CWPEXPORT_GRPC", "127.0.0.1:9090")
    stubs = tempfile.TemporaryDirectory(prefix="cwpexport-py-")
    generate_stubs(stubs.name)
    pb = importlib.import_module("cwpexport.v1.license_export_pb2")
    rpc = importlib.import_module("cwpexport.v1.license_export_pb2_grpc")
    status_pb2 = importlib.import_module("google.rpc.status_pb2")
    details_pb2 = importlib.import_module("google.rpc.error_details_pb2")

    with grpc.insecure_channel(addr) as channel:
        stub = rpc.LicenseExportServiceStub(channel)

        # 1. Start an export: the answer carries the task id at once.
        created = stub.ExportLicenseDetail(pb.ExportLicenseDetailRequest(
            filters=[pb.Filter(name="LicenseType", values=["1"])]), timeout=10)
        task_id = created.task.task_id
        print(f"started task {task_id} (cloud RequestId {created.upstream_request_id})")

        # 2. Watch it: a snapshot, state changes and heartbeats, then the end.
        last = None
        for msg in stub.WatchExportTask(pb.WatchExportTaskRequest(task_id=task_id), timeout=60):
            last = msg
            print(f"  {pb.WatchEventKind.Name(msg.kind):32} {pb.ExportTaskState.Name(msg.task.state):28} "
                  f"polls={msg.progress.poll_count} elapsed={msg.progress.task_elapsed.ToTimedelta().total_seconds():.1f}s")
        if last is None or last.task.state != pb.EXPORT_TASK_STATE_FINISHED or not last.task.download_url:
            fail(f"the watch did not end at FINISHED with a download URL: {last}")
        print(f"FINISHED: {last.task.download_url}")

        # 3. An invalid request is answered with InvalidArgument and a
        #    google.rpc.BadRequest listing every field violation.
        try:
            stub.ExportLicenseDetail(pb.ExportLicenseDetailRequest(
                filters=[pb.Filter(name="Bogus", values=[])], export_month="2026-13"), timeout=10)
            fail("an invalid request was accepted")
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                fail(f"invalid request answered {err.code()}, want INVALID_ARGUMENT")
            print(f"InvalidArgument: {err.details()}")
            raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
            if raw is None:
                fail("no grpc-status-details-bin trailer")
            violations = []
            for any_detail in status_pb2.Status.FromString(raw).details:
                bad = details_pb2.BadRequest()
                if any_detail.Unpack(bad):
                    violations.extend(bad.field_violations)
            for v in violations:
                print(f"  {v.field}: {v.description}")
            fields = {v.field for v in violations}
            for want in ("filters[0].name", "filters[0].values", "export_month"):
                if want not in fields:
                    fail(f"no field violation for {want}: {sorted(fields)}")
    stubs.cleanup()
    print("python client: OK")


if __name__ == "__main__":
    main()
