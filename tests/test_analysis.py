"""s3l.analysis: unit metrics on hand-worked tables, rate alignment, and the analyze-units command."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from s3l.analysis.align import JointCounter, RateAlignment, align_pair, count_files
from s3l.analysis.metrics import (
    conditional_phone_given_unit,
    mean_run_length,
    order_units_by_phone,
    unit_quality,
)
from s3l.analysis.plots import phone_display_order
from s3l.cli import app
from s3l.errors import S3LError

LOG2_3 = math.log2(3)


# ---------------------------------------------------------------------------------------------- metrics


def test_hand_worked_table():
    # rows = phones a, b; columns = units 0, 1, 2; T = 8 frames.
    counts = np.array([[4, 2, 0],
                       [0, 1, 1]])
    # p_yz = [[1/2, 1/4, 0], [0, 1/8, 1/8]];  p_y = (3/4, 1/4);  p_z = (1/2, 3/8, 1/8)
    # phone purity   = Σ_j max_i p_yz = 1/2 + 1/4 + 1/8 = 7/8
    # cluster purity = Σ_i max_j p_yz = 1/2 + 1/8       = 5/8
    # H(y) = 3/4·log2(4/3) + 1/4·log2(4) = 2 - 3/4·log2(3)
    # I(y;z) = 1/2·log2((1/2)/(3/4·1/2)) + 1/4·log2((1/4)/(3/4·3/8)) + 1/8·log2((1/8)/(1/4·3/8))
    #          + 1/8·log2((1/8)/(1/4·1/8))
    #        = 1/2·log2(4/3) + 1/4·log2(8/9) + 1/8·log2(4/3) + 1/8·2
    #        = 9/4 - 9/8·log2(3)
    # PNMI = (9/4 - 9/8·log2 3) / (2 - 3/4·log2 3) = 9(2 - log2 3) / (16 - 6·log2 3) ≈ 0.5755
    q = unit_quality(counts)
    assert q.phone_purity == pytest.approx(7 / 8, abs=1e-12)
    assert q.cluster_purity == pytest.approx(5 / 8, abs=1e-12)
    assert q.phone_entropy_bits == pytest.approx(2 - 0.75 * LOG2_3, abs=1e-12)
    assert q.mutual_info_bits == pytest.approx(9 / 4 - 9 / 8 * LOG2_3, abs=1e-12)
    assert q.pnmi == pytest.approx(9 * (2 - LOG2_3) / (16 - 6 * LOG2_3), abs=1e-12)
    assert q.pnmi == pytest.approx(0.5755, abs=1e-4)
    # H(z) = 1/2·1 + 3/8·log2(8/3) + 1/8·3 = 1/2 + 9/8 - 3/8·log2 3 + 3/8
    assert q.unit_entropy_bits == pytest.approx(2 - 3 / 8 * LOG2_3, abs=1e-12)
    assert (q.frames, q.used_units, q.used_phones) == (8, 3, 2)
    # P(phone | unit): unit 0 all a; unit 1 a 2/3, b 1/3; unit 2 all b.
    np.testing.assert_allclose(conditional_phone_given_unit(counts), [[1, 2 / 3, 0], [0, 1 / 3, 1]])


def test_labels_equal_to_phones_give_one():
    counts = np.diag([5, 3, 7, 1])  # unit j is exactly phone j
    q = unit_quality(counts)
    assert q.pnmi == pytest.approx(1.0, abs=1e-12)
    assert q.phone_purity == pytest.approx(1.0, abs=1e-12)
    assert q.cluster_purity == pytest.approx(1.0, abs=1e-12)


def test_split_phone_keeps_pnmi_one_but_lowers_cluster_purity():
    # phone a is split evenly over units 0 and 1, phone b is unit 2: every unit is pure, H(y|z) = 0.
    counts = np.array([[2, 2, 0], [0, 0, 4]])
    q = unit_quality(counts)
    assert q.pnmi == pytest.approx(1.0, abs=1e-12)
    assert q.phone_purity == pytest.approx(1.0, abs=1e-12)
    assert q.cluster_purity == pytest.approx(2 / 8 + 4 / 8, abs=1e-12)  # max_j p(a, j) + max_j p(b, j)


def test_independent_units_give_zero():
    # exact product distribution: p_y = (2, 1, 1)/4, p_z = (1, 3, 4)/8, counts = 32 · p_y ⊗ p_z
    counts = np.outer([2, 1, 1], [1, 3, 4])
    q = unit_quality(counts)
    assert q.pnmi == pytest.approx(0.0, abs=1e-12)
    assert q.mutual_info_bits == pytest.approx(0.0, abs=1e-12)
    # every unit's most likely phone is the first (p = 1/2): phone purity = 1/2;
    # every phone's most likely unit is the last (p = 4/8): cluster purity = 1/2.
    assert q.phone_purity == pytest.approx(0.5, abs=1e-12)
    assert q.cluster_purity == pytest.approx(0.5, abs=1e-12)


def test_single_phone_pnmi_undefined():
    assert unit_quality(np.array([[3, 1]])).pnmi is None


def test_mean_run_length():
    # runs: [1 1 1][2][2 2]... -> utt 1: 1 1 1 2 2 3 = 3 runs of 6 frames; utt 2: 4 4 = 1 run of 2 frames
    assert mean_run_length([[1, 1, 1, 2, 2, 3], [4, 4], []]) == pytest.approx(8 / 4)
    # runs do not continue across utterances
    assert mean_run_length([[5, 5], [5, 5]]) == pytest.approx(2.0)


def test_units_ordered_by_most_likely_phone():
    counts = np.array([[0, 9, 1, 0, 3],   # phone x
                       [5, 1, 0, 0, 7]])  # phone y; unit 3 unused
    # display phone y first, then x: units of y (0 with P=1, 4 with P=0.7), then of x (1: 0.9, 2: 1.0)
    order = order_units_by_phone(counts, phone_rank=[1, 0])
    assert order.tolist() == [0, 4, 2, 1]
    # a tie between two phones goes to the phone shown first: unit 0 (P = 1/2, 1/2) joins the group of
    # phone 1 when phone 1 is shown first, before unit 1 (all phone 0)
    assert order_units_by_phone(np.array([[2, 3], [2, 0]]), phone_rank=[1, 0]).tolist() == [0, 1]
    assert order_units_by_phone(np.array([[2, 3], [2, 0]]), phone_rank=[0, 1]).tolist() == [1, 0]


def test_phone_display_order_groups_classes():
    phones = ["s", "aa", "zzz", "sil", "n", "qqq", "iy"]
    counts = [5, 5, 1, 9, 5, 3, 5]
    order = [phones[i] for i in phone_display_order(phones, counts)]
    # silence, vowels (iy before aa), nasal, fricative, then unknown symbols by frequency
    assert order == ["sil", "iy", "aa", "n", "s", "qqq", "zzz"]


# ---------------------------------------------------------------------------------------------- alignment


def test_rate_alignment_50_to_100():
    r = RateAlignment(unit_rate=50, phone_rate=100)
    assert (r.common_rate, r.unit_repeat, r.phone_repeat, r.tolerance) == (100, 2, 1, 2)
    u, p = align_pair(np.array([7, 8, 9]), np.array(list("aabbcc")), r)
    assert u.tolist() == [7, 7, 8, 8, 9, 9]
    assert p.tolist() == list("aabbcc")


def test_rate_alignment_100_to_50():
    r = RateAlignment(unit_rate=100, phone_rate=50)
    assert (r.common_rate, r.unit_repeat, r.phone_repeat) == (100, 1, 2)
    u, p = align_pair(np.array([1, 1, 2, 3]), np.array(["a", "b"]), r)
    assert u.tolist() == [1, 1, 2, 3] and p.tolist() == ["a", "a", "b", "b"]


def test_rate_alignment_non_integer_ratio_uses_lcm():
    r = RateAlignment(unit_rate=50, phone_rate=75)  # lcm 150: units x3, phones x2
    assert (r.common_rate, r.unit_repeat, r.phone_repeat, r.tolerance) == (150, 3, 2, 3)
    u, p = align_pair(np.array([1, 2]), np.array(["a", "b", "c"]), r)
    assert u.tolist() == [1, 1, 1, 2, 2, 2] and p.tolist() == ["a", "a", "b", "b", "c", "c"]


def test_length_tolerance():
    # default 20 ms: two frames at 100 Hz (the MFCC window's shortfall), one 50 Hz frame (the encoder's)
    same = RateAlignment(unit_rate=100, phone_rate=100)
    assert same.tolerance == 2
    u, p = align_pair(np.array([1, 2, 3]), np.array(list("abcd")), same)  # one frame longer: trimmed
    assert u.tolist() == [1, 2, 3] and p.tolist() == list("abc")
    u, p = align_pair(np.array([1, 2, 3]), np.array(list("abcde")), same)  # two frames: trimmed
    assert len(u) == len(p) == 3
    assert align_pair(np.array([1, 2, 3]), np.array(list("abcdef")), same) is None  # three frames: refused
    half = RateAlignment(unit_rate=50, phone_rate=100)
    u, p = align_pair(np.array([1, 2, 3]), np.array(list("abcdefgh")), half)  # 6 vs 8
    assert len(u) == len(p) == 6
    assert align_pair(np.array([1, 2, 3]), np.array(list("abcdefghi")), half) is None  # 6 vs 9
    # the unit stream may also be the longer one
    u, p = align_pair(np.array([1, 2, 3, 4]), np.array(list("abcdef")), half)  # 8 vs 6
    assert u.tolist() == [1, 1, 2, 2, 3, 3]
    # a one-frame tolerance at 100 Hz when asked for 10 ms
    strict = RateAlignment(unit_rate=100, phone_rate=100, max_diff_ms=10)
    assert strict.tolerance == 1
    assert align_pair(np.array([1, 2, 3]), np.array(list("abcde")), strict) is None


def test_tolerance_covers_real_extractor_lengths():
    # Kaldi MFCC (snip_edges) and conv-encoder frame counts against num_samples // 160 phone frames
    mfcc = RateAlignment(unit_rate=100, phone_rate=100)
    layer = RateAlignment(unit_rate=50, phone_rate=100)
    for n in range(400, 400 + 3 * 320):
        phones = np.zeros(n // 160, dtype=np.int64)
        assert align_pair(np.zeros(1 + (n - 400) // 160, dtype=np.int64), phones, mfcc) is not None, n
        assert align_pair(np.zeros(1 + (n - 400) // 320, dtype=np.int64), phones, layer) is not None, n


def test_bad_rates():
    with pytest.raises(S3LError, match="unit rate"):
        RateAlignment(unit_rate=0, phone_rate=100)


def test_joint_counter_grows():
    c = JointCounter()
    c.add(np.array([3, 3, 5]), np.array(["a", "b", "b"]))
    c.add(np.array([9, 3]), np.array(["c", "a"]))
    # rows in first-seen order a, b, c; columns 3, 5, 9
    assert c.counts.tolist() == [[2, 0, 0], [1, 1, 0], [0, 0, 1]]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_count_files_and_skip(tmp_path):
    km = _write(tmp_path / "dev.km", ["0 1", "1 1 2", "2"])
    phn = _write(tmp_path / "dev.phn", ["a a b b", "b b b b c", "c c c c c"])  # line 3: 2 vs 5 frames > 20 ms
    r = RateAlignment(unit_rate=50, phone_rate=100)
    with pytest.raises(S3LError, match=r"dev\.km:3: .*dev\.phn:3"):
        count_files(km, phn, r)
    joint = count_files(km, phn, r, skip_mismatch=True)
    assert joint.skipped == [3] and joint.utterances == 2
    assert joint.trimmed_utterances == 1 and joint.trimmed_frames == 1  # line 2: 6 unit frames vs 5 phones
    table = dict(((p, u), int(joint.counts[i, j])) for i, p in enumerate(joint.phones)
                 for j, u in enumerate(joint.units))
    assert table == {("a", 0): 2, ("a", 1): 0, ("a", 2): 0, ("b", 0): 0, ("b", 1): 6, ("b", 2): 0,
                     ("c", 0): 0, ("c", 1): 0, ("c", 2): 1}
    assert joint.unit_segment_frames == pytest.approx(5 / 4)  # runs: [0][1] | [1 1][2]
    assert joint.phone_segment_frames == pytest.approx(9 / 4)  # runs: [a a][b b] | [b b b b][c]


def test_count_files_errors(tmp_path):
    r = RateAlignment(unit_rate=100, phone_rate=100)
    km = _write(tmp_path / "a.km", ["0 1", "1 1"])
    phn = _write(tmp_path / "a.phn", ["a b"])
    with pytest.raises(S3LError, match=r"a\.km has 2 lines but .*a\.phn has 1"):
        count_files(km, phn, r)
    bad = _write(tmp_path / "b.km", ["0 1", "1 x"])
    with pytest.raises(S3LError, match=r"b\.km:2: unit ids must be integers, got 'x'"):
        count_files(bad, _write(tmp_path / "b.phn", ["a b", "a b"]), r)
    with pytest.raises(S3LError, match=r"missing\.km: unit label file not found"):
        count_files(tmp_path / "missing.km", phn, r)
    neg = _write(tmp_path / "n.km", ["0 -1"])
    with pytest.raises(S3LError, match=r"n\.km:1: negative unit id"):
        count_files(neg, phn, r)
    far = _write(tmp_path / "f.km", ["0"])
    with pytest.raises(S3LError, match="no frames to analyse"):
        count_files(far, _write(tmp_path / "f.phn", ["a b c d"]), r, skip_mismatch=True)


# ---------------------------------------------------------------------------------------------- command


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def _synthetic_pair(tmp_path, rng, utts=20):
    """50 Hz units that follow 100 Hz phones: each phone owns two units, 10 % of frames are noise."""
    phones = ["sil", "aa", "iy", "n", "s", "t"]
    km_lines, phn_lines = [], []
    for _ in range(utts):
        seq = []
        while len(seq) < 60:
            seq += [phones[rng.integers(len(phones))]] * int(rng.integers(4, 12))
        seq = seq[: 2 * (len(seq) // 2)]
        units = []
        for t in range(0, len(seq), 2):
            i = phones.index(seq[t])
            units.append(int(rng.integers(12)) if rng.random() < 0.1 else 2 * i + int(rng.integers(2)))
        km_lines.append(" ".join(map(str, units[:-1])))  # one 50 Hz frame short, as an encoder is
        phn_lines.append(" ".join(seq))
    return _write(tmp_path / "dev.km", km_lines), _write(tmp_path / "dev.phn", phn_lines)


def test_cli_writes_metrics_and_heatmap(tmp_path):
    rng = np.random.default_rng(0)
    km, phn = _synthetic_pair(tmp_path, rng)
    _write(tmp_path / "dict.km.txt", [f"{i} 1" for i in range(12)])
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["analyze-units", "--units", str(km), "--phones", str(phn), "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    # the command's numbers equal the library's on the same aligned table
    joint = count_files(km, phn, RateAlignment(unit_rate=50, phone_rate=100))
    q = unit_quality(joint.counts)
    for key in ("pnmi", "phone_purity", "cluster_purity"):
        assert m[key] == pytest.approx(getattr(q, key), abs=1e-12)
    assert 0.6 < m["pnmi"] < 1.0 and m["phone_purity"] > 0.85
    assert m["used_units"] == 12 and m["num_units"] == 12
    assert m["unit_rate"] == 50 and m["unit_rate_source"] == "default"
    assert m["utterances"] == 20 and m["trimmed_utterances"] == 20 and m["skipped_mismatch"] == 0
    assert m["segment_ms"] == pytest.approx(m["segment_frames"] * 20)
    w, h = _png_size(out / "phone_given_unit.png")
    assert w > 500 and h > 300
    header = (out / "joint_counts.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["phone"] + [str(i) for i in range(12)]
    assert "PNMI" in res.output
    # existing outputs are kept unless --force
    again = CliRunner().invoke(app, ["analyze-units", "--units", str(km), "--phones", str(phn), "--out", str(out)])
    assert isinstance(again.exception, S3LError) and "--force" in str(again.exception)


def test_cli_equal_labels_and_rates(tmp_path):
    phn = _write(tmp_path / "x.phn", ["a a b c c", "b b a"])
    km = _write(tmp_path / "x.km", ["0 0 1 2 2", "1 1 0"])
    out = tmp_path / "r"
    res = CliRunner().invoke(app, ["analyze-units", "--units", str(km), "--phones", str(phn),
                                   "--unit-rate", "100", "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert (m["pnmi"], m["phone_purity"], m["cluster_purity"]) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)
    assert m["frames"] == 8 and m["segment_frames"] == pytest.approx(8 / 5)  # runs: 00 1 22 | 11 0
    assert m["segment_ms"] == pytest.approx(16.0)


def test_cli_mismatch_error_and_skip(tmp_path):
    km = _write(tmp_path / "d.km", ["0 1", "0 1"])
    phn = _write(tmp_path / "d.phn", ["a a b b", "a a b b b b b"])
    out = tmp_path / "r"
    args = ["analyze-units", "--units", str(km), "--phones", str(phn), "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, S3LError) and "d.km:2" in str(res.exception)
    res = CliRunner().invoke(app, [*args, "--skip-mismatch"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["skipped_mismatch"] == 1 and m["skipped_lines"] == [2] and m["utterances"] == 1


def test_cli_needs_something_to_do(tmp_path):
    res = CliRunner().invoke(app, ["analyze-units", "--out", str(tmp_path)])
    assert isinstance(res.exception, S3LError) and "nothing to analyse" in str(res.exception)
    res = CliRunner().invoke(app, ["analyze-units", "--out", str(tmp_path), "--units", str(tmp_path / "a.km")])
    assert isinstance(res.exception, S3LError) and "--phones" in str(res.exception)


def test_cli_reads_recorded_label_rate(tmp_path):
    # 100 Hz units recorded by `s3l cluster` in labels.json: no repetition against 100 Hz phones
    km = _write(tmp_path / "dev.km", ["0 0 1 1 1", "1 0"])
    phn = _write(tmp_path / "dev.phn", ["a a b b b", "b a"])
    (tmp_path / "labels.json").write_text(json.dumps({"format_version": 1, "label_rate": 100, "k": 2}))
    out = tmp_path / "r"
    args = ["analyze-units", "--units", str(km), "--phones", str(phn), "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["unit_rate"] == 100 and m["unit_rate_source"].endswith("labels.json") and m["frames"] == 7
    assert m["pnmi"] == pytest.approx(1.0)
    # an explicit --unit-rate that contradicts the record is refused
    res = CliRunner().invoke(app, [*args, "--unit-rate", "50", "--force"])
    assert isinstance(res.exception, S3LError) and "records a label rate of 100 Hz" in str(res.exception)
    (tmp_path / "labels.json").write_text("{not json")
    res = CliRunner().invoke(app, [*args, "--force"])
    assert isinstance(res.exception, S3LError) and "labels.json" in str(res.exception)


def test_count_files_refuses_ids_of_no_unit(tmp_path):
    r = RateAlignment(unit_rate=100, phone_rate=100)
    km = _write(tmp_path / "k.km", ["0 1", "1 3"])
    phn = _write(tmp_path / "k.phn", ["a b", "a b"])
    assert count_files(km, phn, r, num_units=(4, "dict")).units == [0, 1, 3]
    with pytest.raises(S3LError, match=r"k\.km:2: unit id 3 out of range: dict has K = 3 units \(ids 0\.\.2\)$"):
        count_files(km, phn, r, num_units=(3, "dict"))


def test_cli_refuses_unit_ids_beyond_k(tmp_path):
    """The "29 of 20 units used" report of a mixed label set: ids >= K are refused, naming file and line."""
    km = _write(tmp_path / "dev.km", ["0 1 19", "3 29 2"])
    phn = _write(tmp_path / "dev.phn", ["a a b b c c", "a a b b c c"])
    out = tmp_path / "r"
    args = ["analyze-units", "--units", str(km), "--phones", str(phn), "--out", str(out)]
    _write(tmp_path / "dict.km.txt", [f"{i} 1" for i in range(20)])
    res = CliRunner().invoke(app, args)
    msg = str(res.exception)
    assert isinstance(res.exception, S3LError) and "\n" not in msg
    assert msg == f"{km}:2: unit id 29 out of range: {tmp_path / 'dict.km.txt'} has K = 20 units (ids 0..19)"
    assert not out.exists()
    # K recorded only in labels.json (format 1, no dictionary) is enforced the same way
    (tmp_path / "dict.km.txt").unlink()
    (tmp_path / "labels.json").write_text(json.dumps({"format_version": 1, "label_rate": 50, "k": 20}))
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, S3LError)
    assert str(res.exception).endswith("labels.json has K = 20 units (ids 0..19)")
    # a dictionary and labels.json that disagree on K
    _write(tmp_path / "dict.km.txt", [f"{i} 1" for i in range(30)])
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, S3LError) and "30 units but" in str(res.exception)
    (tmp_path / "labels.json").unlink()
    res = CliRunner().invoke(app, args)  # K = 30 covers every id
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["num_units"] == 30
