"""The model card (README.md) saved with every trained counter: metrics as Hub model-index, data, use and limits."""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from core.labels import counts_of, is_overflow
from train.metrics import format_table


def card_data(model_name: str, base_model: str, dataset: str, results: dict | None, results_split: str
              ) -> ModelCardData:
    """The card's Hub metadata: licence, tags, and accuracy / RMSE as model-index results."""
    eval_results = []
    if results is not None:
        for metric in ("accuracy", "rmse"):
            eval_results.append(EvalResult(
                task_type="image-classification", task_name="Bin item counting", dataset_type=dataset,
                dataset_name=dataset, dataset_split=results_split, metric_type=metric, metric_name=metric,
                metric_value=round(results[metric], 4)))
    return ModelCardData(
        model_name=model_name, license="cc-by-nc-sa-3.0", library_name="transformers",
        pipeline_tag="image-classification", tags=["object-counting", "inventory", "bin-counting"],
        datasets=[dataset] if _is_hub_id(dataset) else None, base_model=base_model if _is_hub_id(base_model) else None,
        eval_results=eval_results or None,
    )


def _is_hub_id(name: str) -> bool:
    return "/" in name and not name.startswith(("/", "."))


def render(model_name: str, base_model: str, dataset: str, names: list[str], results: dict | None,
           results_split: str, metrics: dict[str, float], args_summary: str) -> str:
    """Markdown card; ``results`` are the counting metric's results on ``results_split`` (None if not evaluated)."""
    data = card_data(model_name, base_model, dataset, results, results_split)
    table = format_table(results, names) if results is not None else "Not evaluated."
    overflow = ""
    if is_overflow(names[-1]):
        overflow = f' The last class, "{names[-1]}", means that many items or more.'
    counts = dict(zip(names, counts_of(names)))  # the card's snippet maps class names to counts without the project
    body = f"""
# {model_name}

Counts the items in a warehouse bin from a front-view image (Amazon Bin Image Dataset style). An image classifier
over the counts {", ".join(names)}.{overflow} Fine-tuned from `{base_model}` on `{dataset}`.

## Use

```python
from transformers import pipeline

counter = pipeline("image-classification", model="<this model>", top_k={len(names)})
scores = counter("bin.jpg")                     # every count with its probability
counts = {counts}
count = counts[scores[0]["label"]]                              # the most likely count
expected = sum(counts[s["label"]] * s["score"] for s in scores)  # the expected count
```

`top_k={len(names)}` returns every count; the pipeline's default (and `top_k=None`) returns only the top 5. To check
a bin against its expected quantity (match / mismatch / uncertain), serve it with this project's handler.

## Results ({results_split} split)

{table}
## Training

{args_summary}

Final metrics: {", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))}.

## Intended use and limits

- Inventory checks: flag bins whose predicted count disagrees with the expected quantity for a human to look at; do
  not treat a single prediction as ground truth. Accuracy falls as the count grows (items hide each other and the
  elastic straps hide items), so per-class accuracy above matters more than the overall figure.
- Trained on images from one camera setup; other bins, cameras or lighting need evaluation (and likely fine-tuning).
- ABID labels come from the expected quantity in the metadata, which is itself sometimes wrong; the images are
  licensed CC BY-NC-SA 3.0 US (non-commercial use).
"""
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body).content
