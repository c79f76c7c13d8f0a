# %preun of the refreshd RPM ($1: 0 on erase, 1 on upgrade): %systemd_preun refreshd.service
# written out (cargo-generate-rpm does not expand macros). On erase: disable and stop the unit
# (SIGTERM; rotations in progress finish first). On upgrade the unit keeps running.
if [ "$1" -eq 0 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper remove-system-units refreshd.service || :
    elif [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now refreshd.service >/dev/null 2>&1 || :
    else
        systemctl --no-reload disable refreshd.service >/dev/null 2>&1 || :
    fi
fi
exit 0
