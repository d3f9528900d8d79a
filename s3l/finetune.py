"""``s3l finetune``: CTC fine-tuning on letters (wav2vec 2.0 §3.3, Appendix B) through the shared training loop.

The model is a pre-trained backbone (``--init``: anything :func:`s3l.load_model` reads) or a randomly initialised one
(``--from-scratch``), plus a randomly initialised linear layer over ``["<blank>", *dict.ltr.txt]``. Fine-tuning
follows fairseq's ``wav2vec_ctc`` recipe: feature encoder frozen, the whole backbone frozen for the first
``freeze_updates`` (only the output layer trains), time and channel masks and LayerDrop from
:func:`s3l.models.finetune_preset`, Adam (0.9, 0.98, eps 1e-8, no weight decay), tri-stage learning rate.

Loss: ``F.ctc_loss(..., blank=0, reduction="sum", zero_infinity=True)`` divided by the number of utterances in the
batch, i.e. the negative log-likelihood per utterance in nats (fairseq's ``ctc`` criterion with ``sentence_avg``;
fairseq logs it in bits). Validation runs greedy decoding and keeps ``checkpoint_best`` by dev WER.

The run directory is that of ``s3l pretrain``; ``checkpoint_best.safetensors`` is a CTC checkpoint ``s3l decode``
reads (kind ``ctc``, vocabulary in its metadata).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3l.errors import S3LError
from s3l.train.run import RunSettings


@dataclass(frozen=True)
class Budget:
    """Optimisation settings of one labelled-data preset. ``max_tokens`` is per process and micro-batch: the paper
    batches are 3.2M samples x 8 GPUs (fairseq: 2 GPUs x update_freq 4); emulate GPUs with ``update_freq``."""

    lr: float
    max_updates: int
    freeze_updates: int  # updates during which only the output layer trains (fairseq freeze_finetune_updates)
    max_tokens: int = 3_200_000
    update_freq: int = 1
    clip_norm: float = 0.0  # fairseq's default: none
    valid_interval: int = 1000
    save_interval: int = 1000
    log_interval: int = 200
    best_metric: str = "wer"  # dev metric that selects checkpoint_best: wer, cer or loss (lower is better)


# fairseq examples/wav2vec/config/finetuning/{base,vox}_{10m,1h,10h,100h,960h}.yaml: lr, max_update and
# freeze_finetune_updates for BASE (base_*: 3.2M samples x 8 GPUs) and LARGE (vox_*: 1.28M samples x 20 GPUs, 24 for
# 960h; also used for HuBERT X-LARGE). The paper's Table 6 lists 12k / 13k / 20k / 50k / 320k updates; the released
# configs (used here) differ for 10min (13k) and 100h (80k).
_BASE = {"10min": (5e-5, 13_000, 10_000), "1h": (5e-5, 13_000, 10_000), "10h": (5e-5, 20_000, 10_000),
         "100h": (3e-5, 80_000, 0), "960h": (1e-5, 320_000, 0)}
_LARGE = {"10min": (1e-4, 13_000, 10_000), "1h": (3e-4, 13_000, 10_000), "10h": (1e-4, 20_000, 10_000),
          "100h": (3e-5, 80_000, 10_000), "960h": (3e-5, 320_000, 10_000)}
PAPER_BUDGETS: dict[tuple[str, str], Budget] = {
    **{("base", k): Budget(*v) for k, v in _BASE.items()},
    **{(size, k): Budget(*v, max_tokens=1_280_000) for k, v in _LARGE.items() for size in ("large", "xlarge")},
}
# CPU demo budget for the ``tiny`` architecture (not from the papers): 10 s of audio per batch, 600 updates, no
# freeze period and no LayerDrop (TINY_LAYERDROP). checkpoint_best by dev CER: at the WER of a few minutes of CPU
# fine-tuning (90-100 %) WER hardly moves while CER does (issue #12). BASE's freeze share (10k of 13k updates)
# leaves a 4-block model a few hundred updates, and unfreezing it at the peak learning rate can wreck it. Measured
# on the demo's models (synthetic corpus, train-10min, 800 updates, masks 0.3 / 0.1, seed 1, Intel Xeon), dev CER
# at update 800 with freeze 200 + LayerDrop 0.1 -> freeze 0 + LayerDrop 0: wav2vec 2.0 100 (all blank from update
# 400; 72.6 at 200) -> 54.4 (freeze 200 + LayerDrop 0: 67.5, blank at 400; freeze 0 + LayerDrop 0.1: 63.9), HuBERT
# iteration 1 49.8 -> 46.4, iteration 2 47.4 -> 44.7; from scratch (never frozen) LayerDrop 0.1 -> 0: 50.8 -> 49.9.
TINY_UPDATES = 600
TINY_LAYERDROP = 0.0  # tiny has 4 blocks and is pre-trained without LayerDrop: dropping one removes a quarter
ADAM_EPS = 1e-8  # adam_eps of every fairseq fine-tuning config (pre-training uses 1e-6); betas (0.9, 0.98) as there
TINY = Budget(lr=1e-3, max_updates=TINY_UPDATES, freeze_updates=0, max_tokens=160_000, clip_norm=10.0,
              valid_interval=100, save_interval=100, log_interval=10, best_metric="cer")
BEST_METRICS = ("wer", "cer", "loss")


def budget(model_preset: str, ft_preset: str) -> Budget:
    """The default optimisation of ``ft_preset`` for the ``tiny`` CPU demo or the papers' models."""
    from s3l.models import finetune_preset

    finetune_preset(ft_preset)  # unknown names: the models' own message
    if model_preset != "tiny":
        return PAPER_BUDGETS[(model_preset, ft_preset)]
    return TINY


@dataclass(frozen=True)
class FinetuneConfig(RunSettings):
    """Everything ``s3l finetune`` needs, beyond the :class:`~s3l.train.run.RunSettings` both trainers share.
    ``None`` means "the preset's value" (see :func:`resolve`)."""

    data: Path  # directory with {split}.tsv, {split}.ltr and dict.ltr.txt
    out: Path  # run directory
    init: Path | None = None  # pre-trained model (s3l, fairseq .pt, Hugging Face directory)
    from_scratch: bool = False  # random backbone instead; feature encoder trained, no freeze period
    preset: str | None = None  # architecture for --from-scratch; optimisation defaults (tiny = CPU demo)
    ft_preset: str = "10min"  # masking / LayerDrop (wav2vec 2.0 Table 6) and budget (fairseq base_*.yaml)
    train_split: str = "train-10min"
    # model overrides (fairseq mask_prob convention: mask_prob = p * mask_length)
    mask_prob: float | None = None
    mask_channel_prob: float | None = None
    layerdrop: float | None = None
    # optimisation overrides
    freeze_updates: int | None = None
    best_metric: str | None = None  # wer | cer | loss
    max_sample_size: int | None = None  # skip longer training utterances (default: max_tokens)
    min_sample_size: int = 0


def resolve(cfg: FinetuneConfig, base: Any) -> tuple[Any, Budget]:
    """The fine-tuning model config (from ``base``, the pre-trained or preset architecture) and the budget."""
    from s3l.models import finetune_preset
    from s3l.train.run import parse_model_args

    if cfg.preset:
        _preset_config(cfg.preset)  # unknown names: the models' own message
    model_preset = cfg.preset or next((n for n in ("tiny", "base", "large", "xlarge")
                                       if _shape(base) == _shape(_preset_config(n))), "base")
    opt = budget(model_preset, cfg.ft_preset)
    opt = dataclasses.replace(opt, **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(Budget)
                                      if getattr(cfg, f.name) is not None})
    if cfg.from_scratch and cfg.freeze_updates is None:
        opt = dataclasses.replace(opt, freeze_updates=0)  # freezing a random transformer would train a linear probe
    model = finetune_preset(cfg.ft_preset).apply(base)
    changes: dict[str, Any] = {"feature_grad_mult": 1.0} if cfg.from_scratch else {}
    if model_preset == "tiny":
        changes["encoder_layerdrop"] = TINY_LAYERDROP
    for name, field in (("mask_prob", "mask_prob"), ("mask_channel_prob", "mask_channel_prob"),
                        ("layerdrop", "encoder_layerdrop")):
        if getattr(cfg, name) is not None:
            changes[field] = getattr(cfg, name)
    model = model.replace(**{**changes, **parse_model_args(model, cfg.model_args)})
    for name in ("max_updates", "max_tokens", "update_freq", "valid_interval", "save_interval", "log_interval"):
        if getattr(opt, name) < 1:
            raise S3LError(f"--{name.replace('_', '-')} must be at least 1")
    if opt.best_metric not in BEST_METRICS:
        raise S3LError(f"--best-metric must be one of {', '.join(BEST_METRICS)}, got {opt.best_metric!r}")
    if opt.lr <= 0 or opt.freeze_updates < 0 or opt.clip_norm < 0:
        raise S3LError("--lr must be positive, --freeze-updates and --clip-norm not negative")
    return model, opt


def _preset_config(name: str) -> Any:
    from s3l.models import preset

    return preset(name, "hubert" if name == "xlarge" else "contrastive")


def _shape(m: Any) -> tuple:
    return (m.conv_dim, m.encoder_layers, m.encoder_embed_dim, m.encoder_ffn_embed_dim, m.encoder_attention_heads)


def run_finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune and return the summary (also written to ``summary.json``)."""
    from s3l import distributed
    from s3l.manifest import load_split
    from s3l.models import CTCModel, load_model
    from s3l.train.data import read_token_labels
    from s3l.train.log import seed_everything
    from s3l.train.loop import LoopConfig, train
    from s3l.train.optim import TriStageSchedule
    from s3l.train.run import check_resume, choose_valid_split, prepare_out, resolve_precision, write_summary
    from s3l.vocab import letter_vocab

    if (cfg.init is None) == (not cfg.from_scratch):
        raise S3LError("pass either --init CKPT (a pre-trained model) or --from-scratch --preset NAME")
    if cfg.from_scratch and not cfg.preset:
        raise S3LError("--from-scratch needs --preset (tiny, base, large, xlarge): the architecture to build")
    if cfg.init is not None and not Path(cfg.init).exists():
        raise S3LError(f"{cfg.init}: --init model not found")
    with distributed.process_group(cfg.device) as info:
        vocab = letter_vocab(cfg.data)
        splits = {"train": load_split(cfg.data, cfg.train_split, ("ltr",))}
        valid_name = choose_valid_split(cfg.data, cfg.valid_split, info.is_main)
        if valid_name:
            splits["valid"] = load_split(cfg.data, valid_name, ("ltr",))
        letters = {k: read_token_labels(cfg.data / f"{s.manifest.source.stem}.ltr", s.manifest, vocab)
                   for k, s in splits.items()}
        pretrained = load_model(cfg.init) if cfg.init is not None else None
        model_cfg, opt = resolve(cfg, pretrained.config if pretrained is not None else _preset_config(cfg.preset))
        precision = resolve_precision(cfg.precision, info.device)
        prepare_out(cfg.out, cfg.resume, cfg.force, info.is_main)
        if cfg.resume:
            check_resume(cfg.out, model_cfg)
        seed_everything(cfg.seed)  # the same output layer (and random backbone) in every process
        if pretrained is not None:
            model = CTCModel.from_pretrained(pretrained, vocab, model_cfg)
        else:
            model = CTCModel(model_cfg, vocab)
        data, report = _build_data(cfg, opt, model, splits, letters, info)
        if info.is_main:
            _announce(cfg, model_cfg, opt, precision, info, report)
        loop_cfg = LoopConfig(
            max_updates=opt.max_updates, schedule=TriStageSchedule(opt.lr, opt.max_updates),
            update_freq=opt.update_freq, clip_norm=opt.clip_norm, weight_decay=0.0, adam_eps=ADAM_EPS,
            precision=precision, valid_interval=opt.valid_interval, save_interval=opt.save_interval,
            log_interval=opt.log_interval, max_bad_updates=cfg.max_bad_updates, seed=cfg.seed,
            num_workers=cfg.num_workers, resume=cfg.resume, find_unused_parameters=True,  # frozen / LayerDrop
        )
        init = str(cfg.init) if cfg.init is not None else f"from-scratch:{cfg.preset}"
        distributed.set_cpu_threads(cfg.threads, info)
        task = CTCTask(model, opt.freeze_updates, opt.best_metric, init=init, ft_preset=cfg.ft_preset)
        summary = train(model, task, data["train"], data.get("valid"), loop_cfg, cfg.out, info)
        summary.update(init=init, ft_preset=cfg.ft_preset, data=report)
        if info.is_main:
            write_summary(cfg.out, summary)
            _print_summary(summary, cfg)
        return summary


class CTCTask:
    """Letter CTC as a loop :class:`~s3l.train.loop.Task`; the backbone stays frozen for ``freeze_updates``."""

    def __init__(self, model: Any, freeze_updates: int, metric: str = "wer", **meta: str) -> None:
        self.model, self.freeze_updates, self.meta = model, freeze_updates, meta
        self.metric = metric  # the dev metric (of greedy decoding, or the CTC loss) that selects checkpoint_best

    def set_num_updates(self, n: int) -> None:
        self.model.set_transformer_frozen(n < self.freeze_updates)

    def train_step(self, model: Any, batch: Any) -> tuple[Any, dict[str, float]]:
        log_probs, frames = model(batch.wave, batch.lengths)  # (B, T, V), (B,)
        loss = ctc_loss(log_probs, frames, batch.targets[0], batch.target_lengths[0])
        return loss / batch.wave.size(0), {"frozen": float(self.model.backbone.frozen)}

    def valid_step(self, model: Any, batch: Any) -> dict[str, float]:
        from s3l.decode.ctc import greedy
        from s3l.score import score

        log_probs, frames = model(batch.wave, batch.lengths)
        loss = ctc_loss(log_probs, frames, batch.targets[0], batch.target_lengths[0])
        lp = log_probs.float().cpu().numpy()
        hyps = [greedy(lp[r, : int(n)], self.model.vocab) for r, n in enumerate(frames.tolist())]
        refs = [self._words(t[: int(n)].tolist()) for t, n in zip(batch.targets[0], batch.target_lengths[0])]
        sums = {"utterances": float(len(refs)), "loss": float(loss), "word_errors": 0.0, "ref_words": 0.0,
                "char_errors": 0.0, "ref_chars": 0.0}
        for r, h in zip(refs, hyps):  # an empty reference: every hypothesis word is an insertion
            if not r:
                sums["word_errors"] += len(h.split())
                sums["char_errors"] += len(h)
        pairs = [(r, h) for r, h in zip(refs, hyps) if r]
        if pairs:
            res = score([r for r, _ in pairs], [h for _, h in pairs])
            sums["word_errors"] += res.substitutions + res.deletions + res.insertions
            sums["char_errors"] += res.char_substitutions + res.char_deletions + res.char_insertions
            sums["ref_words"] += res.ref_words
            sums["ref_chars"] += res.ref_chars
        return sums

    def reduce(self, sums: dict[str, float]) -> dict[str, float]:
        return {"loss": sums["loss"] / max(sums["utterances"], 1.0),
                "wer": 100.0 * sums["word_errors"] / max(sums["ref_words"], 1.0),
                "cer": 100.0 * sums["char_errors"] / max(sums["ref_chars"], 1.0)}

    def save_model(self, path: Path, model: Any, **meta: Any) -> None:
        from s3l.models import save_model

        save_model(path, model, **meta, **self.meta)

    def _words(self, ids: list[int]) -> str:
        """Reference words of a letter sequence (``|`` = word boundary), written like the greedy hypotheses."""
        text = "".join(" " if self.model.vocab[i] == "|" else self.model.vocab[i] for i in ids)
        return " ".join(text.upper().split())


def ctc_loss(log_probs: Any, frames: Any, targets: Any, target_lengths: Any) -> Any:
    """Summed CTC negative log-likelihood in nats. log_probs: (B, T, V); frames: (B,); targets: (B, L) padded."""
    import torch.nn.functional as F

    from s3l.train.data import PAD_LABEL

    flat = targets[targets != PAD_LABEL]  # rows concatenated, as F.ctc_loss accepts
    return F.ctc_loss(log_probs.transpose(0, 1), flat, frames, target_lengths, blank=0, reduction="sum",
                      zero_infinity=True)


def infeasible(model: Any, manifest: Any, labels: Any, indices: Any) -> int:
    """Utterances whose letters need more frames (one per letter plus one blank between repeats) than they get."""
    import numpy as np
    import torch

    frames = model.backbone.output_lengths(torch.tensor([manifest.sizes[i] for i in indices], dtype=torch.long))
    count = 0
    for i, t in zip(indices, frames.tolist()):
        ids = labels.ids[i]
        count += len(ids) + int(np.sum(ids[1:] == ids[:-1])) > t
    return count


def _build_data(cfg: FinetuneConfig, opt: Budget, model: Any, splits: dict[str, Any], letters: dict[str, Any],
                info: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Padded batches by total samples; count utterances whose letters cannot fit the model's frames."""
    from s3l.audio import SAMPLE_RATE
    from s3l.train.data import make_data

    max_size = cfg.max_sample_size or opt.max_tokens
    data, report = {}, {}
    for name, split in splits.items():
        m = split.manifest
        train = name == "train"
        d, sel = make_data(m, [letters[name]], crop=False, max_tokens=opt.max_tokens,
                           max_sample_size=max_size if train else opt.max_tokens,
                           min_sample_size=cfg.min_sample_size if train else 0, seed=cfg.seed, rank=info.rank,
                           world=info.world_size, shuffle=train)
        data[name] = d
        report[f"{name}_utterances"] = len(sel.indices)
        report[f"{name}_hours"] = round(float(sum(m.sizes[i] for i in sel.indices)) / SAMPLE_RATE / 3600, 3)
        for what, n in (("skipped_short", sel.too_short), ("skipped_long", sel.too_long),
                        ("targets_longer_than_frames", infeasible(model, m, letters[name], sel.indices))):
            if n:
                report[f"{name}_{what}"] = n
    return data, report


def _announce(cfg: FinetuneConfig, model_cfg: Any, opt: Budget, precision: str, info: Any,
              report: dict[str, Any]) -> None:
    from s3l.train.run import announce

    title = f"s3l finetune ({cfg.init or 'from scratch, preset ' + str(cfg.preset)}; {cfg.ft_preset})"
    notes = [f"note: {n} {k.split('_')[0]} utterances have more letters than the model has frames (CTC cannot align "
             "them; zero_infinity makes their loss 0)" for k, n in report.items()
             if k.endswith("targets_longer_than_frames")]
    announce(cfg.out, "finetune", title, cfg, opt, precision, info, report, model_cfg,
             ("mask_prob", "mask_channel_prob", "encoder_layerdrop", "feature_grad_mult"), notes)


def _print_summary(summary: dict[str, Any], cfg: FinetuneConfig) -> None:
    from rich.table import Table

    from s3l.console import console

    rows = {"updates": summary["num_updates"], "skipped (non-finite)": summary["bad_updates"],
            f"best dev {summary['metric'].upper()} (checkpoint_best)": summary["best"],
            **{f"last dev {k}": v for k, v in summary["valid"].items()},
            "train time (s)": summary["train_seconds"]}
    table = Table(title="fine-tuning done", show_header=False)
    for k, v in rows.items():
        if v is not None:
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)
    if summary["best"] is not None:
        console.print(f"decode with: s3l decode --checkpoint {cfg.out / 'checkpoint_best.safetensors'} "
                      f"--data {cfg.data} --split SPLIT --out HYPDIR")
