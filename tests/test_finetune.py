"""`s3l finetune` on a few generated utterances with a shrunken model: outputs that `s3l decode` and
`s3l.load_model` read, frozen feature encoder and freeze period, tri-stage learning rates, CTC loss against
brute force, dev WER, label errors, resume, --nproc 2; and the presets' paper values."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_pretrain import cli, s3l
from test_train_data import make_corpus
from typer.testing import CliRunner

from s3l.checkpoint import load_checkpoint, load_state, read_metadata
from s3l.cli import app
from s3l.errors import S3LError
from s3l.finetune import CTCTask, FinetuneConfig, budget, ctc_loss, resolve, run_finetune
from s3l.models import CTCModel, ModelConfig, build_pretrain_model, load_model, preset, save_model
from s3l.train.data import Batch
from s3l.train.log import read_jsonl, seed_everything

SYMBOLS = ["|", "A", "B", "C"]
SMALL = {"conv_dim": 16, "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
         "encoder_attention_heads": 2, "conv_pos": 16, "conv_pos_groups": 2, "final_dim": 16, "latent_vars": 8}
FAST = ["--max-tokens", "64000", "--log-interval", "1", "--num-workers", "0", "--threads", "1", "--layerdrop", "0",
        *[a for k, v in SMALL.items() if k not in ("final_dim", "latent_vars") for a in ("--model-arg", f"{k}={v}")]]


def words(rng: np.random.Generator) -> str:
    return " ".join("".join(rng.choice(SYMBOLS[1:], size=int(rng.integers(1, 4)))) for _ in range(2))


def write_split(root: Path, name: str, sizes: list[int], seed: int) -> None:
    make_corpus(root, sizes, seed=seed, name=name)
    rng = np.random.default_rng(seed)
    wrd = [words(rng) for _ in sizes]
    (root / f"{name}.wrd").write_text("".join(w + "\n" for w in wrd))
    (root / f"{name}.ltr").write_text("".join(" ".join(w.replace(" ", "|")) + " |\n" for w in wrd))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ft")
    write_split(root, "train", [12000, 16000, 9000, 14000, 11000, 15000], seed=0)
    write_split(root, "dev", [10000, 13000], seed=1)
    (root / "dict.ltr.txt").write_text("".join(f"{s} 1\n" for s in SYMBOLS))
    return root


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pt") / "pt.safetensors"
    torch.manual_seed(3)
    save_model(path, build_pretrain_model(preset("tiny").replace(**SMALL)), num_updates=7)
    return path


def args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--data", str(corpus), "--train-split", "train", "--valid-split", "dev", "--out", str(out),
            *FAST, *extra]


def test_from_scratch_run_is_decodable_and_follows_tri_stage(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = CliRunner().invoke(app, args(corpus, out, "--from-scratch", "--preset", "tiny", "--lr", "2e-3",
                                     "--max-updates", "10", "--valid-interval", "5"))
    assert p.exit_code == 0, p.output
    assert "fine-tuning done" in p.output and "audio s/s" in p.output
    log = read_jsonl(out / "train.jsonl")
    assert [r["update"] for r in log] == list(range(1, 11)) and all(math.isfinite(r["loss"]) for r in log)
    # tri-stage over 10 updates: 1 warm-up update from 0.01 x peak, 4 held, 5 decaying exponentially to 0.05 x peak
    want = [2e-5] + [2e-3] * 5 + [2e-3 * 0.05 ** (k / 5) for k in range(1, 5)]
    assert [r["lr"] for r in log] == pytest.approx(want, rel=1e-9)
    assert all(r["frozen"] == 0.0 for r in log)  # no freeze period from scratch
    valid = read_jsonl(out / "valid.jsonl")
    assert [r["update"] for r in valid] == [5, 10] and {"loss", "wer", "cer"} <= set(valid[0])
    meta = read_metadata(out / "checkpoint_best.safetensors")
    assert meta["kind"] == "ctc" and meta["vocab"] == ["<blank>", *SYMBOLS] and meta["init"] == "from-scratch:tiny"
    assert meta["valid_cer"] == min(r["cer"] for r in valid) and "valid_wer" not in meta  # tiny: best by dev CER
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["feature_grad_mult"] == 1.0 and cfg["optimisation"]["freeze_updates"] == 0
    # Adam as fairseq's fine-tuning configs: eps 1e-8, no weight decay
    group = load_state(out / "checkpoint_last.state.safetensors")["optimizer"]["param_groups"][0]
    assert group["eps"] == 1e-8 and group["weight_decay"] == 0.0 and tuple(group["betas"]) == (0.9, 0.98)
    # the feature encoder of a from-scratch model is trained
    seed_everything(1)  # run_finetune seeds with --seed, then builds the model
    start = CTCModel(ModelConfig.from_dict(cfg["model"]), ["<blank>", *SYMBOLS]).state_dict()
    model = load_model(out / "checkpoint_last.safetensors")
    assert isinstance(model, CTCModel)
    for key in ("backbone.feature_extractor.conv_layers.0.conv.weight", "backbone.encoder.layers.0.fc1.weight"):
        assert not torch.equal(model.state_dict()[key], start[key])
    # s3l decode reads checkpoint_best
    hyp = tmp_path / "hyp"
    assert not cli("decode", "--checkpoint", str(out / "checkpoint_best.safetensors"), "--data", str(corpus),
                   "--split", "dev", "--out", str(hyp))
    assert len((hyp / "dev.hyp").read_text().splitlines()) == 2


def snapshots(monkeypatch: pytest.MonkeyPatch) -> dict[int, dict[str, torch.Tensor]]:
    """The model's weights at every checkpoint_last save, by update."""
    taken: dict[int, dict[str, torch.Tensor]] = {}
    save = CTCTask.save_model

    def record(self: CTCTask, path: Path, model: Any, **meta: Any) -> None:
        taken[meta["num_updates"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        save(self, path, model, **meta)

    monkeypatch.setattr(CTCTask, "save_model", record)
    return taken


def config(corpus: Path, out: Path, **kw: Any) -> FinetuneConfig:
    base = dict(data=corpus, out=out, train_split="train", valid_split=None, max_tokens=64000, log_interval=1,
                save_interval=1, num_workers=0, layerdrop=0.0, max_updates=4, lr=1e-3)
    return FinetuneConfig(**{**base, **kw})


def test_init_freezes_feature_encoder_always_and_transformer_first(corpus: Path, pretrained: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    taken = snapshots(monkeypatch)
    run_finetune(config(corpus, tmp_path / "init", init=pretrained, freeze_updates=2))
    start = {f"backbone.{k}": v for k, v in load_model(pretrained).backbone.state_dict().items()}
    assert sorted(taken) == [1, 2, 3, 4]

    def changed(n: int, prefix: str) -> bool:
        return any(not torch.equal(v, start[k]) for k, v in taken[n].items() if k.startswith(prefix))

    for n in (1, 2, 3, 4):
        assert not changed(n, "backbone.feature_extractor.")  # feature_grad_mult 0
        assert not torch.equal(taken[n]["proj.weight"], taken[n - 1]["proj.weight"]) if n > 1 else True
    assert not changed(2, "backbone.")  # only the output layer trains during the freeze period
    assert changed(3, "backbone.encoder.layers.") and changed(4, "backbone.encoder.layers.")
    assert [r["frozen"] for r in read_jsonl(tmp_path / "init" / "train.jsonl")] == [1.0, 1.0, 0.0, 0.0]
    assert read_metadata(tmp_path / "init" / "checkpoint_last.safetensors")["init"] == str(pretrained)
    # a CTC checkpoint is a valid --init too: its backbone is kept, the output layer is new
    ctc = tmp_path / "init" / "checkpoint_last.safetensors"
    taken.clear()
    run_finetune(config(corpus, tmp_path / "again", init=ctc, freeze_updates=1, max_updates=1))
    assert all(torch.equal(taken[1][k], v) for k, v in load_model(ctc).state_dict().items() if k != "proj.weight"
               and k != "proj.bias")
    assert not torch.equal(taken[1]["proj.weight"], load_model(ctc).state_dict()["proj.weight"])


def test_resume_continues_like_an_uninterrupted_run(corpus: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = dict(from_scratch=True, preset="tiny", model_args=tuple((k, str(v)) for k, v in SMALL.items()),
                   save_interval=2)
    run_finetune(config(corpus, tmp_path / "straight", **scratch))
    step = CTCTask.train_step
    calls = [0]

    def dies_after_two(self: CTCTask, model: Any, batch: Any) -> Any:
        calls[0] += 1
        if calls[0] > 2:
            raise KeyboardInterrupt  # stands for a kill after checkpoint 2
        return step(self, model, batch)

    monkeypatch.setattr(CTCTask, "train_step", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(config(corpus, tmp_path / "killed", **scratch))
    monkeypatch.setattr(CTCTask, "train_step", step)
    run_finetune(config(corpus, tmp_path / "killed", resume=True, **scratch))
    a, _ = load_checkpoint(tmp_path / "straight" / "checkpoint_last.safetensors")
    b, _ = load_checkpoint(tmp_path / "killed" / "checkpoint_last.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [r["update"] for r in read_jsonl(tmp_path / "killed" / "train.jsonl")] == [1, 2, 3, 4]


def test_ctc_loss_is_summed_negative_log_likelihood() -> None:
    """Against brute force over every alignment: p(y|x) = sum over paths that collapse to y of prod p(path)."""
    torch.manual_seed(0)
    T, V = 4, 3
    lp = torch.randn(2, T, V).log_softmax(-1)
    targets = torch.tensor([[1, 2], [1, -1]])  # the second row is padded

    def brute(row: torch.Tensor, y: list[int], frames: int) -> float:
        total = 0.0
        for path in itertools.product(range(V), repeat=frames):
            collapsed = [s for k, s in enumerate(path) if s != 0 and (k == 0 or s != path[k - 1])]
            if collapsed == y:
                total += math.exp(sum(float(row[t, s]) for t, s in enumerate(path)))
        return -math.log(total)

    frames = torch.tensor([4, 3])
    got = ctc_loss(lp, frames, targets, torch.tensor([2, 1]))
    assert float(got) == pytest.approx(brute(lp[0], [1, 2], 4) + brute(lp[1], [1], 3), rel=1e-5)
    # a target longer than the frames (zero_infinity): contributes 0 instead of inf
    long_ = ctc_loss(lp[:1], torch.tensor([2]), torch.tensor([[1, 1, 2]]), torch.tensor([3]))
    assert float(long_) == 0.0


class Emitter(torch.nn.Module):
    """Stands in for a CTC model: emits a fixed best path per utterance."""

    vocab = ["<blank>", *SYMBOLS]

    def __init__(self, paths: list[list[int]]) -> None:
        super().__init__()
        self.paths = paths

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = max(len(p) for p in self.paths)
        lp = torch.full((len(self.paths), T, len(self.vocab)), -10.0)
        for r, p in enumerate(self.paths):
            lp[r, torch.arange(len(p)), torch.tensor(p)] = 0.0
        return lp.log_softmax(-1), torch.tensor([len(p) for p in self.paths])


def test_valid_wer_from_greedy_hypotheses() -> None:
    # refs "AB C" and "BA"; best paths spell "AB C" (0 errors) and "B" (1 substitution): WER 1/3
    model = Emitter([[2, 2, 0, 3, 1, 4, 1], [3, 0, 1]])
    task = CTCTask(model, 0)
    ltr = torch.tensor([[2, 3, 1, 4, 1], [3, 2, 1, -1, -1]])
    batch = Batch(wave=torch.zeros(2, 10), lengths=torch.tensor([10, 10]), targets=[ltr],
                  target_lengths=[torch.tensor([5, 3])])
    res = task.reduce(task.valid_step(model, batch))
    assert res["wer"] == pytest.approx(100 / 3)
    assert res["cer"] == pytest.approx(100 / 6)  # "AB C" vs "AB C", "BA" vs "B": one deletion of 6 characters
    assert res["loss"] > 0


def test_label_and_vocabulary_errors(corpus: Path, tmp_path: Path, pretrained: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in corpus.iterdir():
        if f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    (bad / "wav").symlink_to(corpus / "wav")
    base = args(bad, tmp_path / "e", "--from-scratch", "--preset", "tiny", "--max-updates", "1")
    lines = (corpus / "train.ltr").read_text().splitlines()
    (bad / "train.ltr").write_text("\n".join(lines[:-1]) + "\n")
    assert "bad/train.ltr: 5 lines but" in cli(*base)
    (bad / "train.ltr").write_text("\n".join([lines[0], "A Z |", *lines[2:]]) + "\n")
    assert "bad/train.ltr:2: symbol 'Z' is not in the vocabulary" in cli(*base)
    (bad / "train.ltr").write_text((corpus / "train.ltr").read_text())
    (bad / "dict.ltr.txt").write_text("A 1\nB 1\nC 1\n")
    assert "bad/dict.ltr.txt: vocabulary has no word boundary" in cli(*base)
    (bad / "dict.ltr.txt").write_text("<blank> 1\n| 1\nA 1\n")
    assert "lists '<blank>'" in cli(*base)
    (bad / "dict.ltr.txt").unlink()
    assert "dict.ltr.txt: dictionary not found" in cli(*base)
    ok = args(corpus, tmp_path / "e")
    cases = [
        ([], "either --init"),
        (["--init", str(pretrained), "--from-scratch", "--preset", "tiny"], "either --init"),
        (["--from-scratch"], "needs --preset"),
        (["--init", str(tmp_path / "nope.safetensors")], "nope.safetensors: --init model not found"),
        (["--from-scratch", "--preset", "tiny", "--ft-preset", "2h"], "unknown fine-tuning preset '2h'"),
        (["--from-scratch", "--preset", "tiny", "--resume"], "nothing to resume"),
        (["--from-scratch", "--preset", "tiny", "--train-split", "nope"], "split 'nope' not found"),
        (["--from-scratch", "--preset", "tiny", "--max-tokens", "1000"], "no utterance left"),
    ]
    for extra, message in cases:
        assert message in cli(*ok, *extra), extra
    assert not (tmp_path / "e" / "config.json").exists()  # failed starts leave no run behind


def test_targets_longer_than_frames_are_counted_and_harmless(tmp_path: Path) -> None:
    write_split(tmp_path, "train", [12000, 14000], seed=0)
    (tmp_path / "train.ltr").write_text("A B |\n" + "A B C " * 20 + "|\n")  # 61 letters, 43 frames
    (tmp_path / "dict.ltr.txt").write_text("".join(f"{s} 1\n" for s in SYMBOLS))
    p = CliRunner().invoke(app, args(tmp_path, tmp_path / "run", "--valid-split", "", "--from-scratch",
                                     "--preset", "tiny", "--max-updates", "2"))
    assert p.exit_code == 0, p.output
    assert "1 train utterances have more letters than the model has frames" in p.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["train_targets_longer_than_frames"] == 1
    assert all(math.isfinite(r["loss"]) for r in read_jsonl(tmp_path / "run" / "train.jsonl"))


def test_two_processes(corpus: Path, pretrained: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    s3l(*args(corpus, out, "--init", str(pretrained), "--max-updates", "2", "--freeze-updates", "1",
              "--valid-interval", "2", "--nproc", "2"))
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert read_metadata(out / "checkpoint_best.safetensors")["num_updates"] == 2
    assert [r["frozen"] for r in read_jsonl(out / "train.jsonl")] == [1.0, 0.0]


def test_presets_follow_fairseq_configs_and_table_6(tmp_path: Path) -> None:
    assert (budget("base", "10min").lr, budget("base", "10min").max_updates,
            budget("base", "10min").freeze_updates) == (5e-5, 13_000, 10_000)  # base_10m.yaml
    assert (budget("base", "10h").max_updates, budget("base", "100h").freeze_updates,
            budget("base", "960h").lr) == (20_000, 0, 1e-5)
    assert (budget("large", "1h").lr, budget("large", "1h").max_tokens) == (3e-4, 1_280_000)  # vox_1h.yaml
    assert budget("tiny", "1h").freeze_updates == budget("tiny", "10min").freeze_updates == 0  # no BASE share
    assert budget("base", "10min").best_metric == budget("large", "960h").best_metric == "wer"  # the papers' choice
    assert budget("tiny", "10min").best_metric == "cer"
    with pytest.raises(S3LError, match="--best-metric must be one of wer, cer, loss"):
        resolve(FinetuneConfig(data=tmp_path, out=tmp_path, from_scratch=True, preset="tiny", best_metric="bleu"),
                preset("tiny"))
    base = preset("base")
    model, opt = resolve(FinetuneConfig(data=tmp_path, out=tmp_path, init=tmp_path, ft_preset="10min"), base)
    assert (model.mask_prob, model.mask_length) == pytest.approx((0.75, 10))  # Table 6: p = 0.075, M = 10
    assert (model.mask_channel_prob, model.mask_channel_length) == pytest.approx((0.512, 64))  # 0.008 x 64
    assert (model.encoder_layerdrop, model.feature_grad_mult, opt.freeze_updates) == (0.1, 0.0, 10_000)
    model, opt = resolve(FinetuneConfig(data=tmp_path, out=tmp_path, from_scratch=True, preset="tiny",
                                        ft_preset="1h", mask_prob=0.3, lr=1e-4), preset("tiny"))
    assert (model.mask_prob, model.feature_grad_mult, opt.freeze_updates, opt.lr) == (0.3, 1.0, 0, 1e-4)
    assert model.encoder_layerdrop == 0.0  # tiny: no LayerDrop (4 blocks), where the 1h preset has 0.1
    model, opt = resolve(FinetuneConfig(data=tmp_path, out=tmp_path, init=tmp_path, layerdrop=0.2), preset("tiny"))
    assert (model.encoder_layerdrop, opt.freeze_updates) == (0.2, 0)  # --layerdrop still wins
    # with --init the budget follows the checkpoint's architecture
    assert resolve(FinetuneConfig(data=tmp_path, out=tmp_path, init=tmp_path), preset("tiny"))[1].max_updates == 600
    assert resolve(FinetuneConfig(data=tmp_path, out=tmp_path, init=tmp_path), preset("large"))[1].lr == 1e-4
    with pytest.raises(S3LError, match="--max-updates must be at least 1"):
        resolve(FinetuneConfig(data=tmp_path, out=tmp_path, init=tmp_path, max_updates=0), base)


def test_cpu_threads() -> None:
    from s3l.distributed import DistInfo, set_cpu_threads

    before = torch.get_num_threads()
    try:
        set_cpu_threads(3, DistInfo(rank=0, world_size=1, local_rank=0, device="cpu"))
        assert torch.get_num_threads() == 3
        set_cpu_threads(0, DistInfo(rank=0, world_size=1, local_rank=0, device="cpu"))  # one process: unchanged
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
