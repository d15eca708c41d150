#!/usr/bin/env bash
# The seed scenario, shown on this machine without a cluster or a Tailscale install: a subnet router
# (u2) on a CGNAT LAN (100.64.0.0/24) with its neighbour (u3) and a tailnet peer (u4), in network
# namespaces, with the real ts-cgnat-agent running on u2. Prints who reaches whom at each step of
# tailscaled's lifecycle, then removes everything.
#
#   bash demo/seed-scenario.sh [--backend legacy|nft] [--emulator]      (as root)
#
# tailscaled is the REAL one (v1.82.0, tests/fixtures/tailnet.sh: two daemons and tailscale's own test
# control server) when TSCGNAT_TAILSCALE_ASSETS names its folder or ../shared/tailscale exists beside
# this checkout; otherwise, or with --emulator, its firewall is emulated (tests/fixtures/lab.sh and
# tailscaled-emu.sh), and the script says so. --backend picks tailscaled's iptables back end (its
# iptables runner over iptables-legacy or iptables-nft).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BACKEND=legacy
EMULATOR=0
while [ $# -gt 0 ]; do
  case $1 in
    --backend) BACKEND=${2:?--backend needs legacy or nft}; shift 2 ;;
    --emulator) EMULATOR=1; shift ;;
    *) echo "usage: bash demo/seed-scenario.sh [--backend legacy|nft] [--emulator]" >&2; exit 2 ;;
  esac
done
case $BACKEND in legacy|nft) ;; *) echo "--backend must be legacy or nft" >&2; exit 2 ;; esac

[ "$(id -u)" = 0 ] || { echo "run as root: network namespaces and netfilter need it" >&2; exit 2; }

ASSETS=${TSCGNAT_TAILSCALE_ASSETS:-}
if [ -z "$ASSETS" ] && [ -x "$ROOT/../shared/tailscale/tailscaled" ]; then ASSETS=$(cd "$ROOT/../shared/tailscale" && pwd); fi
if [ "$EMULATOR" = 0 ] && [ -n "$ASSETS" ] && [ -x "$ASSETS/tailscaled" ]; then REAL=1; else REAL=0; fi

tools=(ip iptables-legacy iptables-nft ipset nft ping dotnet)
[ "$REAL" = 1 ] && tools+=(socat conntrack unshare)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "missing $tool; on Debian/Ubuntu: apt-get install -y iptables ipset nftables iproute2 iputils-ping socat conntrack (and the .NET 10 SDK)" >&2; exit 2; }
done

echo "building ts-cgnat-agent ..."
dotnet build "$ROOT/src/NodeAgent" -c Release -nologo -v quiet >/dev/null
AGENT="$ROOT/src/NodeAgent/bin/Release/net10.0/ts-cgnat-agent"

PREFIX="demo$$"
WORK=$(mktemp -d)
LAB="$ROOT/tests/fixtures/lab.sh"
TAILNET="$ROOT/tests/fixtures/tailnet.sh"
EMU="$ROOT/tests/fixtures/tailscaled-emu.sh"
POLICY="$ROOT/config/samples/subnet-router.yaml"   # 100.64.0.0/24 as allowed source and routed subnet
AGENT_PID=
cleanup() {
  if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; fi
  if [ "$REAL" = 1 ]; then TSCGNAT_TAILSCALE_ASSETS=$ASSETS "$TAILNET" destroy "$PREFIX" >/dev/null 2>&1 || true
  else "$LAB" destroy "$PREFIX" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$REAL" = 1 ]; then
  export TSCGNAT_TAILSCALE_ASSETS=$ASSETS
  echo "building the lab with the real tailscaled from $ASSETS (about 15 s) ..."
  "$TAILNET" create "$PREFIX" "$BACKEND" on --owner $$ >/dev/null
  U2=$("$TAILNET" ns "$PREFIX" u2)
  U2_TAILNET=$("$TAILNET" ip "$PREFIX" u2)
  SOCKET=$("$TAILNET" socket "$PREFIX" u2)
  tailscaled() { "$TAILNET" "$1" "$PREFIX" u2 "${@:2}" >>"$WORK/tailnet.log" 2>&1; }
  probe() { "$TAILNET" ping "$PREFIX" "$@" >/dev/null 2>&1; }
  forwards() { "$TAILNET" forwards "$PREFIX" "$1" >/dev/null 2>&1; }
  COLUMNS_HEAD=("u2->u3" "u3->u2" "u3=>tnet" "u2->.9.9")
else
  if [ "$EMULATOR" = 1 ]; then echo "NOTE: --emulator: tailscaled's firewall is EMULATED by tests/fixtures/tailscaled-emu.sh"
  else
    echo "NOTE: no real tailscaled here (set TSCGNAT_TAILSCALE_ASSETS to the folder with tailscaled, tailscale and"
    echo "tsreal-control, or put it at ../shared/tailscale): tailscaled's firewall is EMULATED by tests/fixtures/tailscaled-emu.sh"
  fi
  "$LAB" create "$PREFIX" >/dev/null
  U2=$("$LAB" ns "$PREFIX" u2)
  SOCKET=/nonexistent
  emu() { TS_EMU_IPTABLES=$BACKEND ip netns exec "$U2" "$EMU" --state "$WORK/tailscaled.state" "$@" >>"$WORK/tailscaled.log" 2>&1; }
  EMU_MODE=on   # the emulator's start takes the mode; tailnet.sh's remembers it, as tailscaled's prefs do
  tailscaled() {
    case $1 in
      start) emu start "$EMU_MODE" ;;
      set-mode) emu set-mode "$2"; EMU_MODE=$2 ;;
      *) emu "$1" ;;
    esac
  }
  probe() { "$LAB" ping "$PREFIX" "$@" >/dev/null 2>&1; }
  COLUMNS_HEAD=("u2->u3" "u4->u3" "u4->u2" "u2->.9.9")
fi

agent() { "$AGENT" "$@" --netns "$U2"; }
writes() { grep -c 'reconciled (' "$WORK/agent.log" 2>/dev/null || true; }
yes_no() { if "$@"; then printf '%-10s' yes; else printf '%-10s' no; fi; }
row() {
  local line
  line=$(
    printf '%-56s' "$1"
    if [ "$REAL" = 1 ]; then
      yes_no probe u2 100.64.0.3
      yes_no probe u3 100.64.0.254
      if [ "${2:-}" = no-tailnet ]; then printf '%-10s' -; else yes_no forwards 100.64.0.3; fi
      yes_no probe u2 100.64.9.9
    else
      yes_no probe u2 100.64.0.3
      yes_no probe u4 100.64.0.3
      yes_no probe u4 100.101.102.103
      yes_no probe u2 100.64.9.9
    fi
    printf '%s' "${3:-}"
  )
  printf '%s\n' "${line%"${line##*[! ]}"}"
}

# Waits until the running agent has nothing left to write (its own dry run says so), at most 30 s; prints
# what it did since the step began: its writes and how long after tailscaled's command it was in sync.
caught_up() {
  local before=$1 started=${EPOCHREALTIME/./} deadline=$((SECONDS + 30))
  until agent apply --policy-file "$POLICY" --state-dir "$WORK/dry-state" --dry-run 2>/dev/null | grep -q "in sync: nothing to write"; do
    if ((SECONDS >= deadline)); then printf 'NOT in sync 30 s later (%d writes)' $(($(writes) - before)); return; fi
    sleep 0.2
  done
  local ms=$(((${EPOCHREALTIME/./} - started) / 1000))
  printf '%d write(s), in sync %d.%d s later' $(($(writes) - before)) $((ms / 1000)) $((ms % 1000 / 100))
}

step() {   # TITLE COMMAND...: runs a lifecycle step with the agent running, then prints its row
  local title=$1 before; shift
  before=$(writes)
  "$@"
  local note; note=$(caught_up "$before")
  row "$title" "" "$note"
}

echo
if [ "$REAL" = 1 ]; then
  echo "seed lab, REAL tailscaled $("$ASSETS/tailscaled" --version | sed -n 1p) with its $BACKEND iptables back end: u2 = subnet router"
  echo "(LAN 100.64.0.254, tailnet $U2_TAILNET, advertises 100.64.0.0/24), u3 = LAN host (100.64.0.3, and 100.64.9.9 which"
  echo "the policy does NOT allow), u4 = a second tailscaled on the tailnet. Columns: u2->u3 and u3->u2 pings on the LAN;"
  echo "u3=>tnet: u2 forwards u3's echo request into tailscale0 towards u4 (the test control server serves no subnet"
  echo "routes, so what can be seen is u2 passing it; tests/fixtures/tailnet.sh says why); u2->.9.9 a ping to the address"
  echo "no policy allows; agent: what the running agent wrote for the step, and when its own dry run found nothing left to"
  echo "write (counted from tailscaled's command returning: tailnet.sh returns once the daemon is logged in again)."
else
  echo "seed lab (EMULATED tailscaled, $BACKEND): u2 = subnet router (100.64.0.2, tailnet 100.101.102.103), u3 = LAN host"
  echo "(100.64.0.3, and 100.64.9.9 which the policy does NOT allow), u4 = tailnet peer"
fi
echo
printf '%-56s' "step"; printf '%-10s' "${COLUMNS_HEAD[@]}"; printf 'agent\n'

if [ "$REAL" = 1 ]; then
  # tailnet.sh builds the lab with tailscaled logged in; stopped and cleaned up as systemd does, nothing of it is left.
  tailscaled stop; tailscaled cleanup
  row "1. no Tailscale (tailscaled stopped, cleaned up)" no-tailnet
else
  row "1. no Tailscale"
fi
tailscaled start
row "2. tailscaled, netfilter mode on: the problem"
tailscaled set-mode nodivert
row "3. tailscaled switched to nodivert (nothing calls ts-*)"

# Started directly (not through the function), so that $! is the agent itself and the SIGTERM at step 8 reaches it.
"$AGENT" run --policy-file "$POLICY" --netns "$U2" --state-dir "$WORK/state" --tailscale-socket "$SOCKET" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
step "4. + ts-cgnat-agent run (policy: 100.64.0.0/24)" true
step "5. tailscaled restarted" tailscaled restart
step "6. tailscale down + up" eval 'tailscaled down; tailscaled up'
step "7. tailscaled killed -9, started again" eval 'tailscaled crash; tailscaled start'
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=
agent cleanup --state-dir "$WORK/state" >"$WORK/cleanup.log"
row "8. agent stopped, ts-cgnat-agent cleanup" "" "$(cat "$WORK/cleanup.log")"
echo
echo "what the agent did at step 4:"
grep 'reconciled (start)' "$WORK/agent.log" | sed 's/^.*reconciled/   reconciled/' | head -n 1
echo
echo "expected: step 2 cuts u2 off from its neighbour (Tailscale drops 100.64.0.0/10 that does not arrive on tailscale0),"
echo "and the subnet route with it; step 4 restores exactly the allowed LAN, while 100.64.9.9 stays dropped by Tailscale's"
echo "own rule; after steps 5-7 the agent has followed tailscaled's rebuilt chains (its writes are in the last column). In"
echo "steps 3 and 8 nothing calls ts-input: no drop, but also no Tailscale protection and no subnet-route masquerade, which"
echo "is why the agent hooks its own chains with a copy of tailscaled's rules."
