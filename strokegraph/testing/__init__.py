"""Test doubles that ship with strokegraph, for testing graphs and backends without a model or a key.

:class:`ScriptedChatModel` answers a chat role from a script; :mod:`strokegraph.testing.openai_server`
is a loopback OpenAI-compatible server (:class:`~strokegraph.testing.openai_server.FakeOpenAI`) with
scripted replies, faults and latency.
"""

from strokegraph.testing.chat import ScriptedChatModel

__all__ = ["ScriptedChatModel"]
