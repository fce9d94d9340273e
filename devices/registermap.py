"""Register maps: the only place in MatriCloud that knows Modbus register addresses.

Every inverter family is described by a YAML data file under ``devices/registermaps/``
(format: ``devices/registermaps/README.md``). This module loads those files, checks them
against a pydantic schema plus map-wide rules (no overlapping addresses, poll blocks that cover
all telemetry, fault bits that exist …) and turns register words into engineering values and
back. It needs no Modbus connection, so the ingest decoder, the Settings/Mode/Intelligent-load
pages and the simulator can all share it.

    rm = RegisterMap.for_model("ECH10K-TH-EU")
    rm.decode_blocks({("input", 0x0600): [512, 65526, 0, 85]})   # {"batt_voltage": 51.2, ...}
    rm.encode_write("tou_bat_from_grid_power", 3.5)               # (0x1030, [35])

Run ``python -m devices.registermap check`` to validate every shipped file.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import functools
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "FAULT_LEVELS",
    "MAP_DIR",
    "MAX_BLOCK_REGISTERS",
    "FIRMWARE_TYPE_NAMES",
    "FaultCatalog",
    "FaultCode",
    "FirmwareTransfer",
    "FirmwareTypeSpec",
    "Point",
    "PollBlock",
    "RawSegment",
    "RegisterMap",
    "RegisterMapError",
    "RegisterValueError",
    "UnknownModelError",
    "check_all",
    "format_address",
    "list_models",
    "load_fault_codes",
    "map_files",
    "parse_address",
]

#: Folder of the shipped map files, found relative to this module so it works from any cwd.
MAP_DIR = Path(__file__).resolve().parent / "registermaps"
#: Modbus allows at most 125 registers in one read (FC3/FC4).
MAX_BLOCK_REGISTERS = 125
#: Alarm levels of the guide's Table 4-1, most severe first.
FAULT_LEVELS: tuple[str, ...] = ("urgent", "important", "common", "prompt")

#: Inverter firmware types a map may list under `firmware_transfer.types`; the same names as
#: the portal's firmware types (upgrades.models.FirmwareType, without `gateway`).
FIRMWARE_TYPE_NAMES: tuple[str, ...] = (
    "lcd",
    "dsp",
    "slave_dsp",
    "trip_board",
    "exhmi",
    "arc",
    "senergy_master_dsp",
    "senergy_slave_dsp",
    "senergy_csb",
    "senergy_module",
)

MAP_SCHEMA = "matricloud.regmap/1"
FAULT_SCHEMA = "matricloud.faultcodes/1"

Table = Literal["input", "holding"]
PointType = Literal["u16", "s16", "u32", "s32", "string", "bits"]
WordOrder = Literal["big", "little"]
Access = Literal["read", "read_write"]
Origin = Literal["public", "guide", "reference"]
Level = Literal["urgent", "important", "common", "prompt"]
DeviceStatus = Literal["running", "standby", "fault", "off"]
ValueFormat = Literal["version", "hhmm"]
FaultKind = Literal["warn", "fault", "protect"]

_INT_LIMITS: dict[str, tuple[int, int]] = {
    "u16": (0, 0xFFFF),
    "s16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "s32": (-0x80000000, 0x7FFFFFFF),
}
_FIXED_COUNT = {"u16": 1, "s16": 1, "u32": 2, "s32": 2}
_CODE_PREFIX: dict[str, FaultKind] = {"Warn": "warn", "Fault": "fault", "Protect": "protect"}
_FMT_MAX_EXPONENT = 15  # numbers beyond 1e15 are written in scientific notation in messages
_BLOCK_MERGE_GAP = 16  # raw_block_layout() joins runs this close so block reads never hit a hole


class RegisterMapError(ValueError):
    """A map or fault-code file is invalid; the message names the file and the problem."""


class RegisterValueError(ValueError):
    """A value cannot be written; the message is worded for the person who typed it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class UnknownModelError(LookupError):
    """No shipped map lists the requested inverter model."""


# --------------------------------------------------------------------------------------------
# Addresses


def format_address(address: int) -> str:
    """Show a PDU address the way the vendor's Settings page does: ``[0X0700/1792]``."""
    return f"[0X{address:04X}/{address}]"


def parse_address(text: str | int) -> int:
    """Read ``0x0700``, ``0X0700``, ``1792`` or ``[0X0700/1792]`` as a PDU address."""
    if isinstance(text, bool):
        raise ValueError("an address must be a number such as 0x0700 or 1792")
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip().strip("[]").split("/")[0].strip()
        try:
            value = int(s, 16) if s.lower().startswith("0x") else int(s, 10)
        except ValueError:
            raise ValueError(f"{text!r} is not an address (write 0x0700 or 1792)") from None
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"address {value} is outside the Modbus range 0..65535")
    return value


# --------------------------------------------------------------------------------------------
# YAML loading: YAML 1.2-like scalars, so `on`/`off`/`no` stay strings, `22:00` is not a
# sexagesimal integer and `0600` is not octal. Only true/false are booleans.


class _Loader(yaml.SafeLoader):
    pass


_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _INT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT_TAG,
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0[xX][0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def _read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_Loader)  # noqa: S506 - safe loader subclass
    except OSError as exc:
        raise RegisterMapError(f"{path.name}: cannot read file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise RegisterMapError(f"{path.name}:{where} is not valid YAML: {problem}") from exc


# --------------------------------------------------------------------------------------------
# Schema (pydantic v2)


def _address(value: Any) -> int:
    return parse_address(value)


Address = Annotated[int, BeforeValidator(_address)]
SnakeKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Text = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnumOption(_Strict):
    """One choice of an enum point; ``key`` is stable, ``label`` is English (translated later)."""

    value: int
    key: SnakeKey
    label: Text
    status: DeviceStatus | None = None
    #: Writable points that belong to this choice (a mode's settings), written before it.
    parameters: tuple[SnakeKey, ...] = ()


class Flag(_Strict):
    """One named bit of a non-fault ``bits`` point (e.g. a weekday mask)."""

    bit: int = Field(ge=0, le=31)
    key: SnakeKey
    label: Text


class PointSpec(_Strict):
    """One register point as written in a map file, after file defaults are filled in."""

    key: SnakeKey
    name: Text
    group: Text
    table: Table
    address: Address
    type: PointType
    count: int | None = Field(default=None, ge=1, le=MAX_BLOCK_REGISTERS)
    word_order: WordOrder | None = None
    scale: float = Field(default=1, gt=0)
    unit: str = ""
    range: tuple[float, float] | None = None
    step: float | None = Field(default=None, gt=0)
    enum: list[EnumOption] | None = None
    flags: list[Flag] | None = None
    fault_word: FaultKind | None = None
    format: ValueFormat | None = None
    access: Access = "read"
    telemetry: bool = False
    origin: Origin = "reference"
    default: Any = None
    description: str = ""
    #: For maintainers: provenance and implementation notes; never shown to users.
    note: str = ""
    #: Writable points that every choice of this enum takes (see EnumOption.parameters).
    common_parameters: tuple[SnakeKey, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _fill_file_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        """Apply the file's `defaults:` so every point carries its resolved values."""
        if not isinstance(data, dict):
            return data
        ctx = (info.context or {}).get("defaults", {})
        data = dict(data)
        data.setdefault("origin", ctx.get("origin", "reference"))
        data.setdefault("telemetry", data.get("table") == "input")
        wide = data.get("type") in ("u32", "s32") or (
            data.get("type") == "bits" and data.get("count") == 2
        )
        if wide:
            data.setdefault("word_order", ctx.get("word_order", "big"))
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PointSpec:
        """Reject combinations of fields that cannot be decoded or written sensibly."""
        t = self.type
        if t in _FIXED_COUNT and self.count not in (None, _FIXED_COUNT[t]):
            raise ValueError(f"count must be {_FIXED_COUNT[t]} (or omitted) for type {t}")
        if t == "string" and self.count is None:
            raise ValueError("a string point needs count (number of registers, 2 chars each)")
        if t == "bits" and self.count not in (None, 1, 2):
            raise ValueError("a bits point has count 1 (16 bits) or 2 (32 bits)")
        if self.word_order is not None and self.n_registers != 2:
            raise ValueError("word_order only applies to 32-bit values (u32, s32, 2-word bits)")
        numeric = t in _INT_LIMITS
        if self.enum is not None:
            if not numeric:
                raise ValueError(f"enum options need an integer type, not {t}")
            if not self.enum:
                raise ValueError("enum needs at least one option")
            _unique([o.value for o in self.enum], "enum option value")
            _unique([o.key for o in self.enum], "enum option key")
            lo, hi = _INT_LIMITS[t]
            for o in self.enum:
                if not lo <= o.value <= hi:
                    raise ValueError(f"enum option {o.key} value {o.value} does not fit {t}")
        if self.format is not None and t != "u16":
            raise ValueError(f"format: {self.format} is only defined for u16 points")
        if (self.flags is not None or self.fault_word is not None) and t != "bits":
            raise ValueError("flags and fault_word are only allowed on bits points")
        if t == "bits" and (self.flags is None) == (self.fault_word is None):
            raise ValueError("a bits point needs exactly one of flags (named bits) or fault_word")
        if self.flags is not None:
            _unique([f.bit for f in self.flags], "flag bit")
            _unique([f.key for f in self.flags], "flag key")
            width = 16 * self.n_registers
            for f in self.flags:
                if f.bit >= width:
                    raise ValueError(f"flag {f.key} uses bit {f.bit} of a {width}-bit register")
        plain = numeric and self.enum is None and self.format is None
        if self.scale != 1 and not plain:
            raise ValueError("scale only applies to plain numeric points (no enum/format)")
        if (self.range is not None or self.step is not None) and not plain:
            raise ValueError("range and step only apply to plain numeric points")
        if self.range is not None:
            lo_v, hi_v = self.range
            if lo_v > hi_v:
                raise ValueError(f"range minimum {_fmt(lo_v)} is above its maximum {_fmt(hi_v)}")
            lo, hi = _INT_LIMITS[t]
            scale = _dec(self.scale)
            for bound in (lo_v, hi_v):
                raw = _dec(bound) / scale
                if not lo <= raw <= hi:
                    raise ValueError(
                        f"range bound {_fmt(bound)} is raw {_fmt(raw)} with scale "
                        f"{_fmt(self.scale)}, which does not fit {t} ({lo}..{hi})"
                    )
        if self.access == "read_write":
            if self.table != "holding":
                raise ValueError(
                    "access: read_write is only allowed on holding registers; "
                    "input registers cannot be written"
                )
            if self.fault_word is not None:
                raise ValueError("a fault word is reported by the inverter and cannot be written")
            if plain and self.range is None:
                raise ValueError("a writable numeric point needs range: [min, max]")
        return self

    @property
    def n_registers(self) -> int:
        """Registers the point occupies."""
        if self.type in _FIXED_COUNT:
            return _FIXED_COUNT[self.type]
        return self.count or 1

    @property
    def display_address(self) -> str:
        """``[0X0700/1792]``, as the Settings page shows it."""
        return format_address(self.address)

    @property
    def writable(self) -> bool:
        """Only read_write holding registers get a Write button."""
        return self.access == "read_write"

    @property
    def is_reference(self) -> bool:
        """True when the address is this project's reference layout, not a public fact."""
        return self.origin == "reference"

    @property
    def value_limits(self) -> tuple[Decimal, Decimal] | None:
        """The smallest and largest value a plain number register can hold (its type's
        limits times its scale); None for other points."""
        if self.type not in _INT_LIMITS or self.enum is not None or self.format:
            return None
        lo, hi = _INT_LIMITS[self.type]
        return lo * _dec(self.scale), hi * _dec(self.scale)


class PointOverride(_Strict):
    """Per-model changes to a point (limits and defaults that depend on the power class)."""

    range: tuple[float, float] | None = None
    step: float | None = Field(default=None, gt=0)
    default: Any = None
    description: str | None = None


class ModelSpec(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]*$")]
    rated_power_w: int = Field(gt=0)
    description: str = ""
    #: For maintainers: provenance and implementation notes; never shown to users.
    note: str = ""
    overrides: dict[str, PointOverride] = {}


class PollBlock(_Strict):
    """A contiguous register range a gateway reads and uploads raw (≤125 registers)."""

    table: Table
    start: Address
    count: int = Field(ge=1, le=MAX_BLOCK_REGISTERS)
    interval_s: int = Field(default=60, ge=1)

    @property
    def end(self) -> int:
        return self.start + self.count


class Constraint(_Strict):
    """A rule between two writable points (e.g. switch-on SOC above switch-off SOC)."""

    left: SnakeKey
    op: Literal["gt", "ge", "lt", "le", "ne"]
    right: SnakeKey
    message: Text


class SourceInfo(_Strict):
    public: list[Text]
    reference: Text


class MapDefaults(_Strict):
    word_order: WordOrder = "big"
    origin: Origin = "reference"
    device_id: int = Field(default=1, ge=1, le=247)


class FirmwareTypeEntry(_Strict):
    """One board that takes an image: its code in the type register and its version point."""

    code: int = Field(ge=1, le=0xFFFF)
    version_point: SnakeKey


class FirmwareTypeSpec(NamedTuple):
    """A firmware type the model has (``RegisterMap.firmware_types``)."""

    name: str  # as upgrades.models.FirmwareType: dsp, lcd, slave_dsp, arc, …
    code: int  # written to the transfer block's type register
    version_point: str  # the input point that shows the version the board runs


class FirmwareTransfer(_Strict):
    """The file-transfer block an image is written into over Modbus (FC16), in a fixed layout
    from two base addresses (docs/register-map-format.md#firmware-transfer):

    holding +0 command (1 begin, 2 install, 3 abort), +1 type code, +2..+3 image size (u32),
    +4 version (MM.mm), +5..+6 offset (u32), +7 length (bytes in the window), +8.. data window
    (`data_registers` words, two bytes each, high byte first); input +0 state, +1 error code,
    +2..+3 bytes received (u32).

    Offset, length and data follow each other so that one FC16 write (at most 123 registers)
    carries a piece of the image with its position.
    """

    holding: Address
    input: Address
    data_registers: int = Field(default=120, ge=1, le=120)
    types: dict[SnakeKey, FirmwareTypeEntry] = Field(min_length=1)

    # Commands, states and error codes of the block.
    BEGIN: ClassVar[int] = 1
    INSTALL: ClassVar[int] = 2
    ABORT: ClassVar[int] = 3
    IDLE: ClassVar[int] = 0
    RECEIVING: ClassVar[int] = 1
    INSTALLING: ClassVar[int] = 2
    DONE: ClassVar[int] = 3
    FAILED: ClassVar[int] = 4
    ERRORS: ClassVar[dict[int, str]] = {
        1: "unknown firmware type",
        2: "image size out of range",
        3: "offset out of sequence",
        4: "image incomplete",
        5: "image is for another model",
        6: "power lost during install",
        7: "transfer aborted",
        8: "no transfer in progress",
        9: "invalid version",
    }

    @property
    def command(self) -> int:
        return self.holding

    @property
    def type_code(self) -> int:
        return self.holding + 1

    @property
    def size(self) -> int:
        return self.holding + 2

    @property
    def version(self) -> int:
        return self.holding + 4

    @property
    def offset(self) -> int:
        return self.holding + 5

    @property
    def length(self) -> int:
        return self.holding + 7

    @property
    def data(self) -> int:
        return self.holding + 8

    @property
    def holding_registers(self) -> int:
        return 8 + self.data_registers

    @property
    def state(self) -> int:
        return self.input

    @property
    def error(self) -> int:
        return self.input + 1

    @property
    def received(self) -> int:
        return self.input + 2

    input_registers: ClassVar[int] = 4

    @property
    def window_bytes(self) -> int:
        return 2 * self.data_registers


class MapFile(_Strict):
    """The whole map file; map-wide rules are checked by RegisterMap."""

    schema_: Literal["matricloud.regmap/1"] = Field(alias="schema")
    vendor: Text
    family: Text
    version: Text
    phases: Literal[1, 3]
    mppt_count: int = Field(ge=1, le=8)
    models: list[ModelSpec] = Field(min_length=1)
    source: SourceInfo
    fault_codes: str = "fault-codes.yaml"
    defaults: MapDefaults = MapDefaults()
    groups: list[Text] = Field(min_length=1)
    poll_blocks: list[PollBlock] = Field(min_length=1)
    constraints: list[Constraint] = []
    firmware_transfer: FirmwareTransfer | None = None
    points: list[PointSpec] = Field(min_length=1)


class FaultCode(_Strict):
    """A Warn/Fault/Protect code and the fault-word bit that raises it."""

    code: Annotated[str, Field(pattern=r"^(Warn|Fault|Protect)\d{4}$")]
    level: Level
    text: Text
    word: SnakeKey
    bit: int = Field(ge=0, le=31)
    origin: Literal["guide", "reference"] = "reference"
    description: str = ""

    @property
    def kind(self) -> FaultKind:
        """warn, fault or protect, from the code's prefix."""
        return next(k for prefix, k in _CODE_PREFIX.items() if self.code.startswith(prefix))


class FaultCodesFile(_Strict):
    schema_: Literal["matricloud.faultcodes/1"] = Field(alias="schema")
    vendor: Text
    version: Text
    source: Text
    codes: list[FaultCode] = Field(min_length=1)

    @field_validator("codes")
    @classmethod
    def _unique_codes(cls, codes: list[FaultCode]) -> list[FaultCode]:
        _unique([c.code for c in codes], "fault code")
        _unique([f"{c.word} bit {c.bit}" for c in codes], "fault word bit")
        return codes


def _unique(values: Iterable[Any], what: str) -> None:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate {what} {v!r}")
        seen.add(v)


def _dec(x: Any) -> Decimal:
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


def _fmt(x: Any) -> str:
    d = _dec(x)
    if not d.is_finite() or abs(d.adjusted()) > _FMT_MAX_EXPONENT:
        return f"{d:g}"  # 1e+30: what was typed, without thirty zeros (or a quantize error)
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))
    return format(d.normalize(), "f")


def _pydantic_problems(exc: ValidationError, raw: Any) -> list[str]:
    """Turn pydantic errors into lines such as `points[12] (batt_soc) › range: ...`."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        parts: list[str] = []
        node = raw
        for i, item in enumerate(loc):
            if isinstance(item, int):
                parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
                node = node[item] if isinstance(node, list) and item < len(node) else None
                if isinstance(node, dict) and i <= 1:
                    label = node.get("key") or node.get("code") or node.get("name")
                    if isinstance(label, str):
                        parts[-1] += f" ({label})"
            else:
                parts.append("schema" if item == "schema_" else str(item))
                node = node.get(item) if isinstance(node, dict) else None
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{' › '.join(parts)}: {msg}" if parts else msg)
    return lines


def _fail(path: Path, problems: list[str]) -> RegisterMapError:
    if len(problems) == 1:
        return RegisterMapError(f"{path.name}: {problems[0]}")
    body = "\n".join(f"  - {p}" for p in problems)
    return RegisterMapError(f"{path.name}: {len(problems)} problems:\n{body}")


# --------------------------------------------------------------------------------------------
# Fault codes


class FaultCatalog:
    """All fault codes of one fault-code file, by code and by (word key, bit)."""

    def __init__(self, path: Path, spec: FaultCodesFile) -> None:
        self.path = path
        self.spec = spec
        self.by_code: dict[str, FaultCode] = {c.code: c for c in spec.codes}
        self.by_bit: dict[tuple[str, int], FaultCode] = {(c.word, c.bit): c for c in spec.codes}

    def __iter__(self):
        return iter(self.spec.codes)

    def __len__(self) -> int:
        return len(self.spec.codes)


def load_fault_codes(path: Path | str | None = None) -> FaultCatalog:
    """Load and schema-check a fault-code file (default: the shipped ``fault-codes.yaml``)."""
    p = Path(path) if path is not None else MAP_DIR / "fault-codes.yaml"
    raw = _read_yaml(p)
    if not isinstance(raw, dict):
        raise RegisterMapError(f"{p.name}: a fault-code file is a mapping with codes: [...]")
    try:
        spec = FaultCodesFile.model_validate(raw)
    except ValidationError as exc:
        raise _fail(p, _pydantic_problems(exc, raw)) from None
    return FaultCatalog(p, spec)


# --------------------------------------------------------------------------------------------
# Codec helpers (plain arithmetic, same results as pymodbus convert_*_registers)


def _words_to_uint(words: Sequence[int], word_order: str | None) -> int:
    if len(words) == 1:
        return words[0]
    hi, lo = (words[0], words[1]) if word_order != "little" else (words[1], words[0])
    return (hi << 16) | lo


def _uint_to_words(value: int, n: int, word_order: str | None) -> list[int]:
    if n == 1:
        return [value & 0xFFFF]
    hi, lo = (value >> 16) & 0xFFFF, value & 0xFFFF
    return [hi, lo] if word_order != "little" else [lo, hi]


def _to_signed(u: int, bits: int) -> int:
    return u - (1 << bits) if u >= 1 << (bits - 1) else u


Point = PointSpec  # the runtime point is the validated spec (frozen, resolved defaults)


class RawSegment(NamedTuple):
    """Contiguous registers starting at ``start`` for a simulator data block."""

    start: int
    values: list[int]


_HHMM = re.compile(r"^\s*(\d{1,2})\s*:\s*(\d{2})\s*$")
_VERSION = re.compile(r"^\s*(\d{1,3})\.(\d{1,3})\s*$")


class RegisterMap:
    """One inverter model's effective register map (file + that model's overrides)."""

    def __init__(
        self,
        path: Path,
        spec: MapFile,
        model: ModelSpec,
        points: list[PointSpec],
        faults: FaultCatalog,
    ) -> None:
        self.path = path
        self.spec = spec
        self.model = model
        self.faults = faults
        self.points: dict[str, PointSpec] = {p.key: p for p in points}
        self._by_table: dict[str, list[PointSpec]] = {"input": [], "holding": []}
        for p in sorted(points, key=lambda p: p.address):
            self._by_table[p.table].append(p)
        self._addresses = {t: [p.address for p in ps] for t, ps in self._by_table.items()}

    # ---- loading ---------------------------------------------------------------------------

    @classmethod
    def for_model(cls, model: str) -> RegisterMap:
        """The shipped map for an inverter model name such as ``ECH10K-TH-EU`` (cached)."""
        wanted = model.strip().upper()
        path = _model_index().get(wanted)
        if path is None:
            known = ", ".join(sorted(_model_index())) or "none"
            raise UnknownModelError(f"no register map for model {model!r} (known: {known})")
        return _load(path, wanted)

    @classmethod
    def from_file(
        cls, path: Path | str, model: str | None = None, fault_codes: Path | str | None = None
    ) -> RegisterMap:
        """Load and fully check one map file (first model unless ``model`` is given)."""
        p = Path(path)
        spec, raw = _parse_map(p)
        wanted = (model or spec.models[0].name).upper()
        for m in spec.models:
            if m.name == wanted:
                return _build(p, spec, raw, m, fault_codes)
        names = ", ".join(m.name for m in spec.models)
        raise UnknownModelError(f"{p.name} has no model {model!r} (it lists {names})")

    # ---- facts -----------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def rated_power_w(self) -> int:
        return self.model.rated_power_w

    @property
    def device_id(self) -> int:
        return self.spec.defaults.device_id

    @property
    def poll_blocks(self) -> list[PollBlock]:
        return list(self.spec.poll_blocks)

    @property
    def firmware_transfer(self) -> FirmwareTransfer | None:
        """The file-transfer block images are written into, or None if the model has none."""
        return self.spec.firmware_transfer

    @property
    def firmware_types(self) -> dict[str, FirmwareTypeSpec]:
        """The inverter firmware types this model takes, by name (dsp, lcd, …): what the
        portal may offer an upload or an upgrade task for. Empty without a transfer block."""
        block = self.spec.firmware_transfer
        if block is None:
            return {}
        return {
            name: FirmwareTypeSpec(name, entry.code, entry.version_point)
            for name, entry in block.types.items()
        }

    def __repr__(self) -> str:
        return f"<RegisterMap {self.model.name} {self.path.name} v{self.spec.version}>"

    # ---- queries ---------------------------------------------------------------------------

    def point(self, key: str) -> PointSpec:
        """The point with this key; KeyError names the key if it is unknown."""
        try:
            return self.points[key]
        except KeyError:
            raise KeyError(f"{self.model.name} has no register point {key!r}") from None

    def point_at(self, table: str, address: int) -> PointSpec | None:
        """The point that occupies a register (any of its words), if one does."""
        addrs = self._addresses.get(table, [])
        i = bisect.bisect_right(addrs, address) - 1
        if i >= 0:
            p = self._by_table[table][i]
            if address < p.address + p.n_registers:
                return p
        return None

    def groups(self) -> list[str]:
        """Group names in the file's display order, only those that have points."""
        used = {p.group for p in self.points.values()}
        return [g for g in self.spec.groups if g in used]

    def points_in_group(self, group: str) -> list[PointSpec]:
        """Points of a group (case-insensitive), in address order within each table."""
        g = group.strip().lower()
        return [p for p in self._ordered() if p.group.lower() == g]

    def holding_points(self) -> list[PointSpec]:
        return list(self._by_table["holding"])

    def writable_points(self) -> list[PointSpec]:
        return [p for p in self._ordered() if p.writable]

    def search(self, query: str, group: str | None = None) -> list[PointSpec]:
        """Quick search: every word must appear in key, name, group, description or address.

        Address words may be written ``0x0700``, ``0X700``, ``1792`` or ``[0X0700/1792]``; a
        point matches when that register lies inside it (so 0x0707 finds a u32 at 0x0706).
        """
        words = [w for w in re.split(r"\s+", query.strip()) if w]
        candidates = self.points_in_group(group) if group else self._ordered()
        return [p for p in candidates if all(self._matches(p, w) for w in words)]

    def _matches(self, p: PointSpec, word: str) -> bool:
        w = word.lower()
        hay = " ".join(
            (p.key, p.name, p.group, p.description, p.unit, format_address(p.address))
        ).lower()
        if w in hay:
            return True
        addr_text = w.strip("[]").split("/")[0]
        if re.fullmatch(r"0x[0-9a-f]{1,4}|\d{1,5}", addr_text):
            try:
                a = parse_address(addr_text)
            except ValueError:
                return False
            return p.address <= a < p.address + p.n_registers
        return False

    def telemetry_keys(self) -> list[str]:
        """Keys decoded from uploaded blocks (all covered by ``poll_blocks``)."""
        return [p.key for p in self._ordered() if p.telemetry]

    def polled_keys(self) -> set[str]:
        """Keys of every point that lies entirely inside a poll block."""
        out = set()
        for b in self.spec.poll_blocks:
            for p in self._by_table[b.table]:
                if b.start <= p.address and p.address + p.n_registers <= b.end:
                    out.add(p.key)
        return out

    def fault_code(self, code: str) -> FaultCode | None:
        return self.faults.by_code.get(code)

    def fault_for_bit(self, word_key: str, bit: int) -> FaultCode | None:
        return self.faults.by_bit.get((word_key, bit))

    def fault_words(self) -> list[PointSpec]:
        return [p for p in self._ordered() if p.fault_word is not None]

    def option(self, key: str, value: Any) -> EnumOption | None:
        """The enum option matching a raw value, option key or English label."""
        p = self.point(key)
        return _find_option(p, value)

    def option_parameters(self, key: str, option: str) -> tuple[str, ...] | None:
        """The points a choice of a writable enum takes (a mode's settings, then the
        enum's common ones), or None when ``option`` is not one of its keys."""
        p = self.point(key)
        for o in p.enum or ():
            if o.key == option:
                return o.parameters + tuple(k for k in p.common_parameters if k not in o.parameters)
        return None

    def device_status(self, values: Mapping[str, Any]) -> str | None:
        """running / standby / fault / off, from the enum option flagged with ``status``."""
        for p in self._ordered():
            if p.enum and any(o.status for o in p.enum) and p.key in values:
                opt = _find_option(p, values[p.key])
                if opt is not None and opt.status:
                    return opt.status
        return None

    def check_constraints(self, values: Mapping[str, Any]) -> list[str]:
        """Messages for every cross-field rule broken by ``values`` (both keys present)."""
        ops = {
            "gt": lambda a, b: a > b,
            "ge": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "le": lambda a, b: a <= b,
            "ne": lambda a, b: a != b,
        }
        out = []
        for c in self.spec.constraints:
            if c.left in values and c.right in values:
                a, b = values[c.left], values[c.right]
                try:
                    ok = ops[c.op](a, b)
                except TypeError:
                    ok = False
                if not ok:
                    out.append(c.message)
        return out

    def _ordered(self) -> list[PointSpec]:
        return self._by_table["input"] + self._by_table["holding"]

    # ---- decoding --------------------------------------------------------------------------

    def decode_point(self, key: str, registers: Sequence[int]) -> Any:
        """Engineering value of one point from exactly its registers."""
        p = self.point(key)
        if len(registers) != p.n_registers:
            raise ValueError(f"{p.name} needs {p.n_registers} register(s), got {len(registers)}")
        return self._decode(p, [_check_word(w) for w in registers])

    def decode_blocks(self, blocks: Mapping[tuple[str, int], Sequence[int]]) -> dict[str, Any]:
        """Decode every point lying entirely inside one of the raw blocks.

        ``blocks`` maps ``(table, start_address)`` to register words as the gateway uploaded
        them. Values are scaled; enums give option keys, bits give active codes/flag keys.
        """
        out: dict[str, Any] = {}
        for (table, start), words in blocks.items():
            if table not in self._by_table:
                raise ValueError(f"unknown register table {table!r} (use input or holding)")
            words = [_check_word(w) for w in words]
            start = parse_address(start)
            end = start + len(words)
            addrs = self._addresses[table]
            i = bisect.bisect_left(addrs, start)
            for p in self._by_table[table][i:]:
                if p.address >= end:
                    break
                if p.address + p.n_registers <= end:
                    off = p.address - start
                    out[p.key] = self._decode(p, words[off : off + p.n_registers])
        return out

    def _decode(self, p: PointSpec, words: list[int]) -> Any:
        if p.type == "string":
            data = b"".join(w.to_bytes(2, "big") for w in words)
            return data.split(b"\x00", 1)[0].decode("latin-1").rstrip(" ")
        u = _words_to_uint(words, p.word_order)
        if p.type == "bits":
            active = [b for b in range(16 * p.n_registers) if u >> b & 1]
            if p.flags is not None:
                names = {f.bit: f.key for f in p.flags}
                return [names.get(b, f"bit{b}") for b in active]
            return [
                c.code if (c := self.faults.by_bit.get((p.key, b))) else f"{p.key}:bit{b}"
                for b in active
            ]
        raw = _to_signed(u, 16 * p.n_registers) if p.type.startswith("s") else u
        if p.enum is not None:
            opt = next((o for o in p.enum if o.value == raw), None)
            return opt.key if opt else raw
        if p.format == "version":
            return f"{raw >> 8:02d}.{raw & 0xFF:02d}"
        if p.format == "hhmm":
            h, m = divmod(raw, 100)
            return f"{h:02d}:{m:02d}" if h < 24 and m < 60 else raw
        value = Decimal(raw) * _dec(p.scale)
        if value == value.to_integral_value() and _dec(p.scale) >= 1:
            return int(value)
        return float(value)

    # ---- encoding --------------------------------------------------------------------------

    def encode_write(self, key: str, value: Any) -> tuple[int, list[int]]:
        """Check a user's value for a holding register and give ``(address, words)`` to write.

        Raises RegisterValueError with a sentence for the user when the point cannot be
        written or the value is out of range, off-step, unknown or does not fit.
        """
        p = self.point(key)
        if p.table != "holding":
            raise RegisterValueError(
                key,
                f"{p.name} {format_address(p.address)} is an input register and cannot be "
                "written; only holding registers can be written.",
            )
        if not p.writable:
            raise RegisterValueError(key, f"{p.name} is read-only and cannot be written.")
        return p.address, self._encode(p, value)

    def encode_value(self, key: str, value: Any) -> list[int]:
        """Registers for a value of any point, writable or not (for the simulator)."""
        return self._encode(self.point(key), value)

    def _encode(self, p: PointSpec, value: Any) -> list[int]:
        err = functools.partial(RegisterValueError, p.key)
        n = p.n_registers
        if p.type == "string":
            if not isinstance(value, str):
                raise err(f"{p.name} must be text.")
            if not value.isascii() or "\x00" in value:
                raise err(f"{p.name} may only contain plain ASCII characters.")
            if len(value) > 2 * n:
                raise err(f"{p.name} is at most {2 * n} characters long.")
            data = value.encode("ascii").ljust(2 * n, b"\x00")
            return [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * n, 2)]
        if p.type == "bits":
            return _uint_to_words(self._bits_mask(p, value), n, p.word_order)
        if p.enum is not None:
            opt = _find_option(p, value)
            if opt is None:
                choices = ", ".join(f"{o.label} ({o.key})" for o in p.enum)
                raise err(f"{value!r} is not an option of {p.name}; choose one of: {choices}.")
            raw = opt.value
        elif p.format == "hhmm":
            raw = _parse_hhmm(p, value)
        elif p.format == "version":
            raw = _parse_version(p, value)
        else:
            raw = self._numeric_raw(p, value)
        lo, hi = _INT_LIMITS[p.type]
        if not lo <= raw <= hi:
            raise err(f"{p.name}: {value} does not fit the register (type {p.type}).")
        u = raw & ((1 << (16 * n)) - 1)
        return _uint_to_words(u, n, p.word_order)

    def _numeric_raw(self, p: PointSpec, value: Any) -> int:
        err = functools.partial(RegisterValueError, p.key)
        unit = f" {p.unit}" if p.unit else ""
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
            raise err(f"{p.name} must be a number.")
        try:
            v = _dec(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise err(f"{p.name}: {value!r} is not a number.") from None
        if not v.is_finite():
            raise err(f"{p.name} must be a finite number.")
        lo_c, hi_c = p.value_limits or (Decimal("-1e18"), Decimal("1e18"))
        if p.range is None and not lo_c <= v <= hi_c:
            # Before any arithmetic: 1e9999 would overflow the decimal context below.
            raise err(
                f"{p.name}: {_fmt(v)}{unit} does not fit the register "
                f"({p.type} holds {_fmt(lo_c)} to {_fmt(hi_c)}{unit})."
            )
        if p.range is not None:
            lo_v, hi_v = _dec(p.range[0]), _dec(p.range[1])
            if not lo_v <= v <= hi_v:
                raise err(
                    f"{p.name}: {_fmt(v)}{unit} is out of range; "
                    f"enter a value from {_fmt(lo_v)} to {_fmt(hi_v)}{unit}."
                )
        if p.step is not None:
            base = _dec(p.range[0]) if p.range is not None else Decimal(0)
            if (v - base) % _dec(p.step) != 0:
                raise err(
                    f"{p.name}: {_fmt(v)}{unit} is not a multiple of the step "
                    f"{_fmt(p.step)}{unit} (counted from {_fmt(base)})."
                )
        raw = v / _dec(p.scale)
        if raw != raw.to_integral_value():
            raise err(
                f"{p.name}: {_fmt(v)}{unit} is finer than the register resolution "
                f"({_fmt(p.scale)}{unit})."
            )
        raw_i = int(raw)
        lo, hi = _INT_LIMITS[p.type]
        if not lo <= raw_i <= hi:
            raise err(
                f"{p.name}: {_fmt(v)}{unit} does not fit the register "
                f"({p.type} holds {_fmt(lo * _dec(p.scale))} to {_fmt(hi * _dec(p.scale))}{unit})."
            )
        return raw_i

    def _bits_mask(self, p: PointSpec, value: Any) -> int:
        err = functools.partial(RegisterValueError, p.key)
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < 1 << (16 * p.n_registers):
                raise err(f"{p.name}: bit mask {value} does not fit the register.")
            return value
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise err(f"{p.name} takes a list of names.")
        mask = 0
        for item in value:
            if p.flags is not None:
                flag = next((f for f in p.flags if item in (f.key, f.label)), None)
                if flag is None:
                    names = ", ".join(f.key for f in p.flags)
                    raise err(f"{item!r} is not a choice of {p.name}; choose from: {names}.")
                mask |= 1 << flag.bit
            else:
                code = self.faults.by_code.get(item)
                if code is None or code.word != p.key:
                    raise err(f"{item!r} is not a fault code of {p.name}.")
                mask |= 1 << code.bit
        return mask

    # ---- simulator -------------------------------------------------------------------------

    def default_value(self, key: str) -> Any:
        """The value a fresh simulator serves: the file's ``default`` or a neutral value."""
        p = self.point(key)
        if p.default is not None:
            return p.default
        if p.type == "string":
            return ""
        if p.type == "bits":
            return []
        if p.enum is not None:
            return p.enum[0].key
        if p.format == "hhmm":
            return "00:00"
        if p.format == "version":
            return "00.00"
        if p.range is not None and not p.range[0] <= 0 <= p.range[1]:
            return p.range[0]
        return 0

    def raw_block_layout(self) -> dict[str, list[RawSegment]]:
        """Register images per table for a simulator: defaults of every point, zeros in holes.

        Poll blocks are always fully served; runs closer than 16 registers are joined so a
        block read never hits an unmapped address.
        """
        layout: dict[str, list[RawSegment]] = {}
        for table, points in self._by_table.items():
            regs: dict[int, int] = {}
            for b in self.spec.poll_blocks:
                if b.table == table:
                    regs.update({a: 0 for a in range(b.start, b.end)})
            for p in points:
                for i, w in enumerate(self._encode(p, self.default_value(p.key))):
                    regs[p.address + i] = w
            for start, count in self._transfer_ranges().get(table, ()):
                regs.update({a: 0 for a in range(start, start + count)})
            segments: list[RawSegment] = []
            for a in sorted(regs):
                if segments and a - (segments[-1].start + len(segments[-1].values)) <= (
                    _BLOCK_MERGE_GAP
                ):
                    seg = segments[-1]
                    seg.values.extend([0] * (a - seg.start - len(seg.values)))
                    seg.values.append(regs[a])
                else:
                    segments.append(RawSegment(a, [regs[a]]))
            layout[table] = segments
        return layout

    def _transfer_ranges(self) -> dict[str, list[tuple[int, int]]]:
        block = self.spec.firmware_transfer
        if block is None:
            return {}
        return {
            "holding": [(block.holding, block.holding_registers)],
            "input": [(block.input, block.input_registers)],
        }

    def summary(self) -> str:
        """One line for the check command."""
        telemetry = len(self.telemetry_keys())
        holding = len(self._by_table["holding"])
        return (
            f"{self.path.name} {self.model.name} v{self.spec.version}: "
            f"{len(self.points)} points, {telemetry} telemetry, {holding} holding, "
            f"{len(self.spec.poll_blocks)} poll blocks, {len(self.faults)} fault codes"
        )


def _check_word(w: Any) -> int:
    if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 0xFFFF:
        raise ValueError(f"register word {w!r} is not an integer 0..65535")
    return w


def _find_option(p: PointSpec, value: Any) -> EnumOption | None:
    if p.enum is None or isinstance(value, bool):
        return None
    for o in p.enum:
        if isinstance(value, int) and value == o.value:
            return o
        if isinstance(value, str) and value.strip().lower() in (o.key, o.label.lower()):
            return o
    return None


def _parse_hhmm(p: PointSpec, value: Any) -> int:
    if isinstance(value, dt.time):
        return value.hour * 100 + value.minute
    m = _HHMM.match(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise RegisterValueError(p.key, f"{p.name}: enter a time of day as HH:MM (00:00-23:59).")
    return int(m.group(1)) * 100 + int(m.group(2))


def _parse_version(p: PointSpec, value: Any) -> int:
    m = _VERSION.match(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) > 255 or int(m.group(2)) > 99:
        raise RegisterValueError(p.key, f"{p.name}: write a version as MM.mm, e.g. 00.19.")
    return int(m.group(1)) << 8 | int(m.group(2))


# --------------------------------------------------------------------------------------------
# Building and checking a map


def _parse_map(path: Path) -> tuple[MapFile, dict[str, Any]]:
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise RegisterMapError(f"{path.name}: a map file is a mapping (schema, points, ...)")
    ctx = {"defaults": raw.get("defaults") if isinstance(raw.get("defaults"), dict) else {}}
    try:
        spec = MapFile.model_validate(raw, context=ctx)
    except ValidationError as exc:
        raise _fail(path, _pydantic_problems(exc, raw)) from None
    return spec, raw


def _build(
    path: Path,
    spec: MapFile,
    raw: dict[str, Any],
    model: ModelSpec,
    fault_codes: Path | str | None = None,
) -> RegisterMap:
    problems: list[str] = []
    ctx = {"defaults": spec.defaults.model_dump()}
    raw_points = {p.get("key"): p for p in raw["points"]}
    points = list(spec.points)
    keys = [p.key for p in points]

    seen: set[str] = set()
    for k in keys:
        if k in seen:
            problems.append(f"duplicate key {k!r}: every point needs its own key")
        seen.add(k)

    # per-model overrides: re-validate the point with the override applied
    for key, ov in model.overrides.items():
        if key not in seen:
            problems.append(f"models › {model.name} › overrides: unknown point key {key!r}")
            continue
        merged = {**raw_points[key], **ov.model_dump(exclude_unset=True)}
        try:
            new = PointSpec.model_validate(merged, context=ctx)
        except ValidationError as exc:
            for line in _pydantic_problems(exc, merged):
                problems.append(f"models › {model.name} › overrides › {key}: {line}")
            continue
        points = [new if p.key == key else p for p in points]

    groups = set(spec.groups)
    for p in points:
        if p.group not in groups:
            problems.append(
                f"point {p.key}: group {p.group!r} is not listed in groups: "
                f"({', '.join(spec.groups)})"
            )
        if p.address + p.n_registers > 0x10000:
            problems.append(f"point {p.key}: runs past the last Modbus address 0xFFFF")

    for table in ("input", "holding"):
        ps = sorted((p for p in points if p.table == table), key=lambda p: p.address)
        for a, b in zip(ps, ps[1:], strict=False):
            if a.address + a.n_registers > b.address:
                problems.append(
                    f"address overlap in {table} registers: {a.key} "
                    f"{format_address(a.address)} ({a.n_registers} register(s)) overlaps "
                    f"{b.key} {format_address(b.address)}"
                )

    blocks = sorted(spec.poll_blocks, key=lambda b: (b.table, b.start))
    for a, b in zip(blocks, blocks[1:], strict=False):
        if a.table == b.table and a.end > b.start:
            problems.append(
                f"poll blocks overlap in {a.table}: {format_address(a.start)}+{a.count} "
                f"and {format_address(b.start)}"
            )
    for p in points:
        if p.telemetry and not any(
            b.table == p.table and b.start <= p.address and p.address + p.n_registers <= b.end
            for b in spec.poll_blocks
        ):
            problems.append(
                f"telemetry point {p.key} {format_address(p.address)} is not inside any "
                f"{p.table} poll block"
            )

    by_key = {p.key: p for p in points}
    for c in spec.constraints:
        for k in (c.left, c.right):
            if k not in by_key:
                problems.append(f"constraints: unknown point key {k!r}")
    for p in points:
        refs = list(p.common_parameters) + [k for o in p.enum or () for k in o.parameters]
        if refs and (p.enum is None or p.access != "read_write"):
            problems.append(f"{p.key}: parameters belong to the options of a writable enum")
        for k in refs:
            if k not in by_key or by_key[k].access != "read_write":
                problems.append(f"{p.key}: parameter {k!r} is not a writable point of this map")

    problems += _check_firmware_transfer(spec, points, by_key)

    fault_path = Path(fault_codes) if fault_codes else path.parent / spec.fault_codes
    try:
        faults = load_fault_codes(fault_path.resolve())
    except RegisterMapError as exc:
        problems.append(f"fault codes: {exc}")
        faults = None
    if faults is not None:
        for c in faults:
            word = by_key.get(c.word)
            if word is None or word.fault_word is None:
                problems.append(
                    f"fault code {c.code} refers to {c.word!r} bit {c.bit}, but this map has "
                    "no fault word with that key (unknown fault bit)"
                )
            elif c.bit >= 16 * word.n_registers:
                problems.append(
                    f"fault code {c.code} refers to bit {c.bit} of {c.word}, which has only "
                    f"{16 * word.n_registers} bits (unknown fault bit)"
                )
            elif c.kind != word.fault_word:
                problems.append(
                    f"fault code {c.code} is a {c.kind} code but {c.word} is a "
                    f"{word.fault_word} word"
                )

    if problems:
        raise _fail(path, problems)
    assert faults is not None
    rm = RegisterMap(path, spec, model, points, faults)
    for p in points:  # a default must be writable into its own register
        try:
            rm._encode(p, rm.default_value(p.key))
        except RegisterValueError as exc:
            problems.append(f"point {p.key}: default {p.default!r} is invalid: {exc.message}")
    if problems:
        raise _fail(path, problems)
    return rm


def _check_firmware_transfer(
    spec: MapFile, points: list[PointSpec], by_key: dict[str, PointSpec]
) -> list[str]:
    """The transfer block lies on free registers and names real version points."""
    block = spec.firmware_transfer
    if block is None:
        return []
    problems = []
    where = "firmware_transfer"
    for table, start, count in (
        ("holding", block.holding, block.holding_registers),
        ("input", block.input, block.input_registers),
    ):
        if start + count > 0x10000:
            problems.append(f"{where}: the {table} block runs past address 0xFFFF")
        for p in points:
            if p.table == table and p.address < start + count and start < p.address + p.n_registers:
                problems.append(
                    f"{where}: the {table} block {format_address(start)}+{count} overlaps "
                    f"point {p.key} {format_address(p.address)}"
                )
        for b in spec.poll_blocks:
            if b.table == table and b.start < start + count and start < b.end:
                problems.append(f"{where}: the {table} block lies inside a poll block")
    codes: set[int] = set()
    for name, entry in block.types.items():
        if name not in FIRMWARE_TYPE_NAMES:
            problems.append(
                f"{where} › types: {name!r} is not a firmware type "
                f"({', '.join(FIRMWARE_TYPE_NAMES)})"
            )
        if entry.code in codes:
            problems.append(f"{where} › types › {name}: duplicate code {entry.code}")
        codes.add(entry.code)
        p = by_key.get(entry.version_point)
        if p is None or p.table != "input" or p.format != "version":
            problems.append(
                f"{where} › types › {name}: version_point {entry.version_point!r} is not an "
                "input point with format: version"
            )
    return problems


def map_files(folder: Path | None = None) -> list[Path]:
    """Register-map files (not the fault-code file) in the shipped folder."""
    d = folder or MAP_DIR
    out = []
    for p in sorted(d.glob("*.yaml")):
        raw = _read_yaml(p)
        if isinstance(raw, dict) and raw.get("schema") == MAP_SCHEMA:
            out.append(p)
    return out


@functools.lru_cache(maxsize=1)
def _model_index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in map_files():
        raw = _read_yaml(path)
        for m in raw.get("models") or []:
            if isinstance(m, dict) and isinstance(m.get("name"), str):
                index[m["name"].upper()] = path
    return index


@functools.cache
def _load(path: Path, model: str) -> RegisterMap:
    return RegisterMap.from_file(path, model)


def list_models() -> list[str]:
    """Every inverter model that has a shipped register map."""
    return sorted(_model_index())


def check_all(folder: Path | None = None) -> list[str]:
    """Validate every map (every model) in a folder; return one summary line per model."""
    lines = []
    for path in map_files(folder):
        spec, _ = _parse_map(path)
        for m in spec.models:
            lines.append(RegisterMap.from_file(path, m.name).summary())
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devices.registermap", description="Register-map tools."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate map files and print a summary per model")
    check.add_argument("files", nargs="*", type=Path, help="map files (default: all shipped)")
    args = parser.parse_args(argv)
    try:
        if args.files:
            lines = []
            for f in args.files:
                spec, _ = _parse_map(f)
                lines += [RegisterMap.from_file(f, m.name).summary() for m in spec.models]
        else:
            lines = check_all()
    except (RegisterMapError, UnknownModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def display_value(rm: RegisterMap, key: str, value: Any) -> str:
    """A value as the Settings page shows it: option labels, flag labels, number and unit."""
    p = rm.point(key)
    if p.enum is not None:
        opt = rm.option(key, value)
        return opt.label if opt else str(value)
    if p.flags is not None and isinstance(value, list | tuple):
        labels = {f.key: f.label for f in p.flags}
        return ", ".join(labels.get(v, str(v)) for v in value) or "–"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "–"
    return f"{value} {p.unit}".strip()
