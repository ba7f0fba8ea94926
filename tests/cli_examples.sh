#!/usr/bin/env bash
# Command-line checks of the example programs against the golden TiTok models:
#   build/convert, build/tokenize, build/reconstruct, build/npycmp; and build/demo on the shipped
#   models (weights/emoji/): bad command lines and a missing weights folder are refused, and a
#   short run writes both PNGs.
# For each tiny model (tests/golden/titok/<name>.safetensors and .bin, converted to the textok
# layout) and each test image: the token ids must equal <name>_ref.safetensors:tokens exactly, the
# latents, the pre-quantisation output and the raw decoded image must match latents, pre_quant
# and decoded within a relative L2 error of 1e-4. Then other image kinds (gray+alpha, RGBA, gray
# JPEG, non-square, smaller than the model) must be accepted, and bad inputs must fail with a
# non-zero status, a message on stderr and no output file left behind.
# Run from the repository root: tests/cli_examples.sh build   (one PASS/FAIL line per check)
set -u
B=${1:-build}
G=tests/golden/titok
D=tests/data
IMAGES=("$D/ILSVRC2012_val_00008636.png" "$D/ILSVRC2012_val_00010240.png")   # golden order
TMP=$(mktemp -d "${TMPDIR:-/tmp}/textok_cli.XXXXXX") || { echo "FAIL cli_examples: mktemp"; exit 1; }
trap 'rm -rf "$TMP"' EXIT

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
last_line() { tail -n 1 "$1" 2>/dev/null | tr -d '\n'; }

# ok WHAT CMD...: the command must succeed
ok() {
  local what=$1; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then pass "$what"; return 0; fi
  fail "$what" "exit $? ($(last_line "$TMP/err"))"; return 1
}

# same WHAT A B [npycmp flags]: npycmp must accept A against the reference B
same() {
  local what=$1 a=$2 b=$3; shift 3
  if "$B/npycmp" "$a" "$b" "$@" >"$TMP/cmp" 2>&1; then pass "$what"
  else fail "$what" "$(last_line "$TMP/cmp")"; fi
}

# refuses WHAT STATUS MENTION "FILES THAT MUST NOT EXIST" CMD...: the command must exit with
# STATUS (or any non-zero status if STATUS is "nz"), say something on stderr that contains MENTION,
# and leave none of the files (nor their .tmp) behind. The files are removed first, so one failed
# check does not fail the next.
# TEXTOK_ERROR_TABLE=FILE (tests/error_table.sh): every refusal's case, exit status and message
note_refusal() {
  [ -n "${TEXTOK_ERROR_TABLE:-}" ] || return 0
  printf '%s\t%s\t%s\t%s\n' "cli_examples.sh" "$1" "$2" "$(grep -v '^usage:' "$3" | tr '\n' ' ' | sed 's/ *$//')" >>"$TEXTOK_ERROR_TABLE"
}
refuses() {
  local what=$1 want=$2 mention=$3 files=$4 rc f; shift 4
  for f in $files; do rm -f "$f" "$f.tmp"; done
  "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?
  note_refusal "$what" $rc "$TMP/err"
  if [ $rc -eq 0 ]; then fail "$what" "exit 0, expected a failure"; return; fi
  if [ "$want" != nz ] && [ $rc -ne "$want" ]; then fail "$what" "exit $rc, expected $want"; return; fi
  if [ ! -s "$TMP/err" ]; then fail "$what" "nothing on stderr"; return; fi
  if ! grep -qF -- "$mention" "$TMP/err"; then
    fail "$what" "stderr does not mention '$mention': $(last_line "$TMP/err")"; return
  fi
  for f in $files; do
    if [ -e "$f" ] || [ -e "$f.tmp" ]; then fail "$what" "left $f behind"; return; fi
  done
  pass "$what"
}

for t in convert tokenize reconstruct npycmp; do
  [ -x "$B/$t" ] || { fail "cli_examples" "$B/$t is not built (run make)"; exit 0; }
done

# ---- golden models: every output against the PyTorch reference --------------------------------
for m in tiny_legacy tiny_vq tiny_vae; do
  ref="$G/${m}_ref.safetensors"
  if [ ! -f "$G/$m.safetensors" ] || [ ! -f "$G/$m.bin" ] || [ ! -f "$ref" ]; then
    fail "$m golden files" "missing in $G (tools/gen_golden_titok.py writes them)"; continue
  fi
  for src in safetensors bin; do
    w="$TMP/$m.$src.st"
    ok "convert $m.$src" "$B/convert" "$G/$m.$src" "$w" || continue
    for i in 0 1; do
      img=${IMAGES[$i]} o="$TMP/$m.$src.$i" what="$m ($src) image $i"
      ok "tokenize $what" "$B/tokenize" --weights "$w" --image "$img" --out "$o" \
        --latents "$o.pre.npy" --threads 1 || continue
      if [ $m = tiny_vae ]; then
        if [ -e "$o.json" ]; then fail "tokenize $what: no json for a VAE" "$o.json exists"
        else pass "tokenize $what: no json for a VAE"; fi
      else
        same "tokens $what" "$o.json" "$ref:tokens@$i" --exact
      fi
      same "latents $what" "$o.npy" "$ref:latents@$i" --tol 1e-4
      same "pre_quant $what" "$o.pre.npy" "$ref:pre_quant@$i" --tol 1e-4
      ok "reconstruct $what" "$B/reconstruct" --weights "$w" --image "$img" --out "$o.png" \
        --raw "$o.raw.npy" || continue
      if grep -q '^PSNR [0-9.]* dB' "$TMP/out"; then pass "reconstruct $what prints the PSNR"
      else fail "reconstruct $what prints the PSNR" "stdout: $(last_line "$TMP/out")"; fi
      same "decoded $what" "$o.raw.npy" "$ref:decoded@$i" --tol 1e-4
      if [ "$(head -c 8 "$o.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
        pass "reconstruct $what writes a PNG"
      else fail "reconstruct $what writes a PNG" "$o.png is missing or not a PNG"; fi
    done
  done
  # the .tmp of every output was renamed away
  left=$(find "$TMP" -name '*.tmp' | head -n 1)
  if [ -z "$left" ]; then pass "$m: no .tmp files left"; else fail "$m: no .tmp files left" "$left"; fi
done

# ---- text-conditioned models: TA-TiTok (official names, .bin and .safetensors) and TexTok -------
# convert (heads given: these tiny stacks have 16-wide heads), then tokenize / reconstruct with
# --text-emb holding the reference's text for that image (npycmp --extract). TexTok's image 0
# has padded text rows in the reference, which an (L, D) file cannot express: image 1 only.
TG=tests/golden/textok
for m in tatitok_tiny textok_both textok_enc textok_dec textok_none; do
  ref="$TG/${m}_ref.safetensors"
  [ -f "$ref" ] || { fail "$m golden files" "missing in $TG (tools/gen_golden_textok.py writes them)"; continue; }
  srcs=safetensors; [ -f "$TG/$m.bin" ] && srcs="safetensors bin"
  for src in $srcs; do
    w="$TMP/$m.$src.st"
    cargs=(--heads 2,2); [ $m = textok_enc ] && cargs+=(--l2-norm 1)   # the file cannot say it
    ok "convert $m.$src ${cargs[*]}" "$B/convert" "$TG/$m.$src" "$w" "${cargs[@]}" || continue
    imgs="0 1"; [ $m != tatitok_tiny ] && imgs=1
    for i in $imgs; do
      img=${IMAGES[$i]} o="$TMP/$m.$src.$i" what="$m ($src) image $i"
      targs=()
      if [ $m != textok_none ]; then
        "$B/npycmp" --extract "$ref:text@$i" "$o.text.npy" >/dev/null 2>&1 || { fail "extract text $what" "npycmp --extract failed"; continue; }
        targs=(--text-emb "$o.text.npy")
      fi
      ok "tokenize $what" "$B/tokenize" --weights "$w" --image "$img" --out "$o" --latents "$o.pre.npy" "${targs[@]}" --threads 1 || continue
      case $m in tatitok_tiny|textok_enc) same "tokens $what" "$o.json" "$ref:tokens@$i" --exact ;; esac
      same "latents $what" "$o.npy" "$ref:latents@$i" --tol 1e-4
      same "pre_quant $what" "$o.pre.npy" "$ref:pre_quant@$i" --tol 1e-4
      ok "reconstruct $what" "$B/reconstruct" --weights "$w" --image "$img" --out "$o.png" --raw "$o.raw.npy" "${targs[@]}" || continue
      same "decoded $what" "$o.raw.npy" "$ref:decoded@$i" --tol 1e-4
    done
  done
done
if [ -f "$TMP/tatitok_tiny.safetensors.st" ]; then
  refuses "tatitok without text" 2 "--text-emb" "$TMP/tt.png" \
    "$B/reconstruct" --weights "$TMP/tatitok_tiny.safetensors.st" --image "${IMAGES[0]}" --out "$TMP/tt.png"
  "$B/npycmp" --extract "$TG/textok_both_ref.safetensors:text@1" "$TMP/narrow.npy" >/dev/null 2>&1
  refuses "tatitok with 24-wide text" 1 "text_dim" "$TMP/tt.png" \
    "$B/reconstruct" --weights "$TMP/tatitok_tiny.safetensors.st" --image "${IMAGES[0]}" --out "$TMP/tt.png" --text-emb "$TMP/narrow.npy"
  refuses "tatitok with an unreadable --text-emb" 1 "nope.npy" "$TMP/tt.png" \
    "$B/reconstruct" --weights "$TMP/tatitok_tiny.safetensors.st" --image "${IMAGES[0]}" --out "$TMP/tt.png" --text-emb "$TMP/nope.npy"
fi

# ---- other image kinds: converted to RGB (alpha dropped), cropped, resized up or down ----------
W="$TMP/tiny_vq.safetensors.st"
if [ -f "$W" ]; then
  for f in tiny_gray_alpha.png tiny_rgba.png tiny_gray.jpg; do
    o="$TMP/kind.$f"
    if ok "tokenize accepts $f" "$B/tokenize" --weights "$W" --image "$D/$f" --out "$o"; then
      if [ -s "$o.json" ] && [ -s "$o.npy" ]; then pass "tokenize $f writes json and npy"
      else fail "tokenize $f writes json and npy" "missing $o.json or $o.npy"; fi
      case $f in *alpha*|*rgba*)
        if grep -q alpha "$TMP/err"; then pass "tokenize $f says the alpha is dropped"
        else fail "tokenize $f says the alpha is dropped" "no note on stderr"; fi;;
      esac
    fi
    ok "reconstruct accepts $f" "$B/reconstruct" --weights "$W" --image "$D/$f" --out "$o.png"
  done
  # OUT given with an extension: the prefix is OUT without it
  what="tokenize --out X.json writes X.json and X.npy"
  if "$B/tokenize" --weights "$W" --image "${IMAGES[0]}" --out "$TMP/ext.json" >/dev/null 2>&1 &&
     [ -f "$TMP/ext.json" ] && [ -f "$TMP/ext.npy" ] && [ ! -e "$TMP/ext.json.json" ]; then pass "$what"
  else fail "$what" "got: $(cd "$TMP" && ls ext* 2>/dev/null | tr '\n' ' ')"; fi
else
  fail "image kinds" "no converted tiny_vq model"
fi

# ---- bad inputs --------------------------------------------------------------------------------
if [ -f "$W" ]; then
  I=${IMAGES[0]} O="$TMP/bad"
  echo "this is not an image" >"$TMP/text.png"
  head -c 1000 "$W" >"$TMP/truncated.st"
  outs="$O.json $O.npy $O.pre.npy $O.png $O.raw.npy"
  refuses "tokenize without --weights" 2 "--weights" "$outs" "$B/tokenize" --image "$I" --out "$O"
  refuses "tokenize with an unknown flag" 2 "--bogus" "$outs" "$B/tokenize" --weights "$W" --image "$I" --out "$O" --bogus 1
  refuses "tokenize with a flag missing its value" 2 "--out" "$outs" "$B/tokenize" --weights "$W" --image "$I" --out
  refuses "tokenize --threads abc" 2 "--threads" "$outs" "$B/tokenize" --weights "$W" --image "$I" --out "$O" --threads abc
  refuses "tokenize a text file named .png" 1 "$TMP/text.png" "$outs" "$B/tokenize" --weights "$W" --image "$TMP/text.png" --out "$O"
  refuses "tokenize a nonexistent image" 1 "$TMP/nothere.png" "$outs" "$B/tokenize" --weights "$W" --image "$TMP/nothere.png" --out "$O"
  refuses "tokenize with a kernel golden as weights" 1 "$D/../golden/add.safetensors" "$outs" "$B/tokenize" --weights "$D/../golden/add.safetensors" --image "$I" --out "$O"
  refuses "tokenize with nonexistent weights" 1 "$TMP/nothere.st" "$outs" "$B/tokenize" --weights "$TMP/nothere.st" --image "$I" --out "$O"
  refuses "tokenize with truncated weights" 1 "$TMP/truncated.st" "$outs" "$B/tokenize" --weights "$TMP/truncated.st" --image "$I" --out "$O"
  refuses "tokenize --out in a nonexistent directory" 1 "$TMP/nodir" "$TMP/nodir/x.npy $TMP/nodir/x.json" "$B/tokenize" --weights "$W" --image "$I" --out "$TMP/nodir/x"
  # the .npy and .json are written before --latents fails: both must be removed again
  refuses "tokenize --latents in a nonexistent directory" 1 "$TMP/nodir" "$outs" "$B/tokenize" --weights "$W" --image "$I" --out "$O" --latents "$TMP/nodir/pre.npy"
  refuses "reconstruct without --image" 2 "--image" "$outs" "$B/reconstruct" --weights "$W" --out "$O.png"
  refuses "reconstruct a text file named .png" 1 "$TMP/text.png" "$outs" "$B/reconstruct" --weights "$W" --image "$TMP/text.png" --out "$O.png" --raw "$O.raw.npy"
  refuses "reconstruct with a kernel golden as weights" 1 "add.safetensors" "$outs" "$B/reconstruct" --weights "$D/../golden/add.safetensors" --image "$I" --out "$O.png"
  refuses "reconstruct --out in a nonexistent directory" 1 "$TMP/nodir" "$TMP/nodir/x.png" "$B/reconstruct" --weights "$W" --image "$I" --out "$TMP/nodir/x.png"
  # --raw is written before the PNG fails: it must be removed again
  refuses "reconstruct --raw kept only if the PNG is written" 1 "$TMP/nodir" "$outs" "$B/reconstruct" --weights "$W" --image "$I" --out "$TMP/nodir/x.png" --raw "$O.raw.npy"
  refuses "npycmp with different element counts" 1 "" "" "$B/npycmp" "$G/tiny_vq_ref.safetensors:tokens" "$G/tiny_vq_ref.safetensors:tokens@0"
  refuses "npycmp with a missing tensor" 2 "nope" "" "$B/npycmp" "$G/tiny_vq_ref.safetensors:nope" "$G/tiny_vq_ref.safetensors:tokens"
else
  fail "bad inputs" "no converted tiny_vq model"
fi

# ---- build/demo: the shipped models (weights/emoji/, committed) --------------------------------
if [ -x "$B/demo" ]; then
  O="$TMP/demo" outs="$TMP/demo/reconstructions.png $TMP/demo/generated.png"
  refuses "demo with a --weights folder that does not exist" 1 "$TMP/noweights/textok.safetensors" "$outs" \
    "$B/demo" --weights "$TMP/noweights" --out "$O"
  refuses "demo with an unknown flag" 2 "--bogus" "$outs" "$B/demo" --out "$O" --bogus 1
  refuses "demo --steps 0" 2 "--steps" "$outs" "$B/demo" --out "$O" --steps 0
  refuses "demo --cfg nan" 2 "--cfg" "$outs" "$B/demo" --out "$O" --cfg nan
  if ok "demo runs (5 steps)" "$B/demo" --out "$O" --steps 5 --threads 1; then
    for f in $outs; do
      if [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then pass "demo writes $(basename "$f")"
      else fail "demo writes $(basename "$f")" "$f is missing or not a PNG"; fi
    done
    if grep -q '^  mean PSNR [0-9.]* dB' "$TMP/out"; then pass "demo prints the mean PSNR"
    else fail "demo prints the mean PSNR" "stdout: $(grep -m1 PSNR "$TMP/out")"; fi
  fi
else
  fail "demo" "$B/demo is not built (run make)"
fi
exit 0
