// Package e2e holds the service's end-to-end tests: the whole server
// (package app) on loopback ports, over the real SDK, the embedded
// emulator or a shared one, SQLite files and PostgreSQL clusters, called
// through real gRPC and REST clients. Unit tests sit beside what they
// test; shared helpers are in server/internal/testutil and
// server/testserver.
package e2e
