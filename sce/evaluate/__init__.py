"""Generated answers -> numbers, figures and tables: what a trained model is judged by.

The scoring primitives (classification, text, calibration metrics) are one floor below, in
`sce.metrics`, so that tasks can score themselves; this package runs an evaluation.

- figures        confusion matrix, PR curve and reliability figures; compact metric tables
- summary        one evaluation's metrics over its evaluated items (Summary, summarize)
- media          TensorBoard images, text and exact PR curves logged at their scalars' step
- dashboard      TensorBoard sections of the evaluation scalars and the custom-scalars dashboard
- callback       GenerationEvaluation: generation + log-likelihood evaluation during fit/validate/test
- predictions    `sce predict`'s predictions.jsonl writer
- run_folder     a run's log folder read back: config, metrics.json, evaluations, checkpoints
- paper_tables   a paper's tables from run folders (`sce report`)
- compare        runs side by side with the config keys that differ (`sce compare`)
"""
