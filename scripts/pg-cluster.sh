#!/usr/bin/env bash
# A throwaway PostgreSQL cluster from Debian's server binaries, for CI and a
# local fleet: the data in DIR/data, the log in DIR/log, the Unix socket in
# DIR, TCP on 127.0.0.1:PORT, superuser "test" with trust authentication.
#
#   scripts/pg-cluster.sh start DIR [PORT]  create the cluster if needed, start it, print its URL
#   scripts/pg-cluster.sh stop DIR          fast shutdown (sessions are ended); the data stays
#   scripts/pg-cluster.sh status DIR        exit 0 when it runs
#   scripts/pg-cluster.sh url DIR [DB]      the URL of database DB (default postgres)
#   scripts/pg-cluster.sh bindir            where initdb and postgres are; exit 1 when not installed
#
# PORT must be below 32768 (outside the ephemeral range, where an outgoing
# connection could take it while the server is stopped); the first start
# remembers it in DIR/port, later starts reuse it. fsync is off unless
# PG_FSYNC=on: the cluster is for tests and local runs, not for data to keep.
# initdb refuses root: as root the server runs as the postgres user, and DIR
# (whose parents the postgres user must be able to traverse) is given to it.
set -euo pipefail

die() { echo "pg-cluster: $*" >&2; exit 1; }

bindir() {
	if [[ -n "${CWPEXPORT_PG_BINDIR:-}" ]]; then
		[[ -x "$CWPEXPORT_PG_BINDIR/initdb" && -x "$CWPEXPORT_PG_BINDIR/postgres" ]] ||
			die "CWPEXPORT_PG_BINDIR=$CWPEXPORT_PG_BINDIR holds no initdb and postgres"
		echo "$CWPEXPORT_PG_BINDIR"
		return
	fi
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5nr); do
		if [[ -x "$d/initdb" && -x "$d/postgres" ]]; then
			echo "$d"
			return
		fi
	done
	if d=$(dirname "$(command -v initdb 2>/dev/null)" 2>/dev/null) && [[ -x "$d/initdb" && -x "$d/postgres" ]]; then
		echo "$d"
		return
	fi
	die "PostgreSQL's server is not installed (no initdb and postgres in /usr/lib/postgresql/*/bin or on PATH): apt-get install postgresql"
}

# as_server runs a command as the user the server runs as.
as_server() {
	if [[ $EUID -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

url() { echo "postgres://test@127.0.0.1:$(cat "$1/port")/${2:-postgres}?sslmode=disable"; }

start() {
	local dir=$1 port=${2:-} bin
	bin=$(bindir)
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [[ -f "$dir/port" ]]; then
		[[ -z "$port" || "$port" == "$(cat "$dir/port")" ]] || die "$dir was created for port $(cat "$dir/port"), not $port"
		port=$(cat "$dir/port")
	fi
	[[ "$port" =~ ^[0-9]+$ ]] || die "start needs a PORT (below 32768) the first time"
	((port >= 1024 && port < 32768)) || die "PORT $port: choose a port from 1024 to 32767"
	echo "$port" >"$dir/port"
	if [[ $EUID -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "as root the server runs as the postgres user, and there is none: apt-get install postgresql"
		chown postgres: "$dir"
		as_server test -w "$dir" || die "the postgres user cannot reach $dir: choose a directory whose parents it may traverse (e.g. under /tmp)"
	fi
	if [[ ! -f "$dir/data/PG_VERSION" ]]; then
		as_server "$bin/initdb" -D "$dir/data" -U test --auth=trust -E UTF8 --no-locale --no-sync --no-instructions >"$dir/initdb.log" 2>&1 ||
			die "initdb failed: $(cat "$dir/initdb.log")"
	fi
	if as_server "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		url "$dir"
		return
	fi
	as_server touch "$dir/log"
	as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 120 -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=${PG_FSYNC:-off} -c max_connections=300" start >/dev/null ||
		die "the server did not start; its log: $(tail -n 20 "$dir/log")"
	url "$dir"
}

stop() {
	local dir=$1 bin
	bin=$(bindir)
	[[ -f "$dir/data/PG_VERSION" ]] || die "$dir holds no cluster"
	if as_server "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		as_server "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 120 stop >/dev/null
	fi
}

status() {
	local dir=$1 bin
	bin=$(bindir)
	[[ -f "$dir/data/PG_VERSION" ]] || die "$dir holds no cluster"
	as_server "$bin/pg_ctl" -D "$dir/data" status >/dev/null
}

cmd=${1:-}
case "$cmd" in
start) [[ $# -ge 2 ]] || die "usage: $0 start DIR [PORT]"; start "$2" "${3:-}" ;;
stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; stop "$2" ;;
status) [[ $# -eq 2 ]] || die "usage: $0 status DIR"; status "$2" ;;
url) [[ $# -ge 2 ]] || die "usage: $0 url DIR [DB]"; [[ -f "$2/port" ]] || die "$2 holds no cluster"; url "$2" "${3:-}" ;;
bindir) bindir ;;
*) die "usage: $0 start DIR [PORT] | stop DIR | status DIR | url DIR [DB] | bindir" ;;
esac
