// @ts-check
// Node.js client of the CWP license export gateway, written as a user of the
// @cwpexport/client package would (clients/node/README.md):
//
//   npm install --install-links /path/to/repo/clients/node
//   node example.mjs [GRPC_ADDR]   # default 127.0.0.1:9090
//
// Starts an export, watches it to FINISHED, downloads the file (its SHA-256
// checked), then sends an invalid request and prints the InvalidArgument's
// field violations. Exits non-zero if the service does not answer as
// documented, so CI runs it as a test (type-checked with tsc --checkJs too).
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { CwpExportClient, ErrorReason, ExportTaskState, InvalidRequestError, WatchEventKind, errorReason } from "@cwpexport/client";

/** @param {string} msg */
function fail(msg) {
  console.error("FAIL: " + msg);
  process.exit(1);
}

const addr = process.argv[2] || process.env.CWPEXPORT_GRPC || "127.0.0.1:9090";
const client = new CwpExportClient(addr, { token: process.env.CWPEXPORT_TOKEN });

// 1. Start an export. The request id makes a retry return this task instead
//    of creating another.
const requestId = randomUUID();
const task = await client.export({ filters: { LicenseType: ["1"] }, tags: { team: "node" }, requestId });
console.log(`started task ${task.taskId} (request id ${requestId})`);
const again = await client.export({ filters: { LicenseType: ["1"] }, tags: { team: "node" }, requestId });
if (again.taskId !== task.taskId) fail(`the same request id created task ${again.taskId} besides ${task.taskId}`);

// 2. Watch it: a SNAPSHOT, then state changes and heartbeats, to the end; a
//    dropped stream is reopened by itself.
let last;
for await (const msg of client.watch(task.taskId, {
  onReconnect: (err, n) => console.log(`  reconnecting (${n}): ${err.code}`),
})) {
  last = msg;
  console.log(`  ${WatchEventKind[msg.kind].padEnd(14)} ${ExportTaskState[msg.task?.state ?? 0].padEnd(9)} polls=${msg.progress?.pollCount}`);
}
if (last?.task?.state !== ExportTaskState.FINISHED) fail(`the watch did not end at FINISHED: ${last?.task?.state}`);

// 3. Download the file through the service; the helper checks its SHA-256
//    against the stream's last message before keeping it.
const dir = await mkdtemp(join(tmpdir(), "cwpexport-node-"));
try {
  const got = await client.download(task.taskId, join(dir, "licenses.csv"));
  console.log(`downloaded ${got.fileName}: ${got.size} bytes, sha256 ${got.sha256}`);
  const header = (await readFile(got.path, "utf8")).split("\n")[0];
  if (!header.startsWith("LicenseId,")) fail(`the file is not the CSV export: ${header}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}

// 4. An invalid request is answered with InvalidArgument and one field
//    violation per problem; it never reaches the cloud.
try {
  await client.export({ filters: { Bogus: [] }, exportMonth: "2026-13" });
  fail("an invalid request was accepted");
} catch (err) {
  if (!(err instanceof InvalidRequestError)) throw err;
  console.log(`InvalidArgument: ${err.message}`);
  if (errorReason(err.cause) !== ErrorReason.INVALID_ARGUMENT) fail(`reason ${err.reason}, want INVALID_ARGUMENT`);
  for (const v of err.violations) console.log(`  ${v.field}: ${v.description}`);
  const fields = new Set(err.violations.map((v) => v.field));
  for (const want of ["filters[0].name", "filters[0].values", "export_month"]) {
    if (!fields.has(want)) fail(`no field violation for ${want}: ${[...fields]}`);
  }
}
console.log("node client: OK");
