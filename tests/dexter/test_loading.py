import pytest
import torch

from dexter.loading import ModelLoadError, check_spec, load_bert, load_sd, resolve_dtype
from dexter.sampler import initial_latents, sample_images
from dexter.text import encode_prompts


def _images(components, prompt="a picture of a red circle on water."):
    with torch.no_grad():
        cond = encode_prompts(components.text_encoder, components.tokenizer, [prompt])
        lat = initial_latents([0], (4, 8, 8), "cpu", torch.float32)
        return sample_images(cond, lat, components.scheduler, components.unet, components.vae, 4, 1.0, None, [1])


def test_lora_is_loaded_fused_and_frozen(model_set):
    plain = load_sd(model_set["stable_diffusion"], None)
    fused = load_sd(model_set["stable_diffusion"], model_set["lcm_lora"], fuse_lora=True)
    unfused = load_sd(model_set["stable_diffusion"], model_set["lcm_lora"], fuse_lora=False)
    a, b, c = _images(plain), _images(fused), _images(unfused)
    assert not torch.allclose(a, b, atol=1e-4), "the adapter changed nothing"
    assert torch.allclose(b, c, atol=1e-5), "fusing changed the function"
    assert not any("lora" in n for n, _ in fused.unet.named_parameters())
    for comp in (fused.unet, fused.vae, fused.text_encoder):
        assert not any(p.requires_grad for p in comp.parameters())
    assert type(fused.scheduler).__name__ == "LCMScheduler"


def test_sample_prediction_scheduler_and_dtype_at_load(model_set, tmp_path):
    from tiny_models import make_tiny_sd

    d = make_tiny_sd(tmp_path / "sd", prediction_type="sample")
    comp = load_sd(str(d), None)
    assert comp.scheduler.config.prediction_type == "sample"
    images = _images(comp)
    assert images.shape == (1, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    half = load_sd(model_set["stable_diffusion"], None, dtype=torch.bfloat16)
    assert next(half.unet.parameters()).dtype == torch.bfloat16


def test_bert_loads_frozen(model_set):
    model, tok = load_bert(model_set["bert"])
    assert tok.mask_token == "[MASK]" and not any(p.requires_grad for p in model.parameters())


def test_unreachable_ids_fail_with_the_id_and_a_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError, match=r"'nobody/no-such-model'.*hf download nobody/no-such-model"):
        check_spec("nobody/no-such-model", "stable_diffusion")
    with pytest.raises(ModelLoadError, match="neither an existing directory"):
        check_spec(str(tmp_path / "missing" / "sd"), "stable_diffusion")
    with pytest.raises(ModelLoadError, match="nobody/bert"):
        load_bert("nobody/bert")
    assert check_spec(str(tmp_path), "bert") == str(tmp_path)
    (tmp_path / "lora.safetensors").write_bytes(b"")
    assert check_spec(str(tmp_path / "lora.safetensors"), "lcm_lora").endswith("lora.safetensors")
    with pytest.raises(ModelLoadError):
        check_spec(str(tmp_path / "lora.safetensors"), "stable_diffusion")


@pytest.mark.parametrize("bf16, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_dtype_on_cuda_is_bf16_where_the_gpu_has_it(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_dtype("auto", "cuda") == expected


def test_resolve_dtype():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("int8", "cpu")
