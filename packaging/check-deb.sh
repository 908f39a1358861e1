#!/bin/sh
# Builds the packages (packaging/build.sh) unless a .deb is given, then checks the .deb: its file
# list, conffiles, maintainer scripts (user creation, no auto-start, stop on removal), and, unpacked
# into a scratch directory (dpkg -x; never the real system), that the binary runs and the unit
# still verifies and scores (exposure <= 2.0; --threshold is on a 0-100 scale). Also checks the .rpm when `rpm` is installed.
# Usage: packaging/check-deb.sh [PATH.deb [PATH.rpm]]
set -eu

cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
NAME=codacy-audit-forwarder

if [ $# -ge 1 ]; then
    DEB=$1
    RPM=${2:-}
else
    packaging/build.sh
    DEB=$(ls -t "$TARGET_DIR"/debian/${NAME}_*.deb | head -n 1)
    RPM=$(ls -t "$TARGET_DIR"/generate-rpm/${NAME}-*.rpm 2>/dev/null | head -n 1 || true)
fi

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT INT TERM
FAILS=0
fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
ok() { echo "ok:   $*"; }

echo "==> checking $DEB"
dpkg-deb -c "$DEB" | awk '{ print $1, $NF }' > "$SCRATCH/contents"
has_file() { # path mode
    line=$(awk -v p="./$1" '$2 == p { print $1 }' "$SCRATCH/contents")
    if [ -z "$line" ]; then fail "missing $1"; elif [ "$line" != "$2" ]; then fail "$1 has mode $line, want $2"; else ok "$1 $2"; fi
}
has_file usr/bin/$NAME -rwxr-xr-x
# cargo-deb puts units in /usr/lib/systemd/system (merged /usr) or /lib/systemd/system.
if grep -qE "\./(usr/)?lib/systemd/system/$NAME\.service\$" "$SCRATCH/contents"; then ok "unit installed"; else fail "unit file missing"; fi
if grep -qE "\./(usr/)?lib/systemd/system/$NAME@\.service\$" "$SCRATCH/contents"; then ok "shard template unit installed"; else fail "shard template unit $NAME@.service missing"; fi
has_file usr/lib/sysusers.d/$NAME.conf -rw-r--r--
has_file etc/$NAME/config.toml -rw-r-----
has_file usr/share/doc/$NAME/README.md -rw-r--r--
has_file usr/share/doc/$NAME/examples/config.toml -rw-r--r--
has_file usr/share/doc/$NAME/copyright -rw-r--r--
has_file usr/share/doc/$NAME/ARCHITECTURE.md -rw-r--r--
has_file usr/share/bash-completion/completions/$NAME -rw-r--r--
has_file usr/share/zsh/vendor-completions/_$NAME -rw-r--r--
has_file usr/share/fish/vendor_completions.d/$NAME.fish -rw-r--r--
# cargo-deb gzips man pages, as Debian policy wants.
has_file usr/share/man/man1/$NAME.1.gz -rw-r--r--
has_file usr/share/man/man1/$NAME-check.1.gz -rw-r--r--
# SIEM content (one file per folder is enough to catch a lost glob or a flattened tree).
has_file usr/share/$NAME/splunk/TA-codacy-audit/default/props.conf -rw-r--r--
has_file usr/share/$NAME/splunk/TA-codacy-audit/lookups/codacy_actions.csv -rw-r--r--
has_file usr/share/$NAME/elastic/index_template.json -rw-r--r--
has_file usr/share/$NAME/elastic/codacy/data_stream/audit/fields/fields.yml -rw-r--r--
has_file usr/share/$NAME/sigma/sigma/codacy_repeated_failed_logins.yml -rw-r--r--
has_file usr/share/$NAME/sigma/splunk/codacy_repeated_failed_logins.spl -rw-r--r--
has_file usr/share/$NAME/grafana/codacy-audit-forwarder.json -rw-r--r--
has_file usr/share/$NAME/prometheus/alerts.yml -rw-r--r--

dpkg-deb -I "$DEB" > "$SCRATCH/info"
dpkg-deb -e "$DEB" "$SCRATCH/control"
if grep -qx "/etc/$NAME/config.toml" "$SCRATCH/control/conffiles" 2>/dev/null; then ok "config.toml is a conffile"; else fail "config.toml is not a conffile"; fi
if grep -q "^ Depends:.*systemd" "$SCRATCH/info"; then ok "depends on systemd"; else fail "no systemd dependency"; fi

for s in postinst prerm postrm; do
    [ -f "$SCRATCH/control/$s" ] || { fail "no $s script"; continue; }
    if sh -n "$SCRATCH/control/$s"; then ok "$s parses"; else fail "$s has a syntax error"; fi
    if grep -q '#DEBHELPER#' "$SCRATCH/control/$s"; then fail "$s still has the #DEBHELPER# token"; fi
done
if grep -q "systemd-sysusers" "$SCRATCH/control/postinst"; then ok "postinst creates the user"; else fail "postinst does not run systemd-sysusers"; fi
# No token yet on a fresh install: the service must not be enabled or started by the package.
# The only allowed `enable` is cargo-deb's re-enable guarded by `was-enabled` (the admin's choice).
BAD=$(awk '
    /deb-systemd-helper enable/ && prev !~ /was-enabled/ { print NR": "$0 }
    /deb-systemd-invoke (start|restart)|systemctl .*(start|enable)/ && $0 !~ /try-restart/ && $0 !~ /^ *[0-9]\./ { print NR": "$0 }
    $0 !~ /^[ \t]*#/ && NF { prev = $0 }
' "$SCRATCH/control/postinst")
if [ -n "$BAD" ]; then
    echo "$BAD" >&2
    fail "postinst may start or enable the service"
else
    ok "postinst neither enables nor starts the service"
fi
if grep -q "stop" "$SCRATCH/control/prerm"; then ok "prerm stops the service"; else fail "prerm does not stop the service"; fi

# Unpack into a scratch root (not an installation: no scripts run) and try what we shipped.
ROOT="$SCRATCH/root"
dpkg -x "$DEB" "$ROOT"
if "$ROOT/usr/bin/$NAME" --version >/dev/null 2>&1; then ok "binary runs (--version)"; else fail "$ROOT/usr/bin/$NAME --version failed"; fi
UNIT=$(find "$ROOT" -name "$NAME.service" | head -n 1)
if command -v systemd-analyze >/dev/null 2>&1; then
    mkdir -p "$SCRATCH/unit"
    sed "s#^ExecStart=/usr/bin/$NAME#ExecStart=$ROOT/usr/bin/$NAME#" "$UNIT" > "$SCRATCH/unit/$NAME.service"
    if systemd-analyze verify "$SCRATCH/unit/$NAME.service"; then ok "unit verifies"; else fail "systemd-analyze verify"; fi
    if systemd-analyze security --offline=true --threshold=20 --no-pager "$SCRATCH/unit/$NAME.service" > "$SCRATCH/security" 2>&1; then rc=0; else rc=$?; fi
    score=$(sed -n 's/.*Overall exposure level for.*: \([0-9.]*\).*/\1/p' "$SCRATCH/security")
    if [ "$rc" -eq 0 ]; then ok "security exposure $score (threshold 2.0)"; else fail "security exposure ${score:-?} above 2.0"; fi
else
    echo "skip: systemd-analyze not installed"
fi

if [ -n "${RPM:-}" ] && command -v rpm >/dev/null 2>&1; then
    echo "==> checking $RPM"
    rpm -qlp "$RPM" > "$SCRATCH/rpm-files"
    for f in /usr/bin/$NAME /usr/lib/systemd/system/$NAME.service /usr/lib/sysusers.d/$NAME.conf /etc/$NAME/config.toml \
        /usr/share/$NAME/splunk/TA-codacy-audit/default/props.conf /usr/share/$NAME/elastic/index_template.json \
        /usr/share/$NAME/sigma/sigma/codacy_repeated_failed_logins.yml /usr/share/$NAME/grafana/codacy-audit-forwarder.json \
        /usr/share/$NAME/prometheus/alerts.yml /usr/share/bash-completion/completions/$NAME \
        /usr/share/zsh/site-functions/_$NAME /usr/share/fish/vendor_completions.d/$NAME.fish \
        /usr/share/man/man1/$NAME.1 /usr/share/man/man1/$NAME-check.1; do
        if grep -qx "$f" "$SCRATCH/rpm-files"; then ok "rpm has $f"; else fail "rpm lacks $f"; fi
    done
    if rpm -qp --configfiles "$RPM" | grep -qx "/etc/$NAME/config.toml"; then ok "rpm config file"; else fail "config.toml is not %config in the rpm"; fi
    if rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" | grep -q "^cn /etc/$NAME/config.toml"; then ok "rpm config(noreplace)"; else fail "config.toml is not noreplace"; fi
    if rpm -qp --scripts "$RPM" | grep -q "systemd-sysusers"; then ok "rpm %pre creates the user"; else fail "rpm %pre lacks systemd-sysusers"; fi
elif [ -n "${RPM:-}" ]; then
    echo "skip: rpm not installed (apt-get install rpm) - $RPM not inspected"
fi

if [ "$FAILS" -gt 0 ]; then echo "$FAILS check(s) failed" >&2; exit 1; fi
echo "all package checks passed"
