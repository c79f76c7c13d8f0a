# %pre of the refreshd RPM (cargo-generate-rpm pre_install_script). RPM macros are not expanded
# by cargo-generate-rpm, so this is %sysusers_create_compat written out: the user and group
# refreshd exist before the files are unpacked. Keep the `u` line below identical to
# packaging/rpm/refreshd.sysusers (/usr/lib/sysusers.d/refreshd.conf); packaging/test checks it.
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers --replace=/usr/lib/sysusers.d/refreshd.conf - <<'SYSUSERS' || :
u refreshd - "refreshd daemon" /var/lib/refreshd /usr/sbin/nologin
SYSUSERS
fi
# Without systemd-sysusers (a container without systemd), or if it failed: shadow-utils.
if ! getent passwd refreshd >/dev/null 2>&1; then
    getent group refreshd >/dev/null 2>&1 || groupadd -r refreshd
    useradd -r -g refreshd -d /var/lib/refreshd -M -s /usr/sbin/nologin \
        -c "refreshd daemon" refreshd
fi
exit 0
