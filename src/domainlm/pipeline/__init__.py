"""The whole line: ``build`` runs the configured stages of a workspace in order, each cached by its
manifest; ``rebase`` rebuilds it on a new base model and compares old and new; ``demo`` writes the sample
domain and builds it with ``tiny`` (or a given base model)."""

from domainlm.pipeline.demo import demo
from domainlm.pipeline.line import STAGES, BuildResult, RebaseResult, build, rebase
from domainlm.pipeline.versions import LEDGER, append_versions, latest, read_ledger, version_record

__all__ = ["LEDGER", "STAGES", "BuildResult", "RebaseResult", "append_versions", "build", "demo", "latest", "read_ledger", "rebase",
           "version_record"]
