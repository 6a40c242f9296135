"""The Ray Data engine: the same per-document function as the local engine, run as a Ray Data ``map``.

Ray Data keeps the input order (``preserve_order``), and dedup, trace, data card and writing stay in the
driver exactly as with the local engine, so ``clean.jsonl`` is byte-identical to the local engine's.
The list of units (file paths, and the raw lines of jsonl inputs) is built in the driver; documents are
read and cleaned in the Ray workers and stream back block by block.
Needs ``pip install 'domainlm[ray]'``; without an address it starts a local Ray cluster.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import asdict

from domainlm.data.ingest import Unit
from domainlm.data.recipe import Recipe, load_recipe
from domainlm.errors import DomainlmError

_RECIPES: dict[str, Recipe] = {}


def _process(row: dict, recipe_source: str, text_field: str, ocr=None) -> dict:
    from domainlm.data.stage import process_unit

    # Loaded once per Ray worker process, like the local engine's pool initializer.
    if recipe_source not in _RECIPES:
        _RECIPES[recipe_source] = load_recipe(recipe_source)
    unit = Unit(**pickle.loads(row["unit"]))
    outcome = process_unit(unit, _RECIPES[recipe_source], text_field, ocr)
    # Outcomes carry nested dicts and a numpy signature: pickled, they travel as one bytes column.
    return {"outcome": pickle.dumps(outcome)}


def run_ray(units: Iterable[Unit], recipe: Recipe, text_field: str, workers: int, ocr=None) -> Iterator:
    try:
        import ray
        import ray.data
    except ImportError:
        raise DomainlmError("--engine ray needs Ray Data: pip install 'domainlm[ray]'") from None
    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            num_cpus=None if os.environ.get("RAY_ADDRESS") else workers,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    dataset = ray.data.from_items([{"unit": pickle.dumps(asdict(u))} for u in units])
    dataset = dataset.map(_process, fn_kwargs={"recipe_source": recipe.source, "text_field": text_field, "ocr": ocr})
    for row in dataset.iter_rows():
        yield pickle.loads(row["outcome"])
