"""The eval stage: suites (+ models or stored predictions) in → predictions.jsonl, results.json, report.html out.

``domainlm eval`` and the line run it. One model, one predictions file, or several named variants
(``NAME=MODEL@KB``) are scored with :func:`domainlm.evals.evaluator.score`, each variant into its own
folder, and compared in one ``results.json`` and ``report.html``. Cached by :func:`domainlm.manifest.stage_run`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.evals.config import EvalConfig
from domainlm.evals.evaluator import Scores, score
from domainlm.evals.report import build_report
from domainlm.evals.tasks import Suite, load_suite
from domainlm.io import write_json, write_text
from domainlm.manifest import StageResult, StageRun, stage_run


def evaluate(config: EvalConfig, out: str | Path, *, force: bool = False) -> StageResult:
    """Run the eval stage (cached when inputs and config are unchanged).

    Returns the stage's result: ``outputs["results"]`` (results.json) and ``outputs["report"]``
    (report.html); for one model also ``outputs["predictions"]`` (predictions.jsonl), for variants
    ``outputs["<name>/results"]``, ``["<name>/predictions"]``, ``["<name>/report"]`` per variant.
    ``metrics`` holds ``score`` and ``n`` for one model, and for variants each variant's overall score
    under its name and all of them in ``metrics["scores"]``."""
    out = Path(out)
    if not config.suites:
        raise DomainlmError("no suite given: pass --suite PATH (a folder of task JSONL files)")
    if config.predictions and config.variants:
        raise DomainlmError("--predictions re-scores one stored run; it cannot be combined with --variants")
    if config.model and config.variants:
        raise DomainlmError("--model and --variants together: name every model in --variants (e.g. base=tiny)")
    if not config.predictions and not config.model and not config.variants:
        raise DomainlmError("nothing to evaluate: pass --model M, --variants NAME=M..., or --predictions P")
    suites = [load_suite(p) for p in config.suites]
    # --general names suites (by path or suite name) whose tasks form the general-ability panel.
    by_key = {str(Path(s.path).resolve()): s.name for s in suites} | {s.name: s.name for s in suites}
    general = set()
    for g in config.general:
        name = by_key.get(str(Path(g).resolve())) or by_key.get(g)
        if name is None:
            raise DomainlmError(f"--general '{g}' is not one of the --suite paths")
        general.add(name)
    inputs = list(config.suites) + [p for p in (config.predictions, config.kb) if p]
    inputs += [Path(v.kb) for v in config.variants if v.kb]
    inputs += [p for p in [config.model, *(v.model for v in config.variants)] if p and Path(p).exists()]
    created = not out.exists()
    try:
        result = _run_stage(config, out, suites, general, inputs, force)
    except BaseException:
        # A failed run leaves no empty output folder behind; rmdir refuses a folder with anything in it,
        # so outputs already written (an earlier variant's) and a folder that existed before stay.
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return result


def _run_stage(config: EvalConfig, out: Path, suites: list[Suite], general: set[str], inputs: list,
               force: bool) -> StageResult:
    """The cached part of :func:`evaluate`: score every model or variant and write the outputs."""
    with stage_run("eval", out, inputs=inputs, config=config, seed=config.seed, force=force) as run:
        if run.skipped:
            return run.result()
        common = {"general": general, "seed": config.seed, "batch_size": config.batch_size, "kb_k": config.kb_k,
                  "limit": config.limit, "show_progress": True}
        if not config.variants:
            scores = score(config.model, suites, kb=config.kb, predictions=config.predictions, **common)
            _record(run, "", scores.write(out))
            run.metrics.update(score=scores.score, n=scores.n)
        else:
            variants: dict[str, Scores] = {}
            for variant in config.variants:
                name, model, kb = variant.name, variant.model, variant.kb
                if name in variants:
                    raise DomainlmError(f"--variants: name '{name}' is used twice")
                variants[name] = score(model, suites, kb=kb, label=name, **common)
                _record(run, f"{name}/", variants[name].write(out / name))
            results = {"variants": {name: v.results for name, v in variants.items()},
                       "suites": next(iter(variants.values())).results["suites"]}
            write_json(run.output("results.json", key="results"), results)
            write_text(run.output("report.html", key="report"), build_report(results))
            scores_by_name = {name: v.results["overall"]["score"] for name, v in variants.items()}
            run.metrics.update(scores_by_name)
            run.metrics["scores"] = scores_by_name
    return run.result()


def _record(run: StageRun, prefix: str, paths: dict[str, Path]) -> None:
    """Name written files as the stage's outputs: ``results``, or ``<variant>/results`` for a variant."""
    for key, path in paths.items():
        run.output(prefix + path.name, key=prefix + key)
