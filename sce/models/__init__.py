"""The model and its training step.

- families/      model families (Qwen2.5-VL): geometry, markers, rope probe, blocks, sizes, tiny kit
- tiny           the offline tiny kit: the family's builder on the project's own vocabulary
- precision      dtype names -> torch dtypes ("auto": bfloat16 on CUDA, float32 on CPU)
- adapters       DoRA / LoRA / QLoRA / full fine-tuning of the language model
- neftune        NEFTune embedding noise
- losses         CE on supervised rows only, + MSE on probability answers (paper 002)
- throughput     clips/s and visual tokens/s logged during training
- checkpointing  adapter-only, atomic checkpoints that resume a run exactly
- base_identity  which base a checkpoint was trained on (config + weight sample hashes)
- distributed    FSDP2 / FSDP1 strategies
- rope_guard     checks the model's temporal positions for the configured window
- module         SceModule (LightningModule): fp32 masters, loss normalisation, NaN guard
"""
