"""``dexter.tiny_vae``: an AutoencoderTiny decodes the step's latents instead of the full VAE (a flag that
changes the method, off by default). Loaded by folder like any model; a tiny VAE that cannot decode the
generator's latents is a one-line error before any weights are read."""

from __future__ import annotations

import pytest
import torch


def make_tiny_vae(directory, latent_channels: int = 4, blocks: int = 2, seed: int = 0):
    """A random AutoencoderTiny saved with save_pretrained: ``blocks`` decoder blocks upsample
    2 ** (blocks - 1) times (the tiny SD's VAE: 2x)."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny(encoder_block_out_channels=(8,) * blocks, decoder_block_out_channels=(8,) * blocks,
                    num_encoder_blocks=(1,) * blocks, num_decoder_blocks=(1,) * blocks,
                    latent_channels=latent_channels).eval().save_pretrained(directory)
    return str(directory)


def _models(model_set, tmp_path, tiny_vae, make_classifier):
    from dexter.config import DexterConfig
    from dexter.pipeline import load_dexter_models

    cfg = DexterConfig(steps=2, early_stop=0, safety_checker=False, tiny_vae=tiny_vae)
    return load_dexter_models(make_classifier(), cfg, sd=model_set["stable_diffusion"], bert=model_set["bert"],
                              cache_dir=tmp_path / "cache")


def test_the_step_decodes_with_the_tiny_vae(model_set, tmp_path, new_classifier):
    from diffusers import AutoencoderTiny

    from dexter.step import dexter_step, new_run_state

    tiny = _models(model_set, tmp_path, make_tiny_vae(tmp_path / "taesd"), new_classifier)
    full = _models(model_set, tmp_path, None, new_classifier)
    assert isinstance(tiny.decoder, AutoencoderTiny) and full.decoder is full.sd.vae
    state = new_run_state(tiny, 0, "circle", 0)
    before = state.soft_prompt.detach().clone()
    got = dexter_step(tiny, [state])[0]
    assert got.images.shape == (1, 3, 16, 16)  # 8x8 latents, 2x upsampling: the generator's image size
    assert not torch.equal(state.soft_prompt.detach(), before)  # the gradient flows through the tiny decoder
    ref = dexter_step(full, [new_run_state(full, 0, "circle", 0)])[0]
    assert not torch.allclose(got.images, ref.images)  # another decoder made these images


@pytest.mark.parametrize(("channels", "blocks", "message"), [
    (3, 2, "tiny_vae has 3 latent channels but the UNet makes 4"),
    (4, 3, "tiny_vae upsamples latents 4x but the generator's VAE 2x"),
])
def test_a_tiny_vae_for_other_latents_is_a_one_line_error_before_loading(model_set, tmp_path, monkeypatch, new_classifier,
                                                                         channels, blocks, message):
    import dexter.pipeline
    from dexter.loading import ModelLoadError

    def no_loading(*a, **k):
        raise AssertionError("weights were loaded before the tiny VAE was checked")

    monkeypatch.setattr(dexter.pipeline, "load_sd", no_loading)
    bad = make_tiny_vae(tmp_path / "other", latent_channels=channels, blocks=blocks)
    with pytest.raises(ModelLoadError, match=message) as err:
        _models(model_set, tmp_path, bad, new_classifier)
    assert "\n" not in str(err.value)


def test_the_flag_is_off_by_default_and_reachable_from_the_cli(tmp_path):
    from dexter.cli import _explain_config, parse_args
    from dexter.config import DexterConfig
    from dexter.errors import DexterInputError

    assert DexterConfig().tiny_vae is None
    args = parse_args(["explain", "--class-index", "0", "--tiny-vae", str(tmp_path)])
    assert _explain_config(args, None).tiny_vae == str(tmp_path)
    with pytest.raises(DexterInputError, match="tiny_vae must be"):
        DexterConfig(tiny_vae=" ")
