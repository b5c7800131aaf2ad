"""droptune's trainer: LoRA / full supervised fine-tuning on Vertex AI's container contract.

`python -m droptune_trainer train --run-dir RUN` reads `run.json` and `data/` of a run folder
and writes the model, `training/` and checkpoints where Vertex AI says (`AIP_*`).
"""
