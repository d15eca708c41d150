#!/usr/bin/env bash
# Fuzzes every parser of outside text (issue 10) with AFL++ through SharpFuzz: tests/Fuzz holds the targets
# and their seed corpora; docs/limits.md says what the runs found.
#
#   bash scripts/fuzz.sh SECONDS [TARGET...]      each target (default: all) for SECONDS, one after the other
#
# Needs afl++ (Debian) and the sharpfuzz tool (dotnet tool install --global SharpFuzz.CommandLine --version 2.3.0).
# Prints per target: execs/s, paths (AFL's corpus count), crashes, hangs (an input over 5 s), and the slowest
# input of the final corpus replayed in one process. Exits 1 on any crash or hang; they are kept under
# $TSCGNAT_FUZZ_OUT (default: a temp directory, printed) for a regression test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
seconds=${1:?usage: fuzz.sh SECONDS [TARGET...]}
shift
export PATH="$PATH:$HOME/.dotnet/tools"
command -v afl-fuzz >/dev/null || { echo "fuzz: afl-fuzz missing (apt-get install afl++)"; exit 1; }
command -v sharpfuzz >/dev/null || { echo "fuzz: sharpfuzz missing (dotnet tool install --global SharpFuzz.CommandLine --version 2.3.0)"; exit 1; }

out=${TSCGNAT_FUZZ_OUT:-$(mktemp -d /tmp/tscgnat-fuzz.XXXXXX)}
mkdir -p "$out"
bin="$out/bin"
dotnet build tests/Fuzz -c Release -nologo -v quiet -warnaserror >/dev/null
rm -rf "$bin" && cp -r tests/Fuzz/bin/Release/net10.0 "$bin" # instrumented here, never in the build output
# Coverage is collected from the assemblies that hold the parsers: ours, YamlDotNet and KubernetesClient.
for dll in TsCgnat.Api TsCgnat.Firewall TsCgnat.Kube ts-cgnat-agent YamlDotNet KubernetesClient; do
  sharpfuzz "$bin/$dll.dll" >/dev/null
done

# The targets write their files (kubeconfig, state cache) in a temp directory of their own: keep those under $out.
mkdir -p "$out/tmp"
export TMPDIR="$out/tmp"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(dotnet "$bin/TsCgnat.Fuzz.dll" list)

export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
failed=0
for target in "${targets[@]}"; do
  afl-fuzz -V "$seconds" -t 5000+ -m none -i "tests/Fuzz/corpus/$target" -o "$out/$target" \
    -- dotnet "$bin/TsCgnat.Fuzz.dll" "$target" >"$out/$target.log" 2>&1 || { echo "fuzz: afl-fuzz failed for $target:"; tail -20 "$out/$target.log"; failed=1; continue; }
  stats="$out/$target/default/fuzzer_stats"
  stat() { awk -F' *: *' -v k="$1" '$1 == k {print $2}' "$stats"; }
  crashes=$(find "$out/$target/default/crashes" -type f -name 'id:*' | wc -l)
  hangs=$(find "$out/$target/default/hangs" -type f -name 'id:*' | wc -l)
  slowest=$(dotnet tests/Fuzz/bin/Release/net10.0/TsCgnat.Fuzz.dll replay "$target" "$out/$target/default/queue" | tail -1 | sed -E 's/.*slowest ([0-9.]+ ms).*/\1/')
  printf 'fuzz %-14s %6s s  execs %8s  execs/s %7s  paths %5s  crashes %s  hangs %s  slowest input %s\n' \
    "$target" "$seconds" "$(stat execs_done)" "$(stat execs_per_sec)" "$(stat corpus_count)" "$crashes" "$hangs" "$slowest"
  [ "$crashes" -eq 0 ] && [ "$hangs" -eq 0 ] || { failed=1; echo "fuzz: $target: crashes and hangs kept in $out/$target/default"; }
done
echo "fuzz: output in $out"
exit "$failed"
