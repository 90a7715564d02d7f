"""Everything around a training run: its config, its assets, its folder, what it records, and
the checks a researcher runs on a config before renting GPUs.

- assets      built-in assets a config can name (`tiny:SEED`, `synthetic:N:SEED`)
- record      sce_training.json: the window and settings a trained model expects
- runs        run folders (`--run DIR`, `sce test --run DIR --ckpt best|last`) and summaries
- config      the one config path: every command's `--config` + `--key=value` overrides
- checks      `sce data validate` (with `--config`: as `sce fit` would use the manifest)
- prefill     a config's windows decoded into its frame cache (`sce data cache`)
- preview     what the model sees for one sample of a config (`sce data preview`)
- budget      frames, visual/text tokens and sequence length per clip (`sce budget`)
- plan        predicted peak GPU memory per device of one training step (`sce plan`)
"""
