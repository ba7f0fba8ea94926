#!/usr/bin/env bash
# Command-line checks of build/train_tokenizer (examples/train_tokenizer.c) on a tiny model
# (16x16 images, patch 4, width 32) and eight 16x16 PNGs made here (python3, standard library):
#  1. a run writes the progress lines, log.csv (header + one row per logged step), the grid PNGs,
#     the checkpoint and model.safetensors, which build/tokenize and build/reconstruct load; VAE
#     and legacy (pixel decoder) models train too; captions are checked;
#  2. resume is exact: 4 steps straight (1 thread) and 2 steps + resume 2 (2 threads) give
#     byte-identical model.safetensors and checkpoints and the same logged losses; --export of the
#     final checkpoint is model.safetensors byte for byte;
#  3. SIGINT / SIGTERM after the first progress line: exit 0 after the current step with a
#     loadable checkpoint that resumes; kill -9 at several moments leaves no checkpoint or a
#     loadable one; a non-finite loss stops with status 1 and keeps the last checkpoint;
#  4. bad inputs (folders, image sizes, captions, checkpoints) exit 1 and bad command lines exit 2,
#     with a message naming the culprit and no file of an earlier run changed;
#  5. LPIPS and GAN runs (tiny networks); the GAN run resumes exactly, discriminator included.
# Run from the repository root: tests/cli_train.sh build   (one PASS/FAIL line per check)
set -u
B=${1:-build}
TT=$B/train_tokenizer
TMP=$(mktemp -d "${TMPDIR:-/tmp}/textok_train.XXXXXX") || { echo "FAIL train: mktemp"; exit 1; }
trap 'rm -rf "$TMP"' EXIT

pass() { echo "PASS train $1"; }
fail() { echo "FAIL train $1: $2"; }
last_line() { tail -n 1 "$1" 2>/dev/null | tr -d '\n'; }

for t in train_tokenizer tokenize reconstruct; do
  [ -x "$B/$t" ] || { fail "build" "$B/$t is not built (run make)"; exit 0; }
done
command -v python3 >/dev/null || { fail "test images" "python3 is needed to write the test PNGs"; exit 0; }

# ---- test images: tests/write_pngs.py (16 grey levels per pixel, img3 RGBA) ----------------------
I=$TMP/images
mkdir -p "$I" "$TMP/mixed" "$TMP/empty"
if ! python3 tests/write_pngs.py "$I" 16 16 8 --step 16 --rgba 3 || ! python3 tests/write_pngs.py "$TMP/mixed" 16 16 3 --step 16 --rgba 3 ||
   ! python3 tests/write_pngs.py "$TMP/mixed" 20 16 1 3 --step 16 --rgba 3; then
  fail "test images" "python3 could not write them"; exit 0
fi
echo "not an image, ignored" >"$I/README.txt"
IMG0=$I/img0.png

MODEL="tiny_vq,image_size=16,patch_size=4,width=32,heads=1"
# the common flags: no LPIPS / GAN (the tiny preset's would be on), a schedule that does not
# depend on --steps, so that a run split in two takes the same steps
COMMON=(--images "$I" --batch 4 --disc 0 --warmup 1 --schedule-steps 4 --log-every 1 --threads 2)
BASE=("${COMMON[@]}" --model "$MODEL")

# ok WHAT CMD...: the command must succeed (stdout in $TMP/out, stderr in $TMP/err)
ok() {
  local what=$1; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then pass "$what"; return 0; fi
  fail "$what" "exit $? ($(last_line "$TMP/err"))"; return 1
}
# says WHAT FILE TEXT: FILE contains the fixed string TEXT
says() {
  if grep -qF -- "$3" "$2"; then pass "$1"; else fail "$1" "no '$3' in $(basename "$2"): $(last_line "$2")"; fi
}
# same WHAT A B: byte-identical files
same() {
  if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$2 and $3 differ"; fi
}
is_png() { [ "$(head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }
# loads WHAT MODEL: build/tokenize and build/reconstruct accept the model file
loads() {
  if "$B/tokenize" --weights "$2" --image "$IMG0" --out "$TMP/tok" >"$TMP/lout" 2>&1 &&
     "$B/reconstruct" --weights "$2" --image "$IMG0" --out "$TMP/rec.png" >>"$TMP/lout" 2>&1; then pass "$1"
  else fail "$1" "$(last_line "$TMP/lout")"; fi
}
# ckpt_loads WHAT CKPT: the checkpoint loads in full (--export goes through textok_trainer_load)
ckpt_loads() {
  rm -f "$TMP/exported.safetensors"
  if "$TT" --resume "$2" --export "$TMP/exported.safetensors" >"$TMP/lout" 2>&1 &&
     "$B/tokenize" --weights "$TMP/exported.safetensors" --image "$IMG0" --out "$TMP/tok" >>"$TMP/lout" 2>&1; then
    pass "$1"
  else fail "$1" "$(last_line "$TMP/lout")"; fi
}
# refuses WHAT STATUS "PATTERN|..." CMD...: exit STATUS, and stderr holds every |-separated string
# TEXTOK_ERROR_TABLE=FILE (tests/error_table.sh): every refusal's case, exit status and message
note_refusal() {
  [ -n "${TEXTOK_ERROR_TABLE:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "cli_train.sh" "$1" "$2" "$(grep -v '^usage:' "$3" | tr '\n' ' ' | sed 's/ *$//')" >>"$TEXTOK_ERROR_TABLE"
}
refuses() {
  local what=$1 want=$2 patterns=$3 rc p; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?
  note_refusal "$what" $rc "$TMP/err"
  if [ $rc -ne "$want" ]; then fail "$what" "exit $rc, expected $want ($(last_line "$TMP/err"))"; return; fi
  local IFS='|'
  for p in $patterns; do
    if ! grep -qF -- "$p" "$TMP/err"; then fail "$what" "stderr does not mention '$p': $(last_line "$TMP/err")"; return; fi
  done
  pass "$what"
}
# wait_line FILE PATTERN: wait up to 20 s for a line matching PATTERN
wait_line() {
  local i
  for i in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
rows() { tail -n +2 "$1" 2>/dev/null | wc -l | tr -d ' '; }

# ---- 1. a run and its outputs ------------------------------------------------------------------
R=$TMP/run
if ok "train 6 steps" "$TT" "${BASE[@]}" --out "$R" --steps 6 --grid-every 3 --ckpt-every 3; then
  n=$(grep -c '^step [0-9]*/6 .*recon .*quant .*it/s .*ETA' "$TMP/out")
  if [ "$n" -eq 6 ]; then pass "a progress line per step"; else fail "a progress line per step" "$n lines"; fi
  says "says where the model went" "$TMP/out" "$R/model.safetensors"
  says "notes the dropped alpha channel" "$TMP/err" "alpha"
  says "notes the skipped non-image file" "$TMP/out" "1 other files skipped"
  if [ "$(head -n 1 "$R/log.csv")" = "step,recon,perceptual,quantizer,kl,gen,total,hinge,lecam,d_total,grad_norm,disc_grad_norm,lr,disc_lr,logits_real,logits_fake,gan_on,elapsed_s" ] &&
     [ "$(rows "$R/log.csv")" -eq 6 ] && [ "$(tail -n 1 "$R/log.csv" | cut -d, -f1)" = 6 ]; then pass "log.csv: header and 6 rows"
  else fail "log.csv: header and 6 rows" "$(head -n 1 "$R/log.csv"), $(rows "$R/log.csv") rows"; fi
  if is_png "$R/recon_3.png" && is_png "$R/recon_6.png"; then pass "grids recon_3.png and recon_6.png"
  else fail "grids recon_3.png and recon_6.png" "missing or not PNG: $(ls "$R" | tr '\n' ' ')"; fi
  if [ -s "$R/ckpt.safetensors" ]; then pass "checkpoint written"; else fail "checkpoint written" "no $R/ckpt.safetensors"; fi
  loads "model.safetensors loads in tokenize and reconstruct" "$R/model.safetensors"
  ckpt_loads "the checkpoint loads" "$R/ckpt.safetensors"
  left=$(find "$R" -name '*.tmp' | head -n 1)
  if [ -z "$left" ]; then pass "no .tmp files left"; else fail "no .tmp files left" "$left"; fi
fi
if ok "train a VAE" "$TT" "${BASE[@]}" --model "tiny_vae,image_size=16,patch_size=4,width=32,heads=1" --out "$TMP/vae" --steps 3 --recon-l1 --kl 0.01; then
  says "VAE: the KL is in the progress line" "$TMP/out" " kl "
  loads "VAE: model.safetensors loads" "$TMP/vae/model.safetensors"
fi
if ok "train a legacy model (pixel decoder)" "$TT" "${BASE[@]}" --model "tiny_legacy,image_size=16,width=32" --batch 2 --out "$TMP/legacy" --steps 2 --ema 0; then
  says "legacy, --ema 0: the raw weights are saved" "$TMP/out" "raw weights"
  loads "legacy: model.safetensors loads" "$TMP/legacy/model.safetensors"
fi
printf 'img0.png\ta red thing\r\n\nimg1.png\tsecond caption\timg with a tab\nimg7.png\t\n' >"$TMP/captions.tsv"
if ok "captions are read" "$TT" "${BASE[@]}" --out "$TMP/cap" --steps 1 --captions "$TMP/captions.tsv"; then
  says "captions: counted" "$TMP/out" "captions: 3 of 8 images"
fi

# ---- 2. exact resume ---------------------------------------------------------------------------
S4=$TMP/straight S2=$TMP/split
if ok "resume: 4 steps straight (1 thread)" "$TT" "${BASE[@]}" --threads 1 --out "$S4" --steps 4 &&
   ok "resume: first 2 steps" "$TT" "${BASE[@]}" --out "$S2" --steps 2 &&
   ok "resume: 2 more steps from the checkpoint" "$TT" "${BASE[@]}" --out "$S2" --steps 4 --resume "$S2/ckpt.safetensors"; then
  says "resume: says from which step" "$TMP/out" "resumed: step 2"
  same "resume: model.safetensors is byte-identical" "$S4/model.safetensors" "$S2/model.safetensors"
  same "resume: the checkpoint is byte-identical" "$S4/ckpt.safetensors" "$S2/ckpt.safetensors"
  if diff <(cut -d, -f1-17 "$S4/log.csv") <(cut -d, -f1-17 "$S2/log.csv") >/dev/null; then pass "resume: the same logged losses"
  else fail "resume: the same logged losses" "log.csv differ"; fi
  if ok "export the final checkpoint" "$TT" --resume "$S4/ckpt.safetensors" --export "$TMP/export.safetensors"; then
    same "export: equals model.safetensors" "$S4/model.safetensors" "$TMP/export.safetensors"
  fi
fi
# the VAE draws its posterior samples from the same RNG: a resume must continue that stream too
VAE=(--model "tiny_vae,image_size=16,patch_size=4,width=32,heads=1" --kl 0.01)
if ok "resume VAE: 3 steps straight" "$TT" "${BASE[@]}" "${VAE[@]}" --out "$TMP/vae3" --steps 3 &&
   ok "resume VAE: 1 step" "$TT" "${BASE[@]}" "${VAE[@]}" --out "$TMP/vae12" --steps 1 &&
   ok "resume VAE: 2 more" "$TT" "${BASE[@]}" "${VAE[@]}" --out "$TMP/vae12" --steps 3 --resume "$TMP/vae12/ckpt.safetensors"; then
  same "resume VAE: the checkpoint is byte-identical" "$TMP/vae3/ckpt.safetensors" "$TMP/vae12/ckpt.safetensors"
fi
# a resume from a checkpoint with log rows after it (a run that died later) drops those rows
if [ -f "$S2/ckpt.safetensors" ]; then
  mkdir -p "$TMP/relog" && cp "$R/log.csv" "$TMP/relog/log.csv" 2>/dev/null
  if ok "resume: log rows after the checkpoint are dropped" "$TT" "${BASE[@]}" --out "$TMP/relog" --steps 5 --resume "$S2/ckpt.safetensors"; then
    # the old log's steps 1-4 are kept, its 5 and 6 dropped, then this run's step 5
    got=$(tail -n +2 "$TMP/relog/log.csv" | cut -d, -f1 | tr '\n' ' ')
    if [ "$got" = "1 2 3 4 5 " ]; then pass "resume: log steps are 1 2 3 4 5"; else fail "resume: log steps are 1 2 3 4 5" "$got"; fi
  fi
fi

# ---- 3. signals, crashes, non-finite losses ----------------------------------------------------
LONG=(--steps 1000000 --schedule-steps 1000000 --ckpt-every 1000000 --grid-every 0)
for sig in INT TERM; do
  D=$TMP/sig$sig
  "$TT" "${BASE[@]}" "${LONG[@]}" --out "$D" >"$TMP/sig.out" 2>"$TMP/sig.err" &
  pid=$!
  if ! wait_line "$TMP/sig.out" '^step '; then kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    fail "SIG$sig" "no progress line within 20 s"; continue; fi
  kill -$sig $pid; wait $pid; rc=$?
  if [ $rc -eq 0 ]; then pass "SIG$sig: exit 0"; else fail "SIG$sig: exit 0" "exit $rc ($(last_line "$TMP/sig.err"))"; fi
  says "SIG$sig: says where the checkpoint is" "$TMP/sig.out" "SIG$sig: stopped after step"
  ckpt_loads "SIG$sig: the checkpoint loads" "$D/ckpt.safetensors"
  if [ $sig = INT ]; then
    n=$(sed -n 's/.*stopped after step \([0-9]*\);.*/\1/p' "$TMP/sig.out")
    if [ -n "$n" ] && ok "SIGINT: resume 2 more steps" "$TT" "${BASE[@]}" --out "$D" --steps $((n + 2)) --resume "$D/ckpt.safetensors"; then
      if [ "$(tail -n 1 "$D/log.csv" | cut -d, -f1)" = $((n + 2)) ]; then pass "SIGINT: resumed to step $((n + 2))"
      else fail "SIGINT: resumed to step $((n + 2))" "last log row: $(tail -n 1 "$D/log.csv")"; fi
    fi
  fi
done

# kill -9 at several moments, checkpointing every step: each time there is no checkpoint or a
# loadable one (the next round resumes from it). With batch 1 the save is a good part of each
# step, so some kills land in the middle of a checkpoint write.
K=$TMP/kill
for delay in 0.05 0.15 0.25 0.35 0.45 0.55; do
  if [ -f "$K/ckpt.safetensors" ]; then res=(--resume "$K/ckpt.safetensors"); else res=(); fi
  "$TT" "${BASE[@]}" --batch 1 --steps 1000000 --schedule-steps 1000000 --ckpt-every 1 --grid-every 0 --out "$K" "${res[@]}" >/dev/null 2>&1 &
  pid=$!
  sleep $delay
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  if [ -f "$K/ckpt.safetensors" ]; then ckpt_loads "kill -9 after ${delay}s: the checkpoint loads" "$K/ckpt.safetensors"
  else pass "kill -9 after ${delay}s: no checkpoint yet"; fi
done

N=$TMP/nan
refuses "non-finite loss: exit 1" 1 "not finite|the last checkpoint, step|is kept" \
  "$TT" "${BASE[@]}" --out "$N" --steps 10 --lr 1e30 --ckpt-every 1
ckpt_loads "non-finite loss: the last checkpoint loads" "$N/ckpt.safetensors"
if [ ! -e "$N/model.safetensors" ]; then pass "non-finite loss: no model.safetensors"; else fail "non-finite loss: no model.safetensors" "it was written"; fi

# ---- 4. bad inputs and command lines -----------------------------------------------------------
cp "$R/ckpt.safetensors" "$TMP/good.ckpt" 2>/dev/null
head -c 5000 "$TMP/good.ckpt" >"$TMP/truncated.ckpt"
snapshot() { (cd "$R" && md5sum ckpt.safetensors log.csv model.safetensors 2>/dev/null); }
before=$(snapshot)
# unchanged WHAT: the files of the run in $R are as they were
unchanged() { if [ "$(snapshot)" = "$before" ]; then pass "$1: the earlier run is unchanged"; else fail "$1: the earlier run is unchanged" "files in $R changed"; fi; }

refuses "missing image folder" 1 "$TMP/nope" "$TT" "${BASE[@]}" --images "$TMP/nope" --out "$TMP/o1" --steps 1
refuses "empty image folder" 1 "no images|$TMP/empty" "$TT" "${BASE[@]}" --images "$TMP/empty" --out "$TMP/o1" --steps 1
refuses "mixed image sizes" 1 "img3.png|20x16|16x16" "$TT" "${BASE[@]}" --images "$TMP/mixed" --out "$TMP/o1" --steps 1
refuses "images of another size than the model" 1 "img0.png|16x16|32x32" "$TT" "${BASE[@]}" --model tiny_vq --out "$TMP/o1" --steps 1
mkdir -p "$TMP/notpng" && cp "$IMG0" "$TMP/notpng/" && echo "not a png" >"$TMP/notpng/fake.png"
refuses "a text file named .png" 1 "fake.png" "$TT" "${BASE[@]}" --images "$TMP/notpng" --out "$TMP/o1" --steps 1
printf 'img0.png\tfine\nghost.png\tnot there\n' >"$TMP/cap_ghost.tsv"
refuses "captions naming an absent file" 1 "cap_ghost.tsv:2|ghost.png" "$TT" "${BASE[@]}" --out "$TMP/o1" --steps 1 --captions "$TMP/cap_ghost.tsv"
printf 'img0.png\tfine\nimg1.png no tab here\n' >"$TMP/cap_notab.tsv"
refuses "captions line without a tab" 1 "cap_notab.tsv:2|tab" "$TT" "${BASE[@]}" --out "$TMP/o1" --steps 1 --captions "$TMP/cap_notab.tsv"
printf 'img0.png\tone\nimg0.png\ttwo\n' >"$TMP/cap_dup.tsv"
refuses "captions: two for one file" 1 "cap_dup.tsv:2|img0.png|line 1" "$TT" "${BASE[@]}" --out "$TMP/o1" --steps 1 --captions "$TMP/cap_dup.tsv"
refuses "captions file missing" 1 "$TMP/nocap.tsv" "$TT" "${BASE[@]}" --out "$TMP/o1" --steps 1 --captions "$TMP/nocap.tsv"
if [ ! -e "$TMP/o1" ]; then pass "bad inputs: no output folder made"; else fail "bad inputs: no output folder made" "$TMP/o1 exists"; fi

refuses "resume from a truncated checkpoint" 1 "truncated.ckpt" "$TT" "${BASE[@]}" --out "$R" --steps 8 --resume "$TMP/truncated.ckpt"
unchanged "truncated checkpoint"
refuses "resume with another model config" 1 "good.ckpt|config" \
  "$TT" "${BASE[@]}" --model "tiny_vq,image_size=16,patch_size=4,width=64,heads=1" --out "$R" --steps 8 --resume "$TMP/good.ckpt"
unchanged "another config"
refuses "resume from a model file" 1 "not a training checkpoint" "$TT" "${BASE[@]}" --out "$R" --steps 8 --resume "$R/model.safetensors"
refuses "resume without the EMA the checkpoint has" 1 "--ema" "$TT" "${BASE[@]}" --out "$R" --steps 8 --resume "$TMP/good.ckpt" --ema 0
if ok "--init from a model file" "$TT" "${COMMON[@]}" --init "$R/model.safetensors" --out "$TMP/init" --steps 2; then
  says "--init: says so" "$TMP/out" "(from --init)"
fi
refuses "a fresh run into a folder with a checkpoint" 1 "already holds a checkpoint|--resume" "$TT" "${BASE[@]}" --out "$R" --steps 8
unchanged "fresh run into it"
refuses "--init with a checkpoint" 1 "training checkpoint" "$TT" "${COMMON[@]}" --init "$TMP/good.ckpt" --out "$TMP/o2" --steps 1
refuses "--steps below the checkpoint's step" 2 "--steps 3|step 6" "$TT" "${BASE[@]}" --out "$R" --steps 3 --resume "$TMP/good.ckpt"

refuses "usage: unknown flag" 2 "--bogus|usage:" "$TT" "${BASE[@]}" --out "$TMP/o3" --steps 1 --bogus 1
refuses "usage: no --images" 2 "--images" "$TT" --out "$TMP/o3" --steps 1
refuses "usage: no --out" 2 "--out" "$TT" --images "$I" --steps 1
refuses "usage: no --steps" 2 "--steps" "$TT" --images "$I" --out "$TMP/o3"
refuses "usage: --steps 0" 2 "--steps" "$TT" "${BASE[@]}" --out "$TMP/o3" --steps 0
refuses "usage: --batch abc" 2 "--batch|abc" "$TT" "${BASE[@]}" --out "$TMP/o3" --steps 1 --batch abc
refuses "usage: --lr -1" 2 "--lr" "$TT" "${BASE[@]}" --out "$TMP/o3" --steps 1 --lr -1
refuses "usage: a flag without its value" 2 "--seed" "$TT" "${BASE[@]}" --out "$TMP/o3" --steps 1 --seed
refuses "usage: unknown model" 2 "bogus|tiny_vq" "$TT" "${BASE[@]}" --model bogus --out "$TMP/o3" --steps 1
refuses "usage: unknown model field" 2 "colour" "$TT" "${BASE[@]}" --model tiny_vq,colour=3 --out "$TMP/o3" --steps 1
refuses "usage: inconsistent model" 2 "patch_size" "$TT" "${BASE[@]}" --model tiny_vq,image_size=16,patch_size=5 --out "$TMP/o3" --steps 1
refuses "usage: --model and --init" 2 "--init" "$TT" "${BASE[@]}" --init "$R/model.safetensors" --out "$TMP/o3" --steps 1
refuses "usage: unknown preset" 2 "nope|textok" "$TT" "${BASE[@]}" --preset nope --out "$TMP/o3" --steps 1
refuses "usage: --perceptual without --lpips" 2 "--lpips" "$TT" "${BASE[@]}" --perceptual 0.1 --out "$TMP/o3" --steps 1
refuses "usage: --disc-arch 8,2" 2 "--disc-arch" "$TT" "${BASE[@]}" --disc-arch 8,2 --out "$TMP/o3" --steps 1
refuses "usage: --export without --resume" 2 "--export" "$TT" --export "$TMP/x.safetensors"
if [ ! -e "$TMP/o3" ]; then pass "usage errors: no output folder made"; else fail "usage errors: no output folder made" "$TMP/o3 exists"; fi
if "$TT" --help >"$TMP/out" 2>&1 && grep -q -- "--resume CKPT" "$TMP/out" && grep -q -- "--recon-l1" "$TMP/out"; then
  pass "--help prints the usage, exit 0"
else fail "--help prints the usage, exit 0" "$(last_line "$TMP/out")"; fi

# ---- 5. the loss networks: a small discriminator, the tiny LPIPS golden --------------------------
GAN=(--disc 0.1 --disc-start 1 --disc-arch 8,2,4,2 --lecam 0.1)
G4=$TMP/gan4 G2=$TMP/gan2
if ok "GAN: 4 steps straight" "$TT" "${BASE[@]}" "${GAN[@]}" --out "$G4" --steps 4 &&
   ok "GAN: 2 steps" "$TT" "${BASE[@]}" "${GAN[@]}" --out "$G2" --steps 2 &&
   ok "GAN: resume 2 more" "$TT" "${BASE[@]}" "${GAN[@]}" --out "$G2" --steps 4 --resume "$G2/ckpt.safetensors"; then
  says "GAN: the discriminator loss is in the progress line" "$TMP/out" " disc "
  if [ "$(tail -n 1 "$G4/log.csv" | cut -d, -f17)" = 1 ] && [ "$(sed -n 2p "$G4/log.csv" | cut -d, -f17)" = 0 ]; then
    pass "GAN: off at step 1, on from --disc-start"
  else fail "GAN: off at step 1, on from --disc-start" "gan_on column: $(cut -d, -f17 "$G4/log.csv" | tr '\n' ' ')"; fi
  same "GAN: resume is byte-identical (discriminator state in the checkpoint)" "$G4/ckpt.safetensors" "$G2/ckpt.safetensors"
  same "GAN: model.safetensors is byte-identical" "$G4/model.safetensors" "$G2/model.safetensors"
  refuses "GAN: resume with another discriminator" 1 "discriminator" \
    "$TT" "${BASE[@]}" "${GAN[@]}" --disc-arch 8,2,4,1 --out "$G2" --steps 6 --resume "$G2/ckpt.safetensors"
fi
refuses "GAN: a discriminator the image size does not fit" 1 "--disc-arch 8,5,4,2|16x16" \
  "$TT" "${BASE[@]}" "${GAN[@]}" --disc-arch 8,5,4,2 --out "$TMP/o4" --steps 1
LP=tests/golden/nets/lpips_tiny.safetensors
if [ -f "$LP" ]; then
  if ok "LPIPS: train with --perceptual" "$TT" "${BASE[@]}" --perceptual 0.1 --lpips "$LP" --out "$TMP/lpips" --steps 2; then
    says "LPIPS: in the progress line" "$TMP/out" " lpips "
    v=$(tail -n 1 "$TMP/lpips/log.csv" | cut -d, -f3)
    if awk -v v="$v" 'BEGIN { exit !(v > 0) }'; then pass "LPIPS: perceptual loss logged"; else fail "LPIPS: perceptual loss logged" "perceptual = $v"; fi
  fi
else
  fail "LPIPS" "$LP is missing (tools/gen_golden_nets.py writes it)"
fi
refuses "LPIPS: a missing weights file" 1 "$TMP/nolpips.safetensors" \
  "$TT" "${BASE[@]}" --perceptual 0.1 --lpips "$TMP/nolpips.safetensors" --out "$TMP/o4" --steps 1
refuses "LPIPS: a TiTok model as LPIPS weights" 1 "model.safetensors" \
  "$TT" "${BASE[@]}" --perceptual 0.1 --lpips "$R/model.safetensors" --out "$TMP/o4" --steps 1
if [ ! -e "$TMP/o4" ]; then pass "loss network errors: no output folder made"; else fail "loss network errors: no output folder made" "$TMP/o4 exists"; fi
exit 0
