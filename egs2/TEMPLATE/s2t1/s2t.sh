#!/usr/bin/env bash
# The shared stage engine of espnet-gated recipes (ESPnet's s2t.sh vocabulary, no Kaldi tools).
#
# A recipe is a directory with local/data.sh and conf/; its run.sh calls this script from
# that directory. Every stage leaves a marker recording its options; re-running skips a
# finished stage whose options are unchanged and redoes a stage that was interrupted.
set -euo pipefail

engine_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)  # -P: a recipe may link egs2/
repo_root=$(cd "${engine_dir}/../../.." && pwd)

# ---------------------------------------------------------------- options (--name value)
stage=1                 # first stage to run
stop_stage=13           # last stage to run (14 pack, 16 upload, 17 sparsity sweep)
nj=2                    # parallel jobs for data preparation, formatting and decoding
ngpu=0                  # GPUs for training (and decoding if > 0: one per decoding job)
num_nodes=1             # nodes for multi-node training (ESPnet's launcher; see README)
train_cmd=local         # stage 11/17 training: local, or slurm [sbatch options] (one sbatch --wait job)
decode_cmd=local        # stage 12/17 decoding jobs: local, or slurm [sbatch options]; add --dry_run to print them
python=""               # python interpreter (default: <repo>/.venv/bin/python, else python3)
langs=""                # restrict to these languages, e.g. deu,fra (default: all in the data)
tasks=""                # restrict to these tasks, e.g. asr,st_eng (default: all)
local_data_opts=""      # options passed to local/data.sh
train_set=train         # training data dir under data/
valid_set=dev           # validation data dir under data/
test_sets=""            # test data dirs under data/ (default: every data/test*)
min_sec=0.3             # stage 4: shortest training utterance
max_sec=30              # stage 4: longest training utterance
on_bad_audio=error      # stage 3: error or skip (skipped ones are listed in bad_audio.txt)
nbpe=300                # stage 5: sentencepiece vocabulary size
bpemode=unigram         # stage 5: unigram or bpe
extra_langs=""          # stage 5: language tokens to reserve for later fine-tuning
token_list_dir=""       # stage 5: use this existing bpe.model + tokens.txt (e.g. OWSM's) instead
init_from=""            # stage 5: fine-tune this pretrained OWSM model dir or hub name (e.g. espnet/owsm_v3.1_ebf)
add_langs=""            # stage 5 with --init_from: languages to add to its token list, e.g. xyz or xyz=deu
freeze_backbone=false   # stage 11/17: train only the gate predictor (ESPnet --freeze_param on the rest)
train_config=conf/train.yaml    # stage 11: ESPnet training config of the gated model
pretrain_config=""      # stage 11: overrides of train_config to pretrain its architecture dense from scratch first (the
                        # part of OWSM with --init_from; e.g. conf/pretrain.yaml); the fine-tunings start from it
train_reference=true    # stage 11: also fine-tune without gates (ESPnet's dense model, train_config's schedule, the
                        # same start): the reference without pruning; false: the starting model is the reference
train_args=""           # stage 11: extra options for espnet_gated.bin.s2t_train
distill_teacher=reference  # stage 11/17: the teacher of train_config's distill_conf: reference (trained first) or start
                        # (the dense model the fine-tunings start from, --pretrain_config or --init_from)
seeds=""                # stage 11-13: training seeds (ESPnet's --seed), e.g. "0 1 2": stages 11-13 once per seed, see "Seeds" above (default: one run, the config's seed)
init_param=""           # stage 11: ESPnet --init_param (e.g. a dense OWSM model file)
tag=""                  # experiment name (default: derived from the training config and --init_from)
decode_config=conf/decode.yaml  # stage 12: decoding options (beam_size, ctc_weight, ...)
inference_model=valid.acc.ave.pth  # stage 12: checkpoint to decode with
inference_tag=""        # stage 12-13: suffix for decode/results dirs (default: none)
score_opts=""           # stage 13: extra options for espnet_gated.bin.score
hf_repo=""              # stage 14/16: Hugging Face hub repository to upload the pack to, e.g. user/name
sweep_targets="0.25 0.5 0.75"   # stage 17: sparsity targets
sweep_sides="enc dec both"      # stage 17: the sides each target applies to (enc, dec, both)
sweep_config=conf/sweep.yaml    # stage 17: overrides of train_config for every sweep run
sweep_budget="0 0.8"            # stage 17: per side also one budget-conditioned model over this range of skip rates
                                # ("": none), decoded at every --budget_points
budget_config=""                # stage 17: overrides for the budget models only, after sweep_config ("": none)
budget_points="0 0.1 0.2 0.25 0.3 0.4 0.5 0.6 0.7 0.75 0.8"  # stage 17: the budgets the budget model decodes at

help_message=$(cat <<EOF
Usage: $0 [--option value] ...

Stages (ESPnet's s2t.sh numbering):
  1  data preparation (local/data.sh -> data/)
  3  audio formatting: 16 kHz mono wav, checked (-> dump/raw/)
  4  length/language/task filtering; test sets split per language and task
  5  sentencepiece model and token list (-> data/token_list/); with --init_from: the pretrained
     model's tokens, gated config and weights (-> exp/init_<model>/)
  10 statistics collection (shapes)
  11 training (resumable): with --pretrain_config, dense pretraining (-> exp/<tag>_pretrain/); then from
     it (or from --init_from) the gated model with the sparsity controller (-> exp/<tag>/) and, with
     --train_reference true, the same fine-tuning without gates: the reference (-> exp/<tag>_reference/)
  12 decoding of every test set with the gated model (each utterance's gate mask recorded) and,
     interleaved set by set in the same jobs, with the reference (decode times side by side)
  13 scoring: WER/CER, BLEU/chrF, module usage, FLOPs, decode time, and the comparison with the
     reference that opens RESULTS.md, each change with its paired bootstrap 95% interval
     (-> exp/<tag>/results/)
  Seeds: --seeds "0 1 2" runs stages 11-13 once per seed (ESPnet's --seed): the first seed in
     exp/<tag>/, exp/<tag>_pretrain/, exp/<tag>_reference/ (as without --seeds; stages 14-17 use it),
     seed N in exp/<tag>_seedN/, exp/<tag>_seedN_pretrain/, exp/<tag>_seedN_reference/; the first
     seed's RESULTS.md opens with every seed's rows and the mean and standard deviation over seeds.
     The training config's own seed (conf/train.yaml: seed: 0) runs as without --seeds, so
     --seeds "0 1 2" after a plain run keeps its models and adds two seeds.
  14 pack: the model, its token list, BPE model, statistics, results and a model card (README.md)
     in ESPnet's packed layout (-> exp/<tag>/<tag>_<inference_model>.zip)
  15 (ESPnet's Zenodo upload, deprecated there: not provided; stage 16 uploads)
  16 upload of the pack to the Hugging Face hub repository --hf_repo (offline: says so, the pack stays)
  17 sparsity sweep: fine-tune at every target of every side, decode all runs and the reference
     together, quality-vs-speed table and plot (-> exp/<tag>_sweep/)

Jobs: --decode_cmd and --train_cmd run through espnet_gated.recipe.launcher: local (default) or
  slurm with sbatch options (--decode_cmd "slurm --partition gpu"); --ngpu 1 gives each decoding
  job its own GPU; "local --dry_run" prints the decoding jobs' command lines and runs nothing.

Options (default value in brackets):
$(sed -n '/^# -\{10,\} options/,/^help_message/p' "${BASH_SOURCE[0]}" | grep -E '^[a-z_]+=' | grep -v '^help_message=' |
  sed -E 's/^([a-z_]+)=("[^"]*"|[^ ]*) *(# *)?(.*)$/  --\1 [\2] \4/')
EOF
)

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) echo "${help_message}"; exit 0 ;;
        --*)
            name=${1#--}
            if ! grep -qE "^${name}=" "${BASH_SOURCE[0]}"; then
                echo "$0: unknown option --${name} (see --help)" >&2; exit 2
            fi
            [ $# -ge 2 ] || { echo "$0: option --${name} needs a value" >&2; exit 2; }
            printf -v "${name}" '%s' "$2"; shift 2 ;;
        *) echo "$0: unexpected argument '$1' (options are --name value; see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0") stage ${current_stage:-}) $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -z "${python}" ]; then
    if [ -x "${repo_root}/.venv/bin/python" ]; then python="${repo_root}/.venv/bin/python"; else python=python3; fi
fi
"${python}" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('espnet_gated') is None)" 2>/dev/null || die "espnet_gated is not importable with ${python}: run ${repo_root}/tools/setup.sh"
[ -x local/data.sh ] || die "$(pwd)/local/data.sh not found or not executable: run this from a recipe directory"
[ -f "${train_config}" ] || die "training config ${train_config} not found"
[ -f "${decode_config}" ] || die "decoding config ${decode_config} not found"

[ -n "${tag}" ] || tag="s2t_$(basename "${train_config}" .yaml)${init_from:+_$(basename "${init_from}")}"
token_dir=${token_list_dir:-data/token_list/${bpemode}${nbpe}}
stats_dir=exp/stats_${bpemode}${nbpe}
# --seeds: each a training seed; none: one run with the training config's seed
seed_list=()
for seed in ${seeds}; do
    [[ "${seed}" =~ ^[0-9]+$ ]] || die "--seeds: '${seed}' is not a non-negative integer"
    case " ${seed_list[*]} " in *" ${seed} "*) die "--seeds: seed ${seed} is given twice" ;; esac
    seed_list+=("${seed}")
done
[ "${#seed_list[@]}" -gt 0 ] || seed_list=("")

# ---------------------------------------------------------------- stage markers
# A marker holds the options a stage ran with; a stage is skipped only if its marker
# exists and matches. Markers are written after success, so an interrupted stage reruns.
run_stage() {  # run_stage N marker_dir "options that define the outputs"
    current_stage=$1
    local marker="$2/.stage$1.done"
    if [ "${stage}" -gt "$1" ] || [ "${stop_stage}" -lt "$1" ]; then return 1; fi
    if [ -f "${marker}" ] && [ "$(cat "${marker}")" = "$3" ]; then
        log "already done (${marker}); delete it to redo"; return 1
    fi
    rm -f "${marker}"
    log "start"
    return 0
}
mark_done() { mkdir -p "$1"; printf '%s' "$2" > "$1/.stage$3.done"; log "done"; }

all_test_sets() {
    if [ -n "${test_sets}" ]; then echo "${test_sets}"; return; fi
    [ -d data ] || return 0
    find data -mindepth 1 -maxdepth 1 -type d -name 'test*' -printf '%f\n' | sort | tr '\n' ' '
}
scored_test_sets() { cat dump/raw/test_sets.txt 2>/dev/null || true; }
# short checksum of a file (its options change a stage's marker); "none" before it exists
digest() { if [ -f "$1" ]; then md5sum < "$1" | cut -c1-12; else echo none; fi; }
# true if a launcher command line (--decode_cmd, --train_cmd) only prints its jobs
is_dry_run() { case " $1 " in *" --dry_run "*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------- stage 1
# the data depend on local/ and on conf/corpus.yaml (the corpus config, where a recipe has one)
opts="${local_data_opts} nj=${nj} $( { find local -type f -print0 | sort -z | xargs -0 cat; [ ! -f conf/corpus.yaml ] || cat conf/corpus.yaml; } | md5sum | cut -c1-12)"
if run_stage 1 data "${opts}"; then
    # shellcheck disable=SC2086
    PYTHON="${python}" local/data.sh --nj "${nj}" ${local_data_opts}
    mark_done data "${opts}" 1
fi

# ---------------------------------------------------------------- stage 3
opts="train=${train_set} valid=${valid_set} tests=$(all_test_sets) bad=${on_bad_audio} data=$(cat data/.stage1.done 2>/dev/null || true)"
if run_stage 3 dump/raw "${opts}"; then
    "${python}" -m espnet_gated.bin.format_wav --in_root data --out_root dump/raw/org --audio_root dump/audio \
        --sets "${train_set} ${valid_set}" --nj "${nj}" --on_bad_audio "${on_bad_audio}"
    "${python}" -m espnet_gated.bin.format_wav --in_root data --out_root dump/raw --audio_root dump/audio \
        --sets "$(all_test_sets)" --nj "${nj}" --on_bad_audio "${on_bad_audio}"
    mark_done dump/raw "${opts}" 3
fi

# ---------------------------------------------------------------- stage 4
opts="${opts} min=${min_sec} max=${max_sec} langs=${langs} tasks=${tasks}"
if run_stage 4 dump/raw "${opts}"; then
    filters=(--langs "${langs}" --tasks "${tasks}")
    "${python}" -m espnet_gated.bin.subset_data --in_root dump/raw/org --out_root dump/raw \
        --sets "${train_set} ${valid_set}" --min_sec "${min_sec}" --max_sec "${max_sec}" "${filters[@]}"
    "${python}" -m espnet_gated.bin.subset_data --in_root dump/raw --out_root dump/raw --sets "$(all_test_sets)" \
        --split_by_context true "${filters[@]}" --names_out dump/raw/test_sets.txt
    log "test sets: $(scored_test_sets | tr '\n' ' ')"
    mark_done dump/raw "${opts}" 4
fi

# ---------------------------------------------------------------- stage 5
opts="nbpe=${nbpe} mode=${bpemode} extra=${extra_langs} data=$(cat dump/raw/.stage4.done 2>/dev/null || true)"
if [ -n "${init_from}" ]; then
    # the pretrained model brings the token list, the architecture (merged with train_config) and the weights
    [ -z "${token_list_dir}${init_param}" ] || die "--init_from replaces --token_list_dir and --init_param"
    init_dir=exp/init_$(basename "${init_from}")
    opts="src=${init_from} add_langs=${add_langs} config=$(digest "${train_config}")"
    if run_stage 5 "${init_dir}" "${opts}"; then
        "${python}" -m espnet_gated.bin.init_from --src "${init_from}" --out "${init_dir}" \
            --train_config "${train_config}" --add_langs "${add_langs}" || die "--init_from ${init_from} failed"
        mark_done "${init_dir}" "${opts}" 5
    fi
    [ -f "${init_dir}/init_from.yaml" ] || die "${init_dir} is not prepared: run stage 5 with --init_from"
    token_dir=${init_dir}; train_config=${init_dir}/train.yaml; init_param=${init_dir}/init.pth
elif [ -n "${token_list_dir}" ]; then
    [ -f "${token_dir}/tokens.txt" ] && [ -f "${token_dir}/bpe.model" ] ||
        die "--token_list_dir ${token_dir} needs tokens.txt and bpe.model"
elif run_stage 5 "${token_dir}" "${opts}"; then
    "${python}" -m espnet_gated.bin.make_tokens --data_dir "dump/raw/${train_set}" --out_dir "${token_dir}" \
        --nbpe "${nbpe}" --bpemode "${bpemode}" --extra_langs "${extra_langs}"
    mark_done "${token_dir}" "${opts}" 5
fi

# ---------------------------------------------------------------- common training options
train_data_opts=()
for split in train valid; do
    if [ "${split}" = train ]; then dir=dump/raw/${train_set}; else dir=dump/raw/${valid_set}; fi
    train_data_opts+=(
        --${split}_data_path_and_name_and_type "${dir}/wav.scp,speech,sound"
        --${split}_data_path_and_name_and_type "${dir}/text,text,text"
        --${split}_data_path_and_name_and_type "${dir}/text.prev,text_prev,text"
        --${split}_data_path_and_name_and_type "${dir}/text.ctc,text_ctc,text"
    )
done
token_opts=(--token_type bpe --token_list "${token_dir}/tokens.txt" --bpemodel "${token_dir}/bpe.model")

# ---------------------------------------------------------------- stage 10
# statistics depend on the feature and text processing only, not on the model or the optimizer
stats_config=$("${python}" -c "import sys, yaml, json, hashlib
c = yaml.safe_load(open(sys.argv[1])) or {}
keys = ('frontend', 'frontend_conf', 'normalize', 'normalize_conf', 'preprocessor', 'preprocessor_conf')
print(hashlib.md5(json.dumps({k: c.get(k) for k in keys}, sort_keys=True).encode()).hexdigest()[:12])" "${train_config}")
opts="features=${stats_config} tokens=$(digest "${token_dir}/tokens.txt")"
if run_stage 10 "${stats_dir}" "${opts}"; then
    mkdir -p exp
    # shellcheck disable=SC2086
    "${python}" -m espnet_gated.bin.s2t_train --collect_stats true --config "${train_config}" "${token_opts[@]}" \
        "${train_data_opts[@]}" --train_shape_file "dump/raw/${train_set}/wav.scp" \
        --valid_shape_file "dump/raw/${valid_set}/wav.scp" --output_dir "${stats_dir}" --ngpu 0 \
        --num_workers 0 ${train_args} 2> "${stats_dir}.log" || die "statistics collection failed: see ${stats_dir}.log"
    mark_done "${stats_dir}" "${opts}" 10
fi

shape_opts=()
for split in train valid; do
    for name in speech_shape text_shape text_prev_shape text_ctc_shape; do
        shape_opts+=(--${split}_shape_file "${stats_dir}/${split}/${name}")
    done
done

# ---------------------------------------------------------------- stage 11
train_dir_identity() {  # train_dir_identity CONFIG [extra options...]: what a training dir's weights depend on
    local config=$1; shift
    echo "config=$(digest "${config}") tokens=$(digest "${token_dir}/tokens.txt") $* ${train_args}"
}
claim_train_dir() {  # claim_train_dir OUTPUT_DIR IDENTITY
    # an interrupted run with the same options resumes (ESPnet's --resume); one with other
    # options is moved aside, never mixed with the new run or deleted
    local out=$1 identity=$2
    if [ -f "${out}/.train_opts" ] && [ "$(cat "${out}/.train_opts")" != "${identity}" ]; then
        local old
        old="${out}.old.$(date +%Y%m%d-%H%M%S)"
        log "the options of ${out} changed since it was started: moving it to ${old}"
        mv "${out}" "${old}"
    fi
    mkdir -p "${out}"
    printf '%s' "${identity}" > "${out}/.train_opts"
}
train_model() {  # train_model OUTPUT_DIR CONFIG [extra options...]
    local out=$1 config=$2; shift 2
    claim_train_dir "${out}" "$(train_dir_identity "${config}" "$@")"
    # Distributed training goes through ESPnet's own logic (espnet2/train/distributed_utils.py,
    # with the options espnet2/bin/launch.py passes):
    # - one node, ngpu > 1: --multiprocessing_distributed true spawns one DDP process per GPU
    #   (NCCL); without it ESPnet falls back to single-process DataParallel.
    # - num_nodes > 1: run the recipe inside a Slurm allocation of num_nodes nodes with one task
    #   per node (sbatch/salloc --nodes N --ntasks-per-node 1); srun starts the trainer once per
    #   node, --dist_launcher slurm takes the ranks from SLURM_* and each node spawns ngpu
    #   workers. They meet through an init file on the shared file system that must not exist
    #   yet (a stale one from a killed run makes init_process_group fail or hang), hence a fresh
    #   name per launch. CPU nodes (ngpu 0) use gloo, as launch.py does.
    # (Several CPU processes on one machine work through ESPnet's external-launcher mode:
    #  torchrun --nproc_per_node N -m espnet_gated.bin.s2t_train ... --ngpu 0 \
    #  --multiprocessing_distributed false --dist_backend gloo; tests/test_resume_and_scale.py.)
    local launcher=() dist_opts=()
    if [ "${num_nodes}" -gt 1 ]; then
        # with --train_cmd slurm, srun runs inside the submitted job
        [ "${train_cmd}" != local ] || command -v srun >/dev/null ||
            die "--num_nodes ${num_nodes} needs Slurm's srun (run inside an allocation, or use --train_cmd slurm)"
        rm -f "${out}"/.dist_init_*
        launcher=(srun --nodes "${num_nodes}" --ntasks-per-node 1 --export=ALL)
        dist_opts=(--dist_launcher slurm --multiprocessing_distributed true
            --dist_init_method "file://$(cd "${out}" && pwd)/.dist_init_$(date +%s)_$$")
        [ "${ngpu}" -gt 0 ] || dist_opts+=(--dist_backend gloo)
    elif [ "${ngpu}" -gt 1 ]; then
        dist_opts=(--multiprocessing_distributed true)
    fi
    local freeze_opts=()  # every module but the gate predictor (espnet_gated.sharing.init_from.backbone_modules)
    [ "${freeze_backbone}" = false ] || freeze_opts=(--freeze_param frontend normalize encoder decoder ctc)
    local submit=()  # --train_cmd slurm: the whole training (srun included) as one sbatch --wait job
    # shellcheck disable=SC2206
    [ "${train_cmd}" = local ] || submit=("${python}" -m espnet_gated.bin.launch ${train_cmd} --gpu "${ngpu}"
        --nodes "${num_nodes}" JOB=1:1 "${out}/launch.log" --)
    log "training ${out} (log: ${out}/train.log)"
    # the trainer's own exit status decides (PIPESTATUS[0]), not the progress filter's: a model
    # file left by an earlier run must not hide a crash of this one
    local status=(0 0)
    # shellcheck disable=SC2086
    "${submit[@]}" "${launcher[@]}" "${python}" -m espnet_gated.bin.s2t_train --config "${config}" "${token_opts[@]}" \
        "${train_data_opts[@]}" "${shape_opts[@]}" --output_dir "${out}" --ngpu "${ngpu}" --resume true "${dist_opts[@]}" \
        "${freeze_opts[@]}" ${train_args} "$@" 2>&1 |
        "${python}" "${repo_root}/espnet_gated/bin/train_progress.py" --config "${config}" --log "${out}/train.log" ||
        status=("${PIPESTATUS[@]}")
    if [ "${status[0]}" -ne 0 ]; then
        log "ERROR: training failed (exit status ${status[0]}); the last lines of ${out}/train.log:"
        tail -n 20 "${out}/train.log" | sed 's/^/    /' >&2
        exit 1
    fi
    [ "${status[1]}" -eq 0 ] || log "WARNING: the progress filter failed (exit status ${status[1]}): ${out}/train.log lacks lines"
    if is_dry_run "${train_cmd}"; then log "dry run (--train_cmd ${train_cmd}): nothing trained"; exit 0; fi
    [ -f "${out}/${inference_model}" ] || die "training did not produce ${out}/${inference_model}: see ${out}/train.log"
}

# The gated model and the reference without pruning fine-tune the same starting model with the same
# schedule (train_config), with and without gates: the same budget, only the gates differ. The start
# is the dense pretraining of pretrain_config (from scratch), else --init_from/--init_param, else none.
# Their configs derive from train_config and pretrain_config, made when stage 11 runs.
# The reference decoded next to the gated model (stages 12-13): the dense fine-tuning of stage 11; else
# the starting model (pretrained, or --init_from); else the gated model itself with every module kept.
use_seed() {  # use_seed SEED: the runs of one seed ("": the config's seed), its directories and options
    seed=$1
    local run_tag=${tag}
    [ -z "${seed}" ] || [ "${seed}" = "${seed_list[0]}" ] || run_tag=${tag}_seed${seed}
    # the training config's own seed trains as without --seeds (same options and markers): adding
    # seeds beside a finished run keeps it
    seed_opts=() seed_mark=""
    if [ -n "${seed}" ] && [ "${seed}" != "${config_seed}" ]; then
        seed_opts=(--seed "${seed}") seed_mark=" seed=${seed}"
    fi
    expdir=exp/${run_tag}
    decode_dir=${expdir}/decode${inference_tag:+_${inference_tag}}
    results_dir=${expdir}/results${inference_tag:+_${inference_tag}}
    start=${init_param} pretrain_dir="" ref_dir=""
    if [ -n "${pretrain_config}" ]; then
        pretrain_dir=exp/${run_tag}_pretrain
        start=${pretrain_dir}/${inference_model}
    fi
    [ "${train_reference}" != true ] || ref_dir=exp/${run_tag}_reference
    if [ -n "${ref_dir}" ]; then
        ref_model=${ref_dir}/${inference_model}; ref_root=${ref_dir}
        ref_label="${ref_dir}: ESPnet's dense model fine-tuned like the gated one from the same start (${start:-random weights}), without gates"
    elif [ -n "${start}" ]; then
        ref_model=${start%%:*}; ref_root=exp/${run_tag}_start
        ref_label="the starting model before fine-tuning (${start%%:*}), every module kept"
    else
        ref_model=${expdir}/${inference_model}; ref_root=${expdir}/all_open
        ref_label="the gated model with every module kept (same weights; no separately trained reference)"
    fi
    ref_decode_dir=${ref_root}/decode${inference_tag:+_${inference_tag}}
    ref_results_dir=${ref_root}/results${inference_tag:+_${inference_tag}}
    # what the seed's decode and scores depend on: its trained models (stage 11's marker, the model files)
    model_id="$(cat "${expdir}/.stage11.done" 2>/dev/null || true) $( { stat -c %Y "${expdir}/${inference_model}" "${ref_model}" 2>/dev/null || true; } | tr '\n' ' ')"
    decode_opts="model=${model_id} decode=$(digest "${decode_config}") sets=$(scored_test_sets | tr '\n' ' ')"
}
# whether train_config distils from a dense teacher (model_conf.distill_conf; --distill_teacher)
distilling=false
if "${python}" -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1])) or {}; sys.exit('distill_conf' not in (c.get('model_conf') or {}))" "${train_config}"; then
    distilling=true
fi
make_gated_config() {  # make_gated_config OUT [options of espnet_gated.bin.make_config...]: train_config with the
    # options; with model_conf.distill_conf the teacher is --distill_teacher (espnet_gated/method/distill.py)
    local out=$1 teacher_opts=() teacher
    shift
    if [ "${distilling}" = true ]; then
        case "${distill_teacher}" in
            start)
                [ -n "${start}" ] || die "model_conf.distill_conf of ${train_config} needs a dense starting model (--pretrain_config or --init_from)"
                teacher=${start%%:*} ;;
            reference)
                [ -n "${ref_dir}" ] || die "--distill_teacher reference needs the reference (--train_reference true); or distil from the starting model (--distill_teacher start)"
                teacher=${ref_dir}/${inference_model} ;;
            *) die "--distill_teacher: ${distill_teacher} is not start or reference" ;;
        esac
        teacher_opts=(--set "model_conf.distill_conf.teacher_config=$(dirname "${teacher}")/config.yaml"
            --set "model_conf.distill_conf.teacher_model=${teacher}")
        log "${out}: the gated model learns from ${teacher} too (model_conf.distill_conf)"
    fi
    "${python}" -m espnet_gated.bin.make_config "${train_config}" "$@" "${teacher_opts[@]}" --out "${out}" ||
        die "cannot make ${out} from ${train_config}"
}
mkdir -p exp
[ -z "${pretrain_config}" ] || [ -f "${pretrain_config}" ] || die "pretraining config ${pretrain_config} not found"
config_seed=$("${python}" -c "import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get('seed', 0))" "${train_config}")

opts="${opts} config=$(digest "${train_config}") train_args=${train_args} init=${init_param} freeze=${freeze_backbone}"
opts="${opts} pretrain=$(digest "${pretrain_config}") reference=${train_reference}"
if [ "${distilling}" = true ]; then opts="${opts} teacher=${distill_teacher}"; fi
train_reference_model() {  # the seed's reference: train_config's fine-tuning without gates, from the same start
    "${python}" -m espnet_gated.bin.make_config "${train_config}" --dense --out "${ref_dir}.yaml" ||
        die "cannot make the reference config from ${train_config}"
    log "the reference without pruning: the same fine-tuning without gates (${ref_dir})"
    train_model "${ref_dir}" "${ref_dir}.yaml" "${seed_opts[@]}" ${start:+--init_param "${start}"}
}
# the reference teaches the gated model (--distill_teacher reference): then it trains first
teacher_first=false
if [ "${distilling}" = true ] && [ "${distill_teacher}" = reference ]; then teacher_first=true; fi
train_opts=${opts}
for seed in "${seed_list[@]}"; do
    use_seed "${seed}"
    opts="${train_opts}${seed_mark}"
    if run_stage 11 "${expdir}" "${opts}"; then
        [ -z "${seed}" ] || log "seed ${seed}: ${pretrain_dir:+${pretrain_dir}, }${expdir}${ref_dir:+, ${ref_dir}}"
        if [ -n "${pretrain_dir}" ]; then
            "${python}" -m espnet_gated.bin.make_config "${train_config}" --dense --merge "${pretrain_config}" \
                --out "${pretrain_dir}.yaml" || die "cannot make the pretraining config from ${train_config} and ${pretrain_config}"
            log "dense pretraining (${pretrain_dir}); then the gated model and the reference fine-tune from it"
            train_model "${pretrain_dir}" "${pretrain_dir}.yaml" "${seed_opts[@]}" ${init_param:+--init_param "${init_param}"}
        fi
        if [ -n "${ref_dir}" ] && [ "${teacher_first}" = true ]; then train_reference_model; fi
        gated_config=${train_config}
        if [ "${distilling}" = true ]; then
            gated_config=${expdir}.yaml
            make_gated_config "${gated_config}"
        fi
        train_model "${expdir}" "${gated_config}" "${seed_opts[@]}" ${start:+--init_param "${start}"}
        if [ -n "${ref_dir}" ] && [ "${teacher_first}" = false ]; then train_reference_model; fi
        mark_done "${expdir}" "${opts}" 11
    fi
done

# ---------------------------------------------------------------- stages 12-13
decode_sets() {  # decode_sets MODEL_DIR DECODE_DIR DECODE_CONFIG [--system SPEC ...]
    # the nj jobs go through the launcher (${decode_cmd}), each on its own GPU with --ngpu > 0; then the merge
    local gpu opts model_dir=$1 decode_dir=$2 config=$3
    shift 3
    gpu=$([ "${ngpu}" -gt 0 ] && echo 1 || echo 0)
    opts=(--s2t_train_config "${model_dir}/config.yaml" --s2t_model_file "${model_dir}/${inference_model}"
        --decode_config "${config}" --data_root dump/raw --sets "$(scored_test_sets | tr '\n' ' ')"
        --out_dir "${decode_dir}" --nj "${nj}" --ngpu "${gpu}" "$@")
    # shellcheck disable=SC2086
    "${python}" -m espnet_gated.bin.launch ${decode_cmd} --gpu "${gpu}" JOB=1:"${nj}" "${decode_dir}/logs/launch.JOB.log" \
        "${python}" -m espnet_gated.bin.decode "${opts[@]}" --job JOB || die "decoding ${decode_dir} failed (logs: ${decode_dir}/logs/)"
    if is_dry_run "${decode_cmd}"; then log "dry run (--decode_cmd ${decode_cmd}): nothing decoded"; exit 0; fi
    "${python}" -m espnet_gated.bin.decode "${opts[@]}" --merge true
}
score_sets() {  # score_sets MODEL_DIR DECODE_DIR RESULTS_DIR DECODE_CONFIG [options of espnet_gated.bin.score...]
    local model_dir=$1 decode_dir=$2 results=$3 config=$4 beam; shift 4
    beam=$("${python}" -c "import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get('beam_size', 5))" "${config}")
    # shellcheck disable=SC2086
    "${python}" -m espnet_gated.bin.score --ref_root dump/raw --decode_dir "${decode_dir}" --config "${model_dir}/config.yaml" \
        --test_sets "$(scored_test_sets | tr '\n' ' ')" --beam_size "${beam}" --out "${results}" ${score_opts} "$@"
}
reference_system() {  # reference_system DECODE_DIR: the decode option that adds the reference
    echo "out_dir=$1,s2t_model_file=${ref_model},gate_mode=all_open"
}

# Each seed's gated model and reference are decoded in the same jobs, then scored; the first seed is
# scored last: with several seeds its RESULTS.md adds the other seeds' rows and the mean and spread.
for seed in "${seed_list[@]}"; do
    use_seed "${seed}"
    if run_stage 12 "${decode_dir}" "${decode_opts}"; then
        decode_sets "${expdir}" "${decode_dir}" "${decode_config}" --system "$(reference_system "${ref_decode_dir}")"
        mark_done "${decode_dir}" "${decode_opts}" 12
    fi
done
seed_runs=()
for seed in "${seed_list[@]:1}" "${seed_list[0]}"; do
    use_seed "${seed}"
    opts="${decode_opts} score=${score_opts}"
    seed_args=()
    if [ "${#seed_list[@]}" -gt 1 ] && [ "${seed}" = "${seed_list[0]}" ]; then
        seed_args=(--seed_runs "${seed}=${results_dir}" "${seed_runs[@]}")
        opts="${opts} seeds=${seed_list[*]} $(for run in "${seed_runs[@]}"; do digest "${run#*=}/summary.json"; done | tr '\n' ' ')"
    fi
    if run_stage 13 "${results_dir}" "${opts}"; then
        score_sets "${expdir}" "${ref_decode_dir}" "${ref_results_dir}" "${decode_config}" --all_open
        score_sets "${expdir}" "${decode_dir}" "${results_dir}" "${decode_config}" \
            --reference "${ref_results_dir}" --reference_label "${ref_label}" "${seed_args[@]}"
        log "results: ${results_dir}/RESULTS.md"
        mark_done "${results_dir}" "${opts}" 13
    fi
    seed_runs+=("${seed}=${results_dir}")
done
# stages 14-17 take the first seed's runs (use_seed above), and its own scores' options
opts="${decode_opts} score=${score_opts}"

# ---------------------------------------------------------------- stages 14-16
# ESPnet's numbering: 14 packs the model (espnet_gated.bin.pack: ESPnet's layout plus a model card
# with the results of stage 13), 15 is ESPnet's Zenodo upload (not provided), 16 uploads the pack
# to the Hugging Face hub (espnet_gated.bin.upload; without the network the pack stays ready and
# the stage is not marked done, so a later run uploads it).
packed_model=${expdir}/${tag}_${inference_model%.*}.zip
stamp() { if [ -f "$1" ]; then stat -c '%s.%Y' "$1"; else echo none; fi; }
scored_opts=${opts}
opts="model=${model_id} results=$(digest "${results_dir}/scores.json").$(digest "${results_dir}/RESULTS.md") hf=${hf_repo}"
if run_stage 14 "${expdir}" "${opts}"; then
    [ -f "${expdir}/${inference_model}" ] || die "${expdir}/${inference_model} not found: train first (stage 11)"
    "${python}" -m espnet_gated.bin.pack --s2t_train_config "${expdir}/config.yaml" \
        --s2t_model_file "${expdir}/${inference_model}" --results_dir "${results_dir}" --out "${packed_model}" \
        ${hf_repo:+--hf_repo "${hf_repo}"} || die "packing failed"
    log "pack: ${packed_model} (model card: README.md in it)"
    mark_done "${expdir}" "${opts}" 14
fi
if [ "${stage}" -le 15 ] && [ "${stop_stage}" -ge 15 ]; then
    current_stage=15
    log "ESPnet's Zenodo upload is not provided (deprecated in ESPnet): stage 16 uploads to the Hugging Face hub"
fi
opts="pack=$(stamp "${packed_model}") hf=${hf_repo}"
if run_stage 16 "${expdir}" "${opts}"; then
    if [ -z "${hf_repo}" ]; then
        log "WARNING: no --hf_repo given: nothing uploaded (the pack: ${packed_model}, stage 14)"
    else
        [ -f "${packed_model}" ] || die "${packed_model} not found: pack the model first (stage 14)"
        rc=0
        "${python}" -m espnet_gated.bin.upload --pack "${packed_model}" --hf_repo "${hf_repo}" \
            --work_dir "exp/hf_${hf_repo//\//_}" || rc=$?
        case "${rc}" in
            0) mark_done "${expdir}" "${opts}" 16 ;;
            3) log "WARNING: not uploaded (see above); the pack is ready, run stage 16 again to upload it" ;;
            *) die "uploading ${packed_model} failed" ;;
        esac
    fi
fi
opts=${scored_opts}

# ---------------------------------------------------------------- stage 17
# Every target of every side is a fine-tuning of train_config (with sweep_config's overrides) from
# where the gated model started (the same budget as the gated model and the reference), or, with no
# starting model, from the trained gated model (its gate schedules restarted). All runs and the
# reference are then decoded together, interleaved set by set, so their decode times compare side by side.
sweep_dir=exp/${tag}_sweep
opts="${opts} targets=${sweep_targets} sides=${sweep_sides} sweep=$(digest "${sweep_config}")"
opts="${opts} budget=${sweep_budget} points=${budget_points} budget_config=$(digest "${budget_config}")"
if run_stage 17 "${sweep_dir}" "${opts}"; then
    [ -f "${sweep_config}" ] || die "sweep config ${sweep_config} not found"
    budget_merge=()
    if [ -n "${budget_config}" ]; then
        [ -f "${budget_config}" ] || die "budget config ${budget_config} not found"
        budget_merge=(--merge "${budget_config}")
    fi
    if [ -n "${start}" ]; then
        sweep_start=${start}
    else
        sweep_start="${expdir}/${inference_model}:::gate_predictor.train_steps,sparsity_controller"
    fi
    sweep_train() {  # sweep_train RUN_DIR: fine-tune RUN_DIR.yaml from the sweep's start (again if its config changed)
        local identity
        identity=$(train_dir_identity "$1.yaml" --init_param "${sweep_start}")
        if [ ! -f "$1/.sweep.done" ] || [ "$(cat "$1/.sweep.done")" != "${identity}" ]; then
            train_model "$1" "$1.yaml" --init_param "${sweep_start}"
            printf '%s' "${identity}" > "$1/.sweep.done"
        fi
    }
    runs=() systems=() pairs=() versus=()
    declare -A budget_opts=()
    for side in ${sweep_sides}; do
        case "${side}" in enc|dec|both) ;; *) die "--sweep_sides: ${side} is not enc, dec or both" ;; esac
        for target in ${sweep_targets}; do
            name=${side}${target}
            run_dir=${sweep_dir}/${name}
            targets=()  # per task where train_config's targets are (make_config --target)
            [ "${side}" = dec ] || targets+=(--target "enc=${target}")
            [ "${side}" = enc ] || targets+=(--target "dec=${target}")
            make_gated_config "${run_dir}.yaml" --merge "${sweep_config}" "${targets[@]}"
            sweep_train "${run_dir}"
            runs+=("${name}=${run_dir}=${run_dir}")  # name=model dir=decode and results dir
        done
        if [ -n "${sweep_budget}" ]; then
            # one budget-conditioned model of the side, decoded at every budget point
            read -r low high <<< "${sweep_budget}"
            run_dir=${sweep_dir}/${side}_budget
            budget_sides=$(case "${side}" in enc) echo enc ;; dec) echo dec ;; both) echo enc+dec ;; esac)
            make_gated_config "${run_dir}.yaml" --merge "${sweep_config}" "${budget_merge[@]}" \
                --budget "${budget_sides}=${low},${high}"
            sweep_train "${run_dir}"
            option=$(case "${side}" in enc) echo enc_sparsity ;; dec) echo dec_sparsity ;; both) echo sparsity ;; esac)
            for point in ${budget_points}; do
                runs+=("${side}_budget@${point}=${run_dir}=${run_dir}/at${point}" )
                budget_opts["${run_dir}/at${point}"]="${option}=${point}"
                for target in ${sweep_targets}; do  # a budget that a fixed run was trained for: a paired comparison
                    if awk -v a="${point}" -v b="${target}" 'BEGIN { exit !(a + 0 == b + 0) }'; then
                        pairs+=("${side}_budget@${point}=${side}${target}=${run_dir}=${run_dir}/at${point}")
                    fi
                done
            done
        fi
    done
    # one decode for all: the first run is the main system, the others and the reference join it
    IFS="=" read -r _ first first_out <<< "${runs[0]}"
    [ -z "${budget_opts[${first_out}]:-}" ] || die "the sweep's first run must be a fixed-target one (--sweep_targets)"
    systems=(--system "$(reference_system "${sweep_dir}/reference/decode")")
    for run in "${runs[@]:1}"; do
        IFS="=" read -r _ model out <<< "${run}"
        systems+=(--system "out_dir=${out}/decode,s2t_model_file=${model}/${inference_model},s2t_train_config=${model}/config.yaml${budget_opts[${out}]:+,${budget_opts[${out}]}}")
    done
    decode_sets "${first}" "${first_out}/decode" "${decode_config}" "${systems[@]}"
    score_sets "${expdir}" "${sweep_dir}/reference/decode" "${sweep_dir}/reference/results" "${decode_config}" --all_open
    reports=("reference=${sweep_dir}/reference/results")
    for run in "${runs[@]}"; do
        IFS="=" read -r name model out <<< "${run}"
        score_sets "${model}" "${out}/decode" "${out}/results" "${decode_config}" \
            --reference "${sweep_dir}/reference/results" --reference_label "${ref_label}"
        reports+=("${name}=${out}/results")
    done
    for pair in "${pairs[@]}"; do  # the budget model against the fixed run of the same target, paired
        IFS="=" read -r name against model out <<< "${pair}"
        score_sets "${model}" "${out}/decode" "${out}/vs_${against}" "${decode_config}" \
            --reference "${sweep_dir}/${against}/results" --reference_label "${against}: trained for that target"
        versus+=("${name}=${against}=${out}/vs_${against}")
    done
    "${python}" -m espnet_gated.bin.sweep_report --runs "${reports[@]}" --versus "${versus[@]}" --out "${sweep_dir}"
    log "sweep: ${sweep_dir}/sweep.md"
    mark_done "${sweep_dir}" "${opts}" 17
fi
