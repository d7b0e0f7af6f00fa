"""A bin-check page: ``python -m inference.app --model DIR_OR_HUB_ID [--port 7860] [--examples DIR]``.

Drop one or more bin photos, optionally type the recorded quantity, and see for each the count, a bar chart of every
count's probability and the verify verdict. Each photo goes through the endpoint's own hooks (``input_fn`` ->
``predict_fn`` of inference/handler.py, as a JSON request), so the page answers exactly what the endpoint would, with
the same limits and the same BINCOUNT_* settings; a bad upload (not an image, a decompression bomb, too large) shows
the endpoint's message for that photo and the others are still answered. Gradio is the Hub's convention for Spaces;
its requirements are in requirements-app.txt. Runs offline: no analytics, no web fonts, no share link.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (a Space runs app.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.cli import UserError, entry_point, parse
from inference import handler

logger = logging.getLogger("inference.app")
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
WEIGHT_PATTERNS = ["*.json", "*.safetensors"]  # what a counting model folder needs; never pickles or code
CSS = """
.bin-result, .bin-error {border: 1px solid #ccc; border-radius: 8px; padding: 10px 14px; margin: 8px 0}
.bin-error {border-color: #c0392b; color: #c0392b}
.verdict-match {color: #1e8449} .verdict-mismatch {color: #c0392b} .verdict-uncertain {color: #b9770e}
.bar-row {display: flex; align-items: center; gap: 8px; font-family: monospace}
.bar-label {width: 3em; text-align: right} .bar-value {width: 4.5em}
.bar {display: inline-block; height: 14px; background: #2e86c1; border-radius: 2px}
.bar-row.best .bar {background: #1e8449}
"""


@dataclass
class AppArguments:
    model: str = field(metadata={"help": "A model folder saved by train.run, or a Hub model id (token: HF_TOKEN)."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of the model."})
    port: int = field(default=7860, metadata={"help": "Port to serve the page on."})
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to listen on (0.0.0.0: every one)."})
    examples: str | None = field(default=None, metadata={"help": "A folder of example bin photos to pick from."})


@dataclass
class Checked:
    """One photo's outcome: the endpoint's answer, or the message that says why it could not be checked."""

    name: str
    answer: dict[str, Any] | None = None
    error: str | None = None


def load_model(model: str, revision: str | None = None) -> handler.CountingModel:
    """The handler's model from a folder, or from the Hub (weights and configs only, safetensors)."""
    folder = Path(model)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        try:
            folder = Path(snapshot_download(model, revision=revision, allow_patterns=WEIGHT_PATTERNS))
        except (RepositoryNotFoundError, HfHubHTTPError, ValueError) as error:
            raise UserError(f"{model} is neither a model folder nor a Hub model: {str(error).splitlines()[0]}") \
                from None
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} holds no config.json: give a folder saved by train.run")
    try:
        return handler.model_fn(str(folder))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load the model from {folder}: {str(error).splitlines()[0]}") from None


def parse_quantities(text: str | None, n: int) -> list[int | None]:
    """The recorded quantities: blank for none, one number for every photo, or one per photo ("3, 2, -")."""
    parts = [part.strip() for part in (text or "").replace(";", ",").split(",")]
    if parts == [""]:
        return [None] * n
    if len(parts) not in (1, n):
        raise ValueError(f"give one recorded quantity for every photo or one per photo ({n}), got {len(parts)}")
    values = []
    for part in parts:
        if part in ("", "-"):
            values.append(None)
        elif part.isdigit():
            values.append(int(part))
        else:
            raise ValueError(f"a recorded quantity is a whole number of items, got {part!r}")
    return values * n if len(values) == 1 else values


def check_photo(model: handler.CountingModel, path: str | Path, quantity: int | None,
                settings: handler.Settings) -> Checked:
    """One photo through the endpoint's hooks, as the JSON request a client would send."""
    name = Path(path).name
    size = os.path.getsize(path)
    if 4 * (size + 2) // 3 + 200 > settings.max_body_bytes:  # its base64 would not fit in one request
        return Checked(name, error=f"{name} is {size} bytes, too large: the endpoint takes photos up to about "
                                   f"{3 * (settings.max_body_bytes - 200) // 4} bytes")
    body = json.dumps({"inputs": base64.b64encode(Path(path).read_bytes()).decode(),
                       "parameters": {} if quantity is None else {"expected_quantity": quantity}})
    try:
        request = handler.input_fn(body, "application/json")
        return Checked(name, answer=handler.predict_fn(request, model))
    except handler.BadRequest as error:
        message = str(error)
        return Checked(name, error=f"{name}{message[len('inputs'):]}" if message.startswith("inputs") else
                       f"{name}: {message}")


def check_bins(model: handler.CountingModel, paths: list[str] | None, quantities: str | None
               ) -> tuple[str, list[dict]]:
    """The page's answer: HTML cards (count, chart, verdict, or the problem) and the endpoint's JSON answers."""
    paths = [str(p) for p in (paths or [])]
    if not paths:
        return '<p class="bin-error">Drop one or more bin photos first.</p>', []
    try:
        expected = parse_quantities(quantities, len(paths))
    except ValueError as error:
        return f'<p class="bin-error">{html.escape(str(error))}</p>', []
    settings = handler.Settings.from_env()
    results = [check_photo(model, path, quantity, settings) for path, quantity in zip(paths, expected)]
    answers = [{"file": r.name, **(r.answer if r.answer is not None else {"error": r.error})} for r in results]
    return "\n".join(render(result) for result in results), answers


def render(result: Checked) -> str:
    """One photo's card; data-* attributes carry the values so a browser test reads what a person sees."""
    name = html.escape(result.name)
    if result.answer is None:
        return f'<div class="bin-error" data-file="{name}">{html.escape(result.error or "")}</div>'
    answer = result.answer
    best = answer["label"]
    rows = []
    for label, probability in answer["probabilities"].items():
        rows.append(f'<div class="bar-row{" best" if label == best else ""}" data-label="{html.escape(label)}" '
                    f'data-probability="{probability:.6f}"><span class="bar-label">{html.escape(label)}</span>'
                    f'<span class="bar" style="width: {max(probability * 300, 1):.0f}px"></span>'
                    f'<span class="bar-value">{100 * probability:.1f}%</span></div>')
    verdict = ""
    if "verdict" in answer:
        p = answer["match_probability"]
        chance = "" if p is None else f" (P(exactly {answer['expected_quantity']}) = {100 * p:.1f}%)"
        reason = f" — {html.escape(answer['reason'])}" if answer.get("reason") else ""
        verdict = (f'<p class="verdict verdict-{answer["verdict"]}" data-verdict="{answer["verdict"]}">Recorded '
                   f'{answer["expected_quantity"]}: <b>{answer["verdict"]}</b>{chance}{reason}</p>')
    return (f'<div class="bin-result" data-file="{name}" data-count="{answer["count"]}">'
            f'<h3>{name}</h3><p class="count">Count: <b>{html.escape(best)}</b> (expected count '
            f'{answer["expected_count"]:.2f})</p>{verdict}'
            f'<div class="chart" role="img" aria-label="probability of each count">{"".join(rows)}</div></div>')


def example_photos(folder: str | None) -> list[str]:
    if folder is None:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--examples {folder}: not a folder")
    photos = sorted(str(p) for p in root.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)
    if not photos:
        raise UserError(f"--examples {folder}: no photos ({', '.join(EXAMPLE_SUFFIXES)})")
    return photos


def build(model: handler.CountingModel, examples: list[str] = (), title: str = "Bin check"):
    """The Gradio page (gradio imported here, so the rest of this module works without it)."""
    import gradio as gr

    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"# {title}\nDrop bin photos, optionally type the recorded quantity (one number for all, or "
                    f"one per photo: `3, 2, -`), and press **Check**. Counts: {', '.join(model.labels)}.")
        with gr.Row():
            with gr.Column():
                photos = gr.File(label="Bin photos", file_count="multiple", type="filepath", elem_id="photos")
                quantity = gr.Textbox(label="Recorded quantity (optional)", elem_id="quantity")
                button = gr.Button("Check", variant="primary", elem_id="check")
                if examples:
                    gr.Examples([[[path]] for path in examples], inputs=[photos], label="Example bins")
            with gr.Column():
                cards = gr.HTML(elem_id="results")
                raw = gr.JSON(label="The endpoint's answers", elem_id="answers")
        button.click(lambda paths, text: check_bins(model, paths, text), [photos, quantity], [cards, raw])
    return page


def launch(page, args: AppArguments, examples: list[str], settings: handler.Settings, block: bool = True):
    """Serve the page; Gradio refuses uploads over the endpoint's body limit before they are stored."""
    import gradio as gr

    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts offline
    return page.launch(server_name=args.host, server_port=args.port, share=False, prevent_thread_lock=not block,
                       max_file_size=settings.max_body_bytes, allowed_paths=sorted({str(Path(p).parent)
                                                                                    for p in examples}),
                       theme=theme, css=CSS, footer_links=[], quiet=True)


@entry_point
def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    (args,) = parse(HfArgumentParser(AppArguments), argv)
    examples = example_photos(args.examples)
    try:
        settings = handler.Settings.from_env()
    except ValueError as error:
        raise UserError(str(error)) from None
    model = load_model(args.model, args.revision)
    print(f"bin check page on http://{args.host}:{args.port}/ (model {args.model}; Ctrl+C stops)", flush=True)
    page = build(model, examples)
    try:
        launch(page, args, examples, settings)
    except KeyboardInterrupt:  # before Gradio's own wait loop: its server thread would keep the process alive
        page.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
