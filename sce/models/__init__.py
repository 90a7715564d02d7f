"""The model and its training step.

- tiny           the offline tiny Qwen2.5-VL kit (and the real 3B/7B widths)
- precision      dtype names -> torch dtypes ("auto": bfloat16 on CUDA, float32 on CPU)
- adapters       DoRA / LoRA / QLoRA / full fine-tuning of the language model
- neftune        NEFTune embedding noise
- losses         CE on supervised rows only, + MSE on probability answers (paper 002)
- throughput     clips/s and visual tokens/s logged during training
- checkpointing  adapter-only, atomic checkpoints that resume a run exactly
- distributed    FSDP2 / FSDP1 strategies
- rope_guard     checks the model's temporal positions for the configured window
- module         SceModule (LightningModule): fp32 masters, loss normalisation, NaN guard
"""
