#!/bin/sh
# The Debian package, as a user gets it: unpacked into a scratch root with dpkg -x, its files
# where DEPLOY.md says with the modes it says, its systemd units and man pages clean, and its
# programs passing the integration suite (behind lighttpd) from there.  Then `make install` under
# a DESTDIR, with its default PREFIX, as a user without the package does it.
#   tests/package/test_deb.sh DEB_DIR      (after `make deb` and `make all`)
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
         usr/bin/taskwire etc/taskwire/types/checksum; do
    if [ -f "$r/$f" ] && [ -x "$r/$f" ]; then ok "$f is an executable"; else fail "$f missing or not executable"; fi
done
for f in etc/taskwire/taskwire.conf etc/taskwire/lighttpd/taskwire.conf \
         etc/taskwire/apache2/taskwire.conf etc/taskwire/apache2/taskwire-cgi.conf \
         etc/taskwire/nginx/taskwire.conf usr/share/taskwire/www/index.html \
         lib/systemd/system/taskwire-worker.service lib/systemd/system/taskwire-relay.service \
         lib/systemd/system/taskwire-fcgi.socket lib/systemd/system/taskwire-fcgi.service \
         usr/share/man/man8/taskwire-worker.8.gz usr/share/man/man8/taskwire-relay.8.gz \
         usr/share/man/man8/taskwire.fcgi.8.gz usr/share/man/man1/taskwire.1.gz; do
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
grep -q 'deb-systemd-invoke stop .*taskwire-worker.service' "$scratch/control/prerm" 2>/dev/null \
    && ok "prerm stops the services when the package is removed" || fail "prerm stops no service"
[ "$(stat -c %a "$r/etc/taskwire/taskwire.conf")" = 644 ] \
    && ok "taskwire.conf is 0644 (it holds no secret)" || fail "taskwire.conf is not 0644"

# The installed configuration points at the state directory and checks out.
grep -q '^database = /var/lib/taskwire/taskwire.db' "$r/etc/taskwire/taskwire.conf" \
    && grep -q '^secret_file = /var/lib/taskwire/secret' "$r/etc/taskwire/taskwire.conf" \
    && ok "taskwire.conf keeps its state in /var/lib/taskwire" \
    || fail "taskwire.conf does not point at /var/lib/taskwire"
grep -q '^command = /etc/taskwire/types/checksum$' "$r/etc/taskwire/taskwire.conf" \
    && ok "taskwire.conf runs the checksum type from /etc/taskwire/types" \
    || fail "taskwire.conf does not name /etc/taskwire/types/checksum"
for p in usr/sbin/taskwire-worker usr/sbin/taskwire-relay usr/lib/taskwire/taskwire.fcgi; do
    if "$r/$p" -n -c "$r/etc/taskwire/taskwire.conf" >/dev/null; then
        ok "$p -n accepts the installed configuration"
    else
        fail "$p -n rejects the installed configuration"
    fi
done

# systemd units: the sandboxing the package promises, and systemd's own check.
units_ok=1
for u in taskwire-worker.service taskwire-relay.service taskwire-fcgi.service; do
    for key in User=taskwire NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
               PrivateTmp=yes AssertPathIsDirectory=/var/lib/taskwire; do
        grep -qx "$key" "$r/lib/systemd/system/$u" || { fail "$u lacks $key"; units_ok=0; }
    done
    # systemd would chmod and chown a StateDirectory= at every start, undoing the group setup.
    ! grep -q '^StateDirectory' "$r/lib/systemd/system/$u" || { fail "$u sets StateDirectory"; units_ok=0; }
    writable=$(grep '^ReadWritePaths=' "$r/lib/systemd/system/$u" || true)
    case $u in
        taskwire-relay.service) want="" ;;
        *) want=ReadWritePaths=/var/lib/taskwire ;;
    esac
    [ "$writable" = "$want" ] || { fail "$u: '$writable', not '$want'"; units_ok=0; }
done
[ "$units_ok" = 1 ] && ok "units: user taskwire, read-only system, writable state for worker and handler only"
notify_ok=1
for u in taskwire-worker.service taskwire-relay.service; do
    for key in Type=notify NotifyAccess=main Restart=on-failure; do
        grep -qx "$key" "$r/lib/systemd/system/$u" || { fail "$u lacks $key"; notify_ok=0; }
    done
    grep -q '^WatchdogSec=[1-9]' "$r/lib/systemd/system/$u" || { fail "$u has no WatchdogSec"; notify_ok=0; }
done
[ "$notify_ok" = 1 ] && ok "worker and relay: Type=notify with a watchdog, restarted on failure"
grep -q '^LimitNOFILE=[0-9]\{5,\}' "$r/lib/systemd/system/taskwire-relay.service" \
    && ok "the relay may hold 10000+ descriptors" || fail "taskwire-relay.service has no high LimitNOFILE"
grep -qx 'StandardInput=socket' "$r/lib/systemd/system/taskwire-fcgi.service" \
    && ok "taskwire-fcgi.service takes its socket on standard input" \
    || fail "taskwire-fcgi.service lacks StandardInput=socket"
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
for m in "$r"/usr/share/man/man8/*.8.gz "$r"/usr/share/man/man1/*.1.gz; do
    warnings=$(zcat "$m" | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>&1)
    [ -z "$warnings" ] && ok "$(basename "$m") renders cleanly" || fail "$(basename "$m"): $warnings"
done

# The handler from the package as the socket unit runs it: FastCGI on its standard input.
if /usr/bin/python3 "$root_dir/tests/package/fcgi_socket.py" "$r/usr/lib/taskwire/taskwire.fcgi" \
        "$r/etc/taskwire/taskwire.conf"; then
    ok "taskwire.fcgi serves FastCGI on a listening socket as standard input, stops on SIGTERM after answering a request under way"
else
    fail "taskwire.fcgi on a socket as standard input"
fi

if command -v lintian >/dev/null; then
    # Optional: lintian's view, shown but not judged.
    lintian --tag-display-limit 0 "$deb" || true
fi

# The programs from the package, against the integration suite.
bin=$scratch/bin
mkdir -p "$bin"
ln -s "$r/usr/lib/taskwire/taskwire.fcgi" "$bin/taskwire.fcgi"
ln -s "$r/usr/sbin/taskwire-worker" "$bin/taskwire-worker"
ln -s "$r/usr/sbin/taskwire-relay" "$bin/taskwire-relay"
ln -s "$r/usr/bin/taskwire" "$bin/taskwire"
chmod 0755 "$scratch" "$r" "$bin"
if (cd "$root_dir" && TASKWIRE_BUILD=$bin TASKWIRE_SERVERS=lighttpd \
        /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration); then
    ok "integration suite with the packaged programs"
else
    fail "integration suite with the packaged programs"
fi

# `make install` as someone without the package: default PREFIX, staged under DESTDIR, no root.
stage=$scratch/stage
make_install() {
    ${MAKE:-make} --no-print-directory -C "$root_dir" install DESTDIR="$stage" >"$scratch/install.log" 2>&1 \
        || { cat "$scratch/install.log"; return 1; }
}
if make_install; then
    for f in usr/local/sbin/taskwire-worker usr/local/sbin/taskwire-relay \
             usr/local/lib/taskwire/taskwire.fcgi usr/local/bin/taskwire \
             etc/taskwire/types/checksum; do
        [ -x "$stage/$f" ] || fail "make install: $f missing or not executable"
    done
    for f in usr/local/share/taskwire/www/index.html usr/local/share/man/man8/taskwire-relay.8 \
             etc/taskwire/nginx/taskwire.conf; do
        [ -f "$stage/$f" ] || fail "make install: $f missing"
    done
    grep -qx 'ExecStart=/usr/local/sbin/taskwire-worker -c /etc/taskwire/taskwire.conf' \
        "$stage/usr/local/lib/systemd/system/taskwire-worker.service" \
        || fail "make install: the worker unit does not run /usr/local/sbin/taskwire-worker"
    [ "$(stat -c %a "$stage/var/lib/taskwire")" = 750 ] || fail "make install: state directory not 0750"
    if cmp -s "$stage/etc/taskwire/taskwire.conf" "$r/etc/taskwire/taskwire.conf"; then
        ok "make install: the package's layout under /usr/local, the same configuration"
    else
        fail "make install: taskwire.conf differs from the package's"
    fi
    # Installing again keeps an edited configuration and puts the new one beside it.
    sed -i 's/^level = info/level = debug/' "$stage/etc/taskwire/taskwire.conf"
    if make_install && grep -q '^level = debug' "$stage/etc/taskwire/taskwire.conf" \
            && cmp -s "$stage/etc/taskwire/taskwire.conf.new" "$r/etc/taskwire/taskwire.conf"; then
        ok "make install again: the edited taskwire.conf kept, the new one as taskwire.conf.new"
    else
        fail "make install again: the edited taskwire.conf was not kept beside a .new"
    fi
else
    fail "make install DESTDIR=..."
fi

if [ "$failures" -ne 0 ]; then
    echo "test-package: $failures failed"
    exit 1
fi
echo "test-package: OK ($deb)"
