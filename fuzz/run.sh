#!/usr/bin/env bash
# Runs each fuzz target (or the ones named) for SECONDS seconds, one after
# the other, on the committed corpus; prints executions and findings.
#
#   fuzz/run.sh 600                    # every target, 10 minutes each
#   fuzz/run.sh 60 csr ocsp_request    # two targets, a minute each
#
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
# A crash leaves its input in fuzz/artifacts/<target>/ and stops the run
# with exit code 1; reproduce it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(csr ocsp_request api_json spiffe_id scopes verifier)
fi
cargo +nightly fuzz build -O
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log=$(mktemp)
    if cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="FOUND A CRASH (see fuzz/artifacts/$t)"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "$t: $runs executions in ${secs}s, $cov: $result"
    if [ "$result" != ok ]; then tail -40 "$log"; fi
    rm -f "$log"
done
exit $status
