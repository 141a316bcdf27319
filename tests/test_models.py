"""Every registered model: forward/backward shapes, bounded output, parameter counts, unknown names; the timm
U-Net's input layouts (exact geometry), decoder, honest model config and pretrained weights from a local file."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fwi.config import load_config
from fwi.errors import ConfigError
from fwi.models import MODELS, build_model
from fwi.models.decoder import PixelShuffleUp
from fwi.models.layouts import GRID
from fwi.models.registry import count_parameters
from fwi.models.timm_compat import import_timm
from fwi.models.timm_unet import TimmUNet

CONFIGS = Path(__file__).parents[1] / "configs"
SMALL = {
    "inversionnet": ["model.width=2"],
    "timm_unet": ["model.encoder=resnet10t", "model.decoder_channels=[16, 16, 8, 8]"],
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
    with pytest.raises(ConfigError, match=r"^config key 'model.name' in overrides: unknown model 'unet3000'; "
                                          r"valid: inversionnet, timm_unet$"):
        load_config(None, ["model.name=unet3000"])
    cfg = load_config(None, ["model.name=timm_unet", "model.encoder=not_a_timm_model"])
    with pytest.raises(ConfigError, match=r"^model.encoder 'not_a_timm_model': Unknown model \(not_a_timm_model\)$"):
        build_model(cfg.model)


def test_keys_of_another_model_are_rejected():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["model.name=timm_unet", "model.width=32"])
    assert str(info.value) == ("config key 'model.width' in overrides does not apply to model.name=timm_unet; its "
                               "keys: name, encoder, layout, pretrained, encoder_weights, decoder_channels")
    with pytest.raises(ConfigError, match=r"^config key 'model.encoder' in overrides does not apply to "
                                          r"model.name=inversionnet; its keys: name, width$"):
        load_config(None, ["model.encoder=resnet18"])  # the default model is inversionnet
    with pytest.raises(ConfigError, match="model.encoder_weights is set but model.pretrained is false"):
        load_config(None, ["model.name=timm_unet", "model.encoder_weights=w.pth"])
    # the order of the overrides does not matter
    assert load_config(None, ["model.layout=resize", "model.name=timm_unet"]).model.layout == "resize"


# --- the timm U-Net at full resolution -----------------------------------------------------------------------

def first_feature_and_output(model: TimmUNet) -> tuple[list[tuple[int, int]], torch.Size]:
    with torch.no_grad():
        x = torch.randn(1, 5, 1000, 70)
        feats = model.encoder(model.layout(x))
        return [tuple(f.shape[-2:]) for f in feats], model(x).shape


@pytest.mark.parametrize("layout", ["restride", "shots_square", "resize"])
@pytest.mark.parametrize("encoder", ["resnet10t", "convnext_atto", "efficientnet_b0", "caformer_s18"])
def test_every_layout_reaches_72x72_natively(encoder, layout):
    """Stride-2 stems (resnet, efficientnet) and stride-4 stems (convnext's 4x4 patchify, caformer's 7x7):
    the first feature map is 72x72, the deeper ones halve it, the decoder ends there and 70x70 is a crop."""
    torch.manual_seed(0)
    model = TimmUNet(encoder, layout, (16, 16, 8, 8)).eval()
    sizes, out = first_feature_and_output(model)
    assert sizes[:4] == [(72, 72), (36, 36), (18, 18), (9, 9)] and out == (1, 1, 70, 70)


def test_restride_input_keeps_every_receiver_and_pads_time_by_reflection():
    model = TimmUNet("resnet10t", "restride", (8, 8, 8, 8))
    x = torch.randn(2, 5, 1000, 70)
    image = model.layout(x)
    assert image.shape == (2, 5, 1152, 72)  # resnet's 3x3 stem conv pads itself: 1 zero receiver per side here
    torch.testing.assert_close(image[..., 76:1076, 1:71], x, rtol=0, atol=0)  # untouched, not resampled
    torch.testing.assert_close(image[..., 75, 1:71], x[..., 1, :], rtol=0, atol=0)  # reflection about t = 0
    torch.testing.assert_close(image[..., 1076, 1:71], x[..., 998, :], rtol=0, atol=0)
    assert image[..., 0].abs().max() == 0 and image[..., 71].abs().max() == 0


@pytest.mark.parametrize(("encoder", "stem", "kernel", "stride", "time_pool"), [
    ("caformer_s18", "stem.conv", (7, 7), (4, 1), 4),  # the CAFormer notebook: 7x7 stride (4, 1), 288x72 -> 72x72
    ("convnext_atto", "stem_0", (4, 4), (4, 1), 4),  # patchify 4x4: 3 receivers lost, padded back
    ("resnet10t", "conv1.0", (3, 3), (2, 1), 8),  # stride-2 stem: 576x72 -> 72x72
])
def test_restride_patches_the_stem(encoder, stem, kernel, stride, time_pool):
    model = TimmUNet(encoder, "restride", (8, 8, 8, 8))
    patched = model.encoder.get_submodule(stem)
    conv, pool = patched
    assert conv.kernel_size == kernel and conv.stride == stride
    assert pool.kernel_size == (time_pool, 1) and pool.stride == (time_pool, 1)
    seen = {}

    def record(key):
        def hook(module, inputs, output):
            seen[key] = tuple(output.shape[-2:])
        return hook

    conv.register_forward_hook(record("conv"))
    patched.register_forward_hook(record("pooled"))
    with torch.no_grad():
        model(torch.randn(1, 5, 1000, 70))
    assert seen == {"conv": (1152 // stride[0], GRID), "pooled": (GRID, GRID)}


def test_shots_square_lays_the_shots_side_by_side():
    model = TimmUNet("resnet10t", "shots_square", (8, 8, 8, 8))
    assert model.encoder.feature_info.reduction()[0] == 2 and model.layout.size == 144
    x = torch.arange(5.0).view(1, 5, 1, 1).expand(1, 5, 1000, 70)  # shot s is the constant s
    image = model.layout(x)
    assert image.shape == (1, 1, 144, 144)
    band = 144 / 5
    for s in range(5):  # the middle column of band s is shot s (antialiased resampling of a constant)
        col = int((s + 0.5) * band)
        torch.testing.assert_close(image[0, 0, :, col], torch.full((144,), float(s)))


def test_pixel_shuffle_starts_as_nearest_upsampling():
    """ICNR: every sub-pixel gets the same kernel, so the shuffle output is a conv upsampled by repetition."""
    torch.manual_seed(0)
    up = PixelShuffleUp(6, scale=2)
    x = torch.randn(1, 6, 5, 7)
    with torch.no_grad():
        shuffled = up[1](up[0](x))  # conv + pixel shuffle: [1, 6, 10, 14]
        conv = F.conv2d(x, up[0].weight[::4], up[0].bias[::4], padding=1)
        torch.testing.assert_close(shuffled, conv.repeat_interleave(2, -2).repeat_interleave(2, -1))
        assert up(x).shape == (1, 6, 10, 14)


def test_decoder_needs_a_channel_count_per_stage():
    with pytest.raises(ConfigError, match=r"^model.decoder_channels has 2 entries; this encoder has 5 feature "
                                          r"levels, so the decoder needs 4 \(deep to shallow\)$"):
        TimmUNet("resnet10t", "restride", (16, 8))


def test_caformer_config_builds_on_cpu_without_pretrained_weights():
    cfg = load_config(CONFIGS / "caformer_unet.yaml")
    assert (cfg.model.encoder, cfg.model.layout, cfg.model.pretrained) == ("caformer_b36", "restride", False)
    assert (cfg.augment.flip_p, cfg.augment.noise_p, cfg.augment.scale_p, cfg.augment.dropout_p) == (0.5, 0, 0, 0)
    assert (cfg.data.split_by, cfg.train.schedule, cfg.train.lr) == ("sample", "constant_cosine", 1e-4)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    assert 120e6 < count_parameters(model) < 130e6  # caformer_b36 (93 M) + the notebook's decoder
    sizes, out = first_feature_and_output(model)
    assert sizes == [(72, 72), (36, 36), (18, 18), (9, 9)] and out == (1, 1, 70, 70)


# --- pretrained weights ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """ImageNet-shaped weights of a small timm model (3 input channels, 1000 classes), saved like timm's hub."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    state = import_timm().create_model("resnet10t", pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet10t.safetensors"
    save_file(state, str(path))
    return path, state


@pytest.mark.parametrize(("layout", "in_chans"), [("restride", 5), ("shots_square", 1)])
def test_encoder_weights_from_a_local_file_are_adapted_as_timm_does(resnet_weights, layout, in_chans, tmp_path):
    from timm.models import adapt_input_conv

    path, state = resnet_weights
    pth = tmp_path / "resnet10t.pth"
    torch.save(state, pth)
    for weights in (path, pth):  # safetensors and a torch state dict
        cfg = load_config(None, ["model.name=timm_unet", "model.encoder=resnet10t", f"model.layout={layout}",
                                 "model.pretrained=true", f"model.encoder_weights={weights}",
                                 "model.decoder_channels=[8, 8, 8, 8]"])
        encoder = build_model(cfg.model).encoder
        torch.testing.assert_close(encoder.layer3[0].conv1.weight, state["layer3.0.conv1.weight"], rtol=0, atol=0)
        first = encoder.conv1[0][0] if layout == "restride" else encoder.conv1[0]
        torch.testing.assert_close(first.weight, adapt_input_conv(in_chans, state["conv1.0.weight"]))
    random = build_model(cfg.model, pretrained=False).encoder  # what restoring a checkpoint builds
    assert not torch.equal(random.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])


def test_missing_weights_file_and_offline_download_are_one_line_errors(monkeypatch, tmp_path):
    cfg = load_config(None, ["model.name=timm_unet", "model.encoder=resnet10t", "model.pretrained=true",
                             f"model.encoder_weights={tmp_path / 'nope.pth'}"])
    with pytest.raises(ConfigError, match=r"^model.encoder_weights: file not found: .*nope.pth$"):
        build_model(cfg.model)

    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection")

    # No test downloads anything: the hub and URL loaders fail the way they do offline.
    monkeypatch.setattr(builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(builder, "load_state_dict_from_url", offline)
    cfg = load_config(None, ["model.name=timm_unet", "model.encoder=resnet10t", "model.pretrained=true"])
    with pytest.raises(ConfigError) as info:
        build_model(cfg.model)
    message = str(info.value)
    assert "\n" not in message and message.startswith(
        "model.pretrained=true: timm could not get the pretrained weights of 'resnet10t' (We couldn't connect")
    assert message.endswith("and pass model.encoder_weights=resnet10t.pth")


def test_checkpoint_trained_from_a_weights_file_predicts_after_the_file_is_deleted(resnet_weights, kaggle_tree,
                                                                                   tmp_path):
    import shutil

    import polars as pl

    from fwi.checkpoint import load_checkpoint, restore_model
    from fwi.predict import main as predict_main
    from fwi.train import train

    weights = tmp_path / "encoder.safetensors"
    shutil.copyfile(resnet_weights[0], weights)
    cfg = load_config(None, [f"data.root={kaggle_tree.root}", f"train.out_dir={tmp_path / 'runs'}",
                             f"normalize.cache_dir={tmp_path / 'stats'}", "data.val_fraction=0.5", "name=pre",
                             "model.name=timm_unet", "model.encoder=resnet10t", "model.pretrained=true",
                             f"model.encoder_weights={weights}", "model.decoder_channels=[8, 8, 8, 8]",
                             "train.epochs=1", "train.batch_size=2", "train.workers=0", "train.tensorboard=false",
                             "train.plot=false"])
    assert math.isfinite(train(cfg, progress=False))
    weights.unlink()
    ckpt = tmp_path / "runs" / "pre" / "best.pt"
    model, _, saved = restore_model(load_checkpoint(ckpt))
    assert saved.model.encoder_weights == weights and not weights.exists()
    out = tmp_path / "sub.csv"
    assert predict_main(["--checkpoint", str(ckpt), "--test-dir", str(kaggle_tree.test), "--out", str(out),
                         "--device", "cpu", "--workers", "0", "--batch-size", "2"]) == 0
    assert pl.read_csv(out).height == 2 * 70  # two test files, 70 rows each
