"""Register blocks → sample columns, fast: one `struct` call per poll block.

`RegisterMap.decode_blocks` is the reference decoder (exact Decimal arithmetic, any block); it
costs ~0.5 ms per upload. Ingest decodes thousands of uploads per second, so `Codec` compiles
each of a model's poll blocks once into a struct format and a list of divisors and fills one
slice of the value vector per block. A test holds it equal to `decode_blocks` on random words.
Only uploads whose blocks match the model's poll blocks exactly are accepted.
"""

from __future__ import annotations

import array
import functools
import operator
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from psycopg import adapt, pq

from devices.registermap import RegisterMap

FLOAT4_OID, FLOAT4_ARRAY_OID = 700, 1021
_LITTLE_ENDIAN = sys.byteorder == "little"
_NULL_ELEMENT = struct.pack(">i", -1)


@functools.cache
def _length_pairs(n: int) -> array.array:
    """int32 pairs (4, _) in native order: the element lengths of a float4 array run."""
    return array.array("i", [4, 0] * n)


#: (sample column, register-map key, SQL type). The migration creates these columns in the
#: sample table (a test keeps table and tuple in step); every other numeric telemetry point
#: goes into the compact `vals` array. Energy counters are float8 so kWh deltas stay exact.
TYPED_POINTS: tuple[tuple[str, str, str], ...] = (
    ("run_status", "run_status", "integer"),
    ("pv_power", "pv_power", "real"),
    ("batt_power", "batt_power", "real"),
    ("grid_power", "abf_grid_power", "real"),
    ("load_power", "load_power", "real"),
    ("inv_power", "inv_active_power", "real"),
    ("batt_soc", "batt_soc", "real"),
    ("batt_soh", "batt_soh", "real"),
    ("batt_temp", "batt_temp", "real"),
    ("inv_temp", "temp_inverter", "real"),
    ("heatsink_temp", "temp_heatsink", "real"),
    ("internal_temp", "temp_internal", "real"),
    ("pv_energy_total", "pv_energy_total", "double precision"),
    ("charge_energy_total", "batt_charge_energy_total", "double precision"),
    ("discharge_energy_total", "batt_discharge_energy_total", "double precision"),
    ("import_energy_total", "grid_import_energy_total", "double precision"),
    ("export_energy_total", "grid_export_energy_total", "double precision"),
    ("load_energy_total", "load_energy_total", "double precision"),
)
TYPED_COLUMNS = tuple(c for c, _, _ in TYPED_POINTS)


class PackedArray(bytes):
    """An array already in PostgreSQL's binary format, for a binary COPY.

    psycopg's generic list dumper is Python code: ~75 µs for a 115-value float4[], more than
    decoding the upload, and a few µs even for an empty text[]. `Codec.pack_vals` builds the
    float4[] with `array`/`struct` in ~5 µs; `use_packed_arrays(cursor)` lets these bytes
    through when the COPY declares a float4[] or text[] column.
    """


#: The empty text[] (no active fault codes), in binary format: ndim 0, no nulls, oid text.
EMPTY_TEXT_ARRAY = PackedArray(struct.pack(">3i", 0, 0, 25))
TEXT_ARRAY_OID = 1009


class _PackedArrayDumper(adapt.Dumper):
    format = pq.Format.BINARY
    fallback: type[adapt.Dumper]

    def __init__(self, cls, context=None):
        super().__init__(cls, context)
        self._context = context

    def dump(self, obj):
        if isinstance(obj, PackedArray):
            return obj
        return self.fallback(type(obj), self._context).dump(obj)  # a plain list


def use_packed_arrays(context) -> None:
    """Register pass-through dumpers on a psycopg connection or cursor (idempotent).

    A cursor copies its connection's adapters when it is created, so a cursor opened before
    the connection learnt the dumpers needs its own registration.
    """
    if getattr(context, "_mc_packed_arrays", False):
        return
    for oid in (FLOAT4_ARRAY_OID, TEXT_ARRAY_OID):
        previous = context.adapters.get_dumper_by_oid(oid, pq.Format.BINARY)
        attrs = {"oid": oid, "fallback": previous}
        context.adapters.register_dumper(
            None, type(f"PackedArray{oid}", (_PackedArrayDumper,), attrs)
        )
    context._mc_packed_arrays = True


class BlockError(ValueError):
    """A block that does not match the model's poll blocks; the text says why."""


@dataclass(frozen=True)
class _BlockPlan:
    table: str
    start: int
    count: int
    pack: struct.Struct  # count big-endian words → bytes
    unpack: struct.Struct  # bytes → one value per numeric point
    lo: int  # slice of Codec.keys the block fills
    hi: int
    scaled: tuple[tuple[int, float], ...]  # (index in the unpacked values, divisor)
    swapped: tuple[tuple[int, bool], ...]  # little-word-order 32-bit values (index, signed)
    strings: tuple[tuple[str, int, int], ...]  # (key, word offset, word count)


@dataclass(slots=True)
class Decoded:
    """One inverter's upload as sample columns."""

    typed: list[Any]
    fault_codes: list[str] | None  # None: the fault words were not in this upload
    device_status: str | None
    vec: list[Any]  # every numeric key, for `Codec.present`
    strings: dict[str, str] = field(default_factory=dict)
    blocks: frozenset[tuple[str, int]] = frozenset()  # (table, start) of the uploaded blocks
    rest_slots: tuple[int, ...] = ()

    @property
    def vals(self) -> list[Any]:
        """The compact column's values, in the layout's key order."""
        vec = self.vec
        return [vec[s] for s in self.rest_slots]


class Codec:
    """Decoder for one inverter model, built once from its register map.

    `keys` are the map's numeric telemetry keys in `telemetry_keys()` order, so each poll
    block fills one contiguous slice of them; strings (serial number, model name) are only
    presented in the latest values, never stored per sample.
    """

    def __init__(self, rm: RegisterMap) -> None:
        self.rm = rm
        self.model = rm.model_name
        self.map_version = rm.spec.version
        points = [rm.point(k) for k in rm.telemetry_keys()]
        self.keys: list[str] = [p.key for p in points if p.type != "string"]
        slot = {k: i for i, k in enumerate(self.keys)}
        self.blocks: dict[tuple[str, int], _BlockPlan] = {}
        for block in rm.poll_blocks:
            inside = [
                p
                for p in points
                if p.table == block.table
                and block.start <= p.address
                and p.address + p.n_registers <= block.end
            ]
            self.blocks[(block.table, block.start)] = self._plan(block, inside, slot)
        self.typed_slots = [slot.get(key, -1) for _, key, _ in TYPED_POINTS]
        typed_keys = {key for _, key, _ in TYPED_POINTS}
        self.rest_keys = [k for k in self.keys if k not in typed_keys]
        self.rest_slots = tuple(slot[k] for k in self.rest_keys)
        self._rest_getter = operator.itemgetter(*self.rest_slots)
        self.fault_slots: list[tuple[int, dict[int, str]]] = []
        for p in rm.fault_words():
            if p.key in slot:
                bits = {
                    b: (c.code if (c := rm.fault_for_bit(p.key, b)) else f"{p.key}:bit{b}")
                    for b in range(16 * p.n_registers)
                }
                self.fault_slots.append((slot[p.key], bits))
        self.status_slot, self.status_by_raw = -1, {}
        for p in points:
            if p.enum and any(o.status for o in p.enum):
                self.status_slot = slot[p.key]
                self.status_by_raw = {o.value: o.status for o in p.enum if o.status}
                break
        self._presenters = [self._presenter(rm.point(k)) for k in self.keys]
        self._presenter_by_key = dict(zip(self.keys, self._presenters, strict=True))
        # Device information (serial, model, firmware …): blocks polled hourly or less often.
        self.info_blocks = frozenset(
            (b.table, b.start) for b in rm.poll_blocks if b.interval_s >= 3600
        )
        self.info_keys = frozenset(
            p.key
            for b in rm.poll_blocks
            if b.interval_s >= 3600
            for p in points
            if p.table == b.table and b.start <= p.address and p.address + p.n_registers <= b.end
        )
        self._array_layouts: dict[frozenset[int], tuple[struct.Struct, tuple]] = {}
        self.firmware_keys = {
            p.key: p.key.removesuffix("_version").upper()
            for p in points
            if p.group == "Firmware" and p.key in slot
        }

    @staticmethod
    def _plan(block, inside, slot) -> _BlockPlan:
        fmt, pos, n_values = [">"], 0, 0
        scaled, swapped, strings, slots = [], [], [], []
        for p in sorted(inside, key=lambda p: p.address):
            off = p.address - block.start
            if off > pos:
                fmt.append(f"{2 * (off - pos)}x")
            pos = off + p.n_registers
            if p.type == "string":
                fmt.append(f"{2 * p.n_registers}x")
                strings.append((p.key, off, p.n_registers))
                continue
            signed = p.type in ("s16", "s32")
            if p.n_registers == 1:
                fmt.append("h" if signed else "H")
            elif p.word_order == "little":
                fmt.append("I")
                swapped.append((n_values, signed))
            else:
                fmt.append("i" if signed else "I")
            if p.scale != 1 and p.enum is None and p.format is None:
                # Dividing by an exact integer gives the same float as the map's Decimal math
                # (scales above 1 divide by an inexact fraction; their presenter rounds).
                inverse = 1 / p.scale
                exact = abs(inverse - round(inverse)) < 1e-9
                scaled.append((n_values, float(round(inverse)) if exact else inverse))
            slots.append(slot[p.key])
            n_values += 1
        if block.count > pos:
            fmt.append(f"{2 * (block.count - pos)}x")
        lo = slots[0] if slots else 0
        if slots != list(range(lo, lo + len(slots))):
            raise ValueError(f"telemetry keys of block {block.start:#06x} are not contiguous")
        return _BlockPlan(
            table=block.table,
            start=block.start,
            count=block.count,
            pack=struct.Struct(f">{block.count}H"),
            unpack=struct.Struct("".join(fmt)),
            lo=lo,
            hi=lo + len(slots),
            scaled=tuple(scaled),
            swapped=tuple(swapped),
            strings=tuple(strings),
        )

    def decode(self, blocks: Iterable[Any]) -> Decoded:
        """Blocks (`protocol.Block`) → columns. Raises BlockError for a non-poll block."""
        vec: list[Any] = [None] * len(self.keys)
        strings: dict[str, str] = {}
        starts = []
        for b in blocks:
            plan = self.blocks.get((b.table, b.start))
            if plan is None or plan.count != len(b.registers):
                raise BlockError(
                    f"block {b.table} {b.start:#06x}+{len(b.registers)} is not a poll block "
                    f"of {self.model}"
                )
            starts.append((b.table, b.start))
            raw = plan.pack.pack(*b.registers)
            values = list(plan.unpack.unpack(raw))
            for i, signed in plan.swapped:
                v = values[i]
                v = ((v & 0xFFFF) << 16) | (v >> 16)
                values[i] = v - (1 << 32) if signed and v >= 1 << 31 else v
            for i, div in plan.scaled:  # a loop over the scaled few beats map() over all
                values[i] = values[i] / div
            vec[plan.lo : plan.hi] = values
            for key, off, n in plan.strings:
                text = raw[2 * off : 2 * (off + n)].split(b"\x00", 1)[0]
                strings[key] = text.decode("latin-1").rstrip(" ")
        faults: list[str] | None = None
        for s, bits in self.fault_slots:
            mask = vec[s]
            if mask is None:
                continue
            if faults is None:
                faults = []
            if mask:
                faults.extend(code for b, code in bits.items() if mask >> b & 1)
        status = None
        if self.status_slot >= 0 and vec[self.status_slot] is not None:
            status = self.status_by_raw.get(vec[self.status_slot])
        return Decoded(
            typed=[vec[s] if s >= 0 else None for s in self.typed_slots],
            fault_codes=faults,
            device_status=status,
            vec=vec,
            strings=strings,
            blocks=frozenset(starts),
            rest_slots=self.rest_slots,
        )

    def pack_vals(self, decoded: Decoded) -> PackedArray:
        """`decoded.vals` as binary float4[] (the keys of missing blocks are NULL).

        PostgreSQL's format is, per element, a 4-byte length then the big-endian float4.
        `array` converts a run of values to float4 in C; viewed as int32 they drop into
        the odd slots of a run of lengths, and one byteswap makes everything big-endian.
        Which elements are NULL depends only on the uploaded blocks, so the runs are worked
        out once per combination of blocks.
        """
        layout = self._array_layouts.get(decoded.blocks)
        if layout is None:
            layout = self._array_layouts[decoded.blocks] = self._array_layout(decoded.blocks)
        head, runs = layout
        values = self._rest_getter(decoded.vec)
        parts = [head]
        for lo, hi, present in runs:
            if present:
                pairs = array.array("i", _length_pairs(hi - lo))
                pairs[1::2] = array.array("i", array.array("f", values[lo:hi]).tobytes())
                if _LITTLE_ENDIAN:
                    pairs.byteswap()
                parts.append(pairs.tobytes())
            else:
                parts.append(_NULL_ELEMENT * (hi - lo))
        return PackedArray(b"".join(parts))

    def _array_layout(self, blocks: frozenset[tuple[str, int]]):
        """(array header, runs (lo, hi, present) over the positions of `vals`)."""
        present_slots: set[int] = set()
        for key, plan in self.blocks.items():
            if key in blocks:
                present_slots.update(range(plan.lo, plan.hi))
        runs: list[list] = []
        for i, s in enumerate(self.rest_slots):
            present = s in present_slots
            if runs and runs[-1][2] == present:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1, present])
        nulls = any(not present for _, _, present in runs)
        head = struct.pack(">5i", 1, int(nulls), FLOAT4_OID, len(self.rest_slots), 1)
        return head, [tuple(r) for r in runs]

    def present(self, decoded: Decoded) -> dict[str, Any]:
        """The values as `RegisterMap.decode_blocks` shows them (enum keys, versions, codes)."""
        out: dict[str, Any] = dict(decoded.strings)
        for key, value, show in zip(self.keys, decoded.vec, self._presenters, strict=True):
            if value is not None:
                out[key] = show(value)
        return out

    def present_raw(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Stored numbers by key (`Sample.values()`) → values as `present` shows them."""
        shown = self._presenter_by_key
        return {k: v if v is None or k not in shown else shown[k](v) for k, v in raw.items()}

    def device_info(self, decoded: Decoded) -> dict[str, Any] | None:
        """Presented values of the device-information blocks, when this upload has them."""
        if not decoded.blocks & self.info_blocks:
            return None
        return {k: v for k, v in self.present(decoded).items() if k in self.info_keys}

    def firmware(self, values: dict[str, Any]) -> dict[str, str] | None:
        """Firmware versions by type (DSP, LCD, ARC…) from presented values, if uploaded."""
        found = {kind: values[key] for key, kind in self.firmware_keys.items() if key in values}
        return found or None

    def _presenter(self, p):
        """How `decode_blocks` shows a point, from the float the vector holds."""
        rm = self.rm
        if p.type == "bits":
            if p.flags is not None:
                names = {f.bit: f.key for f in p.flags}
                return lambda m: [names.get(b, f"bit{b}") for b in range(32) if int(m) >> b & 1]
            return lambda m: [
                c.code if (c := rm.fault_for_bit(p.key, b)) else f"{p.key}:bit{b}"
                for b in range(16 * p.n_registers)
                if int(m) >> b & 1
            ]
        if p.enum is not None:
            keys = {o.value: o.key for o in p.enum}
            return lambda v: keys.get(v, int(v))
        if p.format == "version":
            return lambda v: f"{int(v) >> 8:02d}.{int(v) & 0xFF:02d}"
        if p.format == "hhmm":
            return _hhmm
        if p.scale >= 1 and float(p.scale).is_integer():
            return _whole  # the map shows whole numbers
        return float


def _whole(v: float) -> int:
    return int(round(v))


def _hhmm(v: float) -> str | int:
    h, m = divmod(int(v), 100)
    return f"{h:02d}:{m:02d}" if h < 24 and m < 60 else int(v)


@functools.cache
def codec_for_model(model: str) -> Codec:
    """The cached decoder for an inverter model (UnknownModelError if it has no map)."""
    return Codec(RegisterMap.for_model(model))
