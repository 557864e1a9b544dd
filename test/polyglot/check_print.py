"""Polyglot check of the print subsystem: a Python client (Debian grpcio, protoc stubs)
opens a session on a print worker, gets the duplicate refused with SESSION_EXISTS,
converts a small PDF (streamed events), completes the session, and gets FAILED_PRECONDITION
for a step on an unknown session."""
import grpc

import switchyard_check


def run(args):
    from switchyard.print.v1 import print_conversion_service_pb2 as pc, print_conversion_service_pb2_grpc as pc_grpc
    from switchyard.print.v1 import print_job_pb2 as pj
    worker, pdf_path = args
    ch = switchyard_check.channel(worker)
    stub = pc_grpc.PrintConversionServiceStub(ch)
    session = pj.SessionId(job_id="py-job-1", printer_id="py-printer")
    token = stub.IssueToken(pc.IssueTokenRequest(session=session), timeout=30)
    try:
        stub.IssueToken(pc.IssueTokenRequest(session=session), timeout=30)
        duplicate = {"code": "OK"}
    except grpc.RpcError as err:
        duplicate = switchyard_check.rich_error(err)
    with open(pdf_path, "rb") as f:
        dl = stub.Download(pc.DownloadRequest(session=session, content=f.read()), timeout=30)
    events = []
    result_id = ""
    settings = pj.PrintSettings(dpi=72, color_mode=pj.COLOR_MODE_MONOCHROME)
    for ev in stub.Convert(pc.ConvertRequest(session=session, settings=settings), timeout=120):
        kind = ev.WhichOneof("event")
        events.append(kind)
        if kind == "started":
            result_id = ev.started.result_id
    done = stub.Complete(pc.CompleteRequest(session=session, result_id=result_id), timeout=30)
    try:
        stub.Complete(pc.CompleteRequest(session=session), timeout=30)
        unknown = {"code": "OK"}
    except grpc.RpcError as err:
        unknown = switchyard_check.rich_error(err)
    return {
        "tokenLength": len(token.token),
        "duplicate": duplicate,
        "downloaded": dl.size_bytes,
        "events": events,
        "recordsDeleted": done.records_deleted,
        "unknown": unknown,
    }
