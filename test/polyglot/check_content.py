"""Content check for switchyard_check.py: ListContents, GetManifest, a refused call, and
GetPiece streams from a distribution node (the node writes those messages straight to
HTTP/2, so this checks another gRPC implementation reads them).

Args: MANAGER_ADDRESS TOKEN CONTENT_ID
"""
import hashlib

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
    from switchyard.content.v1 import distribution_node_service_pb2 as npb, distribution_node_service_pb2_grpc as npbg
    pieces_ok = []
    for p in manifest.pieces:
        r = p.replicas[0]
        node = npbg.DistributionNodeServiceStub(switchyard_check.channel(r.address))
        h = hashlib.sha256()
        total = None
        for msg in node.GetPiece(npb.GetPieceRequest(grant=manifest.grant.token, piece_id=p.piece_id, access_tag=p.access_tag), timeout=10):
            if total is None:
                total = msg.total_size
            h.update(msg.data)
        pieces_ok.append(h.hexdigest() == p.piece_id and total == p.stored_size)
    return {
        "piecesOk": pieces_ok,
        "names": [c.name for c in listed.contents],
        "pieces": len(manifest.pieces),
        "keyBytes": len(manifest.pieces[0].key) if manifest.pieces else 0,
        "replicas": [len(p.replicas) for p in manifest.pieces],
        "grantBytes": len(manifest.grant.token),
        "refused": refused,
        "health": switchyard_check.health(ch, "switchyard.content.v1.ContentManagerService"),
    }
