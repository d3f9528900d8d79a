"""Pre-training forward+backward throughput (audio seconds per second) of s3l against reference implementations.

Not a test. For each objective (contrastive, hubert) and preset (tiny, base), build the s3l pre-training model and
the reference models configured alike, and time training steps (forward, loss, backward) on the same batch in the
same process, alternating the models step by step so that machine load affects them alike:

- contrastive, full objective: Hugging Face ``transformers.Wav2Vec2ForPreTraining`` built from s3l's config by
  s3l's own exporter mapping (same conv layers, dims, blocks, heads, dropouts, 2 x 320 codewords,
  ``codevector_dim`` = vq_dim, ``proj_codevector_dim`` = final_dim, 100 distractors, mask_prob / mask_length),
  fed ``mask_time_indices`` and ``sampled_negative_indices`` drawn each step, inside the timed step, by transformers'
  own ``_compute_mask_indices`` / ``_sample_negative_indices`` (as its pre-training example does). Differences that
  stay: HF quantizes every frame (s3l only the masked ones) and has no feature penalty or ``feature_grad_mult``;
- contrastive, backbone only: ``torchaudio.models.wav2vec2_model`` (feature encoder + transformer) with a
  squared-output loss, since torchaudio has no wav2vec 2.0 pre-training head (no quantizer, masking or
  contrastive loss); s3l's step does strictly more work here;
- hubert: ``torchaudio.models.hubert_pretrain_model`` (masking, projection, label logits, feature penalty) with the
  loss of torchaudio's HuBERT recipe (cross entropy on masked frames + 10 x feature penalty), against s3l's
  ``HubertModel`` with one 50 Hz label set of 100 units.

LayerDrop is set to 0 in every model (BASE has 0.05): a randomly skipped block would make the few timed steps
differ in work. Dropout stays as in the preset. Each figure is the fastest of ``--steps`` timed steps (after one
warm-up step per model): the step least disturbed by other load.

Peak memory (``--memory``, on by default): each model runs one step in a fresh process; the figure is the peak
resident memory during that step (VmHWM, reset just before it) minus the resident memory before it, i.e. the
step's activations, gradients and workspace, without the weights.

    OMP_NUM_THREADS=1 python recipes/benchmarks/bench_pretrain.py --threads 1 --steps 5 --base-steps 3

Prints a table and writes the figures to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
import transformers
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

from s3l.convert.hf_export import _hf_config
from s3l.models import ModelConfig, build_pretrain_model, encoder_frames, preset

SAMPLE_RATE = 16_000
NUM_UNITS = 100  # HuBERT: one label set of K units
SHAPES = {"tiny": (4, 4.0), "base": (2, 4.0)}  # batch x seconds: 16 s and 8 s of audio
MODELS = {"contrastive": ("s3l", "hf", "torchaudio"), "hubert": ("s3l", "torchaudio")}
REFERENCE_NAMES = {("contrastive", "hf"): "HF Wav2Vec2ForPreTraining",
                   ("contrastive", "torchaudio"): "torchaudio wav2vec2_model, backbone only",
                   ("hubert", "torchaudio"): "torchaudio hubert_pretrain_model"}
ATTN_IMPLEMENTATION = "sdpa"  # transformers' attention; s3l and torchaudio both use scaled_dot_product_attention

Batch = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]  # wave (B, S), lengths (B,), labels [(B, T)]


def bench_config(objective: str, name: str) -> ModelConfig:
    return preset(name, objective).replace(encoder_layerdrop=0.0)


def make_batch(objective: str, batch: int, seconds: float) -> Batch:
    n = int(seconds * SAMPLE_RATE)
    wave = 0.1 * torch.randn(batch, n)  # (B, S)
    lengths = torch.full((batch,), n, dtype=torch.long)
    labels = [torch.randint(0, NUM_UNITS, (batch, encoder_frames(n)))] if objective == "hubert" else []
    return wave, lengths, labels


def torchaudio_model(cfg: ModelConfig, objective: str) -> torch.nn.Module:
    common = dict(
        extractor_mode=cfg.extractor_mode,
        extractor_conv_layer_config=[(cfg.conv_dim, k, s) for k, s in zip(cfg.conv_kernels, cfg.conv_strides)],
        extractor_conv_bias=cfg.conv_bias, encoder_embed_dim=cfg.encoder_embed_dim,
        encoder_projection_dropout=cfg.dropout_input, encoder_pos_conv_kernel=cfg.conv_pos,
        encoder_pos_conv_groups=cfg.conv_pos_groups, encoder_num_layers=cfg.encoder_layers,
        encoder_num_heads=cfg.encoder_attention_heads, encoder_attention_dropout=cfg.attention_dropout,
        encoder_ff_interm_features=cfg.encoder_ffn_embed_dim, encoder_ff_interm_dropout=cfg.activation_dropout,
        encoder_dropout=cfg.dropout, encoder_layer_norm_first=cfg.layer_norm_first,
        encoder_layer_drop=cfg.encoder_layerdrop,
    )
    if objective == "contrastive":
        return torchaudio.models.wav2vec2_model(**common, aux_num_out=None)
    return torchaudio.models.hubert_pretrain_model(
        **common, mask_prob=cfg.mask_prob, mask_selection="static", mask_other=0.0, mask_length=cfg.mask_length,
        no_mask_overlap=False, mask_min_space=1, mask_channel_prob=cfg.mask_channel_prob,
        mask_channel_selection="static", mask_channel_other=0.0, mask_channel_length=cfg.mask_channel_length,
        no_mask_channel_overlap=False, mask_channel_min_space=1, skip_masked=False, skip_nomask=False,
        num_classes=NUM_UNITS, final_dim=cfg.final_dim, feature_grad_mult=cfg.feature_grad_mult,
    )


def hf_model(cfg: ModelConfig) -> Wav2Vec2ForPreTraining:
    """``Wav2Vec2ForPreTraining`` with the architecture and objective settings s3l would export ``cfg`` to."""
    hf_cfg = _hf_config(cfg, "wav2vec2", "Wav2Vec2ForPreTraining")
    for key in ("model_type", "architectures", "torch_dtype"):
        hf_cfg.pop(key)
    return Wav2Vec2ForPreTraining(Wav2Vec2Config(**hf_cfg, attn_implementation=ATTN_IMPLEMENTATION))


def s3l_step(model: torch.nn.Module, batch: Batch) -> None:
    wave, lengths, labels = batch
    model(wave, lengths, labels or None).loss.backward()


def hf_step(model: Wav2Vec2ForPreTraining, batch: Batch) -> None:
    wave = batch[0]
    c = model.config
    shape = (wave.size(0), int(model._get_feat_extract_output_lengths(wave.size(1))))  # (B, T)
    mask = _compute_mask_indices(shape, c.mask_time_prob, c.mask_time_length, min_masks=c.mask_time_min_masks)
    neg = _sample_negative_indices(shape, c.num_negatives, mask_time_indices=mask)  # (B, T, K) into B*T frames
    out = model(wave, mask_time_indices=torch.from_numpy(mask),
                sampled_negative_indices=torch.from_numpy(neg).long())
    out.loss.backward()


def torchaudio_step(model: torch.nn.Module, objective: str, batch: Batch) -> None:
    wave, lengths, labels = batch
    if objective == "contrastive":
        x, _ = model(wave, lengths)
        x.pow(2).mean().backward()
        return
    logit_m, logit_u, pen = model(wave, labels[0], lengths)
    # torchaudio's recipe (hubert_loss): the positive is column 0; masked frames only, feature penalty x 10.
    loss = F.cross_entropy(logit_m, logit_m.new_zeros(logit_m.shape[0], dtype=torch.long), reduction="sum")
    (loss / max(logit_m.shape[0], 1) + 10.0 * pen).backward()


def build(objective: str, name: str, which: str) -> tuple[torch.nn.Module, Callable[[Batch], None]]:
    """One model in training mode and its training step."""
    cfg = bench_config(objective, name)
    if which == "s3l":
        model = build_pretrain_model(cfg, [NUM_UNITS] if objective == "hubert" else None)
        return model.train(), lambda b: s3l_step(model, b)
    if which == "hf":
        model = hf_model(cfg)
        return model.train(), lambda b: hf_step(model, b)
    model = torchaudio_model(cfg, objective)
    return model.train(), lambda b: torchaudio_step(model, objective, b)


def bench(objective: str, name: str, steps: int) -> dict:
    """Time every model of ``objective`` on one batch, alternating them; the fastest step of each."""
    torch.manual_seed(0)
    batch_size, seconds = SHAPES[name]
    models = {which: build(objective, name, which) for which in MODELS[objective]}
    batch = make_batch(objective, batch_size, seconds)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(1 + steps):  # the first round is the warm-up
        for which, (model, step) in models.items():
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            step(batch)
            times[which].append(time.perf_counter() - t)
    audio = batch_size * seconds
    best = {k: min(v[1:]) for k, v in times.items()}
    result = {
        "objective": objective, "preset": name, "batch": f"{batch_size} x {seconds:g} s",
        "params_M": {k: round(sum(p.numel() for p in m.parameters()) / 1e6, 2) for k, (m, _) in models.items()},
        "step_s": {k: [round(t, 3) for t in v[1:]] for k, v in times.items()},
        "warmup_step_s": {k: round(v[0], 3) for k, v in times.items()},
        "audio_s_per_s": {k: round(audio / t, 2) for k, t in best.items()},
    }
    if "hf" in models:
        result["hf_attn_implementation"] = models["hf"][0].config._attn_implementation
    return result


def vm_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS: resident now, VmHWM: peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(objective: str, name: str, which: str) -> None:
    """One training step of one model in this fresh process; prints its peak extra resident memory (MiB)."""
    torch.manual_seed(0)
    _, step = build(objective, name, which)
    batch = make_batch(objective, *SHAPES[name])
    before = vm_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
    step(batch)
    print(json.dumps({"peak_step_MiB": round((vm_kib("VmHWM") - before) / 1024, 1),
                      "rss_before_MiB": round(before / 1024, 1)}))


def peak_memory(objective: str, name: str, which: str, threads: int) -> float | None:
    cmd = [sys.executable, __file__, "--threads", str(threads), "--memory-child", f"{objective},{name},{which}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"memory of {objective}/{name}/{which} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_step_MiB"]


def machine_info(threads: int) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "torchaudio": torchaudio.__version__, "transformers": transformers.__version__,
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per model (after one warm-up step)")
    ap.add_argument("--base-steps", type=int, default=None, help="timed steps for base (default: --steps)")
    ap.add_argument("--presets", default="tiny,base")
    ap.add_argument("--objectives", default="contrastive,hubert")
    ap.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory processes")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=Path("bench_pretrain.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child.split(","))
        return

    load_before = round(os.getloadavg()[0], 2)
    rows = []
    for name in args.presets.split(","):
        steps = args.base_steps if name == "base" and args.base_steps else args.steps
        for objective in args.objectives.split(","):
            t = time.perf_counter()
            r = bench(objective, name, steps)
            if args.memory:
                r["peak_step_MiB"] = {k: peak_memory(objective, name, k, args.threads) for k in MODELS[objective]}
            r["wall_s"] = round(time.perf_counter() - t, 1)
            rows.append(r)
            print(json.dumps(r), flush=True)
    machine = machine_info(args.threads)
    machine["load_avg_1min_before"] = load_before
    args.out.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pre-training forward+loss+backward, CPU, {args.threads} thread(s): audio seconds per second")
    for col in ("objective", "preset", "batch", "reference", "s3l", "reference ", "s3l / ref", "peak MiB s3l / ref"):
        table.add_column(col)
    for r in rows:
        ours = r["audio_s_per_s"]["s3l"]
        for which in MODELS[r["objective"]][1:]:
            ref = r["audio_s_per_s"][which]
            mem = r.get("peak_step_MiB", {})
            label = REFERENCE_NAMES[(r["objective"], which)]
            if which == "hf":
                label += f" ({r['hf_attn_implementation']})"
            table.add_row(r["objective"], r["preset"], r["batch"], label, f"{ours:.2f}", f"{ref:.2f}",
                          f"{ours / ref:.2f}x", f"{mem.get('s3l')} / {mem.get(which)}" if mem else "-")
    console = Console(width=150)
    console.print(table)
    console.print(machine)


if __name__ == "__main__":
    main()
