"""``s3l export``: s3l checkpoint -> transformers directory -> s3l checkpoint, and its user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Wav2Vec2ForCTC

from s3l import load_model
from s3l.convert.export import ExportConfig, run_export
from s3l.errors import S3LError
from s3l.models import CTCModel, ModelConfig, save_model

SMALL = ModelConfig(conv_dim=32, encoder_layers=2, encoder_embed_dim=48, encoder_ffn_embed_dim=96,
                    encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, final_dim=20)


def s3l(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s3l", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_export_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CTCModel(SMALL, ["<blank>", "|", "A", "B"])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_model(tmp_path / "ctc.safetensors", model)

    r = s3l("export", tmp_path / "ctc.safetensors", tmp_path / "hf")
    assert r.returncode == 0, r.stderr
    assert "vocab.json" in r.stdout
    hf = Wav2Vec2ForCTC.from_pretrained(tmp_path / "hf").eval()
    wave = torch.randn(1, 4000)
    with torch.no_grad():
        ref = torch.log_softmax(hf(wave).logits, -1)
        ours, _ = model.eval()(wave)
    assert float((ref - ours).abs().max()) <= 1e-4

    r = s3l("export", tmp_path / "hf", tmp_path / "back.safetensors", "--to", "s3l")
    assert r.returncode == 0, r.stderr
    back = load_model(tmp_path / "back.safetensors")
    assert back.vocab == model.vocab
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_export_user_errors(tmp_path: Path) -> None:
    save_model(tmp_path / "m.safetensors", CTCModel(SMALL, ["<blank>", "a"]))
    r = s3l("export", tmp_path / "m.safetensors", tmp_path / "x", "--to", "onnx")
    assert r.returncode == 2 and r.stderr == "error: unknown export target 'onnx'; choose one of hf, s3l\n"

    def run(model: Path, out: Path, to: str = "hf", force: bool = False) -> list[Path]:
        return run_export(ExportConfig(model=model, out=out, to=to, force=force))

    with pytest.raises(S3LError, match="x.pt: an s3l checkpoint is a .safetensors file"):
        run(tmp_path / "m.safetensors", tmp_path / "x.pt", "s3l")
    with pytest.raises(S3LError, match="nothing.pt: model not found"):
        run(tmp_path / "nothing.pt", tmp_path / "hf")
    (tmp_path / "file").write_text("")
    with pytest.raises(S3LError, match="file: exists and is not a directory"):
        run(tmp_path / "m.safetensors", tmp_path / "file")
    assert len(run(tmp_path / "m.safetensors", tmp_path / "hf")) == 5
    with pytest.raises(S3LError, match="already exists; pass --force"):
        run(tmp_path / "m.safetensors", tmp_path / "hf")
    run(tmp_path / "m.safetensors", tmp_path / "hf", force=True)
    run(tmp_path / "m.safetensors", tmp_path / "m2.safetensors", "s3l")
    with pytest.raises(S3LError, match="m2.safetensors already exists"):
        run(tmp_path / "m.safetensors", tmp_path / "m2.safetensors", "s3l")
