#!/usr/bin/python3
"""Independent Python client for Switchyard nodes (Debian python3-grpcio + protoc stubs).

Usage: switchyard_check.py STUBS_DIR CHECK ARGS...
Prints one JSON object with what it saw; exits non-zero on any failure.

Checks:
  common ADDRESS   reflection list, health Check, NodeService.GetNodeInfo and GetLoad
Subsystems add `check_<name>.py` modules next to this file exposing run(stubs_dir, args)
and are invoked as `switchyard_check.py STUBS_DIR <name> ARGS...`.
"""
import importlib
import json
import os
import sys


def channel(address):
    import grpc
    return grpc.insecure_channel(address)


def reflection_services(ch):
    """Lists services through grpc.reflection.v1, the way grpcurl does."""
    from grpc.reflection.v1 import reflection_pb2, reflection_pb2_grpc
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    req = reflection_pb2.ServerReflectionRequest(list_services="*")
    names = []
    for res in stub.ServerReflectionInfo(iter([req]), timeout=10):
        names = [s.name for s in res.list_services_response.service]
    return sorted(names)


def reflection_file_for(ch, symbol):
    """Names of the descriptor files reflection returns for a symbol."""
    from grpc.reflection.v1 import reflection_pb2, reflection_pb2_grpc
    from google.protobuf import descriptor_pb2
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    req = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    files = []
    for res in stub.ServerReflectionInfo(iter([req]), timeout=10):
        for raw in res.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(raw)
            files.append(fd.name)
    return files


def health(ch, service=""):
    from grpc.health.v1 import health_pb2, health_pb2_grpc
    stub = health_pb2_grpc.HealthStub(ch)
    res = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(res.status)


def rich_error(err):
    """Code, message and google.rpc details of a grpc.RpcError, as a dict."""
    from google.rpc import error_details_pb2, status_pb2
    out = {"code": err.code().name, "message": err.details()}
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        st = status_pb2.Status()
        st.ParseFromString(value)
        for any_ in st.details:
            if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_.Unpack(info)
                out["reason"] = info.reason
            elif any_.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                any_.Unpack(retry)
                out["retryDelayMs"] = retry.retry_delay.seconds * 1000 + retry.retry_delay.nanos // 1000000
            elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_.Unpack(bad)
                out["fields"] = [v.field for v in bad.field_violations]
    return out


def common(args):
    from switchyard.node.v1 import node_service_pb2, node_service_pb2_grpc
    (address,) = args
    ch = channel(address)
    node = node_service_pb2_grpc.NodeServiceStub(ch)
    info = node.GetNodeInfo(node_service_pb2.GetNodeInfoRequest(), timeout=10).info
    load = node.GetLoad(node_service_pb2.GetLoadRequest(), timeout=10).load
    # A bad request answered with google.rpc details that Python can read.
    import grpc
    from google.protobuf import duration_pb2
    try:
        next(node.WatchLoad(node_service_pb2.WatchLoadRequest(interval=duration_pb2.Duration(nanos=1000000)), timeout=10))
        bad = {"code": "OK"}
    except grpc.RpcError as err:
        bad = rich_error(err)
    return {
        "badWatch": bad,
        "services": reflection_services(ch),
        "descriptorFiles": reflection_file_for(ch, "switchyard.node.v1.NodeService"),
        "health": health(ch),
        "nodeId": info.node_id,
        "role": info.role,
        "activeCalls": load.active_calls,
    }


def main():
    stubs, check, *args = sys.argv[1:]
    sys.path.insert(0, stubs)
    # Debian ships no grpc_reflection package: the stubs generated from reflection.proto
    # and health.proto live in STUBS_DIR under grpc/, next to the real grpc package. Make
    # them importable as grpc.reflection.v1 / grpc.health.v1 without shadowing grpc itself.
    import grpc
    grpc.__path__.append(os.path.join(stubs, "grpc"))
    if check == "common":
        result = common(args)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        result = importlib.import_module("check_" + check).run(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
