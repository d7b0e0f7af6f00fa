"""The notebooks execute top to bottom on small synthetic data (their `parameters` cell is overridden)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(name: str, **parameters) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook has exactly one cell tagged 'parameters'"
    tagged[0].source += "\n" + "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> str:
    text = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text.append(output.get("text", "") + str(output.get("data", {}).get("text/plain", "")))
            text.append(str(output.get("data", {}).get("text/markdown", "")))
    return "\n".join(text)


def images(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name


def test_explore_dataset(tmp_path):
    notebook = execute("01_explore_dataset.ipynb", WORKDIR=str(tmp_path), NUM_IMAGES=150)
    text = outputs(notebook)
    assert "kept 150" in text and "EXPECTED_QUANTITY equals the sum of ASIN quantities in 150" in text
    assert images(notebook) >= 3  # histogram, sample grid, image sizes


@pytest.mark.slow  # 45 s; train.run's own tests cover what it calls
def test_train_and_evaluate(tmp_path):
    notebook = execute("02_train_and_evaluate.ipynb", WORKDIR=str(tmp_path), NUM_IMAGES=200, EPOCHS=1,
                       EXTRA_ARGS=["--dataloader_num_workers", "0", "--max_eval_samples", "24"])
    text = outputs(notebook)
    assert "| Quantity | Per class accuracy (%) | Per class RMSE |" in text
    assert "recomputed from the saved model" in text
    assert images(notebook) >= 2  # confusion matrix, training curves (+ the error gallery when it has errors)


@pytest.mark.slow  # 80 s; tests/test_sagemaker.py and test_deploy.py cover the jobs and endpoints it drives
def test_sagemaker_locally(tmp_path):
    notebook = execute("03_sagemaker.ipynb", WORKDIR=str(tmp_path), NUM_IMAGES=40)
    text = outputs(notebook)
    assert "local stand-ins: S3 and the SageMaker API at http://127.0.0.1:" in text
    assert "InService" in text and "deleted: endpoint bincount-demo" in text
    assert text.count("expected count") >= 3 and text.count("-> m") + text.count("-> uncertain") >= 3
    assert "40 images, 40 answered" in text
