"""``s3l decode``: run a CTC checkpoint over a split (or reuse stored emissions), decode, tune, write hypotheses.

Outputs in HYPDIR (rank 0 writes; utterances sharded over ``--nproc`` processes and gathered in tsv order):

``{split}.hyp``             one upper-case hypothesis per utterance, in tsv order
``{split}.ref``             the split's ``.wrd`` (when it exists), for ``s3l score``
``{split}.json``            summary: WER/CER and S/D/I (when references exist), real-time factors, settings
``{tune_split}.tune.json``  with ``--tune``: every trial's LM weight, word score and WER, and the best pair
``{split}.emissions.npz``   with ``--save-emissions`` (also for the tune split); see :mod:`s3l.decode.emissions`
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3l import distributed
from s3l.audio import SAMPLE_RATE
from s3l.decode.ctc import BeamDecoder, BeamOptions, check_vocab, greedy, lm_unigrams
from s3l.decode.emissions import Emissions, emissions_path, load_emissions, save_emissions
from s3l.decode.tune import LM_WEIGHT_RANGE, WORD_SCORE_RANGE, Trial, best, search
from s3l.errors import S3LError
from s3l.fileio import atomic_write_lines, atomic_write_text, check_overwrite, require_file
from s3l.manifest import Split, load_split, split_files
from s3l.progress import progress

SUMMARY_VERSION = 1


@dataclass(frozen=True)
class DecodeConfig:
    data: Path  # manifest directory with {split}.tsv (and .wrd for references)
    split: str
    out: Path  # HYPDIR
    checkpoint: Path | None = None  # fine-tuned CTC model (anything s3l.load_model reads)
    emissions: Path | None = None  # directory with {split}.emissions.npz, instead of running the model
    save_emissions: bool = False
    lm: Path | None = None  # ARPA or KenLM binary; without it: greedy decoding
    unigrams: Path | None = None  # word list for a binary LM without an ARPA beside it
    beam: BeamOptions = BeamOptions()
    tune: bool = False
    tune_split: str = "dev"
    tune_trials: int = 64
    lm_weight_range: tuple[float, float] = LM_WEIGHT_RANGE
    word_score_range: tuple[float, float] = WORD_SCORE_RANGE
    max_tokens: int = 3_200_000  # audio samples per forward batch (padded), like fairseq --max-tokens
    batch_size: int | None = None  # at most this many utterances per forward batch
    device: str = "auto"
    force: bool = False


def decode(cfg: DecodeConfig) -> dict:
    """Run the whole command; returns the summary (rank 0; other ranks return an empty dict)."""
    _check(cfg)
    with distributed.process_group(cfg.device if cfg.checkpoint is not None else "cpu") as info:
        return _decode(cfg, info)


def _check(cfg: DecodeConfig) -> None:
    if (cfg.checkpoint is None) == (cfg.emissions is None):
        raise S3LError("pass either --checkpoint CKPT (run the model) or --emissions DIR (reuse saved emissions)")
    if cfg.checkpoint is not None:
        require_file(cfg.checkpoint, "checkpoint")
    if cfg.save_emissions and cfg.emissions is not None:
        raise S3LError("--save-emissions writes what the model produces; it cannot be combined with --emissions")
    if cfg.tune and cfg.lm is None:
        raise S3LError("--tune searches the LM weight and word score; it needs --lm")
    if cfg.lm is not None:
        require_file(cfg.lm, "language model")
    if cfg.beam.beam < 1:
        raise S3LError(f"--beam must be at least 1, got {cfg.beam.beam}")
    if cfg.tune_trials < 1:
        raise S3LError(f"--tune-trials must be at least 1, got {cfg.tune_trials}")
    for name, (lo, hi) in (("LM weight", cfg.lm_weight_range), ("word score", cfg.word_score_range)):
        if not lo <= hi:
            raise S3LError(f"{name} range [{lo}, {hi}] is empty")
    if cfg.max_tokens < 1 or (cfg.batch_size is not None and cfg.batch_size < 1):
        raise S3LError("--max-tokens and --batch-size must be positive")


def _outputs(cfg: DecodeConfig, has_ref: bool) -> list[Path]:
    paths = [cfg.out / f"{cfg.split}.hyp", cfg.out / f"{cfg.split}.json"]
    if has_ref:
        paths.append(cfg.out / f"{cfg.split}.ref")
    if cfg.tune:
        paths.append(cfg.out / f"{cfg.tune_split}.tune.json")
    if cfg.save_emissions:
        splits = dict.fromkeys([cfg.split, cfg.tune_split] if cfg.tune else [cfg.split])
        paths += [emissions_path(cfg.out, s) for s in splits]
    return paths


def _check_refs(data: Path, name: str, split: Split) -> None:
    """Every reference must have a word (WER is undefined otherwise); checked on every process alike."""
    for lineno, line in enumerate(split.labels.get("wrd", []), start=1):
        if not line.strip():
            raise S3LError(f"{split_files(data, name)['wrd']}:{lineno}: empty transcript (WER is undefined for it)")


def _decode(cfg: DecodeConfig, info: distributed.DistInfo) -> dict:
    has_ref = split_files(cfg.data, cfg.split)["wrd"].is_file()
    main = load_split(cfg.data, cfg.split, ("wrd",) if has_ref else ())
    tune_data = load_split(cfg.data, cfg.tune_split, ("wrd",)) if cfg.tune else None
    _check_refs(cfg.data, cfg.split, main)
    if tune_data is not None:
        _check_refs(cfg.data, cfg.tune_split, tune_data)
    check_overwrite(_outputs(cfg, has_ref), cfg.force)
    cfg.out.mkdir(parents=True, exist_ok=True)

    source = _Source(cfg, info)
    em = source.emissions(main, cfg.split)
    check_vocab(em.vocab, cfg.checkpoint or emissions_path(cfg.emissions, cfg.split))  # type: ignore[arg-type]

    lm_weight, word_score = cfg.beam.lm_weight, cfg.beam.word_score
    decoder = None
    tune_report = None
    tune_seconds = 0.0
    if cfg.lm is not None:
        decoder = BeamDecoder(em.vocab, cfg.lm, lm_unigrams(cfg.lm, cfg.unigrams), cfg.beam)
    if cfg.tune:
        assert tune_data is not None and decoder is not None
        tune_em = em if cfg.tune_split == cfg.split else source.emissions(tune_data, cfg.tune_split)
        if tune_em.vocab != em.vocab:
            raise S3LError(f"the {cfg.tune_split} and {cfg.split} emissions have different vocabularies")
        start = time.perf_counter()
        trials = _tune(cfg, info, decoder, tune_em, tune_data)
        tune_seconds = time.perf_counter() - start
        chosen = best(trials)
        lm_weight, word_score = chosen.lm_weight, chosen.word_score
        tune_report = {"split": cfg.tune_split, "trials": [t.to_dict() for t in trials], "best": chosen.to_dict(),
                       "lm_weight_range": list(cfg.lm_weight_range), "word_score_range": list(cfg.word_score_range),
                       "beam": cfg.beam.beam, "lm": str(cfg.lm), "seconds": tune_seconds}
    if decoder is not None:
        decoder.set_weights(lm_weight, word_score)

    start = time.perf_counter()
    hyps = _run_search(em, decoder, f"decode {cfg.split}", info.is_main)
    search_seconds = time.perf_counter() - start
    gathered = distributed.gather_objects({"shard": list(source.shards[cfg.split]), "hyps": hyps,
                                           "search_seconds": search_seconds})
    if not info.is_main:
        distributed.barrier()
        return {}
    all_hyps: list[str] = [""] * len(main.manifest)
    for part in gathered:
        for i, h in zip(part["shard"], part["hyps"]):
            all_hyps[i] = h
    refs = main.labels.get("wrd")
    summary = _summary(cfg, info, main, refs, all_hyps, source, lm_weight, word_score,
                       max(p["search_seconds"] for p in gathered), tune_seconds, tune_report)
    atomic_write_lines(cfg.out / f"{cfg.split}.hyp", all_hyps)
    if refs is not None:
        atomic_write_lines(cfg.out / f"{cfg.split}.ref", refs)
    if tune_report is not None:
        atomic_write_text(cfg.out / f"{cfg.tune_split}.tune.json", json.dumps(tune_report, indent=2) + "\n")
    atomic_write_text(cfg.out / f"{cfg.split}.json", json.dumps(summary, indent=2) + "\n")
    _print(summary, tune_report)
    distributed.barrier()
    return summary


def _run_search(em: Emissions, decoder: BeamDecoder | None, title: str, show: bool) -> list[str]:
    out = []
    with progress(disable=not show) as bar:
        task = bar.add_task(title, total=len(em))
        for x in em.log_probs:
            out.append(greedy(x, em.vocab) if decoder is None else decoder(x))
            bar.advance(task)
    return out


def _tune(cfg: DecodeConfig, info: distributed.DistInfo, decoder: BeamDecoder, em: Emissions,
          split: Split) -> list[Trial]:
    """Every process decodes its shard of the tune split for each trial; error counts are summed over all."""
    from s3l.score import score

    refs = [split.labels["wrd"][i] for i in distributed.shard(len(split.manifest), info.rank, info.world_size)]

    with progress(disable=not info.is_main) as bar:
        task = bar.add_task(f"tune on {cfg.tune_split}", total=cfg.tune_trials)

        def evaluate(lm_weight: float, word_score: float) -> tuple[int, int]:
            decoder.set_weights(lm_weight, word_score)
            hyps = [decoder(x) for x in em.log_probs]
            errors, words = 0, 0
            if refs:
                r = score(refs, hyps, top=0)
                errors, words = r.substitutions + r.deletions + r.insertions, r.ref_words
            total = distributed.all_reduce_sum([float(errors), float(words)])
            bar.advance(task)
            return int(round(total[0])), int(round(total[1]))

        trials = search(evaluate, cfg.tune_trials, cfg.lm_weight_range, cfg.word_score_range)
        bar.update(task, total=len(trials), completed=len(trials))
    return trials


class _Source:
    """Emissions of this process's shard of a split: from the model, or from a saved emissions file."""

    def __init__(self, cfg: DecodeConfig, info: distributed.DistInfo) -> None:
        self.cfg, self.info = cfg, info
        self.model = None
        self.shards: dict[str, range] = {}
        self.forward_seconds: dict[str, float] = {}
        self.recorded = cfg.emissions is not None  # forward time comes from the emissions file

    def emissions(self, split: Split, name: str) -> Emissions:
        n = len(split.manifest)
        shard = distributed.shard(n, self.info.rank, self.info.world_size)
        self.shards[name] = shard
        if self.cfg.emissions is not None:
            em = load_emissions(emissions_path(self.cfg.emissions, name), split.manifest)
            self.forward_seconds[name] = float(em.meta.get("forward_seconds", float("nan")))
            return em.subset(shard)
        self._load_model()  # not part of the forward time
        start = time.perf_counter()
        em = self._forward(split, list(shard), name)
        seconds = max(distributed.gather_objects(time.perf_counter() - start))
        self.forward_seconds[name] = seconds
        if self.cfg.save_emissions:
            parts = distributed.gather_objects((list(shard), em.log_probs))
            if self.info.is_main:
                full: list[np.ndarray] = [np.zeros(0)] * n
                for idx, lps in parts:
                    for i, lp in zip(idx, lps):
                        full[i] = lp
                meta = {"split": name, "checkpoint": str(self.cfg.checkpoint), "forward_seconds": seconds,
                        "device": self.info.device, "nproc": self.info.world_size}
                save_emissions(emissions_path(self.cfg.out, name),
                               Emissions(full, em.vocab, list(split.manifest.sizes), meta))
        return em

    def _load_model(self):  # -> CTCModel
        if self.model is None:
            from s3l.models import CTCModel, load_model

            model = load_model(self.cfg.checkpoint)
            if not isinstance(model, CTCModel):
                raise S3LError(f"{self.cfg.checkpoint}: a {type(model).__name__} checkpoint, not a fine-tuned CTC "
                               "model (run `s3l finetune` first)")
            self.model = model.to(self.info.device).eval()
        return self.model

    def _forward(self, split: Split, indices: list[int], name: str) -> Emissions:
        import torch

        from s3l.train.data import AudioDataset, BatchSpec, Selection, batch_by_size, iterate, loader

        model = self._load_model()
        vocab = list(model.vocab)
        manifest = split.manifest
        out: dict[int, np.ndarray] = {}
        with progress(disable=not self.info.is_main) as bar:
            task = bar.add_task(f"forward {name}", total=len(indices))
            if indices:
                sizes = np.asarray([manifest.sizes[i] for i in indices], dtype=np.int64)
                sel = Selection(indices=np.asarray(indices), sizes=sizes, too_short=0, too_long=0)
                batches = batch_by_size(sel, max(self.cfg.max_tokens, int(sizes.max())), seed=0)
                if self.cfg.batch_size is not None:
                    bs = self.cfg.batch_size
                    batches = [b[j : j + bs] for b in batches for j in range(0, len(b), bs)]
                specs = [BatchSpec(0, k, b) for k, b in enumerate(batches)]
                dataset = AudioDataset(manifest, crop=False, max_sample_size=int(sizes.max()), seed=0)
                device = torch.device(self.info.device)
                for batch in iterate(loader(dataset, specs, num_workers=0)):
                    with torch.inference_mode():
                        log_probs, lengths = model(batch.wave.to(device), batch.lengths.to(device))  # (B, T, V)
                    if log_probs.shape[-1] != len(vocab):
                        raise S3LError(f"{self.cfg.checkpoint}: model outputs {log_probs.shape[-1]} symbols but "
                                       f"its vocabulary has {len(vocab)}")
                    lp = log_probs.float().cpu().numpy()
                    for r, i in enumerate(batch.indices):
                        out[i] = lp[r, : int(lengths[r])]
                    bar.advance(task, len(batch.indices))
        return Emissions([out[i] for i in indices], vocab, [manifest.sizes[i] for i in indices])


def _summary(cfg: DecodeConfig, info: distributed.DistInfo, split: Split, refs: list[str] | None, hyps: list[str],
             source: _Source, lm_weight: float, word_score: float, search_seconds: float, tune_seconds: float,
             tune_report: dict | None) -> dict:
    from s3l.score import score

    audio = sum(split.manifest.sizes) / SAMPLE_RATE
    forward = source.forward_seconds[cfg.split]
    summary: dict = {"version": SUMMARY_VERSION, "split": cfg.split, "utterances": len(hyps),
                     "audio_seconds": audio}
    if refs is not None:
        r = score(refs, hyps, top=10)
        summary.update({k: v for k, v in r.to_dict().items() if k not in ("utterances", "version")})
    summary.update({
        "decoder": "beam search + LM" if cfg.lm is not None else "greedy",
        "lm": str(cfg.lm) if cfg.lm is not None else None,
        "lm_weight": lm_weight if cfg.lm is not None else None,
        "word_score": word_score if cfg.lm is not None else None,
        "beam": cfg.beam.beam if cfg.lm is not None else None,
        "beam_prune_logp": cfg.beam.beam_prune_logp if cfg.lm is not None else None,
        "token_min_logp": cfg.beam.token_min_logp if cfg.lm is not None else None,
        "unk_score": cfg.beam.unk_score if cfg.lm is not None else None,
        "tuned_on": cfg.tune_split if tune_report is not None else None,
        "checkpoint": str(cfg.checkpoint) if cfg.checkpoint is not None else None,
        "emissions": str(emissions_path(cfg.emissions, cfg.split)) if cfg.emissions is not None else None,
        "nproc": info.world_size,
        "device": info.device if cfg.checkpoint is not None else None,
        "forward_seconds": forward,
        "forward_seconds_recorded": source.recorded,  # true: measured when the emissions were saved
        "search_seconds": search_seconds,
        "tune_seconds": tune_seconds,
        "rtf": {"forward": forward / audio, "search": search_seconds / audio,
                "total": (forward + search_seconds) / audio},
    })
    return summary


def _print(summary: dict, tune_report: dict | None) -> None:
    from rich.table import Table

    from s3l.cli.common import console

    if tune_report is not None:
        b = tune_report["best"]
        console.print(f"tuned on {tune_report['split']} over {len(tune_report['trials'])} trials: LM weight "
                      f"{b['lm_weight']:g}, word score {b['word_score']:g} -> WER {b['wer']:.2f}")
    t = Table(title=f"{summary['split']}: {summary['decoder']}")
    for col in ("utts", "audio s", "WER %", "CER %", "RTF fwd", "RTF search", "RTF total"):
        t.add_column(col, justify="right")
    rtf = summary["rtf"]
    fwd = f"{rtf['forward']:.4f}" + ("*" if summary["forward_seconds_recorded"] else "")
    wer = f"{summary['wer']:.2f}" if "wer" in summary else "-"
    cer = f"{summary['cer']:.2f}" if "cer" in summary else "-"
    t.add_row(str(summary["utterances"]), f"{summary['audio_seconds']:.1f}", wer, cer, fwd, f"{rtf['search']:.4f}",
              f"{rtf['total']:.4f}")
    console.print(t)
    if summary["forward_seconds_recorded"]:
        console.print("* forward time measured when the emissions were saved")
    if summary["lm"] is not None:
        console.print(f"LM {summary['lm']}: weight {summary['lm_weight']:g}, word score {summary['word_score']:g}, "
                      f"beam {summary['beam']}; {summary['nproc']} process(es)")
