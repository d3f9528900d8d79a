"""s3l checkpoints of every model kind, and the CTC fine-tuning model."""

import pytest
import torch

import s3l
from s3l.checkpoint import read_metadata, save_checkpoint
from s3l.errors import S3LError
from s3l.models import CTCModel, build_pretrain_model, encoder_frames, finetune_preset, preset, save_model

VOCAB = ["<blank>", "|", "A", "B", "C"]


def _micro(objective="contrastive", **kw):
    base = dict(conv_dim=32, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, final_dim=32, latent_vars=16)
    base.update(kw)
    return preset("tiny", objective).replace(**base)


def _model(name):
    torch.manual_seed(0)
    if name == "wav2vec2":
        return build_pretrain_model(_micro())
    if name == "wav2vec2-ln":  # the LARGE structure: LayerNorm extractor, conv bias, normalised waveform, pre-LN
        return build_pretrain_model(_micro(extractor_mode="layer_norm", conv_bias=True, normalize_waveform=True,
                                           layer_norm_first=True))
    if name == "wav2vec2-mel":  # the log-mel front end: no front-end weights in the file, the config describes it
        return build_pretrain_model(_micro(front_end="log_mel", mel_bins=24))
    hub = build_pretrain_model(_micro("hubert", label_rates=(100.0, 50.0)), num_classes=[9, 4])
    return hub if name == "hubert" else CTCModel.from_pretrained(hub, VOCAB)


@pytest.mark.parametrize("name", ["wav2vec2", "hubert", "wav2vec2-ln", "wav2vec2-mel", "ctc"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, name):
    model = _model(name).eval()
    path = tmp_path / "m.safetensors"
    save_model(path, model, num_updates=12)
    loaded = s3l.load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config == model.config
    meta = read_metadata(path)
    assert meta["kind"] == model.kind and meta["num_updates"] == 12
    wave, lengths = torch.randn(2, 6000), torch.tensor([6000, 4500])
    with torch.no_grad():
        for a, b in zip(model.hidden_states(wave, lengths), loaded.hidden_states(wave, lengths)):
            assert torch.equal(a, b)
        if name == "ctc":
            assert loaded.vocab == VOCAB
            assert torch.equal(model(wave, lengths)[0], loaded(wave, lengths)[0])
        if name == "hubert":
            assert loaded.num_classes == [9, 4] and meta["num_classes"] == [9, 4]
            targets = [torch.randint(0, 9, (2, 38)), torch.randint(0, 4, (2, 19))]
            torch.manual_seed(1)
            la = model(wave, lengths, targets).loss
            torch.manual_seed(1)
            assert torch.equal(la, loaded(wave, lengths, targets).loss)
        if name.startswith("wav2vec2"):
            state = model.state_dict()
            assert all(torch.equal(state[k], v) for k, v in loaded.state_dict().items())


def test_load_errors(tmp_path):
    with pytest.raises(S3LError, match="not found"):
        s3l.load_model(tmp_path / "missing.safetensors")
    km = tmp_path / "km.safetensors"
    save_checkpoint(km, {"centroids": torch.zeros(3, 2)}, "kmeans")
    with pytest.raises(S3LError, match="not a model"):
        s3l.load_model(km)
    bad = tmp_path / "bad.safetensors"
    model = build_pretrain_model(_micro())
    state = dict(model.state_dict())
    state.pop("final_proj.weight")
    save_checkpoint(bad, state, "wav2vec2", config=model.config.to_dict())
    with pytest.raises(S3LError, match="do not match"):
        s3l.load_model(bad)
    future = tmp_path / "future.safetensors"
    save_checkpoint(future, model.state_dict(), "wav2vec2", config={**model.config.to_dict(), "new_field": 1})
    with pytest.raises(S3LError, match="future.safetensors: unknown model config field"):
        s3l.load_model(future)
    with pytest.raises(S3LError, match="fairseq.pt"):  # .pt files go to the fairseq importer (s3l.convert)
        s3l.load_model(tmp_path / "fairseq.pt")


def test_ctc_forward_shapes_and_lengths():
    model = CTCModel(_micro(), VOCAB).eval()
    wave, lengths = torch.randn(3, 8000), torch.tensor([8000, 5000, 400])
    with torch.no_grad():
        log_probs, out_lengths = model(wave, lengths)
    assert log_probs.dtype == torch.float32 and log_probs.shape == (3, encoder_frames(8000), len(VOCAB))
    assert out_lengths.tolist() == [encoder_frames(n) for n in (8000, 5000, 400)]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, log_probs.shape[1]), atol=1e-5)


def test_ctc_masks_in_train_mode_only():
    cfg = finetune_preset("10min").apply(_micro())
    model = CTCModel(cfg, VOCAB)
    wave = torch.randn(2, 16000)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(wave)[0], model(wave)[0])
        model.train()
        torch.manual_seed(0)
        a = model(wave)[0]
        torch.manual_seed(1)
        b = model(wave)[0]
    assert not torch.equal(a, b)


def test_ctc_freezing():
    pre = build_pretrain_model(_micro())
    model = CTCModel.from_pretrained(pre, VOCAB, finetune_preset("1h").apply(pre.config)).train()
    assert model.config.feature_grad_mult == 0.0
    assert all(not p.requires_grad for p in model.backbone.feature_extractor.parameters())
    # backbone weights come from the pre-trained model; the output layer is new
    assert torch.equal(model.backbone.encoder.layers[0].fc1.weight, pre.backbone.encoder.layers[0].fc1.weight)
    assert model.proj.weight.shape == (len(VOCAB), 64) and model.proj.bias.abs().sum() == 0
    wave = torch.randn(2, 8000)

    model.set_transformer_frozen(True)
    model(wave)[0].sum().backward()
    assert model.proj.weight.grad is not None
    assert all(p.grad is None for p in model.backbone.parameters())

    model.zero_grad(set_to_none=True)
    model.set_transformer_frozen(False)
    model(wave)[0].sum().backward()
    assert model.backbone.encoder.layers[0].fc1.weight.grad is not None
    assert all(p.grad is None for p in model.backbone.feature_extractor.parameters())


def test_ctc_vocab_errors():
    with pytest.raises(S3LError, match="starts with"):
        CTCModel(_micro(), ["|", "A"])
    with pytest.raises(S3LError, match="twice"):
        CTCModel(_micro(), ["<blank>", "A", "A"])
    with pytest.raises(S3LError, match="does not match"):
        CTCModel.from_pretrained(build_pretrain_model(_micro()), VOCAB, _micro(encoder_layers=3))
