"""Content check for switchyard_check.py: ListContents, GetManifest, a refused call,
GetPiece streams from a distribution node (the node writes those messages straight to
HTTP/2, so this checks another gRPC implementation reads them), and one GetPieces call
per node for every piece it holds, with a refused piece in the middle.

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
        "getPieces": get_pieces(manifest),
        "piecesOk": pieces_ok,
        "names": [c.name for c in listed.contents],
        "pieces": len(manifest.pieces),
        "keyBytes": len(manifest.pieces[0].key) if manifest.pieces else 0,
        "replicas": [len(p.replicas) for p in manifest.pieces],
        "grantBytes": len(manifest.grant.token),
        "refused": refused,
        "health": switchyard_check.health(ch, "switchyard.content.v1.ContentManagerService"),
    }


def get_pieces(manifest):
    """One GetPieces call per node: its pieces in manifest order, the first one asked again
    with another piece's access tag in the middle. Returns per node the pieces asked for,
    those answered with bytes hashing to their id in the right place, and the refusals
    (code and ErrorInfo reason)."""
    from google.rpc import error_details_pb2
    from switchyard.content.v1 import distribution_node_service_pb2 as npb, distribution_node_service_pb2_grpc as npbg
    by_node = {}
    for p in manifest.pieces:
        by_node.setdefault(p.replicas[0].address, []).append(p)
    answers = []
    for address, pieces in sorted(by_node.items()):
        reqs = [npb.GetPiecesRequest(grant=manifest.grant.token, piece_id=p.piece_id, access_tag=p.access_tag) for p in pieces]
        other = next(p for p in manifest.pieces if p.piece_id != pieces[0].piece_id)
        reqs.insert(1, npb.GetPiecesRequest(grant=manifest.grant.token, piece_id=pieces[0].piece_id, access_tag=other.access_tag))
        expected = [p.piece_id for p in pieces]
        expected.insert(1, None)
        node = npbg.DistributionNodeServiceStub(switchyard_check.channel(address))
        left, h = 0, None
        got = []
        for msg in node.GetPieces(iter(reqs), timeout=10):
            if left == 0:
                if msg.HasField("error"):
                    reason = ""
                    for any_ in msg.error.details:
                        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                            info = error_details_pb2.ErrorInfo()
                            any_.Unpack(info)
                            reason = info.reason
                    got.append({"code": msg.error.code, "reason": reason})
                    continue
                left, h = msg.total_size, hashlib.sha256()
            h.update(msg.data)
            left -= len(msg.data)
            if left == 0:
                got.append(h.hexdigest())
        answers.append({
            "asked": len(pieces),
            "ok": sum(1 for want, answer in zip(expected, got) if want and answer == want),
            "refused": [answer for want, answer in zip(expected, got) if not want],
            "answers": len(got),
        })
    return answers
