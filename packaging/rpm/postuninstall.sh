# RPM %postun ($1 = 0 on erase, >= 1 on upgrade): reload units; after an upgrade, restart the
# service only if it was running. State and logs are kept (audit data).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ "$1" -ge 1 ]; then
        systemctl try-restart codacy-audit-forwarder.service >/dev/null 2>&1 || true
    fi
fi
