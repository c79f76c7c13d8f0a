# %post of the refreshd RPM ($1: 1 on install, 2 on upgrade). RPM macros are not expanded by
# cargo-generate-rpm, so %sysusers_create and %systemd_post are written out below.

# The user and group, now from the installed /usr/lib/sysusers.d/refreshd.conf (%pre made them
# already; this is a no-op then, and catches a %pre that could not run systemd-sysusers).
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/refreshd.conf || :
fi
if ! getent passwd refreshd >/dev/null 2>&1; then
    getent group refreshd >/dev/null 2>&1 || groupadd -r refreshd
    useradd -r -g refreshd -d /var/lib/refreshd -M -s /usr/sbin/nologin \
        -c "refreshd daemon" refreshd
fi

# Tokens and rotated refresh tokens: owner only.
if [ ! -d /var/lib/refreshd ]; then
    install -d -m 0700 -o refreshd -g refreshd /var/lib/refreshd
fi
# Secret files the config refers to: root writes them, the service reads them.
if [ ! -d /etc/refreshd/secrets ]; then
    install -d -m 0750 -o root -g refreshd /etc/refreshd/secrets
fi
# The conffile (%config(noreplace), 0640 root:refreshd in the package): readable by the
# service's group. As the Debian postinst does, only a file as it was unpacked (root:root 0640,
# when the group could not be made first) gets the group, and only on a fresh install ($1 = 1):
# an owner or mode the admin chose (root:root 0600 for an inline secret) survives upgrades.
# A symlink is never followed: what it points to is the admin's, not the package's.
conf=/etc/refreshd/config.toml
if [ "$1" -eq 1 ] && [ -f "$conf" ] && [ ! -L "$conf" ] \
    && [ "$(stat -c '%U:%G %a' "$conf")" = "root:root 640" ]; then
    chgrp -h refreshd "$conf"
fi

# %systemd_post refreshd.service: on a fresh install apply the preset policy, which enables
# the unit through /usr/lib/systemd/system-preset/50-refreshd.preset unless the admin's presets
# say otherwise. systemd >= 249 has systemd-update-helper; older ones (EL8) call systemctl.
if [ "$1" -eq 1 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper install-system-units refreshd.service || :
    else
        systemctl --no-reload preset refreshd.service >/dev/null 2>&1 || :
    fi
    # Unlike Fedora's macros, start it now when systemd runs and the unit ended up enabled, as
    # on Debian. That is safe: the shipped config.toml holds no credentials, and a daemon with
    # no credentials idles and picks up the config file once it is edited.
    if [ -d /run/systemd/system ] && systemctl --quiet is-enabled refreshd.service 2>/dev/null; then
        systemctl daemon-reload >/dev/null 2>&1 || :
        systemctl start refreshd.service >/dev/null 2>&1 || :
    fi
fi
exit 0
