# %postun of the refreshd RPM ($1: 0 on erase, 1 on upgrade).
if [ "$1" -ge 1 ]; then
    # %systemd_postun_with_restart refreshd.service written out (cargo-generate-rpm does not
    # expand macros): restart the running unit once the transaction is done.
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper mark-restart-system-units refreshd.service || :
    elif [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || :
        systemctl try-restart refreshd.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    # Erase. RPM has no purge, and `dnf remove` then `dnf install` must not cost every
    # credential a new login: /var/lib/refreshd (access tokens, rotated refresh tokens) stays,
    # as Fedora packages keep their state; `rm -rf /var/lib/refreshd` removes it. Secret files
    # the admin put in /etc/refreshd/secrets stay; the directory goes only when it is empty.
    # RPM itself keeps a modified config.toml as config.toml.rpmsave. The user and group stay
    # (files elsewhere may belong to them).
    rmdir /etc/refreshd/secrets 2>/dev/null || :
    rmdir /etc/refreshd 2>/dev/null || :
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || :
    fi
fi
exit 0
