"""The one path every front door stores through: body read and decoded, entries validated into rows, rows
COPYed and committed, and only then an answer.

    body.py          the size cap, the memory budget, stalled clients
    decode.py        Content-Type and Content-Encoding (capped while decompressing)
    rows.py          our schema's validation: JSON bytes -> row tuples in column order
    idempotency.py   keys claimed in the COPY's own transaction
    writer.py        batches -> COPY -> commit (group commit)
    intake.py        Intake: the above, shared by every route that stores logs

The formats other than our own (app/formats/) end in rows.py's validation; the storage they write into is
app/storage/.
"""
