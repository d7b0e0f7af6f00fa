"""``inference.deploy space``: a Gradio Space that runs the bin-check page from its own folder, pushed to the Hub."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.cli import UserError
from inference.deploy import main as deploy_main
from inference.space import SpaceArguments, write
from tests.conftest import hub_env, python_env
from tests.test_handler import image_bytes

READ_BACK = """
import json
from huggingface_hub import HfApi, hf_hub_download
print(json.dumps({"files": sorted(HfApi().list_repo_files("user/bin-check", repo_type="space")),
                  "card": open(hf_hub_download("user/bin-check", "README.md", repo_type="space")).read()}))
"""

RUN_ALONE = """
import json
from inference.app import check_bins, load_model
_, answers = check_bins(load_model("model"), ["examples/bin.jpg"], "3")
print(json.dumps(answers))
"""


@pytest.fixture
def examples(tmp_path):
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "bin.jpg").write_bytes(image_bytes())
    return folder


def test_the_space_is_pushed_with_its_card_and_runs_from_its_own_folder(tiny_model_dir, examples, hub, tmp_path):
    env = hub_env(hub.endpoint, tmp_path / "hf-home")
    pushed = subprocess.run([sys.executable, "-m", "inference.deploy", "space", "--model", str(tiny_model_dir),
                             "--space_id", "user/bin-check", "--output", str(tmp_path / "space"), "--examples",
                             str(examples)], env=env, capture_output=True, text=True, timeout=300)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert f"wrote the Space to {tmp_path / 'space'} and pushed it: " in pushed.stdout
    read = subprocess.run([sys.executable, "-c", READ_BACK], env=env, capture_output=True, text=True, timeout=300)
    assert read.returncode == 0, read.stderr[-3000:]
    answer = json.loads(read.stdout.strip().splitlines()[-1])
    assert {"app.py", "requirements.txt", "README.md", "inference/app.py", "inference/handler.py", "core/labels.py",
            "model/config.json", "model/model.safetensors", "examples/bin.jpg"} <= set(answer["files"])
    front = answer["card"].split("---")[1]
    for line in ("sdk: gradio", "sdk_version: 6.31.0", "app_file: app.py", "license: cc-by-nc-sa-3.0"):
        assert line in front.splitlines()
    requirements = (tmp_path / "space" / "requirements.txt").read_text().split()
    assert "torch==2.13.0" in requirements and not any(r.startswith(("gradio", "torchvision")) for r in requirements)
    assert "'--model', 'model'" in (tmp_path / "space" / "app.py").read_text()

    env = {k: v for k, v in python_env().items() if k != "PYTHONPATH"}  # only what the Space holds
    alone = subprocess.run([sys.executable, "-c", RUN_ALONE], cwd=tmp_path / "space", env=env,
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr[-3000:]
    result = json.loads(alone.stdout.strip().splitlines()[-1])[0]
    assert result["file"] == "bin.jpg" and result["expected_quantity"] == 3 and len(result["probabilities"]) == 6


def test_a_hub_model_is_referenced_not_shipped(tmp_path):
    folder = write(SpaceArguments(model="org/bin-counter", space_id="org/bin-check", output=str(tmp_path / "s"),
                                  revision="v1", push=False))
    assert not (folder / "model").exists()
    assert "'--model', 'org/bin-counter'" in (folder / "app.py").read_text()
    assert "'--revision', 'v1'" in (folder / "app.py").read_text()
    assert "models:\n- org/bin-counter\n" in (folder / "README.md").read_text()


def test_a_folder_without_weights_is_refused(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="model.safetensors"):
        write(SpaceArguments(model=str(tmp_path / "m"), space_id="o/s", output=str(tmp_path / "s"), push=False))
    assert deploy_main(["space", "--model", str(tmp_path / "m"), "--space_id", "no-slash"]) == 2
    assert capsys.readouterr().err.strip() == "error: --space_id must be org/name, got 'no-slash'"


FROM_THE_HUB = """
import json, sys
from huggingface_hub import HfApi
from inference.app import check_bins, load_model
HfApi().create_repo("user/tiny-counter", exist_ok=True)
HfApi().upload_folder(folder_path=sys.argv[1], repo_id="user/tiny-counter")
_, answers = check_bins(load_model("user/tiny-counter"), [sys.argv[2]], "2")
print(json.dumps(answers))
"""


def test_the_page_loads_a_model_from_the_hub(tiny_model_dir, examples, hub, tmp_path):
    env = hub_env(hub.endpoint, tmp_path / "hf-home")
    run = subprocess.run([sys.executable, "-c", FROM_THE_HUB, str(tiny_model_dir), str(examples / "bin.jpg")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    [answer] = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["file"] == "bin.jpg" and answer["expected_quantity"] == 2 and len(answer["probabilities"]) == 6
