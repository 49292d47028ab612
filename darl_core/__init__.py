"""DaRL Studio core: relevance models, DaRL losses, OOD detection (DASA) and the stage runner.

This package never imports streamlit or pages/. The CLI (``darl_core.cli``) is an edge, like the
pages, and is the only module here that talks to ``db``.
"""

__version__ = "0.1.0"
