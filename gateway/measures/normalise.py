from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from gateway.devices import describe
from gateway.lexical import is_fhir_string
from gateway.measures.table import MAX_RATE_PER_MINUTE, MEASURES
from gateway.models import (
    CandidateReading,
    ComponentSpec,
    Interpretation,
    Measure,
    MeasuredValue,
    Quantity,
    Reading,
    Rejection,
    RejectionCode,
    ValueRange,
)

# FHIR dateTime/instant allow offsets -14:00..+14:00 in whole minutes
# (http://hl7.org/fhir/R4/datatypes.html#dateTime).
_MAX_OFFSET = timedelta(hours=14)
# No wearable reading predates this; earlier times are typing or clock errors, and times near
# year 1 cannot even be converted to UTC.
EARLIEST_READING = datetime(1900, 1, 1, tzinfo=UTC)
_DECIMALS = 6


def normalise(
    candidate: CandidateReading,
    *,
    now: datetime,
    max_future_skew: timedelta = timedelta(minutes=5),
    measures: Mapping[str, Measure] = MEASURES,
) -> Reading | Rejection:
    """Validate a candidate reading and convert it to canonical UCUM units.

    Pure: the same candidate and `now` always give the same result. Rejection messages name
    measures, components, units and bounds, never a payload value or identifier.
    """
    measure = _measure(candidate, measures)
    if isinstance(measure, Rejection):
        return measure

    values = _measured_values(measure, candidate.quantities)
    if isinstance(values, Rejection):
        return values

    times = _times(measure, candidate, now=now, max_future_skew=max_future_skew)
    if isinstance(times, Rejection):
        return times
    start, end = times

    if (rejection := _check_rate(measure, values, start, end)) is not None:
        return rejection
    if (rejection := _check_blood_pressure(measure, values)) is not None:
        return rejection

    return Reading(
        subject=candidate.subject,
        # Past this point a device's model and maker are values of a closed table,
        # never the payload's free text.
        device=describe(candidate.device),
        measure=measure,
        values=values,
        start=start,
        end=end,
        vendor_record_id=candidate.vendor_record_id,
        vendor_time=candidate.vendor_time,
        offset_assumed=candidate.offset_assumed,
        declared_zone=candidate.declared_zone,
        statistic=candidate.statistic,
        record_key=candidate.record_key,
        record_version=candidate.record_version,
    )


def _measure(candidate: CandidateReading, measures: Mapping[str, Measure]) -> Measure | Rejection:
    if (field := _control_character_field(candidate)) is not None:
        return Rejection(RejectionCode.INVALID_READING, f"{field} contains a control character")
    measure = measures.get(candidate.measure)
    if measure is None:
        return Rejection(
            RejectionCode.UNSUPPORTED_TYPE,
            f"measure type is not supported; supported types: {', '.join(measures)}",
        )
    return measure


# The text fields of a candidate reading, from any adapter, in the order `_texts` returns them.
_TEXT_FIELDS = (
    "subject.system",
    "subject.value",
    "device.id",
    "device.model",
    "device.manufacturer",
    "type",
    "record id",
    "zone",
    "statistic",
    "record key",
)


def _texts(candidate: CandidateReading) -> tuple[str | None, ...]:
    device = candidate.device
    return (
        candidate.subject.system,
        candidate.subject.value,
        device.id,
        device.model,
        device.manufacturer,
        candidate.measure,
        candidate.vendor_record_id,
        candidate.declared_zone,
        candidate.statistic,
        candidate.record_key,
    )


def _control_character_field(candidate: CandidateReading) -> str | None:
    """The first text field of `candidate` that no FHIR string may hold (NUL and other controls
    below U+0020 but tab, LF, CR): such text would either be refused by PostgreSQL (NUL) or end
    up in an invalid Observation or Device. Every reading passes here, so all its text is
    searched once, joined; the field is named only when that search finds one."""
    texts = _texts(candidate)
    units = [quantity.unit for quantity in candidate.quantities.values()]
    if is_fhir_string("".join([*filter(None, texts), *units])):
        return None
    named = [*zip(_TEXT_FIELDS, texts, strict=True)]
    named += [(f"unit of {name}", q.unit) for name, q in candidate.quantities.items()]
    return next(name for name, text in named if text is not None and not is_fhir_string(text))


def _measured_values(
    measure: Measure, quantities: Mapping[str, Quantity]
) -> tuple[MeasuredValue, ...] | Rejection:
    names = [spec.name for spec in measure.components]
    if any(name not in names for name in quantities):
        return Rejection(
            RejectionCode.UNKNOWN_COMPONENT,
            f"{measure.name} has no such component; its components are: {', '.join(names)}",
        )
    values: list[MeasuredValue] = []
    for spec in measure.components:
        quantity = quantities.get(spec.name)
        if quantity is None:
            if spec.required:
                return Rejection(
                    RejectionCode.MISSING_COMPONENT,
                    f"{_label(measure, spec)} is required",
                )
            continue
        value = _measured_value(measure, spec, quantity)
        if isinstance(value, Rejection):
            return value
        values.append(value)
    return tuple(values)


def _measured_value(
    measure: Measure, spec: ComponentSpec, quantity: Quantity
) -> MeasuredValue | Rejection:
    label = _label(measure, spec)
    conversion = spec.conversions.get(quantity.unit)
    if conversion is None:
        return Rejection(
            RejectionCode.UNIT_NOT_CONVERTIBLE,
            f"unit of {label} is not accepted; accepted units: {', '.join(spec.conversions)}",
        )
    if not math.isfinite(quantity.value):
        return Rejection(RejectionCode.NOT_A_NUMBER, f"{label} is not a finite number")
    value = float(quantity.value)
    if conversion.factor != 1.0 or conversion.offset != 0.0:
        value = round(value * conversion.factor + conversion.offset, _DECIMALS)
    if value not in spec.hard:
        return Rejection(
            RejectionCode.OUT_OF_RANGE,
            f"{label} is outside the accepted range {_range(spec.hard)} {spec.ucum}",
        )
    return MeasuredValue(spec, value, _interpretation(value, spec.soft))


def _interpretation(value: float, soft: ValueRange | None) -> Interpretation | None:
    if soft is None or value in soft:
        return None
    return Interpretation.LOW if value < soft.low else Interpretation.HIGH


def _times(
    measure: Measure,
    candidate: CandidateReading,
    *,
    now: datetime,
    max_future_skew: timedelta,
) -> tuple[datetime, datetime | None] | Rejection:
    start = _aware("start", candidate.start, assume_utc=candidate.offset_assumed)
    if isinstance(start, Rejection):
        return start
    end: datetime | None = None
    if candidate.end is not None:
        aware_end = _aware("end", candidate.end, assume_utc=candidate.offset_assumed)
        if isinstance(aware_end, Rejection):
            return aware_end
        end = aware_end

    outside = _outside_window(start, end, now=now, max_future_skew=max_future_skew)
    if outside is not None:
        return outside
    if end is None:
        if measure.interval:
            return Rejection(
                RejectionCode.INVALID_INTERVAL, f"{measure.name} needs both start and end"
            )
    elif end < start or (measure.interval and end == start):
        return Rejection(RejectionCode.INVALID_INTERVAL, "end must be later than start")
    return start, end


def _outside_window(
    start: datetime, end: datetime | None, *, now: datetime, max_future_skew: timedelta
) -> Rejection | None:
    earliest = min(start, end or start)
    if earliest < EARLIEST_READING:
        return Rejection(RejectionCode.INVALID_READING, "reading time is before 1900-01-01")
    latest = now + max_future_skew
    if max(start, end or start) > latest:
        return Rejection(
            RejectionCode.FUTURE_TIMESTAMP,
            f"reading time is more than {_minutes(max_future_skew)} in the future",
        )
    return None


def _aware(name: str, moment: datetime, *, assume_utc: bool) -> datetime | Rejection:
    offset = moment.utcoffset()
    if offset is None:
        if assume_utc:
            return moment.replace(tzinfo=UTC)
        return Rejection(RejectionCode.MISSING_OFFSET, f"{name} time has no UTC offset")
    if offset % timedelta(minutes=1) or abs(offset) > _MAX_OFFSET:
        return Rejection(
            RejectionCode.INVALID_READING,
            f"{name} time has a UTC offset that is not whole minutes within -14:00..+14:00",
        )
    return moment


def _check_rate(
    measure: Measure,
    values: tuple[MeasuredValue, ...],
    start: datetime,
    end: datetime | None,
) -> Rejection | None:
    limit = MAX_RATE_PER_MINUTE.get(measure.name)
    if limit is None or end is None:
        return None
    minutes = (end - start) / timedelta(minutes=1)
    if any(v.value > limit * minutes for v in values):
        return Rejection(
            RejectionCode.OUT_OF_RANGE,
            f"{measure.name} exceeds {limit:g} per minute of the interval",
        )
    return None


def _check_blood_pressure(measure: Measure, values: tuple[MeasuredValue, ...]) -> Rejection | None:
    by_name = {v.spec.name: v.value for v in values}
    systolic, diastolic = by_name.get("systolic"), by_name.get("diastolic")
    if systolic is None or diastolic is None or systolic > diastolic:
        return None
    return Rejection(
        RejectionCode.SYSTOLIC_NOT_ABOVE_DIASTOLIC,
        f"{measure.name} systolic must be above diastolic",
    )


def _label(measure: Measure, spec: ComponentSpec) -> str:
    return f"{measure.name} {spec.name}"


def _range(bounds: ValueRange) -> str:
    return f"{bounds.low:g}-{bounds.high:g}"


def _minutes(skew: timedelta) -> str:
    return f"{skew / timedelta(minutes=1):g} min"
