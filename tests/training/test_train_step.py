"""The shared training/validation loss: draw order, interpolation, null-condition dropout."""

from __future__ import annotations

import pytest
import torch

from saganet.model import FlowMatching, build_network
from saganet.model.sequence import CONFIG_44K_SA
from saganet.training.config import LossConfig
from saganet.training.step import flow_matching_loss


class Recorder:
    """Stands in for TrainableFlow: records its inputs, predicts x_t."""

    def __call__(self, x_t, t, clip_f, text_f, frames, masks, detail_frames, detail_masks,
                 drop_video, drop_text):
        self.args = {"x_t": x_t, "t": t, "drop_video": drop_video, "drop_text": drop_text}
        return x_t


@pytest.fixture(scope="module")
def network():
    net = build_network("debug", CONFIG_44K_SA.with_duration(1.0))
    with torch.no_grad():
        net.latent_mean.fill_(0.5)
        net.latent_std.fill_(2.0)
    return net


def inputs(bs: int = 3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"a_mean": torch.randn(bs, 44, 8, generator=gen),
            "a_std": torch.rand(bs, 44, 8, generator=gen),
            "clip_features": torch.zeros(bs, 8, 64), "text_features": torch.zeros(bs, 77, 64),
            "frames": torch.zeros(bs, 25, 3, 4, 4), "masks": torch.zeros(bs, 25, 1, 4, 4),
            "detail_frames": torch.zeros(bs, 25, 3, 4, 4),
            "detail_masks": torch.zeros(bs, 25, 1, 4, 4)}


def test_draw_order_and_loss_follow_the_reference(network):
    cfg = LossConfig(t_mean=0.3, t_scale=0.7, null_video_prob=0.5, null_text_prob=0.5)
    flow = FlowMatching(t_mean=cfg.t_mean, t_scale=cfg.t_scale)
    model, batch = Recorder(), inputs()
    out = flow_matching_loss(model, network, batch, generator=torch.Generator().manual_seed(9),
                             flow=flow, cfg=cfg)
    # The reference's order: posterior noise, t, x0, video coin, text coin.
    gen = torch.Generator().manual_seed(9)
    eps = torch.randn(3, 44, 8, generator=gen)
    x1 = (batch["a_mean"] + batch["a_std"] * eps - 0.5) / 2.0
    t = torch.sigmoid(0.3 + 0.7 * torch.randn(3, generator=gen))
    x0 = torch.randn(3, 44, 8, generator=gen)
    u_video, u_text = torch.rand(3, generator=gen), torch.rand(3, generator=gen)
    x_t = (1 - t.view(-1, 1, 1)) * x0 + t.view(-1, 1, 1) * x1
    assert torch.allclose(model.args["t"], t) and torch.allclose(out.t, t)
    assert torch.allclose(model.args["x_t"], x_t)
    assert torch.equal(model.args["drop_video"], u_video < 0.5)
    assert torch.equal(model.args["drop_text"], u_text < 0.5)
    expected = ((x_t - (x1 - x0)) ** 2).mean(dim=(1, 2))
    assert torch.allclose(out.per_sample, expected)
    assert torch.allclose(out.loss, expected.mean())


def test_same_generator_state_same_loss(network):
    cfg, flow = LossConfig(), FlowMatching()
    losses = [flow_matching_loss(Recorder(), network, inputs(),
                                 generator=torch.Generator().manual_seed(1), flow=flow,
                                 cfg=cfg).loss for _ in range(2)]
    assert torch.equal(losses[0], losses[1])


def test_dropout_probabilities_zero_and_one(network):
    flow, model = FlowMatching(), Recorder()
    flow_matching_loss(model, network, inputs(), generator=torch.Generator().manual_seed(2),
                       flow=flow, cfg=LossConfig(null_video_prob=1.0, null_text_prob=0.0))
    assert model.args["drop_video"].all() and not model.args["drop_text"].any()
