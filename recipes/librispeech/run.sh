#!/usr/bin/env bash
# The papers' BASE recipes on real data: pre-training on LibriSpeech 960 h (HuBERT iterations 1 and 2, wav2vec 2.0),
# CTC fine-tuning on the Libri-light 10 min / 1 h / 10 h sets (wav2vec 2.0 Table 6), decoding with the official
# LibriSpeech 4-gram.
#
#   recipes/librispeech/run.sh --librispeech DIR --librilight DIR --lm 4-gram.arpa [--stage N] [--stop-stage M]
#
# DIR of LibriSpeech holds train-clean-100, train-clean-360, train-other-500, dev-clean, dev-other, test-clean and
# test-other (openslr.org/12); Libri-light's is librispeech_finetuning (its fine-tuning archive); the LM is
# openslr.org/11's 4-gram.arpa (gunzip it; a KenLM binary X.bin works when X.arpa sits beside it).
# Every variable set below is an option (--pt-nproc 4 sets pt_nproc); finished stages are skipped on a rerun.
#
# Stages:
#   0 prep-librispeech  manifests of every LibriSpeech split; train-960 = the three training sets
#   1 prep-librilight   train-10min, train-1h, train-10h; data/finetune links them with the dev and test sets
#   2 cluster-mfcc      HuBERT iteration-1 targets: MFCC k-means, K=100, fit on 10 % of train-960
#   3 pretrain-hubert1  HuBERT BASE iteration 1: 250k updates
#   4 cluster-hubert1   iteration-2 targets: layer 6 of iteration 1, K=500, fit on 10 % of train-960
#   5 pretrain-hubert2  HuBERT BASE iteration 2: 400k updates (the released HuBERT BASE)
#   6 pretrain-wav2vec2 wav2vec 2.0 BASE: 400k updates
#   7 finetune          each of $ft_models on each of $ft_sets with the set's wav2vec 2.0 Table 6 preset
#   8 decode            every fine-tuned model on $decode_sets: greedy, and the 4-gram with weights tuned on dev
#   9 results           s3l score per model, set and decoder; EXP/results.md
#
# GPUs. s3l's --nproc N runs N processes on this machine (one per GPU); `update_freq` accumulates gradients so
# that N GPUs see the batch of the papers' G GPUs: update_freq = G / N (G must be a multiple of N). The papers'
# G per stage, from fairseq's configurations:
#   HuBERT BASE        G = 32 (hubert_base_librispeech.yaml: distributed_world_size 32, max_tokens 1.4M)
#   wav2vec 2.0 BASE   G = 64 (wav2vec2_base_librispeech.yaml: distributed_world_size 64, max_tokens 1.4M;
#                             fairseq's README: "simulate 64 GPUs by using k GPUs and setting --update-freq 64/k")
#   fine-tuning        G = 8  (finetuning/base_{10m,1h,10h}.yaml: distributed_world_size 2 x update_freq 4,
#                             max_tokens 3.2M each)
# e.g. on one machine with 8 GPUs: HuBERT update_freq 4, wav2vec 2.0 8, fine-tuning with 2 processes 4.
# On several machines, run a stage's `s3l pretrain ...` command under torchrun on each machine (same flags,
# update_freq = G / total GPUs); see README "Recipes".

# ---------------------------------------------------------------------------------------------------------------
librispeech=             # LibriSpeech directory (required for stage 0)
librilight=              # librispeech_finetuning directory (required for stage 1)
lm=                      # 4-gram ARPA (required for stage 8)
exp=exp/librispeech
data=data/librispeech    # manifests: $data/librispeech, $data/librilight, $data/finetune

ls_splits=train-clean-100,train-clean-360,train-other-500,dev-clean,dev-other,test-clean,test-other
pt_sets="train-clean-100 train-clean-360 train-other-500"  # merged into train-960
pt_valid=dev-other       # validation split of pre-training (labelled by the k-means stages too)

# pre-training
preset=base
hubert1_updates=250000   # HuBERT §IV-C: 250k updates for iteration 1 (MFCC targets)
hubert2_updates=400000   # 400k for iteration 2
wav2vec2_updates=400000  # wav2vec 2.0 §4.2: 400k for BASE
hubert_gpus=32           # the papers' GPUs (see above)
wav2vec2_gpus=64
pt_nproc=8               # GPUs used here for pre-training
num_workers=6            # data-loading processes per GPU (fairseq: num_workers 6)

# clustering (HuBERT §IV-C; fairseq examples/hubert/simple_kmeans)
mfcc_k=100
hubert1_layer=6
layer_k=500
km_sample_pct=10         # % of train-960 utterances the k-means models are fit on
km_nproc=8

# fine-tuning: "preset:split" pairs; add 100h:train-clean-100 or 960h:train-960 for the larger sets
ft_models="hubert2 wav2vec2"
ft_sets="10min:train-10min 1h:train-1h 10h:train-10h"
ft_valid=dev-other       # fairseq's valid_subset: dev_other
ft_gpus=8
ft_nproc=2
ft_updates=              # empty: the --ft-preset's (13k / 13k / 20k for BASE)
ft_freeze_updates=       # empty: the --ft-preset's (10k)

# decoding: "split:tuning split" pairs (LM weight and word score tuned on the matching dev set)
decode_sets="dev-clean:dev-clean dev-other:dev-other test-clean:dev-clean test-other:dev-other"
beam=500                 # a wide beam for final numbers (s3l tunes and decodes with one beam; 50 is faster)
tune_trials=128          # the papers' Bayesian optimisation ran 128 trials
decode_nproc=8

# shellcheck source=../common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
parse_options "$@"
require_s3l

ls_data=$data/librispeech
ll_data=$data/librilight
ft_data=$data/finetune
mkdir -p "$exp"

# update_freq GPUS NPROC: G / N, refusing a G that N does not divide.
update_freq() {
  (($1 % $2 == 0)) || die "$1 GPUs cannot be emulated with $2 processes: choose --*-nproc dividing $1"
  echo $(($1 / $2))
}

# ---------------------------------------------------------------------------------------------------------------
prep_librispeech() {
  [[ -n $librispeech ]] || die "--librispeech DIR is required for stage 0"
  s3l prep librispeech "$librispeech" --out "$ls_data" --splits "$ls_splits" --force
  # shellcheck disable=SC2086 # word splitting of the set list is intended
  merge_splits "$ls_data" train-960 $pt_sets
}

prep_librilight() {
  [[ -n $librilight ]] || die "--librilight DIR is required for stage 1"
  s3l prep librilight "$librilight" --out "$ll_data" --force
  # One directory for fine-tuning: the Libri-light sets, LibriSpeech's dev/test sets (and training sets, for the
  # 100h/960h presets), linked, with Libri-light's letter dictionary.
  rm -rf "$ft_data"
  mkdir -p "$ft_data"
  local f
  for f in "$ls_data"/*.tsv "$ls_data"/*.wrd "$ls_data"/*.ltr "$ll_data"/*.tsv "$ll_data"/*.wrd "$ll_data"/*.ltr \
    "$ll_data/dict.ltr.txt"; do
    ln -sfn "$(realpath "$f")" "$ft_data/${f##*/}"
  done
}

cluster_mfcc() {
  s3l cluster --data "$ls_data" --fit-split train-960 --feature mfcc --k "$mfcc_k" --sample-pct "$km_sample_pct" \
    --label-splits "train-960,$pt_valid" --out "$exp/km/mfcc" --nproc "$km_nproc" --force
}

cluster_hubert1() {
  s3l cluster --data "$ls_data" --fit-split train-960 --feature layer --checkpoint \
    "$exp/hubert1/checkpoint_last.safetensors" --layer "$hubert1_layer" --k "$layer_k" --sample-pct "$km_sample_pct" \
    --label-splits "train-960,$pt_valid" --out "$exp/km/hubert1-l$hubert1_layer" --nproc "$km_nproc" --force
}

# pretrain NAME OBJECTIVE UPDATES PAPER_GPUS [ARGS...]
pretrain() {
  local name=$1 objective=$2 updates=$3 gpus=$4 freq
  shift 4
  freq=$(update_freq "$gpus" "$pt_nproc")
  s3l pretrain --objective "$objective" --preset "$preset" --data "$ls_data" --train-split train-960 \
    --valid-split "$pt_valid" --max-updates "$updates" --update-freq "$freq" --nproc "$pt_nproc" \
    --num-workers "$num_workers" --out "$exp/$name" "$(train_resume_flag "$exp/$name")" "$@"
}

finetune_all() {
  local m pair ft_preset split out freq extra
  freq=$(update_freq "$ft_gpus" "$ft_nproc")
  for m in $ft_models; do
    for pair in $ft_sets; do
      ft_preset=${pair%%:*} split=${pair#*:} out=$exp/ft/$m-$ft_preset
      [[ ! -f $out/summary.json ]] || continue # finished in an earlier, interrupted run of this stage
      extra=()
      [[ -z $ft_updates ]] || extra+=(--max-updates "$ft_updates")
      [[ -z $ft_freeze_updates ]] || extra+=(--freeze-updates "$ft_freeze_updates")
      s3l finetune --init "$exp/$m/checkpoint_last.safetensors" --data "$ft_data" --train-split "$split" \
        --valid-split "$ft_valid" --ft-preset "$ft_preset" --update-freq "$freq" --nproc "$ft_nproc" \
        --num-workers "$num_workers" --out "$out" "$(train_resume_flag "$out")" "${extra[@]}"
    done
  done
}

decode_all() {
  [[ -n $lm && -f $lm ]] || die "--lm: the 4-gram ARPA is required for stage 8 (got '${lm}')"
  local m pair ft_preset split tune dec
  for m in $ft_models; do
    for pair in $ft_sets; do
      ft_preset=${pair%%:*}
      for dec in $decode_sets; do
        split=${dec%%:*} tune=${dec#*:}
        local out=$exp/decode/$m-$ft_preset/$split
        s3l decode --checkpoint "$exp/ft/$m-$ft_preset/checkpoint_best.safetensors" --data "$ft_data" \
          --split "$split" --lm "$lm" --tune --tune-split "$tune" --tune-trials "$tune_trials" --beam "$beam" \
          --save-emissions --nproc "$decode_nproc" --out "$out/lm" --force
        s3l decode --emissions "$out/lm" --data "$ft_data" --split "$split" --out "$out/greedy" --force
      done
    done
  done
}

results() {
  local m pair dec d out
  for m in $ft_models; do
    for pair in $ft_sets; do
      for dec in $decode_sets; do
        for d in greedy lm; do
          out=$exp/decode/$m-${pair%%:*}/${dec%%:*}/$d
          s3l score --ref "$out/${dec%%:*}.ref" --hyp "$out/${dec%%:*}.hyp" --json "$out/score.json" --force >/dev/null
        done
      done
    done
  done
  # A Markdown table of WER (greedy / 4-gram) per model and fine-tuning set (rows) and decoded set (columns).
  "$s3l_python" - "$exp" "$ft_models" "$ft_sets" "$decode_sets" <<'EOF' | tee "$exp/results.md"
import json, sys
from pathlib import Path
exp, models, sets, decs = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
splits = [d.split(":")[0] for d in decs]
def wer(m, s, split, d):
    return json.loads((exp / "decode" / f"{m}-{s}" / split / d / "score.json").read_text())["wer"]
print("| model | fine-tuning | " + " | ".join(f"{s} greedy / 4-gram" for s in splits) + " |")
print("|" + " --- |" * (2 + len(splits)))
for m in models:
    for s in (p.split(":")[0] for p in sets):
        cells = [f"{wer(m, s, x, 'greedy'):.1f} / {wer(m, s, x, 'lm'):.1f}" for x in splits]
        print(f"| {m} | {s} | " + " | ".join(cells) + " |")
EOF
}

# ---------------------------------------------------------------------------------------------------------------
log "experiment directory: $exp, manifests in $data (stages $stage..$stop_stage)"
run_stage 0 prep-librispeech prep_librispeech
run_stage 1 prep-librilight prep_librilight
run_stage 2 cluster-mfcc cluster_mfcc
run_stage 3 pretrain-hubert1 pretrain hubert1 hubert "$hubert1_updates" "$hubert_gpus" --labels "$exp/km/mfcc"
run_stage 4 cluster-hubert1 cluster_hubert1
run_stage 5 pretrain-hubert2 pretrain hubert2 hubert "$hubert2_updates" "$hubert_gpus" \
  --labels "$exp/km/hubert1-l$hubert1_layer"
run_stage 6 pretrain-wav2vec2 pretrain wav2vec2 contrastive "$wav2vec2_updates" "$wav2vec2_gpus"
run_stage 7 finetune finetune_all
run_stage 8 decode decode_all
run_stage 9 results results
log "done: $exp/results.md"
