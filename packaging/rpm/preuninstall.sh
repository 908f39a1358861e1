# RPM %preun ($1 = 0 on erase, 1 on upgrade): on erase, stop and disable the service.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now codacy-audit-forwarder.service >/dev/null 2>&1 || true
fi
