#!/bin/sh
# The servers and clients the default test run starts for real: MariaDB and
# PostgreSQL (SQL sinks, the PostgreSQL source), kcat (an independent Kafka
# consumer) and etcd (the metadata-write comparison). Run by `make test`
# before any test: as root it installs what is missing with apt-get; as
# anyone else it stops at once and prints the exact command to run.
set -eu

missing=""
[ -x /usr/sbin/mariadbd ] && [ -x /usr/bin/mariadb-install-db ] || missing="$missing mariadb-server"
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$missing postgresql"
command -v kcat >/dev/null 2>&1 || missing="$missing kcat"
command -v etcd >/dev/null 2>&1 || missing="$missing etcd-server"

[ -z "$missing" ] && exit 0

cmd="apt-get install -y$missing"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "the tests need Debian packages that are not installed:$missing" >&2
	echo "install them (as root) with:" >&2
	echo "	apt-get update && $cmd" >&2
	exit 1
fi
echo "installing the test servers:$missing"
export DEBIAN_FRONTEND=noninteractive
# Debian's packages must not start their services here: the tests start
# private servers themselves.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
fi
status=0
apt-get update -qq && apt-get install -y -qq --no-install-recommends$missing >/dev/null || status=$?
[ -n "$created_policy" ] && rm -f "$policy"
if [ "$status" -ne 0 ]; then
	echo "installing$missing failed; run: apt-get update && $cmd" >&2
	exit 1
fi
