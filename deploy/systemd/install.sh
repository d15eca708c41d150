#!/bin/sh
# Installs ts-cgnat-agent as a systemd service (host mode, a VM without Kubernetes).
#
#   sh deploy/systemd/install.sh path/to/ts-cgnat-agent
#
# The binary is the NativeAOT or single-file build (docs/host-mode.md). An existing
# /etc/ts-cgnat/policy.yaml is kept. The service is not started: edit the policy first.
# Of the next steps it prints, the switch to nodivert is optional (docs/host-mode.md, step 4).
# DESTDIR=/some/root installs into that tree instead (packaging, tests) and skips systemctl.
set -eu

binary=${1:?usage: install.sh path/to/ts-cgnat-agent}
here=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}

[ -x "$binary" ] || { echo "install.sh: $binary is not an executable file" >&2; exit 2; }
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or set DESTDIR)" >&2
  exit 2
fi

install -D -m 0755 "$binary" "$DESTDIR$PREFIX/bin/ts-cgnat-agent"
# The unit names /usr/local/bin; follow PREFIX if it differs.
mkdir -p "$DESTDIR/etc/systemd/system"
sed "s|/usr/local/bin/ts-cgnat-agent|$PREFIX/bin/ts-cgnat-agent|" "$here/ts-cgnat-agent.service" \
  > "$DESTDIR/etc/systemd/system/ts-cgnat-agent.service"
chmod 0644 "$DESTDIR/etc/systemd/system/ts-cgnat-agent.service"

if [ -e "$DESTDIR/etc/ts-cgnat/policy.yaml" ]; then
  echo "kept the existing $DESTDIR/etc/ts-cgnat/policy.yaml"
else
  install -D -m 0644 "$here/policy.yaml" "$DESTDIR/etc/ts-cgnat/policy.yaml"
  echo "installed the sample policy $DESTDIR/etc/ts-cgnat/policy.yaml (Alibaba Cloud, 100.100.0.0/16)"
fi

# /run/systemd/system exists only while systemd is PID 1 (sd_booted); elsewhere (a container, a
# chroot) systemctl would fail and, under set -e, fail the install after the files are in place.
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi

cat <<NEXT
ts-cgnat-agent installed. Next:
  1. edit /etc/ts-cgnat/policy.yaml
  2. tailscale set --netfilter-mode=nodivert
  3. $PREFIX/bin/ts-cgnat-agent apply --policy-file /etc/ts-cgnat/policy.yaml --dry-run
  4. systemctl enable --now ts-cgnat-agent
NEXT
