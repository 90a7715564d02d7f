"""The training pipeline, one stage per module, in the order a sample passes through them.

A stage imports only the stages above it (tests/test_layout.py checks it); the offline
tools that write and check manifests are in `sce.prepare`.

- schema            the manifest: one validated ClipRecord per clip
- windows           window geometry: event, chunk, multi-scale keyframe and whole-clip windows
- video             frame decoding at given times (decord / PyAV), dual view
- cache             on-disk cache of decoded windows and of window plans
- imu               IMU/GPS loading, event time, sync to frame times (SyncedTelemetry, FrameTelemetry)
- alignment         IMU mounting rotation: device axes -> vehicle frame
- clip              the window (WindowSpec, data.window) and one clip's inputs (ClipInputs):
                    window plan, frames, telemetry
- channels          per-frame prompt inputs beside the frames (telemetry; objects next)
- prompts           the student's prompt around a task's question (sce.tasks), chat messages
- subset            fixed evaluation subsets and per-item seeds
- dataset           record -> Sample (one prompt/answer pair per record and task); build_sample
- sampling          class re-sampling of training items, distributed and restartable
- video_processing  frame geometry (the model family's): smart_resize, settings, visual tokens
- collate           Samples -> a batch through the processor and chat template
- datamodule        SceDataModule: manifest splits -> datasets -> dataloaders
"""
