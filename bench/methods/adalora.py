"""AdaLoRA: adapters start at ``init_r`` and ranks are reallocated by importance.

``update_and_allocate(global_step)`` runs after every optimizer step (before
``zero_grad``) with ``total_step`` equal to the run's real optimizer steps; the
final rank of every adapted layer goes into the record.
"""

from __future__ import annotations

from peft import AdaLoraConfig, get_peft_model

from bench.methods.base import Method
from bench.methods.lora import build_peft_config, peft_kwargs
from bench.plan import adalora_schedule


class AdaLoraMethod(Method):
    name = "adalora"

    def wrap(self, model):
        self.tinit, self.tfinal = adalora_schedule(self.ctx.total_steps, self.cfg.tinit, self.cfg.tfinal)
        kwargs = peft_kwargs(self, model)
        kwargs.pop("r")
        kwargs.update(
            init_r=self.cfg.init_r, target_r=self.cfg.r, tinit=self.tinit, tfinal=self.tfinal,
            deltaT=self.cfg.delta_t, beta1=self.cfg.beta1, beta2=self.cfg.beta2,
            orth_reg_weight=self.cfg.orth_reg_weight, total_step=self.ctx.total_steps,
        )
        self.allocations = 0
        return get_peft_model(model, build_peft_config(AdaLoraConfig, kwargs))

    def after_optimizer_step(self, model, global_step: int) -> None:
        model.base_model.update_and_allocate(global_step)
        self.allocations += 1

    def final_ranks(self, model) -> dict:
        pattern = model.peft_config["default"].rank_pattern or {}
        # Keys look like "<module>.lora_E.default"; report them by module name.
        return {name.split(".lora_E")[0]: int(sum(bool(b) for b in mask)) for name, mask in pattern.items()}

    def report(self, model) -> dict:
        ranks = self.final_ranks(model)
        return {
            **super().report(model),
            "adalora": {
                "init_r": self.cfg.init_r, "target_r": self.cfg.r, "tinit": self.tinit, "tfinal": self.tfinal,
                "delta_t": self.cfg.delta_t, "total_step": self.ctx.total_steps,
                "update_and_allocate_calls": self.allocations,
                "budget_target_total_rank": self.cfg.r * len(self.targets),
                "final_total_rank": sum(ranks.values()),
                "final_ranks": ranks,
            },
        }
