import importlib

import pytest

from tests.conftest import make_tiny_model


def test_tiny_model_saves_safetensors(tmp_path):
    out = make_tiny_model(tmp_path / "m", "tiny-vit")
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()


@pytest.mark.parametrize("module, required", [
    ("data.synthetic", ["--output", "OUT", "--num_images", "1", "--seed", "0"]),
    ("data.build", ["--source", "OUT", "--output", "OUT2"]),
    ("data.realism", ["--real", "OUT", "--synthetic", "OUT"]),
    ("train.run", ["--output_dir", "OUT"]),
    ("train.audit", ["--model", "OUT", "--dataset", "OUT"]),
    ("train.tune", ["--output_dir", "OUT"]),
    ("inference.predict", ["--model", "OUT", "image.jpg"]),
    ("inference.serve", ["--model", "OUT"]),
])
def test_every_command_refuses_an_unknown_option_with_one_line(module, required, tmp_path, capsys):
    """A mistyped option is the user's to fix: one error line, exit 2, nothing written (HfArgumentParser itself
    raises a plain ValueError, which would read as a bug)."""
    argv = [str(tmp_path / "out") if word == "OUT" else str(tmp_path / "out2") if word == "OUT2" else word
            for word in required]
    main = importlib.import_module(module).main
    assert main([*argv, "--learnign_rate", "0.1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: unknown option '--learnign_rate' (see --help)"
    assert not list(tmp_path.iterdir())
