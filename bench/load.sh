#!/usr/bin/env bash
# The load engine's figures, in a release build, side by side with wrk on the
# same fixture route and connection count, in one run (not a test: numbers
# for people, printed as a table):
#   1. cost: CPU seconds of `firedrill load` holding 100 req/s for 30 s;
#   2. accuracy: achieved vs requested rate at 100 ... 5000 req/s;
#   3. ceiling: firedrill at an unreachable rate vs wrk, same route, same
#      connections, on a route that only answers (/-/ready) and on the
#      drills' own route (/api/health, a few ms of latency).
# Everything goes to 127.0.0.1, bounded in time. Needs wrk (Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."
conns=${CONNS:-16}
secs=${SECS:-10}

if ! command -v wrk >/dev/null; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get install -y -q wrk >/dev/null
fi
cargo build --release --locked -q
bin=target/release/firedrill
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" fixture serve --profile fixtures/backend.yaml --listen "127.0.0.1:$port" >/dev/null 2>&1 &
fx=$!
trap 'kill $fx 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port"
out=$(mktemp -d)

field() { python3 -c "import json,sys; d=json.load(open('$1')); print(eval('d' + sys.argv[1]))" "$2"; }

echo "## cost: 100 req/s for 30 s on /api/health (3 runs)"
for run in 1 2 3; do
  if command -v perf >/dev/null; then
    # task-clock is the time the process really ran (rusage is tick-sampled).
    perf stat -e task-clock -x, -o "$out/stat" "$bin" load "$url/api/health" --rate 100 --duration 30s --json "$out/cost.json" >/dev/null
    ms=$(awk -F, '/task-clock/ {print $1}' "$out/stat")
  else
    /usr/bin/time -f '%U %S' -o "$out/time" "$bin" load "$url/api/health" --rate 100 --duration 30s --json "$out/cost.json" >/dev/null
    ms=$(awk '{print ($1 + $2) * 1000}' "$out/time")
  fi
  python3 -c "ms=$ms; print(f'run $run: {ms/1000:.3f} CPU-s in 30 s = {ms/300:.2f} % of one core')"
done
echo "achieved $(field "$out/cost.json" "['achieved_rate']")/s, p99 corrected $(field "$out/cost.json" "['latency_ms']['corrected']['p99']") ms"

echo
echo "## accuracy: requested vs achieved, ${secs}s each on /api/health"
printf '%10s %12s %10s %8s %8s %14s %14s\n' requested achieved error late dropped p99_corr_ms p99_uncorr_ms
for r in 100 1000 2000 5000; do
  "$bin" load "$url/api/health" --rate "$r" --duration "${secs}s" --json "$out/r$r.json" >/dev/null
  python3 - "$out/r$r.json" "$r" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); r = float(sys.argv[2])
c, u = d["latency_ms"]["corrected"], d["latency_ms"]["uncorrected"]
print(f'{r:10.0f} {d["achieved_rate"]:12.1f} {100*(d["achieved_rate"]-r)/r:+9.2f}% {d["late"]:8d} {d["dropped"]:8d} {c["p99"]:14.2f} {u["p99"]:14.2f}')
EOF
done

echo
echo "## ceiling: ${conns} connections, ${secs}s, same route"
printf '%-14s %14s %14s %8s\n' route firedrill_rps wrk_rps ratio
for route in /-/ready /api/health; do
  "$bin" load "$url$route" --rate 1000000 --connections "$conns" --duration "${secs}s" --json "$out/max.json" >/dev/null
  ours=$(field "$out/max.json" "['answered']")
  ours=$(python3 -c "print($ours/$secs)")
  theirs=$(wrk -t 2 -c "$conns" -d "${secs}s" "$url$route" | awk '/Requests\/sec/ {print $2}')
  python3 -c "o,t=$ours,$theirs; print(f'{\"$route\":<14} {o:14.0f} {t:14.0f} {o/t:8.2f}')"
done
rm -rf "$out"
