#!/usr/bin/env bash
# Fuzzes duet's readers of untrusted bytes with libFuzzer (fuzz/): builds the targets with clang
# into build-fuzz/ against the main build in build/ (scripts/build.sh), makes their seed corpora
# from real files once (fuzz/make_seeds.py), replays the saved regression inputs (fuzz/regress/),
# then runs each target for N seconds, J at a time. New inputs accumulate in build-fuzz/corpus/;
# a crash, leak, timeout or oversized allocation is saved under fuzz/crashes/<target>/, named on
# the last lines, and makes the exit status 1 (one inside LibTorch's archive loader is named and
# not counted: fuzz/README.md).
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [target...]   (default: 60 s each, 2 at a time, all)
#   DUET_FUZZ_SECONDS=N sets the default of --seconds (scripts/test.sh passes it on; 0 skips).
#   Replay inputs: DUET_FUZZ_VERBOSE=1 build-fuzz/fuzz_<target> FILE... (prints each refusal;
#   fuzz_model wants DUET_FUZZ_MODEL=build-fuzz/seeds/model-folder).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${DUET_FUZZ_SECONDS:-60}
jobs=2
targets=()
all=(image gallery model search_request)
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [[ " ${all[*]} " == *" $1 "* ]] || { echo "fuzz.sh: no target '$1' (targets: ${all[*]})" >&2; exit 2; }
       targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
[[ "$seconds" =~ ^[0-9]+$ && "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --seconds and --jobs take whole numbers" >&2; exit 2; }
[ "$seconds" -gt 0 ] || { echo "fuzz: skipped (0 seconds)"; exit 0; }
command -v clang++-14 >/dev/null || { echo "fuzz.sh: clang++-14 is missing (scripts/deps.sh installs it)" >&2; exit 2; }
[ -x build/duet ] || { echo "fuzz.sh: build duet first (scripts/build.sh)" >&2; exit 2; }

t0=$SECONDS
cmake -S fuzz -B build-fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DDUET_BUILD="$root/build" >/dev/null
if ! CCACHE_BASEDIR=$root cmake --build build-fuzz -j"$jobs" >build-fuzz/build.log 2>&1; then
  tail -n 40 build-fuzz/build.log
  echo "fuzz.sh: the fuzz targets did not build (build-fuzz/build.log)" >&2
  exit 1
fi
echo "fuzz: targets built in $((SECONDS - t0)) s"

shared=${DUET_SHARED:-$root/../shared}
seeds=build-fuzz/seeds
if [ ! -f "$seeds/done" ] || [ fuzz/make_seeds.py -nt "$seeds/done" ]; then
  t1=$SECONDS
  rm -rf "$seeds"
  /usr/bin/python3 fuzz/make_seeds.py build/duet "$shared" "$seeds"
  touch "$seeds/done"
  echo "fuzz: seed corpora made in $((SECONDS - t1)) s"
fi
export DUET_FUZZ_MODEL=$root/$seeds/model-folder DUET_SHARED="$shared"
# The targets' scratch files (fuzz_util.h) in a folder of this run's own, in memory where possible,
# removed at the end with what crashed targets left in it.
TMPDIR=$(mktemp -d -p "$([ -w /dev/shm ] && echo /dev/shm || echo /tmp)" duet-fuzz.XXXXXX)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
# One core per target: LibTorch and OpenBLAS single-threaded.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=suppressions=$root/fuzz/lsan.supp:print_suppressions=0

# Whether an input of fuzz_model fails inside LibTorch's own archive loader (torch::jit::load: zip,
# pickle, TorchScript class source), before it returns a byte to duet: a crash there, or an
# allocation of what a crafted length says. Replayed with full stacks and a 1 GB allocation limit:
# no duet frame may lie between the failure and the loader. Known and not counted until duet reads
# its encoder, mapper and bridge files in a format of its own (fuzz/README.md).
inside_libtorch_loader() {
  [ "$1" = model ] || return 1
  # The replay fails by design: its output is kept whole, then read (under pipefail the pipe's
  # status would be the replay's).
  local out
  out=$(ASAN_OPTIONS=fast_unwind_on_malloc=0:$ASAN_OPTIONS build-fuzz/fuzz_model -malloc_limit_mb=1024 "$2" 2>&1 || true)
  awk '/^ +#[0-9]+ / { if (/torch::jit::load\(|InputArchive::load_from/) { found = 1; exit } if (/duet::/) exit }
         END { exit !found }' <<<"$out"
}

# One target's run: the regression inputs once, then `seconds` of fuzzing; a summary line.
fuzz_one() {
  local t=$1 log=build-fuzz/logs/$1.log crashes=fuzz/crashes/$1/
  mkdir -p "build-fuzz/corpus/$t" "$seeds/$t" "$crashes"
  local flags=(-timeout=25 -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix="$crashes"
               -print_final_stats=1)
  # The model's seeds include its 1.3 MB bridge (libFuzzer's default cap is 1 MB).
  [ "$t" != model ] || flags+=(-max_len=1572864)
  local regress=(fuzz/regress/"$t"/*)
  if [ -e "${regress[0]}" ] && ! "build-fuzz/fuzz_$t" "${flags[@]}" "${regress[@]}" >"$log.regress" 2>&1; then
    echo "fuzz: $t FAILED a regression input (fuzz/regress/$t): $log.regress"
    tail -n 25 "$log.regress"
    return 1
  fi
  if "build-fuzz/fuzz_$t" "${flags[@]}" -max_total_time="$seconds" "build-fuzz/corpus/$t" "$seeds/$t" >"$log" 2>&1; then
    local execs rate cov
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
    echo "fuzz: $t ok: $execs runs in ${seconds} s ($rate/s), $cov, corpus $(ls "build-fuzz/corpus/$t" | wc -l)"
  else
    local input
    input=$(grep -o "Test unit written to .*" "$log" | tail -n 1 | cut -d' ' -f5-)
    if [ -n "$input" ] && inside_libtorch_loader "$t" "$input"; then
      echo "fuzz: $t stopped at a failure inside LibTorch's archive loader, not counted (fuzz/README.md): $input"
      return 0
    fi
    echo "fuzz: $t FAILED: $input (log: $log)"
    grep -m1 -B2 -A25 "ERROR: \|FUZZ_CHECK\|terminate called\|==ERROR\|runtime error" "$log" | head -n 40
    return 1
  fi
}

mkdir -p build-fuzz/logs
t2=$SECONDS
failed=0
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
echo "fuzz: ${#targets[@]} targets fuzzed in $((SECONDS - t2)) s ($((SECONDS - t0)) s in all)"
exit "$failed"
