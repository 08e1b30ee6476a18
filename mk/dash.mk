# ---- the admin REST API (fcgi/admin.c) and the operator dashboard (www/admin/) ----
# The handler asks the relays for their /status with libcurl: linked to the handler only.
FCGI_SRC += fcgi/admin.c
FCGI_LIBS += $(call libs,libcurl)
CFLAGS += $(shell pkg-config --cflags libcurl 2>/dev/null)
DEBS_BUILD += libcurl4-openssl-dev
DEBS_RUN += openssl
LDLIBS += $(call libs,libcurl)
