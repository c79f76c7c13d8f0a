# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_refreshd_global_optspecs
    string join \n h/help V/version
end

function __fish_refreshd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_refreshd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_refreshd_using_subcommand
    set -l cmd (__fish_refreshd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c refreshd -n "__fish_refreshd_needs_command" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_needs_command" -s V -l version -d 'Print version'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "run" -d 'Run the daemon in the foreground (systemd and launchd supervise it)'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "exec" -d 'Run a program with credentials\' current tokens in its environment, and restart (or signal) it when they rotate'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "status" -d 'Show each credential\'s health, expiry, last rotation, last error and next refresh'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "store" -d 'The fleet store (`[daemon] store`)'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "rotate" -d 'Ask the running daemon to refresh now, and wait for the result'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "once" -d 'Refresh every (named) credential that is due, write its targets, and exit'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "check" -d 'Validate the config, secret references, target paths and permissions'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "token" -d 'Print a credential\'s current access token (for `$(refreshd token NAME)`)'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "kubectl-credential" -d 'kubectl\'s exec credential plugin: print a client.authentication.k8s.io ExecCredential with the credential\'s current token'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "git-credential" -d 'git\'s credential helper (gitcredentials(7)): `get` answers for the credentials whose `git.url` matches; `store` and `erase` do nothing'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "login" -d 'Get an oauth-refresh credential its first refresh token: a browser login (authorization code + PKCE, loopback redirect) or the device flow'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "demo" -d 'Try refreshd: a built-in token issuer on loopback and a daemon rotating 30-second JWTs into ./refreshd-demo/, until Ctrl-C'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "inspect" -d 'Decode a JWT without verifying it: header, claims, expiry and time left'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "audit" -d 'The audit log (`log.audit`)'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "state" -d 'The state directory\'s files (`[daemon] state_key`)'
complete -c refreshd -n "__fish_refreshd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c refreshd -n "__fish_refreshd_using_subcommand run" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand run" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand exec" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand exec" -l env -d 'Put the current token of credential NAME in the program\'s variable VAR (repeat for more)' -r
complete -c refreshd -n "__fish_refreshd_using_subcommand exec" -l on-change -d 'On a rotation: restart the program, send it a signal (`signal:SIGHUP`), or nothing' -r
complete -c refreshd -n "__fish_refreshd_using_subcommand exec" -l grace -d 'How long a restart or a stop waits after SIGTERM before SIGKILL' -r
complete -c refreshd -n "__fish_refreshd_using_subcommand exec" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand status" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand status" -l socket -d 'The daemon\'s control socket [default: the config\'s daemon.control_socket; without a readable config, this user\'s default socket, then /run/refreshd/control.sock]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand status" -l json -d 'Machine-readable output'
complete -c refreshd -n "__fish_refreshd_using_subcommand status" -l nodes -d 'List the fleet store\'s nodes and their heartbeats instead (with a `[daemon] store`)'
complete -c refreshd -n "__fish_refreshd_using_subcommand status" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand store; and not __fish_seen_subcommand_from init-key help" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand store; and not __fish_seen_subcommand_from init-key help" -f -a "init-key" -d 'Print a new store key (32 random bytes, base64) for `[daemon] store.key`'
complete -c refreshd -n "__fish_refreshd_using_subcommand store; and not __fish_seen_subcommand_from init-key help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c refreshd -n "__fish_refreshd_using_subcommand store; and __fish_seen_subcommand_from init-key" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "init-key" -d 'Print a new store key (32 random bytes, base64) for `[daemon] store.key`'
complete -c refreshd -n "__fish_refreshd_using_subcommand store; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c refreshd -n "__fish_refreshd_using_subcommand rotate" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand rotate" -l all -d 'Every credential'
complete -c refreshd -n "__fish_refreshd_using_subcommand rotate" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand once" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand once" -l force -d 'Refresh even credentials whose token is still good'
complete -c refreshd -n "__fish_refreshd_using_subcommand once" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand check" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand check" -l online -d 'Also fetch each token once (persisted in the state directory, targets untouched)'
complete -c refreshd -n "__fish_refreshd_using_subcommand check" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand token" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand token" -l socket -d 'The daemon\'s control socket [default: the config\'s daemon.control_socket; without a readable config, this user\'s default socket, then /run/refreshd/control.sock]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand token" -l format -d 'raw (the token), json (token, token_type, expires_at, expires_in), env (`export NAME_TOKEN=\'…\'` and `NAME_EXPIRES_AT` lines, for `eval`) or aws-credential-process (AWS `credential_process` JSON of an AWS credential\'s keys)' -r -f -a "raw\t'The token and a newline'
json\t'`{"token", "token_type", "expires_at", "expires_in"}`'
env\t'`export NAME_TOKEN=\'…\'` and `export NAME_EXPIRES_AT=\'…\'`, for `eval` in a POSIX shell'
aws-credential-process\t'AWS `credential_process` JSON: the fields `access_key_id` and `secret_access_key`, the token as the session token'"
complete -c refreshd -n "__fish_refreshd_using_subcommand token" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c refreshd -n "__fish_refreshd_using_subcommand kubectl-credential" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand kubectl-credential" -l socket -d 'The daemon\'s control socket [default: the config\'s daemon.control_socket; without a readable config, this user\'s default socket, then /run/refreshd/control.sock]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand kubectl-credential" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand git-credential" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand git-credential" -l socket -d 'The daemon\'s control socket [default: the config\'s daemon.control_socket; without a readable config, this user\'s default socket, then /run/refreshd/control.sock]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand git-credential" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand login" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand login" -l port -d 'Listen for the redirect on this loopback port (e.g. one forwarded with `ssh -L`)' -r
complete -c refreshd -n "__fish_refreshd_using_subcommand login" -l timeout -d 'Give up after this long without a finished login' -r
complete -c refreshd -n "__fish_refreshd_using_subcommand login" -l device -d 'The device flow (RFC 8628): a code to enter on another device, no redirect'
complete -c refreshd -n "__fish_refreshd_using_subcommand login" -l no-browser -d 'Print the URL only; do not try to open a browser'
complete -c refreshd -n "__fish_refreshd_using_subcommand login" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand demo" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -f -a "verify" -d 'Check an audit log\'s hash chain: finds a removed, edited or reordered line'
complete -c refreshd -n "__fish_refreshd_using_subcommand audit; and not __fish_seen_subcommand_from verify help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c refreshd -n "__fish_refreshd_using_subcommand audit; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check an audit log\'s hash chain: finds a removed, edited or reordered line'
complete -c refreshd -n "__fish_refreshd_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and not __fish_seen_subcommand_from seal unseal help" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and not __fish_seen_subcommand_from seal unseal help" -f -a "seal" -d 'Seal every state file with `[daemon] state_key` (offline: refused while the daemon runs)'
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and not __fish_seen_subcommand_from seal unseal help" -f -a "unseal" -d 'Open every sealed state file back into plain JSON (offline: refused while the daemon runs)'
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and not __fish_seen_subcommand_from seal unseal help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and __fish_seen_subcommand_from seal" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and __fish_seen_subcommand_from seal" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and __fish_seen_subcommand_from unseal" -s c -l config -d 'Configuration file [default: /etc/refreshd/config.toml for root, else $XDG_CONFIG_HOME/refreshd/config.toml]' -r -F
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and __fish_seen_subcommand_from unseal" -s h -l help -d 'Print help'
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "seal" -d 'Seal every state file with `[daemon] state_key` (offline: refused while the daemon runs)'
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "unseal" -d 'Open every sealed state file back into plain JSON (offline: refused while the daemon runs)'
complete -c refreshd -n "__fish_refreshd_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "run" -d 'Run the daemon in the foreground (systemd and launchd supervise it)'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "exec" -d 'Run a program with credentials\' current tokens in its environment, and restart (or signal) it when they rotate'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "status" -d 'Show each credential\'s health, expiry, last rotation, last error and next refresh'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "store" -d 'The fleet store (`[daemon] store`)'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "rotate" -d 'Ask the running daemon to refresh now, and wait for the result'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "once" -d 'Refresh every (named) credential that is due, write its targets, and exit'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "check" -d 'Validate the config, secret references, target paths and permissions'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "token" -d 'Print a credential\'s current access token (for `$(refreshd token NAME)`)'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "kubectl-credential" -d 'kubectl\'s exec credential plugin: print a client.authentication.k8s.io ExecCredential with the credential\'s current token'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "git-credential" -d 'git\'s credential helper (gitcredentials(7)): `get` answers for the credentials whose `git.url` matches; `store` and `erase` do nothing'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "login" -d 'Get an oauth-refresh credential its first refresh token: a browser login (authorization code + PKCE, loopback redirect) or the device flow'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "demo" -d 'Try refreshd: a built-in token issuer on loopback and a daemon rotating 30-second JWTs into ./refreshd-demo/, until Ctrl-C'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "inspect" -d 'Decode a JWT without verifying it: header, claims, expiry and time left'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "audit" -d 'The audit log (`log.audit`)'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "state" -d 'The state directory\'s files (`[daemon] state_key`)'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and not __fish_seen_subcommand_from run exec status store rotate once check token kubectl-credential git-credential login demo inspect audit state help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and __fish_seen_subcommand_from store" -f -a "init-key" -d 'Print a new store key (32 random bytes, base64) for `[daemon] store.key`'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "verify" -d 'Check an audit log\'s hash chain: finds a removed, edited or reordered line'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and __fish_seen_subcommand_from state" -f -a "seal" -d 'Seal every state file with `[daemon] state_key` (offline: refused while the daemon runs)'
complete -c refreshd -n "__fish_refreshd_using_subcommand help; and __fish_seen_subcommand_from state" -f -a "unseal" -d 'Open every sealed state file back into plain JSON (offline: refused while the daemon runs)'
