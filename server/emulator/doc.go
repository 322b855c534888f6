// Package emulator is an in-process, faithful stand-in for the two Tencent
// Cloud CWP (Cloud Workload Protection, API version 2018-02-28) actions the
// gateway uses: ExportLicenseDetail and ExportTasks. It speaks Tencent Cloud
// API 3.0 over real HTTP, so the official SDK (and the product) talk to it
// exactly as they talk to cwp.tencentcloudapi.com; only the endpoint and the
// scheme differ.
//
// # Cloud endpoint
//
// POST / with a JSON body and TC3-HMAC-SHA256 signed headers. Every answer is
// HTTP 200 with Content-Type application/json and the API 3.0 envelope
// {"Response": {..., "RequestId": "..."}}; failures carry
// {"Response": {"Error": {"Code", "Message"}, "RequestId"}}.
//
// Requests are checked in this order, and the first failure is answered:
//
//  1. method: anything but POST -> UnsupportedProtocol (the emulator does not
//     implement GET-with-query-string requests).
//  2. body larger than 1 MiB -> RequestSizeLimitExceeded.
//  3. Authorization: missing, not TC3-HMAC-SHA256, or structurally garbled
//     (missing Credential/SignedHeaders/Signature, Credential not
//     id/date/service/tc3_request, SignedHeaders without content-type and
//     host) -> AuthFailure.InvalidAuthorization.
//  4. unknown SecretId -> AuthFailure.SecretIdNotFound.
//  5. X-TC-Timestamp missing -> MissingParameter; not an integer ->
//     InvalidParameterValue; more than 5 minutes from the emulator clock ->
//     AuthFailure.SignatureExpire.
//  6. credential scope service is not "cwp", scope date is not the UTC date
//     of X-TC-Timestamp, or the signature does not match (constant-time
//     comparison) -> AuthFailure.SignatureFailure.
//  7. X-TC-Token present -> AuthFailure.TokenFailure: the emulator knows only
//     permanent keys, so any session token is invalid.
//  8. X-TC-Version missing -> MissingParameter; not 2018-02-28 ->
//     NoSuchVersion (the cloud's code for an unknown API version).
//  9. X-TC-Action missing -> MissingParameter; unknown -> InvalidAction.
//  10. X-TC-Language other than "", zh-CN, en-US -> InvalidParameterValue.
//  11. rate limit -> RequestLimitExceeded (see below).
//  12. Content-Type not application/json -> InvalidParameter; body not a JSON
//     object -> InvalidParameter; unknown field (at any depth, named like
//     Filters.0.Foo) -> UnknownParameter; wrong JSON type ->
//     InvalidParameter; required field absent -> MissingParameter; bad value
//     -> InvalidParameterValue. JSON null is treated as an absent field.
//  13. the action itself (e.g. ResourceNotFound).
//
// The canonical request follows the TC3 algorithm: the headers named in
// SignedHeaders, in the order given, each as lower-case "name:value" with the
// value lower-cased and trimmed; the hashed payload is the SHA-256 of the raw
// body, or of the string UNSIGNED-PAYLOAD when X-TC-Content-SHA256 says so.
// Secret keys are never logged.
//
// # Rate limit
//
// Each (SecretId, action) pair may have at most Options.RateLimit requests
// admitted in any sliding window (t-1s, t] of the emulator clock. The limiter
// keeps a ring of the admission times of the last RateLimit admitted
// requests; a request at t is admitted only if the ring is not full or its
// oldest entry is at least one second before t. Rejected requests do not
// consume budget. Only requests that passed authentication reach the limiter.
// Independently, ActionStats.PeakPerSecond records the largest number of
// requests (admitted or not) one SecretId sent to an action within any
// window (t-1s, t], so a benchmark can check what the client offered, and
// ActionStats.PerSecond counts the requests and refusals of each second.
//
// Each SecretId is its own account: tasks created with one SecretId are not
// visible (ResourceNotFound) with another.
//
// # ExportLicenseDetail
//
// Parameters: Filters [{Name, Values, ExactMatch}], IsHistory, Tags
// [{TagKey, TagValue}], ExportMonth. Filter names are LicenseStatus (values
// 0 not used, 1 partially used, 2 used up, 3 unavailable, 4 available),
// DeadlineStatus (NotExpired, Expire, NearExpiry; case-insensitive),
// LicenseType (0, 1, 2), ResourceId and Keywords (matches MachineName,
// MachineIp or ResourceId). Filters are ANDed, the values of one filter are
// ORed. ExactMatch selects equality instead of a case-insensitive substring
// match; it only matters for ResourceId and Keywords. Tags are ANDed across
// different TagKeys and ORed across TagValues of the same key; an empty
// TagValue matches any value of that key.
//
// The exported data set is a deterministic function of Options.Seed,
// Options.Records and the anchor date (the UTC date of the emulator clock at
// New). Each record is one binding of a license to a machine, with a bind
// time in the two years before the anchor and, for about a quarter of them,
// an unbind time. IsHistory=false exports only current bindings (no unbind
// time). IsHistory=true exports current and historical bindings; with
// ExportMonth (YYYY-MM, not after the current month, only allowed together
// with IsHistory=true) it exports the bindings that were active at some
// point of that UTC month.
//
// The action answers {"TaskId": n, "DownloadUrl": ""}. Task ids are unique
// and sequential across all accounts, from Options.FirstTaskID (default 1)
// or from above the last id recorded in the state directory. A task is
// PENDING for Options.PendingFor, then FINISHED.
// A Keywords filter with the value EMULATOR_FAIL makes the task end in ERROR
// instead, which lets a client exercise the failure path without the admin
// endpoints.
//
// # ExportTasks
//
// Parameter TaskId: a string holding a decimal integer. Absent ->
// MissingParameter, a JSON number -> InvalidParameter, not a decimal integer
// -> InvalidParameterValue, unknown -> ResourceNotFound. Answers Status
// (PENDING, FINISHED, ERROR) and DownloadUrl, which is set only when
// FINISHED: http://<Host of the ExportTasks request>/downloads/<token>.csv.
//
// # Downloads
//
// GET (or HEAD) /downloads/<token>.csv needs no signature, like a
// pre-signed object-storage URL. It answers text/csv with Content-Length and
// Content-Disposition, streamed row by row; unknown tokens get 404. Columns:
// LicenseId, LicenseType, LicenseStatus, DeadlineStatus, Deadline,
// ResourceId, MachineName, MachineIp, Tags (key:value pairs joined by ";"),
// BindTime, UnbindTime. Times are UTC "2006-01-02 15:04:05"; empty when not
// applicable.
//
// With Options.DownloadTTL each ExportTasks answer mints a URL that expires
// after the TTL (?Expires=&Signature=, HMAC-signed); an expired or tampered
// URL is answered 403 AccessDenied, as pre-signed object storage URLs are,
// and a new ExportTasks call gives a fresh one.
//
// A Keywords filter value EMULATOR_BYTES_<n> makes the task's file a
// synthetic CSV of about n bytes (up to 64 GiB, rounded up to a whole
// fixed-width row), generated while it is sent: a very large export costs
// no memory.
//
// # Admin endpoints
//
// For tests and benchmarks in other processes; a request must name the
// emulator by an IP address or localhost, come from no other origin
// (403), and carry "Authorization: Bearer" Options.AdminToken when one is
// set (401):
// GET /_emulator/stats (JSON encoding of Stats), POST
// /_emulator/tasks/{id}/finish and POST /_emulator/tasks/{id}/fail (200 on
// success, 404 unknown task, 409 task no longer PENDING, 400 bad id), GET
// /_emulator/tasks/{id}/file (the file's Size and SHA256, as FileInfo).
//
// # Fault injection
//
// Options.Faults, Emulator.InjectFault and /_emulator/faults (GET lists,
// POST adds a JSON Fault, DELETE clears) make the cloud misbehave per action,
// with a probability or for the next N calls: added latency, HTTP 5xx with
// and without a body, connection resets, truncated and malformed JSON,
// InternalError, ServiceUnavailable and RequestLimitExceeded storms, and a
// skewed clock. See FaultKind.
//
// Added latency behaves like a slow server, not like a lost request: the
// emulator reads the request, waits the delay whatever the client does,
// runs the action, then answers. A client that gave up during the delay
// misses the answer, but the action happened (a create made its task);
// ActionStats.Errors counts the lost answer as ClientGone. Any answer the
// client hung up before is counted so. Only an emulator that closes (or a
// Serve whose shutdown grace ends) drops delayed requests unprocessed
// (Aborted).
//
// # State across restarts
//
// Without Options.StateDir everything lives in memory and ends with the
// Emulator. With it, the emulator keeps an append-only journal there
// (journal.jsonl, fsynced line by line, mode 0600) of what it must answer
// with after a restart: every task (id, owning SecretId, creation time,
// validated query, download token, end state once ended), the last id, the
// download-URL signing key and the data set's anchor date, seed and size. A
// task is durable before its creation is answered and survives kill -9 and
// power loss. An emulator started again on the directory answers ExportTasks
// as before for each account, serves the same bytes at the download URLs it
// gave (signed URLs keep verifying; on another day the CSV stays the same),
// and continues ids above the recorded ones. A data set with another Seed or
// Records than the directory's is refused. Start-up replays the journal in
// one pass (linear in the tasks recorded); a last line cut short by a crash
// is dropped with a warning. One emulator at a time uses a directory (LOCK);
// Close releases it. StateCredential keeps a generated account there too.
package emulator
