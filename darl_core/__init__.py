"""DaRL Studio core: relevance models, DaRL losses, OOD detection (DASA) and the stage runner.

The ML library: it imports neither streamlit, ``pages/``, ``db/`` nor the application layer
(``darl_app``: the CLI, the worker and the queue). ``__main__`` alone forwards ``python -m darl_core`` to
the CLI in ``darl_app``.
"""

__version__ = "0.1.0"
