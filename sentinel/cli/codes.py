"""Exit codes of the one-shot commands."""

EX_OK, EX_FINDINGS, EX_ERROR, EX_CONFIG = 0, 1, 2, 78
