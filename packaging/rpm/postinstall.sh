# RPM %post ($1 = 1 on install, 2 on upgrade): register the unit; never start it here,
# it needs an API token first. Upgrades restart a running service in %postun.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" -eq 1 ]; then
    echo "codacy-audit-forwarder is installed but not started: put the API token in /etc/codacy-audit-forwarder/api-token (0600), edit config.toml, then: systemctl enable --now codacy-audit-forwarder"
fi
