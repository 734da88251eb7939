"""Between chat messages and token ids: prompts, parameters, detokenization, stop strings.

Pure functions and small state machines; testable with a tokenizer alone, without a model or a
server. Knows the chat API's semantics, not HTTP transport. Tensors appear at one edge only:
:mod:`.grammar` hands the engine a bool mask of allowed tokens per step (the engine's
``TokenConstraint``).
"""
