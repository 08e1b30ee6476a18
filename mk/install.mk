# `make install`: the programs, configs, page, man pages and systemd units under PREFIX (default
# /usr/local), staged under DESTDIR.  Needs no root with DESTDIR; owners are set by the package
# (debian/postinst) or by the operator (docs/DEPLOY.md).
# The configuration and the state stay in /etc/taskwire and /var/lib/taskwire whatever PREFIX
# is: the programs look for /etc/taskwire/taskwire.conf by default, and the units make only
# /var/lib/taskwire writable.  SYSCONFDIR and LOCALSTATEDIR move them.
# `make deb`: a Debian package built by dpkg-buildpackage from a copy of the source tree (the
# files git tracks or would, not the ignored ones), into build/deb/.  `make test-package`
# unpacks that package into a scratch root with dpkg -x and runs the integration suite against
# the programs found there.

PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
LOCALSTATEDIR ?= /var
SBINDIR ?= $(PREFIX)/sbin
PKGLIBDIR ?= $(PREFIX)/lib/taskwire
DATADIR ?= $(PREFIX)/share/taskwire
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
CONFDIR := $(SYSCONFDIR)/taskwire
STATEDIR := $(LOCALSTATEDIR)/lib/taskwire

MAN_PAGES := man/taskwire-worker.8 man/taskwire-relay.8 man/taskwire.fcgi.8
UNITS := taskwire-worker.service taskwire-relay.service taskwire-fcgi.socket taskwire-fcgi.service
SUBST := sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@PKGLIBDIR@|$(PKGLIBDIR)|g' \
	-e 's|@CONFDIR@|$(CONFDIR)|g' -e 's|@STATEDIR@|$(STATEDIR)|g'
# conf/taskwire.conf names its state and exec types relative to itself (for `make run`); the
# installed one names them where they are installed.
CONF_SUBST := sed -e 's|\.\./var/|$(STATEDIR)/|g' -e 's|^\(command *= *\)types/|\1$(CONFDIR)/types/|'
INSTALLED_CONF := $(DESTDIR)$(CONFDIR)/taskwire.conf

.PHONY: install deb test-package
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(PKGLIBDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(CONFDIR)/types
	install -d -m 0750 $(DESTDIR)$(STATEDIR)
	install -m 0755 $(WORKER_BIN) $(RELAY_BIN) $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(FCGI_BIN) $(DESTDIR)$(PKGLIBDIR)/
	@# An edited configuration is kept; the new one goes beside it.
	$(CONF_SUBST) conf/taskwire.conf > $(INSTALLED_CONF).new
	chmod 0644 $(INSTALLED_CONF).new
	@if [ -e $(INSTALLED_CONF) ] && ! cmp -s $(INSTALLED_CONF) $(INSTALLED_CONF).new; then \
		echo "kept $(INSTALLED_CONF); the new one is $(INSTALLED_CONF).new"; \
	else mv $(INSTALLED_CONF).new $(INSTALLED_CONF); fi
	install -m 0755 conf/types/* $(DESTDIR)$(CONFDIR)/types/
	for d in apache2 lighttpd nginx; do \
		[ -d conf/$$d ] || continue; \
		install -d $(DESTDIR)$(CONFDIR)/$$d && \
		install -m 0644 conf/$$d/* $(DESTDIR)$(CONFDIR)/$$d/ || exit 1; \
	done
	cp -R www $(DESTDIR)$(DATADIR)/
	chmod -R u=rwX,go=rX $(DESTDIR)$(DATADIR)/www
	install -m 0644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man8/
	for u in $(UNITS); do \
		$(SUBST) conf/systemd/$$u.in > $(DESTDIR)$(UNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done

# dpkg-buildpackage needs build-essential besides the Build-Depends.
DEBS_DEB := dpkg-dev debhelper fakeroot build-essential
DEB_DIR := build/deb
deb:
	@tools/debs.sh $(DEBS_BUILD) $(DEBS_DEB)
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/src
	git ls-files -z --cached --others --exclude-standard | \
		xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' - | \
		xargs -0 cp --parents -t $(DEB_DIR)/src
	cd $(DEB_DIR)/src && dpkg-buildpackage -us -uc -b
	@ls $(DEB_DIR)/*.deb

# systemd for systemd-analyze, man-db and groff-base for the man pages, libfcgi-bin for
# cgi-fcgi (a FastCGI request to the handler on a socket it inherits, as from the socket unit).
DEBS_TEST += $(DEBS_DEB) systemd man-db groff-base libfcgi-bin
TEST_PLAIN += test-package
test-package: deb all
	tests/package/test_deb.sh $(DEB_DIR)
