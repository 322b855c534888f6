#!/usr/bin/env node
// Node.js gRPC client of the CWP license export gateway (@grpc/grpc-js and
// @grpc/proto-loader, loading our protos at run time).
//
// Starts an export, watches it to FINISHED, then sends an invalid request and
// prints the InvalidArgument's field violations. Exits non-zero if the service
// does not answer as documented, so it doubles as a test.
//
//   (cd clients && npm ci) && node clients/examples/node/example.js [GRPC_ADDR]   # default 127.0.0.1:9090
//
// Needs the third-party protos that `make generate` copies into .third_party/.
'use strict';

const path = require('node:path');
const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const root = path.resolve(__dirname, '..', '..', '..');
const includeDirs = [path.join(root, 'proto'), path.join(root, '.third_party')];
const addr = process.argv[2] || process.env.CWPEXPORT_GRPC || '127.0.0.1:9090';

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}

const definition = protoLoader.loadSync('cwpexport/v1/license_export.proto', {
  includeDirs, defaults: true, enums: String, longs: String,
});
const {LicenseExportService} = grpc.loadPackageDefinition(definition).cwpexport.v1;

// The error details (google.rpc.Status in the grpc-status-details-bin
// trailer) are decoded with protobufjs from the same googleapis protos.
const rpcTypes = new protobuf.Root();
rpcTypes.resolvePath = (_origin, target) =>
  includeDirs.map((d) => path.join(d, target)).find((p) => fs.existsSync(p)) || target;
rpcTypes.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
const Status = rpcTypes.lookupType('google.rpc.Status');

function fieldViolations(err) {
  const raw = err.metadata && err.metadata.get('grpc-status-details-bin')[0];
  if (!raw) fail('no grpc-status-details-bin trailer');
  const out = [];
  for (const any of Status.decode(raw).details) {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    if (typeName === 'google.rpc.BadRequest') {
      out.push(...rpcTypes.lookupType(typeName).decode(any.value).fieldViolations);
    }
  }
  return out;
}

const deadline = (s) => ({deadline: Date.now() + s * 1000});

async function main() {
  const client = new LicenseExportService(addr, grpc.credentials.createInsecure());

  // 1. Start an export: the answer carries the task id at once.
  const created = await new Promise((resolve, reject) =>
    client.ExportLicenseDetail({filters: [{name: 'LicenseType', values: ['1']}]}, deadline(10),
        (err, res) => (err ? reject(err) : resolve(res))));
  const taskId = created.task.taskId;
  console.log(`started task ${taskId} (cloud RequestId ${created.upstreamRequestId})`);

  // 2. Watch it: a snapshot, state changes and heartbeats, then the end.
  let last;
  for await (const msg of client.WatchExportTask({taskId}, deadline(60))) {
    last = msg;
    const elapsed = Number(msg.progress.taskElapsed?.seconds || 0) + (msg.progress.taskElapsed?.nanos || 0) / 1e9;
    console.log(`  ${msg.kind.padEnd(32)} ${msg.task.state.padEnd(28)} polls=${msg.progress.pollCount} elapsed=${elapsed.toFixed(1)}s`);
  }
  if (!last || last.task.state !== 'EXPORT_TASK_STATE_FINISHED' || !last.task.downloadUrl) {
    fail('the watch did not end at FINISHED with a download URL: ' + JSON.stringify(last));
  }
  console.log('FINISHED: ' + last.task.downloadUrl);

  // 3. An invalid request: InvalidArgument with a google.rpc.BadRequest.
  const err = await new Promise((resolve) =>
    client.ExportLicenseDetail({filters: [{name: 'Bogus', values: []}], exportMonth: '2026-13'}, deadline(10),
        (e) => resolve(e)));
  if (!err) fail('an invalid request was accepted');
  if (err.code !== grpc.status.INVALID_ARGUMENT) fail(`invalid request answered code ${err.code}, want INVALID_ARGUMENT`);
  console.log('InvalidArgument: ' + err.details);
  const violations = fieldViolations(err);
  for (const v of violations) console.log(`  ${v.field}: ${v.description}`);
  const fields = new Set(violations.map((v) => v.field));
  for (const want of ['filters[0].name', 'filters[0].values', 'export_month']) {
    if (!fields.has(want)) fail(`no field violation for ${want}: ${[...fields]}`);
  }
  client.close();
  console.log('node client: OK');
}

main().catch((e) => fail(e.stack || String(e)));
