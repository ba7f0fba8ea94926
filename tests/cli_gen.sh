#!/usr/bin/env bash
# Command-line checks of the generators: build/convert on official-named DiT / ImageBert / UViT
# files, build/generate and build/train_generator, with tiny models:
#  1. tools/make_generator_checkpoints.py --tiny writes seeded random checkpoints with the
#     official names (DiT .pt, a DiT train.py checkpoint {"model","ema","opt","args"}, ImageBert and
#     UViT .bin and .safetensors) and reference outputs of tools/dit_ref.py / tools/maskgit_ref.py
#     on fixed inputs (needs python3-torch: skipped without it). convert must take each of them
#     (the .pt, .safetensors and train.py forms of a DiT give byte-identical files) and
#     generate --forward must reproduce the references (relative L2 <= 1e-4);
#  2. generate with the tiny golden tokenizers (tests/golden/titok: tiny_vq for MaskGIT, tiny_vae
#     for a 1D DiT): a grid PNG and the raw ids / latents, byte-identical for TEXTOK_THREADS=1 and
#     2 and for a repeated run; a 2D DiT runs without a tokenizer (--out-latents);
#  3. refusals: a generator whose token space is not the tokenizer's (both configs named), a class
#     out of range, steps <= 0, a nonsense guidance scale, a corrupt generator file, a tokenizer as
#     generator; exit 2 for command lines, 1 for files; no output left behind;
#  4. train_generator: a few MaskGIT and DiT steps on 32x32 images through the tiny tokenizers;
#     the token file is cached; 4 steps straight equal 2 + resume 2 (model and checkpoint bytes);
#     the trained model generates.
# Run from the repository root: tests/cli_gen.sh build   (one PASS/FAIL line per check)
set -u
B=${1:-build}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/textok_gen.XXXXXX") || { echo "FAIL gen: mktemp"; exit 1; }
trap 'rm -rf "$TMP"' EXIT

pass() { echo "PASS gen $1"; }
fail() { echo "FAIL gen $1: $2"; }
last_line() { tail -n 1 "$1" 2>/dev/null | tr -d '\n'; }
ok() {
  local what=$1; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then pass "$what"; return 0; fi
  fail "$what" "exit $? ($(last_line "$TMP/err"))"; return 1
}
same() {   # WHAT A B: byte-identical files
  if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$2 and $3 differ"; fi
}
close() {  # WHAT A REF [npycmp flags]
  local what=$1 a=$2 b=$3; shift 3
  if "$B/npycmp" "$a" "$b" "$@" >"$TMP/cmp" 2>&1; then pass "$what ($(last_line "$TMP/cmp"))"
  else fail "$what" "$(last_line "$TMP/cmp")"; fi
}
says() {   # WHAT FILE TEXT
  if grep -qF -- "$3" "$2"; then pass "$1"; else fail "$1" "no '$3' in $(basename "$2"): $(last_line "$2")"; fi
}
# refuses WHAT STATUS MENTION "FILES" CMD...: exit STATUS, MENTION on stderr, FILES not left
# TEXTOK_ERROR_TABLE=FILE (tests/error_table.sh): every refusal's case, exit status and message
note_refusal() {
  [ -n "${TEXTOK_ERROR_TABLE:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "cli_gen.sh" "$1" "$2" "$(grep -v '^usage:' "$3" | tr '\n' ' ' | sed 's/ *$//')" >>"$TEXTOK_ERROR_TABLE"
}
refuses() {
  local what=$1 want=$2 mention=$3 files=$4 rc f; shift 4
  for f in $files; do rm -f "$f" "$f.tmp"; done
  "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?
  note_refusal "$what" $rc "$TMP/err"
  if [ $rc -eq 0 ]; then fail "$what" "exit 0, expected a failure"; return; fi
  if [ "$want" != nz ] && [ $rc -ne "$want" ]; then fail "$what" "exit $rc, expected $want ($(last_line "$TMP/err"))"; return; fi
  if ! grep -qF -- "$mention" "$TMP/err"; then fail "$what" "stderr does not mention '$mention': $(last_line "$TMP/err")"; return; fi
  for f in $files; do
    if [ -e "$f" ] || [ -e "$f.tmp" ]; then fail "$what" "left $f behind"; return; fi
  done
  pass "$what"
}

for t in convert generate train_generator npycmp; do
  [ -x "$B/$t" ] || { fail "build" "$B/$t is not built (run make)"; exit 0; }
done

# ---- the tiny golden tokenizers ----------------------------------------------------------------
G=tests/golden/titok
ok "convert tokenizer tiny_vq" "$B/convert" "$G/tiny_vq.safetensors" "$TMP/vq.st" --quiet || exit 0
ok "convert tokenizer tiny_vae" "$B/convert" "$G/tiny_vae.safetensors" "$TMP/vae.st" --quiet || exit 0

# ---- 1. official-named checkpoints through convert, and the references ------------------------
H=$TMP/ckpt
have_torch=0
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  if /usr/bin/python3 tools/make_generator_checkpoints.py --tiny "$H" >"$TMP/gen.log" 2>&1; then
    have_torch=1; pass "tiny official-named checkpoints and references"
  else fail "tiny official-named checkpoints" "$(last_line "$TMP/gen.log")"; fi
else
  echo "gen: python3-torch is not installed: the official-named conversions are skipped"
fi
if [ $have_torch = 1 ]; then
  ok "convert dit_tiny.pt (2D DiT, --heads 4)" "$B/convert" "$H/dit_tiny.pt" "$TMP/dit.st" --heads 4 &&
    says "convert dit_tiny: config reported" "$TMP/out" "2D latents 8x8 x 4 channels, patch 2"
  ok "convert dit_tiny.safetensors" "$B/convert" "$H/dit_tiny.safetensors" "$TMP/dit_s.st" --heads 4 --quiet &&
    same "dit_tiny: .safetensors and .pt convert to the same file" "$TMP/dit.st" "$TMP/dit_s.st"
  ok "convert dit_tiny_train.pt (train.py checkpoint)" "$B/convert" "$H/dit_tiny_train.pt" "$TMP/dit_t.st" --heads 4 &&
    says "train.py checkpoint: the EMA weights are taken" "$TMP/out" "state_dict under 'ema'" &&
    same "dit_tiny: the train.py checkpoint's EMA is the plain state_dict" "$TMP/dit.st" "$TMP/dit_t.st"
  ok "convert dit_tiny_1d.pt (--dit-1d)" "$B/convert" "$H/dit_tiny_1d.pt" "$TMP/dit1d.st" --heads 4 --dit-1d
  for m in imagebert_tiny uvit_tiny; do
    ok "convert $m.bin" "$B/convert" "$H/$m.bin" "$TMP/$m.st" --heads 4 &&
      ok "convert $m.safetensors" "$B/convert" "$H/$m.safetensors" "$TMP/${m}_s.st" --heads 4 --quiet &&
      same "$m: .bin and .safetensors convert to the same file" "$TMP/$m.st" "$TMP/${m}_s.st"
    ok "generate --forward $m" "$B/generate" --generator "$TMP/$m.st" --forward "$H/${m}_in.safetensors" --out "$TMP/$m.npy" &&
      close "$m logits = maskgit_ref" "$TMP/$m.npy" "$H/${m}_ref.safetensors:logits"
  done
  for m in dit_tiny:dit dit_tiny_1d:dit1d; do
    n=${m%%:*} f=${m##*:}
    ok "generate --forward $n" "$B/generate" --generator "$TMP/$f.st" --forward "$H/${n}_in.safetensors" --out "$TMP/$n.npy" &&
      close "$n forward = dit_ref" "$TMP/$n.npy" "$H/${n}_ref.safetensors:out"
    ok "generate --forward $n --cfg 4" "$B/generate" --generator "$TMP/$f.st" --forward "$H/${n}_in.safetensors" --out "$TMP/${n}_cfg.npy" --cfg 4 &&
      close "$n forward_with_cfg = dit_ref" "$TMP/${n}_cfg.npy" "$H/${n}_ref.safetensors:out_cfg"
  done
  refuses "convert: a tiny DiT without --heads" 1 "give --heads N" "$TMP/x.st" "$B/convert" "$H/dit_tiny.pt" "$TMP/x.st"
  refuses "convert: a 1D DiT read as 2D" 1 "--dit-1d" "$TMP/x.st" "$B/convert" "$H/dit_tiny_1d.pt" "$TMP/x.st" --heads 4
  refuses "convert: --heads that does not divide the width" 1 "--heads 5" "$TMP/x.st" "$B/convert" "$H/imagebert_tiny.bin" "$TMP/x.st" --heads 5
  refuses "convert: --dit-1d on a MaskGIT" 1 "--dit-1d" "$TMP/x.st" "$B/convert" "$H/uvit_tiny.bin" "$TMP/x.st" --heads 4 --dit-1d
  # a tensor with the wrong shape and a missing one: named, nothing written
  if /usr/bin/python3 - "$H" <<'EOF' 2>"$TMP/py.err"
import sys, torch
h = sys.argv[1]
sd = torch.load(h + "/dit_tiny.pt")
sd["blocks.1.mlp.fc2.weight"] = sd["blocks.1.mlp.fc2.weight"][:, :100].clone()
torch.save(sd, h + "/bad_shape.pt")
sd = torch.load(h + "/imagebert_tiny.bin")
del sd["model.encoder.layer.1.output.dense.bias"]
torch.save(sd, h + "/bad_missing.bin")
EOF
  then
    refuses "convert: a mis-shaped tensor is named" 1 "'blocks.1.mlp.fc2.weight' has shape [64, 100]" "$TMP/x.st" \
      "$B/convert" "$H/bad_shape.pt" "$TMP/x.st" --heads 4
    refuses "convert: a missing tensor is named" 1 "missing tensor 'model.encoder.layer.1.output.dense.bias'" "$TMP/x.st" \
      "$B/convert" "$H/bad_missing.bin" "$TMP/x.st" --heads 4
  else fail "bad checkpoints" "$(last_line "$TMP/py.err")"; fi
fi

# ---- 2. generate with tiny generators and tokenizers -------------------------------------------
# The generators: the converted official-named ones when torch is here, else fresh ones from
# train_generator (below) would do; the determinism checks need one of each kind.
if [ $have_torch = 1 ]; then
  MG=$TMP/imagebert_tiny.st DIT1=$TMP/dit1d.st DIT2=$TMP/dit.st UV=$TMP/uvit_tiny.st
  for t in 1 2; do
    ok "generate MaskGIT (TEXTOK_THREADS=$t)" env TEXTOK_THREADS=$t "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" \
      --class 3,7 -n 4 --seed 5 --out "$TMP/mg$t.png" --out-latents "$TMP/mg$t.npy"
    ok "generate DiT 1D (TEXTOK_THREADS=$t)" env TEXTOK_THREADS=$t "$B/generate" --tokenizer "$TMP/vae.st" --generator "$DIT1" \
      --class 1 -n 3 --steps 20 --cfg 3 --seed 5 --out "$TMP/dit$t.png" --out-latents "$TMP/dit$t.npy"
  done
  same "MaskGIT grid: 1 and 2 threads byte-identical" "$TMP/mg1.png" "$TMP/mg2.png"
  same "MaskGIT ids: 1 and 2 threads byte-identical" "$TMP/mg1.npy" "$TMP/mg2.npy"
  same "DiT grid: 1 and 2 threads byte-identical" "$TMP/dit1.png" "$TMP/dit2.png"
  same "DiT latents: 1 and 2 threads byte-identical" "$TMP/dit1.npy" "$TMP/dit2.npy"
  ok "generate DiT again (same seed)" "$B/generate" --tokenizer "$TMP/vae.st" --generator "$DIT1" \
      --class 1 -n 3 --steps 20 --cfg 3 --seed 5 --out "$TMP/dit3.png" --out-latents "$TMP/dit3.npy" &&
    same "DiT: a repeated run is byte-identical" "$TMP/dit1.npy" "$TMP/dit3.npy"
  ok "generate DiT, another seed" "$B/generate" --tokenizer "$TMP/vae.st" --generator "$DIT1" \
      --class 1 -n 3 --steps 20 --seed 6 --out-latents "$TMP/dit4.npy" &&
    if cmp -s "$TMP/dit1.npy" "$TMP/dit4.npy"; then fail "DiT: another seed, other samples" "identical"; else pass "DiT: another seed, other samples"; fi
  ok "generate DiT --ddim --eta 0.5" "$B/generate" --tokenizer "$TMP/vae.st" --generator "$DIT1" --class 2 --steps 10 --ddim --eta 0.5 --out "$TMP/ddim.png"
  ok "generate UViT MaskGIT, demo settings" "$B/generate" --tokenizer "$TMP/vq.st" --generator "$UV" --class 0 -n 2 \
      --maskgit-preset demo --guidance-decay constant --temperature 1 --out "$TMP/uv.png"
  ok "generate: the 2D DiT without a tokenizer (--out-latents)" "$B/generate" --generator "$DIT2" --class 4 -n 2 --steps 5 --out-latents "$TMP/d2.npy"
  if [ "$(head -c 8 "$TMP/mg1.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then pass "generate writes a PNG"
  else fail "generate writes a PNG" "$TMP/mg1.png"; fi

  # ---- 3. refusals -----------------------------------------------------------------------------
  refuses "a MaskGIT with a VAE tokenizer" 1 "does not match tokenizer" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vae.st" --generator "$MG" --class 1 --out "$TMP/r.png"
  refuses "a 1D DiT with a VQ tokenizer of other K" 1 "DiT over 6 tokens of 16 channels" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$DIT1" --class 1 --out "$TMP/r.png"
  refuses "a 2D DiT with a tokenizer" 1 "over 2D latents" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vae.st" --generator "$DIT2" --class 1 --out "$TMP/r.png"
  refuses "class out of range" 2 "--class" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" --class 10 --out "$TMP/r.png"
  refuses "negative class" 2 "--class" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" --class -1 --out "$TMP/r.png"
  refuses "no class for a class-conditional generator" 2 "class-conditional" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" --out "$TMP/r.png"
  refuses "--steps 0" 2 "--steps" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vae.st" --generator "$DIT1" --class 1 --steps 0 --out "$TMP/r.png"
  refuses "--steps -3" 2 "--steps" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" --class 1 --steps -3 --out "$TMP/r.png"
  refuses "--cfg nan" 2 "--cfg" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vae.st" --generator "$DIT1" --class 1 --cfg nan --out "$TMP/r.png"
  refuses "--cfg -2" 2 "--cfg" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" --class 1 --cfg -2 --out "$TMP/r.png"
  refuses "--cfg inf" 2 "--cfg" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" --class 1 --cfg inf --out "$TMP/r.png"
  refuses "-n 0" 2 "-n" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" --class 1 -n 0 --out "$TMP/r.png"
  refuses "a DiT flag for a MaskGIT" 2 "--ddim" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" --class 1 --ddim --out "$TMP/r.png"
  refuses "an unknown flag" 2 "unknown argument" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$MG" --class 1 --colour red --out "$TMP/r.png"
  head -c 3000 "$MG" >"$TMP/corrupt.st"
  refuses "a truncated generator file" 1 "corrupt.st" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$TMP/corrupt.st" --class 1 --out "$TMP/r.png"
  refuses "a tokenizer given as the generator" 1 "not a generator" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vq.st" --generator "$TMP/vq.st" --class 1 --out "$TMP/r.png"
  refuses "--out without --tokenizer" 2 "--tokenizer" "$TMP/r.png" \
    "$B/generate" --generator "$MG" --class 1 --out "$TMP/r.png"
fi

# ---- 4. train_generator ------------------------------------------------------------------------
command -v python3 >/dev/null || { fail "test images" "python3 is needed to write the test PNGs"; exit 0; }
I=$TMP/images
mkdir -p "$I"
python3 tests/write_pngs.py "$I" 32 32 6 || { fail "test images" "python3 could not write them"; exit 0; }
printf 'img0.png\t0\nimg1.png\t1\nimg2.png\t2\nimg3.png\t0\nimg4.png\t1\nimg5.png\t2\n' >"$TMP/labels.txt"
COMMON=(--images "$I" --labels "$TMP/labels.txt" --batch 3 --warmup 1 --schedule-steps 4 --log-every 1 --grid-every 2 --grid-n 2 --grid-steps 3)

for kind in maskgit dit; do
  if [ $kind = maskgit ]; then tokz=$TMP/vq.st; model=maskgit_tiny; else tokz=$TMP/vae.st; model=dit_tiny; fi
  A=$TMP/$kind.a C=$TMP/$kind.c
  ok "train_generator $kind: 4 steps" "$B/train_generator" "${COMMON[@]}" --tokenizer "$tokz" --model "$model" --steps 4 --out "$A" --threads 1 || continue
  says "train_generator $kind: progress line" "$TMP/out" "step 4/4  loss"
  says "train_generator $kind: tokens encoded" "$TMP/out" "6 images encoded"
  [ -s "$A/model.safetensors" ] && [ -s "$A/ckpt.safetensors" ] && [ -s "$A/samples_2.png" ] && [ -s "$A/samples_4.png" ] &&
    [ "$(wc -l <"$A/log.csv")" = 5 ] && pass "train_generator $kind: model, checkpoint, grids, 4 log rows" ||
    fail "train_generator $kind: outputs" "$(ls "$A" | tr '\n' ' ')"
  ok "train_generator $kind: 2 steps" "$B/train_generator" "${COMMON[@]}" --tokenizer "$tokz" --model "$model" --steps 2 --out "$C" --threads 2
  ok "train_generator $kind: resume to 4" "$B/train_generator" "${COMMON[@]}" --tokenizer "$tokz" --steps 4 --out "$C" \
      --resume "$C/ckpt.safetensors" --threads 2 &&
    says "train_generator $kind: the token file is reused" "$TMP/out" "cached; same inputs"
  same "train_generator $kind: resume = uninterrupted (model)" "$A/model.safetensors" "$C/model.safetensors"
  same "train_generator $kind: resume = uninterrupted (checkpoint)" "$A/ckpt.safetensors" "$C/ckpt.safetensors"
  same "train_generator $kind: resume = uninterrupted (log)" <(cut -d, -f1-8 "$A/log.csv") <(cut -d, -f1-8 "$C/log.csv")
  ok "train_generator $kind: --export" "$B/train_generator" --resume "$A/ckpt.safetensors" --export "$TMP/$kind.exp.st" &&
    same "train_generator $kind: --export = model.safetensors" "$A/model.safetensors" "$TMP/$kind.exp.st"
  ok "generate with the trained $kind" "$B/generate" --tokenizer "$tokz" --generator "$A/model.safetensors" --class 2 -n 2 --steps 4 --out "$TMP/$kind.png"
done
refuses "train_generator: a DiT on a VQ tokenizer" 1 "is VQ" "" \
  "$B/train_generator" "${COMMON[@]}" --tokenizer "$TMP/vq.st" --model dit_tiny --steps 2 --out "$TMP/bad1"
refuses "train_generator: a label for an unknown image" 1 "not one of the 6 images" "" \
  "$B/train_generator" --images "$I" --labels <(printf 'nope.png\t1\n') --tokenizer "$TMP/vq.st" --steps 2 --out "$TMP/bad2"
refuses "train_generator: no --tokenizer" 2 "--tokenizer" "" \
  "$B/train_generator" --images "$I" --steps 2 --out "$TMP/bad3"
refuses "train_generator: an existing checkpoint is not overwritten" 1 "already holds a checkpoint" "" \
  "$B/train_generator" "${COMMON[@]}" --tokenizer "$TMP/vq.st" --steps 4 --out "$TMP/maskgit.a"

# ---- 5. DiT-T2I: captions through the tiny T5 and the Unigram tokenizer ------------------------
# train_generator --captions makes a DiT-T2I (cross-attention to the caption's T5 states); it
# trains 4 steps, then generate --caption runs it, byte-identical at 1 and 2 threads.
T5G=tests/golden/t5
SPMG=tests/golden/spm/tokenizer.json
if [ -f "$T5G/t5_caption.safetensors" ] && [ -f "$SPMG" ]; then
  ok "convert --t5 t5_caption" "$B/convert" --t5 "$T5G/t5_caption.safetensors" "$TMP/t5.st" --t5-config "$T5G/t5_caption_config.json" &&
  printf 'img0.png\ta red square\nimg1.png\ta green field at dusk\nimg2.png\tstripes\nimg3.png\ta red square on grey\nimg4.png\tgreen\nimg5.png\tblue stripes and a dot\n' >"$TMP/caps.txt" &&
  ok "train_generator DiT-T2I: 4 steps on captions" "$B/train_generator" --images "$I" --captions "$TMP/caps.txt" \
      --text-encoder "$TMP/t5.st" --spm "$SPMG" --tokenizer "$TMP/vae.st" --model dit_tiny --batch 3 --warmup 1 \
      --schedule-steps 4 --log-every 1 --grid-every 4 --grid-n 2 --grid-steps 3 --steps 4 --out "$TMP/t2i" --threads 1 &&
  for t in 1 2; do
    ok "generate DiT-T2I --caption (TEXTOK_THREADS=$t)" env TEXTOK_THREADS=$t "$B/generate" --tokenizer "$TMP/vae.st" \
        --generator "$TMP/t2i/model.safetensors" --caption "a red square" --text-encoder "$TMP/t5.st" --spm "$SPMG" \
        -n 2 --steps 4 --cfg 3 --seed 5 --out "$TMP/t2i_$t.png" --out-latents "$TMP/t2i_$t.npy"
  done &&
  same "generate DiT-T2I: 1 and 2 threads give the same latents" "$TMP/t2i_1.npy" "$TMP/t2i_2.npy" &&
  refuses "generate DiT-T2I without a caption" 2 "caption" "$TMP/r.png" \
    "$B/generate" --tokenizer "$TMP/vae.st" --generator "$TMP/t2i/model.safetensors" --out "$TMP/r.png"
else
  fail "DiT-T2I" "tests/golden/t5 or tests/golden/spm files are missing"
fi
