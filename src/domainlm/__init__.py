"""domainlm: the production line for industry language models.

Importing this package is cheap: it never imports torch or the model libraries.
"""

__version__ = "0.1.0"

from domainlm.errors import DomainlmError  # noqa: E402

__all__ = ["DomainlmError", "__version__"]
