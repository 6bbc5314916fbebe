"""The clinic FHIR R4 read API, one module per resource type as in `web/fhir/`:

    observation   read, vread, _history, search, $lastn (and _include of Patient and Device)
    patient       read, search
    device        read, search
    common        authorisation, audit, paging cursors and links, identifier chains

Their queries are `gateway.storage.fhir_search`.
"""
