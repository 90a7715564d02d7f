"""Many runs compared: sweeps, the ablation script and the demo.

- sweep      run every variant of an ablation YAML, then tabulate and plot (`sce sweep`)
- ablations  `make ablations`: IMU dropout, class balancing and fps over 3 seeds, as sweeps
- demo       `sce demo`: synthetic data, the tiny kit, an untrained / DoRA / full FT table
"""
