"""Industry evaluation: suites, scorers, taxonomy breakdown, confidence intervals, density, reports.

Scoring stored predictions needs no model (``score_suites``); live evaluation (``evaluate``) runs a
model from :mod:`domainlm.models` and imports torch only then.
"""

from domainlm.evals.scorers import SCORERS, TYPES, score_item
from domainlm.evals.tasks import Suite, SuiteConfig, load_suite

__all__ = ["SCORERS", "TYPES", "Suite", "SuiteConfig", "load_suite", "score_item"]
