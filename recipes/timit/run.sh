#!/usr/bin/env bash
# TIMIT phone recognition (wav2vec 2.0 Table 3): CTC fine-tuning of a pre-trained model on the 39 phone classes,
# phone error rate (PER) on dev and test, greedy decoding without a language model.
#
#   recipes/timit/run.sh --timit DIR --init CKPT [--stage N] [--stop-stage M]
#
# DIR holds TRAIN and TEST (LDC93S1); CKPT is any pre-trained model s3l.load_model reads (e.g. the
# LibriSpeech recipe's exp/librispeech/wav2vec2/checkpoint_last.safetensors or fairseq's wav2vec_small.pt).
# Every variable set below is an option; finished stages are skipped on a rerun (recipes/common.sh).
#
# Stages:
#   0 prep-timit   train (TRAIN without SA), dev (50 speakers), core test (24 speakers), 39-class phones per 10 ms
#   1 phone-labels phone transcripts for CTC in $data/phones: each phone is one "word" (see below)
#   2 finetune     CTC on the phone transcripts of train, best checkpoint by dev PER
#   3 decode       greedy decoding of dev and test
#   4 results      s3l score: PER on dev and test (EXP/results.md)
#
# Phone targets. `s3l finetune` trains on a {split}.ltr token file over dict.ltr.txt, whose tokens are words of
# symbols ended by the word boundary `|`. Stage 1 writes the phones in that form: {split}.wrd holds the phone
# sequence (upper case, `SIL HH IY ...`) and {split}.ltr the same with `|` after each phone (`SIL | HH | IY |`),
# over a dictionary of the 39 phones and `|`. Greedy decoding then outputs phones separated by spaces, so `s3l
# score`'s WER is the PER. The sequence is the 10 ms labels with runs collapsed: adjacent segments of one class
# (a closure before a pause, both `sil`) become one phone, and the glottal stop, which prep gives the class of
# its neighbour, disappears as in Lee & Hon's folding. Difference from the paper: the model also emits `|`
# between phones (fairseq trains on the phones alone), because s3l finetune has no vocabulary without it.

# ---------------------------------------------------------------------------------------------------------------
timit=                   # TIMIT directory (required for stage 0)
init=                    # pre-trained model (required for stage 2)
exp=exp/timit
data=data/timit

ft_preset=10h            # TIMIT's train set holds ~3.1 h: masking / LayerDrop of the 10 h preset (wav2vec 2.0 Table 6)
ft_updates=              # empty: the --ft-preset's
ft_freeze_updates=       # empty: the --ft-preset's
ft_gpus=8                # GPUs of fairseq's fine-tuning configurations (distributed_world_size 2 x update_freq 4)
ft_nproc=1               # GPUs used here; update_freq = ft_gpus / ft_nproc
num_workers=4
preset=                  # empty: the optimisation defaults that match the checkpoint (tiny or the papers')
decode_sets="dev test"

# shellcheck source=../common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
parse_options "$@"
require_s3l

phones=$data/phones
mkdir -p "$exp"

prep_timit() {
  [[ -n $timit ]] || die "--timit DIR is required for stage 0"
  s3l prep timit "$timit" --out "$data" --force
}

phone_labels() {
  rm -rf "$phones"
  mkdir -p "$phones"
  local s
  for s in train dev test; do
    ln -sfn "$(realpath "$data/$s.tsv")" "$phones/$s.tsv"
    # collapse runs of the 10 ms labels into the phone sequence, upper case like every .wrd
    awk '{ out = toupper($1); for (i = 2; i <= NF; i++) if ($i != $(i - 1)) out = out " " toupper($i); print out }' \
      "$data/$s.phn" >"$phones/$s.wrd"
    awk '{ for (i = 1; i <= NF; i++) printf "%s |%s", $i, (i < NF ? " " : "\n") }' "$phones/$s.wrd" >"$phones/$s.ltr"
  done
  # the fairseq dictionary format: SYMBOL COUNT, most frequent first (ties by symbol)
  cat "$phones"/{train,dev,test}.ltr | tr ' ' '\n' | grep -v '^$' | sort | uniq -c |
    sort -k1,1nr -k2,2 | awk '{ print $2, $1 }' >"$phones/dict.ltr.txt"
}

finetune() {
  [[ -n $init && -e $init ]] || die "--init: a pre-trained model is required for stage 2 (got '${init}')"
  ((ft_gpus % ft_nproc == 0)) || die "$ft_gpus GPUs cannot be emulated with $ft_nproc processes"
  local extra=()
  [[ -z $ft_updates ]] || extra+=(--max-updates "$ft_updates")
  [[ -z $ft_freeze_updates ]] || extra+=(--freeze-updates "$ft_freeze_updates")
  [[ -z $preset ]] || extra+=(--preset "$preset")
  s3l finetune --init "$init" --data "$phones" --train-split train --valid-split dev --ft-preset "$ft_preset" \
    --update-freq $((ft_gpus / ft_nproc)) --nproc "$ft_nproc" --num-workers "$num_workers" --out "$exp/ft" \
    "$(train_resume_flag "$exp/ft")" "${extra[@]}"
}

decode() {
  local s
  for s in $decode_sets; do
    s3l decode --checkpoint "$exp/ft/checkpoint_best.safetensors" --data "$phones" --split "$s" \
      --out "$exp/decode" --force
  done
}

results() {
  local s
  for s in $decode_sets; do
    s3l score --ref "$exp/decode/$s.ref" --hyp "$exp/decode/$s.hyp" --json "$exp/decode/$s.per.json" --force >/dev/null
  done
  # shellcheck disable=SC2086 # one argument per set
  "$s3l_python" - "$exp" $decode_sets <<'EOF' | tee "$exp/results.md"
import json, sys
from pathlib import Path
print("| set | PER % | substitutions | deletions | insertions | phones |")
print("| --- | --- | --- | --- | --- | --- |")
for s in sys.argv[2:]:
    r = json.loads((Path(sys.argv[1]) / "decode" / f"{s}.per.json").read_text())
    print(f"| {s} | {r['wer']:.2f} | {r['substitutions']} | {r['deletions']} | {r['insertions']} | {r['ref_words']} |")
EOF
}

log "experiment directory: $exp, manifests in $data (stages $stage..$stop_stage)"
run_stage 0 prep-timit prep_timit
run_stage 1 phone-labels phone_labels
run_stage 2 finetune finetune
run_stage 3 decode decode
run_stage 4 results results
log "done: $exp/results.md"
