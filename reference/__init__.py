"""chatref's reference OpenAI-compatible chat server (Litestar + uvicorn over transformers models)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
