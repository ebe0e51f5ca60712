#!/usr/bin/env bash
# The Debian package, as an operator gets it: built with `make deb` from a clean checkout of HEAD
# (so a file left out of git fails here), lintian-clean of errors, installed on this machine with
# apt, its units accepted by systemd-analyze, an operator's key ring and edited conffile kept over
# a reinstall, then removed and purged. The machine is left as found: the tracktls user and
# /etc/tracktls are removed again when this test created them. Needs root (as `make test` does).
# exclusive: installs, upgrades and purges a system package (apt and dpkg hold their locks, and
# /etc, users and units change under every other test); it also builds the whole tree again.
. "$TT_ROOT/tests/lib/common.sh"

PKG=tracktls
LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
if [ "$(id -u)" != 0 ]; then
	fail "package checks need root (dpkg -i)"
	exit 1
fi
if grep -q 'ok installed\|config-files' <<<"$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null)"; then
	fail "a $PKG package is already on this machine; not touching it"
	exit 1
fi

# ---- build from a clean checkout ----
src=$T/src
mkdir -p "$src"
# The copy goes at exit: its own tests/ would match run.sh's scan of this folder for sanitizer reports.
TT_CLEANUPS+=("rm -rf '$src'")
git -C "$TT_ROOT" archive HEAD | tar -x -C "$src" || { fail "git archive HEAD"; exit 1; }
[ -z "$(git -C "$TT_ROOT" status --porcelain --untracked-files=no)" ] ||
	echo "note: the work tree has uncommitted changes; this builds HEAD ($(git -C "$TT_ROOT" rev-parse --short HEAD))"
# No debug-symbol package: nothing here reads it, and it costs build time.
DEB_BUILD_OPTIONS=noddebs make -C "$src" deb >"$T/deb.log" 2>&1
check "make deb builds the package from a clean checkout (${SECONDS}s)" test $? = 0
deb=$(ls "$src"/build/deb/${PKG}_*_amd64.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || { fail "no .deb in $src/build/deb"; tail -n 30 "$T/deb.log"; exit 1; }
check "  ... linked against the fast wolfSSL built by scripts/build-wolfssl.sh" grep -q 'linked statically against .*/lib/libwolfssl.a' "$T/deb.log"
check "  ... and not against Debian's libwolfssl" bash -c "! dpkg-deb -f '$deb' Depends | grep -q libwolfssl"
# git archive stamps every file with the commit's time; anything newer outside build/ was written by the build.
check "the build writes only under build/" test -z "$(find "$src" -path "$src/build" -prune -o -type f -newer "$src/Makefile" -print | head -n1)"

lintian --no-tag-display-limit "$deb" >"$T/lintian.log" 2>&1
check "lintian reports no errors ($(grep -c '^W:' "$T/lintian.log") warnings; ${SECONDS}s)" bash -c "! grep '^E:' '$T/lintian.log'"
grep '^[EW]:' "$T/lintian.log"

dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|' >"$T/contents"
for f in /usr/bin/tracktls-terminator /usr/bin/tracktls-issuer /usr/share/man/man1/tracktls-terminator.1.gz \
	/usr/share/man/man1/tracktls-issuer.1.gz /lib/systemd/system/tracktls-terminator.service \
	/lib/systemd/system/tracktls-issuer.service /lib/systemd/system/tracktls-issuer.timer /etc/cron.d/tracktls-issuer \
	/usr/share/tracktls/prometheus/alerts.yml /usr/share/tracktls/prometheus/dashboard.json \
	/usr/share/tracktls/pgbouncer-tracktls.ini; do
	check "the package carries $f" grep -qx "$f" "$T/contents"
done
check "  ... and no plain terminator or issuer (Debian's terminal emulator owns /usr/bin/terminator)" \
	bash -c "! grep -qE '/(terminator|issuer)\$' '$T/contents'"

# ---- make install / uninstall with PREFIX and DESTDIR, in the tree the package was built in ----
built=$src/build/deb/src
stage=$T/stage
make -C "$built" install PREFIX=/usr/local DESTDIR="$stage" >"$T/install-make.log" 2>&1
check "make install PREFIX=/usr/local DESTDIR=... installs the installed names" \
	test -x "$stage/usr/local/bin/tracktls-terminator" -a -x "$stage/usr/local/bin/tracktls-issuer" \
	-a -f "$stage/usr/local/share/man/man1/tracktls-issuer.1" -a -f "$stage/etc/cron.d/tracktls-issuer"
check "  ... its units and cron file start PREFIX/bin/tracktls-*" \
	bash -c "grep -q 'ExecStart=/usr/local/bin/tracktls-terminator ' '$stage/usr/local/lib/systemd/system/tracktls-terminator.service' &&
		grep -q ' /usr/local/bin/tracktls-issuer run ' '$stage/etc/cron.d/tracktls-issuer' &&
		! grep -rq '/usr/bin/tracktls' '$stage/usr/local/lib/systemd/system' '$stage/etc/cron.d'"
make -C "$built" uninstall PREFIX=/usr/local DESTDIR="$stage" >>"$T/install-make.log" 2>&1
check "make uninstall removes every file it installed" test -z "$(find "$stage" -type f)"

# ---- install on this machine ----
exec 9>/run/lock/tracktls-package-test.lock
flock 9
had_user=$(getent passwd tracktls >/dev/null && echo yes)
had_etc=$([ -e /etc/tracktls ] && echo yes)
restore() {
	apt-get purge -y -q "${LOCK_WAIT[@]}" "$PKG" >/dev/null 2>&1
	[ -n "$had_etc" ] || rm -rf /etc/tracktls
	if [ -z "$had_user" ] && getent passwd tracktls >/dev/null; then
		deluser --system --quiet tracktls >/dev/null 2>&1
		getent group tracktls >/dev/null && delgroup --system --quiet tracktls >/dev/null 2>&1
	fi
}
TT_CLEANUPS+=(restore)

DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${LOCK_WAIT[@]}" "$deb" >"$T/install.log" 2>&1
check "apt installs the package (${SECONDS}s)" test $? = 0
check "  ... postinst explains the one command that creates the key ring" \
	grep -q 'runuser -u tracktls -- tracktls-issuer keys generate --master-key-file /etc/tracktls/master.keys' "$T/install.log"
check "  ... the tracktls system user exists" bash -c 'test "$(getent passwd tracktls | cut -d: -f3)" -lt 1000'
check "  ... /etc/tracktls is mode 0750, owned by tracktls" test "$(stat -c '%a %U' /etc/tracktls)" = "750 tracktls"
check "  ... /var/lib/tracktls exists" test -d /var/lib/tracktls/textfile
check "  ... and the package created no key ring" test ! -e /etc/tracktls/master.keys
out=$(/usr/bin/tracktls-terminator --version 2>&1)
check "tracktls-terminator --version answers, with wolfSSL's assembly" grep -q 'wolfSSL .* with assembly' <<<"$out"
out=$(/usr/bin/tracktls-issuer --version 2>&1)
check "tracktls-issuer --version answers" grep -qE '^issuer [0-9]' <<<"$out"
check "  ... with the package's version" test "$(awk '{ print $NF; exit }' <<<"$out")" = "$(dpkg-query -W -f='${Version}' "$PKG")"
check "man finds tracktls-terminator(1)" bash -c 'man -w tracktls-terminator | grep -q man1/tracktls-terminator.1'
check "tracktls-issuer(1) documents every command's flags" bash -c 'man tracktls-issuer 2>/dev/null | grep -q -- "--ticket-rotate"'
check "the cron file is a conffile" grep -q '/etc/cron.d/tracktls-issuer' <(dpkg-query -W -f='${Conffiles}' "$PKG")
systemd-analyze verify /lib/systemd/system/tracktls-terminator.service /lib/systemd/system/tracktls-issuer.service \
	/lib/systemd/system/tracktls-issuer.timer >"$T/verify.log" 2>&1
check "systemd-analyze verify accepts the units" test $? = 0
cat "$T/verify.log"
check "  ... which start the installed names" \
	bash -c "grep -h '^ExecStart' /lib/systemd/system/tracktls-*.service | grep -c '/usr/bin/tracktls-\(terminator\|issuer\) ' | grep -qx 2"

# ---- an operator's files survive a reinstall ----
runuser -u tracktls -- /usr/bin/tracktls-issuer keys generate --master-key-file /etc/tracktls/master.keys >/dev/null 2>&1
check "the postinst's command creates the key ring as tracktls, mode 0600" \
	test "$(stat -c '%a %U' /etc/tracktls/master.keys 2>/dev/null)" = "600 tracktls"
ring=$(sha256sum </etc/tracktls/master.keys)
echo "TERMINATOR_FLAGS=--threads 2" >/etc/tracktls/terminator.env
echo "# an operator's edit" >>/etc/cron.d/tracktls-issuer
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall "${LOCK_WAIT[@]}" "$deb" >"$T/reinstall.log" 2>&1
check "apt reinstalls the package" test $? = 0
check "  ... the key ring is untouched" test "$(sha256sum </etc/tracktls/master.keys)" = "$ring"
check "  ... the operator's terminator.env is untouched" grep -qx 'TERMINATOR_FLAGS=--threads 2' /etc/tracktls/terminator.env
check "  ... the edited cron file is kept" grep -qx "# an operator's edit" /etc/cron.d/tracktls-issuer
check "  ... and the postinst no longer asks for a key ring" bash -c "! grep -q 'keys generate' '$T/reinstall.log'"

# ---- remove, then purge ----
apt-get remove -y -q "${LOCK_WAIT[@]}" "$PKG" >"$T/remove.log" 2>&1
check "apt removes the package" test $? = 0
check "  ... the binaries are gone" test ! -e /usr/bin/tracktls-terminator -a ! -e /usr/bin/tracktls-issuer
check "  ... the conffile stays until purge" test -e /etc/cron.d/tracktls-issuer
apt-get purge -y -q "${LOCK_WAIT[@]}" "$PKG" >"$T/purge.log" 2>&1
check "apt purges the package (${SECONDS}s)" test $? = 0
check "  ... the cron file and units are gone" test ! -e /etc/cron.d/tracktls-issuer -a ! -e /lib/systemd/system/tracktls-terminator.service
check "  ... dpkg no longer knows it" bash -c "! dpkg-query -W '$PKG' >/dev/null 2>&1"
check "  ... the key ring stays (without it no stored key opens)" test -e /etc/tracktls/master.keys
check "  ... /var/lib/tracktls is gone" test ! -e /var/lib/tracktls
