# ---- cli/: the `taskwire` operator command (tap, tasks, status, token, curve; man taskwire) ----
# It links the common library, libzmq (tap), libcurl (the admin REST API: tasks, status) and
# OpenSSL (token).  Installed in $(BINDIR) with its man page in section 1.
CLI_SRC := cli/main.c cli/context.c cli/api.c cli/table.c cli/tap.c cli/tasks.c cli/status.c \
	cli/tokens.c cli/curve.c cli/publish.c
CLI_SRC += cli/history.c
CLI_BIN := $(BUILD)/taskwire
CLI_LIBS := $(call libs,libzmq libcurl jansson sqlite3 openssl inih) -lpthread
PROGRAMS += $(CLI_BIN)
ALL_OBJ += $(call obj,$(CLI_SRC))
# libcurl's compiler flags and its Debian package come from mk/dash.mk (the handler's too).

$(CLI_BIN): $(call obj,$(CLI_SRC)) $(COMMON_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(CLI_LIBS)

# `make install` puts it beside the other programs' files (mk/install.mk's directories).
BINDIR ?= $(PREFIX)/bin
.PHONY: install-cli
install: install-cli
install-cli: $(CLI_BIN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(CLI_BIN) $(DESTDIR)$(BINDIR)/taskwire
	install -m 0644 man/taskwire.1 $(DESTDIR)$(MANDIR)/man1/
