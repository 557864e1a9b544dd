"""Content check for switchyard_check.py: ListContents, GetManifest and a refused call.

Args: MANAGER_ADDRESS TOKEN CONTENT_ID
"""
import grpc

import switchyard_check


def run(args):
    from switchyard.content.v1 import content_manager_service_pb2 as pb, content_manager_service_pb2_grpc as pbg
    address, token, content_id = args
    ch = switchyard_check.channel(address)
    stub = pbg.ContentManagerServiceStub(ch)
    md = (("authorization", "Bearer " + token),)
    listed = stub.ListContents(pb.ListContentsRequest(page_size=10), metadata=md, timeout=10)
    manifest = stub.GetManifest(pb.GetManifestRequest(content_id=content_id), metadata=md, timeout=10).manifest
    try:
        stub.GetManifest(pb.GetManifestRequest(content_id=content_id), timeout=10)
        refused = {"code": "OK"}
    except grpc.RpcError as err:
        refused = switchyard_check.rich_error(err)
    return {
        "names": [c.name for c in listed.contents],
        "pieces": len(manifest.pieces),
        "keyBytes": len(manifest.pieces[0].key) if manifest.pieces else 0,
        "replicas": [len(p.replicas) for p in manifest.pieces],
        "grantBytes": len(manifest.grant.token),
        "refused": refused,
        "health": switchyard_check.health(ch, "switchyard.content.v1.ContentManagerService"),
    }
