"""Tool calling: how tools reach the prompt, and how calls are parsed out of generated text.

One small parser per model family; each is incremental, so a stream can send text before a
call as content and the call itself as ``tool_calls`` deltas.
"""
