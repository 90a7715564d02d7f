"""A small reader of GoPro's GPMF telemetry (KLV) embedded in MP4 files.

Why our own: the one PyPI reader that decodes GPMF correctly (py-gpmf-parser 0.1.1, bindings of
GoPro's C gpmf-parser) ships compiled wheels for CPython on Linux x86-64 only, with no source
distribution, so sce would stop installing on macOS or ARM (aarch64 GPU nodes). The format is
small and documented (GoPro's gpmf-parser README), and PyAV, already a dependency, demuxes the
telemetry track with its MP4 sample table. tests/prepare/test_gopro.py compares this reader with
py-gpmf-parser when that package is installed.

Format: a stream of KLV items, each a 4-byte FourCC key, a 1-byte type, a 1-byte struct size
and a 2-byte (big-endian) repeat count, then `size * repeat` bytes of big-endian data padded to
a multiple of 4. Type 0 nests KLV items (DEVC -> STRM -> ...). Inside a STRM the "sticky"
items before the data (SCAL, STNM, SIUN, ORIN, TYPE) describe it; the values are divided by
SCAL (one divisor, or one per column), then, where the stream has an MTRX (a C x C matrix, row-
major), mapped to the camera's axes as MTRX @ value (GoPro's GPMF_ScaledData does the same: a
MAX stores ACCL in its IMU chip's axis order, ORIN "XzY", and MTRX turns it into camera axes).

Time stamps come from the container, not from the payload: each MP4 sample of the telemetry
track (one payload, typically 1.001 s) has a presentation time and a duration in the track's
sample table. For each sensor the cumulative sample count at every payload boundary is fitted
linearly against those boundary times (least squares, as GoPro's GetGPMFSampleRate does), so
sample n is stamped a + b * n: one rate and offset per file, no steps at payload boundaries.
Times are on the movie timeline, shifted so that zero is the first video frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sce.prepare.sources.base import SourceError

# Type character -> numpy big-endian dtype and fixed-point divisor.
_NUMERIC: dict[str, tuple[str, float]] = {
    "b": (">i1", 1.0),
    "B": (">u1", 1.0),
    "s": (">i2", 1.0),
    "S": (">u2", 1.0),
    "l": (">i4", 1.0),
    "L": (">u4", 1.0),
    "f": (">f4", 1.0),
    "d": (">f8", 1.0),
    "j": (">i8", 1.0),
    "J": (">u8", 1.0),
    "q": (">i4", 65536.0),  # Q15.16 fixed point
    "Q": (">i8", 4294967296.0),  # Q31.32 fixed point
}
_TEXT = {"c", "U", "F"}  # characters, UTC date string, FourCC
NESTED = "\x00"
STICKY = {"SCAL", "STNM", "SIUN", "UNIT", "ORIN", "ORIO", "MTRX", "TYPE", "TMPC", "TSMP", "STMP"}


@dataclass
class Klv:
    """One KLV item: `key`, `type` (a character; "\\0" for nested), struct `size`, `repeat`,
    and either its raw `data` or its `children`."""

    key: str
    type: str
    size: int
    repeat: int
    data: bytes = b""
    children: list[Klv] = field(default_factory=list)


def parse_klv(buffer: bytes, where: str = "gpmf") -> list[Klv]:
    """Parse a GPMF buffer into KLV items (nested ones with their children)."""
    items, offset = [], 0
    while offset + 8 <= len(buffer):
        key_bytes, type_byte, size, repeat = struct.unpack(">4scBH", buffer[offset : offset + 8])
        if key_bytes == b"\x00\x00\x00\x00":  # padding at the end of a payload
            break
        length = size * repeat
        end = offset + 8 + length
        if end > len(buffer):
            raise SourceError(
                f"{where}: KLV item {key_bytes!r} at byte {offset} claims {length} bytes, "
                f"only {len(buffer) - offset - 8} left"
            )
        key, kind = key_bytes.decode("latin-1"), type_byte.decode("latin-1")
        body = buffer[offset + 8 : end]
        item = Klv(key, kind, size, repeat)
        if kind == NESTED:
            item.children = parse_klv(body, f"{where}/{key}")
        else:
            item.data = body
        items.append(item)
        offset += 8 + (length + 3) // 4 * 4
    return items


class NotNumeric(SourceError):
    """A structure with text fields (e.g. SCEN's "Ff"): not a sensor, skipped."""


def _complex_dtype(type_string: str, where: str) -> np.dtype:
    """A structured dtype for a "?" item described by a TYPE string, e.g. "lllllllSS" (GPS9)."""
    fields = []
    for i, char in enumerate(type_string):
        if char not in _NUMERIC:
            raise NotNumeric(f"{where}: TYPE {type_string!r}: element type {char!r} is not numeric")
        fields.append((f"f{i}", _NUMERIC[char][0]))
    return np.dtype(fields)


def decode_values(item: Klv, type_string: str = "", where: str = "gpmf") -> np.ndarray | str:
    """The item's values as a float array [repeat, elements] (fixed point resolved), or a string
    for character types."""
    if item.type in _TEXT:
        return item.data.decode("latin-1").rstrip("\x00 ")
    if item.type == "?":
        dtype = _complex_dtype(type_string, f"{where}/{item.key}")
        rows = np.frombuffer(item.data, dtype=dtype, count=item.repeat)
        return np.stack([rows[name].astype(np.float64) for name in dtype.names], axis=1)
    if item.type not in _NUMERIC:
        raise SourceError(f"{where}/{item.key}: unsupported GPMF type {item.type!r}")
    dtype, divisor = _NUMERIC[item.type]
    width = np.dtype(dtype).itemsize
    if item.size % width:
        raise SourceError(
            f"{where}/{item.key}: struct size {item.size} is not a multiple of {width}"
        )
    values = np.frombuffer(item.data, dtype=dtype, count=item.repeat * item.size // width)
    return values.astype(np.float64).reshape(item.repeat, item.size // width) / divisor


def scaled(values: np.ndarray, scale: np.ndarray | None, where: str) -> np.ndarray:
    """Divide `values` [N, C] by SCAL: one divisor for all columns, or one per column."""
    if scale is None:
        return values
    scale = np.asarray(scale, dtype=np.float64).ravel()
    if scale.size not in (1, values.shape[1]):
        raise SourceError(f"{where}: SCAL has {scale.size} values for {values.shape[1]} columns")
    if (scale == 0).any():
        raise SourceError(f"{where}: SCAL contains 0")
    return values / scale


def to_camera_axes(values: np.ndarray, matrix: np.ndarray, where: str) -> np.ndarray:
    """values [N, C] -> values @ M.T with M the C x C MTRX (row-major)."""
    columns = values.shape[1]
    if matrix.size != columns * columns:
        raise SourceError(f"{where}: MTRX has {matrix.size} values for {columns} columns")
    return values @ matrix.reshape(columns, columns).T


@dataclass
class SensorStream:
    """One sensor's samples, payload by payload (before time stamping)."""

    key: str
    name: str = ""
    units: str = ""
    orientation: str = ""  # ORIN: which camera axis each column is, e.g. "ZXY"
    chunks: list[np.ndarray] = field(default_factory=list)  # per payload [n_i, C]
    payloads: list[int] = field(default_factory=list)  # payload index of each chunk


def read_payload(buffer: bytes, index: int, streams: dict[str, SensorStream], where: str) -> None:
    """Add the samples of one payload's STRMs to `streams` (keyed by FourCC)."""
    for device in parse_klv(buffer, where):
        if device.key != "DEVC":
            continue
        for strm in device.children:
            if strm.key == "STRM":
                _read_strm(strm.children, index, streams, f"{where}/DEVC/STRM")


def _read_strm(items: list[Klv], index: int, streams: dict[str, SensorStream], where: str) -> None:
    sticky: dict[str, np.ndarray | str] = {}
    for item in items:
        if item.key in STICKY:
            sticky[item.key] = decode_values(item, where=where)
            continue
        if item.type == NESTED:
            continue
        try:
            values = decode_values(item, str(sticky.get("TYPE", "")), where)
        except NotNumeric:
            continue
        if isinstance(values, str):
            continue
        scale = sticky.get("SCAL")
        values = scaled(values, None if isinstance(scale, str) else scale, where)
        matrix = sticky.get("MTRX")
        if isinstance(matrix, np.ndarray):
            values = to_camera_axes(values, matrix, f"{where}/{item.key}")
        stream = streams.setdefault(item.key, SensorStream(item.key))
        stream.name = str(sticky.get("STNM", stream.name))
        stream.units = str(sticky.get("SIUN", sticky.get("UNIT", stream.units)))
        stream.orientation = str(sticky.get("ORIN", stream.orientation))
        stream.chunks.append(values)
        stream.payloads.append(index)


@dataclass(frozen=True)
class Sensor:
    """A time-stamped sensor: `t` [N] s from the first video frame, `values` [N, C]."""

    key: str
    t: np.ndarray
    values: np.ndarray
    name: str
    units: str
    orientation: str
    payload: np.ndarray  # [N] index of the telemetry payload (MP4 sample) each sample came from

    @property
    def rate(self) -> float:
        """Samples per second from the fitted time stamps."""
        return float((len(self.t) - 1) / (self.t[-1] - self.t[0])) if len(self.t) > 1 else 0.0


@dataclass(frozen=True)
class GpmfTelemetry:
    """Every sensor of a file's GPMF track, with the video's timing for reference."""

    sensors: dict[str, Sensor]
    video_duration: float  # s, frames / fps of the first video stream
    video_fps: float
    payload_times: np.ndarray  # [P, 2] start and end of each telemetry payload, video time base


def stamp(stream: SensorStream, bounds: np.ndarray) -> Sensor:
    """Time-stamp a stream by the least-squares line through (cumulative sample count, payload
    boundary time) pairs (see the module docstring)."""
    counts = np.array([len(c) for c in stream.chunks])
    starts = np.concatenate([[0], np.cumsum(counts)])  # sample index at each chunk's start
    times = bounds[stream.payloads, 0]
    x = np.concatenate([starts[:-1], [starts[-1]]])
    y = np.concatenate([times, [bounds[stream.payloads[-1], 1]]])
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, offset = np.polyfit(x, y, 1)
    else:  # nothing to fit: spread the samples over their one payload
        slope, offset = (y[-1] - y[0]) / max(starts[-1], 1), y[0]
    n = np.arange(starts[-1], dtype=np.float64)
    return Sensor(
        stream.key,
        offset + slope * n,
        np.concatenate(stream.chunks),
        stream.name,
        stream.units,
        stream.orientation,
        np.repeat(stream.payloads, counts),
    )


def read_gpmf(path: str | Path) -> GpmfTelemetry:
    """Read the GPMF track of an MP4 (GoPro HERO5 and later, MAX): every sensor, time-stamped
    on the video's time base. Raises SourceError naming the file when there is no GPMF track
    or a payload is malformed."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            video_start = float((video.start_time or 0) * video.time_base)
            fps = float(video.average_rate or video.guessed_rate or 0)
            frames = int(video.frames or 0)
            packets = _gpmf_packets(container)
    except av.error.FFmpegError as err:
        raise SourceError(f"{path}: cannot read the MP4: {err}") from err
    if not packets:
        raise SourceError(f"{path}: no GPMF telemetry track (no data stream starting with DEVC)")
    streams: dict[str, SensorStream] = {}
    bounds = np.array([[start, start + length] for start, length, _ in packets]) - video_start
    for index, (_, _, payload) in enumerate(packets):
        read_payload(payload, index, streams, f"{path}: payload {index}")
    sensors = {key: stamp(stream, bounds) for key, stream in streams.items()}
    return GpmfTelemetry(sensors, frames / fps if fps else 0.0, fps, bounds)


def _gpmf_packets(container) -> list[tuple[float, float, bytes]]:
    """(start s, duration s, payload) of each sample of the data stream carrying GPMF."""
    by_stream: dict[int, list[tuple[float, float, bytes]]] = {}
    for packet in container.demux(container.streams.data):
        if packet.size == 0 or packet.pts is None:
            continue
        payload = bytes(packet)
        if not payload.startswith(b"DEVC"):
            continue
        base = float(packet.time_base)
        by_stream.setdefault(packet.stream.index, []).append(
            (packet.pts * base, (packet.duration or 0) * base, payload)
        )
    if not by_stream:
        return []
    return sorted(max(by_stream.values(), key=len))
