#!/usr/bin/env python3
"""A watch that outlives a restart of the service (cwpexport-client's resume).

Starts an export and watches it; after the first message it prints
``watching TASK`` so that clients/examples/resume.sh restarts the service.
The helper must reopen the watch by itself after the Unavailable and follow
the task to FINISHED; then the file is downloaded and checked. Exits non-zero
otherwise.

    python resume.py GRPC_ADDR
"""

import os
import sys
import tempfile

from cwpexport_client import Client, pb


def main():
    addr = sys.argv[1]
    reconnects = []
    kinds = []
    with Client(addr) as client:
        task = client.export({"LicenseType": ["2"]})
        for msg in client.watch(task.task_id, on_reconnect=lambda err, n: reconnects.append(err.code())):
            kinds.append(pb.WatchEventKind.Name(msg.kind))
            if len(kinds) == 1:
                print(f"watching {task.task_id}", flush=True)
            last = msg
        print(f"messages: {' '.join(kinds)}; reconnects: {[c.name for c in reconnects]}")
        if not reconnects or reconnects[0].name != "UNAVAILABLE":
            sys.exit("FAIL: the watch was not reopened after the restart")
        if kinds.count("WATCH_EVENT_KIND_SNAPSHOT") < 2:
            sys.exit("FAIL: the reopened watch did not start with a SNAPSHOT")
        if last.task.state != pb.EXPORT_TASK_STATE_FINISHED:
            sys.exit(f"FAIL: the watch ended at {pb.ExportTaskState.Name(last.task.state)}")
        with tempfile.TemporaryDirectory() as tmp:
            got = client.download(task.task_id, os.path.join(tmp, "licenses.csv"))
        print(f"python resume: OK (task {task.task_id}, {got.size} bytes after the restart)")


if __name__ == "__main__":
    main()
