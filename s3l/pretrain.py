"""``s3l pretrain``: wav2vec 2.0 (contrastive) or HuBERT pre-training on a manifest, through the shared loop.

The run directory (``--out``) holds ``config.json`` (the effective configuration), ``train.jsonl`` /
``valid.jsonl`` (metrics), ``checkpoint_last.safetensors`` + ``checkpoint_last.state.safetensors`` (resumable) and
``checkpoint_best.safetensors`` (lowest validation loss), and ``summary.json`` at the end.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from s3l.errors import S3LError
from s3l.train.run import RunSettings


@dataclass(frozen=True)
class Optimisation:
    """Optimisation and data settings of a preset (wav2vec 2.0 §4.2, HuBERT §IV-C, fairseq pre-training yamls).
    ``max_tokens`` is per process and micro-batch: the papers' batches are max_tokens x GPUs (emulate GPUs with
    ``update_freq``)."""

    lr: float
    warmup_updates: int  # 8 % of max_updates in both papers
    max_updates: int
    max_tokens: int  # samples per batch (batch size x cropped length)
    max_sample_size: int = 250_000  # crop longer utterances (15.6 s)
    min_sample_size: int = 32_000  # skip shorter ones (2 s)
    clip_norm: float = 0.0  # 0 = none (fairseq's default; the wav2vec 2.0 yamls set none)
    update_freq: int = 1
    valid_interval: int = 10_000  # hubert_*.yaml validate_interval_updates
    save_interval: int = 25_000  # save_interval_updates
    log_interval: int = 200
    # Gumbel temperature (contrastive): None keeps the model's per-update decay (the papers' 0.999995, sized for
    # 400k updates); a fraction f sets the decay so that tau reaches its floor after f x max_updates updates.
    temp_floor_at: float | None = None


_TINY = Optimisation(lr=1e-3, warmup_updates=120, max_updates=1_500, max_tokens=64_000, max_sample_size=32_000,
                     min_sample_size=8_000, valid_interval=150, save_interval=150, log_interval=25)
OPTIMISATION: dict[tuple[str, str], Optimisation] = {
    # CPU demo (not from the papers), 8 % warm-up, lr 1e-3 for the small model. HuBERT: 4 s of audio per update in
    # 2 s crops (~0.4 s per update on one free core). wav2vec 2.0: 32 s per update (16 x 2 s crops, ~0.8 s per
    # update beside another job), 800 updates (~10-11 min). The contrastive task needs the larger batch: with 4 s
    # per update its loss stayed on the ln(K + 1) plateau for 2,000 updates in every setting tried; with 32 s it
    # leaves it after ~175 updates (measured; see the tiny preset in s3l/models/config.py).
    # Its Gumbel temperature is scaled to the run: BASE's 0.999995 per update takes 2.0 to 0.5 in 277k of 400k
    # updates (69 %); over 800 updates it would stay at 1.99. tiny reaches its floor at the same 69 %.
    ("tiny", "contrastive"): dataclasses.replace(_TINY, max_tokens=512_000, warmup_updates=64, max_updates=800,
                                                 valid_interval=100, save_interval=100, temp_floor_at=0.69),
    ("tiny", "hubert"): dataclasses.replace(_TINY, clip_norm=10.0),
    # wav2vec 2.0 BASE (§4.2, wav2vec2_base_librispeech.yaml): peak 5e-4, 400k updates, 1.4M samples x 64 GPUs.
    ("base", "contrastive"): Optimisation(lr=5e-4, warmup_updates=32_000, max_updates=400_000, max_tokens=1_400_000),
    # wav2vec 2.0 LARGE on LV-60k (§4.2): peak 3e-4, 600k updates, 8 % warm-up, 1.2M samples x 128 GPUs, 20 s crops.
    # (fairseq's wav2vec2_large_librivox.yaml says lr 0.005, 1M updates, 32k warm-up; the paper's values are used.)
    ("large", "contrastive"): Optimisation(lr=3e-4, warmup_updates=48_000, max_updates=600_000,
                                           max_tokens=1_200_000, max_sample_size=320_000),
    # HuBERT BASE (§IV-C, hubert_base_librispeech.yaml): 5e-4, 400k updates (iteration 2), 32 GPUs, clip 10.
    ("base", "hubert"): Optimisation(lr=5e-4, warmup_updates=32_000, max_updates=400_000, max_tokens=1_400_000,
                                     clip_norm=10.0),
    # HuBERT LARGE / X-LARGE (hubert_{large,xlarge}_librivox.yaml): 1.5e-3 / 3e-3, 128 / 256 GPUs, clip 1.
    ("large", "hubert"): Optimisation(lr=1.5e-3, warmup_updates=32_000, max_updates=400_000, max_tokens=900_000,
                                      clip_norm=1.0),
    ("xlarge", "hubert"): Optimisation(lr=3e-3, warmup_updates=32_000, max_updates=400_000, max_tokens=360_000,
                                       clip_norm=1.0),
}


@dataclass(frozen=True)
class PretrainConfig(RunSettings):
    """Everything ``s3l pretrain`` needs, beyond the :class:`~s3l.train.run.RunSettings` both trainers share.
    ``None`` means "the preset's value" (see :func:`resolve`)."""

    objective: str  # "contrastive" or "hubert"
    data: Path  # directory with {train_split}.tsv and {valid_split}.tsv
    out: Path  # run directory
    train_split: str = "train"
    preset: str = "base"
    labels: tuple[Path, ...] = ()  # HuBERT label directories ({split}.km, dict.km.txt, labels.json)
    label_rate: tuple[float, ...] = ()  # Hz per label set (or one for all) when labels.json does not say
    # model overrides (fairseq mask_prob convention: mask_prob = p * mask_length)
    mask_prob: float | None = None
    mask_length: int | None = None
    masked_weight: float | None = None
    # optimisation overrides
    warmup_updates: int | None = None
    max_sample_size: int | None = None
    min_sample_size: int | None = None
    temp_floor_at: float | None = None  # contrastive: Gumbel tau at its floor after this fraction of max_updates
    weight_decay: float = 0.01


def resolve(cfg: PretrainConfig, label_rates: tuple[float, ...] = ()) -> tuple[Any, Optimisation]:
    """The effective model config and optimisation settings: the preset's, with the given overrides."""
    from s3l.models import preset
    from s3l.train.run import parse_model_args

    if (cfg.preset, cfg.objective) not in OPTIMISATION:
        preset(cfg.preset, cfg.objective)  # raises the models' own message for unknown names
    model = preset(cfg.preset, cfg.objective)
    changes: dict[str, Any] = parse_model_args(model, cfg.model_args)
    for name in ("mask_prob", "mask_length", "masked_weight"):
        if getattr(cfg, name) is not None:
            changes[name] = getattr(cfg, name)
    if label_rates:
        changes["label_rates"] = label_rates
    model = model.replace(**changes)
    opt = OPTIMISATION[(cfg.preset, cfg.objective)]
    opt = dataclasses.replace(opt, **{f.name: getattr(cfg, f.name) for f in fields(Optimisation)
                                      if getattr(cfg, f.name) is not None})
    if cfg.warmup_updates is None and cfg.max_updates is not None:  # keep the papers' 8 % warm-up
        opt = dataclasses.replace(opt, warmup_updates=max(1, round(0.08 * opt.max_updates)))
    for name in ("max_updates", "max_tokens", "update_freq", "valid_interval", "save_interval", "log_interval"):
        if getattr(opt, name) < 1:
            raise S3LError(f"--{name.replace('_', '-')} must be at least 1")
    if opt.lr <= 0 or opt.warmup_updates < 0 or opt.clip_norm < 0:
        raise S3LError("--lr must be positive, --warmup-updates and --clip-norm not negative")
    if opt.temp_floor_at is not None and not 0 < opt.temp_floor_at <= 1:
        raise S3LError(f"--temp-floor-at must be in (0, 1], got {opt.temp_floor_at}")
    if opt.temp_floor_at is not None and cfg.objective == "contrastive" and not any(
            k == "latent_temp" for k, _ in cfg.model_args):  # an explicit --model-arg latent_temp wins
        model = model.replace(latent_temp=annealed_temp(model.latent_temp, opt.temp_floor_at * opt.max_updates))
    if opt.max_sample_size > opt.max_tokens:
        raise S3LError(f"--max-sample-size {opt.max_sample_size} exceeds --max-tokens {opt.max_tokens}: "
                       "no batch could hold one utterance")
    return model, opt


def annealed_temp(temp: tuple[float, float, float], updates: float) -> tuple[float, float, float]:
    """(max, min, decay) with the decay per update that takes max to min in ``updates`` updates."""
    t_max, t_min, _ = temp
    return t_max, t_min, (t_min / t_max) ** (1.0 / max(updates, 1.0))


def run_pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Pre-train and return the summary (also written to ``summary.json``)."""
    from s3l import distributed
    from s3l.manifest import load_split
    from s3l.models import build_pretrain_model
    from s3l.models.objectives import OBJECTIVES, kind_of_objective
    from s3l.train.log import seed_everything
    from s3l.train.loop import LoopConfig, train
    from s3l.train.optim import LinearSchedule
    from s3l.train.run import check_resume, choose_valid_split, prepare_out, resolve_precision, write_summary

    if cfg.objective not in OBJECTIVES:
        raise S3LError(f"--objective must be {' or '.join(OBJECTIVES)}, got {cfg.objective!r}")
    needs_labels = kind_of_objective(cfg.objective).labels
    if cfg.labels and not needs_labels:
        raise S3LError(f"--labels are the targets of --objective hubert; {cfg.objective} pre-training needs none")
    if needs_labels and not cfg.labels:
        raise S3LError(f"--objective {cfg.objective} needs --labels DIR (unit files from `s3l cluster`)")
    with distributed.process_group(cfg.device) as info:
        train_split = load_split(cfg.data, cfg.train_split)
        valid_name = choose_valid_split(cfg.data, cfg.valid_split, info.is_main)
        valid_split = load_split(cfg.data, valid_name) if valid_name else None
        rates = label_rates(cfg)
        model_cfg, opt = resolve(cfg, rates)
        precision = resolve_precision(cfg.precision, info.device)
        prepare_out(cfg.out, cfg.resume, cfg.force, info.is_main)
        train_data, valid_data, num_classes, report = _build_data(cfg, opt, rates, train_split, valid_split, info)
        if cfg.resume:
            check_resume(cfg.out, model_cfg)
        if info.is_main:
            _announce(cfg, model_cfg, opt, precision, info, report)
        seed_everything(cfg.seed)  # the same initial weights in every process
        model = build_pretrain_model(model_cfg, num_classes or None)
        loop_cfg = LoopConfig(
            max_updates=opt.max_updates, schedule=LinearSchedule(opt.lr, opt.warmup_updates, opt.max_updates),
            update_freq=opt.update_freq, clip_norm=opt.clip_norm, weight_decay=cfg.weight_decay,
            precision=precision, valid_interval=opt.valid_interval, save_interval=opt.save_interval,
            log_interval=opt.log_interval, max_bad_updates=cfg.max_bad_updates, seed=cfg.seed,
            num_workers=cfg.num_workers, resume=cfg.resume,
            find_unused_parameters=model_cfg.encoder_layerdrop > 0 or model_cfg.feature_grad_mult == 0,
        )
        distributed.set_cpu_threads(cfg.threads, info)
        summary = train(model, PretrainTask(), train_data, valid_data, loop_cfg, cfg.out, info)
        summary["objective"], summary["preset"] = cfg.objective, cfg.preset
        if info.is_main:
            write_summary(cfg.out, summary)
            _print_summary(summary, cfg.out)
        return summary


class PretrainTask:
    """The pre-training objective as a loop :class:`~s3l.train.loop.Task`: the model computes its own loss."""

    metric = "loss"

    def train_step(self, model: Any, batch: Any) -> tuple[Any, dict[str, float]]:
        out = model(batch.wave, batch.lengths, batch.targets or None)
        return out.loss, out.logs

    def valid_step(self, model: Any, batch: Any) -> dict[str, float]:
        out = model(batch.wave, batch.lengths, batch.targets or None)
        logs = {k: v for k, v in out.logs.items() if k != "loss"}
        return {"batches": 1.0, "loss": float(out.loss), **logs}

    def reduce(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums.get("batches", 0.0), 1.0)
        return {k: v / n for k, v in sums.items() if k != "batches"}

    def save_model(self, path: Path, model: Any, **meta: Any) -> None:
        from s3l.models import save_model

        save_model(path, model, **meta)


def label_rates(cfg: PretrainConfig) -> tuple[float, ...]:
    """The rate of each label set: ``labels.json`` (written by ``s3l cluster``), else ``--label-rate``."""
    if not cfg.labels:
        return ()
    given = cfg.label_rate
    if given and len(given) not in (1, len(cfg.labels)):
        raise S3LError(f"--label-rate lists {len(given)} rates for {len(cfg.labels)} label directories")
    from s3l.cluster.labels import recorded_label_rate

    rates = []
    for i, d in enumerate(cfg.labels):
        want = given[i if len(given) > 1 else 0] if given else None
        recorded = recorded_label_rate(Path(d))
        if recorded is not None and want is not None and abs(recorded[0] - want) > 1e-6:
            raise S3LError(f"--label-rate {want:g} contradicts {recorded[1]} (label_rate {recorded[0]:g})")
        rate = recorded[0] if recorded is not None else want
        if rate is None:
            raise S3LError(f"{d}: no labels.json says the label rate; pass --label-rate (100 for MFCC units, 50 for "
                           "transformer-layer units)")
        rates.append(rate)
    return tuple(rates)


def _build_data(cfg: PretrainConfig, opt: Optimisation, rates: tuple[float, ...], train_split: Any,
                valid_split: Any, info: Any) -> tuple[Any, Any, list[int], dict[str, Any]]:
    from s3l.audio import SAMPLE_RATE
    from s3l.cluster.labels import require_complete
    from s3l.train.data import make_data, read_frame_labels

    report: dict[str, Any] = {}
    out = []
    num_classes: list[int] = []
    for name, split in (("train", train_split), ("valid", valid_split)):
        if split is None:
            out.append(None)
            continue
        m = split.manifest
        for d in cfg.labels:  # a label set an `s3l cluster` run left half-written is refused
            require_complete(Path(d), [f"{m.source.stem}.km", "dict.km.txt"])
        labels = [read_frame_labels(Path(d) / f"{m.source.stem}.km", Path(d) / "dict.km.txt", m, r)
                  for d, r in zip(cfg.labels, rates)]
        num_classes = num_classes or [lab.num_classes for lab in labels]
        data, sel = make_data(m, labels, crop=True, max_tokens=opt.max_tokens, max_sample_size=opt.max_sample_size,
                              min_sample_size=opt.min_sample_size, seed=cfg.seed, rank=info.rank,
                              world=info.world_size, shuffle=name == "train")
        report[f"{name}_utterances"] = len(sel.indices)
        report[f"{name}_hours"] = round(float(sum(m.sizes[i] for i in sel.indices)) / SAMPLE_RATE / 3600, 3)
        report[f"{name}_batches"] = len(data.order.batches)
        if sel.too_short:
            report[f"{name}_skipped_short"] = sel.too_short
        out.append(data)
    return out[0], out[1], num_classes, report


def _announce(cfg: PretrainConfig, model_cfg: Any, opt: Optimisation, precision: str, info: Any,
              report: dict[str, Any]) -> None:
    from s3l.train.run import announce

    shown = ("encoder_layers", "encoder_embed_dim", "mask_prob", "mask_length", "encoder_layerdrop")
    announce(cfg.out, "pretrain", f"s3l pretrain ({cfg.objective}, preset {cfg.preset})", cfg, opt, precision, info,
             report, model_cfg, shown)


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    from s3l.console import console

    table = Table(title="pre-training done")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("updates", str(summary["num_updates"]))
    table.add_row("skipped (non-finite)", str(summary["bad_updates"]))
    if summary["best"] is not None:
        table.add_row(f"best valid {summary['metric']}", f"{summary['best']:.4f}")
    for k, v in summary["valid"].items():
        table.add_row(f"last valid {k}", f"{v:.4g}")
    table.add_row("train time", f"{summary['train_seconds']:.0f} s")
    console.print(table)
    console.print(f"checkpoints and logs in {out}")
