"""``s3l decode``: run a CTC checkpoint over a split (or reuse stored emissions), decode, tune, write hypotheses.

Outputs in HYPDIR (rank 0 writes; utterances sharded over ``--nproc`` processes and gathered in tsv order):

``{split}.hyp``             one upper-case hypothesis per utterance, in tsv order
``{split}.ref``             the split's ``.wrd`` (when it exists), for ``s3l score``
``{split}.json``            summary (version 2): WER/CER and S/D/I (when references exist), real-time factors, the
                            decoder and every setting it used (:meth:`Decoder.describe`)
``{split}.ctm``             with ``--ctm``: word timings, see :mod:`s3l.decode.ctm`
``{tune_split}.tune.json``  with ``--tune``: every trial's LM weight, word score and WER, the best pair, the decoder
``{split}.emissions.npz``   with ``--save-emissions`` (also for the tune split); see :mod:`s3l.decode.emissions`

The decoder comes from :func:`s3l.decode.decoder.make_decoder`; this module only calls its interface.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3l import distributed
from s3l.audio import SAMPLE_RATE
from s3l.decode.ctm import write_ctm
from s3l.decode.decoder import Decoder, Hypothesis, SearchOptions, choose, make_decoder
from s3l.decode.emissions import Emissions, emissions_path, frame_seconds, load_emissions, save_emissions
from s3l.decode.tune import LM_WEIGHT_RANGE, WORD_SCORE_RANGE, Trial, best, tune_decoder
from s3l.errors import S3LError
from s3l.fileio import atomic_write_lines, atomic_write_text, check_overwrite, require_file
from s3l.manifest import Split, load_split, split_files
from s3l.progress import progress
from s3l.vocab import check_vocab

SUMMARY_VERSION = 2


@dataclass(frozen=True)
class DecodeConfig:
    data: Path  # manifest directory with {split}.tsv (and .wrd for references)
    split: str
    out: Path  # HYPDIR
    checkpoint: Path | None = None  # fine-tuned CTC model (anything s3l.load_model reads)
    emissions: Path | None = None  # directory with {split}.emissions.npz, instead of running the model
    save_emissions: bool = False
    decoder: str | None = None  # greedy, beam or lexicon; None: lexicon with an LM, greedy without
    lm: Path | None = None  # ARPA or KenLM binary
    unigrams: Path | None = None  # word list: the words of a binary LM without an ARPA beside it
    lexicon: Path | None = None  # wav2letter lexicon for the lexicon decoder (default: the LM's words, spelled)
    search: SearchOptions = SearchOptions()
    ctm: bool = False  # also write {split}.ctm (word timings)
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
    for path, what in ((cfg.lm, "language model"), (cfg.lexicon, "lexicon"), (cfg.unigrams, "unigram list")):
        if path is not None:
            require_file(path, what)
    choose(cfg.decoder, cfg.search, cfg.lm, cfg.lexicon)
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
    if cfg.ctm:
        paths.append(cfg.out / f"{cfg.split}.ctm")
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


def _check_utt_ids(split: Split) -> None:
    """CTM fields are separated by whitespace, so an utterance id (tsv path without extension) must have none."""
    for i in range(len(split.manifest)):
        if len(split.manifest.utt_id(i).split()) != 1:
            raise S3LError(f"{split.manifest.source}:{split.manifest.line_of(i)}: --ctm needs audio paths without "
                           "spaces (the utterance id is the path without its extension)")


def _decode(cfg: DecodeConfig, info: distributed.DistInfo) -> dict:
    has_ref = split_files(cfg.data, cfg.split)["wrd"].is_file()
    main = load_split(cfg.data, cfg.split, ("wrd",) if has_ref else ())
    tune_data = load_split(cfg.data, cfg.tune_split, ("wrd",)) if cfg.tune else None
    _check_refs(cfg.data, cfg.split, main)
    if tune_data is not None:
        _check_refs(cfg.data, cfg.tune_split, tune_data)
    if cfg.ctm:
        _check_utt_ids(main)
    check_overwrite(_outputs(cfg, has_ref), cfg.force)
    cfg.out.mkdir(parents=True, exist_ok=True)

    source = _Source(cfg, info)
    em = source.emissions(main, cfg.split)
    check_vocab(em.vocab, cfg.checkpoint or emissions_path(cfg.emissions, cfg.split))  # type: ignore[arg-type]
    decoder = make_decoder(cfg.decoder, em.vocab, cfg.search, cfg.lm, cfg.unigrams, cfg.lexicon)
    try:
        tune_report, tune_seconds = None, 0.0
        if cfg.tune:
            assert tune_data is not None
            tune_em = em if cfg.tune_split == cfg.split else source.emissions(tune_data, cfg.tune_split)
            if tune_em.vocab != em.vocab:
                raise S3LError(f"the {cfg.tune_split} and {cfg.split} emissions have different vocabularies")
            start = time.perf_counter()
            trials = _tune(cfg, info, decoder, tune_em, tune_data)
            tune_seconds = time.perf_counter() - start
            chosen = best(trials)
            decoder.set_weights(chosen.lm_weight, chosen.word_score)
            tune_report = {"split": cfg.tune_split, "trials": [t.to_dict() for t in trials], "best": chosen.to_dict(),
                           "lm_weight_range": list(cfg.lm_weight_range),
                           "word_score_range": list(cfg.word_score_range), "decoder": decoder.name,
                           **decoder.describe(), "seconds": tune_seconds}
        start = time.perf_counter()
        hyps = _run_search(em, decoder, f"decode {cfg.split}", info.is_main)
        search_seconds = time.perf_counter() - start
        settings = {"decoder": decoder.name, **decoder.describe()}
    finally:
        decoder.close()
    gathered = distributed.gather_objects({"shard": list(source.shards[cfg.split]), "hyps": hyps,
                                           "search_seconds": search_seconds})
    if not info.is_main:
        distributed.barrier()
        return {}
    all_hyps: list[Hypothesis] = [Hypothesis((), ())] * len(main.manifest)
    for part in gathered:
        for i, h in zip(part["shard"], part["hyps"]):
            all_hyps[i] = h
    refs = main.labels.get("wrd")
    summary = _summary(cfg, info, main, refs, [h.text for h in all_hyps], source, settings,
                       max(p["search_seconds"] for p in gathered), tune_seconds, tune_report)
    atomic_write_lines(cfg.out / f"{cfg.split}.hyp", [h.text for h in all_hyps])
    if refs is not None:
        atomic_write_lines(cfg.out / f"{cfg.split}.ref", refs)
    if cfg.ctm:
        write_ctm(cfg.out / f"{cfg.split}.ctm", ((main.manifest.utt_id(i), h) for i, h in enumerate(all_hyps)),
                  summary["frame_seconds"])
    if tune_report is not None:
        atomic_write_text(cfg.out / f"{cfg.tune_split}.tune.json", json.dumps(tune_report, indent=2) + "\n")
    atomic_write_text(cfg.out / f"{cfg.split}.json", json.dumps(summary, indent=2) + "\n")
    _print(summary, settings, tune_report)
    distributed.barrier()
    return summary


def _run_search(em: Emissions, decoder: Decoder, title: str, show: bool) -> list[Hypothesis]:
    out = []
    with progress(disable=not show) as bar:
        task = bar.add_task(title, total=len(em))
        for x in em.log_probs:
            out.append(decoder.decode(x))
            bar.advance(task)
    return out


def _tune(cfg: DecodeConfig, info: distributed.DistInfo, decoder: Decoder, em: Emissions,
          split: Split) -> list[Trial]:
    """Every process decodes its shard of the tune split for each trial; error counts are summed over all."""
    refs = [split.labels["wrd"][i] for i in distributed.shard(len(split.manifest), info.rank, info.world_size)]

    def total(errors: int, words: int) -> tuple[int, int]:
        summed = distributed.all_reduce_sum([float(errors), float(words)])
        return int(round(summed[0])), int(round(summed[1]))

    with progress(disable=not info.is_main) as bar:
        task = bar.add_task(f"tune on {cfg.tune_split}", total=cfg.tune_trials)
        trials = tune_decoder(decoder, em.log_probs, refs, cfg.tune_trials, cfg.lm_weight_range,
                              cfg.word_score_range, total=total, on_trial=lambda _: bar.advance(task))
        bar.update(task, total=len(trials), completed=len(trials))
    return trials


class _Source:
    """Emissions of this process's shard of a split: from the model, or from a saved emissions file."""

    def __init__(self, cfg: DecodeConfig, info: distributed.DistInfo) -> None:
        self.cfg, self.info = cfg, info
        self.model = None
        self.shards: dict[str, range] = {}
        self.forward_seconds: dict[str, float] = {}
        self.frame_seconds: dict[str, float] = {}  # seconds per emission frame (for --ctm)
        self.recorded = cfg.emissions is not None  # forward time comes from the emissions file

    def emissions(self, split: Split, name: str) -> Emissions:
        n = len(split.manifest)
        shard = distributed.shard(n, self.info.rank, self.info.world_size)
        self.shards[name] = shard
        if self.cfg.emissions is not None:
            path = emissions_path(self.cfg.emissions, name)
            em = load_emissions(path, split.manifest)
            self.forward_seconds[name] = float(em.meta.get("forward_seconds", float("nan")))
            if self.cfg.ctm:  # from the whole file, so every process agrees
                self.frame_seconds[name] = frame_seconds(em, path)
            return em.subset(shard)
        model = self._load_model()  # not part of the forward time
        self.frame_seconds[name] = math.prod(model.config.conv_strides) / SAMPLE_RATE
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
                        "device": self.info.device, "nproc": self.info.world_size,
                        "frame_seconds": self.frame_seconds[name]}
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
             source: _Source, settings: dict, search_seconds: float, tune_seconds: float,
             tune_report: dict | None) -> dict:
    from s3l.score import score

    audio = sum(split.manifest.sizes) / SAMPLE_RATE
    forward = source.forward_seconds[cfg.split]
    summary: dict = {"version": SUMMARY_VERSION, "split": cfg.split, "utterances": len(hyps),
                     "audio_seconds": audio}
    if refs is not None:
        r = score(refs, hyps, top=10)
        summary.update({k: v for k, v in r.to_dict().items() if k not in ("utterances", "version")})
    summary.update(settings)
    summary.update({
        "tuned_on": cfg.tune_split if tune_report is not None else None,
        "checkpoint": str(cfg.checkpoint) if cfg.checkpoint is not None else None,
        "emissions": str(emissions_path(cfg.emissions, cfg.split)) if cfg.emissions is not None else None,
        "frame_seconds": source.frame_seconds.get(cfg.split),
        "ctm": str(cfg.out / f"{cfg.split}.ctm") if cfg.ctm else None,
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


def _print(summary: dict, settings: dict, tune_report: dict | None) -> None:
    from rich.table import Table

    from s3l.console import console

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
    shown = [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items()
             if v is not None and k != "decoder"]
    console.print(f"{settings['decoder']}: {', '.join(shown) or 'no settings'}; {summary['nproc']} process(es)")
