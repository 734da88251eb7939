"""chatref's reference OpenAI-compatible chat server (Litestar + uvicorn over transformers models).

``from reference import LocalChat`` gives the same chat pipeline in process, without a server
(:mod:`reference.local`); it is imported on first use, so ``import reference`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["LocalChat", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "LocalChat":
        from reference.local import LocalChat

        return LocalChat
    raise AttributeError(f"module 'reference' has no attribute {name!r}")
