"""Industry evaluation: suites, scorers, taxonomy breakdown, confidence intervals, density, reports.

The public surface: :func:`score` scores one model (or stored predictions) on suites and is what every
caller outside this package uses (the compression gate, the flywheel); :func:`evaluate` is the eval
stage (``domainlm eval``), which writes ``results.json``, ``predictions.jsonl`` and ``report.html``.
Scoring stored predictions needs no model; a live model is loaded through :mod:`domainlm.models`, which
imports torch only then.
"""

from domainlm.evals.agent_env import AgentEnv
from domainlm.evals.aggregate import count_silent, task_counts
from domainlm.evals.config import EvalConfig, EvalSection, Variant, parse_variant
from domainlm.evals.degenerate import degenerate_reason
from domainlm.evals.density import MOSTLY_SILENT, dense_flops_per_token, trust_notes, version_density
from domainlm.evals.evaluator import Scores, limit_items, score, select_items
from domainlm.evals.gate import FEW_ITEMS_RULES, LEVELS, MAX_SILENT_SHARE, GateSettings, compare_per_category, silenced
from domainlm.evals.scorers import SCORERS, TYPES, score_item
from domainlm.evals.stage import evaluate
from domainlm.evals.stats import FEW_ITEMS, paired_bootstrap, ratio_interval
from domainlm.evals.tasks import Suite, SuiteConfig, load_suite

__all__ = ["AgentEnv", "FEW_ITEMS", "MOSTLY_SILENT", "dense_flops_per_token", "trust_notes", "version_density", "FEW_ITEMS_RULES", "GateSettings", "LEVELS", "MAX_SILENT_SHARE", "SCORERS", "TYPES", "EvalConfig", "EvalSection",
           "Scores", "Suite", "SuiteConfig", "compare_per_category", "count_silent", "degenerate_reason", "evaluate", "limit_items", "load_suite",
           "paired_bootstrap", "parse_variant", "ratio_interval", "score", "score_item", "select_items", "silenced",
           "task_counts", "Variant"]
