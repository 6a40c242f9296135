"""The built-in sample domain: a fictional bank, "Harbor Bank / 海港银行", generated from a seed.

``generate_sample(out_dir, seed=0, size="small")`` writes clean documents (.md/.html/.txt/.docx/.pdf),
noisy web copies, ground truth (facts, noise and personal-data spans) and train/eval task files.
"""

from domainlm.sample.config import SampleConfig
from domainlm.sample.defaults import SPEED_PROMPTS, distill_data, gate_suite, tiny_corpus
from domainlm.sample.generate import SIZES, build_sample, generate_sample

__all__ = ["SIZES", "SPEED_PROMPTS", "SampleConfig", "build_sample", "distill_data", "gate_suite", "generate_sample",
           "tiny_corpus"]
