#!/bin/sh
# `make run`: start the whole stack on this machine for a person to try.
#   worker + relay + lighttpd (FastCGI handler, static page, /ws proxied to the relay)
# Ctrl-C stops every process this script started.
set -eu
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
# TASKWIRE_CONFIG, when set, names the configuration (relative to where make ran); else the
# one in conf/.
config=${TASKWIRE_CONFIG:-$root/conf/taskwire.conf}
case $config in /*) ;; *) config="$(pwd)/$config" ;; esac
cd "$root"
mkdir -p var
chmod 700 var
if [ ! -s var/secret ]; then
    # The HMAC secret that signs session tokens: random, readable by this user only.
    (umask 077 && head -c 32 /dev/urandom > var/secret)
fi
if [ ! -s var/admin.key ]; then
    # The admin key ([admin] key_file): the dashboard at /admin/ and the admin API ask for it.
    (umask 077 && openssl rand -hex 32 > var/admin.key)
fi
export TASKWIRE_CONFIG="$config"
export TASKWIRE_ROOT="$root"
export TASKWIRE_BUILD="$root/$build"
"$build/taskwire-worker" -n >/dev/null
"$build/taskwire-relay" -n >/dev/null

pids=""
stop() {
    trap - INT TERM EXIT
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    wait 2>/dev/null || true
    echo "taskwire stopped"
}
trap stop INT TERM EXIT

"$build/taskwire-worker" & pids="$pids $!"
"$build/taskwire-relay" & pids="$pids $!"
lighttpd -D -f conf/lighttpd.conf & pids="$pids $!"

# Wait (bounded) until the page answers, then say where it is.
tries=0
until curl -fsS -o /dev/null http://127.0.0.1:8080/api/health 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
        echo "taskwire did not come up; see the messages above" >&2
        exit 1
    fi
    sleep 0.1
done
echo
echo "taskwire is running: http://127.0.0.1:8080/"
# The metrics ports conf/taskwire.conf turns on (docs/OPERATIONS.md).
for section in worker relay; do
    listen=$(sed -n "/^\[$section\]/,/^\[/s/^metrics_listen *= *\([^ ;]*\).*/\1/p" "$TASKWIRE_CONFIG")
    if [ -n "$listen" ]; then echo "  $section metrics: http://$listen/metrics"; fi
done
echo "dashboard: http://127.0.0.1:8080/admin/ (admin key in $root/var/admin.key)"
echo "press Ctrl-C to stop"
wait
