#!/usr/bin/env bash
# The acceptance check at full size (the generators: see below): a TiTok-S-128 with the official parameter names and seeded
# random weights (tools/gen_golden_titok.py --full, ~1 minute, ~1 GB of files in a temp dir, not
# committed), in both .safetensors and torch .bin form, goes through build/convert ->
# build/tokenize / build/reconstruct on the two test images. The token ids must equal the
# float64 PyTorch reference exactly; latents and pre-quantisation output within 1e-5 and the raw
# decoded image within 1e-4 relative L2.
# Run from the repository root: tests/check_full.sh build   (make check-full; CI runs it)
set -u
B=${1:-build}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/textok_full.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
IMAGES=(tests/data/ILSVRC2012_val_00008636.png tests/data/ILSVRC2012_val_00010240.png)
pass=0; fail=0
check() { # WHAT CMD...
  local what=$1; shift
  if "$@" >"$TMP/log" 2>&1; then echo "PASS $what ($(tail -n 1 "$TMP/log"))"; pass=$((pass + 1))
  else echo "FAIL $what: $(tail -n 3 "$TMP/log" | tr '\n' ' ')"; fail=$((fail + 1)); fi
}
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "check_full: python3-torch is not installed (apt-get install python3-torch); skipped"; exit 0
fi
t0=$(date +%s)
/usr/bin/python3 tools/gen_golden_titok.py --full "$TMP" > "$TMP/gen.log" 2>&1 || { cat "$TMP/gen.log"; echo "FAIL generating the full-size reference"; exit 1; }
echo "reference generated in $(( $(date +%s) - t0 )) s: $(grep -m1 "titok_s128" "$TMP/gen.log" | cut -c1-80) ..."
REF=$TMP/titok_s128_ref.safetensors
for fmt in safetensors bin; do
  check "convert titok_s128.$fmt" "$B/convert" "$TMP/titok_s128.$fmt" "$TMP/s128_$fmt.st"
  grep -h "total\|TiTok" "$TMP/log" | sed 's/^/    /'
  for i in 0 1; do
    img=${IMAGES[$i]}
    check "[$fmt] tokenize image $i" "$B/tokenize" --weights "$TMP/s128_$fmt.st" --image "$img" --out "$TMP/t$i" --latents "$TMP/pre$i.npy"
    check "[$fmt] image $i: 128 token ids identical" "$B/npycmp" "$TMP/t$i.json" "$REF:tokens@$i" --exact
    check "[$fmt] image $i: latents" "$B/npycmp" "$TMP/t$i.npy" "$REF:latents@$i" --tol 1e-5
    check "[$fmt] image $i: pre_quant" "$B/npycmp" "$TMP/pre$i.npy" "$REF:pre_quant@$i" --tol 1e-5
    check "[$fmt] reconstruct image $i" "$B/reconstruct" --weights "$TMP/s128_$fmt.st" --image "$img" --out "$TMP/r$i.png" --raw "$TMP/r$i.npy"
    check "[$fmt] image $i: decoded image" "$B/npycmp" "$TMP/r$i.npy" "$REF:decoded@$i" --tol 1e-4
  done
done
echo "TiTok-S-128 check took $(( $(date +%s) - t0 )) s"

# ---- the generators at full size: official names, seeded random weights, reference outputs on
# fixed inputs from tools/dit_ref.py / tools/maskgit_ref.py (tools/make_generator_checkpoints.py
# --full): DiT-XL/2 256 (B 2, float64 reference) and 512 (B 1, float32 reference; the same
# weights, its own pos_embed) as plain state_dict .pt files, ImageBert-L32 and UViT-S128 as .bin
# (float64). Each goes through build/convert (the published head counts: no --heads) and
# build/generate --forward (DiT-XL-2-256 also with --cfg 4, the official 3-channel guidance);
# outputs within 1e-4 relative L2. Up to ~6 GB in the temp dir at a time.
t1=$(date +%s)
GEN=$TMP/gen
if /usr/bin/python3 tools/make_generator_checkpoints.py --full "$GEN" > "$TMP/gen_full.log" 2>&1; then
  echo "generator references made in $(( $(date +%s) - t1 )) s:"; sed 's/^/    /' "$TMP/gen_full.log"
  for m in DiT-XL-2-256.pt DiT-XL-2-512.pt imagebert_l32.bin uvit_s128.bin; do
    n=${m%.*}
    check "convert $m" "$B/convert" "$GEN/$m" "$GEN/$n.st"
    grep -h "DiT\|MaskGIT\|hidden\|total" "$TMP/log" | sed 's/^/    /'
    rm -f "$GEN/$m"
    case $n in
      DiT*)
        check "[$n] generate --forward" "$B/generate" --generator "$GEN/$n.st" --forward "$GEN/${n}_in.safetensors" --out "$GEN/$n.npy"
        check "[$n] forward = dit_ref" "$B/npycmp" "$GEN/$n.npy" "$GEN/${n}_ref.safetensors:out" --tol 1e-4
        if [ $n = DiT-XL-2-256 ]; then   # the 512 reference is the forward only (make_generator_checkpoints.py)
          check "[$n] generate --forward --cfg 4" "$B/generate" --generator "$GEN/$n.st" --forward "$GEN/${n}_in.safetensors" --out "$GEN/${n}_cfg.npy" --cfg 4
          check "[$n] forward_with_cfg = dit_ref" "$B/npycmp" "$GEN/${n}_cfg.npy" "$GEN/${n}_ref.safetensors:out_cfg" --tol 1e-4
        fi ;;
      *)
        check "[$n] generate --forward" "$B/generate" --generator "$GEN/$n.st" --forward "$GEN/${n}_in.safetensors" --out "$GEN/$n.npy"
        check "[$n] logits = maskgit_ref" "$B/npycmp" "$GEN/$n.npy" "$GEN/${n}_ref.safetensors:logits" --tol 1e-4 ;;
    esac
    rm -f "$GEN/$n.st"
  done
else
  cat "$TMP/gen_full.log"; echo "FAIL generating the full-size generator references"; fail=$((fail + 1))
fi
echo "generator check took $(( $(date +%s) - t1 )) s"
echo "full-size check took $(( $(date +%s) - t0 )) s"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
