#!/usr/bin/env python3
"""Python client of the CWP license export gateway, written as a user of the
cwpexport-client package would (clients/python/README.md):

    pip install ./clients/python
    python clients/examples/python/example.py [GRPC_ADDR]   # default 127.0.0.1:9090

Starts an export, watches it to FINISHED, downloads the file (its SHA-256
checked), then sends an invalid request and prints the InvalidArgument's
field violations. Exits non-zero if the service does not answer as
documented, so CI runs it as a test.
"""

import os
import sys
import tempfile
import uuid

from cwpexport_client import Client, ErrorReason, InvalidRequest, error_reason, pb


def fail(msg):
    sys.exit("FAIL: " + msg)


def main():
    addr = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CWPEXPORT_GRPC", "127.0.0.1:9090")
    with Client(addr, token=os.environ.get("CWPEXPORT_TOKEN")) as client:
        # 1. Start an export. The request id makes a retry return this task
        #    instead of creating another.
        request_id = str(uuid.uuid4())
        task = client.export({"LicenseType": ["1"]}, tags={"team": "python"}, request_id=request_id)
        print(f"started task {task.task_id} (request id {request_id})")
        again = client.export({"LicenseType": ["1"]}, tags={"team": "python"}, request_id=request_id)
        if again.task_id != task.task_id:
            fail(f"the same request id created task {again.task_id} besides {task.task_id}")

        # 2. Watch it: a SNAPSHOT, then state changes and heartbeats, to the
        #    end; a dropped stream is reopened by itself.
        last = None
        for msg in client.watch(task.task_id, on_reconnect=lambda err, n: print(f"  reconnecting ({n}): {err.code()}")):
            last = msg
            print(f"  {pb.WatchEventKind.Name(msg.kind):32} {pb.ExportTaskState.Name(msg.task.state):28} "
                  f"polls={msg.progress.poll_count}")
        if last is None or last.task.state != pb.EXPORT_TASK_STATE_FINISHED:
            fail(f"the watch did not end at FINISHED: {last}")

        # 3. Download the file through the service; the helper checks its
        #    SHA-256 against the stream's last message before keeping it.
        with tempfile.TemporaryDirectory() as tmp:
            got = client.download(task.task_id, os.path.join(tmp, "licenses.csv"))
            with open(got.path, encoding="utf-8") as f:
                header = f.readline()
            print(f"downloaded {got.file_name}: {got.size} bytes, sha256 {got.sha256}")
            if not header.startswith("LicenseId,"):
                fail(f"the file is not the CSV export: {header!r}")

        # 4. An invalid request is answered with InvalidArgument and one field
        #    violation per problem; it never reaches the cloud.
        try:
            client.export({"Bogus": []}, export_month="2026-13")
            fail("an invalid request was accepted")
        except InvalidRequest as err:
            print(f"InvalidArgument: {err}")
            if error_reason(err.error) != ErrorReason.Value("INVALID_ARGUMENT"):
                fail(f"reason {err.reason!r}, want INVALID_ARGUMENT")
            for v in err.violations:
                print(f"  {v.field}: {v.description}")
            fields = {v.field for v in err.violations}
            for want in ("filters[0].name", "filters[0].values", "export_month"):
                if want not in fields:
                    fail(f"no field violation for {want}: {sorted(fields)}")
    print("python client: OK")


if __name__ == "__main__":
    main()
