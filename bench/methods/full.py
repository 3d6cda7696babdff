"""Full fine-tuning baseline: every parameter of the base and head is trained."""

from __future__ import annotations

from bench.methods.base import Method


class FullMethod(Method):
    name = "full"

    def wrap(self, model):
        for param in model.parameters():
            param.requires_grad_(True)
        return model

    def report(self, model) -> dict:
        return {"target_modules": "all parameters"}
