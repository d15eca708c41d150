#!/usr/bin/env bash
# Runs every test (unit tests, and as root the kernel tests in network namespaces) and prints one
# summary line. With CI=true, tests that need root or namespaces fail instead of skipping.
#
#   bash scripts/test.sh      (as root, or the kernel tests are skipped)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# The real kube-apiserver and etcd of the Kubernetes tests (tests/KubeApiServer): .ci/run sets the directory; a
# checkout beside this workplace's shared/ finds them there; elsewhere point it at `setup-envtest use 1.36 -p path`.
if [ -z "${TSCGNAT_KUBE_ASSETS:-}" ] && [ -x "$ROOT/../shared/k8s/kube-apiserver" ]; then
  TSCGNAT_KUBE_ASSETS=$(cd "$ROOT/../shared/k8s" && pwd)
  export TSCGNAT_KUBE_ASSETS
fi

# The real tailscaled, its CLI, test control server and real router (../shared/tailscale/README.md; tests/fixtures/
# tailnet.sh and emu-vs-real.sh), as for the kube assets.
if [ -z "${TSCGNAT_TAILSCALE_ASSETS:-}" ] && [ -d "$ROOT/../shared/tailscale" ]; then
  TSCGNAT_TAILSCALE_ASSETS=$(cd "$ROOT/../shared/tailscale" && pwd)
  export TSCGNAT_TAILSCALE_ASSETS
fi

leftovers() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(tsc|tsl|tsr|tsemu|demo)' || true; }
before=$(leftovers)

dotnet build TsCgnatOperator.sln -c Release -nologo -v quiet -warnaserror || { echo "build failed"; exit 1; }

log=$(mktemp)
results=$(mktemp -d)
# One test assembly at a time: the kernel tests share the xtables lock and the two cores (inside an
# assembly, the lab collections of the three tailscaled runners run side by side; see their
# xunit.runner.json).
dotnet test TsCgnatOperator.sln -c Release --no-build -nologo -m:1 --results-directory "$results" \
  --logger "trx" -- RunConfiguration.MaxCpuCount=1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# The slowest tests, from the TRX files (duration="HH:MM:SS.fffffff"), so a slow CI run says where
# its time went.
echo
echo "slowest tests:"
cat "$results"/*.trx 2>/dev/null \
  | grep -o '<UnitTestResult [^>]*' \
  | sed -nE 's/.*testName="([^"]*)".*duration="([0-9]+):([0-9]+):([0-9]+)\.[0-9]*".*/\2 \3 \4 \1/p' \
  | awk '{ s = $1 * 3600 + $2 * 60 + $3; $1 = $2 = $3 = ""; printf "%6d s %s\n", s, substr($0, 4) }' \
  | sort -rn | head -15

# What the real-tailscaled tests took, per runner x mode (their own output in the TRX files: lab, baseline and
# agent ready, each step).
echo
echo "real tailscaled:"
cat "$results"/*.trx 2>/dev/null | grep -oE '(legacy|nft|nftables)/(on|nodivert)(: lab, baseline and agent ready in| [a-z+ ]+: [0-9.]+ s in all)[^&<]*' \
  | sort | sed 's/^/  /' || true
rm -rf "$results"

sum() { grep -oE "$1: +[0-9]+" "$log" | awk '{s += $2} END {print s + 0}'; }
passed=$(sum Passed); failed=$(sum Failed); skipped=$(sum Skipped)
rm -f "$log"

# Every API server a test assembly started is stopped by its watchdog once the test process is gone (a few
# seconds for kube-apiserver to drain): wait for that, then count what is left.
kube_left() { pgrep -f 'tscgnat-kube-[A-Za-z0-9]+/' >/dev/null || ls -d /tmp/tscgnat-kube-* >/dev/null 2>&1; }
for _ in $(seq 60); do kube_left || break; sleep 0.5; done
if kube_left; then
  echo "tests left an etcd, a kube-apiserver or their directory behind:"; pgrep -af 'tscgnat-kube-' ; ls -d /tmp/tscgnat-kube-* 2>/dev/null
  status=1
fi

after=$(leftovers)
if [ "$after" != "$before" ]; then
  echo "tests left network namespaces behind:"; comm -13 <(echo "$before") <(echo "$after")
  status=1
fi

echo
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
