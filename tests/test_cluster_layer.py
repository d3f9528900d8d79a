"""``s3l cluster --feature layer`` on a tiny random checkpoint, and the multi-process path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s3l.cluster import ClusterConfig, run_cluster
from s3l.cluster.features import LayerExtractor, layer_frames
from s3l.cluster.labels import load_kmeans
from s3l.errors import S3LError
from s3l.manifest import write_split
from s3l.models import build_pretrain_model, load_model, preset, save_model


def _tiny(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    cfg = preset("tiny", "contrastive").replace(conv_dim=32, encoder_layers=2, encoder_embed_dim=32,
                                                encoder_ffn_embed_dim=64, encoder_attention_heads=2, conv_pos=16,
                                                conv_pos_groups=4, final_dim=16, latent_vars=8)
    save_model(path, build_pretrain_model(cfg))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("layer")
    rng = np.random.default_rng(1)
    (root / "audio").mkdir()
    for split, n in (("train", 5), ("valid", 2)):
        rows = []
        for i in range(n):
            size = int(rng.integers(3000, 20000))
            w = 0.2 * np.sin(np.arange(size) * rng.uniform(0.02, 0.3)) + 0.02 * rng.standard_normal(size)
            sf.write(root / "audio" / f"{split}{i}.wav", w.astype(np.float32), 16000)
            rows.append((f"{split}{i}.wav", size))
        write_split(root, split, root / "audio", rows)
    return root, _tiny(root / "tiny.safetensors", 0)


def _waves(data: Path, split: str) -> list[np.ndarray]:
    lines = (data / f"{split}.tsv").read_text().splitlines()
    return [sf.read(Path(lines[0]) / line.split("\t")[0], dtype="float32")[0] for line in lines[1:]]


def test_layer_run_writes_50hz_labels_of_the_requested_layer(setup, tmp_path) -> None:
    data, ckpt = setup
    summary = run_cluster(ClusterConfig(data=data, out=tmp_path, feature="layer", checkpoint=ckpt, layer=2, ks=(6,),
                                        device="cpu", batch_seconds=2.0))
    assert summary["label_rate"] == 50 and summary["dim"] == 32 and summary["layer"] == 2
    m = load_kmeans(tmp_path / "kmeans.safetensors")
    assert m.spec.checkpoint_hash == summary["checkpoint_hash"] and m.centroids.shape == (6, 32)
    model = load_model(ckpt)
    c = torch.from_numpy(m.centroids).double()
    lines = (tmp_path / "valid.km").read_text().splitlines()
    for wave, line in zip(_waves(data, "valid"), lines):
        with torch.no_grad():  # one utterance at a time: the batched run must agree
            h = model.hidden_states(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))[2][0]
        assert h.shape[0] == layer_frames(len(wave))
        assert [int(t) for t in line.split()] == torch.cdist(h.double(), c).argmin(1).tolist()

    other = _tiny(tmp_path / "other.safetensors", 1)
    with pytest.raises(S3LError, match="hash"):
        run_cluster(ClusterConfig(data=data, out=tmp_path / "x", models=(tmp_path / "kmeans.safetensors",),
                                  checkpoint=other, device="cpu"))
    with pytest.raises(S3LError, match="fit on layer 2, not --layer 1"):
        run_cluster(ClusterConfig(data=data, out=tmp_path / "x", models=(tmp_path / "kmeans.safetensors",),
                                  layer=1, device="cpu"))


def test_layer_out_of_range(setup, tmp_path) -> None:
    data, ckpt = setup
    with pytest.raises(S3LError, match="--layer 3 out of range; the checkpoint has layers 0..2"):
        run_cluster(ClusterConfig(data=data, out=tmp_path, feature="layer", checkpoint=ckpt, layer=3, device="cpu"))


def test_long_utterances_go_in_frame_aligned_chunks(setup) -> None:
    _, ckpt = setup
    ex = LayerExtractor(ckpt, 1, "cpu", batch_seconds=10.0, chunk_seconds=0.25)
    assert ex.chunk_samples == ex.chunk_frames * 320 + 80 <= 4000
    wave = np.random.default_rng(0).standard_normal(11_111).astype(np.float32) * 0.1
    (feats,) = ex([wave])
    assert feats.shape == (layer_frames(len(wave)), 32)
    with torch.no_grad():
        first = ex.model.hidden_states(torch.from_numpy(wave[: ex.chunk_samples])[None])[1][0]
    torch.testing.assert_close(feats[: ex.chunk_frames], first)


def test_two_processes_give_the_same_labels(setup, tmp_path) -> None:
    data, _ = setup
    outs = []
    for nproc in (1, 2):
        out = tmp_path / f"n{nproc}"
        r = subprocess.run([sys.executable, "-m", "s3l", "cluster", "--data", str(data), "--out", str(out), "--k", "7",
                            "--nproc", str(nproc), "--device", "cpu"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(out)
    for split in ("train", "valid"):
        assert (outs[0] / f"{split}.km").read_text() == (outs[1] / f"{split}.km").read_text()
    a, b = (load_kmeans(o / "kmeans.safetensors").centroids for o in outs)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
