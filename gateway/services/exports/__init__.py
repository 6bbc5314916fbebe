"""De-identified research extracts over FHIR Bulk Data Access 2.0, in the order a
job runs:

    kickoff   kick-off (policy decision, audit, queued job), status, cancel
    workers   one background task per zone: claims queued jobs, hands each to a runner
    runner    one job's run: members, k-anonymity, de-identified resources, audited release
    files     the NDJSON/CSV files a run writes, and their download

The kick-off's parameters are parsed by `gateway.fhir.bulk_parameters` (pure).
"""
