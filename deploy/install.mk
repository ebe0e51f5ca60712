# Installation under the installed names (tracktls-terminator, tracktls-issuer: Debian's
# `terminator` is a terminal emulator), man pages from --help, and the Debian package.
#   make install [PREFIX=/usr/local] [DESTDIR=]    binaries, man pages, units, cron file, alert rules,
#                                                  the PgBouncer pool settings
#   make uninstall [PREFIX=/usr/local] [DESTDIR=]
#   make deb                                       build/deb/tracktls_VERSION_amd64.deb
# The units and the cron file name /usr/bin (the package's paths); install rewrites it to BINDIR.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DATADIR    ?= $(PREFIX)/share
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
INSTALLED  := tracktls-terminator tracktls-issuer
MAN_PAGES  := $(INSTALLED:%=build/man/%.1)
MAN_NAME_terminator := TLS terminator for every tracking domain, with certificates from PostgreSQL
MAN_NAME_issuer     := ACME issuer: certificates, renewals and ticket keys for tracktls
UNITS      := terminator.service:tracktls-terminator.service issuer.service:tracktls-issuer.service \
	      issuer.timer:tracktls-issuer.timer
PROM_FILES := $(wildcard deploy/prometheus/*.yml deploy/prometheus/*.json)
DEB_DIR    := build/deb

.PHONY: man install uninstall deb

man: $(MAN_PAGES)

# help2man reads --help (and for the issuer every command's --help); the version string gives the
# page its installed name.
build/man/tracktls-%.1: bin/% scripts/man-commands.sh
	@mkdir -p $(@D)
	$(if $(filter issuer,$*),scripts/man-commands.sh $< >$@.include)
	help2man --no-info --no-discard-stderr --section=1 --name='$(MAN_NAME_$*)' $(if $(filter issuer,$*),--include=$@.include) \
		--version-string="tracktls-$* $$($< --version | head -n1 | awk '{ print $$NF }')" --output=$@ $<

install: all man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/cron.d \
		$(DESTDIR)$(DATADIR)/tracktls/prometheus
	install -m 0755 bin/terminator $(DESTDIR)$(BINDIR)/tracktls-terminator
	install -m 0755 bin/issuer $(DESTDIR)$(BINDIR)/tracktls-issuer
	install -m 0644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man1/
	$(foreach u,$(UNITS),sed 's|/usr/bin/tracktls-|$(BINDIR)/tracktls-|g' deploy/$(word 1,$(subst :, ,$(u))) \
		>$(DESTDIR)$(UNITDIR)/$(word 2,$(subst :, ,$(u))) && chmod 0644 $(DESTDIR)$(UNITDIR)/$(word 2,$(subst :, ,$(u))) &&) true
	sed 's|/usr/bin/tracktls-|$(BINDIR)/tracktls-|g' deploy/issuer.cron >$(DESTDIR)$(SYSCONFDIR)/cron.d/tracktls-issuer
	chmod 0644 $(DESTDIR)$(SYSCONFDIR)/cron.d/tracktls-issuer
	$(if $(PROM_FILES),install -m 0644 $(PROM_FILES) $(DESTDIR)$(DATADIR)/tracktls/prometheus/)
	install -m 0644 deploy/pgbouncer-tracktls.ini $(DESTDIR)$(DATADIR)/tracktls/

uninstall:
	rm -f $(INSTALLED:%=$(DESTDIR)$(BINDIR)/%) $(INSTALLED:%=$(DESTDIR)$(MANDIR)/man1/%.1) \
		$(foreach u,$(UNITS),$(DESTDIR)$(UNITDIR)/$(word 2,$(subst :, ,$(u)))) \
		$(DESTDIR)$(SYSCONFDIR)/cron.d/tracktls-issuer
	rm -rf $(DESTDIR)$(DATADIR)/tracktls/prometheus $(DESTDIR)$(DATADIR)/tracktls/pgbouncer-tracktls.ini

# dpkg-buildpackage writes beside the source, so the source is a copy of this tree under build/deb
# (without build/ and bin/); the package lands in build/deb/.
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/src
	tar -c --anchored --exclude=./build --exclude=./bin --exclude=./.git . | tar -x -C $(DEB_DIR)/src
	cd $(DEB_DIR)/src && dpkg-buildpackage -b -us -uc
	@ls $(DEB_DIR)/*.deb
