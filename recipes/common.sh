# shellcheck shell=bash
# Shared helpers of the s3l recipes. Sourced by recipes/*/run.sh, never run on its own.
#
# A recipe sets its variables (every one of them an option), sources this file, calls `parse_options "$@"`,
# then runs its stages with `run_stage N NAME FUNCTION [ARGS...]`, as icefall's prepare.sh does:
#   - a stage runs only when stage <= N <= stop_stage (`--stage`, `--stop-stage`);
#   - a finished stage leaves a marker $exp/done/NN-NAME.json (stage, name, seconds, finish time); a later run
#     skips it, so an interrupted recipe resumes at the first unfinished stage. Delete a marker (or the whole
#     $exp/done) to redo a stage; `--force-stages true` ignores the markers and redoes every selected stage.
# The commands of a stage that did not finish are rerun from the start (`s3l ... --force`), except training,
# which continues from its last checkpoint (`train_resume_flag`).

set -euo pipefail

if ((BASH_VERSINFO[0] < 5)); then
  echo "s3l recipes need bash >= 5 (this is ${BASH_VERSION})" >&2
  exit 1
fi

stage=0            # first stage to run
stop_stage=1000    # last stage to run
force_stages=false # true: run the selected stages even if their done-markers exist

log() {
  printf '%s (%s) %s\n' "$(date '+%F %T')" "${0##*/}${lane:+ $lane}" "$*" >&2
  # inside a lane (run_lanes) stderr is the lane's log file; fd 3 is the recipe's own stderr
  [[ -z ${lane:-} ]] || printf '%s (%s) %s\n' "$(date '+%F %T')" "${0##*/} $lane" "$*" >&3
}

die() {
  log "error: $*"
  exit 1
}

# The recipe's leading comment block (after the shebang) is its help text.
_recipe_usage() {
  sed -n '2,/^[^#]\|^$/{/^#/s/^# \{0,1\}//p}' "$0"
}

# parse_options "$@": `--name value`, `--name=value` or (for variables holding true/false) a bare `--name` set the
# recipe variable `name` (dashes become underscores). Unknown names are an error, so a typo never goes unnoticed.
parse_options() {
  local _opt _name _value
  while (($#)); do
    _opt=$1
    shift
    case $_opt in
      -h | --help)
        _recipe_usage
        exit 0
        ;;
      --*=*)
        _name=${_opt%%=*}
        _value=${_opt#*=}
        ;;
      --*) _name=$_opt ;;
      *) die "unexpected argument '$_opt' (options are --name value; see --help)" ;;
    esac
    _name=${_name#--}
    _name=${_name//-/_}
    if ! [[ $_name =~ ^[a-z][a-z0-9_]*$ ]] || ! declare -p "$_name" &>/dev/null; then
      die "unknown option --${_name//_/-}"
    fi
    if [[ $_opt != *=* ]]; then
      if [[ ${!_name} == true || ${!_name} == false ]] && { (($# == 0)) || [[ $1 == --* ]]; }; then
        _value=true # bare boolean flag
      else
        (($#)) || die "option --${_name//_/-} needs a value"
        _value=$1
        shift
      fi
    fi
    printf -v "$_name" '%s' "$_value"
  done
  [[ $stage =~ ^[0-9]+$ && $stop_stage =~ ^[0-9]+$ ]] || die "--stage and --stop-stage take stage numbers"
}

# The s3l command and the Python interpreter beside it (for the recipes' own Python helpers).
require_s3l() {
  command -v s3l >/dev/null || die "s3l not found on PATH: run 'make demo', or 'source .venv/bin/activate'"
  s3l_python=$(dirname "$(command -v s3l)")/python
  [[ -x $s3l_python ]] || s3l_python=python3
}

# Microseconds since the epoch (bash's EPOCHREALTIME without its locale's decimal separator).
_now_us() {
  echo "${EPOCHREALTIME/[.,]/}"
}

# run_stage N NAME FUNCTION [ARGS...]: run FUNCTION ARGS as stage N unless it is outside --stage..--stop-stage or
# finished before; time it and leave the done-marker. Needs $exp.
run_stage() {
  : "${exp:?run_stage needs \$exp, the experiment directory}"
  local n=$1 name=$2
  shift 2
  ((n >= stage && n <= stop_stage)) || return 0
  local marker
  marker=$exp/done/$(printf '%02d' "$n")-$name.json
  if [[ -f $marker && $force_stages != true ]]; then
    log "stage $n ($name): done before, skipped (delete $marker to redo it)"
    return 0
  fi
  log "stage $n: $name"
  local t0 t1 ds
  t0=$(_now_us)
  "$@"
  t1=$(_now_us)
  ds=$(((t1 - t0) / 100000)) # deciseconds
  mkdir -p "$exp/done"
  printf '{"stage": %d, "name": "%s", "seconds": %d.%d, "finished": "%s"}\n' \
    "$n" "$name" $((ds / 10)) $((ds % 10)) "$(date -Iseconds)" >"$marker.tmp"
  mv "$marker.tmp" "$marker"
  log "stage $n ($name) finished in $((ds / 10)).$((ds % 10)) s"
}

# run_lanes FUNCTION...: run each FUNCTION (a "lane": stages that need only each other and finished stages) in the
# background, its output in $exp/logs/FUNCTION.log and its stage lines also on the terminal; wait for every lane and
# stop the recipe if one failed. On a 2-core machine two single-threaded jobs side by side do about twice the work of
# one job on both cores (tiny pre-training: 27 audio s/s on one thread, 31 on two). A lane that needs a stage of
# another lane calls wait_stage first.
run_lanes() {
  : "${exp:?run_lanes needs \$exp, the experiment directory}"
  mkdir -p "$exp/logs"
  rm -f "$exp/logs/failed"
  local f i failed=0 pids=()
  exec 3>&2
  for f in "$@"; do
    log "lane $f: output in $exp/logs/$f.log"
    (
      lane=$f
      trap '(($? == 0)) || echo "$lane" >>"$exp/logs/failed"' EXIT
      "$f"
    ) >"$exp/logs/$f.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { log "lane ${*:i+1:1} failed: see $exp/logs/${*:i+1:1}.log"; failed=1; }
  done
  exec 3>&-
  ((failed == 0)) || die "stopped: a lane failed"
}

# wait_stage N [M]: in a lane, wait until stage N (run by another lane, or before) has its done-marker. With M, the
# stage that needs N: no wait when M is outside --stage/--stop-stage or done before (run_stage M will skip it).
wait_stage() {
  local n marker
  if (($# > 1)); then
    ((${2} >= stage && ${2} <= stop_stage)) || return 0
    for marker in "$exp/done/$(printf '%02d' "$2")-"*.json; do
      [[ ! -f $marker || $force_stages == true ]] || return 0
    done
  fi
  n=$(printf '%02d' "$1")
  while :; do
    for marker in "$exp/done/$n-"*.json; do
      [[ -f $marker ]] && return 0
    done
    [[ ! -f $exp/logs/failed ]] || die "stage $1 will not finish: lane $(head -n 1 "$exp/logs/failed") failed"
    (($1 >= stage && $1 <= stop_stage)) || die "stage $1 has not run and is outside --stage $stage --stop-stage $stop_stage"
    sleep 1
  done
}

# wait_all: wait for every background job of this shell (started with `&` in a stage); fail if any of them failed.
wait_all() {
  local pid failed=0
  for pid in $(jobs -p); do
    wait "$pid" || failed=1
  done
  return "$failed"
}

# train_resume_flag DIR: --resume when DIR holds an interrupted run (checkpoint_last + training state), else
# --force (a run without its state file cannot be continued; it is started over).
train_resume_flag() {
  if [[ -f $1/checkpoint_last.safetensors && ( -f $1/checkpoint_last.state.safetensors \
        || -f $1/checkpoint_last.state.pt ) ]]; then  # the .pt state: written by s3l 0.1
    echo --resume
  else
    echo --force
  fi
}

# merge_splits DIR OUT IN1 IN2 ...: split DIR/OUT made of the splits DIR/IN1, DIR/IN2, ... whose audio roots are
# sibling directories (e.g. LibriSpeech's ROOT/train-clean-100 and ROOT/train-clean-360): the tsv root becomes their
# parent and every path is prefixed with its directory's name; .wrd and .ltr are concatenated in the same order when
# every input has them. The result is an ordinary split (README "File formats"), e.g. the 960 h of pre-training audio.
merge_splits() {
  local dir=$1 out=$2
  shift 2
  (($#)) || die "merge_splits: no input split"
  local s root parent="" ext
  for s in "$@"; do
    [[ -s $dir/$s.tsv ]] || die "$dir/$s.tsv: manifest not found or empty"
    root=$(head -n 1 "$dir/$s.tsv")
    root=${root%/}
    [[ -n $parent ]] || parent=$(dirname "$root")
    [[ $(dirname "$root") == "$parent" ]] || die "$dir/$s.tsv: audio root $root is not in $parent like the others'"
  done
  {
    echo "$parent"
    for s in "$@"; do
      root=$(head -n 1 "$dir/$s.tsv")
      root=${root%/}
      tail -n +2 "$dir/$s.tsv" | sed "s|^|${root##*/}/|"
    done
  } >"$dir/$out.tsv.tmp"
  mv "$dir/$out.tsv.tmp" "$dir/$out.tsv"
  for ext in wrd ltr; do
    rm -f "$dir/$out.$ext"
    for s in "$@"; do [[ -f $dir/$s.$ext ]] || continue 2; done
    for s in "$@"; do cat "$dir/$s.$ext"; done >"$dir/$out.$ext.tmp"
    mv "$dir/$out.$ext.tmp" "$dir/$out.$ext"
  done
}
