"""The built-in sample domain: a fictional bank, "Harbor Bank / 海港银行", generated from a seed.

``generate_sample(out_dir, seed=0, size="small")`` writes clean documents (.md/.html/.txt/.docx/.pdf),
noisy web copies, ground truth (facts, noise and personal-data spans) and train/eval task files.
"""

from domainlm.sample.generate import SIZES, SampleConfig, build_sample, generate_sample

__all__ = ["SIZES", "SampleConfig", "build_sample", "generate_sample"]
