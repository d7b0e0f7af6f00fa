from tests.conftest import make_tiny_model


def test_tiny_model_saves_safetensors(tmp_path):
    out = make_tiny_model(tmp_path / "m", "tiny-vit")
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()
