#!/usr/bin/env bash
# Test reader: how bash reads a .env file when it is sourced (`set -a; . FILE`).
# usage: tests/readers/read-dotenv.sh FILE KEY
# Prints the exact value of variable KEY with printf %s (no trailing newline). Exits 3 if KEY is
# unset after sourcing, and with bash's status if sourcing the file fails.
# The file is sourced by `bash --noprofile --norc` under `env -i`, so nothing from the caller's
# environment or startup files leaks in (only PATH is kept so the file may run commands).
set -euo pipefail
if [ "$#" -ne 2 ]; then
  echo "usage: read-dotenv.sh FILE KEY" >&2
  exit 2
fi
file=$1
key=$2
case $key in
  [A-Za-z_]*) ;;
  *) echo "read-dotenv.sh: bad variable name: $key" >&2; exit 2 ;;
esac
case $key in
  *[!A-Za-z0-9_]*) echo "read-dotenv.sh: bad variable name: $key" >&2; exit 2 ;;
esac
# `. name` without a slash searches PATH first: make the path explicit.
case $file in
  */*) ;;
  *) file=./$file ;;
esac
exec env -i PATH=/usr/local/bin:/usr/bin:/bin /bin/bash --noprofile --norc -c '
set -a
. "$1" || exit
[ -n "${!2+set}" ] || { echo "read-dotenv.sh: $2 is not set by $1" >&2; exit 3; }
printf %s "${!2}"
' read-dotenv "$file" "$key"
