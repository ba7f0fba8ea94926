#!/usr/bin/env bash
# Crash safety of build/train_tokenizer and build/train_generator (tiny models, a checkpoint every
# step): each program is SIGKILLed again and again, resuming each time from the checkpoint the
# last round left, and at the end resumed to completion:
#  - mid-checkpoint kills are made certain, not left to timing: tests/kill_shim.c (LD_PRELOAD)
#    kills the process inside the n-th fwrite to ckpt.safetensors.tmp, after half of that write
#    reached the file; n walks over the first checkpoint of a round (the previous one must survive
#    it) and into the later ones;
#  - kills after fixed delays land wherever the run is (loading, a step, a save);
#  - after every kill the checkpoint is absent (nothing saved yet) or loads (--export of it works)
#    and its step never goes back; a partial ckpt.safetensors.tmp left by a kill does not stop
#    the next round;
#  - the final --resume finishes the run, and its model.safetensors and checkpoint are byte for
#    byte those of a run that was never killed (the resume is exact, so nothing was lost).
# Run from the repository root: tests/cli_kill.sh build   (one PASS/FAIL line per check)
set -u
B=${1:-build}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/textok_kill.XXXXXX") || { echo "FAIL kill: mktemp"; exit 1; }
trap 'rm -rf "$TMP"' EXIT
pass() { echo "PASS kill $1"; }
fail() { echo "FAIL kill $1: $2"; }
last_line() { tail -n 1 "$1" 2>/dev/null | tr -d '\n'; }

for t in train_tokenizer train_generator convert; do
  [ -x "$B/$t" ] || { fail "build" "$B/$t is not built (run make)"; exit 0; }
done
[ "$(uname -s)" = Linux ] || { echo "kill: skipped (the kill shim needs Linux's /proc/self/fd)"; exit 0; }
command -v python3 >/dev/null || { fail "test images" "python3 is needed to write the test PNGs"; exit 0; }
SHIM=$TMP/kill_shim.so
${CC:-cc} -shared -fPIC -O1 tests/kill_shim.c -o "$SHIM" -ldl 2>"$TMP/cc.err" || { fail "kill shim" "$(last_line "$TMP/cc.err")"; exit 0; }
# an ASan build wants its runtime first; the shim before it is fine for this test
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0

mkdir -p "$TMP/img16" "$TMP/img32"
python3 tests/write_pngs.py "$TMP/img16" 16 16 4 && python3 tests/write_pngs.py "$TMP/img32" 32 32 6 ||
  { fail "test images" "python3 could not write them"; exit 0; }
printf 'img0.png\t0\nimg1.png\t1\nimg2.png\t2\nimg3.png\t0\nimg4.png\t1\nimg5.png\t2\n' >"$TMP/labels.txt"

STEPS=300   # long enough that the timed kills land before the end on a fast machine
# step_of CKPT: the step a checkpoint holds (its "step" metadata), or empty
step_of() {
  python3 - "$1" <<'EOF2' 2>/dev/null
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
m = json.loads(b[8:8 + n]).get("__metadata__", {})
print(next((m[k] for k in ("textok.step", "step", "train.step") if k in m), ""))
EOF2
}

# kill_run NAME PROG EXPORT_ARGS -- ARGS...: the whole scenario for one program
kill_run() {
  local name=$1 prog=$2; shift 2
  local R=$TMP/$name.ref K=$TMP/$name.kill n rc prev=0 s w per round=0
  # the reference: never killed; and how many checkpoint writes one save is
  if ! TEXTOK_COUNT_WRITES=1 LD_PRELOAD=$SHIM "$prog" "$@" --steps $STEPS --out "$R" >"$TMP/out" 2>"$TMP/err"; then
    fail "$name: reference run" "$(last_line "$TMP/err")"; return
  fi
  w=$(sed -n 's/^kill_shim: \([0-9]*\) checkpoint writes$/\1/p' "$TMP/err" | tail -n 1)
  per=$(( ${w:-0} / STEPS ))
  if [ "${per:-0}" -lt 1 ]; then fail "$name: checkpoint writes counted" "kill_shim saw ${w:-no} writes"; return; fi
  pass "$name: reference run of $STEPS steps ($per fwrite calls per checkpoint)"
  # kills inside a save: the first write of the round's first save, its middle, its last; then
  # inside the second and third saves (each round resumes from what the last one left)
  for n in 1 $(( (per + 1) / 2 )) $per $(( per + 1 )) $(( per + per / 2 + 1 )) $(( 2 * per + 2 )) $(( 3 * per ))
  do
    round=$((round + 1))
    local res=()
    [ -f "$K/ckpt.safetensors" ] && res=(--resume "$K/ckpt.safetensors")
    { TEXTOK_KILL_AT_WRITE=$n LD_PRELOAD=$SHIM "$prog" "$@" --steps $STEPS --out "$K" "${res[@]}" >"$TMP/out" 2>"$TMP/err"; } 2>/dev/null
    rc=$?
    if [ $rc -ne 137 ]; then fail "$name: round $round killed at checkpoint write $n" "exit $rc, not SIGKILL ($(last_line "$TMP/err"))"; continue; fi
    [ -f "$K/ckpt.safetensors.tmp" ] && partial=" (a partial ckpt.safetensors.tmp left)" || partial=""
    check_ckpt "$name" "round $round, killed inside checkpoint write $n$partial" "$prog" "$K" prev
  done
  # kills after fixed delays: wherever the run is
  for d in 0.3 0.6 0.9; do
    round=$((round + 1))
    local res=()
    [ -f "$K/ckpt.safetensors" ] && res=(--resume "$K/ckpt.safetensors")
    "$prog" "$@" --steps $STEPS --out "$K" "${res[@]}" >/dev/null 2>&1 &
    local pid=$!
    sleep $d
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    rc=$?
    if [ $rc -eq 0 ]; then pass "$name: round $round: finished before the kill after ${d}s (a fast machine)"; break; fi
    check_ckpt "$name" "round $round, killed after ${d}s" "$prog" "$K" prev
  done
  # resume to the end: the same model and checkpoint as the run that was never killed
  local res=()
  [ -f "$K/ckpt.safetensors" ] && res=(--resume "$K/ckpt.safetensors")
  if [ "$prev" = $STEPS ] && [ -f "$K/model.safetensors" ]; then
    pass "$name: the run had already finished"
    same_as_ref "$name" "$R" "$K"
  elif "$prog" "$@" --steps $STEPS --out "$K" "${res[@]}" >"$TMP/out" 2>"$TMP/err"; then
    pass "$name: --resume from step $prev finishes the run"
    same_as_ref "$name" "$R" "$K"
  else
    fail "$name: --resume from step $prev finishes the run" "$(last_line "$TMP/err")"
  fi
}

# same_as_ref NAME REF KILLED: the final model and checkpoint are the unkilled run's, byte for byte
same_as_ref() {
  if cmp -s "$2/model.safetensors" "$3/model.safetensors"; then pass "$1: model.safetensors = the unkilled run's"
  else fail "$1: model.safetensors = the unkilled run's" "they differ"; fi
  if cmp -s "$2/ckpt.safetensors" "$3/ckpt.safetensors"; then pass "$1: ckpt.safetensors = the unkilled run's"
  else fail "$1: ckpt.safetensors = the unkilled run's" "they differ"; fi
}

# check_ckpt NAME WHAT PROG DIR PREVVAR: absent (no save yet) or loadable, step not going back
check_ckpt() {
  local name=$1 what=$2 prog=$3 D=$4 s
  if [ ! -f "$D/ckpt.safetensors" ]; then
    if [ "${!5}" = 0 ]; then pass "$name: $what: no checkpoint yet"; else fail "$name: $what" "the checkpoint of step ${!5} is gone"; fi
    return
  fi
  rm -f "$TMP/exp.st"
  if ! "$prog" --resume "$D/ckpt.safetensors" --export "$TMP/exp.st" >"$TMP/lout" 2>&1; then
    fail "$name: $what: the checkpoint loads" "$(last_line "$TMP/lout")"; return
  fi
  s=$(step_of "$D/ckpt.safetensors")
  if [ -n "$s" ] && [ "$s" -lt "${!5}" ]; then fail "$name: $what" "the checkpoint went back from step ${!5} to $s"; return; fi
  pass "$name: $what: the checkpoint (step ${s:-?}) loads"
  [ -n "$s" ] && printf -v "$5" '%s' "$s"
}

prev=0
kill_run tokenizer "$B/train_tokenizer" --images "$TMP/img16" --model "tiny_vq,image_size=16,patch_size=4,width=32,heads=1" \
  --batch 2 --disc 0 --warmup 1 --schedule-steps $STEPS --log-every 1 --grid-every 0 --ckpt-every 1 --threads 1

G=tests/golden/titok
if "$B/convert" "$G/tiny_vae.safetensors" "$TMP/vae.st" --quiet >"$TMP/out" 2>&1; then
  prev=0
  kill_run generator "$B/train_generator" --images "$TMP/img32" --labels "$TMP/labels.txt" --tokenizer "$TMP/vae.st" \
    --model dit_tiny --batch 3 --warmup 1 --schedule-steps $STEPS --log-every 1 --grid-every 0 --ckpt-every 1 --threads 1
else
  fail "generator: convert the tiny VAE tokenizer" "$(last_line "$TMP/out")"
fi
