"""bench: what fine-tuning really costs, per unit of quality.

Config-driven runs fine-tune a model (LoRA, QLoRA, AdaLoRA or full fine-tuning),
measure training cost and held-out quality, time the trained model serving, and
write one JSON record per run; the leaderboard ranks records by cost per quality.
"""

__version__ = "0.1.0"
