#!/bin/sh
# Removes ts-cgnat-agent and every rule, chain and set it created.
#
#   sh deploy/systemd/uninstall.sh            keeps /etc/ts-cgnat (your policies)
#   sh deploy/systemd/uninstall.sh --purge    removes /etc/ts-cgnat too
#
# Stopping the service leaves the rules in place (fail-static), so the agent's own `cleanup` runs
# before the binary goes. DESTDIR=/some/root works on that tree instead and skips systemctl and the
# cleanup: the rules live in this host's kernel, not in the tree, and a packaging run must not strip
# the build host's firewall. CLEANUP=yes runs the binary found under DESTDIR anyway (tests put a
# stand-in there); CLEANUP=no skips it on a real host too.
set -eu

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
purge=no
if [ -z "$DESTDIR" ]; then CLEANUP=${CLEANUP:-yes}; else CLEANUP=${CLEANUP:-no}; fi
case "${1:-}" in
  --purge) purge=yes ;;
  "") ;;
  *) echo "usage: uninstall.sh [--purge]" >&2; exit 2 ;;
esac
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run as root (or set DESTDIR)" >&2
  exit 2
fi

unit="$DESTDIR/etc/systemd/system/ts-cgnat-agent.service"
agent="$DESTDIR$PREFIX/bin/ts-cgnat-agent"

# /run/systemd/system exists only while systemd is PID 1.
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && [ -e "$unit" ]; then
  systemctl disable --now ts-cgnat-agent.service
fi

if [ "$CLEANUP" != yes ]; then
  echo "uninstall.sh: cleanup skipped (DESTDIR or CLEANUP=no); this host's rules were not touched"
elif [ -x "$agent" ]; then
  # Fails (and stops the uninstall, binary still in place) if a firewall tool fails: run it again
  # once the cause is fixed, rather than leave rules nobody can remove with our tool.
  "$agent" cleanup --state-dir /var/lib/ts-cgnat
else
  echo "uninstall.sh: $agent is missing; no cleanup was run, rules may remain" >&2
fi

rm -f "$unit" "$agent"
rm -rf "$DESTDIR/var/lib/ts-cgnat"
if [ "$purge" = yes ]; then
  rm -rf "$DESTDIR/etc/ts-cgnat"
fi

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
echo "ts-cgnat-agent removed$([ "$purge" = yes ] && echo ", policies too" || echo "; policies kept in /etc/ts-cgnat")"
