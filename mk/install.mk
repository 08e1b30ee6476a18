# `make install`: the programs, configs, page, man pages and systemd units under PREFIX (default
# /usr/local), staged under DESTDIR.  Needs no root with DESTDIR; owners are set by the package
# (debian/postinst) or by the operator (docs/DEPLOY.md).
# `make deb`: a Debian package built by dpkg-buildpackage from a copy of the source tree (the
# files git tracks or would, not the ignored ones), into build/deb/.  `make test-package` installs that package into a scratch root with dpkg -x and
# runs the integration suite against the programs found there.

PREFIX ?= /usr/local
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
LOCALSTATEDIR ?= $(if $(filter /usr,$(PREFIX)),/var,$(PREFIX)/var)
SBINDIR ?= $(PREFIX)/sbin
PKGLIBDIR ?= $(PREFIX)/lib/taskwire
DATADIR ?= $(PREFIX)/share/taskwire
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
STATEDIR := $(LOCALSTATEDIR)/lib/taskwire

MAN_PAGES := man/taskwire-worker.8 man/taskwire-relay.8 man/taskwire.fcgi.8
UNITS := taskwire-worker.service taskwire-relay.service taskwire-fcgi.socket taskwire-fcgi.service
SUBST := sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@PKGLIBDIR@|$(PKGLIBDIR)|g' \
	-e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@STATEDIR@|$(STATEDIR)|g'

.PHONY: install deb test-package
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(PKGLIBDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(SYSCONFDIR)/taskwire/types
	install -d -m 0750 $(DESTDIR)$(STATEDIR)
	install -m 0755 $(WORKER_BIN) $(RELAY_BIN) $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(FCGI_BIN) $(DESTDIR)$(PKGLIBDIR)/
	@# The configuration with the state under STATEDIR (exec types stay relative to it).
	sed -e 's|\.\./var/|$(STATEDIR)/|g' conf/taskwire.conf > $(DESTDIR)$(SYSCONFDIR)/taskwire/taskwire.conf
	chmod 0644 $(DESTDIR)$(SYSCONFDIR)/taskwire/taskwire.conf
	install -m 0755 conf/types/* $(DESTDIR)$(SYSCONFDIR)/taskwire/types/
	for d in apache2 lighttpd nginx; do \
		install -d $(DESTDIR)$(SYSCONFDIR)/taskwire/$$d && \
		install -m 0644 conf/$$d/* $(DESTDIR)$(SYSCONFDIR)/taskwire/$$d/ || exit 1; \
	done
	cp -R www $(DESTDIR)$(DATADIR)/
	chmod -R u=rwX,go=rX $(DESTDIR)$(DATADIR)/www
	install -m 0644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man8/
	for u in $(UNITS); do \
		$(SUBST) conf/systemd/$$u.in > $(DESTDIR)$(UNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done

DEBS_DEB := dpkg-dev debhelper fakeroot
DEB_DIR := build/deb
deb:
	@tools/debs.sh $(DEBS_BUILD) $(DEBS_DEB)
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/src
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(DEB_DIR)/src
	cd $(DEB_DIR)/src && dpkg-buildpackage -us -uc -b
	@ls $(DEB_DIR)/*.deb

DEBS_TEST += $(DEBS_DEB) systemd man-db groff-base
TEST_PLAIN += test-package
test-package: deb
	tests/package/test_deb.sh $(DEB_DIR)
