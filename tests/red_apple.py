"""The one-object case the OpenAI backend tests draw (a red apple: prompt, scene, plan) and the models they name."""

from __future__ import annotations

from strokegraph.schema import Entity, Plan, PlanStep, SceneGraph

CHAT, IMAGE = "gpt-4.1-mini", "gpt-image-1.5"
PROMPT = "a red apple"
SCENE = SceneGraph(prompt=PROMPT, entities=(Entity(id="e0", noun="apple", colour="red"),))
PLAN = Plan(steps=(PlanStep(instruction="Draw a red apple.", description="A red apple.", entity_ids=("e0",)),))
