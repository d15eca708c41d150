#!/usr/bin/env bash
# bench/Repair/native-rebuild-ping.sh AGENT [REBUILDS]: allowed traffic lost per fast rebuild of tailscaled's native
# nftables chains (issue 11). As root: the lab of tests/fixtures/lab.sh, tailscaled emulated with its native nftables
# runner in mode on, the agent in host mode on u2. A rebuild is three nft transactions (flush ts-input/ts-forward;
# tailscaled's rules other than drops; its drops), while u3 (100.64.0.3, allowed by config/samples/subnet-router.yaml)
# pings u2 every 2 ms. Prints the lost pings x 2 ms per rebuild (counted over its first 1.5 s), median and worst.
set -u
AGENT=$(realpath "$1"); N=${2:-12}; ROOT=$(cd "$(dirname "$0")/../.." && pwd)
P=tsrp$$; D=$(mktemp -d /tmp/tsrp.XXXXXX)
cleanup() { [ -n "${APID:-}" ] && kill -TERM $APID 2>/dev/null; [ -n "${PPID2:-}" ] && kill $PPID2 2>/dev/null; wait 2>/dev/null; bash $ROOT/tests/fixtures/lab.sh destroy $P >/dev/null 2>&1; rm -rf $D; }
trap cleanup EXIT
bash $ROOT/tests/fixtures/lab.sh create $P >/dev/null || exit 1
U2=$P-u2; U3=$P-u3
TS_EMU_IPTABLES=nftables ip netns exec $U2 bash $ROOT/tests/fixtures/tailscaled-emu.sh --state $D/ts.state start on >$D/emu.log 2>&1 || { cat $D/emu.log; exit 1; }
ip netns exec $U2 $AGENT run --policy-file $ROOT/config/samples/subnet-router.yaml --state-dir $D/state --tailscale-socket $D/none.sock >$D/agent.log 2>&1 &
APID=$!
for i in $(seq 600); do ip netns exec $U2 nft list chain ip filter ts-input 2>/dev/null | grep -q 'ts-cgnat exemption' && break; sleep 0.1; done
sleep 2
# tailscaled's own rules (ours removed; handles dropped), split into drops and the rest
theirs() { ip netns exec $U2 nft list chain ip filter $1 | sed -n '/^\t\t/p' | grep -v 'ts-cgnat' | sed 's/^\t\t//; s/ # handle [0-9]*$//'; }
for c in ts-input ts-forward; do theirs $c | grep -v ' drop$' >$D/$c.rest; theirs $c | grep ' drop$' >$D/$c.drop; done
mk() { for c in ts-input ts-forward; do while read -r r; do [ -n "$r" ] && echo "add rule ip filter $c $r"; done <$D/$c.$1; done; }
mk rest >$D/t2.nft; mk drop >$D/t3.nft
printf 'flush chain ip filter ts-input\nflush chain ip filter ts-forward\n' >$D/t1.nft
ip netns exec $U3 ping -D -i 0.002 -W 1 100.64.0.2 >$D/ping.log 2>&1 &
PPID2=$!
sleep 2
for i in $(seq $N); do
  s=$(date +%s.%N)
  ip netns exec $U2 nft -f $D/t1.nft && ip netns exec $U2 nft -f $D/t2.nft && ip netns exec $U2 nft -f $D/t3.nft
  e=$(date +%s.%N); echo "$s $e" >>$D/rebuilds
  for j in $(seq 100); do ip netns exec $U2 nft list chain ip filter ts-input | grep -q 'ts-cgnat exemption' && break; sleep 0.05; done
  sleep 1.5
done
sleep 1; kill $PPID2; wait $PPID2 2>/dev/null; PPID2=
# lost pings per rebuild: icmp_seq gaps whose send time falls in [rebuild start, rebuild start + 1.5 s]
python3 - "$D/ping.log" "$D/rebuilds" <<'PY'
import re,sys,statistics
ans={}
for l in open(sys.argv[1]):
    m=re.match(r'^\[(\d+\.\d+)\] .*icmp_seq=(\d+)',l)
    if m: ans[int(m.group(2))]=float(m.group(1))
seqs=sorted(ans); t0=ans[seqs[0]]-seqs[0]*0.002
lost=[s for s in range(seqs[0],seqs[-1]) if s not in ans]
# send time of a lost request: interpolate from its neighbours
import bisect
def sent(s):
    i=bisect.bisect_left(seqs,s); a=seqs[i-1]; return ans[a]+(s-a)*0.002
rb=[tuple(map(float,l.split())) for l in open(sys.argv[2])]
per=[]
for s,e in rb:
    n=sum(1 for x in lost if s-0.01<=sent(x)<=s+1.5)
    per.append(n*2)
print("replies",len(ans),"lost total",len(lost))
print("ms dropped per rebuild (lost x 2 ms):",per)
print("median %.0f ms, worst %d ms over %d rebuilds"%(statistics.median(per),max(per),len(per)))
PY
grep -c "repaired drift" $D/agent.log | sed 's/^/agent repairs logged: /'
