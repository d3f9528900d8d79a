"""Results of the synthetic recipe: a Markdown table (printed and in EXP/results.md), EXP/results.json, EXP/results.png.

    python recipes/synthetic/results.py EXP

Reads only the files the stages write: ``EXP/done/*.json`` (stage times), ``EXP/data/synth.json`` (corpus),
``EXP/{hubert1,hubert2,wav2vec2}/summary.json`` (pre-training), ``EXP/ft/MODEL/summary.json`` (fine-tuning),
``EXP/score/MODEL-{greedy,lm}.json`` (``s3l score`` on test), ``EXP/decode/MODEL/lm/test.json`` (tuned LM weight and
word score) and ``EXP/analysis/*/metrics.json`` (``s3l analyze-units``). A stage that has not run shows as "-".
The three claims of issue 7 are checked on the run's own numbers and reported as they come out.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

MODELS = {  # fine-tuned models, baseline first
    "scratch": "from scratch (no pre-training)",
    "wav2vec2": "wav2vec 2.0 (contrastive)",
    "hubert1": "HuBERT iteration 1 (MFCC targets)",
    "hubert2": "HuBERT iteration 2 (layer targets)",
}
PRETRAINED = ("wav2vec2", "hubert1", "hubert2")
UNITS = {"mfcc": "MFCC", "hubert1": "HuBERT iteration-1 layer", "hubert2": "HuBERT iteration-2 layer"}
DECODERS = ("greedy", "lm")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the stage that writes it has not run."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def collect(exp: Path) -> dict[str, Any]:
    """Every figure of the report, as plain JSON data."""
    stages = sorted((read_json(p) or {} for p in (exp / "done").glob("*.json")), key=lambda s: s.get("stage", 0))
    synth = read_json(exp / "data" / "synth.json") or {}
    corpus = {name: split.get("hours") for name, split in synth.get("splits", {}).items()}

    pretraining = {}
    for name in PRETRAINED:
        s = read_json(exp / name / "summary.json")
        if s is not None:
            v = s.get("valid", {})
            pretraining[name] = {
                "objective": s.get("objective"), "updates": s.get("num_updates"),
                "train_seconds": s.get("train_seconds"),
                "valid_loss": v.get("loss"), "accuracy": v.get("acc_masked", v.get("accuracy")),
                "code_perplexity": v.get("code_perplexity"),
            }

    wer: dict[str, dict[str, Any]] = {}
    for m in MODELS:
        ft = read_json(exp / "ft" / m / "summary.json") or {}
        tuned = read_json(exp / "decode" / m / "lm" / "test.json") or {}
        row = {"selected_by": f"dev {ft['metric']}" if ft.get("metric") else None, "dev_best": ft.get("best"),
               "best_update": ft.get("best_update"), "finetune_updates": ft.get("num_updates"),
               "lm_weight": tuned.get("lm_weight"), "word_score": tuned.get("word_score")}
        for d in DECODERS:
            sc = read_json(exp / "score" / f"{m}-{d}.json")
            row[f"test_wer_{d}"] = sc.get("wer") if sc else None
            row[f"test_cer_{d}"] = sc.get("cer") if sc else None
        wer[m] = row

    units = {}
    for name in UNITS:
        mt = read_json(exp / "analysis" / name / "metrics.json")
        if mt is not None:
            units[name] = {k: mt.get(k) for k in ("pnmi", "phone_purity", "cluster_purity", "used_units", "num_units")}

    return {"corpus_hours": corpus, "pretraining": pretraining, "wer": wer, "units": units,
            "claims": claims(units, wer), "stages": stages,
            "total_seconds": round(sum(s.get("seconds", 0.0) for s in stages), 1),
            "wall_seconds": wall_seconds(stages),
            "plots": sorted(str(p.relative_to(exp)) for p in (exp / "analysis").glob("*/*.png"))}


def wall_seconds(stages: list[dict[str, Any]]) -> float | None:
    """From the first stage's start to the last stage's end (stages 3-11 overlap in two lanes, so this is less
    than the sum of the stage times). None when a marker lacks its finish time."""
    try:
        ends = [datetime.fromisoformat(s["finished"]).timestamp() for s in stages]
        starts = [end - s["seconds"] for end, s in zip(ends, stages)]
    except (KeyError, TypeError, ValueError):
        return None
    return round(max(ends) - min(starts), 1) if stages else None


def claims(units: dict[str, Any], wer: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The papers' three claims in miniature, each with the numbers it rests on and whether it held here."""
    out = []
    mfcc, it1 = (units.get(k, {}).get("pnmi") for k in ("mfcc", "hubert1"))
    out.append({"kind": "pnmi", "model": "hubert1", "claim": "PNMI of iteration-1 layer units above MFCC units",
                "evidence": f"{fmt(it1, 3)} vs {fmt(mfcc, 3)}",
                "holds": None if it1 is None or mfcc is None else it1 > mfcc})
    base = wer["scratch"]
    for m in PRETRAINED:
        pairs = [(wer[m][f"test_wer_{d}"], base[f"test_wer_{d}"]) for d in DECODERS]
        known = [(a, b) for a, b in pairs if a is not None and b is not None]
        out.append({"kind": "pretraining", "model": m,
                    "claim": f"{MODELS[m]} + fine-tuning: test WER below the from-scratch baseline (greedy / LM)",
                    "evidence": " / ".join(f"{fmt(a, 1)} vs {fmt(b, 1)}" for a, b in pairs),
                    "holds": all(a < b for a, b in known) if len(known) == len(pairs) else None})
    for m in MODELS:
        g, lm = wer[m]["test_wer_greedy"], wer[m]["test_wer_lm"]
        out.append({"kind": "lm", "model": m, "claim": f"{MODELS[m]}: 4-gram LM decoding below greedy",
                    "evidence": f"{fmt(lm, 1)} vs {fmt(g, 1)}",
                    "holds": None if g is None or lm is None else lm < g})
    return out


def markdown(r: dict[str, Any]) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        return lines + ["| " + " | ".join(row) + " |" for row in rows]

    c = r["corpus_hours"]
    out = ["# s3l synthetic demo: results", "",
           f"Corpus (hours): unlabeled train {fmt(c.get('train'))}, fine-tuning train-10min "
           f"{fmt(c.get('train-10min'), 3)}, dev {fmt(c.get('dev'), 3)}, test {fmt(c.get('test'), 3)}. "
           f"Wall time: {fmt(r['wall_seconds'] and r['wall_seconds'] / 60, 1)} min (stages 3-11 in two lanes side by "
           f"side; the stage times add up to {r['total_seconds'] / 60:.1f} min).", "", "## Claims", ""]
    verdict = {True: "yes", False: "**no**", None: "-"}
    out += table(["claim", "this run", "holds"], [[x["claim"], x["evidence"], verdict[x["holds"]]]
                                                  for x in r["claims"]])
    out += ["", "## Word error rate (%)", ""]
    rows = []
    for m, label in MODELS.items():
        w = r["wer"][m]
        chosen = f"{w['selected_by'] or '-'} {fmt(w['dev_best'], 1)}, update {fmt(w['best_update'])}"
        rows.append([label, chosen, fmt(w["test_wer_greedy"], 1), fmt(w["test_wer_lm"], 1),
                     fmt(w["test_cer_greedy"], 1), fmt(w["lm_weight"]), fmt(w["word_score"])])
    out += table(["model", "checkpoint_best (selected by, update)", "test WER greedy", "test WER 4-gram",
                  "test CER greedy", "LM weight", "word score"], rows)
    out += ["", "LM weight and word score tuned on dev (`s3l decode --tune`).", "", "## Unit quality on dev", ""]
    out += table(["units", "K", "PNMI", "phone purity", "cluster purity", "units used"],
                 [[UNITS[k], fmt(u["num_units"]), fmt(u["pnmi"], 3), fmt(u["phone_purity"], 3),
                   fmt(u["cluster_purity"], 3), fmt(u["used_units"])] for k, u in r["units"].items()])
    out += ["", "## Pre-training (last validation on dev)", ""]
    out += table(["model", "objective", "updates", "train s", "valid loss", "accuracy", "code perplexity"],
                 [[MODELS[k], fmt(p["objective"]), fmt(p["updates"]), fmt(p["train_seconds"], 0),
                   fmt(p["valid_loss"], 3), fmt(p["accuracy"], 3), fmt(p["code_perplexity"], 1)]
                  for k, p in r["pretraining"].items()])
    out += ["", "Accuracy: HuBERT's masked-frame unit accuracy; wav2vec 2.0's contrastive accuracy (0.03-0.04 while "
            "its loss sits at ln 101 before learning starts: 1/101 plus distractors excluded as identical).",
            "", "## Stage times", ""]
    out += table(["stage", "name", "seconds"], [[str(s["stage"]), s["name"], fmt(s["seconds"], 1)]
                                                for s in r["stages"]])
    out += [f"| | sum | {r['total_seconds']:.1f} |", f"| | wall time | {fmt(r['wall_seconds'], 1)} |", ""]
    if r["plots"]:
        out += ["Plots: " + ", ".join(f"`{p}`" for p in ["results.png", *r["plots"]]), ""]
    return "\n".join(out)


def plot(r: dict[str, Any], path: Path) -> None:
    """Test WER per model and decoder, and PNMI per unit type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    names = list(MODELS)
    for i, (d, label) in enumerate(zip(DECODERS, ("greedy", "4-gram LM"))):
        vals = [r["wer"][m][f"test_wer_{d}"] or 0.0 for m in names]
        ax1.bar([x + 0.38 * i for x in range(len(names))], vals, width=0.38, label=label)
    ax1.set_xticks([x + 0.19 for x in range(len(names))], [MODELS[m].split(" (")[0] for m in names], fontsize=8)
    ax1.set_ylabel("test WER (%)")
    ax1.set_title("fine-tuned on train-10min")
    ax1.legend()
    keys = list(r["units"])
    ax2.bar(range(len(keys)), [r["units"][k]["pnmi"] for k in keys], color="tab:green")
    ax2.set_xticks(range(len(keys)), [UNITS[k].replace("HuBERT ", "") for k in keys], fontsize=8)
    ax2.set_ylabel("PNMI on dev")
    ax2.set_title("unit quality")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exp", type=Path, help="experiment directory of recipes/synthetic/run.sh")
    args = parser.parse_args(argv)
    if not (args.exp / "done").is_dir():
        print(f"error: {args.exp}: no finished stage (expected {args.exp / 'done'}/*.json)", file=sys.stderr)
        return 1
    r = collect(args.exp)
    text = markdown(r)
    (args.exp / "results.md").write_text(text, encoding="utf-8")
    (args.exp / "results.json").write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    plot(r, args.exp / "results.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
