#!/usr/bin/env bash
# Checks a running app's /metrics with Prometheus's own tools (Debian's prometheus package:
# promtool and the server), in both formats it serves:
#   1. the Prometheus text format 0.0.4 (no Accept): `promtool check metrics` prints nothing
#      and exits 0;
#   2. OpenMetrics 1.0.0 (Accept as Prometheus sends it): promtool reads only the text format
#      (prometheus/prometheus#8932), where an OpenMetrics counter family `x`, whose samples are
#      `x_total`, looks like an untyped `x_total` without HELP. So its output must be exactly
#      "x_total no help text" for each counter and nothing else: any other finding, or a parse
#      error, fails. And a Prometheus server scrapes the endpoint (it asks for OpenMetrics):
#      the target must be up with no scrape error, and the metadata Prometheus keeps must name
#      the counters as OpenMetrics does (no `_total`), which shows it parsed OpenMetrics.
# Run it after some traffic, so that labelled counters and histograms have samples.
#
#   e2e/metrics/check_metrics.sh --base-url http://127.0.0.1:8080 [--work DIR]
#
# Exits 0 when every check passes, 1 with a message naming the failed check.
set -euo pipefail

base_url=""
work=""
while (($#)); do
  case "$1" in
    --base-url) base_url="${2%/}"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    *) echo "usage: $0 --base-url URL [--work DIR]" >&2; exit 2 ;;
  esac
done
[[ -n "$base_url" ]] || { echo "usage: $0 --base-url URL [--work DIR]" >&2; exit 2; }
work="${work:-$(mktemp -d "${TMPDIR:-/tmp}/app-metrics.XXXXXX")}"
mkdir -p "$work"

ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL metrics: %s\n     (scrapes and logs in %s)\n' "$*" "$work" >&2; exit 1; }
for tool in promtool prometheus curl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (Debian's prometheus package has promtool and prometheus)"
done
echo "$(promtool --version 2>&1 | head -n 1)"

# What Prometheus 2 sends when it scrapes.
prometheus_accept='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'

# scrape NAME [ACCEPT]: GET /metrics into $work/NAME.txt; prints its Content-Type.
scrape() {
  local accept=()
  [[ -n "${2:-}" ]] && accept=(-H "Accept: $2")
  curl -fsS --max-time 10 "${accept[@]}" -D "$work/$1.headers" -o "$work/$1.txt" "$base_url/metrics" \
    || fail "GET $base_url/metrics (${2:-no Accept}) failed"
  sed -n 's/^content-type: *//Ip' "$work/$1.headers" | tr -d '\r'
}

text_type="$(scrape text)"
[[ "$text_type" == "text/plain; version=0.0.4; charset=utf-8" ]] \
  || fail "with no Accept, /metrics is $text_type, not the text format 0.0.4"
om_type="$(scrape openmetrics "$prometheus_accept")"
[[ "$om_type" == "application/openmetrics-text; version=1.0.0; charset=utf-8" ]] \
  || fail "with Prometheus's Accept, /metrics is $om_type, not OpenMetrics 1.0.0"
# Something to check in every kind of metric: labelled counters and histograms have samples.
for sample in 'game_events_http_requests_total{' 'game_events_jobs_total{' 'game_events_processing_seconds_bucket{' \
    'game_events_end_to_end_lag_seconds_bucket{'; do
  grep -qF "$sample" "$work/text.txt" || fail "no $sample… sample in $work/text.txt: run this after some traffic"
done
ok "/metrics: the text format 0.0.4 with no Accept, OpenMetrics 1.0.0 with Prometheus's Accept"

# 1. The text format: promtool finds nothing.
if ! promtool check metrics <"$work/text.txt" >"$work/promtool-text.out" 2>&1; then
  cat "$work/promtool-text.out" >&2
  fail "promtool check metrics on the text format exited non-zero (findings above)"
fi
[[ ! -s "$work/promtool-text.out" ]] || { cat "$work/promtool-text.out" >&2; fail "promtool check metrics printed findings on the text format (above)"; }
ok "promtool check metrics, text format 0.0.4: nothing to report ($(grep -c '^# TYPE' "$work/text.txt") metrics, $(grep -vc '^#' "$work/text.txt") samples)"

# 2a. OpenMetrics through promtool: only what its text parser cannot know about OM counters.
set +e
promtool check metrics <"$work/openmetrics.txt" >"$work/promtool-openmetrics.out" 2>&1
promtool_rc=$?
set -e
sed -n 's/^# TYPE \([^ ]*\) counter$/\1_total no help text/p' "$work/openmetrics.txt" | sort >"$work/promtool-openmetrics.expected"
if ! diff -u "$work/promtool-openmetrics.expected" <(sort "$work/promtool-openmetrics.out") >"$work/promtool-openmetrics.diff"; then
  cat "$work/promtool-openmetrics.diff" >&2
  fail "promtool check metrics on OpenMetrics reported more than the text parser's known misreading of OpenMetrics counters (diff above: - expected, + reported)"
fi
expected_rc=0
[[ -s "$work/promtool-openmetrics.expected" ]] && expected_rc=3 # promtool's exit code for lint findings
((promtool_rc == expected_rc)) || fail "promtool check metrics on OpenMetrics exited $promtool_rc, expected $expected_rc"
ok "promtool check metrics, OpenMetrics: nothing but 'no help text' for the $(wc -l <"$work/promtool-openmetrics.expected") counters, whose OpenMetrics families promtool's text parser cannot read (prometheus/prometheus#8932)"

# 2b. OpenMetrics through a Prometheus server's scrape.
prometheus_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
target="${base_url#http://}"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ['$target']
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus-data" \
  --web.listen-address="127.0.0.1:$prometheus_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prometheus_pid=$!
stop_prometheus() {
  kill -TERM "$prometheus_pid" 2>/dev/null || true
  wait "$prometheus_pid" 2>/dev/null || true
}
trap stop_prometheus EXIT
api="http://127.0.0.1:$prometheus_port/api/v1"
# The first scrape: Prometheus starts, then scrapes within one interval.
deadline=$((SECONDS + 60))
until curl -fsS --max-time 5 "$api/targets" 2>/dev/null >"$work/targets.json" \
    && python3 -c 'import json, sys; t = json.load(sys.stdin)["data"]["activeTargets"]; sys.exit(0 if t and t[0]["health"] != "unknown" else 1)' <"$work/targets.json"; do
  kill -0 "$prometheus_pid" 2>/dev/null || { cat "$work/prometheus.log" >&2; fail "prometheus exited (log above)"; }
  ((SECONDS < deadline)) || fail "prometheus did not scrape $target within 60s"
  sleep 0.2
done
curl -fsS --max-time 5 "$api/metadata" >"$work/metadata.json" || fail "GET $api/metadata failed"
python3 - "$work/targets.json" "$work/metadata.json" <<'EOF' || fail "Prometheus's scrape of /metrics (above)"
import json, sys
target = json.load(open(sys.argv[1]))["data"]["activeTargets"][0]
metadata = json.load(open(sys.argv[2]))["data"]
if target["health"] != "up" or target["lastError"]:
    sys.exit(f"the target is {target['health']}: {target['lastError']}")
# OpenMetrics names a counter's family without `_total`; the text format with it.
kinds = {name: entries[0]["type"] for name, entries in metadata.items()}
want = {"game_events_http_requests": "counter", "game_events_jobs": "counter",
        "game_events_processing_seconds": "histogram", "game_events_queue_depth": "gauge"}
wrong = {name: kinds.get(name) for name, kind in want.items() if kinds.get(name) != kind}
if wrong or any(name.endswith("_total") for name in kinds):
    sys.exit(f"Prometheus did not read OpenMetrics: metadata {kinds}")
print(f"ok   a Prometheus server scraped /metrics as OpenMetrics: target up, no scrape error, "
      f"{len(kinds)} metrics typed as OpenMetrics names them (counters without _total)")
EOF
echo "PASS metrics: both formats of /metrics pass Prometheus's tools"
