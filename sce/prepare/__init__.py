"""Offline data tools: turn raw recordings into a manifest and check it before training.

Nothing here runs inside a training step; each tool reads or writes the files the training
pipeline (`sce.data`) consumes.

- sources/          converters (nexar, bddx, lingoqa, private, comma2k19, gopro + gpmf) as record
                    generators, driven by `prepare()` (`sce data prepare`, `sce data init`)
- splits            the one stratified split assigner (converters and synthetic)
- synthetic/        rendered dashcam clips with IMU/GPS telemetry (`sce synth`)
- chunking          long videos -> short clip records (`sce data chunk`)
- mining            candidate event windows in long unlabeled recordings (`sce data mine-events`)
- validate          every record of a manifest checked before a run (`sce data validate`)
- telemetry_checks  device clocks and rates of a record's telemetry (for validate)
- prefill           decode a config's windows into its frame cache (`sce data cache`)
- preview           what the model sees for one sample (`sce data preview`)
"""
