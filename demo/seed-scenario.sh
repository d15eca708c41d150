#!/usr/bin/env bash
# The seed scenario, shown on this machine without a cluster or a Tailscale install: a subnet router
# (u2) on a CGNAT LAN (100.64.0.0/24) with its neighbour (u3) and a tailnet peer (u4), in network
# namespaces; tailscaled's firewall behaviour is emulated (tests/fixtures/tailscaled-emu.sh), the
# agent is the real one. Prints who reaches whom before and after, then removes everything.
#
#   bash demo/seed-scenario.sh [--backend legacy|nft]      (as root)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BACKEND=legacy
[ "${1:-}" = "--backend" ] && BACKEND=${2:?--backend needs legacy or nft}
case $BACKEND in legacy|nft) ;; *) echo "--backend must be legacy or nft" >&2; exit 2 ;; esac

[ "$(id -u)" = 0 ] || { echo "run as root: network namespaces and netfilter need it" >&2; exit 2; }
for tool in ip iptables-legacy iptables-nft ipset nft ping dotnet; do
  command -v "$tool" >/dev/null || { echo "missing $tool; on Debian/Ubuntu: apt-get install -y iptables ipset nftables iproute2 iputils-ping (and the .NET 10 SDK)" >&2; exit 2; }
done

echo "building ts-cgnat-agent ..."
dotnet build "$ROOT/src/NodeAgent" -c Release -nologo -v quiet >/dev/null
AGENT="$ROOT/src/NodeAgent/bin/Release/net10.0/ts-cgnat-agent"

PREFIX="demo$$"
WORK=$(mktemp -d)
LAB="$ROOT/tests/fixtures/lab.sh"
EMU="$ROOT/tests/fixtures/tailscaled-emu.sh"
cleanup() { "$LAB" destroy "$PREFIX" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

"$LAB" create "$PREFIX" >/dev/null
U2=$("$LAB" ns "$PREFIX" u2)
# tailscaled logs its (harmless, upstream-faithful) "Too many links" clean-up errors; keep them out of the table.
tailscaled() { TS_EMU_IPTABLES=$BACKEND ip netns exec "$U2" "$EMU" --state "$WORK/tailscaled.state" "$@" >>"$WORK/tailscaled.log" 2>&1; }
agent() { "$AGENT" "$@" --netns "$U2" --state-dir "$WORK/state"; }
reach() { if "$LAB" ping "$PREFIX" "$1" "$2" >/dev/null 2>&1; then printf '%-9s' yes; else printf '%-9s' no; fi; }
row() {
  printf '%-58s' "$1"
  reach u2 100.64.0.3; reach u4 100.64.0.3; reach u4 100.101.102.103; reach u2 100.64.9.9
  printf '\n'
}

POLICY="$ROOT/config/samples/subnet-router.yaml"   # 100.64.0.0/24 as allowed source and routed subnet

echo
echo "seed lab: u2 = subnet router (100.64.0.2, tailnet 100.101.102.103), u3 = LAN host (100.64.0.3,"
echo "and 100.64.9.9 which the policy does NOT allow), u4 = tailnet peer; iptables back end: $BACKEND"
echo
printf '%-58s%-9s%-9s%-9s%-9s\n' "step" "u2->u3" "u4->u3" "u4->u2" "u2->.9.9"
row "1. no Tailscale"
tailscaled start on
row "2. tailscaled, netfilter mode on: the problem"
tailscaled set-mode nodivert
row "3. tailscaled switched to nodivert (nothing hooks ts-*)"
agent apply --policy-file "$POLICY" >"$WORK/apply.log"
row "4. + ts-cgnat-agent apply (policy: 100.64.0.0/24)"
tailscaled restart nodivert
row "5. tailscaled restarted (no agent action)"
tailscaled down; tailscaled up
row "6. tailscale down + up (no agent action)"
tailscaled crash; tailscaled start nodivert
row "7. tailscaled killed -9, started again (no agent action)"
agent apply --policy-file "$POLICY" --dry-run | grep -q "in sync: nothing to write" \
  && echo "   the agent finds nothing to write after steps 5-7: the rules survived tailscaled's clean-ups"
agent cleanup >/dev/null
row "8. ts-cgnat-agent cleanup (back to plain nodivert)"
echo
echo "what step 4 did:"
sed 's/^/   /' "$WORK/apply.log"
echo
echo "expected: step 2 cuts u2 and u4 off from u3 (Tailscale drops 100.64.0.0/10 off tailscale0); step 4"
echo "restores exactly the allowed LAN, while 100.64.9.9 stays dropped by Tailscale's own rule; steps 5-7"
echo "keep working with no agent action. In step 3 and 8 nothing calls ts-input: no drop, but also no"
echo "Tailscale protection and no subnet-route masquerade, which is why the agent keeps the hooks."
