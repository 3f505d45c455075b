"""Vectorised synthesis of IoT events as JSON Lines bytes, with defects and their ground truth.

Clean lines are laid out as a fixed-width byte matrix: every variable field has a fixed width
(numbers are right-aligned after the colon with JSON's insignificant whitespace, and each
device's location object is padded with trailing spaces), so numpy fills whole columns at
once and a chunk becomes bytes with one `tobytes()`. The few defective or variant lines
(a few percent) take a slow path through `json.dumps`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from generator.cities import CITIES

MS_PER_DAY = 86_400_000

# Defect kinds in a fixed order (the order decides how a uniform draw maps to a kind, so it is
# part of the output's determinism). Each quarantining kind is also the pipeline's reason code.
QUARANTINE_KINDS = (
    "malformed_json",
    "missing_device_id",
    "unparseable_event_time",
    "missing_reading",
    "non_numeric_reading",
    "temperature_out_of_range",
    "humidity_out_of_range",
    "battery_out_of_range",
    "invalid_coordinates",
)
VARIANT_KIND = "city_variant"
DUPLICATE_KIND = "duplicate"
DEFECT_KINDS = (*QUARANTINE_KINDS, VARIANT_KIND, DUPLICATE_KIND)

DEFAULT_DEFECT_RATES = {
    "malformed_json": 0.002,
    "missing_device_id": 0.001,
    "unparseable_event_time": 0.002,
    "missing_reading": 0.002,
    "non_numeric_reading": 0.002,
    "temperature_out_of_range": 0.002,
    "humidity_out_of_range": 0.001,
    "battery_out_of_range": 0.001,
    "invalid_coordinates": 0.001,
    "city_variant": 0.02,
    "duplicate": 0.005,
}

EVENT_ID_WIDTH = 36
TEMPERATURE_WIDTH = 5
HUMIDITY_WIDTH = 5
BATTERY_WIDTH = 3
FIRMWARES = ("1.4.2", "1.5.0", "1.5.1", "2.0.3")
LATE_EVENT_RATE = 0.01
LATE_EVENT_MAX_DAYS = 3


@dataclass(frozen=True)
class EventSpec:
    """What the generated data looks like; everything that decides its bytes besides the seed."""

    devices: int = 1000
    days: int = 7
    start: datetime = datetime(2026, 11, 16, tzinfo=timezone.utc)
    defect_rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DEFECT_RATES))

    def __post_init__(self) -> None:
        unknown = set(self.defect_rates) - set(DEFECT_KINDS)
        if unknown:
            raise ValueError(f"unknown defect kinds: {sorted(unknown)}; known: {list(DEFECT_KINDS)}")
        if any(rate < 0 for rate in self.defect_rates.values()) or sum(self.defect_rates.values()) >= 0.5:
            raise ValueError("defect rates must be non-negative and sum to less than 0.5")
        if self.devices < 1 or self.days < 1:
            raise ValueError("devices and days must be at least 1")

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)


@dataclass
class Fleet:
    """The simulated devices: home city, position, firmware, battery and sensor bias."""

    city_index: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    firmware_index: np.ndarray
    battery_start: np.ndarray
    battery_drain_per_day: np.ndarray
    temperature_bias: np.ndarray
    location_json: list[str]
    location_bytes: np.ndarray  # (devices, width) uint8, space padded

    @classmethod
    def build(cls, seed: int, spec: EventSpec) -> Fleet:
        rng = np.random.default_rng([seed, 0x5EED])
        n = spec.devices
        city_index = rng.integers(0, len(CITIES), n)
        base_lat = np.array([CITIES[c].lat for c in city_index])
        base_lon = np.array([CITIES[c].lon for c in city_index])
        lat = np.round(base_lat + rng.uniform(-0.05, 0.05, n), 4)
        lon = np.round(base_lon + rng.uniform(-0.05, 0.05, n), 4)
        location_json = [
            json.dumps(
                {"city": CITIES[c].name, "country": CITIES[c].country, "lat": float(la), "lon": float(lo)},
                ensure_ascii=False,
            )
            for c, la, lo in zip(city_index, lat, lon)
        ]
        encoded = [text.encode() for text in location_json]
        width = max(len(b) for b in encoded)
        location_bytes = np.full((n, width), ord(" "), dtype=np.uint8)
        for i, b in enumerate(encoded):
            location_bytes[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
        return cls(
            city_index=city_index,
            lat=lat,
            lon=lon,
            firmware_index=rng.integers(0, len(FIRMWARES), n),
            battery_start=rng.uniform(60, 100, n),
            battery_drain_per_day=rng.uniform(0.5, 3.0, n),
            temperature_bias=rng.normal(0, 1.5, n),
            location_json=location_json,
            location_bytes=location_bytes,
        )


@dataclass
class Chunk:
    """One chunk of generated lines and the ground truth of what they contain."""

    data: bytes
    records: int
    counts: dict[str, int]


class LineLayout:
    """Byte offsets of each variable field inside a fixed-width clean line."""

    def __init__(self, location_width: int) -> None:
        pieces = [
            ('{"event_id": "', None),
            ("", ("event_id", EVENT_ID_WIDTH)),
            ('", "device_id": "dev-', None),
            ("", ("device", 6)),
            ('", "event_time": "', None),
            ("", ("time", 23)),
            ('Z", "location": ', None),
            ("", ("location", location_width)),
            (', "temperature_c": ', None),
            ("", ("temperature", TEMPERATURE_WIDTH)),
            (', "humidity_pct": ', None),
            ("", ("humidity", HUMIDITY_WIDTH)),
            (', "battery_pct": ', None),
            ("", ("battery", BATTERY_WIDTH)),
            (', "firmware": "', None),
            ("", ("firmware", 5)),
            ('"}\n', None),
        ]
        template = bytearray()
        self.offsets: dict[str, tuple[int, int]] = {}
        for literal, slot in pieces:
            if slot is None:
                template += literal.encode()
            else:
                name, width = slot
                self.offsets[name] = (len(template), width)
                template += b" " * width
        self.template = np.frombuffer(bytes(template), dtype=np.uint8)
        self.width = len(template)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DASHES = (8, 13, 18, 23)


def _put_uuid(block: np.ndarray, column: int, random_bytes: np.ndarray) -> None:
    """Write 16 random bytes per row as a lowercase 8-4-4-4-12 UUID text (version 4 bits set)."""
    raw = random_bytes.copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hex_digits = np.empty((raw.shape[0], 32), dtype=np.uint8)
    hex_digits[:, 0::2] = _HEX[raw >> 4]
    hex_digits[:, 1::2] = _HEX[raw & 0x0F]
    target = column
    source = 0
    for group in (8, 4, 4, 4, 12):
        block[:, target : target + group] = hex_digits[:, source : source + group]
        target += group
        source += group
        if target - column < EVENT_ID_WIDTH:
            block[:, target] = ord("-")
            target += 1


def _put_zero_padded(block: np.ndarray, column: int, width: int, values: np.ndarray) -> None:
    remaining = values.astype(np.int64)
    for position in range(column + width - 1, column - 1, -1):
        block[:, position] = 48 + remaining % 10
        remaining //= 10


def _put_right_aligned(block: np.ndarray, column: int, width: int, values: np.ndarray, decimals: int) -> None:
    """Right-align integers (decimals=0) or tenths (decimals=1) with spaces, '-' for negatives."""
    negative = values < 0
    remaining = np.abs(values).astype(np.int64)
    position = column + width - 1
    block[:, column : column + width] = ord(" ")
    if decimals:
        block[:, position] = 48 + remaining % 10
        remaining //= 10
        block[:, position - 1] = ord(".")
        position -= 2
    digits = np.ones(values.shape[0], dtype=np.int64)
    scratch = remaining // 10
    while scratch.any():
        digits += scratch > 0
        scratch //= 10
    for k in range(int(digits.max())):
        present = digits > k
        block[present, position - k] = 48 + (remaining[present] // 10**k) % 10
    rows = np.nonzero(negative)[0]
    block[rows, position - digits[rows]] = ord("-")


def _variant_city(name: str, rnd: random.Random) -> str:
    casing = rnd.choice((str.upper, str.lower, lambda s: s.swapcase()))
    padding = rnd.choice((" ", "  ", "\t", " \t"))
    return rnd.choice((f"{padding}{casing(name)}", f"{casing(name)}{padding}", f"{padding}{name}{padding}"))


def _defective_line(kind: str, record: dict, rnd: random.Random) -> bytes:
    """The clean record with exactly one defect of `kind` applied, serialised as one line."""
    record = dict(record)
    record["location"] = dict(record["location"])
    if kind == "malformed_json":
        text = json.dumps(record, ensure_ascii=False)
        return text[: rnd.randint(1, len(text) - 1)].encode() + b"\n"
    if kind == "missing_device_id":
        if rnd.random() < 0.5:
            del record["device_id"]
        else:
            record["device_id"] = None
    elif kind == "unparseable_event_time":
        record["event_time"] = rnd.choice(("2026-13-45T99:61:00Z", "yesterday", "20/11/2026 13:45", "not-a-time"))
    elif kind == "missing_reading":
        reading = rnd.choice(("temperature_c", "humidity_pct"))
        if rnd.random() < 0.5:
            del record[reading]
        else:
            record[reading] = None
    elif kind == "non_numeric_reading":
        record[rnd.choice(("temperature_c", "humidity_pct"))] = rnd.choice(("N/A", "err", "--", "NaN", "21,4"))
    elif kind == "temperature_out_of_range":
        record["temperature_c"] = round(rnd.choice((rnd.uniform(85.1, 150), rnd.uniform(-90, -40.1))), 1)
    elif kind == "humidity_out_of_range":
        record["humidity_pct"] = round(rnd.choice((rnd.uniform(100.1, 140), rnd.uniform(-20, -0.1))), 1)
    elif kind == "battery_out_of_range":
        record["battery_pct"] = rnd.choice((rnd.randint(101, 255), rnd.randint(-5, -1)))
    elif kind == "invalid_coordinates":
        if rnd.random() < 0.5:
            record["location"]["lat"] = round(rnd.uniform(90.5, 200), 4) * rnd.choice((1, -1))
        else:
            record["location"]["lon"] = round(rnd.uniform(180.5, 400), 4) * rnd.choice((1, -1))
    elif kind == VARIANT_KIND:
        record["location"]["city"] = _variant_city(record["location"]["city"], rnd)
    else:
        raise ValueError(f"not a line defect: {kind}")
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


class ChunkGenerator:
    """Generates chunks of lines for one Bronze object: deterministic in (seed, object index)."""

    def __init__(self, seed: int, spec: EventSpec, fleet: Fleet) -> None:
        self.seed = seed
        self.spec = spec
        self.fleet = fleet
        self.layout = LineLayout(fleet.location_bytes.shape[1])
        self._device_digits = np.zeros((spec.devices, 6), dtype=np.uint8)
        _put_zero_padded(self._device_digits, 0, 6, np.arange(spec.devices))
        self._firmware_bytes = np.array([np.frombuffer(f.encode(), np.uint8) for f in FIRMWARES])
        rates = [spec.defect_rates.get(kind, 0.0) for kind in DEFECT_KINDS]
        self._kind_edges = np.cumsum(rates)

    @property
    def clean_line_bytes(self) -> int:
        return self.layout.width

    def chunk(self, rng: np.random.Generator, rows: int, window_start_ms: int, window_end_ms: int) -> Chunk:
        fleet, layout = self.fleet, self.layout
        device = rng.integers(0, self.spec.devices, rows)
        times = np.sort(rng.integers(window_start_ms, max(window_end_ms, window_start_ms + 1), rows))
        late = rng.random(rows) < LATE_EVENT_RATE
        times[late] -= rng.integers(MS_PER_DAY, LATE_EVENT_MAX_DAYS * MS_PER_DAY, int(late.sum()))

        days_elapsed = (times - self.spec.start_ms) / MS_PER_DAY
        local_hour = (times % MS_PER_DAY) / 3_600_000 + fleet.lon[device] / 15.0
        daily_cycle = np.sin(2 * np.pi * (local_hour - 9.0) / 24.0)
        city_mean = np.array([c.mean_temperature_c for c in CITIES])[fleet.city_index[device]]
        temperature = city_mean + fleet.temperature_bias[device] + 5.0 * daily_cycle + rng.normal(0, 0.8, rows)
        humidity = 60.0 - 12.0 * daily_cycle + rng.normal(0, 4.0, rows)
        temperature_tenths = np.clip(np.round(temperature * 10), -400, 850).astype(np.int64)
        humidity_tenths = np.clip(np.round(humidity * 10), 20, 990).astype(np.int64)
        battery = np.clip(
            np.round(fleet.battery_start[device] - fleet.battery_drain_per_day[device] * days_elapsed), 1, 100
        ).astype(np.int64)

        block = np.empty((rows, layout.width), dtype=np.uint8)
        block[:] = layout.template
        column, _ = layout.offsets["event_id"]
        id_bytes = np.frombuffer(rng.bytes(16 * rows), dtype=np.uint8).reshape(rows, 16)
        _put_uuid(block, column, id_bytes)
        column, width = layout.offsets["device"]
        block[:, column : column + width] = self._device_digits[device]
        column, width = layout.offsets["time"]
        time_text = np.datetime_as_string(times.astype("datetime64[ms]"), unit="ms").astype("S23")
        block[:, column : column + width] = time_text.view(np.uint8).reshape(rows, 23)
        column, width = layout.offsets["location"]
        block[:, column : column + width] = fleet.location_bytes[device]
        column, width = layout.offsets["temperature"]
        _put_right_aligned(block, column, width, temperature_tenths, decimals=1)
        column, width = layout.offsets["humidity"]
        _put_right_aligned(block, column, width, humidity_tenths, decimals=1)
        column, width = layout.offsets["battery"]
        _put_right_aligned(block, column, width, battery, decimals=0)
        column, width = layout.offsets["firmware"]
        block[:, column : column + width] = self._firmware_bytes[fleet.firmware_index[device]]

        kind_draw = np.searchsorted(self._kind_edges, rng.random(rows), side="right")
        special_rows = np.nonzero(kind_draw < len(DEFECT_KINDS))[0]
        counts = dict.fromkeys(DEFECT_KINDS, 0)
        if special_rows.size == 0:
            return Chunk(block.tobytes(), rows, counts)

        rnd = random.Random(int(rng.integers(0, 2**63)))
        flat = block.reshape(-1)
        width = layout.width
        pieces: list[bytes | memoryview] = []
        cursor = 0
        view = memoryview(flat)
        for row in special_rows.tolist():
            kind = DEFECT_KINDS[kind_draw[row]]
            counts[kind] += 1
            line = bytes(view[row * width : (row + 1) * width])
            if kind == DUPLICATE_KIND:
                pieces.append(view[cursor * width : (row + 1) * width])
                pieces.append(line)
            else:
                record = json.loads(line)
                pieces.append(view[cursor * width : row * width])
                pieces.append(_defective_line(kind, record, rnd))
            cursor = row + 1
        pieces.append(view[cursor * width :])
        return Chunk(b"".join(pieces), rows + counts[DUPLICATE_KIND], counts)
