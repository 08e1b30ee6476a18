#!/bin/sh
# The Debian package, as a user gets it: unpacked into a scratch root with dpkg -x, its files
# where DEPLOY.md says with the modes it says, its systemd units and man pages clean, and its
# programs passing the integration suite (behind lighttpd) from there.
#   tests/package/test_deb.sh DEB_DIR
set -eu
deb_dir=$1
root_dir=$(cd "$(dirname "$0")/../.." && pwd)
deb=$(ls "$deb_dir"/taskwire_*.deb | head -1)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/taskwire-deb-XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok   $*"; }

dpkg -x "$deb" "$scratch/root"
r=$scratch/root

# Files and modes.
for f in usr/sbin/taskwire-worker usr/sbin/taskwire-relay usr/lib/taskwire/taskwire.fcgi \
         etc/taskwire/types/checksum; do
    if [ -f "$r/$f" ] && [ -x "$r/$f" ]; then ok "$f is an executable"; else fail "$f missing or not executable"; fi
done
for f in etc/taskwire/taskwire.conf etc/taskwire/lighttpd/taskwire.conf \
         etc/taskwire/apache2/taskwire.conf etc/taskwire/apache2/taskwire-cgi.conf \
         etc/taskwire/nginx/taskwire.conf usr/share/taskwire/www/index.html \
         lib/systemd/system/taskwire-worker.service lib/systemd/system/taskwire-relay.service \
         lib/systemd/system/taskwire-fcgi.socket lib/systemd/system/taskwire-fcgi.service \
         usr/share/man/man8/taskwire-worker.8.gz usr/share/man/man8/taskwire-relay.8.gz \
         usr/share/man/man8/taskwire.fcgi.8.gz; do
    if [ -f "$r/$f" ]; then ok "$f present"; else fail "$f missing"; fi
done
mode=$(stat -c %a "$r/var/lib/taskwire")
[ "$mode" = 750 ] && ok "/var/lib/taskwire is 0750" || fail "/var/lib/taskwire is $mode, not 0750"
dpkg-deb -e "$deb" "$scratch/control"
grep -qx '/etc/taskwire/taskwire.conf' "$scratch/control/conffiles" \
    && ok "taskwire.conf is a conffile (an operator's edits survive upgrades)" \
    || fail "taskwire.conf is not a conffile"
grep -q 'adduser --system' "$scratch/control/postinst" \
    && ok "postinst creates the taskwire system user" || fail "postinst creates no user"
[ "$(stat -c %a "$r/etc/taskwire/taskwire.conf")" = 644 ] \
    && ok "taskwire.conf is 0644 (it holds no secret)" || fail "taskwire.conf is not 0644"

# The installed configuration points at the state directory and checks out.
grep -q '^database = /var/lib/taskwire/taskwire.db' "$r/etc/taskwire/taskwire.conf" \
    && grep -q '^secret_file = /var/lib/taskwire/secret' "$r/etc/taskwire/taskwire.conf" \
    && ok "taskwire.conf keeps its state in /var/lib/taskwire" \
    || fail "taskwire.conf does not point at /var/lib/taskwire"
for p in usr/sbin/taskwire-worker usr/sbin/taskwire-relay usr/lib/taskwire/taskwire.fcgi; do
    if "$r/$p" -n -c "$r/etc/taskwire/taskwire.conf" >/dev/null; then
        ok "$p -n accepts the installed configuration"
    else
        fail "$p -n rejects the installed configuration"
    fi
done

# systemd units: the sandboxing the package promises, and systemd's own check.
for u in taskwire-worker.service taskwire-relay.service taskwire-fcgi.service; do
    for key in User=taskwire NoNewPrivileges=yes ProtectSystem=strict \
               ReadWritePaths=/var/lib/taskwire; do
        grep -qx "$key" "$r/lib/systemd/system/$u" || fail "$u lacks $key"
    done
done
grep -qx 'SocketGroup=www-data' "$r/lib/systemd/system/taskwire-fcgi.socket" \
    && grep -qx 'SocketMode=0660' "$r/lib/systemd/system/taskwire-fcgi.socket" \
    && ok "the FastCGI socket is the web server group's only" \
    || fail "taskwire-fcgi.socket is not 0660 for group www-data"
if command -v systemd-analyze >/dev/null; then
    # Units name /usr paths; verify them with the scratch root's programs in those places.
    verify=$scratch/verify
    mkdir -p "$verify"
    for u in "$r"/lib/systemd/system/taskwire-*; do
        sed -e "s|/usr/sbin/|$r/usr/sbin/|g" -e "s|/usr/lib/taskwire/|$r/usr/lib/taskwire/|g" \
            "$u" > "$verify/$(basename "$u")"
    done
    if out=$(cd "$verify" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no ./taskwire-* 2>&1) \
            && [ -z "$out" ]; then
        ok "systemd-analyze verify"
    else
        fail "systemd-analyze verify: $out"
    fi
else
    fail "systemd-analyze is not installed (package systemd)"
fi

# Man pages render without a warning.
for m in "$r"/usr/share/man/man8/*.8.gz; do
    warnings=$(zcat "$m" | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>&1)
    [ -z "$warnings" ] && ok "$(basename "$m") renders cleanly" || fail "$(basename "$m"): $warnings"
done

# The programs from the package, against the integration suite.
bin=$scratch/bin
mkdir -p "$bin"
ln -s "$r/usr/lib/taskwire/taskwire.fcgi" "$bin/taskwire.fcgi"
ln -s "$r/usr/sbin/taskwire-worker" "$bin/taskwire-worker"
ln -s "$r/usr/sbin/taskwire-relay" "$bin/taskwire-relay"
chmod 0755 "$scratch" "$r" "$bin"
if (cd "$root_dir" && TASKWIRE_BUILD=$bin TASKWIRE_SERVERS=lighttpd \
        /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration); then
    ok "integration suite with the packaged programs"
else
    fail "integration suite with the packaged programs"
fi

if [ "$failures" -ne 0 ]; then
    echo "test-package: $failures failed"
    exit 1
fi
echo "test-package: OK ($deb)"
