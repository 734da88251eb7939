"""The legacy text completions API (``/v1/completions``) over the same generation as chat.

A raw prompt (no chat template) as a string, strings or token ids; sampled by the chat
pipeline's parameters and engine (:mod:`.prompts`); rendered with the legacy ``logprobs``
shape and ``echo`` (:mod:`.render`).
"""
