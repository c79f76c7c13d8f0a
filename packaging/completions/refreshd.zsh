#compdef refreshd

autoload -U is-at-least

_refreshd() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_refreshd_commands" \
"*::: :->refreshd" \
&& ret=0
    case $state in
    (refreshd)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-command-$line[1]:"
        case $line[1] in
            (run)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(exec)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'*--env=[Put the current token of credential NAME in the program'\''s variable VAR (repeat for more)]:VAR=NAME:_default' \
'--on-change=[On a rotation\: restart the program, send it a signal (\`signal\:SIGHUP\`), or nothing]:restart|signal:SIG|none:_default' \
'--grace=[How long a restart or a stop waits after SIGTERM before SIGKILL]:DURATION:_default' \
'-h[Print help]' \
'--help[Print help]' \
'*::program -- The program and its arguments, after `--`:_default' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--socket=[The daemon'\''s control socket \[default\: the config'\''s daemon.control_socket; without a readable config, this user'\''s default socket, then /run/refreshd/control.sock\]]:PATH:_files' \
'--json[Machine-readable output]' \
'--nodes[List the fleet store'\''s nodes and their heartbeats instead (with a \`\[daemon\] store\`)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(store)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
":: :_refreshd__subcmd__store_commands" \
"*::: :->store" \
&& ret=0

    case $state in
    (store)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-store-command-$line[1]:"
        case $line[1] in
            (init-key)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_refreshd__subcmd__store__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-store-help-command-$line[1]:"
        case $line[1] in
            (init-key)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(rotate)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'()--all[Every credential]' \
'-h[Print help]' \
'--help[Print help]' \
'*::names -- Credentials to refresh:_default' \
&& ret=0
;;
(once)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--force[Refresh even credentials whose token is still good]' \
'-h[Print help]' \
'--help[Print help]' \
'*::names -- Credentials to refresh \[default\: all\]:_default' \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--online[Also fetch each token once (persisted in the state directory, targets untouched)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(token)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--socket=[The daemon'\''s control socket \[default\: the config'\''s daemon.control_socket; without a readable config, this user'\''s default socket, then /run/refreshd/control.sock\]]:PATH:_files' \
'--format=[raw (the token), json (token, token_type, expires_at, expires_in), env (\`export NAME_TOKEN='\''…'\''\` and \`NAME_EXPIRES_AT\` lines, for \`eval\`) or aws-credential-process (AWS \`credential_process\` JSON of an AWS credential'\''s keys)]:FORMAT:((raw\:"The token and a newline"
json\:"\`{"token", "token_type", "expires_at", "expires_in"}\`"
env\:"\`export NAME_TOKEN='\''…'\''\` and \`export NAME_EXPIRES_AT='\''…'\''\`, for \`eval\` in a POSIX shell"
aws-credential-process\:"AWS \`credential_process\` JSON\: the fields \`access_key_id\` and \`secret_access_key\`, the token as the session token"))' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':name -- The credential:_default' \
&& ret=0
;;
(kubectl-credential)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--socket=[The daemon'\''s control socket \[default\: the config'\''s daemon.control_socket; without a readable config, this user'\''s default socket, then /run/refreshd/control.sock\]]:PATH:_files' \
'-h[Print help]' \
'--help[Print help]' \
':name -- The credential:_default' \
&& ret=0
;;
(git-credential)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--socket=[The daemon'\''s control socket \[default\: the config'\''s daemon.control_socket; without a readable config, this user'\''s default socket, then /run/refreshd/control.sock\]]:PATH:_files' \
'-h[Print help]' \
'--help[Print help]' \
':operation -- What git asks\: get, store or erase (any other is ignored, as git wants):_default' \
&& ret=0
;;
(login)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--port=[Listen for the redirect on this loopback port (e.g. one forwarded with \`ssh -L\`)]:PORT:_default' \
'--timeout=[Give up after this long without a finished login]:TIMEOUT:_default' \
'--device[The device flow (RFC 8628)\: a code to enter on another device, no redirect]' \
'--no-browser[Print the URL only; do not try to open a browser]' \
'-h[Print help]' \
'--help[Print help]' \
':name -- The credential (an oauth-refresh source):_default' \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(inspect)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'::token -- The token, or `-` (the default) to read it from stdin:_default' \
&& ret=0
;;
(audit)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
":: :_refreshd__subcmd__audit_commands" \
"*::: :->audit" \
&& ret=0

    case $state in
    (audit)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-audit-command-$line[1]:"
        case $line[1] in
            (verify)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
':file -- The audit log (`log.audit`):_files' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_refreshd__subcmd__audit__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-audit-help-command-$line[1]:"
        case $line[1] in
            (verify)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(state)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
":: :_refreshd__subcmd__state_commands" \
"*::: :->state" \
&& ret=0

    case $state in
    (state)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-state-command-$line[1]:"
        case $line[1] in
            (seal)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(unseal)
_arguments "${_arguments_options[@]}" : \
'-c+[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'--config=[Configuration file \[default\: /etc/refreshd/config.toml for root, else \$XDG_CONFIG_HOME/refreshd/config.toml\]]:FILE:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_refreshd__subcmd__state__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-state-help-command-$line[1]:"
        case $line[1] in
            (seal)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(unseal)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_refreshd__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-help-command-$line[1]:"
        case $line[1] in
            (run)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(exec)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(store)
_arguments "${_arguments_options[@]}" : \
":: :_refreshd__subcmd__help__subcmd__store_commands" \
"*::: :->store" \
&& ret=0

    case $state in
    (store)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-help-store-command-$line[1]:"
        case $line[1] in
            (init-key)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(rotate)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(once)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(token)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(kubectl-credential)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(git-credential)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(login)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(inspect)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(audit)
_arguments "${_arguments_options[@]}" : \
":: :_refreshd__subcmd__help__subcmd__audit_commands" \
"*::: :->audit" \
&& ret=0

    case $state in
    (audit)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-help-audit-command-$line[1]:"
        case $line[1] in
            (verify)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(state)
_arguments "${_arguments_options[@]}" : \
":: :_refreshd__subcmd__help__subcmd__state_commands" \
"*::: :->state" \
&& ret=0

    case $state in
    (state)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:refreshd-help-state-command-$line[1]:"
        case $line[1] in
            (seal)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(unseal)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_refreshd_commands] )) ||
_refreshd_commands() {
    local commands; commands=(
'run:Run the daemon in the foreground (systemd and launchd supervise it)' \
'exec:Run a program with credentials'\'' current tokens in its environment, and restart (or signal) it when they rotate' \
'status:Show each credential'\''s health, expiry, last rotation, last error and next refresh' \
'store:The fleet store (\`\[daemon\] store\`)' \
'rotate:Ask the running daemon to refresh now, and wait for the result' \
'once:Refresh every (named) credential that is due, write its targets, and exit' \
'check:Validate the config, secret references, target paths and permissions' \
'token:Print a credential'\''s current access token (for \`\$(refreshd token NAME)\`)' \
'kubectl-credential:kubectl'\''s exec credential plugin\: print a client.authentication.k8s.io ExecCredential with the credential'\''s current token' \
'git-credential:git'\''s credential helper (gitcredentials(7))\: \`get\` answers for the credentials whose \`git.url\` matches; \`store\` and \`erase\` do nothing' \
'login:Get an oauth-refresh credential its first refresh token\: a browser login (authorization code + PKCE, loopback redirect) or the device flow' \
'demo:Try refreshd\: a built-in token issuer on loopback and a daemon rotating 30-second JWTs into ./refreshd-demo/, until Ctrl-C' \
'inspect:Decode a JWT without verifying it\: header, claims, expiry and time left' \
'audit:The audit log (\`log.audit\`)' \
'state:The state directory'\''s files (\`\[daemon\] state_key\`)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'refreshd commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__audit_commands] )) ||
_refreshd__subcmd__audit_commands() {
    local commands; commands=(
'verify:Check an audit log'\''s hash chain\: finds a removed, edited or reordered line' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'refreshd audit commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__audit__subcmd__help_commands] )) ||
_refreshd__subcmd__audit__subcmd__help_commands() {
    local commands; commands=(
'verify:Check an audit log'\''s hash chain\: finds a removed, edited or reordered line' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'refreshd audit help commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__audit__subcmd__help__subcmd__help_commands] )) ||
_refreshd__subcmd__audit__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd audit help help commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__audit__subcmd__help__subcmd__verify_commands] )) ||
_refreshd__subcmd__audit__subcmd__help__subcmd__verify_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd audit help verify commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__audit__subcmd__verify_commands] )) ||
_refreshd__subcmd__audit__subcmd__verify_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd audit verify commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__check_commands] )) ||
_refreshd__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd check commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__demo_commands] )) ||
_refreshd__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd demo commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__exec_commands] )) ||
_refreshd__subcmd__exec_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd exec commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__git-credential_commands] )) ||
_refreshd__subcmd__git-credential_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd git-credential commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help_commands] )) ||
_refreshd__subcmd__help_commands() {
    local commands; commands=(
'run:Run the daemon in the foreground (systemd and launchd supervise it)' \
'exec:Run a program with credentials'\'' current tokens in its environment, and restart (or signal) it when they rotate' \
'status:Show each credential'\''s health, expiry, last rotation, last error and next refresh' \
'store:The fleet store (\`\[daemon\] store\`)' \
'rotate:Ask the running daemon to refresh now, and wait for the result' \
'once:Refresh every (named) credential that is due, write its targets, and exit' \
'check:Validate the config, secret references, target paths and permissions' \
'token:Print a credential'\''s current access token (for \`\$(refreshd token NAME)\`)' \
'kubectl-credential:kubectl'\''s exec credential plugin\: print a client.authentication.k8s.io ExecCredential with the credential'\''s current token' \
'git-credential:git'\''s credential helper (gitcredentials(7))\: \`get\` answers for the credentials whose \`git.url\` matches; \`store\` and \`erase\` do nothing' \
'login:Get an oauth-refresh credential its first refresh token\: a browser login (authorization code + PKCE, loopback redirect) or the device flow' \
'demo:Try refreshd\: a built-in token issuer on loopback and a daemon rotating 30-second JWTs into ./refreshd-demo/, until Ctrl-C' \
'inspect:Decode a JWT without verifying it\: header, claims, expiry and time left' \
'audit:The audit log (\`log.audit\`)' \
'state:The state directory'\''s files (\`\[daemon\] state_key\`)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'refreshd help commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__audit_commands] )) ||
_refreshd__subcmd__help__subcmd__audit_commands() {
    local commands; commands=(
'verify:Check an audit log'\''s hash chain\: finds a removed, edited or reordered line' \
    )
    _describe -t commands 'refreshd help audit commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__audit__subcmd__verify_commands] )) ||
_refreshd__subcmd__help__subcmd__audit__subcmd__verify_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help audit verify commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__check_commands] )) ||
_refreshd__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help check commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__demo_commands] )) ||
_refreshd__subcmd__help__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help demo commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__exec_commands] )) ||
_refreshd__subcmd__help__subcmd__exec_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help exec commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__git-credential_commands] )) ||
_refreshd__subcmd__help__subcmd__git-credential_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help git-credential commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__help_commands] )) ||
_refreshd__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help help commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__inspect_commands] )) ||
_refreshd__subcmd__help__subcmd__inspect_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help inspect commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__kubectl-credential_commands] )) ||
_refreshd__subcmd__help__subcmd__kubectl-credential_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help kubectl-credential commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__login_commands] )) ||
_refreshd__subcmd__help__subcmd__login_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help login commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__once_commands] )) ||
_refreshd__subcmd__help__subcmd__once_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help once commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__rotate_commands] )) ||
_refreshd__subcmd__help__subcmd__rotate_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help rotate commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__run_commands] )) ||
_refreshd__subcmd__help__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help run commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__state_commands] )) ||
_refreshd__subcmd__help__subcmd__state_commands() {
    local commands; commands=(
'seal:Seal every state file with \`\[daemon\] state_key\` (offline\: refused while the daemon runs)' \
'unseal:Open every sealed state file back into plain JSON (offline\: refused while the daemon runs)' \
    )
    _describe -t commands 'refreshd help state commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__state__subcmd__seal_commands] )) ||
_refreshd__subcmd__help__subcmd__state__subcmd__seal_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help state seal commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__state__subcmd__unseal_commands] )) ||
_refreshd__subcmd__help__subcmd__state__subcmd__unseal_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help state unseal commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__status_commands] )) ||
_refreshd__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help status commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__store_commands] )) ||
_refreshd__subcmd__help__subcmd__store_commands() {
    local commands; commands=(
'init-key:Print a new store key (32 random bytes, base64) for \`\[daemon\] store.key\`' \
    )
    _describe -t commands 'refreshd help store commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__store__subcmd__init-key_commands] )) ||
_refreshd__subcmd__help__subcmd__store__subcmd__init-key_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help store init-key commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__help__subcmd__token_commands] )) ||
_refreshd__subcmd__help__subcmd__token_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd help token commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__inspect_commands] )) ||
_refreshd__subcmd__inspect_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd inspect commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__kubectl-credential_commands] )) ||
_refreshd__subcmd__kubectl-credential_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd kubectl-credential commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__login_commands] )) ||
_refreshd__subcmd__login_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd login commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__once_commands] )) ||
_refreshd__subcmd__once_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd once commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__rotate_commands] )) ||
_refreshd__subcmd__rotate_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd rotate commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__run_commands] )) ||
_refreshd__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd run commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__state_commands] )) ||
_refreshd__subcmd__state_commands() {
    local commands; commands=(
'seal:Seal every state file with \`\[daemon\] state_key\` (offline\: refused while the daemon runs)' \
'unseal:Open every sealed state file back into plain JSON (offline\: refused while the daemon runs)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'refreshd state commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__state__subcmd__help_commands] )) ||
_refreshd__subcmd__state__subcmd__help_commands() {
    local commands; commands=(
'seal:Seal every state file with \`\[daemon\] state_key\` (offline\: refused while the daemon runs)' \
'unseal:Open every sealed state file back into plain JSON (offline\: refused while the daemon runs)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'refreshd state help commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__state__subcmd__help__subcmd__help_commands] )) ||
_refreshd__subcmd__state__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd state help help commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__state__subcmd__help__subcmd__seal_commands] )) ||
_refreshd__subcmd__state__subcmd__help__subcmd__seal_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd state help seal commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__state__subcmd__help__subcmd__unseal_commands] )) ||
_refreshd__subcmd__state__subcmd__help__subcmd__unseal_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd state help unseal commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__state__subcmd__seal_commands] )) ||
_refreshd__subcmd__state__subcmd__seal_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd state seal commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__state__subcmd__unseal_commands] )) ||
_refreshd__subcmd__state__subcmd__unseal_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd state unseal commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__status_commands] )) ||
_refreshd__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd status commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__store_commands] )) ||
_refreshd__subcmd__store_commands() {
    local commands; commands=(
'init-key:Print a new store key (32 random bytes, base64) for \`\[daemon\] store.key\`' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'refreshd store commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__store__subcmd__help_commands] )) ||
_refreshd__subcmd__store__subcmd__help_commands() {
    local commands; commands=(
'init-key:Print a new store key (32 random bytes, base64) for \`\[daemon\] store.key\`' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'refreshd store help commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__store__subcmd__help__subcmd__help_commands] )) ||
_refreshd__subcmd__store__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd store help help commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__store__subcmd__help__subcmd__init-key_commands] )) ||
_refreshd__subcmd__store__subcmd__help__subcmd__init-key_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd store help init-key commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__store__subcmd__init-key_commands] )) ||
_refreshd__subcmd__store__subcmd__init-key_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd store init-key commands' commands "$@"
}
(( $+functions[_refreshd__subcmd__token_commands] )) ||
_refreshd__subcmd__token_commands() {
    local commands; commands=()
    _describe -t commands 'refreshd token commands' commands "$@"
}

if [ "$funcstack[1]" = "_refreshd" ]; then
    _refreshd "$@"
else
    compdef _refreshd refreshd
fi
