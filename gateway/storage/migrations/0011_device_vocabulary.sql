-- Issue 11: `devices.model` and `devices.manufacturer` held the payloads' free text (a FHIR
-- deviceName, a HealthKit manufacturer, ...), which may be a serial or a person's name, and
-- served it to clinics. From now on only values of the closed tables in gateway/devices.py are
-- stored; this maps the rows stored before through the same tables.
--
-- The tables are Python data and are not copied into SQL: the migration runner
-- (gateway/storage/schema.py, `_PREPARE`) first fills the temporary table `device_vocabulary`
-- with (field, raw, value) for every distinct stored text. Text without a row there (e.g. a row
-- written concurrently by an older gateway) becomes NULL, never kept.
UPDATE devices d
SET model = (
        SELECT v.value FROM device_vocabulary v WHERE v.field = 'model' AND v.raw = d.model
    ),
    manufacturer = (
        SELECT v.value FROM device_vocabulary v
        WHERE v.field = 'manufacturer' AND v.raw = d.manufacturer
    )
WHERE d.model IS NOT NULL OR d.manufacturer IS NOT NULL;
