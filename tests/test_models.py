"""Every registered model: forward/backward shapes, bounded output, parameter counts, unknown names."""

import pytest
import torch

from fwi.config import load_config
from fwi.errors import ConfigError
from fwi.models import MODELS, build_model
from fwi.models.registry import count_parameters

SMALL = {
    "inversionnet": ["model.width=2"],
    "timm_unet": ["model.encoder=resnet10t", "model.input_size=[64, 32]", "model.decoder_channels=[16, 8]"],
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_and_range(name):
    cfg = load_config(None, [f"model.name={name}", *SMALL[name]])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    x = torch.randn(2, 5, 1000, 70) * 50  # large inputs must still give in-range velocities
    v = model(x)
    assert v.shape == (2, 1, 70, 70)
    assert 1500 <= float(v.detach().min()) and float(v.detach().max()) <= 4500
    v.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_inversionnet_matches_published_size():
    cfg = load_config(None, ["model.name=inversionnet", "model.width=32"])
    assert count_parameters(build_model(cfg.model)) == 24_409_121  # OpenFWI InversionNet: 24.4 M


def test_unknown_model_and_encoder_are_config_errors():
    with pytest.raises(ConfigError, match="model.name"):
        load_config(None, ["model.name=unet3000"])
    cfg = load_config(None, ["model.name=timm_unet", "model.encoder=not_a_timm_model"])
    with pytest.raises(ConfigError, match=r"^model.encoder 'not_a_timm_model': Unknown model \(not_a_timm_model\)$"):
        build_model(cfg.model)
