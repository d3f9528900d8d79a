#!/usr/bin/env bash
# s3l demo: wav2vec 2.0 and HuBERT in miniature on the built-in synthetic corpus, from audio to WER, on a CPU.
#
#   recipes/synthetic/run.sh [--stage N] [--stop-stage M] [--quick] [--exp DIR] [--NAME VALUE ...]
#
# Every variable set at the top of this script is an option (--hubert1-updates 600 sets hubert1_updates).
# --quick: CI sizes (seconds of audio, a few updates per stage) in exp/synthetic-quick; options given with it
# still override its sizes. Finished stages are skipped on a rerun (markers in EXP/done/; recipes/common.sh).
#
# Stages:
#    0 prep-synth        s3l prep synth: unlabeled train, train-1h, train-10min, dev, test, lm.txt
#    1 lm                s3l prep lm: 4-gram on lm.txt
#    2 cluster-mfcc      MFCC k-means, K=100 (HuBERT iteration-1 targets), labels for train and dev
#    3 pretrain-hubert1  HuBERT iteration 1 (tiny) on the MFCC units
#    4 cluster-hubert1   k-means on layer $hubert1_layer of iteration 1 (iteration-2 targets)
#    5 pretrain-hubert2  HuBERT iteration 2 (tiny) on the layer units
#    6 cluster-hubert2   k-means on layer $hubert2_layer of iteration 2 (for the unit analysis only)
#    7 pretrain-wav2vec2 wav2vec 2.0 (tiny, contrastive)
#    8-11 finetune-*     CTC on train-10min: hubert1, hubert2, wav2vec2, and a from-scratch baseline, one budget
#   Stages 3-6, 9 and 8 (lane_hubert) run beside 7, 11 and 10 (lane_others), one CPU core each; each lane's
#   output is in EXP/logs/LANE.log and its stage lines are printed.
#   12 decode            test: greedy, and lexicon beam search + 4-gram, LM weight / word score tuned on dev
#   13 score             s3l score on test for every model and decoder
#   14 analyze-units     PNMI / purity of MFCC, iteration-1 and iteration-2 units on dev; layer sweeps; codes
#   15 probe             linear phone probes on dev (fit on train-1h): MFCC, a random-init tiny model, and every
#                        layer of each pre-trained model
#   16 results           EXP/results.md (printed), EXP/results.json, EXP/results.png

# ---------------------------------------------------------------------------------------------------------------
# Sizes and budget. The demo must finish within 30 minutes on 2 CPU cores; each stage gets an explicit share,
# expressed as updates from the throughput measured on such a machine (figures in README "Quick start").
# ---------------------------------------------------------------------------------------------------------------
exp=exp/synthetic
# shellcheck disable=SC2034 # an option (its value is read from the arguments by the loop below)
quick=false
nproc=2                  # processes for synthesis, clustering and decoding
threads=1                # CPU threads per process (OMP_NUM_THREADS); empty: torch's default (all cores). Training
                         # runs in two lanes of one process each (stages 3-11), so 1 thread keeps each on its core

# corpus (prep synth): ~3.4 h of audio in all, ~1-3 min
hours=2                  # unlabeled pre-training audio
labeled_scale=1          # train-1h = 60 min x this; train-10min = its first 10 min x this
dev_minutes=10
test_minutes=10
lm_sentences=50000
seed=0

# clustering: MFCC units for iteration 1, layer units for iteration 2 (HuBERT §II-C, §IV-C)
mfcc_k=100
hubert1_layer=2          # the middle of tiny's 4 blocks, as HuBERT BASE takes block 6 of 12 (fairseq: "6th layer")
hubert2_layer=2          # layer of iteration 2 whose units are analysed
layer_k=100              # K for layer units (HuBERT BASE: 500 on 960 h; 100 suits 2 h of audio)
layer_sample_pct=50      # % of train utterances whose frames fit the layer k-means

# pre-training (preset tiny), each on one core: HuBERT ~6.5 min (2,000 updates of 4 s of audio, about one epoch),
# wav2vec 2.0 ~10 min (800 updates of 32 s: its contrastive task needs the larger batch, see the tiny preset)
preset=tiny
hubert1_updates=2000
hubert2_updates=2000
wav2vec2_updates=800
pt_valid_interval=400

# fine-tuning on train-10min (same budget for every model, ~3 min each on one core)
ft_split=train-10min
ft_preset=10min
ft_updates=800
ft_freeze_updates=0      # updates with the output layer only (fairseq's base_10m.yaml: 10k of 13k). With 200, the
                         # tiny wav2vec 2.0, unfrozen at the peak rate, turned all blank (s3l/finetune.py)
ft_mask_prob=0.3         # time / channel masking (fairseq convention, p x span). Table 6's 10min values (0.75 /
ft_mask_channel_prob=0.1 # 0.512) suit 13k updates: from scratch, 600 updates, dev loss 151 with them, 90 with these
ft_valid_interval=200

# decoding: wav2letter's lexicon beam search with the 4-gram (flashlight-text), the papers' decoder. wav2vec 2.0
# §4.4 tunes LM weight and word score with beam 500 (128 Bayesian-optimisation trials) and tests with beam 1,500;
# the demo uses beam 50 and 32 trials (grid + pattern search) on dev to stay inside its budget. No unigram
# look-ahead and the sum over CTC paths (fairseq: max look-ahead, best path): the synthetic LM is strongly
# contextual and at beam 50 the look-ahead pruned the right words; measured on HuBERT-2 (seed 1), each tuned on dev,
# test WER 72.7 (max, best path) -> 68.1, against pyctcdecode's 70.4 at beam 50 (CHANGELOG)
decoder=lexicon
beam=50
tune_trials=32
smearing=none
log_add=true

# analysis
layer_sweep=true         # k-means on every layer of both HuBERT iterations (HuBERT Fig. 2); ~1 min
probe_frames=100000      # frames per split for the phone probes (fit on train-1h, scored on dev)

# Quick mode sizes, applied before the options are read so that explicit options still win.
for arg in "$@"; do
  if [[ $arg == --quick || $arg == --quick=true ]]; then
    exp=exp/synthetic-quick
    hours=0.01 labeled_scale=0.05 dev_minutes=0.5 test_minutes=0.5 lm_sentences=2000
    mfcc_k=20 layer_k=20 layer_sample_pct=100
    hubert1_updates=4 hubert2_updates=4 wav2vec2_updates=4 pt_valid_interval=4
    ft_updates=6 ft_valid_interval=3
    tune_trials=4 probe_frames=5000
  fi
done

# shellcheck source=../common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
parse_options "$@"
require_s3l
[[ -z $threads ]] || export OMP_NUM_THREADS=$threads

data=$exp/data
lm=$exp/lm/4gram.arpa
models="scratch wav2vec2 hubert1 hubert2" # fine-tuned models, baseline first
mkdir -p "$exp"

# ---------------------------------------------------------------------------------------------------------------
prep_synth() {
  s3l prep synth --out "$data" --hours "$hours" --labeled-scale "$labeled_scale" --dev-minutes "$dev_minutes" \
    --test-minutes "$test_minutes" --lm-sentences "$lm_sentences" --seed "$seed" --workers "$nproc" --force
}

make_lm() {
  mkdir -p "$exp/lm"
  s3l prep lm "$data/lm.txt" --order 4 --out "$lm" --json "$exp/lm/lm.json" --force
}

# cluster_layer NAME CHECKPOINT LAYER SPLITS: layer units of a pre-trained model in $exp/km/NAME.
cluster_layer() {
  s3l cluster --data "$data" --fit-split train --feature layer --checkpoint "$2" --layer "$3" --k "$layer_k" \
    --sample-pct "$layer_sample_pct" --label-splits "$4" --seed "$seed" --out "$exp/km/$1" --nproc "$nproc" --force
}

# pretrain NAME OBJECTIVE UPDATES [ARGS...]: a tiny model in $exp/NAME (continued if interrupted).
pretrain() {
  local name=$1 objective=$2 updates=$3
  shift 3
  s3l pretrain --objective "$objective" --preset "$preset" --data "$data" --train-split train --valid-split dev \
    --max-updates "$updates" --valid-interval "$pt_valid_interval" --save-interval "$pt_valid_interval" \
    --seed "$((seed + 1))" --out "$exp/$name" "$(train_resume_flag "$exp/$name")" "$@"
}

# finetune NAME INIT_ARGS...: CTC on $ft_split in $exp/ft/NAME with the one budget every model gets.
finetune() {
  local name=$1
  shift
  s3l finetune --data "$data" --train-split "$ft_split" --valid-split dev --ft-preset "$ft_preset" \
    --max-updates "$ft_updates" --valid-interval "$ft_valid_interval" --save-interval "$ft_valid_interval" \
    --mask-prob "$ft_mask_prob" --mask-channel-prob "$ft_mask_channel_prob" \
    --seed "$((seed + 1))" --out "$exp/ft/$name" "$(train_resume_flag "$exp/ft/$name")" "$@"
}

lexicon_flags() {
  [ "$decoder" = lexicon ] || return 0
  printf -- '--smearing %s' "$smearing"
  [ "$log_add" = true ] && printf -- ' --log-add'
  return 0
}

decode_all() {
  local m
  for m in $models; do
    # One forward pass per model: emissions of test (and of dev, for tuning) are saved and reused by greedy.
    # shellcheck disable=SC2046 # lexicon_flags prints several words
    s3l decode --checkpoint "$exp/ft/$m/checkpoint_best.safetensors" --data "$data" --split test \
      --lm "$lm" --decoder "$decoder" --tune --tune-split dev --tune-trials "$tune_trials" --beam "$beam" \
      $(lexicon_flags) --save-emissions \
      --nproc "$nproc" --out "$exp/decode/$m/lm" --force
    s3l decode --emissions "$exp/decode/$m/lm" --data "$data" --split test --out "$exp/decode/$m/greedy" --force
  done
}

score_all() {
  local m d
  mkdir -p "$exp/score"
  for m in $models; do
    for d in greedy lm; do
      s3l score --ref "$exp/decode/$m/$d/test.ref" --hyp "$exp/decode/$m/$d/test.hyp" \
        --json "$exp/score/$m-$d.json" --force
    done
  done
}

analyze() {
  local a=$exp/analysis
  s3l analyze-units --units "$exp/km/mfcc/dev.km" --phones "$data/dev.phn" --out "$a/mfcc" --force
  s3l analyze-units --units "$exp/km/hubert1-l$hubert1_layer/dev.km" --phones "$data/dev.phn" --out "$a/hubert1" --force
  s3l analyze-units --units "$exp/km/hubert2-l$hubert2_layer/dev.km" --phones "$data/dev.phn" --out "$a/hubert2" --force
  s3l analyze-units --codes --checkpoint "$exp/wav2vec2/checkpoint_last.safetensors" --data "$data" --split dev \
    --out "$a/wav2vec2-codes" --force
  if [[ $layer_sweep == true ]]; then
    local m
    for m in hubert1 hubert2; do
      s3l analyze-units --layers --checkpoint "$exp/$m/checkpoint_last.safetensors" --data "$data" --split dev \
        --k "$layer_k" --seed "$seed" --out "$a/$m-layers" --force
    done
  fi
}

# probe NAME FEATURE_ARGS...: a linear phone probe per layer in $exp/probe/NAME.
probe() {
  local name=$1
  shift
  s3l probe --data "$data" --fit-split train-1h --eval-split dev --max-frames "$probe_frames" --seed "$seed" \
    --out "$exp/probe/$name" --force "$@"
}

# Two probes at a time, one per core (each is single-threaded, like the lanes): a model's probe takes ~75 s (half
# extracting features, half fitting), MFCC's ~7 s, so the two queues take about the same time.
probe_all() {
  (
    probe mfcc --feature mfcc
    probe wav2vec2 --checkpoint "$exp/wav2vec2/checkpoint_last.safetensors"
    probe hubert2 --checkpoint "$exp/hubert2/checkpoint_last.safetensors"
  ) &
  (
    probe random --random-init "$preset"
    probe hubert1 --checkpoint "$exp/hubert1/checkpoint_last.safetensors"
  ) &
  wait_all
}

results() {
  "$s3l_python" "$(dirname "${BASH_SOURCE[0]}")/results.py" "$exp"
}

# ---------------------------------------------------------------------------------------------------------------
# Stages 3-11 run in two lanes side by side, one CPU core each (run_lanes, recipes/common.sh): the HuBERT chain with
# both HuBERT fine-tunings and, beside it, wav2vec 2.0, its fine-tuning and the baseline's (the lanes measured
# ~1,050 s and ~1,010 s of work on an Intel Xeon; with finetune-hubert1 in the second lane, 865 s and 1,200 s).
lane_hubert() {
  run_stage 3 pretrain-hubert1 pretrain hubert1 hubert "$hubert1_updates" --labels "$exp/km/mfcc"
  run_stage 4 cluster-hubert1 cluster_layer "hubert1-l$hubert1_layer" "$exp/hubert1/checkpoint_last.safetensors" \
    "$hubert1_layer" train,dev
  run_stage 5 pretrain-hubert2 pretrain hubert2 hubert "$hubert2_updates" --labels "$exp/km/hubert1-l$hubert1_layer"
  run_stage 6 cluster-hubert2 cluster_layer "hubert2-l$hubert2_layer" "$exp/hubert2/checkpoint_last.safetensors" \
    "$hubert2_layer" dev
  run_stage 9 finetune-hubert2 finetune hubert2 --init "$exp/hubert2/checkpoint_last.safetensors" \
    --freeze-updates "$ft_freeze_updates"
  run_stage 8 finetune-hubert1 finetune hubert1 --init "$exp/hubert1/checkpoint_last.safetensors" \
    --freeze-updates "$ft_freeze_updates"
}

lane_others() {
  run_stage 7 pretrain-wav2vec2 pretrain wav2vec2 contrastive "$wav2vec2_updates"
  run_stage 11 finetune-scratch finetune scratch --from-scratch --preset "$preset"
  run_stage 10 finetune-wav2vec2 finetune wav2vec2 --init "$exp/wav2vec2/checkpoint_last.safetensors" \
    --freeze-updates "$ft_freeze_updates"
}

log "experiment directory: $exp (stages $stage..$stop_stage)"
run_stage 0 prep-synth prep_synth
run_stage 1 lm make_lm
run_stage 2 cluster-mfcc s3l cluster --data "$data" --fit-split train --feature mfcc --k "$mfcc_k" \
  --label-splits train,dev --seed "$seed" --out "$exp/km/mfcc" --nproc "$nproc" --force
run_lanes lane_hubert lane_others
run_stage 12 decode decode_all
run_stage 13 score score_all
run_stage 14 analyze-units analyze
run_stage 15 probe probe_all
run_stage 16 results results
log "done: $exp/results.md"
