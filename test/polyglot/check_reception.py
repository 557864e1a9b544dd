"""Python check of the Reception subsystem: PlaceOrder, FetchContent and error details."""
import grpc

import switchyard_check
from switchyard.reception.v1 import content_server_service_pb2, content_server_service_pb2_grpc
from switchyard.reception.v1 import reception_service_pb2, reception_service_pb2_grpc


def run(args):
    (reception,) = args
    rec = reception_service_pb2_grpc.ReceptionServiceStub(switchyard_check.channel(reception))
    ticket = rec.PlaceOrder(reception_service_pb2.PlaceOrderRequest(item_id="hello.txt", client_id="py-client"), timeout=10).ticket
    cs = content_server_service_pb2_grpc.ContentServerServiceStub(switchyard_check.channel(ticket.server_address))
    size = 0
    header = None
    for part in cs.FetchContent(content_server_service_pb2.FetchContentRequest(token=ticket.token, client_id="py-client"), timeout=10):
        if part.HasField("header"):
            header = part.header
        else:
            size += len(part.chunk)
    errors = {}
    try:
        rec.PlaceOrder(reception_service_pb2.PlaceOrderRequest(item_id="missing.bin", client_id="py-client"), timeout=10)
    except grpc.RpcError as err:
        errors["unknownItem"] = switchyard_check.rich_error(err)
    try:
        list(cs.FetchContent(content_server_service_pb2.FetchContentRequest(token=ticket.token, client_id="py-client"), timeout=10))
    except grpc.RpcError as err:
        errors["replay"] = switchyard_check.rich_error(err)
    try:
        list(cs.FetchContent(content_server_service_pb2.FetchContentRequest(token=b"\x00garbage", client_id="py-client"), timeout=10))
    except grpc.RpcError as err:
        errors["garbage"] = switchyard_check.rich_error(err)
    servers = rec.ListContentServers(reception_service_pb2.ListContentServersRequest(), timeout=10).servers
    return {
        "serverId": ticket.server_id,
        "bytes": size,
        "headerSize": header.size_bytes if header else None,
        "servers": sorted(s.server_id for s in servers),
        "errors": {k: [v["code"], v.get("reason")] for k, v in errors.items()},
    }
