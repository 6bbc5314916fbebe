"""The whole URL map."""

from __future__ import annotations

from aiohttp import web

from gateway.web import (
    health,
    healthkit_export,
    ingest,
    notify,
    smart,
    subject_lifecycle,
    subjects,
)
from gateway.web.appkeys import SETTINGS
from gateway.web.fhir import bulk_export, device, metadata, observation, patient


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    if not app[SETTINGS].metrics_port:
        # Otherwise on a listener of its own only (gateway/web/server.py, metrics_app).
        app.router.add_get("/metrics", health.metrics)
    app.router.add_post("/v1/subjects", subjects.post_subject)
    # Consent changes and erasure by the enrolling clinic.
    app.router.add_patch("/v1/subjects/{pseudonym}/consent", subject_lifecycle.patch_consent)
    app.router.add_delete("/v1/subjects/{pseudonym}", subject_lifecycle.delete_subject)
    # SMART Backend Services (HL7 SMART App Launch 2.x): discovery at both places clients look.
    app.router.add_get("/.well-known/smart-configuration", smart.smart_configuration)
    app.router.add_get("/fhir/.well-known/smart-configuration", smart.smart_configuration)
    app.router.add_post("/auth/token", smart.post_token)
    app.router.add_post("/v1/ingest/healthkit/export", healthkit_export.post_export)
    app.router.add_post("/v1/ingest/{format}", ingest.post_readings)
    # Withings cannot send an Authorization header: the vendor key is the last path segment.
    app.router.add_get("/v1/notify/withings/{token}", notify.check_withings)  # and HEAD
    app.router.add_post("/v1/notify/withings/{token}", notify.post_withings)
    # FHIR R4 read API for clinics. `$lastn` and `_search` come before `{id}`, which
    # would otherwise match them.
    app.router.add_get("/fhir/metadata", metadata.get_metadata)
    app.router.add_get("/fhir/Observation", observation.search)
    app.router.add_post("/fhir/Observation/_search", observation.search)
    app.router.add_get("/fhir/Observation/$lastn", observation.last_n)
    app.router.add_get("/fhir/Observation/{id}", observation.read)
    app.router.add_get("/fhir/Observation/{id}/_history", observation.history)
    app.router.add_get("/fhir/Observation/{id}/_history/{vid}", observation.vread)
    app.router.add_get("/fhir/Patient", patient.search)
    app.router.add_post("/fhir/Patient/_search", patient.search)
    app.router.add_get("/fhir/Patient/{id}", patient.read)
    app.router.add_get("/fhir/Device", device.search)
    app.router.add_post("/fhir/Device/_search", device.search)
    app.router.add_get("/fhir/Device/{id}", device.read)
    # FHIR Bulk Data Access 2.0 export of a study's de-identified extract.
    app.router.add_get("/fhir/Group/{study}/$export", bulk_export.kick_off)
    app.router.add_post("/fhir/Group/{study}/$export", bulk_export.kick_off)
    app.router.add_get("/fhir/$export-status/{job}", bulk_export.status)
    app.router.add_delete("/fhir/$export-status/{job}", bulk_export.cancel)
    app.router.add_get("/fhir/$export-file/{job}/{name}", bulk_export.download)
