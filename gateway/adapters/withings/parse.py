"""Withings Public API responses, forwarded as they came from Withings with the account id added.

Request body (`application/json`), one shape:

    {"userid": "<Withings userid>", "response": <a Withings API response, {"status": 0, "body"}>}

`userid` (string or integer) names whose data this is: Withings responses do not carry it. It may
instead be given as `response.body.userid`; if both are given they must agree. The subject is
`Identifier(WITHINGS_USER_SYSTEM, str(userid))`: clinics enrol the Withings userid under
`WITHINGS_USER_SYSTEM`.

The response kind is told by the shape of `response.body`:

- `measuregrps` (array): Measure - Getmeas. One reading per measure, except meastypes 9 and 10
  of a group, which become one blood-pressure reading. Groups of category 2 (objectives) are
  skipped; measures of attrib-1 groups (owner ambiguous) are rejected `ambiguous-owner`;
  meastypes without a gateway measure are rejected `unsupported-type` (see codes.py). Times are
  `date` in the response's IANA `timezone`.
- `series` (array of objects with `timestamp`): Heart v2 - List. Per entry a blood-pressure
  reading from `bloodpressure`, a heart-rate reading from `heart_rate`, and an `unsupported-type`
  rejection for an `ecg` recording. Times are `timestamp` in the entry's `timezone`.
- `series` (object keyed by epoch seconds): Measure v2 - Getintradayactivity. Per entry a
  step-count over [t, t + duration], heart-rate and oxygen-saturation (`spo2_auto`) points at t;
  entries with only `duration` are skipped. The response has no time zone: times are UTC with
  `offset_assumed`.

Where a time zone is missing or unknown, times are UTC with `offset_assumed`. A `status` other
than 0 is a Withings error, not readings: 400. Messages name JSON paths and what they must be,
never the values found there.

Devices: `deviceid`, else `hash_deviceid`, else "withings-manual" (getmeas: manual entries have
no device) or "withings-unknown" (Heart and intraday entries without a device id).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.adapters.withings.codes import (
    ATTRIB_AMBIGUOUS,
    CATEGORY_OBJECTIVE,
    CATEGORY_REAL,
    INTRADAY_METADATA_FIELDS,
    INTRADAY_UNSUPPORTED_FIELDS,
    MEASTYPES,
)
from gateway.errors import BadRequest
from gateway.models import (
    CandidateReading,
    DeviceInfo,
    Identifier,
    ParsedItem,
    ParseRejection,
    Quantity,
    RejectionCode,
)

WITHINGS_USER_SYSTEM = "https://developer.withings.com/userid"
MANUFACTURER = "Withings"
MANUAL_DEVICE = "withings-manual"
UNKNOWN_DEVICE = "withings-unknown"

MAX_ID_LENGTH = 256
MAX_ZONE_LENGTH = 64
# Withings exponents are small (-3..0 in every sample); the bound keeps 10**unit finite.
MAX_EXPONENT = 20
# Epoch seconds up to 9999-12-31T23:59:59Z, the largest time a datetime can hold.
MAX_EPOCH = 253_402_300_799

_ENVELOPE_FIELDS = frozenset({"userid", "response"})
_BLOOD_PRESSURE = "blood-pressure"
_PRESSURE_TYPES = frozenset(
    code for code, spec in MEASTYPES.items() if spec.measure == _BLOOD_PRESSURE
)


def parse_response(document: object) -> Iterator[ParsedItem]:
    """`{"userid", "response"}` as one item per Withings reading, in payload order."""
    response_body, subject = _envelope(document)
    return _items(response_body, subject)


# --- envelope and response kind -------------------------------------------------------------------


def _envelope(document: object) -> tuple[dict[str, object], Identifier]:
    if not isinstance(document, dict) or not document.keys() <= _ENVELOPE_FIELDS:
        raise BadRequest(
            'body must be a JSON object {"userid": ..., "response": <Withings API response>}'
        )
    response = document.get("response")
    if not isinstance(response, dict):
        raise BadRequest("response must be a Withings API response object")
    status = response.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        raise BadRequest("response.status must be an integer")
    if status != 0:
        # Withings reports errors in a 200 response with a non-zero status and no readings.
        raise BadRequest("response.status is not 0: a Withings error response has no readings")
    response_body = response.get("body")
    if not isinstance(response_body, dict):
        raise BadRequest("response.body must be a JSON object")

    userid = _userid(document.get("userid"), "userid")
    body_userid = _userid(response_body.get("userid"), "response.body.userid")
    if userid is None and body_userid is None:
        raise BadRequest("userid (or response.body.userid) is required: whose data this is")
    if userid is not None and body_userid is not None and userid != body_userid:
        raise BadRequest("userid and response.body.userid must be the same account")
    return response_body, Identifier(WITHINGS_USER_SYSTEM, userid or body_userid or "")


def _userid(raw: object, path: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return str(raw)
    if isinstance(raw, str) and 0 < len(raw) <= MAX_ID_LENGTH:
        return raw
    raise BadRequest(f"{path} must be a non-negative integer or a string of 1-{MAX_ID_LENGTH}")


def _items(response_body: dict[str, object], subject: Identifier) -> Iterator[ParsedItem]:
    if "measuregrps" in response_body:
        groups = response_body["measuregrps"]
        if not isinstance(groups, list):
            raise BadRequest("response.body.measuregrps must be an array")
        zone = _zone(response_body.get("timezone"))
        for index, group in enumerate(groups):
            yield from _group(group, f"response.body.measuregrps[{index}]", subject, zone)
        return
    series = response_body.get("series")
    if isinstance(series, list) and all(
        isinstance(entry, dict) and "timestamp" in entry for entry in series
    ):
        for index, entry in enumerate(series):
            yield from _heart_entry(entry, f"response.body.series[{index}]", subject)
        return
    if isinstance(series, dict) and all(_is_epoch_key(key) for key in series):
        for number, (key, entry) in enumerate(series.items()):
            yield from _intraday_entry(key, entry, number, subject)
        return
    raise BadRequest(
        "response.body must be a Withings Getmeas (measuregrps), Heart v2 list (series of "
        "entries with timestamp) or Getintradayactivity (series keyed by epoch seconds) body"
    )


# --- shape checks ---------------------------------------------------------------------------------


class _InvalidShape(Exception):
    def __init__(self, path: str, requirement: str) -> None:
        super().__init__(f"{path} {requirement}")
        self.message = f"{path} {requirement}"


def _rejection(invalid: _InvalidShape) -> ParseRejection:
    return ParseRejection(RejectionCode.INVALID_READING, invalid.message)


def _integer(raw: object, path: str, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise _InvalidShape(path, f"must be an integer between {low} and {high}")
    return raw


def _number(raw: object, path: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _InvalidShape(path, "must be a JSON number")
    return float(raw)


def _optional_string(raw: object, path: str) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > MAX_ID_LENGTH:
        raise _InvalidShape(path, f"must be a string of at most {MAX_ID_LENGTH} characters")
    return raw


def _model(raw: object, path: str) -> str | None:
    # Getmeas and intraday give the model name, Heart v2 a numeric model id.
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return _optional_string(raw, path)


def _device(holder: Mapping[str, object], path: str, fallback: str) -> DeviceInfo:
    device_id = _optional_string(holder.get("deviceid"), f"{path}.deviceid") or _optional_string(
        holder.get("hash_deviceid"), f"{path}.hash_deviceid"
    )
    return DeviceInfo(
        id=device_id or fallback,
        model=_model(holder.get("model"), f"{path}.model"),
        manufacturer=MANUFACTURER,
    )


def _zone(raw: object) -> tzinfo | None:
    """The IANA zone named by a Withings `timezone`, or None when missing or unknown."""
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_ZONE_LENGTH:
        return None
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: not a valid key (e.g. an absolute path); both mean "no usable zone".
        return None


def _moment(raw: object, path: str, zone: tzinfo | None) -> datetime:
    """Epoch seconds as a time with the offset `zone` has at that instant (UTC if no zone)."""
    seconds = _integer(raw, path, 0, MAX_EPOCH)
    local = datetime.fromtimestamp(seconds, tz=zone or UTC)
    # Pin the offset the zone had at that instant: the reading keeps it, not the zone rules.
    return local.astimezone(timezone(local.utcoffset() or timedelta(0)))


def _optional_moment(raw: object, path: str) -> datetime | None:
    return None if raw is None else _moment(raw, path, UTC)


# --- Measure - Getmeas ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Group:
    grpid: int
    attrib: int
    start: datetime
    vendor_time: datetime | None
    device: DeviceInfo
    measures: list[object]


def _group(
    raw: object, path: str, subject: Identifier, zone: tzinfo | None
) -> Iterator[ParsedItem]:
    try:
        group = _group_header(raw, path, zone)
    except _InvalidShape as invalid:
        # A group that cannot be read is one rejection per measure it holds: one item a reading.
        measures = raw.get("measures") if isinstance(raw, dict) else None
        count = len(measures) if isinstance(measures, list) and measures else 1
        yield from [_rejection(invalid)] * count
        return
    if group is None:
        return  # category 2: a goal the user set, not a measurement
    if group.attrib == ATTRIB_AMBIGUOUS:
        for _ in group.measures:
            yield ParseRejection(
                RejectionCode.AMBIGUOUS_OWNER,
                f"{path} has attrib 1: Withings could not tell which user this measure belongs to",
            )
        return
    yield from _group_readings(group, path, subject, offset_assumed=zone is None)


def _group_header(raw: object, path: str, zone: tzinfo | None) -> _Group | None:
    if not isinstance(raw, dict):
        raise _InvalidShape(path, "must be a JSON object")
    measures = raw.get("measures")
    if not isinstance(measures, list) or not measures:
        raise _InvalidShape(f"{path}.measures", "must be a non-empty array")
    category = _integer(raw.get("category"), f"{path}.category", 0, 2**31)
    if category == CATEGORY_OBJECTIVE:
        return None
    if category != CATEGORY_REAL:
        raise _InvalidShape(f"{path}.category", "must be 1 (measure) or 2 (objective)")
    return _Group(
        grpid=_integer(raw.get("grpid"), f"{path}.grpid", 0, 2**63),
        attrib=_integer(raw.get("attrib"), f"{path}.attrib", 0, 2**31),
        start=_moment(raw.get("date"), f"{path}.date", zone),
        vendor_time=_optional_moment(raw.get("created"), f"{path}.created"),
        device=_device(raw, path, MANUAL_DEVICE),
        measures=measures,
    )


def _group_readings(
    group: _Group, path: str, subject: Identifier, *, offset_assumed: bool
) -> Iterator[ParsedItem]:
    def reading(measure: str, quantities: dict[str, Quantity], record: str) -> CandidateReading:
        return CandidateReading(
            subject=subject,
            device=group.device,
            measure=measure,
            quantities=quantities,
            start=group.start,
            vendor_record_id=f"{group.grpid}:{record}",
            # Withings identifies a measure group by grpid (stable when the user edits it); with
            # the meastype (or the 9+10 pair) it names one reading.
            record_key=f"{group.grpid}:{record}",
            vendor_time=group.vendor_time,
            offset_assumed=offset_assumed,
        )

    # Meastypes 9 and 10 of one group are one blood-pressure reading, emitted where the first of
    # them stands (None marks the places of the pair in `items`).
    pressure = _PressurePair(path)
    items: list[ParsedItem | None] = []
    for index, entry in enumerate(group.measures):
        try:
            meastype, value = _measure(entry, f"{path}.measures[{index}]")
        except _InvalidShape as invalid:
            # `type` may be any JSON value here, unhashable ones included: compare, never hash.
            if isinstance(entry, dict) and any(entry.get("type") == t for t in _PRESSURE_TYPES):
                pressure.fail(index, invalid)
                items.append(None)
            else:
                items.append(_rejection(invalid))
            continue
        spec = MEASTYPES.get(meastype)
        if spec is None:
            items.append(
                ParseRejection(
                    RejectionCode.UNSUPPORTED_TYPE, f"Withings meastype {meastype} is not supported"
                )
            )
        elif spec.measure == _BLOOD_PRESSURE:
            pressure.add(index, meastype, spec.component, Quantity(value, spec.unit))
            items.append(None)
        else:
            quantity = Quantity(value, spec.unit)
            items.append(reading(spec.measure, {spec.component: quantity}, str(meastype)))

    for index, item in enumerate(items):
        if item is not None:
            yield item
        elif index == pressure.at:
            if pressure.problem is not None:
                yield _rejection(pressure.problem)
            else:
                yield reading(_BLOOD_PRESSURE, pressure.quantities, "9+10")


class _PressurePair:
    """The diastolic (9) and systolic (10) measures of one group, and where the pair stands."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.at: int | None = None
        self.quantities: dict[str, Quantity] = {}
        self.problem: _InvalidShape | None = None

    def add(self, index: int, meastype: int, component: str, quantity: Quantity) -> None:
        if component in self.quantities:
            self.fail(index, _InvalidShape(self.path, f"has more than one meastype {meastype}"))
        self.quantities[component] = quantity
        self.at = index if self.at is None else self.at

    def fail(self, index: int, problem: _InvalidShape) -> None:
        self.problem = self.problem or problem
        self.at = index if self.at is None else self.at


def _measure(raw: object, path: str) -> tuple[int, float]:
    if not isinstance(raw, dict):
        raise _InvalidShape(path, "must be a JSON object")
    meastype = _integer(raw.get("type"), f"{path}.type", 0, 2**31)
    # Withings sends integers: the decimal point is carried by `unit`, a power of ten.
    value = _integer(raw.get("value"), f"{path}.value", -(2**63), 2**63)
    unit = _integer(raw.get("unit"), f"{path}.unit", -MAX_EXPONENT, MAX_EXPONENT)
    # Decimal keeps 74126 x 10^-3 exactly 74.126 (a float product would give 74.12599999...).
    return meastype, float(Decimal(value).scaleb(unit))


# --- Heart v2 - List ------------------------------------------------------------------------------


def _heart_entry(entry: dict[str, object], path: str, subject: Identifier) -> Iterator[ParsedItem]:
    kinds = [key for key in ("bloodpressure", "heart_rate", "ecg") if entry.get(key) is not None]
    try:
        zone = _zone(entry.get("timezone"))
        start = _moment(entry.get("timestamp"), f"{path}.timestamp", zone)
        device = _device(entry, path, UNKNOWN_DEVICE)
        signal = _heart_signal(entry.get("ecg"), f"{path}.ecg")
    except _InvalidShape as invalid:
        for _ in kinds or [path]:
            yield _rejection(invalid)
        return

    def reading(measure: str, quantities: dict[str, Quantity], record: str) -> CandidateReading:
        return CandidateReading(
            subject=subject,
            device=device,
            measure=measure,
            quantities=quantities,
            start=start,
            vendor_record_id=None if signal is None else f"{signal}:{record}",
            offset_assumed=zone is None,
        )

    for kind in kinds:
        kind_path = f"{path}.{kind}"
        try:
            if kind == "bloodpressure":
                pressure = entry[kind]
                if not isinstance(pressure, dict):
                    raise _InvalidShape(kind_path, "must be a JSON object")
                # Heart v2 gives whole mmHg, no exponent.
                yield reading(
                    _BLOOD_PRESSURE,
                    {
                        "systolic": Quantity(
                            _number(pressure.get("systole"), f"{kind_path}.systole"), "mm[Hg]"
                        ),
                        "diastolic": Quantity(
                            _number(pressure.get("diastole"), f"{kind_path}.diastole"), "mm[Hg]"
                        ),
                    },
                    "bloodpressure",
                )
            elif kind == "heart_rate":
                rate = Quantity(_number(entry[kind], kind_path), "/min")
                yield reading("heart-rate", {"value": rate}, "heart_rate")
            else:
                yield ParseRejection(
                    RejectionCode.UNSUPPORTED_TYPE,
                    "Withings Heart ECG recordings (signal and afib result) are not supported",
                )
        except _InvalidShape as invalid:
            yield _rejection(invalid)
    if not kinds:
        yield ParseRejection(
            RejectionCode.INVALID_READING,
            f"{path} must have bloodpressure, heart_rate or ecg",
        )


def _heart_signal(raw: object, path: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _InvalidShape(path, "must be a JSON object")
    signal = raw.get("signalid")
    if signal is None:
        return None
    return str(_integer(signal, f"{path}.signalid", 0, 2**63))


# --- Measure v2 - Getintradayactivity -------------------------------------------------------------


def _is_epoch_key(key: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts e.g. superscripts, which int() refuses.
    return 0 < len(key) <= 12 and key.isascii() and key.isdigit()


def _intraday_entry(
    key: str, raw: object, number: int, subject: Identifier
) -> Iterator[ParsedItem]:
    # Keys are epoch seconds, the time of the entry; paths name the entry's position instead.
    path = f"response.body.series (entry {number})"
    if not isinstance(raw, dict):
        yield _rejection(_InvalidShape(path, "must be a JSON object"))
        return
    fields = [k for k, v in raw.items() if k not in INTRADAY_METADATA_FIELDS and v is not None]
    try:
        start = _moment(int(key), f"{path} key", None)  # digits only: see _is_epoch_key
        device = _device(raw, path, UNKNOWN_DEVICE)
    except _InvalidShape as invalid:
        for _ in fields:
            yield _rejection(invalid)
        return

    def reading(measure: str, quantity: Quantity, end: datetime | None) -> CandidateReading:
        return CandidateReading(
            subject=subject,
            device=device,
            measure=measure,
            quantities={"value": quantity},
            start=start,
            end=end,
            vendor_record_id=f"{key}:{measure}",
            offset_assumed=True,  # intraday responses carry no time zone
        )

    for name in fields:
        field_path = f"{path}.{name}"
        try:
            if name == "steps":
                duration = _integer(raw.get("duration"), f"{path}.duration", 1, 86_400)
                steps = Quantity(_number(raw[name], field_path), "{steps}")
                yield reading("step-count", steps, start + timedelta(seconds=duration))
            elif name == "heart_rate":
                yield reading("heart-rate", Quantity(_number(raw[name], field_path), "/min"), None)
            elif name == "spo2_auto":
                yield reading(
                    "oxygen-saturation", Quantity(_number(raw[name], field_path), "%"), None
                )
            elif name in INTRADAY_UNSUPPORTED_FIELDS:
                yield ParseRejection(
                    RejectionCode.UNSUPPORTED_TYPE,
                    f"Withings intraday field {name} is not supported",
                )
            else:
                yield ParseRejection(
                    RejectionCode.UNSUPPORTED_TYPE,
                    f"{path} has a field that is not a known Withings intraday field",
                )
        except _InvalidShape as invalid:
            yield _rejection(invalid)
