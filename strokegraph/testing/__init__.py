"""Test doubles that ship with strokegraph, for testing graphs and backends without a model or a key.

:class:`ScriptedChatModel` answers a chat role from a script; :mod:`strokegraph.testing.openai_server`
is a loopback OpenAI-compatible server (:class:`~strokegraph.testing.openai_server.FakeOpenAI`) with
scripted replies, faults and latency; ``ollama_server``, ``anthropic_server``, ``gemini_server`` and
``bedrock_server`` speak those providers' APIs on the same base (:mod:`~strokegraph.testing.loopback_server`).
"""

from strokegraph.testing.chat import ScriptedChatModel

__all__ = ["ScriptedChatModel"]
