# RPM %pre: create the service user before the files owned by its group are unpacked.
# Same line as systemd/codacy-audit-forwarder.sysusers (tests/packaging.rs checks they agree).
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers - <<'SYSUSERS'
u codacy-audit-forwarder - "Codacy audit log forwarder" /var/lib/codacy-audit-forwarder /usr/sbin/nologin
SYSUSERS
fi
