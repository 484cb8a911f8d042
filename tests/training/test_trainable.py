"""What trains, and that one optimiser step changes nothing else."""

from __future__ import annotations

import pytest
import torch

from saganet.data.sms_dataset import SampleShapes
from saganet.data.synthetic import SyntheticClips
from saganet.model import FlowMatching, lora_parameters
from saganet.model.sequence import CONFIG_44K_SA
from saganet.training.config import LossConfig, ModelSetup, OptimConfig
from saganet.training.data import CountingCollate
from saganet.training.models import build_models, load_base_weights
from saganet.training.optim import build_optimizer
from saganet.training.step import flow_matching_loss, to_device
from saganet.training.trainable import (
    TrainableFlow,
    configure_trainable,
    raw_state_dict,
    trainable_names,
)

SEQUENCE = CONFIG_44K_SA.with_duration(0.64)  # one Synchformer window: cheap
DEBUG = ModelSetup(network="debug", use_lora=True, synchformer="debug", network_init="debug",
                   synchformer_init="debug", codec="debug")
CONTEXT = ("vfeat_extractor.patch_embed_3d_mask.", "vfeat_extractor.cross_attn_layers.")


def models(use_lora: bool = True):
    setup = ModelSetup(**{**DEBUG.__dict__, "use_lora": use_lora})
    torch.manual_seed(0)
    built = build_models(setup, SEQUENCE)
    load_base_weights(built, setup)
    return built, configure_trainable(built.network, built.synchformer, use_lora)


def test_lora_recipe_trains_lora_factors_biases_and_context():
    built, groups = models()
    net_names = set(trainable_names(built.network))
    assert net_names
    for name in net_names:
        assert name.endswith((".lora_A", ".lora_B", "qkv.bias")), name
    assert {id(p) for p in groups["network"]} == {id(p) for p in lora_parameters(built.network)}
    sync_names = trainable_names(built.synchformer)
    assert sync_names and all(n.startswith(CONTEXT) for n in sync_names)
    context = [n for n, _ in built.synchformer.named_parameters() if n.startswith(CONTEXT)]
    assert sorted(sync_names) == sorted(context)


def test_no_lora_recipe_trains_only_the_synchformer_context():
    built, groups = models(use_lora=False)
    assert groups["network"] == [] and trainable_names(built.network) == []
    assert all(n.startswith(CONTEXT) for n in trainable_names(built.synchformer))
    with pytest.raises(ValueError, match="use_lora"):
        configure_trainable(built.network, built.synchformer, use_lora=True)


def test_video_dropout_uses_the_learned_empty_features():
    built, _ = models()
    core = TrainableFlow(built.network, built.synchformer).eval()
    net = built.network
    with torch.no_grad():
        net.empty_clip_feat.normal_()
        net.empty_sync_feat.normal_()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, SEQUENCE.latent_seq_len, 8, generator=gen)
    clip, text = torch.randn(1, SEQUENCE.clip_seq_len, 64), torch.randn(1, 77, 64)
    video = torch.rand(1, 16, 3, 224, 224) * 2 - 1
    mask = torch.rand(1, 16, 1, 224, 224)
    t, yes, no = torch.rand(1), torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)
    with torch.no_grad():
        dropped = core(x, t, clip, text, video, mask, video, mask, yes, yes)
        expected = net(x, net.get_empty_clip_sequence(1), net.get_empty_sync_sequence(1),
                       net.get_empty_string_sequence(1), t)
        kept = core(x, t, clip, text, video, mask, video, mask, no, no)
    assert torch.allclose(dropped, expected, atol=1e-6)
    assert not torch.allclose(kept, expected, atol=1e-3)


def test_one_step_changes_only_the_trainable_tensors():
    built, groups = models()
    core = TrainableFlow(built.network, built.synchformer).train()
    names = {"network": set(trainable_names(built.network)),
             "synchformer": set(trainable_names(built.synchformer))}
    modules = {"network": built.network, "synchformer": built.synchformer}
    before = {k: {n: v.clone() for n, v in raw_state_dict(m).items()} for k, m in modules.items()}
    published_before = {n: v.clone() for n, v in built.network.state_dict().items()}

    shapes = SampleShapes(SEQUENCE.latent_seq_len, 8, SEQUENCE.clip_seq_len, 64, 77, 64, 16)
    batch = CountingCollate()([SyntheticClips(2, shapes)[i] for i in range(2)])
    opt = build_optimizer(groups, OptimConfig(lr=1e-2), amp=False)
    out = flow_matching_loss(core, built.network, to_device(batch, torch.device("cpu")),
                             generator=torch.Generator().manual_seed(0), flow=FlowMatching(),
                             cfg=LossConfig(null_video_prob=0.0, null_text_prob=0.0))
    out.loss.backward()
    opt.step()

    for key, module in modules.items():
        after = raw_state_dict(module)
        assert after.keys() == before[key].keys()
        changed = {n for n in after if not torch.equal(after[n], before[key][n])}
        assert changed <= names[key], changed - names[key]
        assert changed, key
    assert any(".lora_B" in n for n in names["network"])
    # Published semantics: a qkv weight moves only in the two adapted row blocks (0 and 2).
    published = built.network.state_dict()
    qkv = next(n for n in names["network"] if n.endswith("qkv.bias")).replace("bias", "weight")
    rows = published[qkv].shape[0] // 3
    delta = (published[qkv] - published_before[qkv]).abs().sum(dim=1)
    assert delta[:rows].sum() > 0 and delta[2 * rows:].sum() > 0
    assert delta[rows:2 * rows].sum() == 0


def test_raw_state_reloads_bit_for_bit():
    built, _ = models()
    with torch.no_grad():
        for p in lora_parameters(built.network):
            p.normal_(std=0.1)
    raw = raw_state_dict(built.network)
    other, _ = models()
    other.network.load_weights(raw, lora_merged=False)
    reloaded = raw_state_dict(other.network)
    assert all(torch.equal(raw[k], reloaded[k]) for k in raw)
