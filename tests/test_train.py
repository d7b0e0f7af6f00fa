"""train.run end to end on tiny models from config and the synthetic dataset: artifacts, pipeline round trip, metric
lines, the Hub, tuning, config files and bad input (resume and several processes: test_train_processes.py)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, load_from_disk
from PIL import Image

from inference import handler
from tests.conftest import HUB_TOKEN, TINY_CONFIGS, hub_env, run_train, train_args
from train.logs import metric_definitions
from train.run import main as train_main

ARTIFACTS = ("model.safetensors", "config.json", "preprocessor_config.json", "all_results.json", "results.md",
             "confusion_matrix.png", "training_curves.png", "run_args.json", "README.md")


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory) -> Callable[[str], tuple[Path, subprocess.CompletedProcess]]:
    """``train.run`` with ``train_args`` once per architecture, its folder and its output shared by the tests that
    only read them (each run is ~20 s of start-up and training)."""
    runs: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}

    def run(arch: str) -> tuple[Path, subprocess.CompletedProcess]:
        if arch not in runs:
            out = tmp_path_factory.mktemp(arch) / "model"
            runs[arch] = out, run_train(train_args(tiny_dataset, out, arch))
        return runs[arch]

    return run


@pytest.mark.parametrize("arch", ["tiny-resnet", "tiny-vit"])
def test_train_writes_artifacts_and_round_trips_through_the_pipeline(tiny_dataset, trained, arch):
    out, result = trained(arch)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training from scratch" in result.stderr
    for name in ARTIFACTS:
        assert (out / name).is_file(), name
    names = load_from_disk(str(tiny_dataset))["train"].features["label"].names
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(names)}
    metrics = json.loads((out / "all_results.json").read_text())
    expected = {"train_loss", "eval_accuracy", "eval_rmse", "test_accuracy", "test_rmse", "test_rmse_expected"}
    assert expected <= set(metrics)
    assert metrics["test_num_samples"] == min(32, len(load_from_disk(str(tiny_dataset))["test"]))
    card = (out / "README.md").read_text()
    assert "model-index" in card and "| Quantity | Per class accuracy (%) | Per class RMSE |" in card
    assert "Per class accuracy" in result.stdout  # the abid_challenge table is printed

    from transformers import pipeline

    image = Image.new("RGB", (470, 350), (60, 60, 60))
    every = pipeline("image-classification", model=str(out), top_k=len(names))(image)
    assert sorted(r["label"] for r in every) == sorted(names)
    assert abs(sum(r["score"] for r in every) - 1) < 1e-4
    assert len(pipeline("image-classification", model=str(out))(image)) == 5  # the pipeline's default top 5


def test_metric_lines_match_sagemaker_regexes(trained):
    out, result = trained("tiny-resnet")
    assert result.returncode == 0, result.stderr[-3000:]
    found = {}
    for definition in metric_definitions():
        values = [float(m.group(1)) for line in result.stdout.splitlines()
                  if (m := re.search(definition["Regex"], line))]
        found[definition["Name"]] = values
    for name in ("loss", "eval_loss", "eval_accuracy", "eval_rmse", "train_images_per_second", "test_accuracy"):
        assert found[name], f"no metric line for {name}"
    assert all(0 <= v <= 1 for v in found["eval_accuracy"])
    metrics = json.loads((out / "all_results.json").read_text())
    assert found["test_accuracy"][-1] == pytest.approx(metrics["test_accuracy"], abs=1e-5)


def test_push_to_hub_and_load_back_with_pipeline(tiny_dataset, hub, tmp_path):
    env = hub_env(hub.endpoint, tmp_path / "hf-home")
    result = run_train(train_args(tiny_dataset, tmp_path / "model", "tiny-resnet", "--num_train_epochs", "1",
                                  "--synthetic_pretrain", "16",  # its bins and model stay local
                                  "--push_to_hub", "--hub_model_id", "bin-counter-tiny"), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert HUB_TOKEN in hub.tokens
    assert HUB_TOKEN not in result.stdout + result.stderr
    for artifact in (tmp_path / "model").rglob("*"):
        if artifact.is_file() and artifact.suffix in (".json", ".md", ".txt"):
            assert HUB_TOKEN not in artifact.read_text(errors="ignore"), artifact
    loaded = subprocess.run([sys.executable, "-c", """
import json
from PIL import Image
from huggingface_hub import list_repo_files
from transformers import pipeline
scores = pipeline("image-classification", model="user/bin-counter-tiny", top_k=6)(Image.new("RGB", (64, 48)))
print(json.dumps({"labels": sorted(s["label"] for s in scores), "files": list_repo_files("user/bin-counter-tiny")}))
"""], env=env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert answer["labels"] == ["0", "1", "2", "3", "4", "5"]
    assert {"model.safetensors", "preprocessor_config.json", "README.md", "all_results.json"} <= set(answer["files"])
    assert not any(f.startswith(("checkpoint-", "synthetic-pretrain/")) for f in answer["files"])
    assert (tmp_path / "model" / "synthetic-pretrain" / "model" / "model.safetensors").is_file()


def test_hyperparameter_search_writes_best_params(tiny_dataset, tmp_path):
    from train.tune import main as tune_main

    args = train_args(tiny_dataset, tmp_path / "search", "tiny-resnet", "--dataloader_num_workers", "0",
                      "--max_train_samples", "32", "--max_eval_samples", "16")
    assert tune_main([*args, "--n_trials", "2", "--epochs_min", "1", "--epochs_max", "1"]) == 0
    best = json.loads((tmp_path / "search" / "best_params.json").read_text())
    assert best["objective"] == "eval_accuracy"
    assert set(best["best_params"]) == {"learning_rate", "per_device_train_batch_size", "num_train_epochs",
                                        "weight_decay"}
    trials = (tmp_path / "search" / "trials.csv").read_text().splitlines()
    assert len(trials) == 3 and max(float(t.split(",")[-1]) for t in trials[1:]) == best["best_value"]


# ---- bad input -------------------------------------------------------------------------------------------------------

def fail(capsys, args: list[str]) -> str:
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_bad_datasets_fail_with_one_line(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert "not found" in fail(capsys, train_args(tmp_path / "missing", out))
    dataset = load_from_disk(str(tiny_dataset))

    only_test = tmp_path / "only-test"
    dataset.__class__({"test": dataset["test"]}).save_to_disk(str(only_test))
    assert "no 'train' split" in fail(capsys, train_args(only_test, out))

    no_label = tmp_path / "no-label"
    dataset.cast_column("label", __import__("datasets").Value("int64")).save_to_disk(str(no_label))
    assert "ClassLabel" in fail(capsys, train_args(no_label, out))

    mixed = tmp_path / "mixed"
    other = dataset["validation"].cast_column("label", ClassLabel(names=["1", "2", "3", "4", "5", "6"]))
    dataset.__class__({"train": dataset["train"], "validation": other}).save_to_disk(str(mixed))
    assert "has classes" in fail(capsys, train_args(mixed, out))
    assert not out.exists(), "nothing is written when the input is bad"


def test_bad_models_and_resume_folders_fail_with_one_line(tiny_dataset, tmp_path, capsys):
    text_model = tmp_path / "text-model"
    text_model.mkdir()
    (text_model / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 100, "hidden_size": 8,
                                                        "num_hidden_layers": 1, "num_attention_heads": 1,
                                                        "intermediate_size": 8}))
    shutil.copy(TINY_CONFIGS / "tiny-resnet" / "preprocessor_config.json", text_model)
    args = train_args(tiny_dataset, tmp_path / "out", "tiny-resnet")
    args[args.index("--model_name_or_path") + 1] = str(text_model)
    assert "cannot be used as an image classifier" in fail(capsys, args)

    assert "HF_TOKEN" in fail(capsys, train_args(tiny_dataset, tmp_path / "out", "tiny-resnet", "--hub_token", "x"))

    out = tmp_path / "resnet-run"
    assert train_main(train_args(tiny_dataset, out, "tiny-resnet", "--num_train_epochs", "1",
                                 "--dataloader_num_workers", "0")) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert "checkpoint of another model" in fail(capsys, train_args(tiny_dataset, out, "tiny-vit"))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_trains_and_serves_on_a_gpu(tiny_dataset, tmp_path):
    """On CUDA, bf16 (or fp16) switches on by itself, and the handler serves on the GPU."""
    out = tmp_path / "model"
    result = run_train(train_args(tiny_dataset, out, "tiny-resnet"))
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = json.loads((out / "run_args.json").read_text())
    assert resolved["training"]["bf16"] or resolved["training"]["fp16"]

    model = handler.model_fn(str(out))
    assert model.device.type == "cuda"
    body = io.BytesIO()
    Image.new("RGB", (470, 350), (90, 80, 70)).save(body, format="JPEG")
    answer = json.loads(handler.output_fn(handler.predict_fn(handler.input_fn(body.getvalue(), "image/jpeg"), model),
                                          "application/json"))
    assert answer["label"] in model.labels and abs(sum(answer["probabilities"].values()) - 1) < 1e-4


# ---- recipes: --config FILE ------------------------------------------------------------------------------------------

def test_config_file_sets_options_and_the_command_line_overrides_it(tmp_path):
    from train.args import parse_args

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate: 1e-3\nnum_train_epochs: 3\naugment: false\nobjective: ordinal\n"
                      "lr_scheduler_kwargs: {min_lr: 0.0}\nmodel_name_or_path: train/configs/tiny-resnet\n")
    data, model, counting, out, training = parse_args(["--config", str(recipe), "--num_train_epochs", "5"])
    assert (training.learning_rate, training.num_train_epochs) == (1e-3, 5)
    assert counting.augment is False and counting.objective == "ordinal" and out.config == str(recipe)
    assert training.lr_scheduler_kwargs == {"min_lr": 0.0}
    assert Path(model.model_name_or_path).is_dir(), "a repository path in a recipe resolves from any directory"
    as_json = tmp_path / "recipe.json"
    as_json.write_text(json.dumps({"learning_rate": 0.01, "per_device_train_batch_size": 4}))
    training = parse_args([str(as_json)])[4]  # a lone FILE.json argument, as HF's example scripts take it
    assert (training.learning_rate, training.per_device_train_batch_size) == (0.01, 4)
    assert parse_args([])[4].learning_rate == 5e-5, "without a config the defaults stand"


@pytest.mark.parametrize("text, message", [
    ('{"learning_rate": ', "does not parse"),
    ('{"lerning_rate": 0.1}', "unknown option 'lerning_rate'"),
    ('{"learning_rate": "fast"}', "option 'learning_rate'"),
    ('{"num_train_epochs": true}', "option 'num_train_epochs': invalid float value"),
    ('{"per_device_train_batch_size": 2.5}', "option 'per_device_train_batch_size': invalid int value"),
    ('{"objective": "hinge"}', "option 'objective': invalid choice"),
    ('{"augment": 3}', "option 'augment': Truthy value expected"),
    ('{"learning_rate": [0.1, 0.2]}', "option 'learning_rate' takes one value"),
    ('{"config": "other.json"}', "unknown option 'config'"),
    ('[1, 2]', "must hold an object"),
])
def test_bad_config_fails_with_one_line_naming_file_and_key(tmp_path, capsys, text, message):
    recipe = tmp_path / "bad.json"
    recipe.write_text(text)
    line = fail(capsys, ["--config", str(recipe), "--output_dir", str(tmp_path / "out")])
    assert str(recipe) in line and message in line
    assert not (tmp_path / "out").exists()


def test_options_that_do_not_go_together_fail_with_one_line(tmp_path, capsys):
    line = fail(capsys, ["--output_dir", str(tmp_path / "out"), "--eval_strategy", "no", "--save_strategy", "epoch",
                         "--load_best_model_at_end", "true"])
    assert line.startswith("error: invalid options: ") and "load_best_model_at_end" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, value, rule", [
    ("--image_size", "-3", "a positive number of pixels"), ("--crop_scale", "1.5", "an area fraction in (0, 1]"),
    ("--color_jitter", "2", "in [0, 1)"), ("--target_false_alarm", "1.5", "a share in (0, 1)"),
    ("--torch_threads", "0", ">= 1")])
def test_out_of_range_counting_options_fail_with_one_line(tmp_path, capsys, option, value, rule):
    line = fail(capsys, ["--output_dir", str(tmp_path / "out"), option, value])
    assert line.startswith(f"error: invalid options: {option} must be {rule}, got ")
    assert not (tmp_path / "out").exists()


def test_unknown_command_line_option_fails_with_one_line(tmp_path, capsys):
    line = fail(capsys, ["--output_dir", str(tmp_path / "out"), "--overwrite_output_dir", "true"])
    assert line == "error: unknown option '--overwrite_output_dir' (see --help)"
    assert not (tmp_path / "out").exists()


def test_each_split_is_predicted_and_scored_once_at_the_end(tiny_dataset, tmp_path, monkeypatch, one_torch_thread):
    import train.run as run_module

    calls = {"score": 0, "predict": 0}
    score, predict = run_module.score, run_module.CountingTrainer.predict

    def counting_score(*args, **kwargs):
        calls["score"] += 1
        return score(*args, **kwargs)

    def counting_predict(self, *args, **kwargs):
        calls["predict"] += 1
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(run_module, "score", counting_score)
    monkeypatch.setattr(run_module.CountingTrainer, "predict", counting_predict)
    args = train_args(tiny_dataset, tmp_path / "model", "tiny-resnet", "--eval_strategy", "no", "--save_strategy",
                      "no", "--load_best_model_at_end", "false", "--dataloader_num_workers", "0", "--max_steps", "2")
    assert train_main(args) == 0
    assert calls == {"score": 2, "predict": 2}, "validation and test: one prediction and one scoring each"
    metrics = json.loads((tmp_path / "model" / "all_results.json").read_text())
    assert {"eval_accuracy", "test_accuracy", "test_loss", "calibration_temperature", "test_ece",
            "test_ece_before_calibration", "test_ece_if_calibrated", "audit_false_alarm"} <= set(metrics)
    assert json.loads((tmp_path / "model" / "verify.json").read_text())["target_false_alarm"] == 0.05
    card = (tmp_path / "model" / "README.md").read_text()
    assert "## Calibration" in card and "## Inventory audit" in card and "verify.json" in card
