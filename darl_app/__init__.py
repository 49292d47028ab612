"""The application layer: the background worker and its job handlers, the task queue and the CLI.

Arrows point one way (tests/unit/test_layers.py keeps them so): ``app.py`` and ``pages/`` and this
package call ``db/`` services and ``darl_core``; ``db/`` calls ``darl_core``; ``darl_core`` (the ML library)
imports neither ``db`` nor this package, except its two-line ``__main__`` that keeps
``python -m darl_core`` working.
"""
