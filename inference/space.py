"""A Hugging Face Space for the bin-check page: ``python -m inference.deploy space --model M --space_id org/name``.

Writes a Gradio Space into ``--output`` (app.py, requirements.txt pinned from the project's pins, a Space card with
the Hub's YAML front matter, the page's code and, for a local model, the model itself under ``model/``), then pushes
it to the Hub (token: HF_TOKEN or the login cache; ``--push false`` only writes it). The Space runs
``inference.app`` with the same handler as the endpoint; Gradio comes from the Space's ``sdk_version``, the pin of
requirements-app.txt.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import core
from cloud.sagemaker.containers import pinned
from core.cli import UserError

logger = logging.getLogger("inference.space")
ROOT = Path(__file__).resolve().parents[1]
# What inference.app imports from the project: the page, the handler and what the handler ships with.
CODE = (*core.SHIPPED, "inference/__init__.py", "inference/app.py", "inference/handler.py")
REQUIREMENTS = ("torch", "transformers", "huggingface-hub", "safetensors", "pillow", "numpy")
APP = '''"""Bin check: count the items in a bin photo and verify a recorded quantity (python -m inference.app)."""

import sys

from inference.app import main

sys.exit(main({arguments!r}))
'''


@dataclass
class SpaceArguments:
    model: str = field(metadata={"help": "A model folder saved by train.run (shipped in the Space), or a Hub id."})
    space_id: str = field(metadata={"help": "The Space to create or update, org/name."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of the model."})
    examples: str | None = field(default=None, metadata={"help": "A folder of example bin photos to ship."})
    output: str | None = field(default=None, metadata={"help": "Where to write the Space (default runs/space/NAME)."})
    private: bool = field(default=False, metadata={"help": "Create the Space as private."})
    push: bool = field(default=True, metadata={"help": "Push the Space to the Hub (false: only write it)."})


def card(args: SpaceArguments, gradio_version: str, hub_model: bool) -> str:
    """README.md with the Space configuration the Hub reads from its YAML front matter."""
    name = args.space_id.split("/")[-1]
    models = f"models:\n- {args.model}\n" if hub_model else ""
    source = f"[{args.model}](https://huggingface.co/{args.model})" if hub_model else "the model shipped in `model/`"
    return (f"---\ntitle: {name}\nemoji: 📦\ncolorFrom: blue\ncolorTo: green\nsdk: gradio\n"
            f"sdk_version: {gradio_version}\npython_version: \"3.11\"\napp_file: app.py\npinned: false\n"
            f"license: cc-by-nc-sa-3.0\n{models}short_description: Count the items in a warehouse bin photo\n---\n\n"
            f"# {name}\n\nDrop bin photos, optionally type the recorded quantity, and see for each the count, the "
            f"probability of every count and the verify verdict (match / mismatch / uncertain), answered by {source} "
            f"through the same handler as the SageMaker endpoint.\n\nTrained on bins of the Amazon Bin Image Dataset "
            f"(CC BY-NC-SA 3.0 US): non-commercial use only, with attribution.\n")


def write(args: SpaceArguments) -> Path:
    """The Space's folder, ready to push."""
    from inference.app import EXAMPLE_SUFFIXES, WEIGHT_PATTERNS, example_photos  # the page brings torch: only here

    out = Path(args.output or ROOT / "runs" / "space" / args.space_id.split("/")[-1])
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for path in CODE:
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, out / path)
    hub_model = not Path(args.model).is_dir()
    arguments = ["--model", args.model if hub_model else "model", "--host", "0.0.0.0", "--port", "7860"]
    if args.revision:
        arguments += ["--revision", args.revision]
    if not hub_model:
        model = Path(args.model)
        for required in ("config.json", "model.safetensors"):
            if not (model / required).is_file():
                raise UserError(f"{model} has no {required}: give the folder train.run saved the model to")
        (out / "model").mkdir()
        for pattern in WEIGHT_PATTERNS:
            for file in model.glob(pattern):
                shutil.copy2(file, out / "model" / file.name)
    if args.examples:
        (out / "examples").mkdir()
        for photo in example_photos(args.examples):
            shutil.copy2(photo, out / "examples" / Path(photo).name)
        arguments += ["--examples", "examples"]
    (out / "app.py").write_text(APP.format(arguments=arguments))
    (out / "requirements.txt").write_text("\n".join(pinned(REQUIREMENTS)) + "\n")
    gradio = pinned(["gradio"], ROOT / "requirements-app.txt")[0].split("==")[1]
    (out / "README.md").write_text(card(args, gradio, hub_model))
    (out / ".gitattributes").write_text("".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n"
                                                for suffix in (".safetensors", *EXAMPLE_SUFFIXES)))
    return out


def push(folder: Path, space_id: str, private: bool) -> str:
    """Create (or reuse) the Space and upload the folder as one commit; returns the Space's URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=space_id, repo_type="space",
                      commit_message="Bin-check page", ignore_patterns=["__pycache__/**", "*.pyc"])
    return str(url)


def deploy_space(args: SpaceArguments) -> str:
    """Write the Space and push it unless asked not to; returns the line that says what was done."""
    if args.space_id.count("/") != 1:
        raise UserError(f"--space_id must be org/name, got {args.space_id!r}")
    folder = write(args)
    if not args.push:
        return f"wrote the Space to {folder}"
    return f"wrote the Space to {folder} and pushed it: {push(folder, args.space_id, args.private)}"
