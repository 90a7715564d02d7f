"""Synthetic dashcam clips with IMU/GPS telemetry, for tests, demos and smoke training runs.

Each clip is a cheap rendered road scene (sky, scenery, road with lane markings that scroll with
the ego speed) with one agent ahead (car, truck, bus, motorcycle, pedestrian, cyclist) whose
distance follows a class-specific script, plus a 100 Hz IMU and a 1 Hz GPS track whose
signatures match the class:

- collision: the agent closes in and fills most of the view at the event; ax shows a short
  (~0.7 s) deceleration pulse peaking at -8.6..-11.6 m/s^2, then braking to a stop; the picture shakes
  and flashes after the impact; side impacts add a lateral spike and a yaw jolt.
- near_collision: the agent closes in, then recedes under ~1 s of hard braking (-4.2..-5.4 m/s^2).
- normal: steady following; |ax| stays below ~2 m/s^2 and the event time is argmax |ax|
  (the heuristic of paper 000).

Axes: x longitudinal (negative = braking), y lateral (positive = left), z up (az includes
gravity). Everything is drawn from `numpy.random.default_rng([seed, clip_index])`, so a seed
gives byte-identical CSVs and manifest, and identical video frames.

Options for the ablations (`SynthOptions`; the defaults leave every clip unchanged):

- brief_events: the agent (and the impact's flash and shake) is visible for only
  BRIEF_VISIBLE_S = 0.3 s, at a random offset in [-0.5, +0.5) s from the event time, and the
  camera is stabilised (no pitch): 1 fps frames (spaced 1 s) catch it in about 30% of clips,
  15 fps frames (spaced 0.067 s) always (paper 001 Table 3's frame-rate question).
- telemetry_decides: near-collisions and normal clips look alike (the agent keeps a steady
  follow distance, no brake lights, no pitch); only the IMU's hard braking tells them apart
  (paper 000 Table V's IMU question). Collisions stay visible.
- driver_view: a driver-facing video per clip (`metadata.driver_video`, a dual-view clip) and
  paper 003's structured events and instruction (`annotations.driving_events`,
  `annotations.instruction`); drawn from a generator of its own, so the road clip, its
  telemetry and its other annotations are unchanged.
- class_fractions: the train split's class mix (a long tail, e.g. 2% collision, 15%
  near-collision); val and test stay balanced so collision F1 is measurable (paper 001 Table 7).

Modules, in flow order (each imports only the ones above it):

- scenario   what happens in a clip: SynthOptions, the labels' scripts, the sampled Scenario
- telemetry  100 Hz IMU, speed and agent track (Kinematics), 1 Hz GPS, the CSV writer
- backdrop   per-clip picture constants: sky, scenery, lane lines, camera, light and fog
- render     the frames (road, agent, weather, camera motion) and their H.264 encoding
- caption    a clip's metadata and templated caption
- questions  teacher-style QA pairs, reasoning VQA and metadata caption (no random draw)
- cabin      the driver-facing view (driver_view) and paper 003's events and instruction
- manifest   labels and splits, one clip's files and record, generate_synthetic_dataset
"""

from sce.prepare.splits import assign_splits
from sce.prepare.synthetic.caption import make_caption
from sce.prepare.synthetic.manifest import (
    class_counts,
    generate_clip,
    generate_synthetic_dataset,
    long_tail_labels,
)
from sce.prepare.synthetic.render import encode_video, render_frames
from sce.prepare.synthetic.scenario import (
    AGENT_COLORS,
    AGENT_SIZES,
    LIGHTS,
    SCENES,
    WEATHERS,
    Scenario,
    SynthOptions,
    sample_scenario,
)
from sce.prepare.synthetic.telemetry import IMU_RATE, Kinematics, gps_track, simulate

__all__ = [
    "AGENT_COLORS",
    "AGENT_SIZES",
    "IMU_RATE",
    "LIGHTS",
    "SCENES",
    "WEATHERS",
    "Kinematics",
    "Scenario",
    "SynthOptions",
    "assign_splits",
    "class_counts",
    "encode_video",
    "generate_clip",
    "generate_synthetic_dataset",
    "gps_track",
    "long_tail_labels",
    "make_caption",
    "render_frames",
    "sample_scenario",
    "simulate",
]
