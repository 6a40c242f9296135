"""Training and evaluation sets from a knowledge base.

Without a model, rule-based extractive generators turn attribute statements in the documents
("海港明珠定期存款的存期为3年。", "The annual fee of X is CNY 50.") into question/answer items with the
supporting sentence as evidence, plus unanswerable questions that must be refused. With a teacher model,
the teacher writes more questions from each chunk; only those whose answer is found in the chunk are kept.
"""

from domainlm.synth.config import SynthConfig, SynthSection
from domainlm.synth.generate import SynthResult, checked_facts, plain_question, synth_stage, synthesize

__all__ = ["SynthConfig", "SynthResult", "SynthSection", "checked_facts", "plain_question", "synth_stage", "synthesize"]
