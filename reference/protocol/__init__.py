"""Between chat messages and token ids: prompts, parameters, detokenization, stop strings.

Pure functions and small state machines; testable without a model or a server. Knows the
chat API's semantics, not HTTP transport nor tensors.
"""
