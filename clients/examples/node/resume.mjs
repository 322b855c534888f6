// @ts-check
// A watch that outlives a restart of the service (@cwpexport/client's
// resume). Starts an export and watches it; after the first message it
// prints "watching TASK" so that clients/examples/resume.sh restarts the
// service. The helper must reopen the watch by itself after the Unavailable
// and follow the task to FINISHED; then the file is downloaded and checked.
// Exits non-zero otherwise.
//
//   node resume.mjs GRPC_ADDR
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Code, CwpExportClient, ExportTaskState, WatchEventKind } from "@cwpexport/client";

/** @param {string} msg */
function fail(msg) {
  console.error("FAIL: " + msg);
  process.exit(1);
}

const client = new CwpExportClient(process.argv[2]);
const task = await client.export({ filters: { LicenseType: ["2"] } });
/** @type {Code[]} */
const reconnects = [];
/** @type {string[]} */
const kinds = [];
let last;
for await (const msg of client.watch(task.taskId, { onReconnect: (err) => reconnects.push(err.code) })) {
  kinds.push(WatchEventKind[msg.kind]);
  if (kinds.length === 1) console.log(`watching ${task.taskId}`);
  last = msg;
}
console.log(`messages: ${kinds.join(" ")}; reconnects: ${reconnects.map((c) => Code[c]).join(" ")}`);
if (reconnects[0] !== Code.Unavailable) fail("the watch was not reopened after the restart");
if (kinds.filter((k) => k === "SNAPSHOT").length < 2) fail("the reopened watch did not start with a SNAPSHOT");
if (last?.task?.state !== ExportTaskState.FINISHED) fail(`the watch ended at ${last?.task?.state}`);
const dir = await mkdtemp(join(tmpdir(), "cwpexport-node-"));
try {
  const got = await client.download(task.taskId, join(dir, "licenses.csv"));
  console.log(`node resume: OK (task ${task.taskId}, ${got.size} bytes after the restart)`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
