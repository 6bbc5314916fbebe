"""The name of every operation a store runs on its zone's pool.

As synapse names each `runInteraction`, every `ZonePool` entry point takes one of these names:
`<store>.<method>`, the store module and the method that runs it, static and low-cardinality.
The pool reports each operation's duration and outcome under its name to the observer given at
`ZoneDatabase.connect` (gateway/app.py turns that into
`gateway_db_transaction_duration_seconds{zone,name}`), so a slow one shows up by name.

The set is closed: `TransactionName` is a `Literal`, so mypy refuses a name that is not listed
here (an f-string with an id included), and tests/storage/test_transaction_names.py checks that
every listed name is used at exactly one call site.
"""

from __future__ import annotations

from typing import Literal, get_args

TransactionName = Literal[
    # storage/audit.py
    "audit.append",
    "audit.count",
    "audit.stream",
    "audit.successor_seq",
    # storage/credentials.py
    "credentials.add",
    "credentials.get",
    "credentials.list",
    "credentials.revoke",
    # storage/database.py
    "database.check_schema",
    "database.ping",
    "database.select_one",
    # storage/dead_letters.py
    "dead_letters.add_many",
    # storage/devices.py
    "devices.record",
    # storage/exports.py
    "exports.add_file",
    "exports.cancel",
    "exports.chunks",
    "exports.claim",
    "exports.create",
    "exports.delete_expired",
    "exports.devices",
    "exports.fail",
    "exports.file",
    "exports.finish",
    "exports.get",
    "exports.observations",
    "exports.poll",
    "exports.renew",
    "exports.requeue",
    "exports.reset_files",
    "exports.subjects",
    "exports.write_chunk",
    # storage/fhir_search.py
    "fhir_search.count_devices",
    "fhir_search.count_observations",
    "fhir_search.count_subjects",
    "fhir_search.devices",
    "fhir_search.last_n",
    "fhir_search.observation",
    "fhir_search.observation_versions",
    "fhir_search.search_observations",
    "fhir_search.site_subjects",
    "fhir_search.subjects",
    # storage/key_ring.py
    "key_ring.deregister",
    "key_ring.heartbeat",
    "key_ring.publish",
    "key_ring.retiring_kek",
    "key_ring.state",
    # storage/notifications.py
    "notifications.add_withings",
    # storage/observations.py
    "observations.count",
    "observations.ensure_partitions",
    "observations.get",
    "observations.insert_unversioned",
    "observations.upsert_versioned",
    # storage/residency.py
    "residency.counts",
    "residency.foreign_rows",
    # storage/smart.py
    "smart.access_token",
    "smart.add",
    "smart.add_access_token",
    "smart.get",
    "smart.revoke",
    "smart.use_jti",
    # storage/studies.py
    "studies.add",
    "studies.get",
    # storage/subjects.py
    "subjects.change_consent",
    "subjects.count",
    "subjects.count_wrapped_below",
    "subjects.delete_subject_rows",
    "subjects.destroy_data_key",
    "subjects.erasure_target",
    "subjects.get",
    "subjects.insert",
    "subjects.key_versions_in_use",
    "subjects.last_erasure_record",
    "subjects.mark_erasing",
    "subjects.resolve",
    "subjects.rewrap",
    "subjects.wrapped_keys_batch",
]

TRANSACTION_NAMES: tuple[str, ...] = get_args(TransactionName)
