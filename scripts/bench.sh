#!/usr/bin/env bash
# The standard benchmark (`just bench`, GitHub issue 4). For each scenario it recreates a
# scratch database, migrates it, starts `app serve` and N `app work` processes (release
# build) against it, waits for /readyz, runs `app bench`, reads the peak memory (VmHWM)
# of every process, and stops them. Results land in $BENCH_OUT (one JSON per scenario
# and summary.json); the last lines compare them with the issue's targets.
#
# Scenarios: a = batch 100, 8 in flight, 1 worker; b = batch 1, 64 in flight, 1 worker;
# c = scenario a with 2 workers. Environment (all optional):
#   BENCH_SCENARIOS  which to run                     (default "a b c")
#   BENCH_EVENTS     events in scenarios a and c      (default 200000)
#   BENCH_EVENTS_B   events in scenario b             (default 50000: one request per event)
#   BENCH_ADMIN_URL  a database URL on the server     (default postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_DB         the scratch database, DROPPED    (default game_events_bench)
#   BENCH_PORT       the API's port                   (default 18080)
#   BENCH_OUT        results directory                (default target/bench/<UTC time>)
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=${BENCH_SCENARIOS:-a b c}
events=${BENCH_EVENTS:-200000}
events_b=${BENCH_EVENTS_B:-50000}
admin_url=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=${BENCH_DB:-game_events_bench}
db_url=${admin_url%/*}/$db
port=${BENCH_PORT:-18080}
target_dir=${CARGO_TARGET_DIR:-target}
out=${BENCH_OUT:-$target_dir/bench/$(date -u +%Y%m%dT%H%M%SZ)}
app=$target_dir/release/app

case $db in
  *[!a-z0-9_]*) echo "BENCH_DB must be a plain lower-case name" >&2; exit 2 ;;
esac

cargo build --release --quiet
mkdir -p "$out"
echo "results in $out"

# Children started by this script; the trap stops whatever is still running.
pids=()
stop() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Bounded: the worker's shutdown grace is 30 s; then SIGKILL.
  for _ in $(seq 1 400); do
    local alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}
cleanup() {
  if [ ${#pids[@]} -gt 0 ]; then stop "${pids[@]}"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fresh_database() {
  psql -q -v ON_ERROR_STOP=1 "$admin_url" \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  "$app" migrate --database-url "$db_url" >/dev/null
}

wait_ready() {
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then return 0; fi
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "process $pid exited during start-up" >&2; return 1; }
    done
    sleep 0.2
  done
  echo "the API did not become ready within 60 s" >&2
  return 1
}

peak_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system) a process has used so far, in seconds.
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# scenario NAME BATCH_SIZE CONCURRENCY WORKERS EVENTS
scenario() {
  local name=$1 batch=$2 concurrency=$3 workers=$4 events=$5
  echo "== scenario $name: batch $batch, concurrency $concurrency, $workers worker(s), $events events"
  fresh_database
  pids=()
  "$app" serve --database-url "$db_url" --bind "127.0.0.1:$port" >"$out/$name.serve.log" 2>&1 &
  local serve_pid=$!
  pids+=("$serve_pid")
  local work_pids=() i
  for i in $(seq 1 "$workers"); do
    "$app" work --database-url "$db_url" >"$out/$name.work$i.log" 2>&1 &
    work_pids+=("$!")
    pids+=("$!")
  done
  wait_ready
  "$app" bench --url "http://127.0.0.1:$port" --database-url "$db_url" \
    --events "$events" --batch-size "$batch" --concurrency "$concurrency" \
    --json "$out/$name.bench.json" | tee "$out/$name.txt"
  local serve_kib work_kib=() serve_cpu work_cpu=()
  serve_kib=$(peak_kib "$serve_pid")
  serve_cpu=$(cpu_secs "$serve_pid")
  for i in "${work_pids[@]}"; do
    work_kib+=("$(peak_kib "$i")")
    work_cpu+=("$(cpu_secs "$i")")
  done
  stop "${pids[@]}"
  pids=()
  jq --arg name "$name" --argjson workers "$workers" --argjson serve "$serve_kib" \
    --argjson work "[$(IFS=,; echo "${work_kib[*]}")]" \
    --argjson serve_cpu "$serve_cpu" --argjson work_cpu "[$(IFS=,; echo "${work_cpu[*]}")]" \
    '{scenario: $name, workers: $workers, peak_memory_kib: {serve: $serve, work: $work},
      cpu_seconds: {serve: $serve_cpu, work: $work_cpu}} + .' \
    "$out/$name.bench.json" >"$out/$name.json"
  rm "$out/$name.bench.json"
  echo "CPU: serve ${serve_cpu} s; work ${work_cpu[*]} s (from start-up to the end of the run)"
  echo "peak memory (VmHWM): serve $((serve_kib / 1024)) MiB; work$(for k in "${work_kib[@]}"; do printf ' %s MiB' $((k / 1024)); done)"
}

for s in $scenarios; do
  case $s in
    a) scenario a 100 8 1 "$events" ;;
    b) scenario b 1 64 1 "$events_b" ;;
    c) scenario c 100 8 2 "$events" ;;
    *) echo "unknown scenario $s (a, b or c)" >&2; exit 2 ;;
  esac
done

psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true

# One summary, and each target of the issue with the measured figure.
jq -s '.' "$out"/[abc].json >"$out/summary.json"
jq -r '
  def mib(k): (k / 1024 | floor);
  ["scenario", "events/s accepted", "events/s end to end", "vs COPY", "POST p50/p95/p99 ms",
   "stored p50/p99 ms", "errors", "serve MiB", "work MiB"],
  (.[] | [.scenario + " (batch \(.batch_size), c\(.concurrency), \(.workers) worker(s))",
          (.accepted_events_per_sec | floor), (.end_to_end_events_per_sec | floor),
          ((.end_to_end_vs_ceiling // 0) * 1000 | floor / 10 | tostring + " %"),
          "\(.post_latency.p50_ms * 10 | floor / 10)/\(.post_latency.p95_ms * 10 | floor / 10)/\(.post_latency.p99_ms * 10 | floor / 10)",
          "\(.end_to_end_latency.p50_ms | floor)/\(.end_to_end_latency.p99_ms | floor)",
          ((.errors.by_status | to_entries | map(.value) | add // 0) + .errors.transport),
          mib(.peak_memory_kib.serve), (.peak_memory_kib.work | map(mib(.)) | join("+"))])
  | @tsv' "$out/summary.json" | column -t -s $'\t' | tee "$out/summary.txt"
echo | tee -a "$out/summary.txt"
jq -r '
  (map({(.scenario): .}) | add) as $s
  | def ok(c): if c then "met" else "NOT met" end;
    def mib(k): (k / 1024 | floor);
  ["target (issue 4)", "measured", ""],
  (if $s.a then ["a: end to end >= 40 % of COPY", "\((($s.a.end_to_end_vs_ceiling // 0) * 1000 | floor) / 10) %", ok(($s.a.end_to_end_vs_ceiling // 0) >= 0.4)] else empty end),
  (if $s.b then ["b: >= 5000 events/s end to end", "\($s.b.end_to_end_events_per_sec | floor)", ok($s.b.end_to_end_events_per_sec >= 5000)] else empty end),
  (.[] | select(.scenario == "a" or .scenario == "b")
     | ["\(.scenario): POST p99 <= 50 ms", "\(.post_latency.p99_ms * 10 | floor / 10) ms", ok(.post_latency.p99_ms <= 50)],
       ["\(.scenario): stored p99 <= 1 s", "\(.end_to_end_latency.p99_ms | floor) ms", ok(.end_to_end_latency.p99_ms <= 1000)]),
  (if $s.a and $s.c then ["c: 2 workers >= 1 worker", "\($s.c.end_to_end_events_per_sec | floor) vs \($s.a.end_to_end_events_per_sec | floor)", ok($s.c.end_to_end_events_per_sec >= $s.a.end_to_end_events_per_sec)] else empty end),
  (.[] | ["\(.scenario): peak memory < 200 MiB", "serve \(mib(.peak_memory_kib.serve)), work \(.peak_memory_kib.work | map(mib(.)) | join("+"))",
          ok(.peak_memory_kib.serve < 204800 and (.peak_memory_kib.work | all(. < 204800)))])
  | @tsv' "$out/summary.json" | column -t -s $'\t' | tee -a "$out/summary.txt"
